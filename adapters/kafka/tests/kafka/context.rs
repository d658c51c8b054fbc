//! The user's own rdkafka `ClientContext` (for OAUTHBEARER token refresh, statistics, logs)
//! gets every client callback while the consumer runs, and records still flow.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jwt_relay::Propagator;
use jwt_relay_kafka::rdkafka::ClientContext;
use jwt_relay_kafka::rdkafka::producer::FutureRecord;

use crate::support::{Cluster, Idp, unique};

/// A context counting the statistics librdkafka emits.
#[derive(Clone, Default)]
struct Counting {
    statistics: Arc<AtomicU64>,
}

impl ClientContext for Counting {
    fn stats_raw(&self, _statistics: &[u8]) {
        self.statistics.fetch_add(1, Ordering::SeqCst);
    }
}

pub async fn the_users_client_context_gets_the_callbacks(cluster: Cluster) {
    let idp = Idp::start().await;
    let topic = unique("context");
    cluster.topic(&topic, 1).await;
    let producer = cluster.producer(Propagator::default());
    for id in ["1", "2", "3"] {
        let record = FutureRecord::to(&topic).key(id).payload(id);
        producer
            .send_with_token(record, Some(&idp.token("alice")))
            .await
            .expect("sent");
    }
    let context = Counting::default();
    let mut config = cluster.group(&unique("billing"));
    config.set("statistics.interval.ms", "100");
    let consumer = jwt_relay_kafka::Consumer::builder(&config, idp.guard())
        .topic(topic.as_str())
        .limit(3)
        .context(context.clone())
        .build()
        .unwrap();
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        consumer.run(
            |_| async {
                // Long enough for librdkafka to emit statistics at least once.
                tokio::time::sleep(Duration::from_millis(150)).await;
                Ok::<(), String>(())
            },
            std::future::pending::<()>(),
        ),
    )
    .await
    .expect("the consumer reaches its limit")
    .unwrap();
    assert_eq!(report.accepted, 3);
    assert!(
        context.statistics.load(Ordering::SeqCst) > 0,
        "the user's context received librdkafka's statistics"
    );
}
