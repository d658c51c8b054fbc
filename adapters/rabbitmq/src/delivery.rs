//! What a handler receives, what happened to each message, and what a consumer run did.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jwt_relay::AuthContext;
use lapin::BasicProperties;
use lapin::types::{FieldTable, ShortString};

/// One accepted message, as a handler receives it: the verified identity and the message. The
/// handler also runs in [`jwt_relay::scope`] of that identity, so what it publishes through a
/// [`Publisher`](crate::Publisher) carries the token without being passed it.
///
/// `Debug` shows header names and the payload's length, never a header value or the payload.
#[derive(Clone)]
pub struct Delivery {
    pub(crate) context: AuthContext,
    pub(crate) message: Arc<Received>,
}

/// A message as the consumer took it from the queue.
pub(crate) struct Received {
    pub(crate) queue: Arc<str>,
    pub(crate) delivery_tag: u64,
    pub(crate) exchange: ShortString,
    pub(crate) routing_key: ShortString,
    pub(crate) redelivered: bool,
    pub(crate) properties: BasicProperties,
    pub(crate) data: Vec<u8>,
    pub(crate) attempt: u32,
    pub(crate) failures: u32,
}

impl Delivery {
    /// The verified identity (see [`AuthContext::acceptance`] for how it was accepted).
    pub fn context(&self) -> &AuthContext {
        &self.context
    }

    /// The message's body.
    pub fn payload(&self) -> &[u8] {
        &self.message.data
    }

    /// The message's properties, as published (the token header included).
    pub fn properties(&self) -> &BasicProperties {
        &self.message.properties
    }

    /// The message's headers, if it has any.
    pub fn headers(&self) -> Option<&FieldTable> {
        self.message.properties.headers().as_ref()
    }

    /// The queue it was consumed from.
    pub fn queue(&self) -> &str {
        &self.message.queue
    }

    /// The exchange it was published to (empty for the default exchange).
    pub fn exchange(&self) -> &str {
        self.message.exchange.as_str()
    }

    /// The routing key it was published with.
    pub fn routing_key(&self) -> &str {
        self.message.routing_key.as_str()
    }

    /// The broker's delivery tag, unique on the consumer's channel.
    pub fn delivery_tag(&self) -> u64 {
        self.message.delivery_tag
    }

    /// Whether the broker delivered it before without an acknowledgement (a consumer or its
    /// connection went away while handling it): the handler may see a message twice.
    pub fn redelivered(&self) -> bool {
        self.message.redelivered
    }

    /// How many times it went through the retry queue before (0 the first time).
    pub fn attempt(&self) -> u32 {
        self.message.attempt
    }

    /// How many times a handler failed on it before.
    pub fn handler_failures(&self) -> u32 {
        self.message.failures
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.message;
        let names: Vec<&str> = self
            .headers()
            .map(|h| h.inner().keys().map(ShortString::as_str).collect())
            .unwrap_or_default();
        f.debug_struct("Delivery")
            .field("context", &self.context)
            .field("queue", &m.queue)
            .field("delivery_tag", &m.delivery_tag)
            .field("exchange", &m.exchange.as_str())
            .field("routing_key", &m.routing_key.as_str())
            .field("redelivered", &m.redelivered)
            .field("headers", &names)
            .field("payload", &format_args!("[{} bytes]", m.data.len()))
            .field("attempt", &m.attempt)
            .finish()
    }
}

/// What the consumer did with a message, once the broker has it settled.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The handler succeeded; the message was acknowledged.
    Accepted,
    /// A copy is in the dead-letter destination; the original was acknowledged.
    DeadLettered,
    /// Acknowledged without a copy: it would have been dead-lettered, but it already is a
    /// dead-lettered copy ([`jwt_relay::ErrorKind::AlreadyDeadLettered`]).
    Rejected,
    /// A copy is in the retry queue, due back in the work queue after a delay; the original was
    /// acknowledged.
    Retried,
    /// The message went back to its queue as it was (`basic.nack` with requeue), after a wait:
    /// the retry or dead-letter destination refused it for a while.
    Requeued,
}

