//! What happened to each consumed message ([`EventOutcome`]), and the
//! counts a consumer keeps of it ([`Stats`], [`RunReport`]), the same on
//! every transport.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::Error;
use crate::verify::context::AuthContext;

/// What happened to a message.
#[non_exhaustive]
#[derive(Debug)]
pub enum EventOutcome<'a> {
    /// The handler ran with this identity and succeeded, and the message
    /// was settled (acknowledged, or on JetStream its ack queued to go out
    /// with the next group; on Kafka its offset stored).
    Accepted(&'a AuthContext),
    /// The message is bad (a permanent verification failure, or a handler
    /// out of attempts): reported, and a copy without the token published to
    /// `dead_letter` when there is one (a request/reply service replies
    /// with an error instead).
    Rejected {
        /// Why.
        reason: &'a Error,
        /// Where the dead-lettered copy went, if one was published.
        dead_letter: Option<&'a str>,
    },
    /// A dependency is down (a transient failure): the message is tried
    /// again after `delay`.
    Retry {
        /// Why.
        reason: &'a Error,
        /// How long until the next try.
        delay: Duration,
    },
    /// The handler failed (returned an error or panicked) and will be tried
    /// again after `delay`.
    HandlerFailed {
        /// The handler's error, as [`ErrorKind::Handler`](crate::ErrorKind::Handler).
        reason: &'a Error,
        /// How long until the next try.
        delay: Duration,
    },
    /// Our setup is wrong: the run stops and returns this error.
    Halted(&'a Error),
}

/// Counts of what a run did so far. Read them while it runs with
/// [`Stats::snapshot`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Messages the handler processed successfully.
    pub accepted: u64,
    /// Messages rejected: by the guard, or out of handler attempts, whether
    /// or not a copy was stored.
    pub rejected: u64,
    /// Of those, the ones whose copy is in the dead-letter destination.
    pub dead_lettered: u64,
    /// Retries for transient failures (a dependency down, a copy not
    /// stored).
    pub retried: u64,
    /// Handler calls that failed (returned an error or panicked).
    pub handler_failures: u64,
    /// Times the consumer connected again after losing its connection
    /// (RabbitMQ; the Kafka and NATS clients reconnect on their own).
    pub reconnects: u64,
}

/// Live counters of a subscriber, service or consumer: cheap to clone, and
/// readable from any thread while it runs.
#[derive(Clone, Default)]
pub struct Stats {
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    /// Woken each time a message ends (accepted or rejected), once anyone waits in
    /// [`Stats::ended`] (`watched`): the message path pays nothing otherwise.
    ended: tokio::sync::Notify,
    watched: std::sync::atomic::AtomicBool,
    accepted: AtomicU64,
    rejected: AtomicU64,
    dead_lettered: AtomicU64,
    retried: AtomicU64,
    handler_failures: AtomicU64,
    reconnects: AtomicU64,
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
            reconnects: c.reconnects.load(Ordering::Relaxed),
        }
    }
}

impl RunReport {
    /// What was counted since `earlier`, a snapshot of the same [`Stats`].
    pub fn since(&self, earlier: &RunReport) -> RunReport {
        RunReport {
            accepted: self.accepted.saturating_sub(earlier.accepted),
            rejected: self.rejected.saturating_sub(earlier.rejected),
            dead_lettered: self.dead_lettered.saturating_sub(earlier.dead_lettered),
            retried: self.retried.saturating_sub(earlier.retried),
            handler_failures: self.handler_failures.saturating_sub(earlier.handler_failures),
            reconnects: self.reconnects.saturating_sub(earlier.reconnects),
        }
    }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt(f)
    }
}

impl EventOutcome<'_> {
    /// The `outcome` label of [`jwt_relay_messages_total`](crate::observe::MESSAGES_TOTAL):
    /// `accepted`, `dead_lettered`, `rejected`, `retry`, `handler_failed` or `halted`.
    pub fn label(&self) -> &'static str {
        match self {
            EventOutcome::Accepted(_) => "accepted",
            EventOutcome::Rejected {
                dead_letter: Some(_), ..
            } => "dead_lettered",
            EventOutcome::Rejected {
                dead_letter: None, ..
            } => "rejected",
            EventOutcome::Retry { .. } => "retry",
            EventOutcome::HandlerFailed { .. } => "handler_failed",
            EventOutcome::Halted(_) => "halted",
        }
    }

    /// Logs the event through `tracing` (accepted, retries and handler
    /// failures at DEBUG, rejections at WARN, a halt at ERROR) and records it
    /// ([`record_message`](crate::observe::record_message)): `broker` and
    /// `destination` (a configured topic, queue, subject or stream) label the
    /// metric, `position` (a stream sequence, a partition and offset) only
    /// the log line. Never a token.
    pub fn observe(&self, broker: &'static str, destination: &str, position: &dyn fmt::Display) {
        let (context, error) = match self {
            EventOutcome::Accepted(context) => {
                tracing::debug!(destination, %position, "handled");
                (Some(*context), None)
            }
            EventOutcome::Rejected { reason, dead_letter } => {
                tracing::warn!(destination, %position, dead_letter, kind = %reason.kind(), "rejected: {reason}");
                (None, Some(*reason))
            }
            EventOutcome::Retry { reason, delay } => {
                tracing::debug!(destination, %position, ?delay, kind = %reason.kind(), "retrying later: {reason}");
                (None, Some(*reason))
            }
            EventOutcome::HandlerFailed { reason, delay } => {
                tracing::debug!(destination, %position, ?delay, "handler failed, retrying: {reason}");
                (None, Some(*reason))
            }
            EventOutcome::Halted(reason) => {
                tracing::error!(destination, %position, kind = %reason.kind(), "halted: {reason}");
                (None, Some(*reason))
            }
        };
        let acceptance = context.map(|context| context.acceptance().as_str());
        crate::observe::record_message(broker, destination, self.label(), acceptance, error);
    }
}

