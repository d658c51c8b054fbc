//! A cache of exchanged tokens, with one exchange in flight per request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::exchange::{ExchangeRequest, IssuedToken, TokenExchanger};
use crate::observe;
use crate::verify::jose;
use crate::verify::verifier::now_unix;

const DEFAULT_CAPACITY: u64 = 10_000;
const DEFAULT_MARGIN: Duration = Duration::from_secs(10);
const DEFAULT_FAILURE_WINDOW: Duration = Duration::from_secs(1);
/// The longest a failure is remembered, whatever `Retry-After` said.
const MAX_FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Wraps a [`TokenExchanger`] so identical requests share one issued token
/// until it is about to expire, and concurrent identical requests share one
/// call: a burst of a thousand messages carrying the same expired token
/// makes one exchange.
///
/// Requests are identical when they have the same subject token (kept as its
/// SHA-256, never in clear), token types, actor token, audiences, resources,
/// scope and requested token type. An issued token is kept until its expiry
/// minus a margin (10 s): the earlier of its `exp` claim (read, not
/// verified, when it is a JWT; the consumer verifies it anyway) and
/// `expires_in`. A token with neither is not kept; callers waiting on the
/// same call share its result either way. At most 10 000 tokens are kept.
///
/// A failed exchange is remembered for a moment (1 s, or the `Retry-After`
/// the token service gave, at most a minute): the messages carrying the same
/// token meanwhile get the same error without a call. A backlog behind a
/// token service that is down, or that refused the token, then makes one call
/// per window, not one per message.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use jwt_relay::Rfc8693Client;
/// use jwt_relay::exchange::{ExchangeCache, TokenExchanger};
///
/// # fn main() -> Result<(), jwt_relay::Error> {
/// let client = Rfc8693Client::builder("https://id.example.com/token").build()?;
/// let exchanger: Arc<dyn TokenExchanger> =
///     Arc::new(ExchangeCache::new(client).margin(Duration::from_secs(30)).capacity(1_000));
/// # let _ = exchanger;
/// # Ok(())
/// # }
/// ```
pub struct ExchangeCache<E> {
    inner: E,
    cache: moka::future::Cache<Key, Entry>,
    margin: Duration,
    failures: Duration,
}

/// What makes two requests the same.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    subject_token: [u8; 32],
    subject_token_type: String,
    actor_token: Option<[u8; 32]>,
    actor_token_type: Option<String>,
    audience: Vec<String>,
    resource: Vec<String>,
    scope: Option<String>,
    requested_token_type: Option<String>,
}

impl Key {
    fn of(request: &ExchangeRequest) -> Key {
        let hash = |token: &str| -> [u8; 32] { Sha256::digest(token.as_bytes()).into() };
        Key {
            subject_token: hash(&request.subject_token),
            subject_token_type: request.subject_token_type.clone(),
            actor_token: request.actor_token.as_deref().map(hash),
            actor_token_type: request.actor_token_type.clone(),
            audience: request.audience.clone(),
            resource: request.resource.clone(),
            scope: request.scope.clone(),
            requested_token_type: request.requested_token_type.clone(),
        }
    }
}

/// What one call returned: a token, or the error it ended with.
#[derive(Clone)]
struct Entry {
    result: Result<IssuedToken>,
    /// How long the entry may serve, from its creation.
    keep: Duration,
}

/// Each entry lives as long as its token allows.
struct KeepFor;

impl Expiry<Key, Entry> for KeepFor {
    fn expire_after_create(&self, _key: &Key, entry: &Entry, _created_at: Instant) -> Option<Duration> {
        Some(entry.keep)
    }
}

impl<E: TokenExchanger> ExchangeCache<E> {
    /// Caches the tokens `inner` issues.
    pub fn new(inner: E) -> Self {
        ExchangeCache {
            inner,
            cache: build_cache(DEFAULT_CAPACITY),
            margin: DEFAULT_MARGIN,
            failures: DEFAULT_FAILURE_WINDOW,
        }
    }

