//! A record sent with the user's identity reaches the handler with that identity verified.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::Propagator;
use jwt_relay::publish::PublishErrorKind;
use jwt_relay_kafka::rdkafka::Timestamp;
use jwt_relay_kafka::rdkafka::message::{Header, OwnedHeaders};
use jwt_relay_kafka::rdkafka::producer::FutureRecord;

use crate::support::{Cluster, Idp, consumer, header, run_to_limit, text, unique};

pub async fn the_handler_sees_the_verified_subject(cluster: Cluster) {
    let idp = Idp::start().await;
    let topic = unique("round-trip");
    cluster.topic(&topic, 1).await;
    let producer = cluster.producer(Propagator::default());
    let alice = idp.context("alice").await;

    let anonymous = producer
        .send(FutureRecord::to(&topic).key("k").payload("x"), None)
        .await;
    assert_eq!(
        anonymous.expect_err("no identity, no send").kind(),
        PublishErrorKind::NoIdentity
    );
    let headers = OwnedHeaders::new().insert(Header {
        key: "x-order",
        value: Some("42"),
    });
    let record = FutureRecord::to(&topic)
        .key("k")
        .payload("order 42")
        .headers(headers);
    let sent = producer.send(record, Some(&alice)).await.expect("sent");
    assert_eq!((sent.partition, sent.offset), (0, 0));

    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let consumer = consumer(&cluster, &unique("billing"), &topic, idp.guard())
        .limit(1)
        .build()
        .unwrap();
    let report = run_to_limit(&consumer, Duration::from_secs(60), move |delivery| {
        let ambient = jwt_relay::current().map(|c| c.subject().map(str::to_owned));
        record.lock().unwrap().push((
            delivery.context().subject().map(str::to_owned),
            ambient,
            text(&delivery),
            header(delivery.record(), "x-order"),
            matches!(delivery.timestamp(), Timestamp::CreateTime(_)),
            delivery.context().token() == alice_token(&delivery),
        ));
        async { Ok(()) }
    })
    .await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(
            Some("alice".to_owned()),
            Some(Some("alice".to_owned())),
            "order 42".to_owned(),
            Some("42".to_owned()),
            true,
            true,
        )]
    );
    assert_eq!((report.accepted, report.rejected), (1, 0));
}

/// The token as it travelled in the record.
fn alice_token(delivery: &jwt_relay_kafka::Received) -> String {
    header(delivery.record(), "Authorization")
        .and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned))
        .unwrap_or_default()
}
