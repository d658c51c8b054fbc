//! What a handler receives: the verified identity and the record.

use std::fmt;
use std::sync::Arc;

use jwt_relay::AuthContext;
use rdkafka::Timestamp;
use rdkafka::message::{Message as _, OwnedHeaders, OwnedMessage};

/// A record whose token was verified, handed to the handler together with its identity. The
/// handler also runs in that identity's [`scope`](jwt_relay::scope), so a
/// [`Publisher::send`](crate::Publisher::send) from it carries the token on without being told.
pub struct Received {
    pub(crate) context: AuthContext,
    pub(crate) record: Arc<OwnedMessage>,
    pub(crate) attempt: u32,
}

impl Received {
    /// The verified identity.
    pub fn context(&self) -> &AuthContext {
        &self.context
    }

    /// The record's value (empty for a null value).
    pub fn payload(&self) -> &[u8] {
        self.record.payload().unwrap_or_default()
    }

    /// The record's key, if any.
    pub fn key(&self) -> Option<&[u8]> {
        self.record.key()
    }

    /// The record's headers, the token header included.
    pub fn headers(&self) -> Option<&OwnedHeaders> {
        self.record.headers()
    }

    /// The topic it was read from.
    pub fn topic(&self) -> &str {
        self.record.topic()
    }

    /// Its partition.
    pub fn partition(&self) -> i32 {
        self.record.partition()
    }

    /// Its offset.
    pub fn offset(&self) -> i64 {
        self.record.offset()
    }

    /// Its timestamp, and who set it (`CreateTime`: the producer; `LogAppendTime`: the broker).
    pub fn timestamp(&self) -> Timestamp {
        self.record.timestamp()
    }

    /// How many times the handler was called for this record before (0 the first time).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The whole record.
    pub fn record(&self) -> &OwnedMessage {
        &self.record
    }
}

impl fmt::Debug for Received {
    /// The record's place and the identity; no payload, no header value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Received")
            .field("topic", &self.topic())
            .field("partition", &self.partition())
            .field("offset", &self.offset())
            .field("attempt", &self.attempt)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}
