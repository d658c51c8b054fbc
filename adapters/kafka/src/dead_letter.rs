//! Where rejected records go, and what their copies carry.

use std::time::SystemTime;

use jwt_relay::{
    ORIGINAL_OFFSET, ORIGINAL_PARTITION, ORIGINAL_SUBJECT, ORIGINAL_TIMESTAMP, Redaction, reason_headers,
};
use rdkafka::Timestamp;
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders, OwnedMessage};

/// The dead-letter topic of a consumer: `<topic>.dlq` by default (one per consumed topic), or
/// one fixed topic for all. The topic must exist (or the broker create it on first use).
///
/// ```
/// use jwt_relay_kafka::DeadLetter;
/// assert_eq!(DeadLetter::default().topic_for("orders"), "orders.dlq");
/// assert_eq!(DeadLetter::suffix("-dead").topic_for("orders"), "orders-dead");
/// assert_eq!(DeadLetter::topic("all.dlq").topic_for("orders"), "all.dlq");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetter {
    /// The consumed topic's name followed by this suffix.
    Suffix(String),
    /// This topic, whatever the consumed one.
    Topic(String),
}

impl Default for DeadLetter {
    fn default() -> Self {
        DeadLetter::Suffix(".dlq".to_owned())
    }
}

impl DeadLetter {
    /// `<topic><suffix>`.
    pub fn suffix(suffix: impl Into<String>) -> Self {
        DeadLetter::Suffix(suffix.into())
    }

    /// One topic for every rejected record.
    pub fn topic(topic: impl Into<String>) -> Self {
        DeadLetter::Topic(topic.into())
    }

    /// The dead-letter topic of a record read from `topic`.
    pub fn topic_for(&self, topic: &str) -> String {
        match self {
            DeadLetter::Suffix(suffix) => format!("{topic}{suffix}"),
            DeadLetter::Topic(fixed) => fixed.clone(),
        }
    }
}

/// Our own headers, replaced rather than copied (a record could carry spoofed ones).
const ORIGINS: [&str; 4] = [
    ORIGINAL_SUBJECT,
    ORIGINAL_PARTITION,
    ORIGINAL_OFFSET,
    ORIGINAL_TIMESTAMP,
];

/// The headers of a dead-lettered copy: the original ones in order (null values kept; none
/// unless `with_headers`), minus what `redaction` leaves out (the token, the credentials), plus
/// the reason and where the record was.
pub(crate) fn copy_headers(
    record: &OwnedMessage,
    reason: &jwt_relay::Error,
    redaction: &Redaction,
    with_headers: bool,
) -> OwnedHeaders {
    let mut out = OwnedHeaders::new();
    let original = record.headers().filter(|_| with_headers);
    let kept = original
        .into_iter()
        .flat_map(|h| h.iter())
        .filter(|h| redaction.keeps(h.key) && !ORIGINS.iter().any(|o| h.key.eq_ignore_ascii_case(o)));
    for header in kept {
        out = out.insert(header);
    }
    let timestamp = match record.timestamp() {
        Timestamp::CreateTime(ms) => Some(format!("{ms} create-time")),
        Timestamp::LogAppendTime(ms) => Some(format!("{ms} log-append-time")),
        Timestamp::NotAvailable => None,
    };
    let origin = [
        (ORIGINAL_SUBJECT, Some(record.topic().to_owned())),
        (ORIGINAL_PARTITION, Some(record.partition().to_string())),
        (ORIGINAL_OFFSET, Some(record.offset().to_string())),
        (ORIGINAL_TIMESTAMP, timestamp),
    ];
    let reasons = reason_headers(reason, SystemTime::now()).map(|(name, value)| (name, Some(value)));
    for (key, value) in reasons.into_iter().chain(origin) {
        if let Some(value) = value {
            out = out.insert(Header {
                key,
                value: Some(&value),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use jwt_relay::{ErrorKind, REASON_CLASS, REASON_KIND};
    use rdkafka::Timestamp;

    fn value<'a>(headers: &'a OwnedHeaders, name: &str) -> Vec<Option<&'a [u8]>> {
        headers
            .iter()
            .filter(|h| h.key == name)
            .map(|h| h.value)
            .collect()
    }

    #[test]
    fn the_copy_has_the_reason_and_the_origin_and_no_token() {
        let original = OwnedHeaders::new()
            .insert(Header {
                key: "authorization",
                value: Some("Bearer secret.token.value"),
            })
            .insert(Header {
                key: "x-order",
                value: Some("42"),
            })
            .insert(Header {
                key: "Cookie",
                value: Some("session=secret"),
            })
            .insert(Header::<&str> {
                key: "x-null",
                value: None,
            })
            .insert(Header {
                key: ORIGINAL_OFFSET,
                value: Some("spoofed"),
            });
        let record = OwnedMessage::new(
            Some(b"{}".to_vec()),
            Some(b"k".to_vec()),
            "orders".to_owned(),
            Timestamp::LogAppendTime(1_700_000_000_000),
            2,
            17,
            Some(original),
        );
        let reason = jwt_relay::Error::new(ErrorKind::BadSignature, "key `k1` says no");
        let redaction = Redaction::new(jwt_relay::TokenHeader::default());
        let copy = copy_headers(&record, &reason, &redaction, true);
        assert!(value(&copy, "authorization").is_empty());
        assert!(value(&copy, "Cookie").is_empty(), "no credential either");
        assert_eq!(value(&copy, "x-order"), [Some(&b"42"[..])]);
        assert_eq!(value(&copy, "x-null"), [None]);
        assert_eq!(value(&copy, REASON_KIND), [Some(&b"BadSignature"[..])]);
        assert_eq!(value(&copy, REASON_CLASS), [Some(&b"permanent"[..])]);
        assert_eq!(value(&copy, ORIGINAL_SUBJECT), [Some(&b"orders"[..])]);
        assert_eq!(value(&copy, ORIGINAL_PARTITION), [Some(&b"2"[..])]);
        assert_eq!(value(&copy, ORIGINAL_OFFSET), [Some(&b"17"[..])]);
        assert_eq!(
            value(&copy, ORIGINAL_TIMESTAMP),
            [Some(&b"1700000000000 log-append-time"[..])]
        );
        let kept = copy_headers(&record, &reason, &redaction.keep_token(true), true);
        assert_eq!(
            value(&kept, "authorization").len(),
            1,
            "kept when the user opts in"
        );
    }
}
