//! Bad tokens end in the dead-letter queue with their reason and without their token.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jwt_relay::Guard;
use jwt_relay::consume::{ORIGINAL_DESTINATION, ORIGINAL_SUBJECT, REASON_CLASS, REASON_KIND, REASON_MESSAGE};
use jwt_relay_rabbitmq::lapin::BasicProperties;
use jwt_relay_rabbitmq::lapin::options::{BasicGetOptions, BasicRejectOptions};
use jwt_relay_rabbitmq::lapin::types::{AMQPValue, ShortString};
use jwt_relay_rabbitmq::{Consumer, DeadLetter, ErrorKind, EventOutcome, Publisher, Topology};

use crate::support::broker::{Broker, broker, eventually, headers, spawn, unique};
use crate::support::tokens::{AUDIENCE, claims, forged, token, token_with, verifier};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_forged_expired_and_wrong_audience_tokens_are_dead_lettered_without_the_token() {
    let Some(broker) = broker().await else { return };
    let topology = broker.topology("reject");
    broker.declare(&topology).await;
    let publisher = broker.publisher().await;
    let cases = [
        ("missing", None, "Missing"),
        ("forged", Some(forged("mallory")), "BadSignature"),
        (
            "expired",
            Some(token_with(&claims("alice", AUDIENCE, -600))),
            "Expired",
        ),
        (
            "wrong-audience",
            Some(token_with(&claims("alice", "payroll", 300))),
            "InvalidAudience",
        ),
    ];
    for (id, token, _) in &cases {
        let properties = BasicProperties::default()
            .with_headers(headers(id, &[("x-tenant", AMQPValue::LongLongInt(7))]))
            .with_message_id((*id).into());
        publisher
            .publish_with_token("", topology.queue(), id.as_bytes(), properties, token.as_deref())
            .await
            .unwrap();
    }

    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let connector = broker.connector("reject");
    let consumer = Consumer::builder(connector, topology.queue(), Guard::new(verifier()))
        .limit(cases.len() as u64)
        .build();
    let report = consumer
        .run(
            move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
                async { Ok::<(), String>(()) }
            },
            std::future::pending::<()>(),
        )
        .await
        .unwrap();

    assert_eq!(handled.load(Ordering::SeqCst), 0, "no handler ran");
    assert_eq!((report.rejected, report.dead_lettered), (4, 4), "{report:?}");
    let dead = broker.drain(topology.dead_letter_queue_name()).await;
    let mut kinds = BTreeMap::new();
    for message in &dead {
        let id = message.header("x-id").unwrap();
        assert_eq!(message.data, id.as_bytes(), "payload kept");
        assert_eq!(
            message.properties.message_id().as_ref().map(|m| m.as_str()),
            Some(id.as_str()),
            "properties kept"
        );
        let headers = message.properties.headers().as_ref().unwrap().inner();
        assert_eq!(
            headers.get("x-tenant"),
            Some(&AMQPValue::LongLongInt(7)),
            "typed header kept"
        );
        assert!(
            !message.has_header_any_case("authorization"),
            "{id}: the token is gone"
        );
        assert_eq!(message.header(REASON_CLASS).as_deref(), Some("permanent"));
        assert!(!message.header(REASON_MESSAGE).unwrap_or_default().is_empty());
        assert_eq!(
            message.header(ORIGINAL_DESTINATION).as_deref(),
            Some(topology.queue()),
            "the origin travels with the copy"
        );
        assert_eq!(
            message.header(ORIGINAL_SUBJECT).as_deref(),
            Some(topology.queue())
        );
        kinds.insert(id, message.header(REASON_KIND).unwrap());
    }
    let expected: BTreeMap<String, String> = cases
        .iter()
        .map(|(id, _, kind)| ((*id).to_owned(), (*kind).to_owned()))
        .collect();
    assert_eq!(kinds, expected);
    for (_, token, _) in &cases {
        if let Some(token) = token {
            let everything: Vec<String> = dead
                .iter()
                .flat_map(|m| m.properties.headers().as_ref().unwrap().inner().values())
                .map(|v| format!("{v:?}"))
                .collect();
            assert!(everything.iter().all(|v| !v.contains(token.as_str())));
        }
    }
    assert_eq!(broker.depth(topology.queue()).await, 0);
    assert_eq!(broker.depth(topology.retry_queue_name()).await, 0, "not retried");
    broker.cleanup(&topology).await;
}

