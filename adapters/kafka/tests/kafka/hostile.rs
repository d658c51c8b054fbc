//! Every hostile class of `jwt_relay::testing::hostile`, published raw between good records:
//! each lands in the dead-letter topic with its kind and without its headers' token, the
//! consumer keeps going, and every good record is handled.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::Propagator;
use jwt_relay::consume::REASON_KIND;
use jwt_relay::testing::hostile;
use jwt_relay_kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use jwt_relay_kafka::rdkafka::message::{Header, Message as _, OwnedHeaders};
use jwt_relay_kafka::rdkafka::producer::FutureRecord;

use crate::support::{AUD, Cluster, Idp, consumer, header, run_to_limit, unique};

pub async fn every_hostile_class_is_dead_lettered_and_good_records_flow(cluster: Cluster) {
    let idp = Idp::start().await;
    let topic = unique("hostile");
    cluster.topic(&topic, 1).await;
    let producer = cluster.producer(Propagator::default());
    let corpus = hostile(&idp.sts, AUD);

    let mut goods = BTreeSet::new();
    // The kind each published hostile record must be dead-lettered with, by key.
    let mut expected = BTreeMap::new();
    for (i, case) in corpus.iter().enumerate() {
        let good = format!("good-{i}");
        let record = FutureRecord::to(&topic).key(&good).payload(&good);
        producer
            .send_with_token(record, Some(&idp.token("alice")))
            .await
            .expect("sent");
        goods.insert(good);

        let key = format!("hostile-{i}");
        let headers = case
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |headers, (name, value)| {
                headers.insert(Header {
                    key: name,
                    value: Some(value.as_slice()),
                })
            });
        let record = FutureRecord::to(&topic)
            .key(&key)
            .payload(case.name)
            .headers(headers);
        let sent = producer.inner().send(record, Duration::from_secs(10)).await;
        if case.name.contains("1 MiB") {
            // librdkafka refuses a record over `message.max.bytes` (1 MB) before it leaves:
            // the 1 MiB header never reaches a consumer.
            assert!(
                matches!(
                    sent,
                    Err((
                        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                        _
                    ))
                ),
                "the 1 MiB header is refused by the client"
            );
            continue;
        }
        sent.unwrap_or_else(|(e, _)| panic!("{}: not sent: {e}", case.name));
        expected.insert(key, format!("{:?}", case.kind));
    }
    assert_eq!(
        expected.len() + 1,
        corpus.len(),
        "all but the 1 MiB header travel"
    );

    let handled = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = handled.clone();
    let total = goods.len() + expected.len();
    let consumer = consumer(&cluster, &unique("billing"), &topic, idp.guard())
        .limit(total as u64)
        .build()
        .unwrap();
    let report = run_to_limit(&consumer, Duration::from_secs(90), move |delivery| {
        let seen = seen.clone();
        async move {
            let key = String::from_utf8_lossy(delivery.key().unwrap_or_default()).into_owned();
            seen.lock().unwrap().insert(key);
            Ok(())
        }
    })
    .await;
    assert_eq!(*handled.lock().unwrap(), goods, "every good record is handled");
    assert_eq!(
        (report.accepted, report.dead_lettered),
        (goods.len() as u64, expected.len() as u64)
    );

    let copies = cluster.read(&format!("{topic}.dlq"), expected.len());
    let found: BTreeMap<String, String> = copies
        .iter()
        .map(|copy| {
            assert!(
                header(copy, "authorization").is_none(),
                "no token header in a copy"
            );
            let key = String::from_utf8_lossy(copy.key().unwrap_or_default()).into_owned();
            (key, header(copy, REASON_KIND).unwrap_or_default())
        })
        .collect();
    assert_eq!(found, expected, "each hostile record's dead-letter reason");
}
