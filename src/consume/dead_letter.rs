//! What a dead-lettered copy carries: the payload and the other headers,
//! the reason, and no credential (no usable token unless the user opts in).

use std::sync::Arc;
use std::time::SystemTime;

use crate::carrier::Extractor;
use crate::carrier::token_header::TokenHeader;
use crate::consume::policy::TimestampSource;
use crate::consume::{Origin, Position};
use crate::error::{Error, ErrorKind};
use crate::verify::verifier::unix_seconds;

/// Header naming the error kind (`Expired`, `BadSignature`, …).
pub const REASON_KIND: &str = "x-jwt-relay-reason-kind";
/// Header naming the error class (`permanent`, …).
pub const REASON_CLASS: &str = "x-jwt-relay-reason-class";
/// Header with the error message (ASCII, never the token).
pub const REASON_MESSAGE: &str = "x-jwt-relay-reason-message";
/// Header with the time of dead-lettering, in Unix seconds.
pub const REASON_TIME: &str = "x-jwt-relay-dead-lettered-at";

/// Header naming what the consumer that dead-lettered the message reads: its
/// topic, queue, or subscribed subject.
pub const ORIGINAL_DESTINATION: &str = "x-jwt-relay-original-destination";
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
/// Header with the publish time of a dead-lettered message, in Unix
/// milliseconds, followed by who set it: `1700000000000 broker` (a JetStream
/// message, a Kafka record with log-append time) or `… client` (a Kafka
/// record's create time, an AMQP timestamp).
pub const ORIGINAL_TIMESTAMP: &str = "x-jwt-relay-original-timestamp";

/// The headers jwt-relay adds to a copy: the reason, then the origin.
const ADDED: [&str; 11] = [
    REASON_KIND,
    REASON_CLASS,
    REASON_MESSAGE,
    REASON_TIME,
    ORIGINAL_DESTINATION,
    ORIGINAL_SUBJECT,
    ORIGINAL_PARTITION,
    ORIGINAL_OFFSET,
    ORIGINAL_STREAM,
    ORIGINAL_SEQUENCE,
    ORIGINAL_TIMESTAMP,
];

/// Headers that carry credentials: left out of every dead-lettered copy, in
/// any casing, whatever the token header is ([`Redaction::credentials`]
/// replaces the list).
pub const CREDENTIAL_HEADERS: [&str; 5] = [
    "Authorization",
    "Proxy-Authorization",
    "X-Forwarded-Authorization",
    "Txn-Token",
    "Cookie",
];

/// The longest [`REASON_MESSAGE`], in bytes; a longer message is cut and
/// ends with `...`.
pub const MAX_REASON_MESSAGE: usize = 512;

/// What a dead-lettered copy leaves out: the token header (unless the user
/// keeps it), every credential header ([`CREDENTIAL_HEADERS`] by default),
/// and the reason and origin headers of an earlier copy (replaced by new ones). Names match
/// in any casing. A carrier with nested values (AMQP tables) applies it at
/// every level.
///
/// ```
/// use jwt_relay::TokenHeader;
/// use jwt_relay::consume::Redaction;
///
/// let redaction = Redaction::new(TokenHeader::raw("Txn-Token"));
/// assert!(!redaction.keeps("txn-token"));
/// assert!(!redaction.keeps("COOKIE"));
/// assert!(redaction.keeps("x-order-id"));
/// assert!(redaction.keep_token(true).keeps("Txn-Token"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    token_header: TokenHeader,
    keep_token: bool,
    credentials: Arc<[Box<str>]>,
}

impl Redaction {
    /// Leaves out `token_header` and the [`CREDENTIAL_HEADERS`].
    pub fn new(token_header: TokenHeader) -> Self {
        Redaction {
            token_header,
            keep_token: false,
            credentials: CREDENTIAL_HEADERS.iter().map(|&name| name.into()).collect(),
        }
    }

    /// Keeps the token header itself (off by default: dead letters are read
    /// by operators and tools). The other credential headers still go.
    pub fn keep_token(mut self, keep: bool) -> Self {
        self.keep_token = keep;
        self
    }

    /// Replaces the list of credential headers left out besides the token
    /// header.
    pub fn credentials(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.credentials = names
            .into_iter()
            .map(|name| name.into().into_boxed_str())
            .collect();
        self
    }

