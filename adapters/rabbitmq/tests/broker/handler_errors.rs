//! Handler errors and panics are retried through the retry queue, then dead-lettered; on
//! quorum queues, declared by the topology helper.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::consume::{REASON_KIND, REASON_MESSAGE};
use jwt_relay::{Backoff, Guard};
use jwt_relay_rabbitmq::lapin::BasicProperties;
use jwt_relay_rabbitmq::{Consumer, FAILURES_HEADER};

use crate::support::broker::{broker, headers, id_of};
use crate::support::tokens::{token, verifier};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_failures_are_retried_then_dead_lettered_on_quorum_queues() {
    let Some(broker) = broker().await else { return };
    let topology = broker.topology("handler-errors").quorum();
    broker.declare(&topology).await;
    let publisher = broker.publisher().await;
    for id in ["flaky", "broken", "panics"] {
        let properties = BasicProperties::default().with_headers(headers(id, &[]));
        publisher
            .publish_with_token(
                "",
                topology.queue(),
                id.as_bytes(),
                properties,
                Some(&token("alice")),
            )
            .await
            .unwrap();
    }

    let calls = Arc::new(Mutex::new(BTreeMap::<String, u32>::new()));
    let count = calls.clone();
    let connector = broker.connector("handler-errors");
    let consumer = Consumer::builder(connector, topology.queue(), Guard::new(verifier()))
        .max_attempts(3)
        .backoff(Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(200),
        ))
        // flaky: 2 deliveries; broken and panics: 3 each.
        .limit(8)
        .build();
    let report = consumer
        .run(
            move |received| {
                let id = id_of(&received);
                let n = {
                    let mut calls = count.lock().unwrap();
                    let n = calls.entry(id.clone()).or_default();
                    *n += 1;
                    *n
                };
                async move {
                    match id.as_str() {
                        "flaky" if n == 1 => Err("flaky the first time".to_owned()),
                        "broken" => Err("broken for good".to_owned()),
                        "panics" => panic!("boom"),
                        _ => Ok(()),
                    }
                }
            },
            std::future::pending::<()>(),
        )
        .await
        .unwrap();

    let calls = calls.lock().unwrap().clone();
    let expected: BTreeMap<String, u32> = [("broken", 3), ("flaky", 2), ("panics", 3)]
        .map(|(k, v)| (k.to_owned(), v))
        .into();
    assert_eq!(calls, expected);
    // Every failed call counts in `handler_failures` (flaky 1, broken 3, panics 3); retries
    // after a handler failure are not `retried` (that is for transient failures).
    assert_eq!(
        (
            report.accepted,
            report.retried,
            report.rejected,
            report.dead_lettered,
            report.handler_failures
        ),
        (1, 0, 2, 2, 7),
        "{report:?}"
    );
    let dead = broker.drain(topology.dead_letter_queue_name()).await;
    let reasons: BTreeMap<String, (String, String)> = dead
        .iter()
        .map(|m| {
            assert!(!m.has_header_any_case("authorization"));
            assert_eq!(m.header(REASON_KIND).as_deref(), Some("Handler"));
            let failures = m
                .properties
                .headers()
                .as_ref()
                .unwrap()
                .inner()
                .get(FAILURES_HEADER);
            assert!(failures.is_some(), "the count travels with the message");
            (
                m.header("x-id").unwrap(),
                (
                    m.header(REASON_MESSAGE).unwrap(),
                    String::from_utf8_lossy(&m.data).into_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 2);
    let (broken, payload) = &reasons["broken"];
    assert!(
        broken.contains("the handler failed 3 times; the last time: broken for good"),
        "{broken}"
    );
    assert_eq!(payload, "broken");
    assert!(
        reasons["panics"].0.contains("panicked: boom"),
        "{:?}",
        reasons["panics"]
    );
    assert_eq!(broker.depth(topology.queue()).await, 0);
    assert_eq!(broker.depth(topology.retry_queue_name()).await, 0);
    broker.cleanup(&topology).await;
}
