//! A handler that publishes downstream propagates the token without touching headers.

use jwt_relay::{Guard, Propagator};
use jwt_relay_rabbitmq::lapin::BasicProperties;
use jwt_relay_rabbitmq::{Consumer, Publisher, Topology};

use crate::support::broker::{broker, unique};
use crate::support::tokens::{token, verifier};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_publishing_to_another_queue_propagates_the_token() {
    let Some(broker) = broker().await else { return };
    let work = broker.topology("propagate");
    let downstream = Topology::new(unique("propagate-downstream"));
    broker.declare(&work).await;
    broker.declare(&downstream).await;
    let raw = token("alice");
    let publisher = broker.publisher().await;
    publisher
        .publish_with_token("", work.queue(), b"order", BasicProperties::default(), Some(&raw))
        .await
        .unwrap();

    let onward = Publisher::new(broker.publisher().await.channel().clone(), Propagator::default())
        .await
        .unwrap();
    let target = downstream.queue().to_owned();
    let connector = broker.connector("propagate");
    let consumer = Consumer::builder(connector, work.queue(), Guard::new(verifier()))
        .limit(1)
        .build();
    let report = consumer
        .run(
            move |received| {
                let (onward, target) = (onward.clone(), target.clone());
                async move {
                    // No context passed: the handler's ambient identity is used. From a
                    // spawned task too, with `WithIdentity`.
                    use jwt_relay::publish::WithIdentity as _;
                    let payload = received.payload().to_vec();
                    tokio::spawn(
                        async move {
                            onward
                                .publish("", &target, &payload, BasicProperties::default(), None)
                                .await
                        }
                        .with_current_identity(),
                    )
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
                }
            },
            std::future::pending::<()>(),
        )
        .await
        .unwrap();
    assert_eq!(report.accepted, 1);

    let got = broker.drain(downstream.queue()).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, b"order");
    assert_eq!(got[0].header("Authorization"), Some(format!("Bearer {raw}")));
    let downstream_identity = verifier().verify(&raw).await.unwrap();
    assert_eq!(downstream_identity.subject(), Some("alice"));
    broker.cleanup(&work).await;
    broker.cleanup(&downstream).await;
}
