//! The verified-token cache: what a token proved, kept so that the next message carrying it
//! skips the signature check.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::verify::context::AuthContext;

/// Verified tokens by the token itself: a hit is an exact match, and hands back the context
/// (the token and what it proved) without copying either. Only tokens that verified are
/// inserted, so lookups of hostile tokens cannot crowd its hash table.
///
/// In front of the table sits the token inserted last: consecutive messages that share a token
/// (the common case) find it with one comparison, without hashing the token or the table's
/// bookkeeping. It keeps the table's time to live: a key removed from its set stops vouching
/// for it in time.
pub(crate) struct VerifiedCache {
    table: moka::sync::Cache<Arc<str>, AuthContext, foldhash::fast::RandomState>,
    last: Mutex<Option<Last>>,
    ttl: Duration,
}

/// The token inserted last, and until when it may be handed out.
struct Last {
    context: AuthContext,
    until: Instant,
}

impl VerifiedCache {
    /// A cache of at most `capacity` tokens, each kept at most `ttl` after it verified.
    pub(crate) fn new(capacity: u64, ttl: Duration) -> Self {
        VerifiedCache {
            table: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            last: Mutex::new(None),
            ttl,
        }
    }

    /// The context `token` verified to, if it is kept; `now` is the caller's clock reading.
    pub(crate) fn get(&self, token: &str, now: Instant) -> Option<AuthContext> {
        // A lock another thread holds is not waited for: the table answers instead.
        if let Ok(last) = self.last.try_lock()
            && let Some(last) = last.as_ref()
            && now < last.until
            && last.context.token() == token
        {
            return Some(last.context.clone());
        }
        self.table.get(token)
    }

    /// Keeps `context`, which just verified.
    pub(crate) fn insert(&self, context: &AuthContext) {
        self.table.insert(context.shared_token(), context.clone());
        let last = Last {
            context: context.clone(),
            until: Instant::now() + self.ttl,
        };
        *self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(last);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::verify::claims::Claims;
    use crate::verify::context::Verified;
    use crate::verify::issuer::Issuer;

    fn context(token: &str, subject: &str) -> AuthContext {
        let claims = serde_json::json!({"iss": "https://issuer.example", "sub": subject});
        let serde_json::Value::Object(claims) = claims else {
            unreachable!()
        };
        let verified = Verified {
            claims: Claims::parse(claims).unwrap(),
            kid: None,
            alg: jsonwebtoken::Algorithm::RS256,
            issuer: Arc::new(Issuer::new("https://issuer.example")),
        };
        AuthContext::new(token, Arc::new(verified))
    }

    #[test]
    fn both_the_last_token_and_earlier_ones_are_found_until_their_time_to_live_ends() {
        let cache = VerifiedCache::new(10, Duration::from_millis(200));
        cache.insert(&context("a.b.c", "alice"));
        cache.insert(&context("d.e.f", "bob"));
        let now = Instant::now();
        assert_eq!(
            cache.get("d.e.f", now).unwrap().subject(),
            Some("bob"),
            "the last one"
        );
        assert_eq!(
            cache.get("a.b.c", now).unwrap().subject(),
            Some("alice"),
            "an earlier one"
        );
        assert!(cache.get("d.e.g", now).is_none(), "a token differing in one byte");
        assert!(cache.get("d.e", now).is_none(), "a prefix of the last token");
        std::thread::sleep(Duration::from_millis(250));
        let later = Instant::now();
        assert!(
            cache.get("d.e.f", later).is_none(),
            "the last token outlived the time to live"
        );
        assert!(
            cache.get("a.b.c", later).is_none(),
            "an earlier token outlived the time to live"
        );
    }
}
