//! The crypto backend, in whatever feature combination the build has: Cargo features add up, so
//! both backends may be on, where jsonwebtoken alone cannot choose and panics on its first
//! signature. jwt-relay's first signature check chooses (aws-lc-rs whenever its feature is on)
//! and verifies.
//!
//! One test in this binary: it must be the first in its process to reach jsonwebtoken's
//! process-wide provider, so the tokens are signed through a backend's provider directly.

#![allow(clippy::unwrap_used)]

use jwt_relay_test_support as common;

use common::{alg_name, b64url, claims, fixture, raw_token};
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::{Algorithm, EncodingKey};
use jwt_relay::{Issuer, KeySet, Verifier};
use serde_json::json;

const ISS: &str = "https://id.example.com";
const AUD: &str = "orders";

/// The backend the tokens are signed with, called directly: nothing is installed. With both
/// features on, RustCrypto signs and aws-lc-rs verifies.
#[cfg(feature = "rust-crypto")]
static SIGNING: &CryptoProvider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
#[cfg(not(feature = "rust-crypto"))]
static SIGNING: &CryptoProvider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;

/// A token of `sub` signed with `key` under `alg`, naming the `kid` of its key in `jwks.json`.
fn token(key: &EncodingKey, alg: Algorithm, kid: &str, sub: &str) -> String {
    let header = json!({"alg": alg_name(alg), "typ": "JWT", "kid": kid}).to_string();
    let payload = claims(ISS, AUD, sub, 300).to_string();
    let input = format!("{}.{}", b64url(&header), b64url(&payload));
    let signature = (SIGNING.signer_factory)(&alg, key)
        .unwrap()
        .try_sign(input.as_bytes())
        .unwrap();
    raw_token(&header, &payload, &b64url(signature))
}

#[tokio::test]
async fn rs256_and_es256_verify_whichever_backends_are_on() {
    let rsa = EncodingKey::from_rsa_pem(&fixture("rsa2048-a.pem")).unwrap();
    let ec = EncodingKey::from_ec_pem(&fixture("ec256.pem")).unwrap();
    let rs256 = token(&rsa, Algorithm::RS256, "rsa-a", "alice");
    let es256 = token(&ec, Algorithm::ES256, "ec256", "bob");
    let keys = KeySet::from_jwks(&fixture("jwks.json")).unwrap();
    let verifier = Verifier::builder()
        .issuer(Issuer::new(ISS).audience(AUD).keys(keys))
        .build()
        .unwrap();
    #[cfg(all(feature = "aws-lc-rs", feature = "rust-crypto"))]
    assert!(
        CryptoProvider::try_get_default().is_none(),
        "with both backends on, jsonwebtoken has none until jwt-relay installs one"
    );

    let alice = verifier.verify(&rs256).await.expect("the RS256 token verifies");
    let bob = verifier.verify(&es256).await.expect("the ES256 token verifies");
    assert_eq!(
        (alice.subject(), alice.algorithm()),
        (Some("alice"), Algorithm::RS256)
    );
    assert_eq!((bob.subject(), bob.algorithm()), (Some("bob"), Algorithm::ES256));
    let (input, signature) = rs256.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{input}.{flipped}{}", &signature[1..]);
    let refused = verifier
        .verify(&forged)
        .await
        .expect_err("a changed signature is refused");
    assert_eq!(refused.kind(), jwt_relay::ErrorKind::BadSignature);

    let installed = CryptoProvider::try_get_default().map(std::ptr::from_ref);
    #[cfg(feature = "aws-lc-rs")]
    let chosen: &CryptoProvider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
    #[cfg(not(feature = "aws-lc-rs"))]
    let chosen: &CryptoProvider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
    assert_eq!(
        installed,
        Some(std::ptr::from_ref(chosen)),
        "aws-lc-rs whenever its feature is on"
    );
    assert_eq!(
        installed,
        Some(std::ptr::from_ref(jwt_relay::verify::crypto_provider()))
    );
}
