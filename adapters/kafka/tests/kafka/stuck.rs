//! A handler stuck on one partition's record: the consumer's other partitions are read and
//! handled meanwhile, and once it is released, its partition goes on in order, nothing lost
//! and nothing handled twice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::Propagator;
use jwt_relay_kafka::Publisher;
use jwt_relay_kafka::rdkafka::producer::FutureRecord;

use crate::support::{Cluster, Idp, consumer, eventually, spawn, text, unique};

/// Records on the stuck partition: many more than its buffer holds.
const STUCK: usize = 60;
/// Records on the other partition, sent once the handler is stuck.
const FLOWING: usize = 10;

pub async fn a_stuck_handler_does_not_hold_up_the_other_partitions(cluster: Cluster) {
    let idp = Idp::start().await;
    let topic = unique("stuck");
    cluster.topic(&topic, 2).await;
    let producer = cluster.producer(Propagator::default());
    let token = idp.token("alice");
    send(&producer, &topic, 0, STUCK, &token).await;

    let (release, released) = tokio::sync::watch::channel(false);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let consumer = consumer(&cluster, &unique("stuck"), &topic, idp.guard())
        .buffer(4)
        .build()
        .unwrap();
    let running = spawn(consumer, move |delivery| {
        record.lock().unwrap().push(text(&delivery));
        let mut released = released.clone();
        let stuck = delivery.partition() == 0;
        async move {
            if stuck {
                let _ = released.wait_for(|open| *open).await;
            }
            Ok(())
        }
    });
    let count = |prefix: &str| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|s| s.starts_with(prefix))
            .count()
    };
    eventually("partition 0's handler is stuck", Duration::from_secs(60), || {
        count("p0-") == 1
    })
    .await;
    // Sent now, they are read behind partition 0's backlog.
    send(&producer, &topic, 1, FLOWING, &token).await;
    eventually(
        "partition 1 handled while partition 0's handler is stuck",
        Duration::from_secs(30),
        || count("p1-") == FLOWING,
    )
    .await;
    assert_eq!(count("p0-"), 1, "partition 0 waits for its first record");

    release.send_replace(true);
    eventually(
        "partition 0 handled once released",
        Duration::from_secs(30),
        || count("p0-") == STUCK,
    )
    .await;
    let report = running.stop().await;
    let seen = seen.lock().unwrap().clone();
    for (partition, records) in [(0, STUCK), (1, FLOWING)] {
        let prefix = format!("p{partition}-");
        let order: Vec<&String> = seen.iter().filter(|s| s.starts_with(&prefix)).collect();
        let expected: Vec<String> = (0..records).map(|n| format!("{prefix}{n}")).collect();
        assert_eq!(
            order,
            expected.iter().collect::<Vec<_>>(),
            "partition {partition}: each once, in order"
        );
    }
    assert_eq!(report.accepted, (STUCK + FLOWING) as u64);
}

async fn send(producer: &Publisher, topic: &str, partition: i32, records: usize, token: &str) {
    for n in 0..records {
        let id = format!("p{partition}-{n}");
        let record = FutureRecord::to(topic).partition(partition).key(&id).payload(&id);
        producer.send_with_token(record, Some(token)).await.expect("sent");
    }
}
