//! What happened to each message: reported to a callback as it happens, and
//! counted (the metrics a subscriber, service or consumer keeps).

use std::fmt;
use std::sync::Arc;

use jwt_relay::{EventOutcome, Stats};

/// One message's fate, as reported to the `on_event` callback of a
/// [`NatsSubscriber`](crate::NatsSubscriber),
/// [`JetStreamConsumer`](crate::JetStreamConsumer) or
/// [`NatsService`](crate::NatsService).
#[non_exhaustive]
#[derive(Debug)]
pub struct Event<'a> {
    /// The subject the message was published to.
    pub subject: &'a str,
    /// Its stream sequence (JetStream only).
    pub stream_sequence: Option<u64>,
    /// How many times the server delivered it, this time included (JetStream only).
    pub delivered: Option<u64>,
    /// What happened.
    pub outcome: EventOutcome<'a>,
}

/// The callback given to `on_event`.
pub(crate) type Callback = Arc<dyn Fn(&Event<'_>) + Send + Sync>;

/// Where events go: the counters, the callback, and the log.
#[derive(Clone, Default)]
pub(crate) struct Reporter {
    stats: Stats,
    callback: Option<Callback>,
    /// The metrics' `destination`: the subscribed or served subject (its pattern, wildcards
    /// and all) or the stream, set before any message is reported; each message's subject
    /// only as a fallback.
    destination: Option<Arc<str>>,
}

impl fmt::Debug for Reporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reporter")
            .field("stats", &self.stats)
            .field("callback", &self.callback.is_some())
            .finish()
    }
}

impl Reporter {
    pub(crate) fn set_destination(&mut self, destination: &str) {
        self.destination = Some(destination.into());
    }

    /// This reporter (the same counters and callback) with `destination` as the metrics'.
    pub(crate) fn with_destination(&self, destination: &str) -> Reporter {
        let mut reporter = self.clone();
        reporter.set_destination(destination);
        reporter
    }

    /// The span `message` is handled in.
    pub(crate) fn span(&self, message: &async_nats::Message) -> tracing::Span {
        let destination = self.destination.as_deref().unwrap_or(message.subject.as_str());
        let headers = crate::headers::NatsHeadersRef::of(message);
        jwt_relay::observe::consume_span("nats", destination, &headers)
    }

    pub(crate) fn set_callback(&mut self, callback: Callback) {
        self.callback = Some(callback);
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    pub(crate) fn dead_lettered(&self) {
        self.stats.dead_lettered();
    }

    /// Counts and logs the event, then calls the callback.
    pub(crate) fn report(&self, event: &Event<'_>) {
        self.stats.record(&event.outcome);
        let position = Position(event.stream_sequence);
        let destination = self.destination.as_deref().unwrap_or(event.subject);
        event.outcome.observe("nats", destination, &position);
        if let Some(callback) = &self.callback {
            callback(event);
        }
    }

    /// Counts a handler failure that ends in a rejection (the rejection is
    /// reported on its own).
    pub(crate) fn handler_failed(&self) {
        self.stats.handler_failed();
    }
}

/// `seq N` in the log line of a JetStream message, nothing for a core one: written only if a
/// log line is.
struct Position(Option<u64>);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(seq) => write!(f, "seq {seq}"),
            None => Ok(()),
        }
    }
}
