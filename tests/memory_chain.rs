//! A three-hop chain over the in-memory transport, with the same Propagator
//! and Guard the broker adapters use, and the development token service
//! (`jwt_relay::testing::DevSts`) as identity provider and token exchange
//! server over real HTTP: A publishes in the user's scope, B verifies and
//! publishes downstream without touching headers, and C receives the message
//! after the user's token expired and exchanges it. Then what goes wrong: a
//! forged token, a token-service outage, a failing handler, a panicking one,
//! a halt.

use jwt_relay_test_support as common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Signer, claims, now};
use jwt_relay::consume::{ExpiredToken, Outcome, REASON_CLASS, REASON_KIND, REASON_MESSAGE};
use jwt_relay::exchange::ExchangeCache;
use jwt_relay::memory::{MemoryBroker, MemoryConsumer, MemoryPublisher, Message, Received};
use jwt_relay::testing::{DEFAULT_CLIENT_ID, DEFAULT_KID, DevSts, DevStsConfig, Mode};
use jwt_relay::{
    Acceptance, Backoff, Error, ErrorKind, Exchange, Guard, Headers, Propagator, Verifier, scope,
};
use serde_json::json;

/// The audience every service of the shop accepts.
const AUD: &str = "shop";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The shop's identity provider, and the verifier its services share.
struct Shop {
    sts: DevSts,
    verifier: Verifier,
}

impl Shop {
    async fn start() -> Shop {
        let sts = DevSts::start(DevStsConfig::default())
            .await
            .expect("the token service starts");
        // No leeway: a token is expired the second its `exp` passes.
        let verifier = sts.verifier(AUD).expect("the verifier builds");
        Shop { sts, verifier }
    }

    fn token(&self, sub: &str, ttl_secs: u64) -> String {
        self.sts.mint(sub, AUD, Duration::from_secs(ttl_secs))
    }

    /// Expired a minute ago: still within the service's exchange window.
    fn expired_token(&self, sub: &str) -> String {
        let now = now();
        self.sts.mint_claims(json!({
            "iss": self.sts.issuer(), "aud": AUD, "sub": sub, "iat": now - 600, "exp": now - 60,
        }))
    }

    fn guard(&self) -> Guard {
        Guard::new(self.verifier.clone())
    }

    /// An expired token is exchanged at the token service (one attempt per
    /// delivery: the consumer does the retrying), and retried while the
    /// service is down.
    fn exchanging_guard(&self) -> Guard {
        let client = self
            .sts
            .client()
            .max_attempts(1)
            .build()
            .expect("the client builds");
        // A short wait against a refusal the exchange cache remembers for a second: many
        // redeliveries before the service is back, none of them allowed to be the last.
        let exchange = Exchange::new(Arc::new(ExchangeCache::new(client)))
            .retry_delay(ms(20))
            .max_retries(1_000);
        Guard::builder(self.verifier.clone()).policy(exchange).build()
    }
}

fn bearer(token: &str) -> Headers {
    let mut headers = Headers::new();
    headers.append("Authorization", format!("Bearer {token}"));
    headers
}

fn header<'a>(message: &'a Message, name: &str) -> &'a str {
    let value = message.headers.get(name).unwrap_or_default();
    std::str::from_utf8(value).expect("ASCII header")
}

/// What a handler saw: the subject, how it was accepted, the payload.
type Record = (String, Acceptance, Vec<u8>);

/// A handler that records who each message came from and how it was accepted.
#[derive(Default, Clone)]
struct Seen(Arc<Mutex<Vec<Record>>>);

impl Seen {
    fn record(&self, delivery: &Received) {
        let ctx = delivery.context();
        let who = ctx.subject().unwrap_or("?").to_owned();
        self.0
            .lock()
            .expect("not poisoned")
            .push((who, ctx.acceptance(), delivery.payload().to_vec()));
    }

    fn all(&self) -> Vec<Record> {
        self.0.lock().expect("not poisoned").clone()
    }
}

/// Handler retries in milliseconds.
fn quick(consumer: MemoryConsumer) -> MemoryConsumer {
    consumer.backoff(Backoff::new(ms(1), ms(5)))
}

