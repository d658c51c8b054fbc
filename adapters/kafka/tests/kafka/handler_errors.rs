//! A handler that fails is called again after the backoff; one that keeps failing (here by
//! panicking) is dead-lettered with the handler's error, and the consumer keeps going.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::consume::{REASON_KIND, REASON_MESSAGE};
use jwt_relay::{Backoff, Propagator};
use jwt_relay_kafka::rdkafka::producer::FutureRecord;

use crate::support::{Cluster, Idp, consumer, header, payload, run_to_limit, text, unique};

pub async fn a_failing_handler_is_retried_then_dead_lettered(cluster: Cluster) {
    let idp = Idp::start().await;
    let topic = unique("handler");
    cluster.topic(&topic, 1).await;
    let producer = cluster.producer(Propagator::default());
    let token = idp.token("alice");
    for id in ["flaky", "broken", "fine"] {
        let record = FutureRecord::to(&topic).key(id).payload(id);
        producer
            .send_with_token(record, Some(&token))
            .await
            .expect("sent");
    }

    let calls = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let count = calls.clone();
    let consumer = consumer(&cluster, &unique("billing"), &topic, idp.guard())
        .max_attempts(3)
        .backoff(Backoff::new(
            Duration::from_millis(50),
            Duration::from_millis(100),
        ))
        .limit(3)
        .build()
        .unwrap();
    let report = run_to_limit(&consumer, Duration::from_secs(60), move |delivery| {
        let id = text(&delivery);
        let n = {
            let mut calls = count.lock().unwrap();
            let n = calls.entry(id.clone()).or_default();
            *n += 1;
            *n
        };
        assert_eq!(delivery.attempt(), n - 1, "the attempt count follows the calls");
        async move {
            match id.as_str() {
                "flaky" if n == 1 => Err("the database blinked".to_owned()),
                "broken" => panic!("the handler is broken"),
                _ => Ok(()),
            }
        }
    })
    .await;

    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.get("flaky"), Some(&2));
    assert_eq!(
        calls.get("broken"),
        Some(&3),
        "max_attempts calls, then dead-lettered"
    );
    assert_eq!(calls.get("fine"), Some(&1), "in order, after the broken one");
    assert_eq!(
        (report.accepted, report.dead_lettered, report.handler_failures),
        (2, 1, 4)
    );
    let copies = cluster.read(&format!("{topic}.dlq"), 1);
    assert_eq!(copies.len(), 1);
    assert_eq!(payload(&copies[0]), "broken");
    assert_eq!(header(&copies[0], REASON_KIND).as_deref(), Some("Handler"));
    let message = header(&copies[0], REASON_MESSAGE).unwrap();
    assert!(
        message.contains("failed 3 times") && message.contains("the handler is broken"),
        "{message}"
    );
}