    /// Drops a token this long before it expires (10 s), so a token taken
    /// from the cache still verifies when the consumer checks it.
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// Remembers a failed exchange for this long (1 s) when the token
    /// service gave no `Retry-After`. `Duration::ZERO` remembers no failure
    /// (callers waiting on the same call still share it).
    pub fn remember_failures(mut self, window: Duration) -> Self {
        self.failures = window;
        self
    }

    /// Keeps at most this many tokens (10 000). Call it before the first
    /// exchange: it starts an empty cache.
    pub fn capacity(mut self, entries: u64) -> Self {
        self.cache = build_cache(entries);
        self
    }

    /// The wrapped exchanger.
    pub fn get_ref(&self) -> &E {
        &self.inner
    }

    async fn exchange_cached(&self, request: &ExchangeRequest) -> Result<IssuedToken> {
        let called = AtomicBool::new(false);
        let call = async {
            called.store(true, Ordering::Relaxed);
            let result = self.inner.exchange(request).await;
            let keep = match &result {
                Ok(token) => lifetime(token).map_or(Duration::ZERO, |left| left.saturating_sub(self.margin)),
                Err(_) if self.failures.is_zero() => Duration::ZERO,
                Err(e) => e.retry_after().unwrap_or(self.failures).min(MAX_FAILURE_WINDOW),
            };
            Entry { result, keep }
        };
        // Callers that waited on one call share its result (an error is a cheap clone).
        let entry = self.cache.get_with(Key::of(request), call).await;
        if !called.load(Ordering::Relaxed) {
            // Served from the cache, or by a call another caller made.
            let label = if entry.result.is_ok() {
                "cached"
            } else {
                "cached_failure"
            };
            metrics::counter!(observe::EXCHANGES_TOTAL, "result" => label).increment(1);
        }
        entry.result
    }
}

impl<E: TokenExchanger> TokenExchanger for ExchangeCache<E> {
    fn exchange<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> Pin<Box<dyn Future<Output = Result<IssuedToken>> + Send + 'a>> {
        Box::pin(self.exchange_cached(request))
    }
}

impl<E: fmt::Debug> fmt::Debug for ExchangeCache<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeCache")
            .field("inner", &self.inner)
            .field("entries", &self.cache.entry_count())
            .field("margin", &self.margin)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

fn build_cache(capacity: u64) -> moka::future::Cache<Key, Entry> {
    moka::future::Cache::builder()
        .max_capacity(capacity)
        .expire_after(KeepFor)
        .build()
}