// ---------------------------------------------------------------------------
// The chain
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_identity_survives_three_hops_and_an_expiry_on_the_way() {
    let shop = Shop::start().await;
    let broker = MemoryBroker::new();

    // A: the edge verified the user's token (3 s to live) and publishes in its scope.
    let user_token = shop.token("alice", 3);
    let exp = now() + 3;
    let user = shop
        .verifier
        .verify(&user_token)
        .await
        .expect("fresh at the edge");
    let service_a = MemoryPublisher::new(broker.clone(), Propagator::default());
    scope(
        user,
        service_a.publish("orders", Headers::new(), "order 42", None),
    )
    .await
    .expect("A publishes");

    // B: verifies (rejecting expired tokens) and publishes from its handler.
    let service_b = MemoryPublisher::new(broker.clone(), Propagator::default());
    let seen_by_b = Seen::default();
    let report = MemoryConsumer::new(broker.clone(), "orders", shop.guard())
        .run_until_idle(|delivery: Received| {
            seen_by_b.record(&delivery);
            let service_b = &service_b;
            async move {
                let invoice = [b"invoice for ".as_slice(), delivery.payload()].concat();
                service_b
                    .publish("invoices", Headers::new(), invoice, None)
                    .await?;
                Ok::<(), jwt_relay::PublishError>(())
            }
        })
        .await
        .expect("B runs");
    assert_eq!((report.accepted, report.dead_lettered), (1, 0), "{report:?}");
    assert_eq!(
        seen_by_b.all(),
        [("alice".to_owned(), Acceptance::Verified, b"order 42".to_vec())]
    );
    let waiting = broker.messages("invoices");
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        header(&waiting[0], "authorization"),
        format!("Bearer {user_token}"),
        "B forwarded exactly the user's token"
    );

    // The message waits in `invoices` until the user's token has expired.
    while now() < exp {
        tokio::time::sleep(ms(100)).await;
    }
    let Err(e) = shop.verifier.verify(&user_token).await else {
        panic!("the user's token should have expired by now");
    };
    assert_eq!(e.kind(), ErrorKind::Expired);

    // C: exchanges the expired token at the token service and sees the original user.
    let seen_by_c = Seen::default();
    let actors = Arc::new(Mutex::new(Vec::new()));
    let report = MemoryConsumer::new(broker.clone(), "invoices", shop.exchanging_guard())
        .run_until_idle(|delivery: Received| {
            seen_by_c.record(&delivery);
            actors
                .lock()
                .expect("not poisoned")
                .extend(delivery.context().actors());
            async { Ok::<(), String>(()) }
        })
        .await
        .expect("C runs");
    assert_eq!((report.accepted, report.dead_lettered), (1, 0), "{report:?}");
    assert_eq!(
        seen_by_c.all(),
        [(
            "alice".to_owned(),
            Acceptance::Exchanged,
            b"invoice for order 42".to_vec()
        )]
    );
    let actors = actors.lock().expect("not poisoned").clone();
    assert_eq!(
        actors[0].subject.as_deref(),
        Some(DEFAULT_CLIENT_ID),
        "C acts for alice"
    );
    assert_eq!(shop.sts.stats().exchanges_issued, 1);
    for topic in ["orders", "invoices"] {
        assert!(broker.messages(topic).is_empty(), "{topic} is drained");
        assert!(broker.dead_letters(topic).is_empty(), "nothing in {topic}.dlq");
    }
}

// ---------------------------------------------------------------------------
// Forged tokens
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_forged_message_is_dead_lettered_with_the_reason_and_without_its_token() {
    let shop = Shop::start().await;
    let broker = MemoryBroker::new();
    // ES256 and naming the token service's key, but signed with another P-256 key.
    let forger = Signer::ec256().with_kid(Some(DEFAULT_KID));
    let forged = forger.sign(&claims(&shop.sts.issuer(), AUD, "mallory", 300));
    let (_, signature) = forged.rsplit_once('.').expect("three parts");
    let mut headers = bearer(&forged);
    headers.append("x-order", "42");
    headers.append(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    );
    broker.publish("orders", headers, "refund everything");
    broker.publish("orders", bearer(&shop.token("alice", 300)), "order 43");

    let seen = Seen::default();
    let report = MemoryConsumer::new(broker.clone(), "orders", shop.guard())
        .run_until_idle(|delivery: Received| {
            seen.record(&delivery);
            async { Ok::<(), String>(()) }
        })
        .await
        .expect("the consumer runs");

    assert_eq!((report.accepted, report.dead_lettered), (1, 1), "{report:?}");
    assert_eq!(seen.all().len(), 1, "the handler never saw the forged message");
    assert_eq!(seen.all()[0].0, "alice");
    assert!(broker.messages("orders").is_empty());
    let dead = broker.dead_letters("orders");
    assert_eq!(dead.len(), 1);
    let copy = &dead[0];
    assert_eq!(copy.topic, "orders.dlq");
    assert_eq!(copy.payload, b"refund everything");
    assert_eq!(header(copy, REASON_KIND), "BadSignature");
    assert_eq!(header(copy, REASON_CLASS), "permanent");
    assert!(header(copy, REASON_MESSAGE).contains(DEFAULT_KID), "{copy:?}");
    assert_eq!(header(copy, "x-order"), "42");
    assert!(header(copy, "traceparent").starts_with("00-4bf9"));
    assert_eq!(copy.headers.get("authorization"), None, "{copy:?}");
    for (name, value) in copy.headers.iter() {
        let value = String::from_utf8_lossy(value);
        assert!(
            !value.contains(signature),
            "header {name} carries the forged signature"
        );
    }
    let counters = broker.counters("orders");
    assert_eq!((counters.accepted, counters.dead_lettered), (1, 1));
}

