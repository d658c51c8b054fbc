//! Bad tokens end in the dead-letter queue with their reason and without their token.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jwt_relay::{Guard, REASON_CLASS, REASON_KIND, REASON_MESSAGE};
use jwt_relay_rabbitmq::lapin::BasicProperties;
use jwt_relay_rabbitmq::lapin::types::AMQPValue;
use jwt_relay_rabbitmq::{Consumer, DeadLetter, ErrorKind};

use crate::support::broker::{broker, headers, unique};
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
    let consumer = Consumer::builder(topology.queue(), Guard::new(verifier()))
        .limit(cases.len() as u64)
        .build();
    let report = consumer
        .run(
            &broker.connector("reject"),
            move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
                async { Ok::<(), String>(()) }
            },
            std::future::pending::<()>(),
        )
        .await
        .unwrap();

    assert_eq!(handled.load(Ordering::SeqCst), 0, "no handler ran");
    assert_eq!(report.dead_lettered, 4);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_dead_lettering_keeps_every_header_the_token_included() {
    let Some(broker) = broker().await else { return };
    let topology = broker.topology("reject-broker");
    broker.declare(&topology).await;
    let publisher = broker.publisher().await;
    let bad = forged("mallory");
    let properties = BasicProperties::default().with_headers(headers("forged", &[]));
    publisher
        .publish_with_token("", topology.queue(), b"x", properties, Some(&bad))
        .await
        .unwrap();
    // A good one too: broker dead-lettering touches only the rejected.
    let properties = BasicProperties::default().with_headers(headers("good", &[]));
    publisher
        .publish_with_token("", topology.queue(), b"y", properties, Some(&token("alice")))
        .await
        .unwrap();

    let consumer = Consumer::builder(topology.queue(), Guard::new(verifier()))
        .dead_letter(DeadLetter::broker())
        .limit(2)
        .build();
    let report = consumer
        .run(
            &broker.connector("reject-broker"),
            |_| async { Ok::<(), String>(()) },
            std::future::pending::<()>(),
        )
        .await
        .unwrap();
    assert_eq!((report.accepted, report.dead_lettered), (1, 1));

    let dead = broker.drain(topology.dead_letter_queue_name()).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header("x-id").as_deref(), Some("forged"));
    assert_eq!(
        dead[0].header("Authorization"),
        Some(format!("Bearer {bad}")),
        "the broker keeps it"
    );
    assert!(dead[0].header("x-death").is_none() && dead[0].has_header_any_case("x-death"));
    assert!(dead[0].header(REASON_KIND).is_none(), "no reason from the broker");
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

    let error = Consumer::builder(topology.queue(), Guard::new(verifier()))
        .dead_letter(DeadLetter::queue(unique("no-such-dlq")))
        .build()
        .run(
            &broker.connector("reject-nowhere"),
            |_| async { Ok::<(), String>(()) },
            std::future::pending::<()>(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Broker, "{error}");
    assert!(error.to_string().contains("no-such-dlq"), "{error}");
    assert_eq!(broker.depth(topology.queue()).await, 1, "the message went back");
    broker.cleanup(&topology).await;
}