    /// Whether a header named `name` stays in the dead-lettered copy.
    pub fn keeps(&self, name: &str) -> bool {
        if name.eq_ignore_ascii_case(self.token_header.name()) {
            return self.keep_token;
        }
        !self.credentials.iter().any(|c| name.eq_ignore_ascii_case(c))
            && !ADDED.iter().any(|r| name.eq_ignore_ascii_case(r))
    }
}

/// The reason headers of a dead-lettered copy: [`REASON_KIND`],
/// [`REASON_CLASS`], [`REASON_MESSAGE`] (control characters dropped, other
/// non-ASCII escaped, at most [`MAX_REASON_MESSAGE`] bytes, so every broker
/// can carry it and a handler's error text cannot flood it) and
/// [`REASON_TIME`] (`now`, in Unix seconds).
pub fn reason_headers(reason: &Error, now: SystemTime) -> [(&'static str, String); 4] {
    [
        (REASON_KIND, reason.kind().as_str().to_owned()),
        (REASON_CLASS, reason.class().as_str().to_owned()),
        (REASON_MESSAGE, printable(reason.message())),
        (REASON_TIME, unix_seconds(now).to_string()),
    ]
}

/// `text` as printable ASCII of at most [`MAX_REASON_MESSAGE`] bytes: each
/// control character becomes a space, other non-ASCII is escaped (`\u{e9}`).
fn printable(text: &str) -> String {
    const CUT: &str = "...";
    let mut out = String::with_capacity(text.len().min(MAX_REASON_MESSAGE));
    for c in text.chars() {
        let start = out.len();
        match c {
            c if c.is_control() => out.push(' '),
            c if c.is_ascii() => out.push(c),
            c => out.extend(c.escape_default()),
        }
        if out.len() > MAX_REASON_MESSAGE {
            out.truncate(start.min(MAX_REASON_MESSAGE - CUT.len()));
            out.push_str(CUT);
            break;
        }
    }
    out
}

/// The headers of a dead-lettered copy: the original ones in order, minus
/// what `redaction` leaves out, plus the reason ([`reason_headers`]). Every
/// added value is printable ASCII, so every broker can carry it.
pub fn dead_letter_headers<'a>(
    original: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    reason: &Error,
    redaction: &Redaction,
    now: SystemTime,
) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = original
        .into_iter()
        .filter(|(name, _)| redaction.keeps(name))
        .map(|(name, value)| (name.to_owned(), value.to_vec()))
        .collect();
    out.extend(
        reason_headers(reason, now)
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.into_bytes())),
    );
    out
}

/// The reason headers, then the origin headers, of a copy of the message from `origin`
/// (see [`DeadLetterCopy::headers`](crate::consume::DeadLetterCopy::headers)).
pub(crate) fn copy_headers(
    reason: &Error,
    origin: &Origin<'_>,
    now: SystemTime,
) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = reason_headers(reason, now).into();
    out.extend(origin_headers(origin));
    out
}

/// The origin headers of a copy of the message from `origin`.
pub(crate) fn origin_headers(origin: &Origin<'_>) -> Vec<(&'static str, String)> {
    let mut out = Vec::with_capacity(5);
    out.push((ORIGINAL_DESTINATION, printable(origin.destination)));
    out.push((ORIGINAL_SUBJECT, printable(origin.subject)));
    match origin.position {
        Position::Offset { partition, offset } => {
            out.push((ORIGINAL_PARTITION, partition.to_string()));
            out.push((ORIGINAL_OFFSET, offset.to_string()));
        }
        Position::Sequence { stream, sequence, .. } => {
            out.push((ORIGINAL_STREAM, printable(stream)));
            out.push((ORIGINAL_SEQUENCE, sequence.to_string()));
        }
        _ => {}
    }
    if let Some(published) = origin.published {
        let ms = published
            .at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let by = match published.source {
            TimestampSource::Broker => "broker",
            TimestampSource::Client => "client",
        };
        out.push((ORIGINAL_TIMESTAMP, format!("{ms} {by}")));
    }
    out
}

