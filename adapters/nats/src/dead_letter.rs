//! The dead-lettered copy of a NATS message: the payload and the other
//! headers, the reason (the core's `x-jwt-relay-reason-*` headers), where it
//! came from, and no token unless the user opts in.

use async_nats::HeaderMap;
use jwt_relay::consume::DeadLetterCopy;

use crate::headers::{pairs, to_header_map};

/// Headers of the original that would make the copy's publish fail or
/// behave differently (JetStream publish expectations, rollups, TTLs,
/// batches, schedules): dropped from the copy.
const PUBLISH_CONTROLS: [&str; 5] = [
    "nats-expected-",
    "nats-rollup",
    "nats-ttl",
    "nats-batch-",
    "nats-schedule",
];

/// Where a consumer's rejected messages go: the subject each was published to followed by a
/// suffix (`<subject>.dlq`, the default of a [`JetStreamConsumer`](crate::JetStreamConsumer)),
/// or one fixed subject. Capture it with a stream (see [`Topology`](crate::Topology)) outside
/// what the consumer reads.
///
/// ```
/// use jwt_relay_nats::DeadLetter;
/// assert_eq!(DeadLetter::default().subject_for("orders.eu"), "orders.eu.dlq");
/// assert_eq!(DeadLetter::suffix("-dead").subject_for("orders.eu"), "orders.eu-dead");
/// assert_eq!(DeadLetter::subject("dead.orders").subject_for("orders.eu"), "dead.orders");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetter {
    /// The message's subject followed by this suffix.
    Suffix(String),
    /// This subject, whatever the message's.
    Subject(String),
}

impl Default for DeadLetter {
    fn default() -> Self {
        DeadLetter::Suffix(".dlq".to_owned())
    }
}

impl DeadLetter {
    /// `<subject><suffix>`.
    pub fn suffix(suffix: impl Into<String>) -> Self {
        DeadLetter::Suffix(suffix.into())
    }

    /// One subject for every rejected message.
    pub fn subject(subject: impl Into<String>) -> Self {
        DeadLetter::Subject(subject.into())
    }

    /// The dead-letter subject of a message published to `subject`.
    pub fn subject_for(&self, subject: &str) -> String {
        match self {
            DeadLetter::Suffix(suffix) => format!("{subject}{suffix}"),
            DeadLetter::Subject(fixed) => fixed.clone(),
        }
    }
}

/// The headers of the dead-lettered copy: the original's that the redaction keeps, minus the
/// publish controls, then the reason and the origin.
pub(crate) fn copy_headers(original: Option<&HeaderMap>, copy: &DeadLetterCopy<'_>) -> HeaderMap {
    let kept = pairs(original).filter(|(name, _)| {
        let lower = name.to_ascii_lowercase();
        !PUBLISH_CONTROLS.iter().any(|p| lower.starts_with(p))
    });
    let headers = copy.with_original(kept);
    to_header_map(headers)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use jwt_relay::ErrorKind;
    use jwt_relay::consume::Origin;
    use jwt_relay::consume::{
        ORIGINAL_DESTINATION, ORIGINAL_SEQUENCE, ORIGINAL_STREAM, ORIGINAL_SUBJECT, Position, REASON_CLASS,
        REASON_KIND, REASON_MESSAGE, Redaction,
    };

    #[test]
    fn the_copy_has_the_reason_and_the_origin_and_no_token() {
        let mut original = HeaderMap::new();
        original.insert("authorization", "Bearer secret.token.value");
        original.insert("x-order", "42");
        original.insert("Nats-Expected-Last-Sequence", "7");
        original.insert(ORIGINAL_SUBJECT, "spoofed");
        let reason = jwt_relay::Error::new(ErrorKind::BadSignature, "key `k1` says no");
        let mut dead_letter = DeadLetterCopy {
            reason: &reason,
            redaction: Redaction::new(jwt_relay::TokenHeader::default()),
            origin: Origin {
                destination: "orders.>",
                subject: "orders.eu",
                position: Position::Sequence {
                    stream: "ORDERS",
                    sequence: 9,
                    delivered: 1,
                },
                published: None,
            },
            now: SystemTime::now(),
        };
        let copy = copy_headers(Some(&original), &dead_letter);
        let get = |n: &str| copy.get(n).map(|v| v.as_str().to_owned());
        assert_eq!(get("x-order").as_deref(), Some("42"));
        assert_eq!(get(REASON_KIND).as_deref(), Some("BadSignature"));
        assert_eq!(get(REASON_CLASS).as_deref(), Some("permanent"));
        assert_eq!(get(REASON_MESSAGE).as_deref(), Some("key `k1` says no"));
        assert_eq!(get(ORIGINAL_DESTINATION).as_deref(), Some("orders.>"));
        assert_eq!(get(ORIGINAL_SUBJECT).as_deref(), Some("orders.eu"));
        assert_eq!(get(ORIGINAL_STREAM).as_deref(), Some("ORDERS"));
        assert_eq!(get(ORIGINAL_SEQUENCE).as_deref(), Some("9"));
        assert!(get("authorization").is_none());
        assert!(get("Nats-Expected-Last-Sequence").is_none());
        assert_eq!(copy.get_all(ORIGINAL_SUBJECT).count(), 1);

        dead_letter.redaction = dead_letter.redaction.keep_token(true);
        let kept = copy_headers(Some(&original), &dead_letter);
        assert!(kept.get("authorization").is_some(), "kept when the user opts in");
    }
}
