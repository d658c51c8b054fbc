//! Shared support for the workspace's integration tests: fixture loading and token minting
//! ([`Signer`], [`claims`]), a local identity provider serving a key set ([`jwks_server`]), and
//! for the many-instance tests, a TCP [`Forwarder`] that cuts an instance off its broker as a
//! kill would, and a [`Ledger`] of what the instances' handlers did. Not published.
//!
//! The key material lives in `tests/fixtures/` at the workspace root (see
//! `tests/fixtures/README.md`). Tests import it as `use jwt_relay_test_support as common;`.
//!
//! Tokens are built by hand (header JSON + claims JSON, base64url, then
//! `jsonwebtoken::crypto::sign`). This lets tests put anything in the header,
//! including headers whose `alg` does not match the signing key.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

mod forwarder;
pub mod jwks_server;
mod ledger;

pub use forwarder::{Forwarder, KillSwitch};
pub use ledger::{Handled, Ledger};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey};
use serde_json::{Value, json};

/// Directory holding the committed key fixtures.
pub const FIXTURES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/");

/// Raw bytes of `tests/fixtures/<name>` (e.g. `"rsa2048-a.pub.pem"`,
/// `"jwks.json"`, `"private/rsa-a.jwk.json"`). Panics if it is missing.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{FIXTURES_DIR}{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {path}: {e}"))
}

/// A fixture as UTF-8 text.
pub fn fixture_str(name: &str) -> String {
    String::from_utf8(fixture(name)).expect("fixture is not UTF-8")
}

/// Decoded bytes of a base64url (no padding) secret fixture, e.g.
/// `"hs256.secret"` (48 bytes) or `"hs-short.secret"` (16 bytes).
pub fn hmac_secret(name: &str) -> Vec<u8> {
    let text = fixture_str(name);
    URL_SAFE_NO_PAD
        .decode(text.trim())
        .expect("secret fixture is not base64url without padding")
}

/// Current Unix time in seconds.
pub fn now() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("system clock before 1970");
    i64::try_from(d.as_secs()).expect("time overflows i64")
}

/// Base64url (no padding) of arbitrary bytes.
pub fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// JWS `alg` name of an algorithm, e.g. `"RS256"`.
pub fn alg_name(alg: Algorithm) -> String {
    match serde_json::to_value(alg).expect("Algorithm serializes") {
        Value::String(s) => s,
        other => panic!("unexpected Algorithm serialization: {other}"),
    }
}

/// A fixture key plus the `alg` and `kid` it signs with.
#[derive(Clone, Debug)]
pub struct Signer {
    /// Algorithm used for the signature (and in the default header).
    pub alg: Algorithm,
    /// `kid` put in the default header; `None` leaves it out.
    pub kid: Option<String>,
    key: EncodingKey,
}

impl Signer {
    fn new(alg: Algorithm, kid: Option<&str>, key: EncodingKey) -> Self {
        Self {
            alg,
            kid: kid.map(str::to_owned),
            key,
        }
    }

    fn rsa_pem(file: &str) -> EncodingKey {
        EncodingKey::from_rsa_pem(&fixture(file)).expect("RSA PEM fixture")
    }

    /// `rsa2048-a.pem`, RS256, kid `rsa-a`.
    pub fn rsa_a() -> Self {
        Self::new(Algorithm::RS256, Some("rsa-a"), Self::rsa_pem("rsa2048-a.pem"))
    }

    /// `rsa2048-a.pem` with another RSA algorithm (RS384, RS512, PS256, ...),
    /// kid `rsa-a`. Panics if `alg` is not in the RSA family.
    pub fn rsa_a_with(alg: Algorithm) -> Self {
        assert_eq!(
            alg.family(),
            AlgorithmFamily::Rsa,
            "rsa_a_with needs an RSA algorithm"
        );
        Self::new(alg, Some("rsa-a"), Self::rsa_pem("rsa2048-a.pem"))
    }

