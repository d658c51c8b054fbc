//! Declaring what a consumer needs: the work queue, its dead-letter exchange, holding queue and
//! dead-letter queue, and its retry queue, in one call.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

/// Classic or quorum queues.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueKind {
    /// Classic queues (declared without `x-queue-type`, so existing classic queues match).
    #[default]
    Classic,
    /// Quorum queues (`x-queue-type: quorum`; RabbitMQ 3.10 or later, for per-message TTL and
    /// dead-lettering).
    Quorum,
}

/// The queues and exchange a [`Consumer`](crate::Consumer) of one queue works with, declared
/// in one call, durable:
///
/// | name (default) | what | arguments |
/// |---|---|---|
/// | `<queue>` | the work queue | `x-dead-letter-exchange: <queue>.dlx` |
/// | `<queue>.dlx` | a fanout exchange: where the broker dead-letters work messages itself (message TTL, `x-max-length` overflow, a quorum queue's delivery limit, a `basic.reject` from another client) | |
/// | `<queue>.held` | the holding queue, bound to `<queue>.dlx`: what the broker dead-lettered, **token included**, until the [`Consumer`](crate::Consumer) moves it to the dead-letter queue without its credentials ([`ConsumerBuilder::held_queue`](crate::ConsumerBuilder::held_queue)) | |
/// | `<queue>.dlq` | the dead-letter queue: only copies without the token and other credentials, with the reason ([`DeadLetter::queue`](crate::DeadLetter::queue)) | |
/// | `<queue>.retry` | the retry queue: no consumer; a message waits there for its per-message TTL, then the broker dead-letters it back to the work queue | `x-dead-letter-exchange: ""`, `x-dead-letter-routing-key: <queue>` |
///
/// The broker's dead letters never reach the dead-letter queue directly: they would carry the
/// user's token to whoever reads it. A topology declared before the holding queue existed had
/// `<queue>.dlq` bound to `<queue>.dlx`; [`declare`](Self::declare) removes that binding.
///
/// Declaring is idempotent, but RabbitMQ refuses (`PRECONDITION_FAILED`) to redeclare an
/// existing queue with other arguments or of another kind. A message with a long delay at the
/// head of the retry queue holds back the shorter ones behind it (RabbitMQ expires messages at
/// the head only): retries come late, never early, and are never lost.
///
/// ```no_run
/// # async fn demo(channel: lapin::Channel) -> lapin::Result<()> {
/// use jwt_relay_rabbitmq::Topology;
/// Topology::new("invoices").quorum().declare(&channel).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    queue: String,
    kind: QueueKind,
    dead_letter_exchange: String,
    dead_letter_queue: String,
    held_queue: String,
    retry_queue: String,
    work_arguments: FieldTable,
}

impl Topology {
    /// The topology of `queue`, classic, with the default names.
    pub fn new(queue: impl Into<String>) -> Self {
        let queue = queue.into();
        Topology {
            dead_letter_exchange: format!("{queue}.dlx"),
            dead_letter_queue: format!("{queue}.dlq"),
            held_queue: format!("{queue}.held"),
            retry_queue: format!("{queue}.retry"),
            work_arguments: FieldTable::default(),
            queue,
            kind: QueueKind::Classic,
        }
    }

    /// Quorum queues instead of classic ones.
    pub fn quorum(self) -> Self {
        self.kind(QueueKind::Quorum)
    }

    /// The kind of the three queues.
    pub fn kind(mut self, kind: QueueKind) -> Self {
        self.kind = kind;
        self
    }

    /// The dead-letter exchange (`<queue>.dlx`).
    pub fn dead_letter_exchange(mut self, name: impl Into<String>) -> Self {
        self.dead_letter_exchange = name.into();
        self
    }

    /// The dead-letter queue (`<queue>.dlq`).
    pub fn dead_letter_queue(mut self, name: impl Into<String>) -> Self {
        self.dead_letter_queue = name.into();
        self
    }

