//! Secrets never leak. The main paths run with every `tracing` event and span captured at TRACE
//! level: a publish in the user's scope, an accepted message, a forged one dead-lettered, an
//! expired one exchanged, an exchange the service refuses, a failing handler, an unreachable
//! key set, and a publish without an identity. Then the captured text, the errors, the `Debug`
//! output of what was involved, and the dead-lettered copies are searched for every token's
//! signature, the signing key's private part and the client secret. None may appear.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::consume::{MessageInfo, Outcome};
use jwt_relay::exchange::{ClientAuth, ExchangeCache};
use jwt_relay::memory::{MemoryBroker, MemoryConsumer, MemoryPublisher, Received};
use jwt_relay::testing::{DevSts, DevStsConfig, PrivateKey};
use jwt_relay::verify::now_unix;
use jwt_relay::{Algorithm, Backoff, Exchange, Guard, Headers, Propagator, Rfc8693Client, Verifier, scope};
use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// The part of a token that makes a copy usable: its signature.
fn signature(token: &str) -> String {
    token.rsplit('.').next().unwrap_or_default().to_owned()
}

fn bearer(token: &str) -> Headers {
    let mut headers = Headers::new();
    headers.append("Authorization", format!("Bearer {token}"));
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_signature_or_key_appears_in_logs_errors_debug_or_dead_letters() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let key = PrivateKey::generate(Algorithm::ES256).unwrap();
    let private = key.private_jwk("secrets-test", Algorithm::ES256).unwrap();
    const CLIENT_SECRET: &str = "client-secret-never-shown-7f3a";
    let sts = DevSts::start(
        DevStsConfig::default()
            .signing_key(private.to_string())
            .client("shipping", CLIENT_SECRET),
    )
    .await
    .unwrap();
    let mut secrets = vec![
        private["d"].as_str().unwrap().to_owned(),
        CLIENT_SECRET.to_owned(),
    ];
    let verifier = sts.verifier("shop").unwrap();
    let broker = MemoryBroker::new();
    let mut shown = Vec::new();

    // A publish in the user's scope, and its message accepted.
    let good = sts.mint("alice", "shop", Duration::from_secs(300));
    secrets.push(signature(&good));
    let alice = verifier.verify(&good).await.unwrap();
    shown.push(format!("{alice:?}"));
    let publisher = MemoryPublisher::new(broker.clone(), Propagator::default());
    scope(alice, publisher.publish("orders", Headers::new(), "good", None))
        .await
        .unwrap();
    // Published raw: a forged token, an expired one the service will exchange, one expired too
    // long ago for it to exchange, and one whose handler fails.
    let forged = format!("{}.{}", good.rsplit_once('.').unwrap().0, "A".repeat(86));
    let now = now_unix();
    let expired = |ago: i64| {
        sts.mint_claims(json!({
            "iss": sts.issuer(), "aud": "shop", "sub": "bob", "iat": now - ago - 60, "exp": now - ago,
        }))
    };
    let (exchangeable, too_old) = (expired(60), expired(86_400));
    let failing = sts.mint("carol", "shop", Duration::from_secs(300));
    for (token, payload) in [
        (&forged, "forged"),
        (&exchangeable, "exchangeable"),
        (&too_old, "too old"),
        (&failing, "failing"),
    ] {
        secrets.push(signature(token));
        broker.publish("orders", bearer(token), payload);
    }

    let client = Rfc8693Client::builder(sts.token_endpoint())
        .client_auth(ClientAuth::ClientSecretBasic {
            client_id: "shipping".into(),
            client_secret: CLIENT_SECRET.into(),
        })
        .max_attempts(1)
        .build()
        .unwrap();
    shown.push(format!("{client:?}"));
    let guard = Guard::builder(verifier.clone())
        .policy(Exchange::new(Arc::new(ExchangeCache::new(client))).audience("shop"))
        .record_subject(true)
        .build();
    shown.push(format!("{guard:?} {verifier:?} {sts:?}"));
    let fresh = Arc::new(Mutex::new(Vec::new()));
    let seen = fresh.clone();
    let report = MemoryConsumer::new(broker.clone(), "orders", guard)
        .max_attempts(2)
        .backoff(Backoff::new(Duration::from_millis(1), Duration::from_millis(5)))
        .run_until_idle(move |delivery: Received| {
            let context = delivery.context();
            seen.lock().unwrap().push(context.token().to_owned());
            let fails = delivery.payload() == b"failing";
            async move {
                if fails {
                    Err("the handler failed".to_owned())
                } else {
                    Ok(())
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(
        (report.accepted, report.dead_lettered),
        (2, 3),
        "good and exchanged accepted; forged, too old and failing dead-lettered"
    );
    // The exchanged token is a secret too.
    secrets.extend(fresh.lock().unwrap().iter().map(|token| signature(token)));
    assert!(secrets.len() >= 8);

    // A key set nobody serves: a transient refusal.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/jwks.json", listener.local_addr().unwrap())
    };
    let unreachable = Verifier::builder()
        .issuer(
            jwt_relay::Issuer::new(sts.issuer())
                .audience("shop")
                .jwks_url(closed),
        )
        .build()
        .unwrap();
    match Guard::new(unreachable)
        .check(&bearer(&good), &MessageInfo::new("orders"))
        .await
    {
        Outcome::Retry(error, _) => shown.push(format!("{error} {error:?}")),
        other => panic!("an unreachable key set is transient: {other:?}"),
    }
    // A publish without an identity.
    let anonymous = publisher
        .publish("orders", Headers::new(), "x", None)
        .await
        .unwrap_err();
    shown.push(format!("{anonymous} {anonymous:?}"));

    for letter in broker.dead_letters("orders") {
        for (name, value) in letter.headers.iter() {
            shown.push(format!("{name}: {}", String::from_utf8_lossy(value)));
        }
        shown.push(String::from_utf8_lossy(&letter.payload).into_owned());
    }
    sts.shutdown().await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("jwt_relay.consume"),
        "the capture saw the consume spans"
    );
    assert!(logs.contains("BadSignature"), "and the refusals");
    let everything = format!("{logs}\n{}", shown.join("\n"));
    for secret in &secrets {
        assert!(secret.len() >= 16);
        assert!(
            !everything.contains(secret.as_str()),
            "a secret appears in the logs, an error, a Debug output or a dead letter"
        );
    }
}
