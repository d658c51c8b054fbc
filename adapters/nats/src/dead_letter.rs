//! The dead-lettered copy of a NATS message: the payload and the other
//! headers, the reason (the core's `x-jwt-relay-reason-*` headers), where it
//! came from, and no token unless the user opts in.

use std::time::SystemTime;

use async_nats::HeaderMap;
use jwt_relay::{ORIGINAL_SEQUENCE, ORIGINAL_STREAM, ORIGINAL_SUBJECT, Redaction, dead_letter_headers};

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

/// Where dead-lettered copies go, and what they keep.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeadLetterConfig {
    /// A fixed subject; `None`: `<subject>.dlq` (JetStream) or no copy (core).
    pub(crate) subject: Option<String>,
    pub(crate) keep_token: bool,
}

impl DeadLetterConfig {
    /// The dead-letter subject for a message published to `subject`.
    pub(crate) fn subject_for(&self, subject: &str) -> String {
        self.subject.clone().unwrap_or_else(|| format!("{subject}.dlq"))
    }
}

/// Where the original was.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin<'a> {
    pub(crate) subject: &'a str,
    pub(crate) stream: Option<&'a str>,
    pub(crate) sequence: Option<u64>,
}

/// The headers of the dead-lettered copy.
pub(crate) fn copy_headers(
    original: Option<&HeaderMap>,
    reason: &jwt_relay::Error,
    redaction: &Redaction,
    origin: Origin<'_>,
) -> HeaderMap {
    let ours = [ORIGINAL_SUBJECT, ORIGINAL_STREAM, ORIGINAL_SEQUENCE];
    let kept = pairs(original).filter(|(name, _)| {
        let lower = name.to_ascii_lowercase();
        !ours.contains(&lower.as_str()) && !PUBLISH_CONTROLS.iter().any(|p| lower.starts_with(p))
    });
    let mut headers = dead_letter_headers(kept, reason, redaction, SystemTime::now());
    headers.push((ORIGINAL_SUBJECT.to_owned(), origin.subject.as_bytes().to_vec()));
    if let Some(stream) = origin.stream {
        headers.push((ORIGINAL_STREAM.to_owned(), stream.as_bytes().to_vec()));
    }
    if let Some(sequence) = origin.sequence {
        headers.push((ORIGINAL_SEQUENCE.to_owned(), sequence.to_string().into_bytes()));
    }
    to_header_map(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_relay::{ErrorKind, REASON_CLASS, REASON_KIND, REASON_MESSAGE};

    #[test]
    fn the_copy_has_the_reason_and_the_origin_and_no_token() {
        let mut original = HeaderMap::new();
        original.insert("authorization", "Bearer secret.token.value");
        original.insert("x-order", "42");
        original.insert("Nats-Expected-Last-Sequence", "7");
        original.insert(ORIGINAL_SUBJECT, "spoofed");
        let reason = jwt_relay::Error::new(ErrorKind::BadSignature, "key `k1` says no");
        let origin = Origin {
            subject: "orders.eu",
            stream: Some("ORDERS"),
            sequence: Some(9),
        };
        let redaction = Redaction::new(jwt_relay::TokenHeader::default());
        let copy = copy_headers(Some(&original), &reason, &redaction, origin);
        let get = |n: &str| copy.get(n).map(|v| v.as_str().to_owned());
        assert_eq!(get("x-order").as_deref(), Some("42"));
        assert_eq!(get(REASON_KIND).as_deref(), Some("BadSignature"));
        assert_eq!(get(REASON_CLASS).as_deref(), Some("permanent"));
        assert_eq!(get(REASON_MESSAGE).as_deref(), Some("key `k1` says no"));
        assert_eq!(get(ORIGINAL_SUBJECT).as_deref(), Some("orders.eu"));
        assert_eq!(get(ORIGINAL_STREAM).as_deref(), Some("ORDERS"));
        assert_eq!(get(ORIGINAL_SEQUENCE).as_deref(), Some("9"));
        assert!(get("authorization").is_none());
        assert!(get("Nats-Expected-Last-Sequence").is_none());
        assert_eq!(copy.get_all(ORIGINAL_SUBJECT).count(), 1);

        let kept = copy_headers(Some(&original), &reason, &redaction.keep_token(true), origin);
        assert!(kept.get("authorization").is_some(), "kept when the user opts in");
    }

    #[test]
    fn default_subject_is_the_original_plus_dlq() {
        let config = DeadLetterConfig::default();
        assert_eq!(config.subject_for("orders.eu"), "orders.eu.dlq");
        let fixed = DeadLetterConfig {
            subject: Some("dead".into()),
            keep_token: false,
        };
        assert_eq!(fixed.subject_for("orders.eu"), "dead");
    }
}
