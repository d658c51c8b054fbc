//! What a handler receives.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_nats::jetstream;
use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use jwt_relay::AuthContext;

use crate::headers::pairs;

/// One accepted message, as a handler receives it: the verified identity
/// and the message. The handler also runs inside
/// [`jwt_relay::scope`] of that identity, so what it publishes carries it.
/// `Debug` shows the header names, never their values.
pub struct Received {
    pub(crate) context: AuthContext,
    pub(crate) message: Shared,
    pub(crate) jetstream: Option<JetStreamMeta>,
}

/// The message, shared with the consumer that settles it after the handler: never copied
/// (a copy would copy every header, the token among them).
pub(crate) enum Shared {
    Core(Arc<Message>),
    JetStream(Arc<jetstream::Message>),
}

impl Shared {
    fn get(&self) -> &Message {
        match self {
            Shared::Core(message) => message,
            Shared::JetStream(message) => &message.message,
        }
    }
}

/// Where a JetStream message sits in its stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JetStreamMeta {
    pub(crate) stream_sequence: u64,
    pub(crate) delivered: u64,
    pub(crate) published: SystemTime,
}

impl Received {
    /// The verified identity (see [`AuthContext::acceptance`] for how it
    /// was accepted).
    pub fn context(&self) -> &AuthContext {
        &self.context
    }

    /// The subject it was published to.
    pub fn subject(&self) -> &str {
        self.message.get().subject.as_str()
    }

    /// The message's body.
    pub fn payload(&self) -> &Bytes {
        &self.message.get().payload
    }

    /// The message's headers, as received (the token header included:
    /// async-nats's `Debug` of a [`HeaderMap`] shows it).
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.message.get().headers.as_ref()
    }

    /// The stream sequence (JetStream only).
    pub fn stream_sequence(&self) -> Option<u64> {
        self.jetstream.map(|m| m.stream_sequence)
    }

    /// How many times the server delivered it, this time included
    /// (JetStream only; 1 the first time).
    pub fn delivered(&self) -> Option<u64> {
        self.jetstream.map(|m| m.delivered)
    }

    /// When the server stored it (JetStream only; the time the expiry policy saw).
    pub fn published(&self) -> Option<SystemTime> {
        self.jetstream.map(|m| m.published)
    }

    /// The whole NATS message (its `Debug`, async-nats's, shows the token).
    pub fn message(&self) -> &Message {
        self.message.get()
    }
}

impl fmt::Debug for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = pairs(self.message.get().headers.as_ref())
            .map(|(n, _)| n)
            .collect();
        f.debug_struct("Received")
            .field("context", &self.context)
            .field("subject", &self.subject())
            .field("payload_len", &self.message.get().payload.len())
            .field("headers", &names)
            .field("jetstream", &self.jetstream)
            .finish()
    }
}
