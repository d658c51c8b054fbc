//! A consumer killed mid-stream and restarted in its group: the new one reads exactly what was
//! not committed, every id is handled at least once, and nothing is dead-lettered.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::Propagator;
use jwt_relay_kafka::rdkafka::producer::FutureRecord;

use crate::support::{Cluster, Idp, consumer, eventually, spawn, text, unique};

const RECORDS: usize = 200;

pub async fn a_restarted_consumer_reads_what_was_not_stored(cluster: Cluster) {
    let idp = Idp::start().await;
    let topic = unique("restart");
    cluster.topic(&topic, 1).await;
    let producer = cluster.producer(Propagator::default());
    let token = idp.token("alice");
    let ids: BTreeSet<String> = (0..RECORDS).map(|i| format!("{i:03}")).collect();
    for id in &ids {
        let record = FutureRecord::to(&topic).key(id).payload(id);
        producer
            .send_with_token(record, Some(&token))
            .await
            .expect("sent");
    }
    let group = unique("billing");

    let first_seen = Arc::new(Mutex::new(Vec::new()));
    let record = first_seen.clone();
    let first = consumer(&cluster, &group, &topic, idp.guard()).build().unwrap();
    let first_stats = first.stats();
    let running = spawn(first, move |delivery| {
        record.lock().unwrap().push(text(&delivery));
        async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(())
        }
    });
    eventually(
        "the first consumer is mid-stream",
        Duration::from_secs(60),
        || first_seen.lock().unwrap().len() >= 50,
    )
    .await;
    running.kill().await;
    let first_seen = first_seen.lock().unwrap().clone();
    assert!(first_seen.len() < RECORDS, "killed mid-stream");
    let committed = cluster.committed(&group, &topic);
    assert!(
        (0..=first_seen.len() as i64).contains(&committed),
        "committed {committed} of {} handled",
        first_seen.len()
    );

    let second_seen = Arc::new(Mutex::new(Vec::new()));
    let record = second_seen.clone();
    let second = consumer(&cluster, &group, &topic, idp.guard()).build().unwrap();
    let running = spawn(second, move |delivery| {
        record.lock().unwrap().push(text(&delivery));
        async { Ok(()) }
    });
    let expected = RECORDS - committed as usize;
    eventually(
        "the second consumer reads the rest",
        Duration::from_secs(60),
        || second_seen.lock().unwrap().len() >= expected,
    )
    .await;
    let second_report = running.stop().await;
    let second_seen = second_seen.lock().unwrap().clone();

    assert_eq!(
        second_seen.len(),
        expected,
        "only what was not committed is read again"
    );
    let all: BTreeSet<String> = first_seen.iter().chain(&second_seen).cloned().collect();
    assert_eq!(all, ids, "every id handled at least once");
    assert!(first_seen.len() + second_seen.len() >= RECORDS);
    let first_report = first_stats.snapshot();
    assert_eq!(
        (
            first_report.rejected,
            second_report.rejected,
            second_report.dead_lettered
        ),
        (0, 0, 0),
        "nothing dead-lettered"
    );
    assert_eq!(cluster.committed(&group, &topic), RECORDS as i64);
}