    /// An argument of the work queue besides its kind and dead-letter exchange, such as
    /// `x-max-length`, `x-message-ttl` or (quorum) `x-delivery-limit`: whatever the broker then
    /// dead-letters goes through the holding queue, its token removed.
    ///
    /// ```
    /// use jwt_relay_rabbitmq::Topology;
    /// use jwt_relay_rabbitmq::lapin::types::AMQPValue;
    /// let topology = Topology::new("invoices").queue_argument("x-max-length", AMQPValue::LongLongInt(10_000));
    /// # let _ = topology;
    /// ```
    pub fn queue_argument(mut self, name: &str, value: AMQPValue) -> Self {
        self.work_arguments.insert(ShortString::from(name), value);
        self
    }

    /// The holding queue of the broker's dead letters (`<queue>.held`).
    pub fn held_queue(mut self, name: impl Into<String>) -> Self {
        self.held_queue = name.into();
        self
    }

    /// The retry queue (`<queue>.retry`).
    pub fn retry_queue(mut self, name: impl Into<String>) -> Self {
        self.retry_queue = name.into();
        self
    }

    /// The work queue's name.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The dead-letter queue's name: give it to
    /// [`DeadLetter::queue`](crate::DeadLetter::queue) when it is not the default.
    pub fn dead_letter_queue_name(&self) -> &str {
        &self.dead_letter_queue
    }

    /// The holding queue's name: give it to
    /// [`ConsumerBuilder::held_queue`](crate::ConsumerBuilder::held_queue) when it is not the
    /// default.
    pub fn held_queue_name(&self) -> &str {
        &self.held_queue
    }

    /// The retry queue's name: give it to
    /// [`ConsumerBuilder::retry_queue`](crate::ConsumerBuilder::retry_queue) when it is not the
    /// default.
    pub fn retry_queue_name(&self) -> &str {
        &self.retry_queue
    }

    /// Declares the exchange and the four queues, and binds the holding queue to the exchange
    /// (and unbinds the dead-letter queue from it, where an older topology had bound it).
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .exchange_declare(
                short(&self.dead_letter_exchange)?,
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(short(&self.dead_letter_queue)?, durable, self.arguments(&[]))
            .await?;
        channel
            .queue_declare(short(&self.held_queue)?, durable, self.arguments(&[]))
            .await?;
        channel
            .queue_bind(
                short(&self.held_queue)?,
                short(&self.dead_letter_exchange)?,
                ShortString::default(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_unbind(
                short(&self.dead_letter_queue)?,
                short(&self.dead_letter_exchange)?,
                ShortString::default(),
                FieldTable::default(),
            )
            .await?;
        let back_to_work = [
            ("x-dead-letter-exchange", ""),
            ("x-dead-letter-routing-key", self.queue.as_str()),
        ];
        channel
            .queue_declare(short(&self.retry_queue)?, durable, self.arguments(&back_to_work))
            .await?;
        let to_dlx = [("x-dead-letter-exchange", self.dead_letter_exchange.as_str())];
        let mut arguments = self.arguments(&to_dlx);
        for (name, value) in self.work_arguments.inner() {
            arguments.insert(name.clone(), value.clone());
        }
        channel
            .queue_declare(short(&self.queue)?, durable, arguments)
            .await?;
        Ok(())
    }

    /// Deletes the four queues (with their messages) and the exchange: for tests and tools.
    pub async fn delete(&self, channel: &Channel) -> lapin::Result<()> {
        for queue in [
            &self.queue,
            &self.retry_queue,
            &self.held_queue,
            &self.dead_letter_queue,
        ] {
            channel
                .queue_delete(short(queue)?, QueueDeleteOptions::default())
                .await?;
        }
        channel
            .exchange_delete(
                short(&self.dead_letter_exchange)?,
                ExchangeDeleteOptions::default(),
            )
            .await
    }

    /// Queue arguments: the kind, then `extra`.
    fn arguments(&self, extra: &[(&'static str, &str)]) -> FieldTable {
        let mut table = FieldTable::default();
        if self.kind == QueueKind::Quorum {
            table.insert(
                ShortString::from("x-queue-type"),
                AMQPValue::LongString(LongString::from("quorum")),
            );
        }
        for (name, value) in extra {
            table.insert(
                ShortString::from(*name),
                AMQPValue::LongString(LongString::from(*value)),
            );
        }
        table
    }
}

/// A queue or exchange name as AMQP carries it: at most 255 bytes.
fn short(name: &str) -> lapin::Result<ShortString> {
    ShortString::try_new(name).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e).into())
}
