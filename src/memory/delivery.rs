//! What a handler receives, and what a consumer run did.

use super::message::{Message, MessageId};
use crate::carrier::Headers;
use crate::context::AuthContext;

/// One accepted message, as a handler receives it: the verified identity
/// and the message. The handler also runs inside
/// [`scope`](crate::scope) of that identity, so what it publishes carries it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub(crate) context: AuthContext,
    pub(crate) message: Message,
}

impl Delivery {
    /// The verified identity (see [`AuthContext::acceptance`] for how it
    /// was accepted).
    pub fn context(&self) -> &AuthContext {
        &self.context
    }

    /// The message's body.
    pub fn payload(&self) -> &[u8] {
        &self.message.payload
    }

    /// The message's headers, as received (the token header included).
    pub fn headers(&self) -> &Headers {
        &self.message.headers
    }

    /// The topic it was consumed from.
    pub fn topic(&self) -> &str {
        &self.message.topic
    }

    /// The message's id.
    pub fn id(&self) -> MessageId {
        self.message.id
    }

    /// How many times it was delivered before (0 the first time).
    pub fn attempt(&self) -> u32 {
        self.message.attempt
    }

    /// The whole message.
    pub fn message(&self) -> &Message {
        &self.message
    }
}

/// What one run of a [`MemoryConsumer`](super::MemoryConsumer) did.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Messages the handler processed (then acknowledged).
    pub accepted: u64,
    /// Messages moved to the dead-letter topic: rejected by the guard, or
    /// out of handler attempts.
    pub dead_lettered: u64,
    /// Messages acknowledged without a copy because they already were
    /// dead-lettered copies ([`ErrorKind::AlreadyDeadLettered`](crate::ErrorKind::AlreadyDeadLettered)).
    pub rejected: u64,
    /// Redeliveries scheduled: transient failures, and handler failures
    /// with attempts left.
    pub retried: u64,
    /// Handler calls that returned an error or panicked.
    pub handler_failures: u64,
}
