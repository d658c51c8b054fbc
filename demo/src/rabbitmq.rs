//! The `invoices` hop: a RabbitMQ queue on the broker at `AMQP_ADDR`, else the in-memory
//! transport.

use jwt_relay::memory::{MemoryBroker, MemoryPublisher};
use jwt_relay::{AuthContext, Guard, Propagator, RunReport};
use jwt_relay_rabbitmq::lapin::{BasicProperties, Connection};
use jwt_relay_rabbitmq::{Connector, Consumer, Publisher, Received, Topology};

use super::memory;
use super::{Failure, endpoint, per_run};

/// Where invoices go.
#[allow(clippy::large_enum_variant, reason = "one per run")]
pub(crate) enum Invoices {
    Broker {
        connector: Connector,
        address: String,
        connection: Connection,
        topology: Topology,
    },
    Memory(MemoryBroker),
}

/// Publishes invoices as the current identity.
#[allow(clippy::large_enum_variant, reason = "one per service")]
#[derive(Clone)]
pub(crate) enum InvoicePublisher {
    Broker(Publisher, String),
    Memory(MemoryPublisher),
}

impl Invoices {
    /// Declares the queue (with its dead-letter and retry queues) on the broker at `address`, or
    /// uses `memory`.
    pub(crate) async fn connect(address: Option<&str>, memory: &MemoryBroker) -> Result<Invoices, Failure> {
        let Some(address) = address else {
            return Ok(Invoices::Memory(memory.clone()));
        };
        let connector = Connector::new(address);
        let connection = connector.open().await.map_err(|e| {
            format!(
                "AMQP_ADDR is {}, and no RabbitMQ broker answers there: {e}",
                endpoint(address)
            )
        })?;
        let topology = Topology::new(per_run("invoices"));
        topology.declare(&connection.create_channel().await?).await?;
        Ok(Invoices::Broker {
            connector,
            address: endpoint(address),
            connection,
            topology,
        })
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Invoices::Broker { topology, .. } => topology.queue(),
            Invoices::Memory(_) => memory::INVOICES,
        }
    }

    /// For the JSON line.
    pub(crate) fn transport(&self) -> &'static str {
        match self {
            Invoices::Broker { .. } => "broker",
            Invoices::Memory(_) => "memory",
        }
    }

    /// For people.
    pub(crate) fn describe(&self) -> String {
        match self {
            Invoices::Broker { address, .. } => format!("RabbitMQ at {address}"),
            Invoices::Memory(_) => "the in-memory transport".to_owned(),
        }
    }

    pub(crate) async fn publisher(&self) -> Result<InvoicePublisher, Failure> {
        Ok(match self {
            Invoices::Broker {
                connection, topology, ..
            } => InvoicePublisher::Broker(
                Publisher::new(connection.create_channel().await?, Propagator::default()).await?,
                topology.queue().to_owned(),
            ),
            Invoices::Memory(broker) => {
                InvoicePublisher::Memory(MemoryPublisher::new(broker.clone(), Propagator::default()))
            }
        })
    }

    /// Runs `handler` for `limit` invoices (on the in-memory transport: until none is left).
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
        match self {
            Invoices::Broker {
                connector, topology, ..
            } => {
                let report = Consumer::builder(connector.clone(), topology.queue(), guard)
                    .limit(limit)
                    .build()
                    .run(
                        move |received: Received| {
                            handler(received.context().clone(), received.payload().to_vec())
                        },
                        std::future::pending::<()>(),
                    )
                    .await?;
                Ok(report)
            }
            Invoices::Memory(broker) => memory::consume(broker, memory::INVOICES, guard, handler).await,
        }
    }

    /// Deletes the queues this run declared on a real broker.
    pub(crate) async fn remove(&self) {
        if let Invoices::Broker {
            connection, topology, ..
        } = self
        {
            let deleted = async { topology.delete(&connection.create_channel().await?).await };
            if let Err(error) = deleted.await {
                tracing::warn!(%error, queue = topology.queue(), "could not delete the demonstration's queues");
            }
        }
    }
}

impl InvoicePublisher {
    /// Publishes `payload` with the current identity's token, and waits for the broker's confirm.
    pub(crate) async fn publish(&self, payload: &[u8]) -> Result<(), Failure> {
        match self {
            InvoicePublisher::Broker(publisher, queue) => {
                publisher
                    .publish("", queue, payload, BasicProperties::default(), None)
                    .await?
            }
            InvoicePublisher::Memory(publisher) => {
                publisher
                    .publish(memory::INVOICES, Default::default(), payload.to_vec(), None)
                    .await?;
            }
        }
        Ok(())
    }
}