    /// `rsa2048-b.pem`, PS256, kid `rsa-b` (the rotation key).
    pub fn rsa_b() -> Self {
        Self::new(Algorithm::PS256, Some("rsa-b"), Self::rsa_pem("rsa2048-b.pem"))
    }

    /// `ec256.pem` (P-256), ES256, kid `ec256`.
    pub fn ec256() -> Self {
        let key = EncodingKey::from_ec_pem(&fixture("ec256.pem")).expect("EC PEM fixture");
        Self::new(Algorithm::ES256, Some("ec256"), key)
    }

    /// `ec384.pem` (P-384), ES384, kid `ec384`.
    pub fn ec384() -> Self {
        let key = EncodingKey::from_ec_pem(&fixture("ec384.pem")).expect("EC PEM fixture");
        Self::new(Algorithm::ES384, Some("ec384"), key)
    }

    /// `ed25519.pem`, EdDSA, kid `ed25519`.
    pub fn ed25519() -> Self {
        let key = EncodingKey::from_ed_pem(&fixture("ed25519.pem")).expect("Ed25519 PEM fixture");
        Self::new(Algorithm::EdDSA, Some("ed25519"), key)
    }

    /// HS256 with the 48 decoded bytes of `hs256.secret`, no kid.
    pub fn hs256() -> Self {
        let key = EncodingKey::from_secret(&hmac_secret("hs256.secret")).expect("HMAC secret");
        Self::new(Algorithm::HS256, None, key)
    }

    /// HS256 with the 16 decoded bytes of `hs-short.secret` (too short; for
    /// rejection tests), no kid.
    pub fn hs_short() -> Self {
        let key = EncodingKey::from_secret(&hmac_secret("hs-short.secret")).expect("HMAC secret");
        Self::new(Algorithm::HS256, None, key)
    }

    /// Same key and algorithm with a different (or no) `kid`.
    pub fn with_kid(mut self, kid: Option<&str>) -> Self {
        self.kid = kid.map(str::to_owned);
        self
    }

    /// The default header: `{"alg":..,"typ":"JWT","kid":..}` (no `kid` if `None`).
    pub fn header(&self) -> Value {
        let mut h = json!({ "alg": alg_name(self.alg), "typ": "JWT" });
        if let Some(kid) = &self.kid {
            h["kid"] = Value::String(kid.clone());
        }
        h
    }

    /// Compact JWS of `claims` under the default header.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(&self.header(), claims)
    }

    /// Compact JWS with an arbitrary header. The signature always uses
    /// `self.alg` and this key, whatever the header's `alg` says.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let h = serde_json::to_vec(header).expect("header serializes");
        let p = serde_json::to_vec(claims).expect("claims serialize");
        self.sign_raw(&h, &p)
    }

    /// Compact JWS of the exact header and payload bytes given. Use this for
    /// hostile JSON (such as duplicate keys) that still carries a valid signature.
    pub fn sign_raw(&self, header_json: &[u8], payload_json: &[u8]) -> String {
        let signing_input = format!("{}.{}", b64url(header_json), b64url(payload_json));
        jwt_relay::verify::crypto_provider();
        let sig = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &self.key, self.alg)
            .expect("signing with fixture key");
        format!("{signing_input}.{sig}")
    }
}

/// Hand-built token `b64url(header_json).b64url(payload_json).signature_b64`.
/// The JSON strings go in byte-for-byte, so they may contain duplicate keys
/// and the like. `signature_b64` is used exactly as given.
pub fn raw_token(header_json: &str, payload_json: &str, signature_b64: &str) -> String {
    format!(
        "{}.{}.{}",
        b64url(header_json),
        b64url(payload_json),
        signature_b64
    )
}

/// Claims `{iss, aud, sub, iat: now, exp: now + ttl_secs}`. A negative
/// `ttl_secs` gives an already-expired token.
pub fn claims(iss: &str, aud: &str, sub: &str, ttl_secs: i64) -> Value {
    let iat = now();
    json!({ "iss": iss, "aud": aud, "sub": sub, "iat": iat, "exp": iat + ttl_secs })
}
