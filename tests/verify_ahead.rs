//! Tokens verified ahead of their message's turn (`Verifier::verify_ahead`): the check in
//! turn does not check the signature again, and still decides everything itself. Counted
//! through `jwt_relay_signature_checks_total`, with a recorder local to the test's thread and
//! a runtime on that thread, so that the task checking ahead records into it too.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use jwt_relay::consume::{MessageInfo, Outcome};
use jwt_relay::observe::SIGNATURE_CHECKS_TOTAL;
use jwt_relay::verify::{ReadAhead, now_unix};
use jwt_relay::{Algorithm, ErrorKind, Guard, Headers, Issuer, Key, KeySet, Verifier};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde_json::json;

const ISS: &str = "https://issuer.test";
const AUD: &str = "svc";
const SECRET: &[u8] = b"a secret of at least thirty-two bytes, for HS256";

fn verifier(cache: u64) -> Verifier {
    let key = Key::from_secret(SECRET, Algorithm::HS256).unwrap().with_kid("k1");
    Verifier::builder()
        .issuer(Issuer::new(ISS).audience(AUD).keys(KeySet::new([key]).unwrap()))
        .cache_capacity(cache)
        .build()
        .unwrap()
}

/// A token for `subject` expiring `exp_in` seconds from now (negative: expired).
fn token(subject: &str, exp_in: i64, secret: &[u8]) -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k1".to_owned());
    let claims =
        json!({"iss": ISS, "aud": AUD, "sub": subject, "iat": now_unix() - 60, "exp": now_unix() + exp_in});
    jwt_relay::verify::crypto_provider();
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret).unwrap()).unwrap()
}

fn headers(token: &str) -> Headers {
    let mut headers = Headers::new();
    headers.append("Authorization", format!("Bearer {token}"));
    headers
}

/// Signatures checked, ahead of their turn and in turn.
fn checks(snapshotter: &Snapshotter) -> (u64, u64) {
    let mut counts = (0, 0);
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        if key.name() != SIGNATURE_CHECKS_TOTAL {
            continue;
        }
        let ahead = key.labels().any(|l| l.key() == "ahead" && l.value() == "true");
        let DebugValue::Counter(n) = value else {
            panic!("{SIGNATURE_CHECKS_TOTAL} is a counter");
        };
        if ahead {
            counts.0 += n;
        } else {
            counts.1 += n;
        }
    }
    counts
}

/// Runs `test` on a runtime on this thread, with a recorder local to it.
fn recorded<F: Future<Output = ()>>(test: impl FnOnce() -> F) -> (u64, u64) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || runtime.block_on(test()));
    checks(&snapshotter)
}

#[test]
fn a_token_verified_ahead_is_not_checked_again_in_turn() {
    let counts = recorded(|| async {
        let verifier = verifier(100);
        let alice = token("alice", 600, SECRET);
        assert!(verifier.verify_ahead(&headers(&alice)), "started");
        assert!(!verifier.verify_ahead(&headers(&alice)), "already running");
        // In turn, while the check ahead has not run yet: it waits for it.
        let context = verifier.verify_headers(&headers(&alice)).await.unwrap();
        assert_eq!(context.subject(), Some("alice"));
        assert!(!verifier.verify_ahead(&headers(&alice)), "cached now");
    });
    assert_eq!(counts, (1, 0), "one signature check, ahead; none in turn");
}

#[test]
fn a_token_verified_ahead_and_finished_is_found_in_turn() {
    let counts = recorded(|| async {
        let verifier = verifier(100);
        let tokens: Vec<String> = (0..8).map(|i| token(&format!("user{i}"), 600, SECRET)).collect();
        for token in &tokens {
            assert!(verifier.verify_ahead(&headers(token)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        for (i, token) in tokens.iter().enumerate() {
            let context = verifier.verify(token).await.unwrap();
            assert_eq!(context.subject(), Some(format!("user{i}").as_str()));
        }
    });
    assert_eq!(counts, (8, 0));
}

#[test]
fn a_forged_token_verified_ahead_gets_its_precise_error_in_turn_without_a_second_check() {
    let counts = recorded(|| async {
        let verifier = verifier(100);
        let forged = token("mallory", 600, b"another secret of at least thirty-two bytes!!");
        assert!(verifier.verify_ahead(&headers(&forged)));
        let error = verifier.verify(&forged).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadSignature);
        assert!(error.to_string().contains("`k1`"), "{error}");
        assert!(!error.to_string().contains(&forged[..20]), "no token in {error}");
    });
    assert_eq!(
        counts,
        (1, 0),
        "a forged token in a backlog costs one signature check, not two"
    );
}

#[test]
fn an_expired_token_verified_ahead_still_goes_to_the_expiry_policy_in_turn() {
    let counts = recorded(|| async {
        let guard = Guard::new(verifier(100));
        let expired = token("bob", -30, SECRET);
        assert!(guard.verifier().verify_ahead(&headers(&expired)));
        let info = MessageInfo::new("orders");
        match guard.check(&headers(&expired), &info).await {
            Outcome::Reject(reason) => assert_eq!(reason.kind(), ErrorKind::Expired),
            other => panic!("the default policy rejects an expired token: {other:?}"),
        }
    });
    assert_eq!(counts, (1, 0), "its signature was checked ahead only");
}

#[test]
fn nothing_is_started_without_a_cache_a_token_or_a_runtime() {
    let alice = token("alice", 600, SECRET);
    assert!(!verifier(100).verify_ahead(&headers(&alice)), "outside a runtime");
    let counts = recorded(|| async {
        assert!(!verifier(0).verify_ahead(&headers(&alice)), "no cache to fill");
        assert!(!verifier(100).verify_ahead(&Headers::new()), "no token");
        let shared = verifier(100);
        shared.verify(&alice).await.unwrap();
        assert!(!shared.verify_ahead(&headers(&alice)), "already cached");
    });
    assert_eq!(counts, (0, 1));
}

#[test]
fn reading_ahead_looks_at_every_new_token_and_at_one_in_sixteen_cached_ones() {
    let counts = recorded(|| async {
        let verifier = verifier(100);
        let mut ahead = ReadAhead::new(verifier.clone());
        // A stream of new tokens: each offer starts a verification.
        for i in 0..20 {
            assert!(
                ahead.offer(&headers(&token(&format!("user{i}"), 600, SECRET))),
                "offer {i}"
            );
        }
        // A stream sharing one token: found running or cached, and after 16 of those only one
        // offer in 16 is looked at.
        let shared = headers(&token("alice", 600, SECRET));
        assert!(ahead.offer(&shared));
        for _ in 0..40 {
            assert!(!ahead.offer(&shared));
        }
        // 40 offers found nothing to do: a new token now is passed over until 48 offers in a
        // row found or passed over nothing ...
        let bob = headers(&token("bob", 600, SECRET));
        for offer in 41..=48 {
            assert!(!ahead.offer(&bob), "offer {offer} is not looked at");
        }
        assert!(ahead.offer(&bob), "the next is");
        // ... and every offer is looked at again.
        assert!(ahead.offer(&headers(&token("carol", 600, SECRET))));
        tokio::task::yield_now().await;
        // Bob's token was verified once, ahead, whether or not an offer passed it over.
        verifier.verify_headers(&bob).await.unwrap();
    });
    assert_eq!(
        counts,
        (23, 0),
        "20 new tokens, alice's, bob's and carol's, all ahead"
    );
}
