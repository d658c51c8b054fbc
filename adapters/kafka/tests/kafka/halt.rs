//! A halt (our setup is wrong) stops the consumer with the reason, and stores nothing for the
//! record: the next consumer of the group reads it again.

use std::time::Duration;

use jwt_relay::consume::{ExpiredToken, Outcome};
use jwt_relay::{Error, ErrorKind, Guard, Propagator};
use jwt_relay_kafka::ErrorKind as StopKind;
use jwt_relay_kafka::rdkafka::producer::FutureRecord;

use crate::support::{Cluster, Idp, consumer, unique};

pub async fn a_halt_stops_the_consumer_and_stores_nothing(cluster: Cluster) {
    let idp = Idp::start().await;
    let topic = unique("halt");
    cluster.topic(&topic, 1).await;
    let producer = cluster.producer(Propagator::default());
    let record = FutureRecord::to(&topic).key("1").payload("late");
    producer
        .send_with_token(record, Some(&idp.expired("alice")))
        .await
        .expect("sent");
    // A policy that finds our own setup wrong.
    let policy = |_: ExpiredToken| async {
        Outcome::Halt(Error::new(ErrorKind::Configuration, "no exchanger configured"))
    };
    let guard = Guard::builder(idp.verifier.clone()).policy(policy).build();
    let group = unique("billing");
    let consumer = consumer(&cluster, &group, &topic, guard).build().unwrap();
    let stopped = tokio::time::timeout(
        Duration::from_secs(60),
        consumer.run(|_| async { Ok::<(), String>(()) }, std::future::pending::<()>()),
    )
    .await
    .expect("the consumer stops by itself");
    let error = stopped.expect_err("a halt is an error");
    assert_eq!(error.kind(), StopKind::Halted);
    assert_eq!(
        error.halt_reason().map(Error::kind),
        Some(ErrorKind::Configuration)
    );
    assert!(
        cluster.committed(&group, &topic) < 1,
        "nothing stored for the record"
    );
    assert_eq!(consumer.stats().snapshot().dead_lettered, 0);
}
