//! The in-memory fallback the RabbitMQ and NATS hops share when no broker is named.

use jwt_relay::memory::{MemoryBroker, MemoryConsumer, Received};
use jwt_relay::{AuthContext, Guard, RunReport};

use super::Failure;

/// The in-memory topics standing in for the queue and the stream.
pub(crate) const INVOICES: &str = "invoices";
pub(crate) const SHIPMENTS: &str = "shipments";

/// Runs `handler` on `topic` of `broker` until no message is left.
pub(crate) async fn consume<H, Fut>(
    broker: &MemoryBroker,
    topic: &str,
    guard: Guard,
    handler: H,
) -> Result<RunReport, Failure>
where
    H: Fn(AuthContext, Vec<u8>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Failure>> + Send + 'static,
{
    let report = MemoryConsumer::new(broker.clone(), topic, guard)
        .run_until_idle(move |delivery: Received| {
            handler(delivery.context().clone(), delivery.payload().to_vec())
        })
        .await?;
    Ok(report)
}
