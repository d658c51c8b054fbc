//! Why the broker dead-lettered a message, read from its `x-death` record, as the reason of the
//! copy the consumer moves from the holding queue to the dead-letter queue.

use jwt_relay::ErrorKind;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};

/// The reason of a message the broker dead-lettered: [`ErrorKind::BrokerDeadLettered`], with a
/// message built from the newest `x-death` entry (why, from which queue, how many times). Only
/// the broker's own short values are quoted, cut to printable ASCII.
pub(crate) fn broker_reason(properties: &BasicProperties) -> jwt_relay::Error {
    let death = properties
        .headers()
        .as_ref()
        .and_then(|headers| match headers.inner().get("x-death") {
            Some(AMQPValue::FieldArray(deaths)) => match deaths.as_slice().first() {
                Some(AMQPValue::FieldTable(death)) => Some(death),
                _ => None,
            },
            _ => None,
        });
    let Some(death) = death else {
        return jwt_relay::Error::new(
            ErrorKind::BrokerDeadLettered,
            "the broker dead-lettered the message (it has no `x-death` record)",
        );
    };
    let why = match text(death, "reason").as_deref() {
        Some("expired") => "its message TTL expired".to_owned(),
        Some("maxlen") => "the queue was over its length limit".to_owned(),
        Some("delivery_limit") => "it was delivered more times than the queue's delivery limit".to_owned(),
        Some("rejected") => "a client rejected it without requeueing it".to_owned(),
        Some(other) => format!("`{other}`"),
        None => "no reason given".to_owned(),
    };
    let queue = text(death, "queue").unwrap_or_else(|| "?".to_owned());
    let count = match death.inner().get("count") {
        Some(AMQPValue::LongLongInt(n)) => format!(", {n} time(s)"),
        _ => String::new(),
    };
    jwt_relay::Error::new(
        ErrorKind::BrokerDeadLettered,
        format!("the broker dead-lettered the message from `{queue}`: {why}{count}"),
    )
}

/// A string value of `table`, printable ASCII only, at most 255 bytes.
fn text(table: &FieldTable, name: &str) -> Option<String> {
    let bytes = match table.inner().get(name)? {
        AMQPValue::LongString(s) => s.as_bytes().to_vec(),
        AMQPValue::ShortString(s) => s.as_str().as_bytes().to_vec(),
        _ => return None,
    };
    Some(
        bytes
            .iter()
            .take(255)
            .filter(|b| (0x20..0x7f).contains(*b))
            .map(|&b| char::from(b))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use lapin::types::{LongString, ShortString};

    use super::*;

    fn dead(reason: &str) -> BasicProperties {
        let mut death = FieldTable::default();
        death.insert(
            ShortString::from("reason"),
            AMQPValue::LongString(LongString::from(reason)),
        );
        death.insert(
            ShortString::from("queue"),
            AMQPValue::LongString(LongString::from("invoices")),
        );
        death.insert(ShortString::from("count"), AMQPValue::LongLongInt(2));
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from("x-death"),
            AMQPValue::FieldArray(vec![AMQPValue::FieldTable(death)].into()),
        );
        BasicProperties::default().with_headers(headers)
    }

    #[test]
    fn the_newest_death_says_why_and_where() {
        let reason = broker_reason(&dead("expired"));
        assert_eq!(reason.kind(), ErrorKind::BrokerDeadLettered);
        assert_eq!(
            reason.message(),
            "the broker dead-lettered the message from `invoices`: its message TTL expired, 2 time(s)"
        );
        assert!(broker_reason(&dead("maxlen")).message().contains("length limit"));
        assert!(
            broker_reason(&dead("delivery_limit"))
                .message()
                .contains("delivery limit")
        );
        assert!(
            broker_reason(&dead("new\nthing"))
                .message()
                .contains("`newthing`")
        );
    }

    #[test]
    fn no_record_is_still_a_reason() {
        let reason = broker_reason(&BasicProperties::default());
        assert_eq!(reason.kind(), ErrorKind::BrokerDeadLettered);
        assert!(reason.message().contains("no `x-death`"));
    }
}
