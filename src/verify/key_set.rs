//! A set of keys, and the JWKS documents (RFC 7517 §5) they come from.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde_json::Value;

use crate::error::{Error, ErrorKind, Result, quote};
use crate::verify::key::{Key, KeyOrigin, Parsed, parse_jwk};

/// The keys of one issuer, each pinned to its algorithm, found by `kid`.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Arc<Key>>,
    by_kid: HashMap<String, usize>,
}

impl KeySet {
    /// A set of the given keys. Two keys with the same `kid` are an error.
    pub fn new(keys: impl IntoIterator<Item = Key>) -> Result<KeySet> {
        let mut set = KeySet::default();
        for key in keys {
            if let Some(kid) = key.kid()
                && set.by_kid.insert(kid.to_owned(), set.keys.len()).is_some()
            {
                return Err(Error::new(
                    ErrorKind::InvalidKey,
                    format!("key id {} appears twice in the key set", quote(kid)),
                ));
            }
            set.keys.push(Arc::new(key));
        }
        Ok(set)
    }

    /// The keys of a JWKS document from our own configuration (a file).
    /// A key we refuse (weak, wrong curve) is an error; a key that is not
    /// for signatures (`use: enc`, unknown `kty`) is skipped with a warning.
    pub fn from_jwks(json: &[u8]) -> Result<KeySet> {
        parse_jwks(json, KeyOrigin::Local, true)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, in document order.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter().map(|k| k.as_ref())
    }

    /// The key for a token: by `kid` when the token names one; without a
    /// `kid`, the set's only key, or else its only key of the token's
    /// algorithm.
    pub(crate) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<Key>> {
        match kid {
            Some(kid) => self.by_kid.get(kid).map(|i| self.keys[*i].clone()),
            None if self.keys.len() == 1 => self.keys.first().cloned(),
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.algorithm() == alg);
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Some(key.clone()),
                    _ => None,
                }
            }
        }
    }
}

/// What became of one JWK of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwkCheck {
    /// The key's `kid`, if it has one.
    pub kid: Option<String>,
    /// The key's `kty`, if it has one.
    pub kty: Option<String>,
    /// Accepted, skipped or rejected.
    pub outcome: JwkOutcome,
}

/// The verdict on one JWK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwkOutcome {
    /// Usable for signatures with this algorithm.
    Accepted(Algorithm),
    /// Not a signature key (`use: enc`, unknown `kty`): ignored.
    Skipped(String),
    /// A signature key we refuse (weak, or one that could never verify), and why.
    Rejected(String),
}

/// Checks every key of a JWKS document as a remote set would be checked
/// (`remote`: no secret keys) or as a local file. `Err` when the document
/// is not a JWKS or two accepted keys share a `kid` (a key that is skipped
/// or rejected may share one: RFC 7517 §4.5 lets an encryption key and a
/// signature key carry the same `kid`).
pub fn check_jwks(json: &[u8], remote: bool) -> Result<Vec<JwkCheck>> {
    let origin = if remote {
        KeyOrigin::Remote
    } else {
        KeyOrigin::Local
    };
    Ok(check(json, origin)?.into_iter().map(|(check, _)| check).collect())
}

fn check(json: &[u8], origin: KeyOrigin) -> Result<Vec<(JwkCheck, Option<Key>)>> {
    let doc: Value = serde_json::from_slice(json)
        .map_err(|e| Error::new(ErrorKind::InvalidKey, "the key set is not valid JSON").with_source(e))?;
    let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            "the key set has no `keys` array",
        ));
    };
    let mut out = Vec::with_capacity(keys.len());
    for jwk in keys {
        let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
        let kty = jwk.get("kty").and_then(Value::as_str).map(str::to_owned);
        let (outcome, key) = match parse_jwk(jwk, origin) {
            Ok(Parsed::Key(key)) => (JwkOutcome::Accepted(key.algorithm()), Some(key)),
            Ok(Parsed::Skipped(reason)) => (JwkOutcome::Skipped(reason), None),
            Err(reason) => (JwkOutcome::Rejected(reason), None),
        };
        out.push((JwkCheck { kid, kty, outcome }, key));
    }
    // Only the keys that verify must be told apart by `kid`: an encryption key may share its
    // signature key's `kid` (RFC 7517 §4.5), and a refused key is not in the set.
    let mut seen = HashSet::new();
    for (check, key) in &out {
        if key.is_some()
            && let Some(kid) = &check.kid
            && !seen.insert(kid.as_str())
        {
            return Err(Error::new(
                ErrorKind::InvalidKey,
                format!("key id {} appears twice in the key set", quote(kid)),
            ));
        }
    }
    Ok(out)
}

