//! A handler that sends to a second topic passes the user's token on without touching headers.

use std::time::Duration;

use jwt_relay::Propagator;
use jwt_relay_kafka::rdkafka::message::{Header, OwnedHeaders};
use jwt_relay_kafka::rdkafka::producer::FutureRecord;

use crate::support::{Cluster, Idp, consumer, header, payload, run_to_limit, unique};

pub async fn a_handler_publishing_downstream_propagates_the_token(cluster: Cluster) {
    let idp = Idp::start().await;
    let (orders, invoices) = (unique("orders"), unique("invoices"));
    cluster.topic(&orders, 1).await;
    cluster.create(&invoices, 1).await;
    let producer = cluster.producer(Propagator::default());
    let token = idp.token("alice");
    let record = FutureRecord::to(&orders).key("1").payload("order 1");
    producer
        .send_with_token(record, Some(&token))
        .await
        .expect("sent");

    let downstream = producer.clone();
    let target = invoices.clone();
    let consumer = consumer(&cluster, &unique("billing"), &orders, idp.guard())
        .limit(1)
        .build()
        .unwrap();
    run_to_limit(&consumer, Duration::from_secs(60), move |delivery| {
        let (producer, target) = (downstream.clone(), target.clone());
        async move {
            let invoice = format!("invoice for {}", String::from_utf8_lossy(delivery.payload()));
            let record = FutureRecord::to(&target).key("1").payload(&invoice);
            producer
                .send(record, None)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await;

    let sent = cluster.read(&invoices, 1);
    assert_eq!(sent.len(), 1);
    assert_eq!(payload(&sent[0]), "invoice for order 1");
    assert_eq!(header(&sent[0], "Authorization"), Some(format!("Bearer {token}")));

    // A token header copied from elsewhere never leaves without being chosen.
    let copied = OwnedHeaders::new().insert(Header {
        key: "authorization",
        value: Some(&format!("Bearer {token}")),
    });
    let record = FutureRecord::to(&invoices)
        .key("2")
        .payload("anonymous")
        .headers(copied);
    producer.send_with_token(record, None).await.expect("sent");
    let sent = cluster.read(&invoices, 2);
    assert_eq!(sent.len(), 2);
    assert_eq!(
        header(&sent[1], "Authorization"),
        None,
        "the copied token was removed"
    );
}