/// What the broker dead-letters itself still carries the user's token. It goes to the holding
/// queue, and the consumer moves it to the dead-letter queue without the token or any other
/// credential, with the broker's `x-death` reason: the dead-letter queue never holds a token.
async fn broker_dead_letter_case(
    name: &str,
    topology: impl FnOnce(Topology) -> Topology,
    provoke: impl AsyncFnOnce(&Broker, &Topology, &Publisher, &str),
    why: &str,
) {
    let Some(broker) = broker().await else { return };
    let topology = topology(broker.topology(name));
    broker.declare(&topology).await;
    let publisher = broker.publisher().await;
    let user = token("alice");
    provoke(&broker, &topology, &publisher, &user).await;
    let held = topology.held_queue_name();
    let mut waited = 0;
    while broker.depth(held).await == 0 {
        assert!(waited < 200, "{name}: the broker did not dead-letter the message");
        waited += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        broker.depth(topology.dead_letter_queue_name()).await,
        0,
        "held, not dead-lettered yet"
    );

    let moved = Arc::new(AtomicUsize::new(0));
    let counter = moved.clone();
    let dead_letter_queue = topology.dead_letter_queue_name().to_owned();
    let consumer = Consumer::builder(broker.connector(name), topology.queue(), Guard::new(verifier()))
        .on_event(move |event| {
            if let EventOutcome::Rejected {
                dead_letter: Some(target),
                ..
            } = &event.outcome
            {
                assert_eq!(*target, dead_letter_queue, "the copy's destination is reported");
                counter.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build();
    let running = spawn(consumer, |_| async { Ok(()) });
    eventually("the held message is moved", Duration::from_secs(20), || {
        moved.load(Ordering::SeqCst) == 1
    })
    .await;
    let report = running.stop().await.unwrap();
    assert_eq!((report.rejected, report.dead_lettered), (1, 1), "{report:?}");

    assert_eq!(
        broker.depth(topology.held_queue_name()).await,
        0,
        "moved, not copied"
    );
    let dead = broker.drain(topology.dead_letter_queue_name()).await;
    assert_eq!(dead.len(), 1, "{name}");
    let copy = &dead[0];
    assert_eq!(copy.header("x-id").as_deref(), Some("victim"));
    assert_eq!(copy.header(REASON_KIND).as_deref(), Some("BrokerDeadLettered"));
    assert_eq!(copy.header(REASON_CLASS).as_deref(), Some("permanent"));
    let message = copy.header(REASON_MESSAGE).unwrap_or_default();
    assert!(message.contains(why), "{name}: {message}");
    assert!(
        message.contains(topology.queue()),
        "{name}: names the queue: {message}"
    );
    for credential in ["authorization", "cookie"] {
        assert!(!copy.has_header_any_case(credential), "{name}: no {credential}");
    }
    let everything = format!("{:?}", copy.properties);
    assert!(!everything.contains(&user), "{name}: the token appears nowhere");
    assert!(!everything.contains("session=secret"), "{name}: nor the cookie");
    assert!(copy.has_header_any_case("x-death"), "the broker's record is kept");
    assert_eq!(
        copy.header(ORIGINAL_DESTINATION).as_deref(),
        Some(topology.queue()),
        "{name}: the same origin headers as the consumer's own dead letters"
    );
    broker.cleanup(&topology).await;
}

/// The message, with the user's token and a cookie.
async fn publish_victim(publisher: &Publisher, queue: &str, token: &str, expiration: Option<&str>) {
    let cookie = [("Cookie", AMQPValue::LongString("session=secret".into()))];
    let mut properties = BasicProperties::default().with_headers(headers("victim", &cookie));
    if let Some(ms) = expiration {
        properties = properties.with_expiration(ms.into());
    }
    publisher
        .publish_with_token("", queue, b"x", properties, Some(token))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_message_ttl_reaches_the_dead_letter_queue_without_the_token() {
    broker_dead_letter_case(
        "held-ttl",
        |t| t,
        async |_, topology, publisher, token| {
            publish_victim(publisher, topology.queue(), token, Some("1")).await;
        },
        "TTL expired",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_length_overflow_reaches_the_dead_letter_queue_without_the_token() {
    broker_dead_letter_case(
        "held-maxlen",
        |t| t.queue_argument("x-max-length", AMQPValue::LongLongInt(1)),
        async |_, topology, publisher, token| {
            publish_victim(publisher, topology.queue(), token, None).await;
            // The newer message pushes the older one out of the head (drop-head).
            let properties = BasicProperties::default().with_headers(headers("newer", &[]));
            publisher
                .publish_with_token("", topology.queue(), b"y", properties, Some(token))
                .await
                .unwrap();
        },
        "length limit",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_delivery_limit_reaches_the_dead_letter_queue_without_the_token() {
    broker_dead_letter_case(
        "held-delivery-limit",
        |t| {
            t.quorum()
                .queue_argument("x-delivery-limit", AMQPValue::LongLongInt(1))
        },
        async |broker, topology, publisher, token| {
            publish_victim(publisher, topology.queue(), token, None).await;
            // Another client (not jwt-relay) takes it and puts it back, past the limit.
            let options = BasicGetOptions { no_ack: false };
            for _ in 0..10 {
                let Some(got) = broker
                    .channel
                    .basic_get(ShortString::from(topology.queue()), options)
                    .await
                    .unwrap()
                else {
                    break;
                };
                let requeue = BasicRejectOptions { requeue: true };
                got.delivery.acker.reject(requeue).await.unwrap();
            }
        },
        "delivery limit",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_that_comes_back_is_acknowledged_not_copied_again() {
    let Some(broker) = broker().await else { return };
    let topology = broker.topology("returned");
    broker.declare(&topology).await;
    let publisher = broker.publisher().await;
    let reason = [(REASON_KIND, AMQPValue::LongString("Missing".into()))];
    let properties = BasicProperties::default().with_headers(headers("returned", &reason));
    publisher
        .publish_with_token("", topology.queue(), b"x", properties, None)
        .await
        .unwrap();
    let connector = broker.connector("returned");
    let report = Consumer::builder(connector, topology.queue(), Guard::new(verifier()))
        .limit(1)
        .build()
        .run(|_| async { Ok::<(), String>(()) }, std::future::pending::<()>())
        .await
        .unwrap();
    assert_eq!((report.rejected, report.dead_lettered), (1, 0));
    assert_eq!(broker.depth(topology.dead_letter_queue_name()).await, 0);
    assert_eq!(broker.depth(topology.queue()).await, 0, "acknowledged");
    broker.cleanup(&topology).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dead_letter_queue_stops_the_consumer_and_keeps_the_message() {
    let Some(broker) = broker().await else { return };
    let topology = broker.topology("reject-nowhere");
    broker.declare(&topology).await;
    let publisher = broker.publisher().await;
    publisher
        .publish_with_token(
            "",
            topology.queue(),
            b"x",
            BasicProperties::default(),
            Some(&forged("m")),
        )
        .await
        .unwrap();

    let connector = broker.connector("reject-nowhere");
    let error = Consumer::builder(connector, topology.queue(), Guard::new(verifier()))
        .dead_letter(DeadLetter::queue(unique("no-such-dlq")))
        .build()
        .run(|_| async { Ok::<(), String>(()) }, std::future::pending::<()>())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Broker, "{error}");
    assert!(error.to_string().contains("no-such-dlq"), "{error}");
    assert_eq!(broker.depth(topology.queue()).await, 1, "the message went back");
    broker.cleanup(&topology).await;
}
