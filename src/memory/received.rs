//! What a handler receives.

use super::message::{Message, MessageId};
use crate::carrier::Headers;
use crate::verify::context::AuthContext;

/// One accepted message, as a handler receives it: the verified identity
/// and the message. The handler also runs inside
/// [`scope`](crate::scope) of that identity, so what it publishes carries it.
#[derive(Debug, Clone)]
pub struct Received {
    pub(crate) context: AuthContext,
    pub(crate) message: Message,
}

impl Received {
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
