//! What a dead-lettered copy carries: the payload and the other headers,
//! the reason, and no usable token unless the user opts in.

use std::time::SystemTime;

use crate::error::Error;
use crate::token_header::TokenHeader;
use crate::verifier::unix_seconds;

/// Header naming the error kind (`Expired`, `BadSignature`, …).
pub const REASON_KIND: &str = "x-jwt-relay-reason-kind";
/// Header naming the error class (`permanent`, …).
pub const REASON_CLASS: &str = "x-jwt-relay-reason-class";
/// Header with the error message (ASCII, never the token).
pub const REASON_MESSAGE: &str = "x-jwt-relay-reason-message";
/// Header with the time of dead-lettering, in Unix seconds.
pub const REASON_TIME: &str = "x-jwt-relay-dead-lettered-at";

/// Header naming the subject (topic, routing key) the dead-lettered message
/// was published to.
pub const ORIGINAL_SUBJECT: &str = "x-jwt-relay-original-subject";
/// Header naming the stream a dead-lettered message was stored in.
pub const ORIGINAL_STREAM: &str = "x-jwt-relay-original-stream";
/// Header with the sequence number of a dead-lettered message in its stream.
pub const ORIGINAL_SEQUENCE: &str = "x-jwt-relay-original-sequence";

/// Header with the partition a dead-lettered Kafka record was read from.
pub const ORIGINAL_PARTITION: &str = "x-jwt-relay-original-partition";
/// Header with the offset of a dead-lettered Kafka record in its partition.
pub const ORIGINAL_OFFSET: &str = "x-jwt-relay-original-offset";
/// Header with the timestamp of a dead-lettered record, in Unix
/// milliseconds, followed by who set it: `1700000000000 create-time` or
/// `… log-append-time`.
pub const ORIGINAL_TIMESTAMP: &str = "x-jwt-relay-original-timestamp";

/// The reason headers, in this order.
const REASONS: [&str; 4] = [REASON_KIND, REASON_CLASS, REASON_MESSAGE, REASON_TIME];

/// Whether an original header named `name` stays in the dead-lettered copy:
/// not the token header (in any casing) unless `keep_token`, and not an
/// earlier reason header (replaced by [`reason_headers`]). A carrier with
/// typed values (AMQP) filters on this and keeps each value as it is.
pub fn keep_in_dead_letter(name: &str, token_header: &TokenHeader, keep_token: bool) -> bool {
    (keep_token || !name.eq_ignore_ascii_case(token_header.name()))
        && !REASONS.iter().any(|r| name.eq_ignore_ascii_case(r))
}

/// The reason headers of a dead-lettered copy: [`REASON_KIND`],
/// [`REASON_CLASS`], [`REASON_MESSAGE`] (escaped to printable ASCII, so every
/// broker can carry it) and [`REASON_TIME`] (`now`, in Unix seconds).
pub fn reason_headers(reason: &Error, now: SystemTime) -> [(&'static str, String); 4] {
    let message: String = reason.message().chars().flat_map(char::escape_default).collect();
    [
        (REASON_KIND, reason.kind().as_str().to_owned()),
        (REASON_CLASS, reason.class().as_str().to_owned()),
        (REASON_MESSAGE, message),
        (REASON_TIME, unix_seconds(now).to_string()),
    ]
}

/// The headers of a dead-lettered copy: the original ones in order, minus
/// the token header (in any casing) unless `keep_token`, minus earlier
/// reason headers, plus the reason ([`keep_in_dead_letter`], then
/// [`reason_headers`]). Every added value is printable ASCII, so every
/// broker can carry it.
pub fn dead_letter_headers<'a>(
    original: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    reason: &Error,
    token_header: &TokenHeader,
    keep_token: bool,
    now: SystemTime,
) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = original
        .into_iter()
        .filter(|(name, _)| keep_in_dead_letter(name, token_header, keep_token))
        .map(|(name, value)| (name.to_owned(), value.to_vec()))
        .collect();
    out.extend(
        reason_headers(reason, now)
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.into_bytes())),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn drops_the_token_keeps_the_rest_adds_the_reason() {
        let original: Vec<(&str, &[u8])> = vec![
            ("authorization", b"Bearer secret.token.value"),
            ("x-order", b"42"),
            (REASON_KIND, b"old"),
        ];
        let reason = Error::new(ErrorKind::BadSignature, "key `k1` says no… é");
        let headers = dead_letter_headers(
            original.clone(),
            &reason,
            &TokenHeader::default(),
            false,
            SystemTime::UNIX_EPOCH,
        );
        let names: Vec<_> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["x-order", REASON_KIND, REASON_CLASS, REASON_MESSAGE, REASON_TIME]
        );
        assert_eq!(headers[1].1, b"BadSignature");
        assert_eq!(headers[2].1, b"permanent");
        assert!(headers.iter().all(|(_, v)| !v.windows(6).any(|w| w == b"secret")));
        assert!(
            headers
                .iter()
                .skip(1)
                .all(|(_, v)| v.iter().all(|b| (0x20..0x7f).contains(b)))
        );
        let kept = dead_letter_headers(
            original,
            &reason,
            &TokenHeader::default(),
            true,
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(kept[0].0, "authorization");
    }

    #[test]
    fn typed_carriers_filter_names_and_add_the_reason_themselves() {
        let token_header = TokenHeader::default();
        assert!(!keep_in_dead_letter("AUTHORIZATION", &token_header, false));
        assert!(keep_in_dead_letter("AUTHORIZATION", &token_header, true));
        assert!(!keep_in_dead_letter(
            "X-JWT-Relay-Reason-Kind",
            &token_header,
            true
        ));
        assert!(keep_in_dead_letter("x-order", &token_header, false));
        let reason = Error::new(ErrorKind::Handler, "line\nbreak");
        let reasons = reason_headers(&reason, SystemTime::UNIX_EPOCH);
        let names: Vec<_> = reasons.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, [REASON_KIND, REASON_CLASS, REASON_MESSAGE, REASON_TIME]);
        assert_eq!(reasons[0].1, "Handler");
        assert_eq!(reasons[2].1, "line\\nbreak");
        assert_eq!(reasons[3].1, "0");
    }
}
