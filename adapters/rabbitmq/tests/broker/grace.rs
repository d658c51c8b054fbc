//! The AMQP `timestamp` property reaches the expiry policy as a client-set time: `Grace`
//! refuses it unless told to trust the publishing client.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::consume::REASON_KIND;
use jwt_relay::verify::now_unix;
use jwt_relay::{Acceptance, Grace, Guard};
use jwt_relay_rabbitmq::Consumer;
use jwt_relay_rabbitmq::lapin::BasicProperties;

use crate::support::broker::broker;
use crate::support::tokens::{AUDIENCE, claims, token_with, verifier};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_uses_the_client_timestamp_only_when_trusted() {
    let Some(broker) = broker().await else { return };
    let topology = broker.topology("grace");
    broker.declare(&topology).await;
    let publisher = broker.publisher().await;
    // Expired ten minutes ago, published while it was still valid.
    let expired = token_with(&claims("alice", AUDIENCE, -600));
    let published_at = (now_unix() - 700).unsigned_abs();
    for _ in 0..2 {
        let properties = BasicProperties::default().with_timestamp(published_at);
        publisher
            .publish_with_token("", topology.queue(), b"x", properties, Some(&expired))
            .await
            .unwrap();
    }
    let one_hour = Grace::new(Duration::from_secs(3600));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    for grace in [one_hour, one_hour.trust_client_timestamps()] {
        let record = accepted.clone();
        let guard = Guard::builder(verifier()).policy(grace).build();
        Consumer::builder(broker.connector("grace"), topology.queue(), guard)
            .limit(1)
            .build()
            .run(
                move |received| {
                    record.lock().unwrap().push(received.context().acceptance());
                    async { Ok::<(), String>(()) }
                },
                std::future::pending::<()>(),
            )
            .await
            .unwrap();
    }

    assert_eq!(
        *accepted.lock().unwrap(),
        vec![Acceptance::Grace],
        "only when trusted"
    );
    let dead = broker.drain(topology.dead_letter_queue_name()).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header(REASON_KIND).as_deref(), Some("Expired"));
    broker.cleanup(&topology).await;
}