#[tokio::test]
async fn dead_letters_keep_the_token_only_when_asked() {
    let shop = Shop::start().await;
    let broker = MemoryBroker::new();
    let expired = shop.expired_token("alice");
    broker.publish("orders", bearer(&expired), "late order");
    let report = MemoryConsumer::new(broker.clone(), "orders", shop.guard())
        .dead_letter_topic("orders.quarantine")
        .keep_token_in_dead_letters()
        .run_until_idle(|_: Received| async { Ok::<(), String>(()) })
        .await
        .expect("the consumer runs");
    assert_eq!(report.dead_lettered, 1);
    assert!(
        broker.dead_letters("orders").is_empty(),
        "the custom topic is used"
    );
    let dead = broker.messages("orders.quarantine");
    assert_eq!(header(&dead[0], REASON_KIND), "Expired");
    assert_eq!(header(&dead[0], "authorization"), format!("Bearer {expired}"));
}

// ---------------------------------------------------------------------------
// A token-service outage
// ---------------------------------------------------------------------------

#[tokio::test]
async fn during_a_token_service_outage_messages_wait_and_all_arrive() {
    let shop = Shop::start().await;
    let broker = MemoryBroker::new();
    for i in 0..5 {
        let token = shop.expired_token(&format!("user-{i}"));
        broker.publish("invoices", bearer(&token), format!("invoice {i}"));
    }

    // Down until it has refused 8 requests, then back.
    shop.sts.set_mode(Mode::Unavailable { retry_after: None });
    let recovery = async {
        while shop.sts.stats().token_requests < 8 {
            tokio::time::sleep(ms(5)).await;
        }
        shop.sts.set_mode(Mode::Normal);
    };
    let seen = Seen::default();
    let consumer = MemoryConsumer::new(broker.clone(), "invoices", shop.exchanging_guard());
    let run = consumer.run_until_idle(|delivery: Received| {
        seen.record(&delivery);
        async { Ok::<(), String>(()) }
    });
    let (report, ()) = tokio::join!(run, recovery);
    let report = report.expect("the consumer runs");

    let stats = shop.sts.stats();
    assert!(stats.token_requests >= 8, "{stats:?}");
    assert_eq!(stats.exchanges_issued, 5, "{stats:?}");
    let reasons: Vec<_> = broker
        .dead_letters("invoices")
        .iter()
        .map(|m| format!("{}: {}", header(m, REASON_KIND), header(m, REASON_MESSAGE)))
        .collect();
    assert_eq!(report.accepted, 5, "{report:?}, dead-lettered: {reasons:?}");
    assert_eq!(report.dead_lettered, 0, "{report:?}");
    assert_eq!(report.handler_failures, 0, "{report:?}");
    // Every refused call made a message wait; the retries in between got the refusal the
    // exchange cache remembered (for a second), without a call.
    assert!(
        report.retried >= stats.token_requests - stats.exchanges_issued,
        "a retry per refused exchange at least: {report:?}, {stats:?}"
    );
    let mut users: Vec<_> = seen.all().into_iter().map(|(who, _, _)| who).collect();
    users.sort();
    let expected: Vec<_> = (0..5).map(|i| format!("user-{i}")).collect();
    assert_eq!(users, expected, "every message was delivered once");
    assert!(seen.all().iter().all(|(_, how, _)| *how == Acceptance::Exchanged));
    assert!(broker.messages("invoices").is_empty());
    assert!(broker.dead_letters("invoices").is_empty());
}

// ---------------------------------------------------------------------------
// Handlers that fail
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_failing_handler_is_retried_then_dead_lettered() {
    let shop = Shop::start().await;
    let broker = MemoryBroker::new();
    let mut headers = bearer(&shop.token("alice", 300));
    headers.append("x-order", "42");
    broker.publish("orders", headers, "order 42");

    let attempts = Arc::new(Mutex::new(Vec::new()));
    let report = quick(MemoryConsumer::new(broker.clone(), "orders", shop.guard()))
        .max_attempts(3)
        .run_until_idle(|delivery: Received| {
            attempts.lock().expect("not poisoned").push(delivery.attempt());
            async { Err("the database is down") }
        })
        .await
        .expect("the consumer runs");

    assert_eq!(*attempts.lock().expect("not poisoned"), [0, 1, 2]);
    assert_eq!(report.handler_failures, 3, "{report:?}");
    assert_eq!(
        report.retried, 0,
        "handler retries count as handler failures: {report:?}"
    );
    assert_eq!((report.rejected, report.dead_lettered), (1, 1), "{report:?}");
    assert_eq!(report.accepted, 0, "{report:?}");
    assert!(broker.messages("orders").is_empty());
    let dead = broker.dead_letters("orders");
    assert_eq!(dead.len(), 1);
    assert_eq!(header(&dead[0], REASON_KIND), "Handler");
    assert!(
        header(&dead[0], REASON_MESSAGE).contains("the database is down"),
        "{:?}",
        dead[0]
    );
    assert_eq!(header(&dead[0], "x-order"), "42");
    assert_eq!(dead[0].payload, b"order 42");
    assert_eq!(dead[0].headers.get("authorization"), None);
}

