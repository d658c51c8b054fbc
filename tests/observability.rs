//! Metrics and spans after a scripted run on the in-memory transport: one message accepted,
//! two rejected for different reasons, one retried and then exchanged, one exchanged at once.
//! The recorded metrics have exactly the expected values, and the captured spans carry the
//! expected fields and no token. One test in this binary: it owns the global recorder and the
//! global `tracing` subscriber.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::consume::{ExpiredToken, ExpiryPolicy as _, Outcome};
use jwt_relay::exchange::{ClientAuth, ExchangeCache};
use jwt_relay::memory::{MemoryBroker, MemoryConsumer, MemoryPublisher, Received};
use jwt_relay::observe::{
    EXCHANGE_SECONDS, EXCHANGES_TOTAL, JWKS_FETCHES_TOTAL, KEY_SET_AGE_SECONDS, MESSAGES_TOTAL,
    VERIFY_CACHE_TOTAL, VERIFY_SECONDS,
};
use jwt_relay::testing::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_KID, DevSts, DevStsConfig};
use jwt_relay::verify::now_unix;
use jwt_relay::{Error, ErrorKind, Exchange, Guard, Headers, Issuer, Propagator, Rfc8693Client, Verifier};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

const AUD: &str = "orders";

#[test]
fn a_scripted_run_records_exactly_what_happened() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tokens = runtime.block_on(scripted_run());

    // Metrics: exactly what happened.
    let metrics: HashMap<(String, Vec<(String, String)>), DebugValue> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (_, key) = key.into_parts();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            ((key.name().to_owned(), labels), value)
        })
        .collect();
    let counter = |name: &str, labels: &[(&str, &str)]| {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        match metrics.get(&(name.to_owned(), labels.clone())) {
            Some(DebugValue::Counter(n)) => *n,
            other => panic!("{name} {labels:?}: {other:?} in {:#?}", metrics.keys()),
        }
    };
    let message = |outcome: &str, kind: &str| {
        counter(
            MESSAGES_TOTAL,
            &[
                ("broker", "memory"),
                ("destination", "orders"),
                ("outcome", outcome),
                ("kind", kind),
            ],
        )
    };
    assert_eq!(message("accepted", "Verified"), 1);
    assert_eq!(message("dead_lettered", "BadSignature"), 1);
    assert_eq!(message("dead_lettered", "Missing"), 1);
    assert_eq!(message("retry", "ExchangeUnavailable"), 1);
    assert_eq!(message("accepted", "Exchanged"), 2);
    let series = metrics.keys().filter(|(name, _)| name == MESSAGES_TOTAL).count();
    assert_eq!(series, 5, "no other message series");
    assert_eq!(counter(EXCHANGES_TOTAL, &[("result", "issued")]), 2);
    assert_eq!(counter(JWKS_FETCHES_TOTAL, &[("result", "ok")]), 1);
    // Misses: alice, the forged one, bob's and carol's expired ones, their two fresh tokens, and
    // the token service's own checks of bob's and carol's (it verifies with this crate too);
    // hit: carol's expired token when her message came back.
    assert_eq!(counter(VERIFY_CACHE_TOTAL, &[("hit", "false")]), 8);
    assert_eq!(counter(VERIFY_CACHE_TOTAL, &[("hit", "true")]), 1);
    let histogram = |name: &str| match metrics.get(&(name.to_owned(), Vec::new())) {
        Some(DebugValue::Histogram(values)) => values.len(),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(histogram(VERIFY_SECONDS), 9);
    assert_eq!(histogram(EXCHANGE_SECONDS), 2);
    assert!(
        metrics
            .keys()
            .any(|(name, labels)| name == KEY_SET_AGE_SECONDS && labels[0].0 == "location"),
        "the key set's age is a gauge"
    );

    // Spans: one per consumed message, with what happened to it.
    let captured = spans.0.lock().unwrap();
    let spans = &captured.spans;
    let consumed: Vec<&HashMap<String, String>> = spans
        .iter()
        .filter(|(name, _)| name == "jwt_relay.consume")
        .map(|(_, fields)| fields)
        .collect();
    assert_eq!(consumed.len(), 6, "five messages, one of them twice");
    for fields in &consumed {
        assert_eq!(fields["broker"], "memory");
        assert_eq!(fields["destination"], "orders");
        assert!(!fields.contains_key("subject"), "no subject unless asked for");
    }
    let find = |outcome: &str, key: &str, value: &str| {
        consumed
            .iter()
            .filter(|f| f.get("outcome").map(String::as_str) == Some(outcome))
            .filter(|f| f.get(key).map(String::as_str) == Some(value))
            .count()
    };
    assert_eq!(find("accepted", "policy", "exchanged"), 2);
    assert_eq!(find("dead_lettered", "error_kind", "BadSignature"), 1);
    assert_eq!(find("dead_lettered", "error_class", "permanent"), 2);
    assert_eq!(find("retry", "policy", "retry"), 1);
    let accepted = consumed
        .iter()
        .find(|f| f.get("policy").is_none() && f.get("outcome").map(String::as_str) == Some("accepted"))
        .unwrap();
    assert_eq!(accepted["kid"], DEFAULT_KID);
    assert!(accepted["issuer"].starts_with("http://127.0.0.1:"));
    assert!(accepted["token_age_s"].parse::<i64>().unwrap() >= 0);
    let named = |name: &str, key: &str| -> Vec<String> {
        spans
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, f)| f.get(key).cloned().unwrap_or_default())
            .collect()
    };
    assert_eq!(named("jwt_relay.exchange", "result"), ["issued", "issued"]);
    assert_eq!(named("jwt_relay.jwks_fetch", "result"), ["ok"]);
    assert_eq!(named("jwt_relay.publish", "token"), ["forwarded"]);

    // No token, and no signature, anywhere in what was traced.
    let traced: String = spans.iter().map(|(_, f)| format!("{f:?}")).collect();
    for token in &tokens {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!traced.contains(signature), "a signature was traced");
    }
}

