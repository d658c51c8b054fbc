//! The publish side: the end user's token into the record's headers, and the broker's ack.

use std::fmt;
use std::time::Duration;

use jwt_relay::publish::PublishErrorKind;
use jwt_relay::{AuthContext, Propagator, PublishError};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::future_producer::Delivery;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::headers::KafkaHeadersMut;

/// How long a send waits for room in the producer's local queue by default.
const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends records through an rdkafka [`FutureProducer`] with the end user's token in their
/// headers.
///
/// Every send:
/// - chooses the token through the core [`Propagator`]: the explicit context if given, else the
///   ambient one ([`jwt_relay::current`], set around every handler a [`Consumer`](crate::Consumer)
///   runs), else [`PublishErrorKind::NoIdentity`] (or no header, if the propagator allows
///   anonymous messages); forwarded as-is, exchanged for the topic's audience
///   ([`PropagatorBuilder::audience_for`](jwt_relay::publish::PropagatorBuilder::audience_for)), or
///   refreshed ahead of its expiry;
/// - writes it once, after every header the caller set (see
///   [the Kafka header rules](crate#the-kafka-header-rules));
/// - waits for the broker's acknowledgement (librdkafka's `acks`, all replicas by default) and
///   returns rdkafka's [`Delivery`] (partition, offset, timestamp). A failure is a
///   [`PublishError`] of kind [`Broker`](PublishErrorKind::Broker) (or
///   [`Timeout`](PublishErrorKind::Timeout) when librdkafka's `message.timeout.ms` ran out) with
///   the Kafka error as its source; the failed record, which holds the token, is dropped, never
///   put in the error.
///
/// Cheap to clone; clones share the producer.
///
/// ```no_run
/// use jwt_relay::Propagator;
/// use jwt_relay_kafka::Publisher;
/// use jwt_relay_kafka::rdkafka::ClientConfig;
/// use jwt_relay_kafka::rdkafka::producer::FutureRecord;
///
/// # async fn run(alice: jwt_relay::AuthContext) -> Result<(), jwt_relay::PublishError> {
/// let mut config = ClientConfig::new();
/// config.set("bootstrap.servers", "127.0.0.1:9092");
/// let producer = Publisher::from_config(&config, Propagator::default())?;
/// let record = FutureRecord::to("orders").key("order-1").payload("{}");
/// let delivery = producer.send(record, Some(&alice)).await?;
/// println!("stored at {}:{}", delivery.partition, delivery.offset);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    propagator: Propagator,
    queue_timeout: Duration,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("propagator", &self.propagator)
            .field("queue_timeout", &self.queue_timeout)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Sends through `producer`, choosing tokens with `propagator`.
    pub fn new(producer: FutureProducer, propagator: Propagator) -> Self {
        Publisher {
            producer,
            propagator,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
        }
    }

    /// Creates a [`FutureProducer`] from `config` (at least `bootstrap.servers`).
    pub fn from_config(config: &ClientConfig, propagator: Propagator) -> Result<Self, PublishError> {
        let producer = config.create().map_err(|e| {
            PublishError::new(
                PublishErrorKind::Broker,
                format!("cannot create the Kafka producer: {e}"),
            )
            .with_source(e)
        })?;
        Ok(Publisher::new(producer, propagator))
    }

    /// How long a send waits for room in the local queue when it is full (5 s).
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.queue_timeout = timeout;
        self
    }

    /// The rdkafka producer, for what this wrapper does not do (flushing, transactions).
    pub fn inner(&self) -> &FutureProducer {
        &self.producer
    }

    /// The propagator choosing the token.
    pub fn propagator(&self) -> &Propagator {
        &self.propagator
    }

    /// Sends `record` carrying the token of `explicit`, else of the ambient context, and waits
    /// for the broker's acknowledgement. The record's topic is the destination the propagator
    /// knows it by.
    pub async fn send<K, P>(
        &self,
        record: FutureRecord<'_, K, P>,
        explicit: Option<&AuthContext>,
    ) -> Result<Delivery, PublishError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let token = self.propagator.token_for(record.topic, explicit).await?;
        self.send_with_token(record, token.as_deref()).await
    }

    /// Sends `record` carrying exactly `token` (none for `None`: a token header the record
    /// already had is removed), written by the propagator's token header, without choosing or
    /// checking it: for replaying recorded messages and for tests. A service sending on behalf of its user calls [`send`](Self::send).
    pub async fn send_with_token<K, P>(
        &self,
        mut record: FutureRecord<'_, K, P>,
        token: Option<&str>,
    ) -> Result<Delivery, PublishError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        // A token header the caller copied from elsewhere never leaves unchosen.
        let mut carrier = KafkaHeadersMut::new(record.headers.take());
        match token {
            Some(_) => self.propagator.write(&mut carrier, token)?,
            None => carrier.remove(self.propagator.token_header().name()),
        }
        record.headers = carrier.into_inner();
        let topic = record.topic.to_owned();
        self.producer
            .send(record, self.queue_timeout)
            .await
            .map_err(|(e, _record)| send_error(&topic, e))
    }
}

/// A failed send as a [`PublishError`], naming the topic.
pub(crate) fn send_error(topic: &str, error: KafkaError) -> PublishError {
    let kind = match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageTimedOut) => PublishErrorKind::Timeout,
        _ => PublishErrorKind::Broker,
    };
    PublishError::new(kind, format!("cannot send to Kafka topic `{topic}`: {error}")).with_source(error)
}
