//! Records wait while a dependency is down (the key set, a policy asking to retry), with their
//! partition paused and rewound, and every one is handled once it is back: none lost, none
//! dead-lettered, and the other partitions keep flowing meanwhile.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use jwt_relay::consume::{ExpiredToken, Outcome};
use jwt_relay::verify::RemoteOptions;
use jwt_relay::{Backoff, Error, ErrorKind, EventOutcome, Guard, Issuer, Propagator, Verifier};
use jwt_relay_kafka::rdkafka::producer::FutureRecord;

use crate::common::{Signer, claims};
use crate::jwks_server::{JwksServer, Mode};
use crate::support::{Cluster, Idp, consumer, eventually, spawn, text, unique};

const ISS: &str = "https://id.kafka.test";

pub async fn records_wait_for_the_key_set_and_none_is_lost(cluster: Cluster) {
    let topic = unique("outage");
    cluster.topic(&topic, 1).await;
    let producer = cluster.producer(Propagator::default());
    let token = Signer::rsa_a().sign(&claims(ISS, crate::support::AUD, "alice", 300));
    let ids: BTreeSet<String> = (0..10).map(|i| format!("m{i}")).collect();
    for id in &ids {
        let record = FutureRecord::to(&topic).key(id).payload(id);
        producer
            .send_with_token(record, Some(&token))
            .await
            .expect("sent");
    }

    // The consumer's issuer serves its keys remotely, and that server is down.
    let jwks = JwksServer::start(crate::common::fixture("jwks.json")).await;
    jwks.set_mode(Mode::Status(StatusCode::SERVICE_UNAVAILABLE));
    let options = RemoteOptions::default()
        .cooldown(Duration::from_millis(100))
        .timeout(Duration::from_secs(1));
    let verifier = Verifier::builder()
        .issuer(
            Issuer::new(ISS)
                .audience(crate::support::AUD)
                .jwks_url_with(jwks.jwks_url(), options),
        )
        .build()
        .unwrap();
    let guard = Guard::builder(verifier)
        .backoff(Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(400),
        ))
        .build();
    let retried = Arc::new(AtomicUsize::new(0));
    let count = retried.clone();
    let consumer = consumer(&cluster, &unique("billing"), &topic, guard)
        .on_event(move |event| {
            if let EventOutcome::Retry { reason, .. } = &event.outcome {
                assert_eq!(reason.kind(), ErrorKind::KeySetUnavailable);
                count.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap();
    let stats = consumer.stats();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let running = spawn(consumer, move |delivery| {
        record.lock().unwrap().push(text(&delivery));
        async { Ok(()) }
    });

    eventually(
        "records retried while the key set is down",
        Duration::from_secs(60),
        || retried.load(Ordering::SeqCst) >= 3,
    )
    .await;
    assert!(seen.lock().unwrap().is_empty(), "nothing handled without keys");
    jwks.set_mode(Mode::Ok);
    eventually("every record handled", Duration::from_secs(60), || {
        seen.lock().unwrap().len() >= ids.len()
    })
    .await;
    let report = running.stop().await;

    let seen = seen.lock().unwrap().clone();
    let expected: Vec<String> = ids.iter().cloned().collect();
    assert_eq!(seen, expected, "each once, in partition order: none lost");
    assert_eq!((report.rejected, report.dead_lettered), (0, 0));
    assert_eq!(stats.snapshot().accepted, 10);
}

pub async fn a_waiting_partition_does_not_hold_up_the_others(cluster: Cluster) {
    let idp = Idp::start().await;
    let topic = unique("partitions");
    cluster.topic(&topic, 2).await;
    let producer = cluster.producer(Propagator::default());
    // Partition 0: bob's records, whose expired token must wait; partition 1: alice's.
    for n in 0..5 {
        let bob = FutureRecord::to(&topic).partition(0).key("bob").payload("bob");
        producer
            .send_with_token(bob, Some(&idp.expired("bob")))
            .await
            .unwrap();
        let id = format!("alice-{n}");
        let alice = FutureRecord::to(&topic).partition(1).key(&id).payload(&id);
        producer
            .send_with_token(alice, Some(&idp.token("alice")))
            .await
            .unwrap();
    }
    // A policy that asks bob's records to wait until the test lets them through.
    let open = Arc::new(AtomicBool::new(false));
    let gate = open.clone();
    let policy = move |expired: ExpiredToken| {
        let open = gate.load(Ordering::SeqCst);
        async move {
            if open {
                expired.accept_under_grace()
            } else {
                let reason = Error::new(ErrorKind::ExchangeUnavailable, "the token service is down");
                Outcome::Retry(reason, Duration::from_millis(200))
            }
        }
    };
    let guard = Guard::builder(idp.verifier.clone()).policy(policy).build();
    let consumer = consumer(&cluster, &unique("billing"), &topic, guard)
        .build()
        .unwrap();
    let stats = consumer.stats();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let running = spawn(consumer, move |delivery| {
        record.lock().unwrap().push(text(&delivery));
        async { Ok(()) }
    });

    eventually(
        "alice's partition handled while bob's waits",
        Duration::from_secs(60),
        || seen.lock().unwrap().len() >= 5,
    )
    .await;
    eventually("bob's first record retried", Duration::from_secs(10), || {
        stats.snapshot().retried >= 3
    })
    .await;
    assert!(
        seen.lock().unwrap().iter().all(|s| s.starts_with("alice")),
        "{:?}",
        seen.lock().unwrap()
    );
    open.store(true, Ordering::SeqCst);
    eventually("bob's records handled", Duration::from_secs(30), || {
        seen.lock().unwrap().len() >= 10
    })
    .await;
    let report = running.stop().await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.iter().filter(|s| *s == "bob").count(), 5, "{seen:?}");
    assert_eq!((report.accepted, report.dead_lettered), (10, 0));
}
