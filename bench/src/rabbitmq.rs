//! RabbitMQ: lapin with publisher confirms and manual acks against jwt-relay's `Publisher` and
//! `Consumer`, prefetch 10 both ways.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;
use jwt_relay::{AuthContext, Guard, Propagator};
use jwt_relay_rabbitmq::lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueuePurgeOptions,
};
use jwt_relay_rabbitmq::lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use jwt_relay_rabbitmq::lapin::{BasicProperties, Channel, Connection};
use jwt_relay_rabbitmq::{Connector, Consumer, Publisher, Topology};

use crate::instances::{Running, Tally, counting};
use crate::measure::{Progress, numbered_payload, payload};
use crate::{AUTHORIZATION, Failure, IN_FLIGHT, Side, bearer, check_by_hand, concurrently, unique};

const PREFETCH: u16 = 10;

pub(crate) struct RabbitMq {
    connector: Connector,
    connection: Connection,
    topology: Topology,
    raw: Channel,
    wrapped: Publisher,
    /// The tokens `prepare` was given: each consume run fills the queue with them first.
    tokens: Mutex<Vec<String>>,
}

impl RabbitMq {
    pub(crate) async fn connect(address: &str) -> Result<RabbitMq, Failure> {
        let connector = Connector::new(address);
        let connection = connector.open().await?;
        let topology = Topology::new(unique("bench"));
        topology.declare(&connection.create_channel().await?).await?;
        let raw = connection.create_channel().await?;
        raw.confirm_select(ConfirmSelectOptions::default()).await?;
        let wrapped = Publisher::new(connection.create_channel().await?, Propagator::default()).await?;
        Ok(RabbitMq {
            connector,
            connection,
            topology,
            raw,
            wrapped,
            tokens: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn name(&self) -> &'static str {
        "rabbitmq"
    }

    /// Publishes with lapin, the token header written by hand, `mandatory` if asked; message
    /// `i`'s payload numbered `i` if asked ([`numbered_payload`]).
    async fn publish_raw(&self, tokens: &[String], mandatory: bool, numbered: bool) -> Result<f64, Failure> {
        let body = payload();
        let queue = ShortString::from(self.topology.queue());
        concurrently(tokens.len(), IN_FLIGHT, |i| {
            let mut headers = FieldTable::default();
            headers.insert(
                AUTHORIZATION.into(),
                AMQPValue::LongString(LongString::from(bearer(&tokens[i]))),
            );
            // Persistent, as jwt-relay's publisher sends by default.
            let properties = BasicProperties::default()
                .with_headers(headers)
                .with_delivery_mode(2);
            let numbered = numbered.then(|| numbered_payload(i));
            let queue = queue.clone();
            let body = &body;
            async move {
                let body = numbered.as_deref().unwrap_or(body);
                self.raw
                    .basic_publish(
                        ShortString::default(),
                        queue,
                        BasicPublishOptions {
                            mandatory,
                            ..BasicPublishOptions::default()
                        },
                        body,
                        properties,
                    )
                    .await?
                    .await?;
                Ok(())
            }
        })
        .await
    }

    async fn purge(&self) -> Result<(), Failure> {
        self.raw
            .queue_purge(self.topology.queue().into(), QueuePurgeOptions::default())
            .await?;
        Ok(())
    }

    /// Publishes one message per token to the queue, waiting for each confirm (then empties the
    /// queue, untimed).
    pub(crate) async fn publish(
        &self,
        publisher: Side,
        tokens: &[String],
        contexts: &[AuthContext],
    ) -> Result<f64, Failure> {
        let rate = if publisher == Side::JwtRelay {
            let body = payload();
            let queue = self.topology.queue();
            concurrently(tokens.len(), IN_FLIGHT, |i| {
                let body = &body;
                async move {
                    self.wrapped
                        .publish("", queue, body, BasicProperties::default(), Some(&contexts[i]))
                        .await?;
                    Ok(())
                }
            })
            .await?
        } else {
            self.publish_raw(tokens, publisher == Side::ByHand, false).await?
        };
        self.purge().await?;
        Ok(rate)
    }

    pub(crate) async fn prepare(&self, tokens: &[String]) -> Result<(), Failure> {
        *self.tokens.lock().unwrap_or_else(|p| p.into_inner()) = tokens.to_vec();
        Ok(())
    }

    /// Fills the queue (untimed), then consumes and acks every message.
    pub(crate) async fn consume(&self, reader: Side, guard: Guard) -> Result<f64, Failure> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.publish_raw(&tokens, false, false).await?;
        let count = tokens.len();
        let progress = Arc::new(Progress::default());
        if reader == Side::JwtRelay {
            let ticks = progress.clone();
            let report = tokio::time::timeout(
                crate::tokens::PATIENCE,
                Consumer::builder(self.connector.clone(), self.topology.queue(), guard)
                    .prefetch(PREFETCH)
                    .limit(count as u64)
                    .on_event(move |_| {
                        ticks.tick();
                    })
                    .build()
                    .run(
                        |_| async { Ok::<(), Infallible>(()) },
                        std::future::pending::<()>(),
                    ),
            )
            .await??;
            if report.accepted != count as u64 {
                return Err(format!("{} of {count} messages accepted: {report:?}", report.accepted).into());
            }
        } else {
            let channel = self.connection.create_channel().await?;
            channel.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
            let mut consumer = channel
                .basic_consume(
                    self.topology.queue().into(),
                    ShortString::default(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            let read = async {
                while let Some(delivery) = consumer.next().await {
                    let delivery = delivery?;
                    if reader == Side::ByHand {
                        let header = delivery
                            .properties
                            .headers()
                            .as_ref()
                            .and_then(|h| h.inner().get(AUTHORIZATION));
                        let value = match header {
                            Some(AMQPValue::LongString(value)) => Some(value.as_bytes()),
                            _ => None,
                        };
                        check_by_hand(guard.verifier(), value).await?;
                    }
                    delivery.ack(BasicAckOptions::default()).await?;
                    if progress.tick() == count {
                        break;
                    }
                }
                Ok::<(), Failure>(())
            };
            tokio::time::timeout(crate::tokens::PATIENCE, read).await??;
            channel
                .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                .await?;
        }
        Ok(progress.rate())
    }

    /// `--instances`: empties the queue and fills it with one numbered message per token
    /// (untimed); the queue's name.
    pub(crate) async fn refill(&self, tokens: &[String]) -> Result<String, Failure> {
        self.purge().await?;
        self.publish_raw(tokens, false, true).await?;
        Ok(self.topology.queue().to_owned())
    }

    /// `--instances`: one more consumer of the queue, on its own connection, counting in `tally`
    /// what it handles.
    pub(crate) fn instance(&self, guard: Guard, tally: &Arc<Tally>, index: usize) -> Running {
        let consumer = Consumer::builder(self.connector.clone(), self.topology.queue(), guard)
            .prefetch(PREFETCH)
            .build();
        let (handler, shutdown) = (counting(tally, index), tally.shutdown());
        Box::pin(async move { Ok(consumer.run(handler, shutdown).await?) })
    }

    /// Deletes the queues.
    pub(crate) async fn remove(&self) -> Result<(), Failure> {
        self.topology
            .delete(&self.connection.create_channel().await?)
            .await?;
        Ok(())
    }
}
