//! A message as the in-memory broker holds it.

use std::fmt;

use crate::carrier::Headers;
use crate::consume::policy::PublishTime;

/// A message's id: unique within its [`MemoryBroker`](super::MemoryBroker),
/// increasing in publish order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub(crate) u64);

impl MessageId {
    /// The id as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A message in a topic of the in-memory broker. The broker sets every
/// field; read them to inspect what a topic holds.
///
/// `Debug` shows header names only (a value may be a token) and the
/// payload's length, never its bytes.
#[non_exhaustive]
#[derive(Clone)]
pub struct Message {
    /// Its id.
    pub id: MessageId,
    /// The topic it was published to.
    pub topic: String,
    /// Its headers, in order; names may repeat.
    pub headers: Headers,
    /// Its body.
    pub payload: Vec<u8>,
    /// When it was published, and who set that time (the broker, unless
    /// published with [`publish_at`](super::MemoryBroker::publish_at)).
    pub published: PublishTime,
    /// How many times it was delivered before (0 until its first retry).
    pub attempt: u32,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("topic", &self.topic)
            .field("headers", &self.headers)
            .field("payload", &format_args!("[{} bytes]", self.payload.len()))
            .field("published", &self.published)
            .field("attempt", &self.attempt)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn debug_shows_neither_header_values_nor_payload() {
        let mut headers = Headers::new();
        headers.append("Authorization", "Bearer secret-token");
        let message = Message {
            id: MessageId(7),
            topic: "orders".to_owned(),
            headers,
            payload: b"card 4111".to_vec(),
            published: PublishTime::broker(SystemTime::UNIX_EPOCH),
            attempt: 0,
        };
        let shown = format!("{message:?}");
        assert!(shown.contains("Authorization"), "{shown}");
        assert!(shown.contains("[9 bytes]"), "{shown}");
        assert!(!shown.contains("secret-token"), "{shown}");
        assert!(!shown.contains("4111"), "{shown}");
    }
}
