//! The hostile corpus every broker test publishes (`jwt_relay::testing::hostile`), checked
//! against the guard itself: each class is refused with its kind, as permanent (dead-letter,
//! never retry), and no refusal shows the token it refused.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use jwt_relay::consume::{MessageInfo, Outcome};
use jwt_relay::testing::{DevSts, DevStsConfig, hostile};
use jwt_relay::{ErrorClass, Guard, Headers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_class_is_refused_with_its_kind_and_never_shown() {
    let sts = DevSts::start(DevStsConfig::default()).await.unwrap();
    let verifier = sts.verifier("orders").unwrap();
    let guard = Guard::new(verifier);
    // Minted before the key set is loaded, as messages waiting for a consumer: a token issued
    // after the set was fetched could carry a key rotated in since, so an unknown kid is
    // retried until the next fetch (tests/remote_jwks.rs); these are final at once.
    let corpus = hostile(&sts, "orders");
    // A good token first: the key set is loaded, as in a running consumer.
    let mut good = Headers::new();
    good.append(
        "Authorization",
        format!("Bearer {}", sts.mint("alice", "orders", Duration::from_secs(60))),
    );
    assert!(matches!(
        guard.check(&good, &MessageInfo::new("orders")).await,
        Outcome::Accept(_)
    ));

    assert!(corpus.len() >= 24, "{} classes", corpus.len());
    let mut wrong = Vec::new();
    for case in &corpus {
        let mut headers = Headers::new();
        for (name, value) in &case.headers {
            headers.append(name.clone(), value.clone());
        }
        match guard.check(&headers, &MessageInfo::new("orders")).await {
            Outcome::Reject(error) => {
                if error.kind() != case.kind || error.class() != ErrorClass::Permanent {
                    wrong.push(format!(
                        "{}: {:?}/{:?}, expected {:?}/Permanent ({})",
                        case.name,
                        error.kind(),
                        error.class(),
                        case.kind,
                        error.message()
                    ));
                }
                let shown = format!("{error} {error:?} {case:?}");
                for (_, value) in &case.headers {
                    let value = String::from_utf8_lossy(value);
                    let token = value.trim_start_matches("Bearer ");
                    // The signature part is what would make a copy usable.
                    let tail = token.rsplit('.').next().unwrap_or_default();
                    if tail.len() >= 16 {
                        assert!(
                            !shown.contains(tail),
                            "{}: the refusal shows the token",
                            case.name
                        );
                    }
                }
            }
            other => wrong.push(format!("{}: {other:?}, expected a rejection", case.name)),
        }
    }
    assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
    sts.shutdown().await;
}
