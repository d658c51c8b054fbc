//! What happened to each message: reported to a callback as it happens, and
//! counted (the metrics a subscriber, service or consumer keeps).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jwt_relay::AuthContext;

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

/// What happened to a message.
#[non_exhaustive]
#[derive(Debug)]
pub enum EventOutcome<'a> {
    /// The handler ran with this identity and succeeded (then, on
    /// JetStream, the message was acknowledged).
    Accepted(&'a AuthContext),
    /// The message is bad (a permanent verification failure, or a handler
    /// out of attempts): reported, and a copy without the token published to
    /// `dead_letter` when there is one. A service replied with an error.
    Rejected {
        /// Why.
        reason: &'a jwt_relay::Error,
        /// Where the dead-lettered copy went, if one was published.
        dead_letter: Option<&'a str>,
    },
    /// A dependency is down (a transient failure): the message is tried
    /// again after `delay` (JetStream: `nak` with that delay).
    Retry {
        /// Why.
        reason: &'a jwt_relay::Error,
        /// How long until the next try.
        delay: Duration,
    },
    /// The handler failed (returned an error or panicked) and will be tried
    /// again after `delay`.
    HandlerFailed {
        /// The handler's error, as [`jwt_relay::ErrorKind::Handler`].
        reason: &'a jwt_relay::Error,
        /// How long until the next try.
        delay: Duration,
    },
    /// Our setup is wrong: the run stops and returns this error.
    Halted(&'a jwt_relay::Error),
}

/// Counts of what a run did so far. Read them while it runs with
/// [`Stats::snapshot`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Messages the handler processed successfully.
    pub accepted: u64,
    /// Messages reported as rejected (guard rejections and handlers out of
    /// attempts).
    pub rejected: u64,
    /// Dead-lettered copies published.
    pub dead_lettered: u64,
    /// Retries scheduled for transient failures.
    pub retried: u64,
    /// Handler calls that failed (returned an error or panicked).
    pub handler_failures: u64,
}

/// Live counters of a subscriber, service or consumer: cheap to clone, and
/// readable from any thread while it runs.
#[derive(Clone, Default)]
pub struct Stats {
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    rejected: AtomicU64,
    dead_lettered: AtomicU64,
    retried: AtomicU64,
    handler_failures: AtomicU64,
}

impl Stats {
    /// The counts so far.
    pub fn snapshot(&self) -> RunReport {
        let c = &self.counters;
        RunReport {
            accepted: c.accepted.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            handler_failures: c.handler_failures.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt(f)
    }
}

/// The callback given to `on_event`.
pub(crate) type Callback = Arc<dyn Fn(&Event<'_>) + Send + Sync>;

/// Where events go: the counters, the callback, and the log.
#[derive(Clone, Default)]
pub(crate) struct Reporter {
    stats: Stats,
    callback: Option<Callback>,
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
    pub(crate) fn set_callback(&mut self, callback: Callback) {
        self.callback = Some(callback);
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    pub(crate) fn dead_lettered(&self) {
        self.stats.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts and logs the event, then calls the callback.
    pub(crate) fn report(&self, event: &Event<'_>) {
        let c = &self.stats.counters;
        let subject = event.subject;
        let seq = event.stream_sequence;
        match &event.outcome {
            EventOutcome::Accepted(_) => {
                c.accepted.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(subject, seq, "handled");
            }
            EventOutcome::Rejected { reason, dead_letter } => {
                c.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(subject, seq, dead_letter, kind = %reason.kind(), "rejected: {reason}");
            }
            EventOutcome::Retry { reason, delay } => {
                c.retried.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(subject, seq, ?delay, kind = %reason.kind(), "retrying later: {reason}");
            }
            EventOutcome::HandlerFailed { reason, delay } => {
                c.handler_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(subject, seq, ?delay, "handler failed, retrying: {reason}");
            }
            EventOutcome::Halted(reason) => {
                tracing::error!(subject, seq, kind = %reason.kind(), "halted: {reason}");
            }
        }
        if let Some(callback) = &self.callback {
            callback(event);
        }
    }

    /// Counts a handler failure that ends in a rejection (the rejection is
    /// reported on its own).
    pub(crate) fn handler_failed(&self) {
        self.stats
            .counters
            .handler_failures
            .fetch_add(1, Ordering::Relaxed);
    }
}
