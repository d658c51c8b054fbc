//! A key-set outage against a real nats-server: while the issuer's JWKS
//! endpoint answers 503, messages wait (`nak` with a delay) instead of being
//! dead-lettered; once it recovers, every one of them is handled, none lost.

#![allow(clippy::unwrap_used)]

mod support;

use jwt_relay_test_support::jwks_server;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, stream::StorageType};
use axum::http::StatusCode;
use jwks_server::{JwksServer, Mode};
use jwt_relay::verify::RemoteOptions;
use jwt_relay::{Guard, Issuer, Propagator, Verifier};
use jwt_relay_nats::{EventOutcome, JetStreamConsumer, JetStreamPublisher, Received, Topology, async_nats};
use support::{
    AUD, ISS, backoff, common, headers, pull_consumer, shutdown, stored, unique, user, wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_outage_delays_messages_and_loses_none() {
    let Some(client) = support::connect().await else {
        return;
    };
    let js = jetstream::new(client);
    let prefix = unique("outage");
    let topology = Topology::new(prefix.to_uppercase(), [format!("{prefix}.*")]).storage(StorageType::Memory);
    let declared = topology.declare(&js).await.expect("declared");
    let subject = format!("{prefix}.orders");

    // Published by a service that verified its users while all was well.
    let publisher = JetStreamPublisher::new(js.clone(), Propagator::default());
    let alice = user("alice", 300).await;
    for id in 0..10 {
        publisher
            .publish(&subject, headers(None, &id.to_string()), "x", Some(&alice))
            .await
            .expect("stored");
    }

    // The consumer's issuer serves its keys remotely, and that server is down.
    let jwks = JwksServer::start(common::fixture("jwks.json")).await;
    jwks.set_mode(Mode::Status(StatusCode::SERVICE_UNAVAILABLE));
    let options = RemoteOptions::default()
        .cooldown(Duration::from_millis(100))
        .timeout(Duration::from_secs(1));
    let verifier = Verifier::builder()
        .issuer(
            Issuer::new(ISS)
                .audience(AUD)
                .leeway(Duration::ZERO)
                .jwks_url_with(jwks.jwks_url(), options),
        )
        .build()
        .expect("the verifier builds");
    let guard = Guard::builder(verifier).backoff(backoff()).build();
    let consumer = pull_consumer(&declared.stream, "billing", |_| {}).await;
    let retried = Arc::new(Mutex::new(0u32));
    let count = retried.clone();
    let consumer = JetStreamConsumer::new(consumer, guard)
        .concurrency(4)
        .on_event(move |e| {
            if let EventOutcome::Retry { reason, .. } = &e.outcome {
                assert_eq!(reason.kind(), jwt_relay::ErrorKind::KeySetUnavailable);
                *count.lock().unwrap() += 1;
            }
        });
    let stats = consumer.stats();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let (stop, stopped) = shutdown();
    let run = tokio::spawn(async move {
        consumer
            .run(
                move |d: Received| {
                    let id = d
                        .headers()
                        .and_then(|h| h.get("x-id"))
                        .map(|v| v.as_str().to_owned());
                    record.lock().unwrap().push(id);
                    std::future::ready(Ok::<(), String>(()))
                },
                stopped,
            )
            .await
    });

    assert!(
        wait_until(Duration::from_secs(10), || *retried.lock().unwrap() >= 10).await,
        "every message is retried while the key set is down: {:?}",
        stats.snapshot()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(seen.lock().unwrap().is_empty(), "nothing handled without keys");
    assert_eq!(
        stats.snapshot().rejected,
        0,
        "nothing rejected for a transient failure"
    );

    jwks.set_mode(Mode::Ok);
    assert!(
        wait_until(Duration::from_secs(20), || seen.lock().unwrap().len() >= 10).await,
        "all handled after recovery: {:?}",
        stats.snapshot()
    );
    stop.send(()).ok();
    run.await.unwrap().expect("the run ends cleanly");

    let ids: BTreeSet<_> = seen.lock().unwrap().iter().flatten().cloned().collect();
    assert_eq!(ids, (0..10).map(|i| i.to_string()).collect(), "none lost");
    assert!(
        stored(&js, &topology.dead_letter_stream_name()).await.is_empty(),
        "none dead-lettered"
    );
    let info = declared.stream.consumer_info("billing").await.expect("info");
    assert_eq!(info.num_ack_pending, 0);
    assert!(
        jwks.jwks_hits() >= 2,
        "the key set was fetched again after the outage"
    );
    topology.delete(&js).await.expect("deleted");
}
