//! AMQP header variants through the broker: a lower-case name verifies; two casings of the
//! token header, or a token header of a non-string type, are dead-lettered.
//!
//! A `ShortString` token value cannot be sent through RabbitMQ (its field tables have no
//! short-string type: `s` is a 16-bit integer), so that rule is covered by the unit tests of
//! `src/headers.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use jwt_relay::Guard;
use jwt_relay::consume::REASON_KIND;
use jwt_relay_rabbitmq::Consumer;
use jwt_relay_rabbitmq::lapin::BasicProperties;
use jwt_relay_rabbitmq::lapin::options::BasicPublishOptions;
use jwt_relay_rabbitmq::lapin::types::AMQPValue;

use crate::support::broker::{broker, headers, id_of};
use crate::support::tokens::{token, verifier};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lower_case_verifies_two_casings_and_other_types_are_dead_lettered() {
    let Some(broker) = broker().await else { return };
    let topology = broker.topology("headers");
    broker.declare(&topology).await;
    let publisher = broker.publisher().await;
    let bearer = AMQPValue::LongString(format!("Bearer {}", token("bob")).into());
    let cases = [
        ("lower-case", vec![("authorization", bearer.clone())]),
        (
            "two-casings",
            vec![
                ("Authorization", bearer.clone()),
                ("authorization", bearer.clone()),
            ],
        ),
        ("integer", vec![("Authorization", AMQPValue::LongLongInt(42))]),
    ];
    for (id, extra) in &cases {
        let properties = BasicProperties::default().with_headers(headers(id, extra));
        // Published raw, past the publisher (which never sends a token header it did not
        // choose): the headers go as the test wrote them.
        publisher
            .channel()
            .basic_publish(
                "".into(),
                topology.queue().into(),
                BasicPublishOptions::default(),
                b"x",
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let accepted = Arc::new(Mutex::new(Vec::new()));
    let record = accepted.clone();
    let connector = broker.connector("headers");
    let consumer = Consumer::builder(connector, topology.queue(), Guard::new(verifier()))
        .limit(cases.len() as u64)
        .build();
    consumer
        .run(
            move |received| {
                let subject = received.context().subject().map(str::to_owned);
                record.lock().unwrap().push((id_of(&received), subject));
                async { Ok::<(), String>(()) }
            },
            std::future::pending::<()>(),
        )
        .await
        .unwrap();

    assert_eq!(
        *accepted.lock().unwrap(),
        vec![("lower-case".to_owned(), Some("bob".to_owned()))]
    );
    let kinds: BTreeMap<String, String> = broker
        .drain(topology.dead_letter_queue_name())
        .await
        .iter()
        .map(|m| {
            assert!(!m.has_header_any_case("authorization"), "every casing is dropped");
            (m.header("x-id").unwrap(), m.header(REASON_KIND).unwrap())
        })
        .collect();
    let expected: BTreeMap<String, String> = [("integer", "NonAscii"), ("two-casings", "DuplicateHeader")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
    assert_eq!(kinds, expected);
    broker.cleanup(&topology).await;
}
