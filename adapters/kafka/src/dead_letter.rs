//! Where rejected records go, and what their copies carry.

use jwt_relay::consume::DeadLetterCopy;
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

/// The headers of a dead-lettered copy: the original ones in order (null values kept; none
/// unless `with_headers`), minus what the copy's redaction leaves out (the token, the
/// credentials, earlier reason and origin headers), plus the reason and where the record was.
pub(crate) fn copy_headers(
    record: &OwnedMessage,
    copy: &DeadLetterCopy<'_>,
    with_headers: bool,
) -> OwnedHeaders {
    let mut out = OwnedHeaders::new();
    let original = record.headers().filter(|_| with_headers);
    let kept = original
        .into_iter()
        .flat_map(|h| h.iter())
        .filter(|h| copy.redaction.keeps(h.key));
    for header in kept {
        out = out.insert(header);
    }
    for (key, value) in copy.headers() {
        out = out.insert(Header {
            key,
            value: Some(&value),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::{Duration, SystemTime};

    use jwt_relay::ErrorKind;
    use jwt_relay::consume::Origin;
    use jwt_relay::consume::{
        ORIGINAL_OFFSET, ORIGINAL_PARTITION, ORIGINAL_SUBJECT, ORIGINAL_TIMESTAMP, Position, PublishTime,
        REASON_CLASS, REASON_KIND, Redaction,
    };
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
        let published = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        let mut dead_letter = DeadLetterCopy {
            reason: &reason,
            redaction: Redaction::new(jwt_relay::TokenHeader::default()),
            origin: Origin {
                destination: "orders",
                subject: "orders",
                position: Position::Offset {
                    partition: 2,
                    offset: 17,
                },
                published: Some(PublishTime::broker(published)),
            },
            now: SystemTime::now(),
        };
        let copy = copy_headers(&record, &dead_letter, true);
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
            [Some(&b"1700000000000 broker"[..])]
        );
        dead_letter.redaction = dead_letter.redaction.keep_token(true);
        let kept = copy_headers(&record, &dead_letter, true);
        assert_eq!(
            value(&kept, "authorization").len(),
            1,
            "kept when the user opts in"
        );
    }
}
