//! What the publisher writes, and that every way a publish can fail is an error.

use jwt_relay::publish::PublishErrorKind;
use jwt_relay_rabbitmq::lapin::BasicProperties;
use jwt_relay_rabbitmq::lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use jwt_relay_rabbitmq::lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use crate::support::broker::{broker, headers, unique};
use crate::support::tokens::{token, verifier};

async fn declare_plain(broker: &crate::support::broker::Broker, queue: &str, arguments: FieldTable) {
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    broker
        .channel
        .queue_declare(ShortString::from(queue), options, arguments)
        .await
        .unwrap();
}

async fn delete_plain(broker: &crate::support::broker::Broker, queue: &str) {
    broker
        .channel
        .queue_delete(ShortString::from(queue), QueueDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ambient_token_is_written_as_a_long_string_and_everything_else_is_kept() {
    let Some(broker) = broker().await else { return };
    let queue = unique("publish-headers");
    declare_plain(&broker, &queue, FieldTable::default()).await;
    let raw = token("alice");
    let alice = verifier().verify(&raw).await.unwrap();
    let publisher = broker.publisher().await;

    let stamped = BasicProperties::default()
        .with_headers(headers("own-timestamp", &[]))
        .with_timestamp(1_600_000_000);
    let unstamped = BasicProperties::default().with_headers(headers(
        "no-timestamp",
        &[("authorization", AMQPValue::LongString("Bearer stale".into()))],
    ));
    jwt_relay::scope(alice, async {
        publisher.publish("", &queue, b"a", stamped, None).await.unwrap();
        publisher
            .publish("", &queue, b"b", unstamped, None)
            .await
            .unwrap();
    })
    .await;

    let got = broker.drain(&queue).await;
    assert_eq!(got.len(), 2);
    let bearer = AMQPValue::LongString(LongString::from(format!("Bearer {raw}")));
    for message in &got {
        let headers = message.properties.headers().as_ref().unwrap().inner();
        assert_eq!(headers.get("Authorization"), Some(&bearer));
        assert!(
            !headers.contains_key("authorization"),
            "an older casing is replaced"
        );
    }
    assert_eq!(got[0].header("x-id").as_deref(), Some("own-timestamp"));
    assert_eq!(
        *got[0].properties.timestamp(),
        Some(1_600_000_000),
        "the caller's is kept"
    );
    let now = jwt_relay::verify::now_unix().unsigned_abs();
    let set = got[1].properties.timestamp().unwrap();
    assert!(set.abs_diff(now) < 60, "set when absent: {set} vs {now}");
    delete_plain(&broker, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_identity_unroutable_and_nacked_are_errors() {
    let Some(broker) = broker().await else { return };
    let publisher = broker.publisher().await;
    let alice = verifier().verify(&token("alice")).await.unwrap();

    // Full: a queue holding one message that refuses the next one (a nack).
    let full = unique("publish-nack");
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
    arguments.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    declare_plain(&broker, &full, arguments).await;

    let no_identity = publisher
        .publish("", &full, b"x", BasicProperties::default(), None)
        .await
        .unwrap_err();
    assert_eq!(no_identity.kind(), PublishErrorKind::NoIdentity);
    assert_eq!(broker.depth(&full).await, 0, "nothing was published");

    let nowhere = unique("publish-nowhere");
    let unroutable = publisher
        .publish("", &nowhere, b"x", BasicProperties::default(), Some(&alice))
        .await
        .unwrap_err();
    assert_eq!(unroutable.kind(), PublishErrorKind::Unroutable, "{unroutable}");

    publisher
        .publish("", &full, b"1", BasicProperties::default(), Some(&alice))
        .await
        .unwrap();
    let nacked = publisher
        .publish("", &full, b"2", BasicProperties::default(), Some(&alice))
        .await
        .unwrap_err();
    assert_eq!(nacked.kind(), PublishErrorKind::Nacked, "{nacked}");
    for error in [&no_identity, &unroutable, &nacked] {
        assert!(
            !format!("{error} {error:?}").contains(alice.token()),
            "no token in errors"
        );
    }
    delete_plain(&broker, &full).await;
}
