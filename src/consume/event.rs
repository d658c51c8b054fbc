//! What happened to each consumed message, as every transport reports it: one [`Event`] to the
//! user's callback, the counters ([`Stats`]), the log line and the metric, all from
//! [`Reporter::report`].

use std::fmt;
use std::sync::Arc;

use super::report::{EventOutcome, Stats};

/// Where a message was in its broker: what a log line, an event and a dead-lettered copy's
/// origin headers name.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position<'a> {
    /// A Kafka record.
    Offset {
        /// Its partition.
        partition: i32,
        /// Its offset in the partition.
        offset: i64,
    },
    /// A JetStream message.
    Sequence {
        /// The stream it is stored in.
        stream: &'a str,
        /// Its sequence number in the stream.
        sequence: u64,
        /// How many times the server delivered it, this time included.
        delivered: u64,
    },
    /// A RabbitMQ delivery: its tag on the consumer's channel.
    DeliveryTag(u64),
    /// A message of the in-memory broker: its id.
    Id(u64),
    /// Nothing to say (core NATS keeps nothing).
    None,
}

impl fmt::Display for Position<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Offset { partition, offset } => write!(f, "partition {partition} offset {offset}"),
            Position::Sequence { stream, sequence, .. } => write!(f, "{stream} seq {sequence}"),
            Position::DeliveryTag(tag) => write!(f, "delivery tag {tag}"),
            Position::Id(id) => write!(f, "id {id}"),
            Position::None => Ok(()),
        }
    }
}

/// One message's fate, as the `on_event` callback of every consumer sees it.
#[non_exhaustive]
#[derive(Debug)]
pub struct Event<'a> {
    /// What the consumer reads: the topic, queue, subscribed subject (wildcards and all) or
    /// stream consumer's subject. The metrics' `destination` label.
    pub destination: &'a str,
    /// The subject, topic or routing key the message was published to.
    pub subject: &'a str,
    /// Where it was in its broker.
    pub position: Position<'a>,
    /// What happened.
    pub outcome: EventOutcome<'a>,
}

/// The callback given to `on_event`.
pub type OnEvent = Arc<dyn Fn(&Event<'_>) + Send + Sync>;

/// Where a consumer's events go: its [`Stats`], the user's callback, the log and the metrics
/// (labelled with the broker's name). Cheap to clone; clones share the counters.
#[derive(Clone)]
pub struct Reporter {
    broker: &'static str,
    stats: Stats,
    callback: Option<OnEvent>,
}

impl fmt::Debug for Reporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reporter")
            .field("broker", &self.broker)
            .field("stats", &self.stats)
            .field("callback", &self.callback.is_some())
            .finish()
    }
}

impl Reporter {
    /// A reporter for a consumer of `broker` (`kafka`, `rabbitmq`, `nats`, `memory`: the
    /// metrics' `broker` label), without a callback.
    pub fn new(broker: &'static str) -> Self {
        Reporter {
            broker,
            stats: Stats::default(),
            callback: None,
        }
    }

    /// Calls `callback` with every event from now on.
    pub fn on_event(mut self, callback: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.callback = Some(Arc::new(callback));
        self
    }

    /// The broker label.
    pub fn broker(&self) -> &'static str {
        self.broker
    }

    /// The live counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Counts the event, logs it and records its metric, then calls the callback.
    pub fn report(&self, event: &Event<'_>) {
        self.stats.record(&event.outcome);
        event
            .outcome
            .observe(self.broker, event.destination, &event.position);
        if let Some(callback) = &self.callback {
            callback(event);
        }
    }
}
