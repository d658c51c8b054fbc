//! Graceful shutdown: handlers in flight finish and their messages are acknowledged; the
//! messages no handler started stay in the queue.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::Guard;
use jwt_relay_rabbitmq::Consumer;
use jwt_relay_rabbitmq::lapin::BasicProperties;

use crate::support::broker::{broker, eventually, headers, id_of, spawn};
use crate::support::tokens::{token, verifier};

const MESSAGES: usize = 20;
const PREFETCH: u16 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_handlers_in_flight_finish_and_leaves_the_rest_queued() {
    let Some(broker) = broker().await else { return };
    let topology = broker.topology("shutdown");
    broker.declare(&topology).await;
    let publisher = broker.publisher().await;
    let raw = token("alice");
    for i in 0..MESSAGES {
        let id = format!("m{i:02}");
        let properties = BasicProperties::default().with_headers(headers(&id, &[]));
        publisher
            .publish_with_token("", topology.queue(), b"x", properties, Some(&raw))
            .await
            .unwrap();
    }

    let started = Arc::new(Mutex::new(BTreeSet::new()));
    let finished = Arc::new(Mutex::new(BTreeSet::new()));
    let (s, f) = (started.clone(), finished.clone());
    let connector = broker.connector("shutdown");
    let consumer = Consumer::builder(connector, topology.queue(), Guard::new(verifier()))
        .prefetch(PREFETCH)
        .build();
    let running = spawn(consumer, move |received| {
        let (s, f) = (s.clone(), f.clone());
        async move {
            let id = id_of(&received);
            s.lock().unwrap().insert(id.clone());
            tokio::time::sleep(Duration::from_millis(500)).await;
            f.lock().unwrap().insert(id);
            Ok(())
        }
    });
    eventually("a full prefetch in flight", Duration::from_secs(20), || {
        started.lock().unwrap().len() >= usize::from(PREFETCH)
    })
    .await;
    assert!(finished.lock().unwrap().len() < MESSAGES);
    let report = running.stop().await.unwrap();

    let (started, finished) = (started.lock().unwrap().clone(), finished.lock().unwrap().clone());
    assert_eq!(started, finished, "every handler that started finished");
    assert_eq!(
        report.accepted as usize,
        finished.len(),
        "and its message was acknowledged"
    );
    let left = broker.depth(topology.queue()).await as usize;
    assert_eq!(
        left + finished.len(),
        MESSAGES,
        "the rest wait in the queue: none lost"
    );
    assert!(left > 0, "shutdown stopped taking messages");
    broker.cleanup(&topology).await;
}
