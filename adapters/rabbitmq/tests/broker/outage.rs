//! A key-set outage makes messages wait (through the retry queue), and every one of them is
//! handled once the key set is back: none lost, none dead-lettered.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::{Backoff, Guard};
use jwt_relay_rabbitmq::lapin::BasicProperties;
use jwt_relay_rabbitmq::{Consumer, EventOutcome};

use crate::support::broker::{broker, eventually, headers, id_of, spawn};
use crate::support::jwks_server::JwksServer;
use crate::support::tokens::{jwks, remote_verifier, token};

const MESSAGES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_while_the_key_set_is_down_and_are_all_handled_after() {
    let Some(broker) = broker().await else { return };
    let topology = broker.topology("outage");
    broker.declare(&topology).await;
    let server = JwksServer::start(jwks(), true).await;
    let publisher = broker.publisher().await;
    let ids: BTreeSet<String> = (0..MESSAGES).map(|i| format!("m{i}")).collect();
    let raw = token("alice");
    for id in &ids {
        let properties = BasicProperties::default().with_headers(headers(id, &[]));
        publisher
            .publish_with_token("", topology.queue(), id.as_bytes(), properties, Some(&raw))
            .await
            .unwrap();
    }

    let guard = Guard::builder(remote_verifier(server.url()))
        .backoff(Backoff::new(
            Duration::from_millis(200),
            Duration::from_millis(800),
        ))
        .build();
    let retried = Arc::new(AtomicUsize::new(0));
    let retries = retried.clone();
    let consumer = Consumer::builder(broker.connector("outage"), topology.queue(), guard)
        .prefetch(5)
        .on_event(move |event| {
            if let EventOutcome::Retry { reason, .. } = &event.outcome {
                assert_eq!(reason.kind().as_str(), "KeySetUnavailable");
                retries.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build();
    let handled = Arc::new(Mutex::new(BTreeSet::new()));
    let record = handled.clone();
    let running = spawn(consumer, move |received| {
        record.lock().unwrap().insert(id_of(&received));
        async { Ok(()) }
    });

    eventually(
        "every message delayed at least once",
        Duration::from_secs(30),
        || retried.load(Ordering::SeqCst) >= 2 * MESSAGES,
    )
    .await;
    assert!(
        handled.lock().unwrap().is_empty(),
        "nothing handled while the keys are unknown"
    );
    server.set_down(false);
    eventually("every message handled", Duration::from_secs(30), || {
        handled.lock().unwrap().len() == MESSAGES
    })
    .await;
    let report = running.stop().await.unwrap();

    assert_eq!(*handled.lock().unwrap(), ids, "none lost");
    assert_eq!(report.dead_lettered, 0);
    assert!(report.retried >= 2 * MESSAGES as u64, "{report:?}");
    assert!(server.hits() >= 2, "the key set was asked again");
    assert_eq!(broker.depth(topology.queue()).await, 0);
    assert_eq!(broker.depth(topology.retry_queue_name()).await, 0);
    assert_eq!(broker.depth(topology.dead_letter_queue_name()).await, 0);
    broker.cleanup(&topology).await;
}
