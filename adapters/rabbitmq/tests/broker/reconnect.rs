//! The consumer survives its connection being closed by the broker mid-stream: it reconnects,
//! the broker redelivers what was not acknowledged, and every message is handled.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::Guard;
use jwt_relay_rabbitmq::Consumer;
use jwt_relay_rabbitmq::lapin::BasicProperties;
use tokio::sync::watch;

use crate::support::broker::{
    broker, close_connections_named, eventually, headers, id_of, rabbitmqctl, spawn, unique,
};
use crate::support::tokens::{token, verifier};

const MESSAGES: usize = 200;
/// Handlers hold from this many handled messages until the connection is closed, so some
/// deliveries are in flight when it goes.
const HOLD_AT: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_mid_stream_loses_nothing() {
    let Some(broker) = broker().await else { return };
    let Some(ctl) = rabbitmqctl() else { return };
    let topology = broker.topology("reconnect");
    broker.declare(&topology).await;
    let publisher = broker.publisher().await;
    let raw = token("alice");
    let ids: BTreeSet<String> = (0..MESSAGES).map(|i| format!("m{i:03}")).collect();
    for id in &ids {
        let properties = BasicProperties::default().with_headers(headers(id, &[]));
        publisher
            .publish_with_token("", topology.queue(), id.as_bytes(), properties, Some(&raw))
            .await
            .unwrap();
    }

    let (release, released) = watch::channel(false);
    let handled = Arc::new(Mutex::new(BTreeSet::new()));
    let calls = Arc::new(Mutex::new(0_usize));
    let (record, count) = (handled.clone(), calls.clone());
    let name = unique("reconnect-connection");
    let consumer = Consumer::builder(broker.connector(&name), topology.queue(), Guard::new(verifier()))
        .prefetch(8)
        .build();
    let running = spawn(consumer, move |received| {
        let (record, count, mut released) = (record.clone(), count.clone(), released.clone());
        async move {
            let n = {
                let mut calls = count.lock().unwrap();
                *calls += 1;
                *calls
            };
            if n > HOLD_AT {
                released.wait_for(|go| *go).await.map_err(|e| e.to_string())?;
            }
            record.lock().unwrap().insert(id_of(&received));
            Ok(())
        }
    });

    eventually("handlers holding", Duration::from_secs(30), || {
        *calls.lock().unwrap() > HOLD_AT
    })
    .await;
    let closed = tokio::task::spawn_blocking(move || close_connections_named(&ctl, &name))
        .await
        .unwrap();
    assert_eq!(closed, 1, "the consumer's connection was found and closed");
    release.send_replace(true);
    eventually("every message handled", Duration::from_secs(60), || {
        handled.lock().unwrap().len() == MESSAGES
    })
    .await;
    let report = running.stop().await.unwrap();

    assert_eq!(*handled.lock().unwrap(), ids, "every id handled");
    assert!(report.reconnects >= 1, "{report:?}");
    assert!(
        *calls.lock().unwrap() > MESSAGES,
        "in-flight messages were redelivered"
    );
    assert_eq!(report.dead_lettered, 0);
    assert_eq!(broker.depth(topology.queue()).await, 0);
    assert_eq!(broker.depth(topology.dead_letter_queue_name()).await, 0);
    broker.cleanup(&topology).await;
}
