//! Where the token travels: the [`TokenHeader`] that carries it, and header access through the
//! two small traits every broker adapter implements.

pub(crate) mod token_header;

pub use token_header::TokenHeader;

use std::fmt;

/// A header value as a broker holds it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum HeaderValue<'a> {
    /// The value's bytes (Kafka values, NATS values, AMQP `LongString` and
    /// `ShortString`).
    Bytes(&'a [u8]),
    /// A header without a value (a Kafka header whose value is null).
    Null,
    /// A value of a type that cannot hold a token (an AMQP integer, table,
    /// …), named for the error message.
    Other(&'static str),
}

impl fmt::Debug for HeaderValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderValue::Bytes(b) => write!(f, "Bytes([redacted; {} bytes])", b.len()),
            HeaderValue::Null => f.write_str("Null"),
            HeaderValue::Other(t) => write!(f, "Other({t})"),
        }
    }
}

/// Writes headers into a message. Shaped like OpenTelemetry's `Injector`,
/// but a failed write is an error, never a silent skip.
pub trait Injector {
    /// Sets `name` to `value`, replacing any header of that name.
    fn set(&mut self, name: &str, value: &str) -> Result<(), InjectError>;
}

/// Reads headers from a message. Shaped like OpenTelemetry's `Extractor`.
pub trait Extractor {
    /// Every value of every header whose name equals `name` ignoring ASCII
    /// case, in message order. Empty when there is none.
    fn get_all(&self, name: &str) -> Vec<HeaderValue<'_>>;
}

/// A header could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectError {
    header: String,
    reason: String,
}

impl InjectError {
    /// The header `header` could not be written, because of `reason`.
    pub fn new(header: impl Into<String>, reason: impl Into<String>) -> Self {
        InjectError {
            header: header.into(),
            reason: reason.into(),
        }
    }

    /// The name of the header that could not be written.
    pub fn header(&self) -> &str {
        &self.header
    }
}

impl fmt::Display for InjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write header `{}`: {}", self.header, self.reason)
    }
}

impl std::error::Error for InjectError {}

/// An in-memory, ordered header list whose names may repeat, as Kafka's and
/// NATS's are. For tests and the in-memory transport.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, Vec<u8>)>,
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers::default()
    }

    /// Appends a header, keeping any of the same name.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.entries.push((name.into(), value.into()));
    }

    /// Removes every header whose name equals `name` ignoring ASCII case.
    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// The first value of `name` (ignoring ASCII case), if any.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// All headers in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The number of headers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Debug for Headers {
    /// Names only: a value may be a token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(n, _)| n))
            .finish()
    }
}

impl Injector for Headers {
    fn set(&mut self, name: &str, value: &str) -> Result<(), InjectError> {
        self.remove(name);
        self.append(name, value);
        Ok(())
    }
}

impl Extractor for Headers {
    fn get_all(&self, name: &str) -> Vec<HeaderValue<'_>> {
        self.entries
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| HeaderValue::Bytes(v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_every_casing() {
        let mut h = Headers::new();
        h.append("authorization", "a");
        h.append("AUTHORIZATION", "b");
        h.append("x-other", "c");
        h.set("Authorization", "Bearer t").unwrap();
        assert_eq!(h.get_all("authorization"), vec![HeaderValue::Bytes(b"Bearer t")]);
        assert_eq!(h.get("x-other"), Some(&b"c"[..]));
    }

    #[test]
    fn debug_shows_names_only() {
        let mut h = Headers::new();
        h.append("Authorization", "Bearer secret-token");
        let shown = format!("{h:?}");
        assert!(shown.contains("Authorization"));
        assert!(!shown.contains("secret-token"));
    }
}
