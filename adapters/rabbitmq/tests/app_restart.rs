//! The whole RabbitMQ application stopped and started again mid-stream (`rabbitmqctl stop_app`,
//! then `start_app`): the consumer reconnects, the broker redelivers what was not acknowledged,
//! the messages survive because the publisher makes them persistent by default, and every id
//! is handled at least once, with nothing dead-lettered.
//!
//! A test binary of its own: stopping the application drops every connection to the broker,
//! so no other test may run beside it (cargo runs test binaries one after another).

#![allow(clippy::unwrap_used, clippy::panic_in_result_fn)]

#[path = "broker/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::{Backoff, Guard};
use jwt_relay_rabbitmq::Consumer;
use jwt_relay_rabbitmq::lapin::BasicProperties;
use tokio::sync::watch;

use support::broker::{broker, eventually, headers, id_of, rabbitmqctl, spawn};
use support::tokens::{token, verifier};

const MESSAGES: usize = 100;
/// Handlers hold from this many handled messages until the broker has restarted.
const HOLD_AT: usize = 20;

/// Starts the application again when dropped, whatever happened in between.
struct Restart<'a>(&'a str);

impl Restart<'_> {
    fn run(ctl: &str, command: &str) {
        let status = Command::new(ctl).arg(command).status().unwrap();
        assert!(status.success(), "rabbitmqctl {command}");
    }
}

impl Drop for Restart<'_> {
    fn drop(&mut self) {
        let _ = Command::new(self.0).arg("start_app").status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_nothing() {
    let Some(broker) = broker().await else { return };
    let Some(ctl) = rabbitmqctl() else { return };
    let topology = broker.topology("app-restart");
    broker.declare(&topology).await;
    let publisher = broker.publisher().await;
    let raw = token("alice");
    let ids: BTreeSet<String> = (0..MESSAGES).map(|i| format!("{i:03}")).collect();
    for id in &ids {
        // No delivery mode given: the publisher's default (persistent) is what is tested.
        let properties = BasicProperties::default().with_headers(headers(id, &[]));
        publisher
            .publish_with_token("", topology.queue(), b"x", properties, Some(&raw))
            .await
            .unwrap();
    }

    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    // From the 20th message on, handlers wait until the broker has been restarted: deliveries
    // are in flight, unacknowledged, when the application stops.
    let (restarted, gate) = watch::channel(false);
    let connector = broker.connector("app-restart");
    let consumer = Consumer::builder(connector, topology.queue(), Guard::new(verifier()))
        .reconnect_backoff(Backoff::new(Duration::from_millis(200), Duration::from_secs(2)))
        .build();
    let running = spawn(consumer, move |received| {
        let handled = {
            let mut seen = record.lock().unwrap();
            seen.push(id_of(&received));
            seen.len()
        };
        let mut gate = gate.clone();
        async move {
            if handled >= HOLD_AT {
                let _ = gate.wait_for(|restarted| *restarted).await;
            }
            Ok(())
        }
    });
    eventually("handlers are held mid-stream", Duration::from_secs(30), || {
        seen.lock().unwrap().len() >= HOLD_AT
    })
    .await;

    {
        let _restart = Restart(&ctl);
        Restart::run(&ctl, "stop_app");
        tokio::time::sleep(Duration::from_secs(2)).await;
        Restart::run(&ctl, "start_app");
    }
    restarted.send_replace(true);
    assert!(
        seen.lock().unwrap().len() < MESSAGES,
        "the broker restarted with messages still queued"
    );
    eventually("every id is handled", Duration::from_secs(120), || {
        seen.lock().unwrap().iter().cloned().collect::<BTreeSet<_>>() == ids
    })
    .await;
    let report = running.stop().await.unwrap();
    assert_eq!(report.dead_lettered, 0, "{report:?}");
    assert!(report.reconnects >= 1, "the consumer reconnected: {report:?}");
    assert!(seen.lock().unwrap().len() >= MESSAGES, "at least once");

    // The test's own connection went with the application: clean up through a new one.
    let again = support::broker::broker().await.unwrap();
    again.cleanup(&topology).await;
}