/// The scripted run; returns every token it used.
async fn scripted_run() -> Vec<String> {
    let sts = DevSts::start(DevStsConfig::default()).await.unwrap();
    let verifier = Verifier::builder()
        .issuer(Issuer::new(sts.issuer()).audience(AUD).jwks_url(sts.jwks_url()))
        .build()
        .unwrap();
    let client = Rfc8693Client::builder(sts.token_endpoint())
        .client_auth(ClientAuth::ClientSecretBasic {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
        })
        .build()
        .unwrap();
    let exchange = Exchange::new(Arc::new(ExchangeCache::new(client)));
    // Carol's first try finds the token service "down".
    let down_once = Arc::new(AtomicBool::new(true));
    let policy = move |expired: ExpiredToken| {
        let (exchange, down) = (exchange.clone(), down_once.clone());
        async move {
            if expired.context().subject() == Some("carol") && down.swap(false, Ordering::SeqCst) {
                let reason = Error::new(ErrorKind::ExchangeUnavailable, "the token service is down");
                return Outcome::Retry(reason, Duration::from_millis(10));
            }
            exchange.decide(expired).await
        }
    };
    let guard = Guard::builder(verifier).policy(policy).build();

    let now = now_unix();
    let expired = |sub: &str| {
        sts.mint_claims(json!({
            "iss": sts.issuer(), "aud": AUD, "sub": sub, "iat": now - 600, "exp": now - 60,
        }))
    };
    let alice = sts.mint("alice", AUD, Duration::from_secs(300));
    let forged = {
        let other = sts.mint("mallory", AUD, Duration::from_secs(300));
        let (body, _) = alice.rsplit_once('.').unwrap();
        format!("{body}.{}", other.rsplit_once('.').unwrap().1)
    };
    let (bob, carol) = (expired("bob"), expired("carol"));
    let broker = MemoryBroker::new();
    for token in [Some(&alice), Some(&forged), None, Some(&bob), Some(&carol)] {
        let mut headers = Headers::new();
        if let Some(token) = token {
            headers.append("Authorization", format!("Bearer {token}"));
        }
        broker.publish("orders", headers, "x");
    }

    let publisher = MemoryPublisher::new(broker.clone(), Propagator::default());
    let report = MemoryConsumer::new(broker.clone(), "orders", guard)
        .run_until_idle(|delivery: Received| {
            let publisher = publisher.clone();
            async move {
                if delivery.context().subject() == Some("alice") {
                    publisher
                        .publish("receipts", Headers::new(), "receipt", None)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<(), String>(())
            }
        })
        .await
        .unwrap();
    assert_eq!((report.accepted, report.dead_lettered, report.retried), (3, 2, 1));
    vec![alice, forged, bob, carol]
}

/// Every span's name and fields, as recorded (values as text), and every event's fields (as
/// spans named `event`).
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Captured>>);

#[derive(Default)]
struct Captured {
    spans: Vec<(String, HashMap<String, String>)>,
    /// Span id → index in `spans`; ids are reused after a span closes, and the newest wins.
    index: HashMap<u64, usize>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut captured = self.0.lock().unwrap();
        let index = captured.spans.len();
        captured.spans.push((attrs.metadata().name().to_owned(), fields));
        captured.index.insert(id.into_u64(), index);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut captured = self.0.lock().unwrap();
        let Some(&index) = captured.index.get(&id.into_u64()) else {
            return;
        };
        values.record(&mut Fields(&mut captured.spans[index].1));
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().spans.push(("event".to_owned(), fields));
    }
}
