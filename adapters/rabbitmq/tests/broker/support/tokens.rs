//! Tokens signed with the fixed test keys of `tests/fixtures/` (in the workspace root), and
//! verifiers that trust them.

use jwt_relay::jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use jwt_relay::verify::{RemoteOptions, now_unix};
use jwt_relay::{Issuer, KeySet, Verifier};
use serde_json::{Value, json};

/// The issuer of every test token.
pub const ISSUER: &str = "https://id.jwt-relay.test";
/// The audience the consumers under test accept.
pub const AUDIENCE: &str = "invoices";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {path}: {e}"))
}

/// The public JWKS holding `rsa-a`.
pub fn jwks() -> Vec<u8> {
    fixture("jwks-rsa-a.json")
}

fn sign(pem: &str, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(&fixture(pem)).expect("RSA fixture");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-a".to_owned());
    encode(&header, claims, &key).expect("signing")
}

/// Claims of `sub` for `aud`, expiring `ttl` seconds from now (negative: already expired).
pub fn claims(sub: &str, aud: &str, ttl: i64) -> Value {
    let now = now_unix();
    json!({ "iss": ISSUER, "aud": aud, "sub": sub, "iat": now.min(now + ttl), "exp": now + ttl })
}

/// A valid token of `sub` for the consumers under test.
pub fn token(sub: &str) -> String {
    sign("rsa2048-a.pem", &claims(sub, AUDIENCE, 300))
}

/// A token whose claims are `claims`, properly signed.
pub fn token_with(claims: &Value) -> String {
    sign("rsa2048-a.pem", claims)
}

/// A token of `sub` claiming key `rsa-a` but signed with another key.
pub fn forged(sub: &str) -> String {
    sign("rsa2048-b.pem", &claims(sub, AUDIENCE, 300))
}

/// A verifier trusting the fixture key set, read once.
pub fn verifier() -> Verifier {
    let keys = KeySet::from_jwks(&jwks()).expect("fixture JWKS");
    Verifier::builder()
        .issuer(Issuer::new(ISSUER).audience(AUDIENCE).keys(keys))
        .build()
        .expect("verifier")
}

/// A verifier fetching its keys from `url`, retrying a failed fetch after 100 ms.
pub fn remote_verifier(url: &str) -> Verifier {
    let options = RemoteOptions::default().cooldown(std::time::Duration::from_millis(100));
    Verifier::builder()
        .issuer(Issuer::new(ISSUER).audience(AUDIENCE).jwks_url_with(url, options))
        .build()
        .expect("verifier")
}
