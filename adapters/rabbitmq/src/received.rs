//! What a handler receives.

use std::fmt;
use std::sync::Arc;

use jwt_relay::AuthContext;
use lapin::BasicProperties;
use lapin::types::{FieldTable, ShortString};

/// One accepted message, as a handler receives it: the verified identity and the message. The
/// handler also runs in [`jwt_relay::scope`] of that identity, so what it publishes through a
/// [`Publisher`](crate::Publisher) carries the token without being passed it. (lapin's own
/// [`lapin::message::Delivery`] is what the broker delivered, before the guard's decision.)
///
/// `Debug` shows header names and the payload's length, never a header value or the payload.
#[derive(Clone)]
pub struct Received {
    pub(crate) context: AuthContext,
    pub(crate) message: Arc<Inbound>,
}

/// A message as the consumer took it from the queue.
pub(crate) struct Inbound {
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

impl Received {
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

impl fmt::Debug for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.message;
        let names: Vec<&str> = self
            .headers()
            .map(|h| h.inner().keys().map(ShortString::as_str).collect())
            .unwrap_or_default();
        f.debug_struct("Received")
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

impl fmt::Debug for Inbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbound")
            .field("queue", &self.queue)
            .field("delivery_tag", &self.delivery_tag)
            .finish_non_exhaustive()
    }
}
