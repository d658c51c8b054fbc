//! Why a consumer stops: a configuration error (the message stays in its queue), a queue that
//! does not exist, a broker that cannot be reached at first.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jwt_relay::consume::{ExpiredToken, Outcome};
use jwt_relay::{ErrorKind, Guard};
use jwt_relay_rabbitmq::lapin::BasicProperties;
use jwt_relay_rabbitmq::{Consumer, ErrorKind as StopKind};

use jwt_relay_rabbitmq::Connector;

use crate::support::broker::{broker, unique};
use crate::support::tokens::{AUDIENCE, claims, token_with, verifier};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_stops_the_consumer_and_keeps_the_message() {
    let Some(broker) = broker().await else { return };
    let topology = broker.topology("halt");
    broker.declare(&topology).await;
    let publisher = broker.publisher().await;
    let expired = token_with(&claims("alice", AUDIENCE, -600));
    publisher
        .publish_with_token(
            "",
            topology.queue(),
            b"x",
            BasicProperties::default(),
            Some(&expired),
        )
        .await
        .unwrap();

    // An expiry policy whose token service refuses our client: our setup is wrong.
    let guard = Guard::builder(verifier())
        .policy(|_: ExpiredToken| async {
            Outcome::Halt(jwt_relay::Error::new(
                ErrorKind::ExchangeUnauthorized,
                "the token service refuses client `billing`",
            ))
        })
        .build();
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let error = Consumer::builder(broker.connector("halt"), topology.queue(), guard)
        .build()
        .run(
            move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
                async { Ok::<(), String>(()) }
            },
            std::future::pending::<()>(),
        )
        .await
        .unwrap_err();

    assert_eq!(error.kind(), StopKind::Halted);
    assert_eq!(
        error.halt_reason().map(|e| e.kind()),
        Some(ErrorKind::ExchangeUnauthorized)
    );
    assert!(error.to_string().contains("refuses client `billing`"), "{error}");
    assert_eq!(handled.load(Ordering::SeqCst), 0);
    assert_eq!(
        broker.depth(topology.queue()).await,
        1,
        "the message waits for a fixed setup"
    );
    assert_eq!(broker.depth(topology.dead_letter_queue_name()).await, 0);
    broker.cleanup(&topology).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_queue_and_an_unreachable_broker_stop_the_run() {
    let Some(broker) = broker().await else { return };
    let run = |queue: String, connector: Connector| async move {
        Consumer::builder(connector, queue, Guard::new(verifier()))
            .build()
            .run(|_| async { Ok::<(), String>(()) }, std::future::pending::<()>())
            .await
            .unwrap_err()
    };
    let missing = run(unique("no-such-queue"), broker.connector("missing-queue")).await;
    assert_eq!(missing.kind(), StopKind::Broker, "{missing}");
    assert!(missing.to_string().contains("NOT_FOUND"), "{missing}");

    let nobody = run(
        unique("any"),
        Connector::new("amqp://guest:guest@127.0.0.1:1/%2f"),
    )
    .await;
    assert_eq!(nobody.kind(), StopKind::Connection, "{nobody}");
    assert!(
        !format!("{nobody} {nobody:?}").contains("guest:guest"),
        "no credentials: {nobody:?}"
    );
}
