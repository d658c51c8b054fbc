//! The `shipments` hop: a NATS JetStream stream on the server at `NATS_URL`, else the in-memory
//! transport.

use std::time::Duration;

use jwt_relay::memory::{MemoryBroker, MemoryPublisher};
use jwt_relay::{AuthContext, Guard, Propagator, RunReport};
use jwt_relay_nats::async_nats::jetstream::{self, consumer::pull};
use jwt_relay_nats::async_nats::{self, HeaderMap};
use jwt_relay_nats::{JetStreamConsumer, JetStreamPublisher, Received, Topology};

use super::memory;
use super::{Failure, endpoint, per_run};

/// Where shipments go.
#[allow(clippy::large_enum_variant, reason = "one per run")]
pub(crate) enum Shipments {
    JetStream {
        address: String,
        jetstream: jetstream::Context,
        topology: Topology,
        subject: String,
    },
    Memory(MemoryBroker),
}

/// Publishes shipments as the current identity.
#[allow(clippy::large_enum_variant, reason = "one per service")]
#[derive(Clone)]
pub(crate) enum ShipmentPublisher {
    JetStream(JetStreamPublisher, String),
    Memory(MemoryPublisher),
}

impl Shipments {
    /// Declares the stream (and its dead-letter stream) on the server at `url`, or uses `memory`.
    pub(crate) async fn connect(url: Option<&str>, memory: &MemoryBroker) -> Result<Shipments, Failure> {
        let Some(url) = url else {
            return Ok(Shipments::Memory(memory.clone()));
        };
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| {
                format!(
                    "NATS_URL is {}, and no NATS server answers there: {e}",
                    endpoint(url)
                )
            })?;
        let jetstream = jetstream::new(client);
        let subject = per_run("shipments");
        let topology = Topology::new(subject.to_uppercase(), [subject.clone()]);
        topology.declare(&jetstream).await?;
        Ok(Shipments::JetStream {
            address: endpoint(url),
            jetstream,
            topology,
            subject,
        })
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Shipments::JetStream { subject, .. } => subject,
            Shipments::Memory(_) => memory::SHIPMENTS,
        }
    }

    /// For the JSON line.
    pub(crate) fn transport(&self) -> &'static str {
        match self {
            Shipments::JetStream { .. } => "jetstream",
            Shipments::Memory(_) => "memory",
        }
    }

    /// For people.
    pub(crate) fn describe(&self) -> String {
        match self {
            Shipments::JetStream { address, .. } => format!("NATS JetStream at {address}"),
            Shipments::Memory(_) => "the in-memory transport".to_owned(),
        }
    }

    pub(crate) async fn publisher(&self) -> Result<ShipmentPublisher, Failure> {
        Ok(match self {
            Shipments::JetStream {
                jetstream, subject, ..
            } => ShipmentPublisher::JetStream(
                JetStreamPublisher::new(jetstream.clone(), Propagator::default()),
                subject.clone(),
            ),
            Shipments::Memory(broker) => {
                ShipmentPublisher::Memory(MemoryPublisher::new(broker.clone(), Propagator::default()))
            }
        })
    }

    /// Runs `handler` for `limit` shipments (on the in-memory transport: until none is left).
    pub(crate) async fn consume<H, Fut>(
        &self,
        guard: Guard,
        limit: u64,
        handler: H,
    ) -> Result<RunReport, Failure>
    where
        H: Fn(AuthContext, Vec<u8>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Failure>> + Send + 'static,
    {
        let (jetstream, topology) = match self {
            Shipments::Memory(broker) => {
                return memory::consume(broker, memory::SHIPMENTS, guard, handler).await;
            }
            Shipments::JetStream {
                jetstream, topology, ..
            } => (jetstream, topology),
        };
        let stream = jetstream.get_stream(topology.stream_name()).await?;
        let consumer = stream
            .get_or_create_consumer(
                "notifier",
                pull::Config {
                    durable_name: Some("notifier".to_owned()),
                    ..Default::default()
                },
            )
            .await?;
        let report = JetStreamConsumer::new(consumer, guard)
            .limit(limit)
            .run(
                move |delivery: Received| handler(delivery.context().clone(), delivery.payload().to_vec()),
                std::future::pending::<()>(),
            )
            .await?;
        Ok(report)
    }

    /// Deletes the streams this run declared on a real server.
    pub(crate) async fn remove(&self) {
        if let Shipments::JetStream {
            jetstream, topology, ..
        } = self
            && let Err(error) = topology.delete(jetstream).await
        {
            tracing::warn!(%error, stream = topology.stream_name(), "could not delete the demonstration's streams");
        }
    }
}

impl ShipmentPublisher {
    /// Publishes `payload` with the current identity's token, and waits for the stream's ack.
    pub(crate) async fn publish(&self, payload: &[u8]) -> Result<(), Failure> {
        match self {
            ShipmentPublisher::JetStream(publisher, subject) => {
                publisher
                    .publish(subject, HeaderMap::new(), payload.to_vec(), None)
                    .await?;
            }
            ShipmentPublisher::Memory(publisher) => {
                publisher
                    .publish(memory::SHIPMENTS, Default::default(), payload.to_vec(), None)
                    .await?;
            }
        }
        Ok(())
    }
}