impl Stats {
    /// Counts one event ([`Reporter::report`](super::Reporter::report) does).
    pub fn record(&self, outcome: &EventOutcome<'_>) {
        let c = &self.counters;
        if let EventOutcome::Rejected {
            dead_letter: Some(_), ..
        } = outcome
        {
            c.dead_lettered.fetch_add(1, Ordering::Relaxed);
        }
        let counter = match outcome {
            EventOutcome::Accepted(_) => &c.accepted,
            EventOutcome::Rejected { .. } => &c.rejected,
            EventOutcome::Retry { .. } => &c.retried,
            EventOutcome::HandlerFailed { .. } => &c.handler_failures,
            EventOutcome::Halted(_) => return,
        };
        // Sequentially consistent with `ended`'s store and loads, so that a waiter either sees
        // this message counted or is woken by it (the same instructions as relaxed on x86).
        counter.fetch_add(1, Ordering::SeqCst);
        if c.watched.load(Ordering::SeqCst)
            && matches!(outcome, EventOutcome::Accepted(_) | EventOutcome::Rejected { .. })
        {
            c.ended.notify_waiters();
        }
    }

    /// Completes once `messages` more messages have ended (been accepted or rejected) than
    /// had when this was called: what a consumer's `limit` waits for.
    pub fn ended(&self, messages: u64) -> impl std::future::Future<Output = ()> + Send + 'static {
        let counters = self.counters.clone();
        let count =
            move || counters.accepted.load(Ordering::SeqCst) + counters.rejected.load(Ordering::SeqCst);
        self.counters.watched.store(true, Ordering::SeqCst);
        let target = count().saturating_add(messages);
        let counters = self.counters.clone();
        async move {
            loop {
                let notified = counters.ended.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                if count() >= target {
                    return;
                }
                notified.await;
            }
        }
    }

    /// Counts a handler failure that ends in a rejection (the rejection is
    /// counted on its own, by [`record`](Self::record)).
    pub(crate) fn handler_failed(&self) {
        self.counters.handler_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a reconnection.
    pub fn reconnected(&self) {
        self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn each_outcome_counts_once_and_clones_share_the_counts() {
        let stats = Stats::default();
        let view = stats.clone();
        let reason = Error::new(ErrorKind::Expired, "expired");
        stats.record(&EventOutcome::Retry {
            reason: &reason,
            delay: Duration::from_secs(1),
        });
        stats.record(&EventOutcome::Rejected {
            reason: &reason,
            dead_letter: Some("orders.dlq"),
        });
        stats.handler_failed();
        stats.record(&EventOutcome::Halted(&reason));
        let report = view.snapshot();
        assert_eq!(
            (
                report.accepted,
                report.rejected,
                report.dead_lettered,
                report.retried,
                report.handler_failures
            ),
            (0, 1, 1, 1, 1)
        );
    }

    #[tokio::test]
    async fn ended_waits_for_that_many_more_accepted_or_rejected() {
        let stats = Stats::default();
        let context_free = Error::new(ErrorKind::Expired, "expired");
        stats.record(&EventOutcome::Rejected {
            reason: &context_free,
            dead_letter: None,
        });
        let mut two = std::pin::pin!(stats.ended(2));
        let delay = Duration::from_secs(1);
        stats.record(&EventOutcome::Retry {
            reason: &context_free,
            delay,
        });
        stats.record(&EventOutcome::Rejected {
            reason: &context_free,
            dead_letter: Some("dlq"),
        });
        assert!(
            futures_poll_once(two.as_mut()).await.is_none(),
            "a retry does not end a message, and one is not two"
        );
        stats.record(&EventOutcome::Rejected {
            reason: &context_free,
            dead_letter: None,
        });
        tokio::time::timeout(Duration::from_secs(1), two)
            .await
            .unwrap_or_else(|_| panic!("two ended"));
    }

    /// Polls `future` once: `Some` if it completed.
    async fn futures_poll_once<F: std::future::Future + Unpin>(future: F) -> Option<F::Output> {
        let mut future = future;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut future).poll(cx) {
                std::task::Poll::Ready(output) => Some(output),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
