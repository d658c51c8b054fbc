//! A backlog of records, each with a token of its own, a forged and an expired one among them:
//! their tokens are verified ahead while the records before them are handled, and each record
//! is still decided in its turn and handled in order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::Propagator;
use jwt_relay_kafka::rdkafka::producer::FutureRecord;

use crate::support::{Cluster, Idp, consumer, reasons, run_to_limit, text, unique};

const RECORDS: usize = 120;
const FORGED: usize = 37;
const EXPIRED: usize = 81;

pub async fn a_backlog_of_distinct_tokens_is_decided_in_order(cluster: Cluster) {
    backlog(cluster, None).await;
}

/// The same through a buffer of 4 records: the partition's buffer fills and is refilled about
/// 60 times, by halves or after the refill's wait, while the records in it are checked ahead.
pub async fn a_backlog_through_a_small_buffer_is_decided_in_order(cluster: Cluster) {
    backlog(cluster, Some(4)).await;
}

async fn backlog(cluster: Cluster, buffer: Option<usize>) {
    let idp = Idp::start().await;
    let topic = unique("ahead");
    cluster.topic(&topic, 1).await;
    let producer = cluster.producer(Propagator::default());
    let mut expected = Vec::new();
    for i in 0..RECORDS {
        let user = format!("user{i}");
        let token = match i {
            FORGED => idp.forged(&user),
            EXPIRED => idp.expired(&user),
            _ => {
                expected.push((i.to_string(), user.clone()));
                idp.token(&user)
            }
        };
        let id = i.to_string();
        let record = FutureRecord::to(&topic).key(&id).payload(&id);
        producer
            .send_with_token(record, Some(&token))
            .await
            .expect("sent");
    }

    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let mut builder = consumer(&cluster, &unique("ahead"), &topic, idp.guard()).limit(RECORDS as u64);
    if let Some(records) = buffer {
        builder = builder.buffer(records);
    }
    let consumer = builder.build().unwrap();
    let report = run_to_limit(&consumer, Duration::from_secs(60), move |delivery| {
        let subject = delivery.context().subject().unwrap_or_default().to_owned();
        record.lock().unwrap().push((text(&delivery), subject));
        // A little work per record, so that a backlog waits behind it.
        async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok(())
        }
    })
    .await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen, expected,
        "every good record, in order, with its own identity"
    );
    assert_eq!((report.accepted, report.dead_lettered), (RECORDS as u64 - 2, 2));
    let kinds = reasons(&cluster.read(&format!("{topic}.dlq"), 2));
    assert_eq!(kinds.get("BadSignature"), Some(&1), "{kinds:?}");
    assert_eq!(kinds.get("Expired"), Some(&1), "{kinds:?}");
}
