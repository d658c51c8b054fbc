//! The copies of a consumed message that the consumer publishes: to the dead-letter destination,
//! and to the retry queue.

use std::time::Duration;

use jwt_relay::consume::DeadLetterCopy;
use jwt_relay::consume::Redaction;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use crate::headers::write_count;

/// Header counting how many times a message went through the retry queue (transient failures
/// and handler failures alike). Less the [`FAILURES_HEADER`], it is the count of checks that
/// ended in a retry, which the guard's backoff goes by
/// ([`Tries`](jwt_relay::consume::Tries)`::checks`).
pub const ATTEMPT_HEADER: &str = "x-jwt-relay-attempt";
/// Header counting how many times a handler failed on a message; at
/// [`max_attempts`](crate::ConsumerBuilder::max_attempts) the message is dead-lettered.
pub const FAILURES_HEADER: &str = "x-jwt-relay-handler-failures";

/// The properties of a dead-lettered copy: the original's, with the headers the copy's
/// redaction keeps (the token and other credentials dropped, also inside nested tables; so are
/// an earlier copy's reason and origin headers) each with its AMQP type, and the copy's reason
/// and origin headers ([`DeadLetterCopy::headers`]) added as `LongString`s.
pub(crate) fn dead_letter_copy(original: &BasicProperties, copy: &DeadLetterCopy<'_>) -> BasicProperties {
    let mut headers = original
        .headers()
        .as_ref()
        .map(|table| redacted(table, &copy.redaction))
        .unwrap_or_default();
    for (name, value) in copy.headers() {
        headers.insert(
            ShortString::from(name),
            AMQPValue::LongString(LongString::from(value)),
        );
    }
    republished(original, headers)
}

/// `table` without the entries `redaction` leaves out, at every level of nesting (tables, and
/// tables inside arrays); every other value keeps its AMQP type.
fn redacted(table: &FieldTable, redaction: &Redaction) -> FieldTable {
    let mut out = FieldTable::default();
    for (name, value) in table.inner() {
        if redaction.keeps(name.as_str()) {
            out.insert(name.clone(), redacted_value(value, redaction));
        }
    }
    out
}

fn redacted_value(value: &AMQPValue, redaction: &Redaction) -> AMQPValue {
    match value {
        AMQPValue::FieldTable(table) => AMQPValue::FieldTable(redacted(table, redaction)),
        AMQPValue::FieldArray(array) => AMQPValue::FieldArray(
            array
                .as_slice()
                .iter()
                .map(|value| redacted_value(value, redaction))
                .collect::<Vec<_>>()
                .into(),
        ),
        other => other.clone(),
    }
}

/// The properties of a copy bound for the retry queue: the original's, every header kept (the
/// token included: the copy comes back to the work queue), the counts updated, and an
/// `expiration` of `delay`, after which the retry queue dead-letters it back to the work queue.
pub(crate) fn retry_copy(
    original: &BasicProperties,
    attempt: u32,
    failures: u32,
    delay: Duration,
) -> BasicProperties {
    let mut headers = original.headers().clone().unwrap_or_default();
    write_count(&mut headers, ATTEMPT_HEADER, attempt);
    write_count(&mut headers, FAILURES_HEADER, failures);
    let millis = delay.as_millis().max(1).to_string();
    republished(original, headers).with_expiration(ShortString::from(millis))
}

