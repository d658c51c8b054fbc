//! The broker goes down mid-stream and comes back (librdkafka's mock cluster, whose brokers a
//! test can stop): the consumer rides it out, records published while it was down are read
//! after, every id is handled at least once, and nothing is dead-lettered.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::Propagator;
use jwt_relay_kafka::rdkafka::producer::FutureRecord;

use crate::support::{Cluster, Idp, consumer, eventually, spawn, text, unique};

const BEFORE: usize = 100;
const AFTER: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_rides_out_a_broker_outage_and_loses_nothing() {
    let cluster = Cluster::mock();
    let Cluster::Mock(mock) = &cluster else {
        unreachable!("a mock cluster")
    };
    let idp = Idp::start().await;
    let topic = unique("broker-down");
    cluster.topic(&topic, 1).await;
    let producer = cluster.producer(Propagator::default());
    let token = idp.token("alice");
    let ids: Vec<String> = (0..BEFORE + AFTER).map(|i| format!("{i:03}")).collect();
    for id in &ids[..BEFORE] {
        let record = FutureRecord::to(&topic).key(id).payload(id);
        producer
            .send_with_token(record, Some(&token))
            .await
            .expect("sent");
    }

    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let running = spawn(
        consumer(&cluster, &unique("billing"), &topic, idp.guard())
            .build()
            .unwrap(),
        move |delivery| {
            record.lock().unwrap().push(text(&delivery));
            async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(())
            }
        },
    );
    eventually("the consumer is mid-stream", Duration::from_secs(60), || {
        seen.lock().unwrap().len() >= 30
    })
    .await;

    mock.broker_down(1).expect("the broker goes down");
    tokio::time::sleep(Duration::from_secs(3)).await;
    mock.broker_up(1).expect("the broker comes back");
    // Published once it is back (the producer queued nothing while it was down).
    for id in &ids[BEFORE..] {
        let record = FutureRecord::to(&topic).key(id).payload(id);
        producer
            .send_with_token(record, Some(&token))
            .await
            .expect("sent");
    }
    let expected: BTreeSet<String> = ids.iter().cloned().collect();
    eventually("every id is handled", Duration::from_secs(90), || {
        seen.lock().unwrap().iter().cloned().collect::<BTreeSet<_>>() == expected
    })
    .await;
    let report = running.stop().await;

    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= expected.len(), "at least once");
    assert_eq!(
        (report.rejected, report.dead_lettered),
        (0, 0),
        "nothing dead-lettered: {report:?}"
    );
}