/// How long the token has left: the earlier of its `exp` claim and
/// `expires_in`; `None` when neither is known.
fn lifetime(token: &IssuedToken) -> Option<Duration> {
    let by_exp = jwt_expiry(&token.access_token)
        .map(|exp| Duration::from_secs(u64::try_from(exp.saturating_sub(now_unix())).unwrap_or(0)));
    let by_expires_in = token.expires_in.map(Duration::from_secs);
    match (by_exp, by_expires_in) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The `exp` claim of a JWS-shaped token, unverified.
fn jwt_expiry(token: &str) -> Option<i64> {
    let parts = jose::split(token).ok()?;
    let payload = jose::decode_part(parts.payload, "payload").ok()?;
    let claims = jose::parse_object(&payload, "payload").ok()?;
    let exp = claims.get("exp")?;
    exp.as_i64()
        .or_else(|| exp.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use std::sync::Arc;

    use super::*;
    use crate::error::{Error, ErrorClass, ErrorKind};

    type Respond = Box<dyn Fn(usize) -> Result<IssuedToken> + Send + Sync>;

    /// Counts its calls; answers after a short wait, so concurrent callers overlap.
    struct Fake {
        calls: AtomicUsize,
        respond: Respond,
    }

    impl fmt::Debug for Fake {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Fake").field("calls", &self.calls).finish()
        }
    }

    impl Fake {
        fn new(respond: impl Fn(usize) -> Result<IssuedToken> + Send + Sync + 'static) -> Self {
            Fake {
                calls: AtomicUsize::new(0),
                respond: Box::new(respond),
            }
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl TokenExchanger for Fake {
        fn exchange<'a>(
            &'a self,
            _request: &'a ExchangeRequest,
        ) -> Pin<Box<dyn Future<Output = Result<IssuedToken>> + Send + 'a>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                (self.respond)(n)
            })
        }
    }

    fn issued(token: impl Into<String>, expires_in: Option<u64>) -> IssuedToken {
        IssuedToken {
            access_token: token.into(),
            issued_token_type: Some(crate::exchange::ACCESS_TOKEN_TYPE.to_owned()),
            token_type: "Bearer".to_owned(),
            expires_in,
            scope: None,
        }
    }

    /// A JWS-shaped token with this `exp` (the signature is not looked at).
    fn jwt_with_exp(exp: i64) -> String {
        let part = |json: &str| URL_SAFE_NO_PAD.encode(json);
        format!(
            "{}.{}.c2ln",
            part(r#"{"alg":"ES256"}"#),
            part(&format!(r#"{{"sub":"alice","exp":{exp}}}"#))
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_identical_requests_make_one_call() {
        let cache = Arc::new(ExchangeCache::new(Fake::new(|n| {
            Ok(issued(format!("fresh-{n}"), Some(300)))
        })));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..1_000 {
            let cache = cache.clone();
            tasks.spawn(async move {
                let request = ExchangeRequest::new("expired").audience("billing");
                cache.exchange(&request).await.map(|t| t.access_token)
            });
        }
        while let Some(result) = tasks.join_next().await {
            assert_eq!(result.expect("task").expect("exchange"), "fresh-0");
        }
        assert_eq!(cache.get_ref().calls(), 1);

        // Another audience, scope or subject is another request.
        let other = ExchangeRequest::new("expired").audience("ledger");
        assert_eq!(
            cache.exchange(&other).await.expect("exchange").access_token,
            "fresh-1"
        );
        let other = ExchangeRequest::new("expired").audience("billing").scope("read");
        assert_eq!(
            cache.exchange(&other).await.expect("exchange").access_token,
            "fresh-2"
        );
        let other = ExchangeRequest::new("another").audience("billing");
        assert_eq!(
            cache.exchange(&other).await.expect("exchange").access_token,
            "fresh-3"
        );
        assert_eq!(cache.get_ref().calls(), 4);
    }

    #[tokio::test]
    async fn an_entry_lives_until_expiry_minus_margin() {
        // expires_in 11 s, margin 10 s: kept for 1 s.
        let cache = ExchangeCache::new(Fake::new(|n| Ok(issued(format!("t{n}"), Some(11)))));
        let request = ExchangeRequest::new("expired");
        assert_eq!(cache.exchange(&request).await.expect("first").access_token, "t0");
        assert_eq!(cache.exchange(&request).await.expect("cached").access_token, "t0");
        assert_eq!(cache.get_ref().calls(), 1);
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        assert_eq!(
            cache.exchange(&request).await.expect("after expiry").access_token,
            "t1"
        );
        assert_eq!(cache.get_ref().calls(), 2);
    }

    #[tokio::test]
    async fn the_exp_claim_bounds_the_lifetime() {
        // expires_in says an hour, but the token's own exp is 5 s away: within the margin.
        let cache = ExchangeCache::new(Fake::new(|_| {
            Ok(issued(jwt_with_exp(now_unix() + 5), Some(3_600)))
        }));
        let request = ExchangeRequest::new("expired");
        cache.exchange(&request).await.expect("first");
        cache.exchange(&request).await.expect("second");
        assert_eq!(cache.get_ref().calls(), 2);

        // A JWT good for an hour, without expires_in, is kept.
        let cache = ExchangeCache::new(Fake::new(|_| Ok(issued(jwt_with_exp(now_unix() + 3_600), None))));
        cache.exchange(&request).await.expect("first");
        cache.exchange(&request).await.expect("second");
        assert_eq!(cache.get_ref().calls(), 1);
    }

    #[tokio::test]
    async fn a_token_without_known_expiry_is_not_kept() {
        let cache = ExchangeCache::new(Fake::new(|_| Ok(issued("opaque", None))));
        let request = ExchangeRequest::new("expired");
        cache.exchange(&request).await.expect("first");
        cache.exchange(&request).await.expect("second");
        assert_eq!(cache.get_ref().calls(), 2);
    }

    fn down(retry_after: Option<Duration>) -> Error {
        let error = Error::new(ErrorKind::ExchangeUnavailable, "down")
            .with_source(std::io::Error::other("connection refused"));
        match retry_after {
            Some(after) => error.with_retry_after(after),
            None => error,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failure_is_shared_then_remembered_for_its_retry_after() {
        let cache = Arc::new(ExchangeCache::new(Fake::new(|n| {
            if n == 0 {
                Err(down(Some(Duration::from_millis(300))))
            } else {
                Ok(issued("fresh", Some(300)))
            }
        })));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let cache = cache.clone();
            tasks.spawn(async move { cache.exchange(&ExchangeRequest::new("expired")).await });
        }
        while let Some(result) = tasks.join_next().await {
            let error = result.expect("task").expect_err("the one call failed");
            assert_eq!(error.kind(), ErrorKind::ExchangeUnavailable);
            assert_eq!(error.class(), ErrorClass::Transient);
            assert_eq!(error.message(), "down");
            assert_eq!(error.retry_after(), Some(Duration::from_millis(300)));
            let source = std::error::Error::source(&error).expect("source kept");
            assert_eq!(source.to_string(), "connection refused");
        }
        assert_eq!(cache.get_ref().calls(), 1);
        // The next messages with that token, within the Retry-After: the same error, no call.
        for _ in 0..10 {
            let error = cache
                .exchange(&ExchangeRequest::new("expired"))
                .await
                .expect_err("remembered");
            assert_eq!(error.kind(), ErrorKind::ExchangeUnavailable);
        }
        assert_eq!(cache.get_ref().calls(), 1);
        // Another token is another request.
        cache
            .exchange(&ExchangeRequest::new("another"))
            .await
            .expect("exchanged");
        assert_eq!(cache.get_ref().calls(), 2);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let fresh = cache
            .exchange(&ExchangeRequest::new("expired"))
            .await
            .expect("called again after the Retry-After");
        assert_eq!(fresh.access_token, "fresh");
        assert_eq!(cache.get_ref().calls(), 3);
    }

    #[tokio::test]
    async fn a_failure_without_retry_after_is_remembered_for_the_window() {
        let cache = ExchangeCache::new(Fake::new(|n| {
            if n == 0 {
                Err(Error::new(ErrorKind::ExchangeDenied, "invalid_grant"))
            } else {
                Ok(issued("fresh", Some(300)))
            }
        }))
        .remember_failures(Duration::from_millis(200));
        let request = ExchangeRequest::new("expired");
        for _ in 0..2 {
            let error = cache.exchange(&request).await.expect_err("refused");
            assert_eq!(error.kind(), ErrorKind::ExchangeDenied);
        }
        assert_eq!(cache.get_ref().calls(), 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        cache
            .exchange(&request)
            .await
            .expect("called again after the window");
        assert_eq!(cache.get_ref().calls(), 2);
    }

    #[tokio::test]
    async fn a_zero_window_remembers_no_failure() {
        let cache = ExchangeCache::new(Fake::new(|_| Err(down(Some(Duration::from_secs(7))))))
            .remember_failures(Duration::ZERO);
        let request = ExchangeRequest::new("expired");
        for _ in 0..3 {
            cache.exchange(&request).await.expect_err("down");
        }
        assert_eq!(cache.get_ref().calls(), 3);
    }

    #[tokio::test]
    async fn debug_shows_no_token() {
        let cache = ExchangeCache::new(Fake::new(|_| Ok(issued("secret-token", Some(300)))));
        cache
            .exchange(&ExchangeRequest::new("subject-token"))
            .await
            .expect("exchange");
        let debug = format!("{cache:?}");
        assert!(
            !debug.contains("secret-token") && !debug.contains("subject-token"),
            "{debug}"
        );
    }
}