/// A copy of `original`'s properties with `headers`, for republishing. Left out: `expiration`
/// (a dead-lettered copy must not expire; a retry copy sets its own) and `user-id` (RabbitMQ
/// refuses a `user-id` other than the publishing connection's user).
fn republished(original: &BasicProperties, headers: FieldTable) -> BasicProperties {
    let mut copy = BasicProperties::default().with_headers(headers);
    if let Some(v) = original.content_type() {
        copy = copy.with_content_type(v.clone());
    }
    if let Some(v) = original.content_encoding() {
        copy = copy.with_content_encoding(v.clone());
    }
    if let Some(v) = original.delivery_mode() {
        copy = copy.with_delivery_mode(*v);
    }
    if let Some(v) = original.priority() {
        copy = copy.with_priority(*v);
    }
    if let Some(v) = original.correlation_id() {
        copy = copy.with_correlation_id(v.clone());
    }
    if let Some(v) = original.reply_to() {
        copy = copy.with_reply_to(v.clone());
    }
    if let Some(v) = original.message_id() {
        copy = copy.with_message_id(v.clone());
    }
    if let Some(v) = original.timestamp() {
        copy = copy.with_timestamp(*v);
    }
    if let Some(v) = original.kind() {
        copy = copy.with_type(v.clone());
    }
    if let Some(v) = original.app_id() {
        copy = copy.with_app_id(v.clone());
    }
    if let Some(v) = original.cluster_id() {
        copy = copy.with_cluster_id(v.clone());
    }
    copy
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::SystemTime;

    use jwt_relay::ErrorKind;
    use jwt_relay::consume::{
        ORIGINAL_DESTINATION, ORIGINAL_SUBJECT, ORIGINAL_TIMESTAMP, PublishTime, REASON_CLASS, REASON_KIND,
        REASON_MESSAGE, REASON_TIME,
    };
    use jwt_relay::consume::{Origin, Position};

    use super::*;
    use crate::headers::read_count;

    fn letter<'a>(reason: &'a jwt_relay::Error, redaction: Redaction) -> DeadLetterCopy<'a> {
        DeadLetterCopy {
            reason,
            redaction,
            origin: Origin {
                destination: "invoices",
                subject: "invoices.eu",
                position: Position::DeliveryTag(7),
                published: Some(PublishTime::client(
                    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                )),
            },
            now: SystemTime::UNIX_EPOCH,
        }
    }

    fn original() -> BasicProperties {
        let mut headers = FieldTable::default();
        headers.insert(
            "authorization".into(),
            AMQPValue::LongString("Bearer secret.tok.en".into()),
        );
        headers.insert("x-order".into(), AMQPValue::LongLongInt(42));
        headers.insert(REASON_KIND.into(), AMQPValue::LongString("old".into()));
        let mut nested = FieldTable::default();
        nested.insert("Cookie".into(), AMQPValue::LongString("session=secret".into()));
        nested.insert("x-keep".into(), AMQPValue::LongString("kept".into()));
        let mut deeper = FieldTable::default();
        deeper.insert(
            "X-Forwarded-Authorization".into(),
            AMQPValue::LongString("Bearer secret.deep".into()),
        );
        nested.insert(
            "list".into(),
            AMQPValue::FieldArray(vec![AMQPValue::FieldTable(deeper)].into()),
        );
        headers.insert("x-context".into(), AMQPValue::FieldTable(nested));
        headers.insert(
            "proxy-authorization".into(),
            AMQPValue::LongString("Basic c2VjcmV0".into()),
        );
        BasicProperties::default()
            .with_headers(headers)
            .with_message_id("m-1".into())
            .with_timestamp(1_700_000_000)
            .with_expiration("60000".into())
            .with_user_id("someone-else".into())
            .with_delivery_mode(2)
    }

    #[test]
    fn a_dead_letter_copy_keeps_typed_headers_drops_the_token_and_adds_the_reason() {
        let reason = jwt_relay::Error::new(ErrorKind::BadSignature, "key `k1` says no");
        let redaction = Redaction::new(jwt_relay::TokenHeader::default());
        let copy = dead_letter_copy(&original(), &letter(&reason, redaction.clone()));
        let headers = copy.headers().as_ref().unwrap().inner();
        assert!(!headers.contains_key("authorization"));
        assert!(!headers.contains_key("proxy-authorization"));
        let rendered = format!("{headers:?}");
        assert!(
            !rendered.contains("secret"),
            "no credential at any depth: {rendered}"
        );
        let Some(AMQPValue::FieldTable(nested)) = headers.get("x-context") else {
            panic!("the nested table is kept: {rendered}");
        };
        assert_eq!(
            nested.inner().get("x-keep"),
            Some(&AMQPValue::LongString("kept".into()))
        );
        assert!(nested.inner().contains_key("list"));
        assert_eq!(headers.get("x-order"), Some(&AMQPValue::LongLongInt(42)));
        assert_eq!(
            headers.get(REASON_KIND),
            Some(&AMQPValue::LongString("BadSignature".into()))
        );
        assert_eq!(
            headers.get(REASON_CLASS),
            Some(&AMQPValue::LongString("permanent".into()))
        );
        assert_eq!(headers.get(REASON_TIME), Some(&AMQPValue::LongString("0".into())));
        assert!(headers.contains_key(REASON_MESSAGE));
        let origin = |name: &str| match headers.get(name) {
            Some(AMQPValue::LongString(value)) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(origin(ORIGINAL_DESTINATION), "invoices");
        assert_eq!(origin(ORIGINAL_SUBJECT), "invoices.eu");
        assert_eq!(origin(ORIGINAL_TIMESTAMP), "1700000000000 client");
        assert_eq!(copy.message_id().as_ref().map(ShortString::as_str), Some("m-1"));
        assert_eq!(*copy.timestamp(), Some(1_700_000_000));
        assert_eq!(*copy.delivery_mode(), Some(2));
        assert_eq!(*copy.expiration(), None);
        assert_eq!(*copy.user_id(), None);

        let kept = dead_letter_copy(&original(), &letter(&reason, redaction.keep_token(true)));
        assert!(kept.headers().as_ref().unwrap().contains_key("authorization"));
    }

    #[test]
    fn a_retry_copy_keeps_the_token_counts_and_expires_after_the_delay() {
        let copy = retry_copy(&original(), 3, 1, Duration::from_millis(1500));
        let headers = copy.headers().as_ref();
        assert!(headers.unwrap().contains_key("authorization"));
        assert_eq!(read_count(headers, ATTEMPT_HEADER), 3);
        assert_eq!(read_count(headers, FAILURES_HEADER), 1);
        assert_eq!(copy.expiration().as_ref().map(ShortString::as_str), Some("1500"));
        assert_eq!(*copy.timestamp(), Some(1_700_000_000));
        let immediate = retry_copy(&original(), 1, 0, Duration::ZERO);
        assert_eq!(
            immediate.expiration().as_ref().map(ShortString::as_str),
            Some("1")
        );
    }
}