/// Parses a JWKS into a key set. With `strict`, a rejected key fails the
/// whole set (our own file); without, it is skipped with a warning (a remote
/// set must not stop working because its publisher added an odd key).
pub(crate) fn parse_jwks(json: &[u8], origin: KeyOrigin, strict: bool) -> Result<KeySet> {
    let mut keys = Vec::new();
    for (check, key) in check(json, origin)? {
        let kid = check
            .kid
            .as_deref()
            .map_or_else(|| "without kid".to_owned(), quote);
        match check.outcome {
            JwkOutcome::Accepted(_) => keys.extend(key),
            JwkOutcome::Skipped(reason) => {
                tracing::warn!(kid = %kid, %reason, "skipping a JWK that is not a signature key")
            }
            JwkOutcome::Rejected(reason) if strict => {
                return Err(Error::new(ErrorKind::InvalidKey, format!("key {kid}: {reason}")));
            }
            JwkOutcome::Rejected(reason) => {
                tracing::warn!(kid = %kid, %reason, "skipping a JWK that is refused")
            }
        }
    }
    KeySet::new(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const X32: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    /// The public key of `tests/fixtures/ed25519.pem`.
    const ED25519_X: &str = "umjiozaFEu2omctSHZ_wuzWMi9JfI3xFObPkUcPwsuM";

    fn ed(kid: &str) -> String {
        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{ED25519_X}","kid":"{kid}"}}"#)
    }

    #[test]
    fn an_encryption_key_may_share_the_kid_of_a_signature_key() {
        // RFC 7517 §4.5: the same `kid` on an encryption key and on a signature key.
        let enc = r#"{"kty":"RSA","use":"enc","kid":"a","n":"AQAB","e":"AQAB"}"#;
        let no_verify = r#"{"kty":"OKP","crv":"Ed25519","key_ops":["sign"],"kid":"a","x":"AA"}"#;
        for other in [enc, no_verify] {
            for doc in [
                format!(r#"{{"keys":[{other},{}]}}"#, ed("a")),
                format!(r#"{{"keys":[{},{other}]}}"#, ed("a")),
            ] {
                let set = parse_jwks(doc.as_bytes(), KeyOrigin::Remote, false).expect(&doc);
                let key = set.find(Some("a"), Algorithm::EdDSA).expect("the signature key");
                assert_eq!(key.algorithm(), Algorithm::EdDSA);
                assert_eq!(KeySet::from_jwks(doc.as_bytes()).expect(&doc).len(), 1);
            }
        }
        // A refused signature key does not make its kid ambiguous either.
        let weak =
            r#"{"kty":"OKP","crv":"Ed25519","kid":"a","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#;
        let doc = format!(r#"{{"keys":[{weak},{}]}}"#, ed("a"));
        let set = parse_jwks(doc.as_bytes(), KeyOrigin::Remote, false).unwrap();
        assert!(set.find(Some("a"), Algorithm::EdDSA).is_some());
        let checks = check_jwks(doc.as_bytes(), true).unwrap();
        assert!(matches!(&checks[0].outcome, JwkOutcome::Rejected(why) if why.contains("small-order")));
        assert_eq!(checks[1].outcome, JwkOutcome::Accepted(Algorithm::EdDSA));
    }

    #[test]
    fn duplicate_kid_fails_the_set() {
        let doc = format!(r#"{{"keys":[{},{}]}}"#, ed("a"), ed("a"));
        let e = KeySet::from_jwks(doc.as_bytes()).unwrap_err();
        assert!(e.message().contains("`a` appears twice"), "{e}");
    }

    #[test]
    fn unknown_kty_is_skipped_not_fatal() {
        let doc = format!(r#"{{"keys":[{{"kty":"PQC","kid":"q"}},{}]}}"#, ed("a"));
        let set = KeySet::from_jwks(doc.as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
        let checks = check_jwks(doc.as_bytes(), true).unwrap();
        assert!(matches!(checks[0].outcome, JwkOutcome::Skipped(_)));
        assert_eq!(checks[1].outcome, JwkOutcome::Accepted(Algorithm::EdDSA));
    }

    #[test]
    fn remote_sets_skip_refused_keys_local_files_fail() {
        let doc = format!(
            r#"{{"keys":[{{"kty":"oct","k":"{X32}","kid":"s"}},{}]}}"#,
            ed("a")
        );
        assert_eq!(
            parse_jwks(doc.as_bytes(), KeyOrigin::Remote, false)
                .unwrap()
                .len(),
            1
        );
        assert!(
            check_jwks(doc.as_bytes(), true).unwrap()[0].outcome != JwkOutcome::Accepted(Algorithm::HS256)
        );
        // Locally an oct key is fine (32 bytes).
        assert_eq!(KeySet::from_jwks(doc.as_bytes()).unwrap().len(), 2);
        let bad = r#"{"keys":[{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}]}"#;
        assert_eq!(
            KeySet::from_jwks(bad.as_bytes()).unwrap_err().kind(),
            ErrorKind::InvalidKey
        );
    }

    #[test]
    fn find_without_kid_needs_exactly_one_key_of_the_algorithm() {
        let one = KeySet::from_jwks(format!(r#"{{"keys":[{}]}}"#, ed("a")).as_bytes()).unwrap();
        assert!(one.find(None, Algorithm::EdDSA).is_some());
        // The only key is found whatever the token says, so that a switched
        // algorithm is reported as a mismatch, not as an unknown key.
        assert!(one.find(None, Algorithm::ES256).is_some());
        assert!(one.find(Some("b"), Algorithm::EdDSA).is_none());
        let two = KeySet::from_jwks(format!(r#"{{"keys":[{},{}]}}"#, ed("a"), ed("b")).as_bytes()).unwrap();
        assert!(two.find(None, Algorithm::EdDSA).is_none());
        assert!(two.find(Some("b"), Algorithm::EdDSA).is_some());
    }

    #[test]
    fn not_a_jwks() {
        assert!(KeySet::from_jwks(b"[]").is_err());
        assert!(KeySet::from_jwks(b"{").is_err());
    }
}