impl Settlement {
    /// `accepted`, `dead-lettered`, `rejected`, `retry` or `requeued`.
    pub fn as_str(self) -> &'static str {
        match self {
            Settlement::Accepted => "accepted",
            Settlement::DeadLettered => "dead-lettered",
            Settlement::Rejected => "rejected",
            Settlement::Retried => "retry",
            Settlement::Requeued => "requeued",
        }
    }
}

impl fmt::Display for Settlement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One settled message, as [`ConsumerBuilder::on_settled`](crate::ConsumerBuilder::on_settled)
/// sees it.
#[derive(Debug, Clone, Copy)]
pub struct Settled<'a> {
    pub(crate) message: &'a Received,
    pub(crate) settlement: Settlement,
    pub(crate) context: Option<&'a AuthContext>,
    pub(crate) error: Option<&'a jwt_relay::Error>,
}

impl<'a> Settled<'a> {
    /// The queue it was consumed from.
    pub fn queue(&self) -> &'a str {
        &self.message.queue
    }

    /// Its delivery tag.
    pub fn delivery_tag(&self) -> u64 {
        self.message.delivery_tag
    }

    /// Whether the broker had delivered it before.
    pub fn redelivered(&self) -> bool {
        self.message.redelivered
    }

    /// What happened to it.
    pub fn settlement(&self) -> Settlement {
        self.settlement
    }

    /// The identity it carried, when it verified (accepted messages, and those the handler
    /// failed on).
    pub fn context(&self) -> Option<&'a AuthContext> {
        self.context
    }

    /// Why it was not accepted: the verification, policy or handler error.
    pub fn error(&self) -> Option<&'a jwt_relay::Error> {
        self.error
    }
}

impl fmt::Debug for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Received")
            .field("queue", &self.queue)
            .field("delivery_tag", &self.delivery_tag)
            .finish_non_exhaustive()
    }
}

/// What one [`Consumer::run`](crate::Consumer::run) did.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Messages the handler processed, then acknowledged.
    pub accepted: u64,
    /// Messages dead-lettered: rejected by the guard, out of handler attempts, or dead-lettered
    /// by the broker and moved from the holding queue.
    pub dead_lettered: u64,
    /// Messages acknowledged without a copy because they already were dead-lettered copies.
    pub rejected: u64,
    /// Messages sent through the retry queue: transient failures, and handler failures with
    /// attempts left.
    pub retried: u64,
    /// Messages put back in their queue as they were.
    pub requeued: u64,
    /// Handler calls that returned an error or panicked.
    pub handler_failures: u64,
    /// Times the consumer connected again after losing its connection.
    pub reconnects: u64,
}

/// The live counters behind a [`RunReport`].
#[derive(Debug, Default)]
pub(crate) struct Tally {
    accepted: AtomicU64,
    dead_lettered: AtomicU64,
    rejected: AtomicU64,
    retried: AtomicU64,
    requeued: AtomicU64,
    pub(crate) handler_failures: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

impl Tally {
    /// Counts one settlement.
    pub(crate) fn count(&self, settlement: Settlement) {
        let counter = match settlement {
            Settlement::Accepted => &self.accepted,
            Settlement::DeadLettered => &self.dead_lettered,
            Settlement::Rejected => &self.rejected,
            Settlement::Retried => &self.retried,
            Settlement::Requeued => &self.requeued,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds one to `counter`.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as they are now.
    pub(crate) fn report(&self) -> RunReport {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RunReport {
            accepted: read(&self.accepted),
            dead_lettered: read(&self.dead_lettered),
            rejected: read(&self.rejected),
            retried: read(&self.retried),
            requeued: read(&self.requeued),
            handler_failures: read(&self.handler_failures),
            reconnects: read(&self.reconnects),
        }
    }
}
