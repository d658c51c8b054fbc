//! A message published with a user's identity reaches the handler with that identity.

use std::sync::{Arc, Mutex};

use jwt_relay::Guard;
use jwt_relay_rabbitmq::Consumer;
use jwt_relay_rabbitmq::lapin::BasicProperties;
use jwt_relay_rabbitmq::lapin::types::AMQPValue;

use crate::support::broker::{broker, headers, id_of};
use crate::support::tokens::{token, verifier};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_sees_the_verified_subject_payload_and_properties() {
    let Some(broker) = broker().await else { return };
    let topology = broker.topology("round-trip");
    broker.declare(&topology).await;
    let verifier = verifier();
    let alice = verifier.verify(&token("alice")).await.unwrap();

    let publisher = broker.publisher().await;
    let properties = BasicProperties::default()
        .with_headers(headers("order-1", &[("x-count", AMQPValue::LongLongInt(2))]))
        .with_message_id("m-1".into())
        .with_content_type("text/plain".into());
    publisher
        .publish("", topology.queue(), b"2 books", properties, Some(&alice))
        .await
        .unwrap();

    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let connector = broker.connector("round-trip");
    let consumer = Consumer::builder(connector, topology.queue(), Guard::new(verifier))
        .limit(1)
        .build();
    let report = consumer
        .run(
            move |received| {
                let record = record.clone();
                async move {
                    let p = received.properties();
                    record.lock().unwrap().push((
                        received.context().subject().map(str::to_owned),
                        id_of(&received),
                        received.payload().to_vec(),
                        p.message_id().as_ref().map(|m| m.as_str().to_owned()),
                        p.content_type().as_ref().map(|m| m.as_str().to_owned()),
                        p.timestamp().is_some(),
                        received.headers().and_then(|h| h.inner().get("x-count").cloned()),
                    ));
                    Ok::<(), String>(())
                }
            },
            std::future::pending::<()>(),
        )
        .await
        .unwrap();

    assert_eq!(report.accepted, 1);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![(
            Some("alice".to_owned()),
            "order-1".to_owned(),
            b"2 books".to_vec(),
            Some("m-1".to_owned()),
            Some("text/plain".to_owned()),
            true,
            Some(AMQPValue::LongLongInt(2)),
        )]
    );
    assert_eq!(broker.depth(topology.queue()).await, 0, "acknowledged");
    assert_eq!(broker.depth(topology.dead_letter_queue_name()).await, 0);
    broker.cleanup(&topology).await;
}
