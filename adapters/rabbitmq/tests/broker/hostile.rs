//! Every hostile class of `jwt_relay::testing::hostile`, published raw between good messages:
//! each lands in the dead-letter queue with its kind and without a token header, the consumer
//! keeps going, and every good message is handled.
//!
//! The 1 MiB header cannot travel: AMQP sends a message's headers in one frame, and RabbitMQ's
//! `frame_max` is 128 KiB. Publishing it fails (the broker closes that channel), and the
//! consumer never sees it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::Guard;
use jwt_relay::consume::REASON_KIND;
use jwt_relay::testing::{DevSts, DevStsConfig, hostile};
use jwt_relay_rabbitmq::Consumer;
use jwt_relay_rabbitmq::lapin::options::BasicPublishOptions;
use jwt_relay_rabbitmq::lapin::types::{AMQPValue, LongString};
use jwt_relay_rabbitmq::lapin::{BasicProperties, Channel};

use crate::support::broker::{broker, headers, id_of};

async fn publish_raw(channel: &Channel, queue: &str, properties: BasicProperties) -> Result<(), String> {
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            b"x",
            properties,
        )
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(10), confirm)
        .await
        .map_err(|_| "no confirm".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_class_is_dead_lettered_and_good_messages_flow() {
    let Some(broker) = broker().await else { return };
    let sts = DevSts::start(DevStsConfig::default()).await.unwrap();
    let verifier = sts.verifier("orders").unwrap();
    let topology = broker.topology("hostile");
    broker.declare(&topology).await;
    let publisher = broker.publisher().await;
    let corpus = hostile(&sts, "orders");

    let mut goods = BTreeSet::new();
    let mut expected = BTreeMap::new();
    let mut too_big = None;
    for (i, case) in corpus.iter().enumerate() {
        let good = format!("good-{i}");
        let bearer = format!("Bearer {}", sts.mint("alice", "orders", Duration::from_secs(300)));
        let properties = BasicProperties::default().with_headers(headers(
            &good,
            &[("Authorization", AMQPValue::LongString(bearer.into()))],
        ));
        publish_raw(publisher.channel(), topology.queue(), properties)
            .await
            .unwrap();
        goods.insert(good);

        let id = format!("hostile-{i}");
        let extra: Vec<(&str, AMQPValue)> = case
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str(),
                    AMQPValue::LongString(LongString::from(value.clone())),
                )
            })
            .collect();
        let properties = BasicProperties::default().with_headers(headers(&id, &extra));
        if case.name.contains("1 MiB") {
            too_big = Some(properties);
            continue;
        }
        publish_raw(publisher.channel(), topology.queue(), properties)
            .await
            .unwrap();
        expected.insert(id, format!("{:?}", case.kind));
    }
    // On a channel of its own: the broker closes the channel that sent it.
    let channel = broker.publisher().await;
    let refused = publish_raw(channel.channel(), topology.queue(), too_big.unwrap()).await;
    assert!(refused.is_err(), "a 1 MiB header frame is refused");

    let handled = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = handled.clone();
    let total = goods.len() + expected.len();
    let connector = broker.connector("hostile");
    let consumer = Consumer::builder(connector, topology.queue(), Guard::new(verifier))
        .limit(total as u64)
        .build();
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        consumer.run(
            move |received| {
                seen.lock().unwrap().insert(id_of(&received));
                async { Ok::<(), String>(()) }
            },
            std::future::pending::<()>(),
        ),
    )
    .await
    .expect("the consumer reaches its limit")
    .unwrap();
    assert_eq!(*handled.lock().unwrap(), goods, "every good message is handled");
    assert_eq!(
        (report.accepted, report.dead_lettered),
        (goods.len() as u64, expected.len() as u64)
    );

    let letters = broker.drain(topology.dead_letter_queue_name()).await;
    let found: BTreeMap<String, String> = letters
        .iter()
        .map(|letter| {
            assert!(
                !letter.has_header_any_case("authorization"),
                "no token header in a dead-lettered copy"
            );
            (
                letter.header("x-id").unwrap_or_default(),
                letter.header(REASON_KIND).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(found, expected, "each hostile message's dead-letter reason");
    assert_eq!(broker.depth(topology.queue()).await, 0, "nothing left behind");
    broker.cleanup(&topology).await;
    sts.shutdown().await;
}
