//! Kafka record headers as jwt-relay carriers.
//!
//! # The Kafka header rules
//!
//! Kafka headers are an ordered list of (name, bytes-or-null) pairs whose names may repeat.
//!
//! - **Written** ([`set_token`] through the producer): the token header once, after every header
//!   the caller set, replacing any header whose name differs from it only in ASCII case.
//! - **Read** ([`KafkaHeaders`]): the name matches in any ASCII case. Two values (one name
//!   repeated, or two casings) are two token headers: rejected (`DuplicateHeader`), never "first
//!   wins". A null value is a header without a value (`EmptyToken`); a value that is not ASCII
//!   is rejected (`NonAscii`).

use std::fmt;

use jwt_relay::carrier::{Extractor, HeaderValue, InjectError, Injector};
use rdkafka::message::{Header, Headers, OwnedHeaders};

/// Reads a record's headers: an [`Extractor`] over anything implementing rdkafka's [`Headers`]
/// ([`OwnedHeaders`], [`BorrowedHeaders`](rdkafka::message::BorrowedHeaders)), following
/// [the Kafka header rules](crate#the-kafka-header-rules).
///
/// ```
/// use jwt_relay::carrier::Extractor as _;
/// use jwt_relay_kafka::KafkaHeaders;
/// use jwt_relay_kafka::rdkafka::message::{Header, OwnedHeaders};
///
/// let headers = OwnedHeaders::new()
///     .insert(Header { key: "authorization", value: Some("Bearer a") })
///     .insert(Header { key: "Authorization", value: Some("Bearer b") });
/// assert_eq!(KafkaHeaders::new(Some(&headers)).get_all("Authorization").len(), 2);
/// ```
pub struct KafkaHeaders<'a, H: Headers>(Option<&'a H>);

impl<'a, H: Headers> KafkaHeaders<'a, H> {
    /// Reads `headers` (a record may have none).
    pub fn new(headers: Option<&'a H>) -> Self {
        KafkaHeaders(headers)
    }
}

impl<H: Headers> fmt::Debug for KafkaHeaders<'_, H> {
    /// Names only: a value may be a token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.0.into_iter().flat_map(|h| h.iter()).map(|h| h.key);
        f.debug_list().entries(names).finish()
    }
}

impl<H: Headers> Extractor for KafkaHeaders<'_, H> {
    fn get_all(&self, name: &str) -> Vec<HeaderValue<'_>> {
        self.0
            .into_iter()
            .flat_map(|h| h.iter())
            .filter(|h| h.key.eq_ignore_ascii_case(name))
            .map(|h| h.value.map_or(HeaderValue::Null, HeaderValue::Bytes))
            .collect()
    }
}

/// Writes the token header into a record's headers: an [`Injector`] that rebuilds the list
/// without any other casing of the name and appends the token last.
#[derive(Default)]
pub(crate) struct KafkaHeadersMut(Option<OwnedHeaders>);

impl KafkaHeadersMut {
    pub(crate) fn new(headers: Option<OwnedHeaders>) -> Self {
        KafkaHeadersMut(headers)
    }

    pub(crate) fn into_inner(self) -> Option<OwnedHeaders> {
        self.0
    }
}

impl fmt::Debug for KafkaHeadersMut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        KafkaHeaders::new(self.0.as_ref()).fmt(f)
    }
}

impl KafkaHeadersMut {
    /// Removes every header named `name` in any ASCII case (none left: no header list).
    pub(crate) fn remove(&mut self, name: &str) {
        let Some(old) = self.0.take() else { return };
        let mut out = OwnedHeaders::new_with_capacity(old.count());
        for header in old.iter().filter(|h| !h.key.eq_ignore_ascii_case(name)) {
            out = out.insert(header);
        }
        self.0 = (out.count() > 0).then_some(out);
    }
}

impl Injector for KafkaHeadersMut {
    fn set(&mut self, name: &str, value: &str) -> Result<(), InjectError> {
        if name.is_empty() || name.contains('\0') {
            return Err(InjectError::new(
                name,
                "a Kafka header name is non-empty and has no NUL byte",
            ));
        }
        self.remove(name);
        let out = self
            .0
            .take()
            .unwrap_or_else(|| OwnedHeaders::new_with_capacity(1));
        self.0 = Some(out.insert(Header {
            key: name,
            value: Some(value),
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn names(headers: &OwnedHeaders) -> Vec<String> {
        headers.iter().map(|h| h.key.to_owned()).collect()
    }

    #[test]
    fn the_token_replaces_other_casings_and_keeps_the_rest_in_order() {
        let user = OwnedHeaders::new()
            .insert(Header {
                key: "x-order",
                value: Some("1"),
            })
            .insert(Header {
                key: "AUTHORIZATION",
                value: Some("Bearer old"),
            })
            .insert(Header::<&str> {
                key: "x-null",
                value: None,
            })
            .insert(Header {
                key: "x-order",
                value: Some("2"),
            });
        let mut carrier = KafkaHeadersMut::new(Some(user));
        carrier.set("Authorization", "Bearer new").unwrap();
        let out = carrier.into_inner().unwrap();
        assert_eq!(names(&out), ["x-order", "x-null", "x-order", "Authorization"]);
        let read = KafkaHeaders::new(Some(&out));
        assert_eq!(
            read.get_all("authorization"),
            vec![HeaderValue::Bytes(b"Bearer new")]
        );
        assert_eq!(read.get_all("x-null"), vec![HeaderValue::Null]);
        assert_eq!(read.get_all("X-Order").len(), 2);
    }

    #[test]
    fn no_headers_reads_as_none_and_debug_shows_names_only() {
        let none = KafkaHeaders::<OwnedHeaders>::new(None);
        assert!(none.get_all("Authorization").is_empty());
        let headers = OwnedHeaders::new().insert(Header {
            key: "Authorization",
            value: Some("Bearer s3cret"),
        });
        let shown = format!("{:?}", KafkaHeaders::new(Some(&headers)));
        assert!(
            shown.contains("Authorization") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn remove_drops_every_casing_and_keeps_the_rest() {
        let user = OwnedHeaders::new()
            .insert(Header {
                key: "authorization",
                value: Some("Bearer copied"),
            })
            .insert(Header {
                key: "x-order",
                value: Some("1"),
            });
        let mut carrier = KafkaHeadersMut::new(Some(user));
        carrier.remove("Authorization");
        assert_eq!(names(&carrier.into_inner().unwrap()), ["x-order"]);
        let only_token = OwnedHeaders::new().insert(Header {
            key: "AUTHORIZATION",
            value: Some("x"),
        });
        let mut carrier = KafkaHeadersMut::new(Some(only_token));
        carrier.remove("authorization");
        assert!(carrier.into_inner().is_none());
    }

    #[test]
    fn a_bad_name_is_an_error() {
        assert!(KafkaHeadersMut::default().set("", "x").is_err());
        assert!(KafkaHeadersMut::default().set("a\0b", "x").is_err());
    }
}