/// Whether the message is already one of jwt-relay's dead-lettered copies
/// (it carries [`REASON_KIND`]): if so, the error to report instead of
/// dead-lettering it again ([`ErrorKind::AlreadyDeadLettered`]). A consumer
/// that reads its own dead letters (a dead-letter destination inside what
/// it consumes) settles such a message and counts it, and never copies it
/// again, so no loop can grow.
pub fn already_dead_lettered(headers: &dyn Extractor) -> Option<Error> {
    if headers.get_all(REASON_KIND).is_empty() {
        return None;
    }
    Some(Error::new(
        ErrorKind::AlreadyDeadLettered,
        "the message is already a dead-lettered copy (it has `x-jwt-relay-reason-kind`): settled, not \
         dead-lettered again; is the dead-letter destination inside what this consumer reads?",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Headers;

    fn redaction() -> Redaction {
        Redaction::new(TokenHeader::default())
    }

    #[test]
    fn drops_the_token_and_the_credentials_keeps_the_rest_adds_the_reason() {
        let original: Vec<(&str, &[u8])> = vec![
            ("authorization", b"Bearer secret.token.value"),
            ("x-order", b"42"),
            ("PROXY-Authorization", b"Basic c2VjcmV0"),
            ("x-forwarded-authorization", b"Bearer secret.other"),
            ("txn-token", b"secret.txn.token"),
            ("Cookie", b"session=secret"),
            (REASON_KIND, b"old"),
        ];
        let reason = Error::new(ErrorKind::BadSignature, "key `k1` says no… é");
        let headers = dead_letter_headers(original.clone(), &reason, &redaction(), SystemTime::UNIX_EPOCH);
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
            &redaction().keep_token(true),
            SystemTime::UNIX_EPOCH,
        );
        let names: Vec<_> = kept.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[..2], ["authorization", "x-order"], "only the token is kept");
    }

    #[test]
    fn the_credential_list_is_configurable() {
        let custom = redaction().credentials(["X-Api-Key"]);
        assert!(!custom.keeps("x-api-key"));
        assert!(custom.keeps("Cookie"), "replaced, not added to");
        assert!(!custom.keeps("Authorization"), "the token header always goes");
        let txn = Redaction::new(TokenHeader::raw("Txn-Token")).keep_token(true);
        assert!(txn.keeps("TXN-TOKEN"));
        assert!(
            !txn.keeps("authorization"),
            "a credential, though not the token header"
        );
    }

    #[test]
    fn typed_carriers_filter_names_and_add_the_reason_themselves() {
        assert!(!redaction().keeps("AUTHORIZATION"));
        assert!(redaction().keep_token(true).keeps("AUTHORIZATION"));
        assert!(!redaction().keep_token(true).keeps("X-JWT-Relay-Reason-Kind"));
        assert!(redaction().keeps("x-order"));
        let reason = Error::new(ErrorKind::Handler, "line\nbreak\u{1b}[31m\0");
        let reasons = reason_headers(&reason, SystemTime::UNIX_EPOCH);
        let names: Vec<_> = reasons.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, [REASON_KIND, REASON_CLASS, REASON_MESSAGE, REASON_TIME]);
        assert_eq!(reasons[0].1, "Handler");
        assert_eq!(reasons[2].1, "line break [31m ", "control characters dropped");
        assert_eq!(reasons[3].1, "0");
    }

    #[test]
    fn a_long_reason_is_cut_to_the_bound() {
        for text in ["x".repeat(10_000), "é".repeat(5_000), "\n".repeat(600)] {
            let reason = Error::new(ErrorKind::Handler, text.clone());
            let message = &reason_headers(&reason, SystemTime::UNIX_EPOCH)[2].1;
            assert!(message.len() <= MAX_REASON_MESSAGE, "{}", message.len());
            assert!(message.ends_with("..."), "{message}");
            assert!(message.bytes().all(|b| (0x20..0x7f).contains(&b)));
        }
        let exact = "y".repeat(MAX_REASON_MESSAGE);
        let reason = Error::new(ErrorKind::Handler, exact.clone());
        assert_eq!(reason_headers(&reason, SystemTime::UNIX_EPOCH)[2].1, exact);
    }

    #[test]
    fn a_copy_is_recognised_as_already_dead_lettered() {
        let mut headers = Headers::new();
        headers.append("x-order", "42");
        assert!(already_dead_lettered(&headers).is_none());
        headers.append("X-JWT-Relay-Reason-Kind", "Missing");
        let error = already_dead_lettered(&headers).map(|e| e.kind());
        assert_eq!(error, Some(ErrorKind::AlreadyDeadLettered));
    }
}
