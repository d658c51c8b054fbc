//! Many instances in one consumer group, in a test binary of its own: each scenario runs 20 000
//! records through four instances, alone on the machine's cores (the two run one after the
//! other), so that the timings a rebalance depends on are the group's, not the load's.
//!
//! The eager protocol runs on the real broker (librdkafka's mock cluster refuses the offset
//! commit of a member handing partitions over, `RebalanceInProgress`, which a Kafka broker
//! accepts), `cooperative-sticky` on the mock cluster (see `many::cooperative`).

#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

#[path = "../kafka/support.rs"]
mod support;

mod many;

/// One scenario at a time.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager() {
    let _alone = ALONE.lock().await;
    if let Some(cluster) = support::Cluster::broker() {
        many::eager(cluster).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative() {
    let _alone = ALONE.lock().await;
    many::cooperative(support::Cluster::mock()).await;
}
