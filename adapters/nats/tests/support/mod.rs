//! Shared support for the NATS integration tests: the server (skipped
//! loudly when unreachable, a failure under `CI=true`), unique names,
//! tokens signed with the root's key fixtures, and small waiting helpers.
#![allow(dead_code, unreachable_pub)]

pub use jwt_relay_test_support as common;
pub mod js;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::PullConsumer, stream};
use async_nats::{Client, HeaderMap};
use jwt_relay::{AuthContext, Backoff, Guard, Issuer, KeySet, Verifier};
use jwt_relay_nats::async_nats;
use tokio::sync::oneshot;

pub use common::{Signer, claims};

/// The issuer of every test token.
pub const ISS: &str = "https://id.nats.test";
/// The audience the consumers accept.
pub const AUD: &str = "orders";

/// `NATS_URL`, else the local server.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A client of the test server; `None` (after saying so on stderr) when it
/// is unreachable, except under `CI=true`, where that fails the test
/// ([`jwt_relay::testing::broker_available`]).
pub async fn connect() -> Option<Client> {
    let url = nats_url();
    if !jwt_relay::testing::broker_available("NATS", &url) {
        return None;
    }
    let options = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(2));
    let client = tokio::time::timeout(Duration::from_secs(3), options.connect(url.as_str()))
        .await
        .expect("the NATS server answers within 3 s")
        .expect("the NATS server accepts the connection");
    Some(client)
}

/// A name no other test (or run) uses: letters, digits and `_`, valid for
/// streams, consumers and subject tokens.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// Trusts the fixture key set for [`ISS`] and [`AUD`], with no leeway, so a
/// token expires the second its `exp` passes.
pub fn verifier() -> Verifier {
    let keys = KeySet::from_jwks(&common::fixture("jwks.json")).expect("the fixture key set");
    Verifier::builder()
        .issuer(Issuer::new(ISS).audience(AUD).leeway(Duration::ZERO).keys(keys))
        .build()
        .expect("the verifier builds")
}

/// The backoff of the tests: short.
pub fn backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_millis(500))
}

/// A guard over [`verifier`] with a short backoff.
pub fn guard() -> Guard {
    Guard::builder(verifier()).backoff(backoff()).build()
}

/// A token of `sub` for [`AUD`], expiring in `ttl` seconds (negative: expired).
pub fn token(sub: &str, ttl: i64) -> String {
    Signer::rsa_a().sign(&claims(ISS, AUD, sub, ttl))
}

/// A token of `sub` for another audience.
pub fn wrong_audience(sub: &str) -> String {
    Signer::rsa_a().sign(&claims(ISS, "billing", sub, 300))
}

/// `sub`'s claims under the signature of another token: a forgery.
pub fn forged(sub: &str) -> String {
    let real = token(&format!("not-{sub}"), 300);
    let wanted = token(sub, 300);
    let signature = real.rsplit('.').next().unwrap_or_default();
    let (signed_part, _) = wanted.rsplit_once('.').expect("a compact JWS");
    format!("{signed_part}.{signature}")
}

/// `Authorization: Bearer <token>` and `x-id: <id>`.
pub fn headers(token: Option<&str>, id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(token) = token {
        headers.insert("Authorization", format!("Bearer {token}").as_str());
    }
    headers.insert("x-id", id);
    headers
}

/// The verified context of a fresh token of `sub` (as an HTTP edge would
/// hold it).
pub async fn user(sub: &str, ttl: i64) -> AuthContext {
    verifier()
        .verify(&token(sub, ttl))
        .await
        .expect("the token verifies")
}

/// Waits until `done` holds, checking every 50 ms; `false` after `timeout`.
pub async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

/// A shutdown signal: fire the sender, and the future completes.
pub fn shutdown() -> (oneshot::Sender<()>, impl Future<Output = ()> + Send + 'static) {
    let (tx, rx) = oneshot::channel();
    (tx, async move {
        let _ = rx.await;
    })
}

/// A durable pull consumer on `stream` with explicit acks.
pub async fn pull_consumer(
    stream: &stream::Stream,
    name: &str,
    configure: impl FnOnce(&mut jetstream::consumer::pull::Config),
) -> PullConsumer {
    let mut config = jetstream::consumer::pull::Config {
        durable_name: Some(name.to_owned()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ..Default::default()
    };
    configure(&mut config);
    stream
        .create_consumer(config)
        .await
        .expect("the consumer is created")
}

/// Every message stored in the stream `name`, in order.
pub async fn stored(js: &jetstream::Context, name: &str) -> Vec<jetstream::message::StreamMessage> {
    let mut stream = js.get_stream(name).await.expect("the stream exists");
    let state = stream.info().await.expect("stream info").state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        if let Ok(message) = stream.get_raw_message(seq).await {
            out.push(message);
        }
    }
    out
}

/// The value of `name` in a stored message's headers.
pub fn header(message: &jetstream::message::StreamMessage, name: &str) -> Option<String> {
    message.headers.get(name).map(|v| v.as_str().to_owned())
}

/// Whether a stored message has a header named `name` in any casing.
pub fn has_header_any_casing(message: &jetstream::message::StreamMessage, name: &str) -> bool {
    message
        .headers
        .iter()
        .any(|(n, _)| AsRef::<str>::as_ref(n).eq_ignore_ascii_case(name))
}