#[tokio::test]
async fn a_panicking_handler_is_dead_lettered_and_the_consumer_goes_on() {
    let shop = Shop::start().await;
    let broker = MemoryBroker::new();
    for payload in ["order 1", "boom", "order 2"] {
        broker.publish("orders", bearer(&shop.token("alice", 300)), payload);
    }

    let seen = Seen::default();
    let report = quick(MemoryConsumer::new(broker.clone(), "orders", shop.guard()))
        .max_attempts(2)
        .run_until_idle(|delivery: Received| {
            seen.record(&delivery);
            async move {
                if delivery.payload() == b"boom" {
                    panic!("the handler found a bug");
                }
                Ok::<(), String>(())
            }
        })
        .await
        .expect("the consumer survives the panic");

    assert_eq!(report.accepted, 2, "{report:?}");
    assert_eq!(report.handler_failures, 2, "{report:?}");
    assert_eq!(report.dead_lettered, 1, "{report:?}");
    let payloads: Vec<_> = seen.all().into_iter().map(|(_, _, p)| p).collect();
    assert!(
        payloads.contains(&b"order 2".to_vec()),
        "the message after the panic was handled"
    );
    let dead = broker.dead_letters("orders");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload, b"boom");
    assert_eq!(header(&dead[0], REASON_KIND), "Handler");
    assert!(
        header(&dead[0], REASON_MESSAGE).contains("the handler found a bug"),
        "{:?}",
        dead[0]
    );
}

// ---------------------------------------------------------------------------
// Halting and running
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_halt_stops_the_consumer_and_loses_nothing() {
    let shop = Shop::start().await;
    let broker = MemoryBroker::new();
    let expired = shop.expired_token("alice");
    broker.publish("orders", bearer(&expired), "order 1");
    broker.publish("orders", bearer(&shop.token("bob", 300)), "order 2");
    let guard = Guard::builder(shop.verifier.clone())
        .policy(|_: ExpiredToken| async {
            Outcome::Halt(Error::new(
                ErrorKind::ExchangeUnauthorized,
                "our client id was refused",
            ))
        })
        .build();

    let handled = AtomicUsize::new(0);
    let e = MemoryConsumer::new(broker.clone(), "orders", guard)
        .run_until_idle(|_: Received| {
            handled.fetch_add(1, Ordering::SeqCst);
            async { Ok::<(), String>(()) }
        })
        .await
        .expect_err("the consumer halts");

    assert_eq!(e.kind(), ErrorKind::ExchangeUnauthorized);
    assert_eq!(handled.load(Ordering::SeqCst), 0, "nothing after the halt ran");
    let left = broker.messages("orders");
    assert_eq!(left.len(), 2, "both messages are still there");
    assert_eq!(left[0].payload, b"order 1");
    assert_eq!(left[0].attempt, 0, "the halted message is untouched");
    assert_eq!(header(&left[0], "authorization"), format!("Bearer {expired}"));
    assert!(broker.dead_letters("orders").is_empty());
}

#[tokio::test]
async fn a_long_running_consumer_handles_messages_as_they_arrive_until_shutdown() {
    let shop = Shop::start().await;
    let broker = MemoryBroker::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let consumer = MemoryConsumer::new(broker.clone(), "orders", shop.guard());
    let running = tokio::spawn(async move {
        consumer
            .run(
                move |delivery: Received| {
                    let tx = tx.clone();
                    async move { tx.send(delivery.payload().to_vec()).map_err(|e| e.to_string()) }
                },
                async {
                    let _ = stopped.await;
                },
            )
            .await
    });

    for i in 0..3 {
        tokio::time::sleep(ms(10)).await;
        broker.publish("orders", bearer(&shop.token("alice", 300)), format!("order {i}"));
    }
    for i in 0..3 {
        let payload = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("delivered in time")
            .expect("the consumer is running");
        assert_eq!(payload, format!("order {i}").into_bytes());
    }
    stop.send(()).expect("the consumer is running");
    let report = running.await.expect("the task did not panic").expect("no halt");
    assert_eq!(report.accepted, 3, "{report:?}");
    assert!(broker.messages("orders").is_empty());
}
