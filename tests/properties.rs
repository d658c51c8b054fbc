//! Property tests on what a hostile publisher controls: arbitrary header entries through the
//! guard, arbitrary tokens through the verifier, arbitrary bytes as a key set. Nothing panics,
//! nothing verifies, and every refusal is a typed error of class permanent (or, for header
//! trouble, never a retry that would loop forever).
//!
//! The token endpoint's answers are covered the same way by the unit properties in
//! `src/exchange/client/response.rs`.

#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_relay::consume::{MessageInfo, Outcome};
use jwt_relay::verify::check_jwks;
use jwt_relay::{Algorithm, ErrorClass, Guard, Headers, Issuer, Key, KeySet, Verifier};
use proptest::prelude::*;

const SECRET: &[u8] = b"a property-test secret of 32+ bytes";

fn verifier() -> Verifier {
    Verifier::builder()
        .issuer(
            Issuer::new("https://id.example")
                .audience("orders")
                .key(Key::from_secret(SECRET, Algorithm::HS256).unwrap().with_kid("k1"))
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A header name a carrier could hold: the token header in several casings, or another.
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Authorization".to_owned()),
        Just("authorization".to_owned()),
        Just("AUTHORIZATION".to_owned()),
        "[a-zA-Z-]{1,16}",
    ]
}

/// Values that look like tokens often enough to reach the deeper checks.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        "(Bearer |bearer |Basic |)[A-Za-z0-9_=+/.-]{0,300}".prop_map(String::into_bytes),
        jws_like().prop_map(|t| format!("Bearer {t}").into_bytes()),
    ]
}

/// Three base64url parts, the first two JSON-ish.
fn jws_like() -> impl Strategy<Value = String> {
    let json = prop_oneof![
        r#"\{"alg":"(HS256|none|RS256|ES256|HS512)"(,"kid":"k1")?(,"typ":"JWT")?(,"crit":\["x"\])?\}"#,
        r#"\{"iss":"https://id.example","aud":"orders","exp":[0-9]{1,12}(,"exp":1)?\}"#,
        ".{0,60}",
    ];
    (json.clone(), json, prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(h, p, s)| {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(h),
            URL_SAFE_NO_PAD.encode(p),
            URL_SAFE_NO_PAD.encode(s)
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_headers_never_panic_and_never_pass_the_guard(
        entries in prop::collection::vec((header_name(), header_value()), 0..4),
    ) {
        let guard = Guard::new(verifier());
        let mut headers = Headers::new();
        for (name, value) in entries {
            headers.append(name, value);
        }
        let outcome = runtime().block_on(guard.check(&headers, &MessageInfo::new("orders")));
        match outcome {
            Outcome::Reject(error) => prop_assert_eq!(error.class(), ErrorClass::Permanent),
            other => prop_assert!(false, "not a rejection: {:?}", other),
        }
    }

    #[test]
    fn arbitrary_tokens_never_verify(token in prop_oneof![".{0,400}", jws_like()]) {
        let verifier = verifier();
        let verified = runtime().block_on(verifier.verify(&token));
        prop_assert!(verified.is_err());
        let error = verified.unwrap_err();
        prop_assert_eq!(error.class(), ErrorClass::Permanent);
        prop_assert!(error.message().len() < 1_000);
    }

    #[test]
    fn arbitrary_key_sets_never_panic(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..600),
            r#"\{"keys":\[(\{"kty":"(RSA|EC|oct|OKP)"(,"kid":"[a-z]{0,4}")?(,"alg":"[A-Z0-9]{0,6}")?(,"n":"[A-Za-z0-9_-]{0,40}")?(,"e":"AQAB")?(,"crv":"P-256")?(,"x":"[A-Za-z0-9_-]{0,44}")?(,"k":"[A-Za-z0-9_-]{0,44}")?\},?){0,3}\]\}"#
                .prop_map(String::into_bytes),
        ],
    ) {
        let _ = KeySet::from_jwks(&bytes);
        let _ = check_jwks(&bytes, true);
    }
}
