//! AMQP headers as jwt-relay carriers.
//!
//! # The AMQP header rules
//!
//! The headers of an AMQP 0-9-1 message are a field table (`BasicProperties::headers`): names are
//! short strings (at most 255 bytes), unique as written by lapin (the table is a map), and every
//! value is typed.
//!
//! - **Written**: the token header is one `LongString` (`Authorization: Bearer <jwt>` by default),
//!   replacing any header whose name differs from it only in ASCII case. A name longer than 255
//!   bytes is an error, not a truncation.
//! - **Read**: the name matches in any ASCII case. A `LongString` value is taken as bytes (the
//!   core then requires ASCII); a `ShortString` value is accepted too, as some clients build
//!   tables holding one (RabbitMQ itself has no short-string field type on the wire: its `s` is a
//!   16-bit integer, so such a value only reaches a consumer through in-process tables). A
//!   `Void` value is a header without a value (`EmptyToken`); a value of any other type (an
//!   integer, a table, a byte array, …) is rejected (`NonAscii`, naming the type). Two names that
//!   differ only in case are two token headers: rejected (`DuplicateHeader`), never "first
//!   wins".
//! - An exact duplicate name cannot be observed: the AMQP parser keeps the last value of a name
//!   repeated on the wire, as RabbitMQ's own tables do.

use std::collections::BTreeMap;
use std::fmt;

use jwt_relay::carrier::{Extractor, HeaderValue, InjectError, Injector};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

/// Reads a message's AMQP headers: an [`Extractor`] over a borrowed [`FieldTable`].
///
/// # The AMQP header rules
///
/// - **Read**: the token header's name matches in any ASCII case. A `LongString` value is taken
///   as bytes (the core then requires ASCII); a `ShortString` value is accepted too, as some
///   clients build tables holding one (RabbitMQ has no short-string field type on the wire: its
///   `s` is a 16-bit integer). A `Void` value is an empty token; a value of any other type (an
///   integer, a table, a byte array, …) is rejected, naming the type. Two names that differ only
///   in case are two token headers: rejected (`DuplicateHeader`), never "first wins". An exact
///   duplicate name cannot be observed: the AMQP parser keeps the last value of a name repeated
///   on the wire.
/// - **Written** ([`AmqpHeadersMut`]): one `LongString`, replacing any header whose name differs
///   only in ASCII case; a name longer than 255 bytes is an error, not a truncation.
///
/// ```
/// use jwt_relay::carrier::Extractor as _;
/// use jwt_relay_rabbitmq::AmqpHeaders;
/// use jwt_relay_rabbitmq::lapin::types::{AMQPValue, FieldTable};
///
/// let mut table = FieldTable::default();
/// table.insert("authorization".into(), AMQPValue::LongString("Bearer t".into()));
/// assert_eq!(AmqpHeaders::new(&table).get_all("Authorization").len(), 1);
/// ```
#[derive(Clone, Copy)]
pub struct AmqpHeaders<'a>(&'a FieldTable);

impl<'a> AmqpHeaders<'a> {
    /// Reads `table`.
    pub fn new(table: &'a FieldTable) -> Self {
        AmqpHeaders(table)
    }
}

impl fmt::Debug for AmqpHeaders<'_> {
    /// Names only: a value may be a token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.inner().keys()).finish()
    }
}

impl Extractor for AmqpHeaders<'_> {
    fn get_all(&self, name: &str) -> Vec<HeaderValue<'_>> {
        self.0
            .inner()
            .iter()
            .filter(|(key, _)| key.as_str().eq_ignore_ascii_case(name))
            .map(|(_, value)| header_value(value))
            .collect()
    }
}

/// Writes a message's AMQP headers: an [`Injector`] over a borrowed [`FieldTable`], following
/// the rules on [`AmqpHeaders`].
///
/// ```
/// use jwt_relay::carrier::Injector as _;
/// use jwt_relay_rabbitmq::AmqpHeadersMut;
/// use jwt_relay_rabbitmq::lapin::types::{AMQPValue, FieldTable};
///
/// let mut table = FieldTable::default();
/// AmqpHeadersMut::new(&mut table).set("Authorization", "Bearer t")?;
/// assert!(matches!(table.inner().get("Authorization"), Some(AMQPValue::LongString(_))));
/// # Ok::<(), jwt_relay::carrier::InjectError>(())
/// ```
pub struct AmqpHeadersMut<'a>(&'a mut FieldTable);

impl<'a> AmqpHeadersMut<'a> {
    /// Writes into `table`.
    pub fn new(table: &'a mut FieldTable) -> Self {
        AmqpHeadersMut(table)
    }
}

impl fmt::Debug for AmqpHeadersMut<'_> {
    /// Names only: a value may be a token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.inner().keys()).finish()
    }
}

impl AmqpHeadersMut<'_> {
    /// Removes every header named `name` in any ASCII case.
    pub(crate) fn remove(&mut self, name: &str) {
        let present = self
            .0
            .inner()
            .keys()
            .any(|k| k.as_str().eq_ignore_ascii_case(name));
        if present {
            // FieldTable has no `remove`: rebuild it without them.
            let kept: BTreeMap<ShortString, AMQPValue> = self
                .0
                .inner()
                .iter()
                .filter(|(k, _)| !k.as_str().eq_ignore_ascii_case(name))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            *self.0 = FieldTable::from(kept);
        }
    }
}

impl Injector for AmqpHeadersMut<'_> {
    fn set(&mut self, name: &str, value: &str) -> Result<(), InjectError> {
        let key = ShortString::try_new(name)
            .map_err(|_| InjectError::new(name, "an AMQP header name is at most 255 bytes"))?;
        self.remove(name);
        self.0.insert(key, AMQPValue::LongString(LongString::from(value)));
        Ok(())
    }
}

/// A header value as the core sees it.
fn header_value(value: &AMQPValue) -> HeaderValue<'_> {
    match value {
        AMQPValue::LongString(s) => HeaderValue::Bytes(s.as_bytes()),
        AMQPValue::ShortString(s) => HeaderValue::Bytes(s.as_str().as_bytes()),
        AMQPValue::Void => HeaderValue::Null,
        other => HeaderValue::Other(type_name(other)),
    }
}

/// The AMQP type of a value, for error messages.
fn type_name(value: &AMQPValue) -> &'static str {
    match value {
        AMQPValue::Boolean(_) => "boolean",
        AMQPValue::ShortShortInt(_) => "short-short-int",
        AMQPValue::ShortShortUInt(_) => "short-short-uint",
        AMQPValue::ShortInt(_) => "short-int",
        AMQPValue::ShortUInt(_) => "short-uint",
        AMQPValue::LongInt(_) => "long-int",
        AMQPValue::LongUInt(_) => "long-uint",
        AMQPValue::LongLongInt(_) => "long-long-int",
        AMQPValue::Float(_) => "float",
        AMQPValue::Double(_) => "double",
        AMQPValue::DecimalValue(_) => "decimal",
        AMQPValue::ShortString(_) => "short-string",
        AMQPValue::LongString(_) => "long-string",
        AMQPValue::FieldArray(_) => "field-array",
        AMQPValue::Timestamp(_) => "timestamp",
        AMQPValue::FieldTable(_) => "field-table",
        AMQPValue::ByteArray(_) => "byte-array",
        AMQPValue::Void => "void",
    }
}

/// The bytes of a string-typed value (`LongString` or `ShortString`), for copying headers into
/// the core's byte-oriented helpers.
pub(crate) fn string_bytes(value: &AMQPValue) -> Option<&[u8]> {
    match value {
        AMQPValue::LongString(s) => Some(s.as_bytes()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes()),
        _ => None,
    }
}

/// A non-negative count kept in header `name` (exact name, as this crate writes it): any AMQP
/// integer type, or decimal digits in a string. Missing, negative or unreadable counts are 0,
/// and large ones saturate: a count only tunes backoff and retry limits.
pub(crate) fn read_count(table: Option<&FieldTable>, name: &str) -> u32 {
    let Some(value) = table.and_then(|t| t.inner().get(name)) else {
        return 0;
    };
    let wide: i128 = match value {
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => (*n).into(),
        other => string_bytes(other)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.trim().parse::<i128>().ok())
            .unwrap_or(0),
    };
    u32::try_from(wide.max(0)).unwrap_or(u32::MAX)
}

/// Sets header `name` to the count `value` (a long-long-int, which every client reads).
pub(crate) fn write_count(table: &mut FieldTable, name: &'static str, value: u32) {
    table.insert(ShortString::from(name), AMQPValue::LongLongInt(value.into()));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use jwt_relay::{ErrorKind, TokenHeader};
    use lapin::types::{FieldArray, ShortString};

    use super::*;

    fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in entries {
            t.insert(ShortString::from(*k), v.clone());
        }
        t
    }

    fn long(s: &str) -> AMQPValue {
        AMQPValue::LongString(s.into())
    }

    fn extract(t: &FieldTable) -> Result<String, ErrorKind> {
        TokenHeader::default()
            .extract(&AmqpHeaders::new(t), 8192)
            .map(str::to_owned)
            .map_err(|e| e.kind())
    }

    #[test]
    fn remove_drops_every_casing_and_keeps_the_rest() {
        let mut table = FieldTable::default();
        table.insert(
            "AUTHORIZATION".into(),
            AMQPValue::LongString("Bearer copied".into()),
        );
        table.insert("x-order".into(), AMQPValue::LongString("1".into()));
        AmqpHeadersMut::new(&mut table).remove("authorization");
        let names: Vec<&str> = table.inner().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-order"]);
    }

    #[test]
    fn long_string_in_any_casing_is_read() {
        for name in ["Authorization", "authorization", "AUTHORIZATION"] {
            let t = table(&[(name, long("Bearer abc.def.ghi")), ("x-other", long("1"))]);
            assert_eq!(extract(&t), Ok("abc.def.ghi".to_owned()), "{name}");
        }
    }

    #[test]
    fn short_string_is_read() {
        let t = table(&[(
            "Authorization",
            AMQPValue::ShortString(ShortString::from("Bearer abc.def.ghi")),
        )]);
        assert_eq!(extract(&t), Ok("abc.def.ghi".to_owned()));
    }

    #[test]
    fn other_types_are_rejected_and_named() {
        let cases = [
            AMQPValue::LongLongInt(7),
            AMQPValue::Boolean(true),
            AMQPValue::ByteArray(b"Bearer abc.def.ghi".to_vec().into()),
            AMQPValue::FieldArray(FieldArray::from(vec![long("Bearer abc.def.ghi")])),
            AMQPValue::FieldTable(table(&[("a", long("b"))])),
            AMQPValue::Timestamp(1),
        ];
        for value in cases {
            let t = table(&[("Authorization", value.clone())]);
            let err = TokenHeader::default()
                .extract(&AmqpHeaders::new(&t), 8192)
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NonAscii, "{value:?}");
            assert!(err.message().contains(type_name(&value)), "{}", err.message());
        }
    }

    #[test]
    fn void_is_an_empty_token() {
        let t = table(&[("Authorization", AMQPValue::Void)]);
        assert_eq!(extract(&t), Err(ErrorKind::EmptyToken));
    }

    #[test]
    fn two_casings_are_a_duplicate() {
        let t = table(&[
            ("Authorization", long("Bearer a.b.c")),
            ("authorization", long("Bearer a.b.c")),
        ]);
        assert_eq!(extract(&t), Err(ErrorKind::DuplicateHeader));
        let mixed = table(&[
            ("Authorization", long("Bearer a.b.c")),
            ("AUTHORIZATION", AMQPValue::LongLongInt(1)),
        ]);
        assert_eq!(extract(&mixed), Err(ErrorKind::DuplicateHeader));
    }

    #[test]
    fn missing_and_non_ascii() {
        assert_eq!(extract(&table(&[("x", long("y"))])), Err(ErrorKind::Missing));
        let t = table(&[(
            "Authorization",
            AMQPValue::LongString(b"Bearer \xff".to_vec().into()),
        )]);
        assert_eq!(extract(&t), Err(ErrorKind::NonAscii));
    }

    #[test]
    fn set_writes_one_long_string_and_replaces_every_casing() {
        let mut t = table(&[
            ("authorization", long("Bearer old")),
            ("AUTHORIZATION", AMQPValue::LongLongInt(3)),
            ("x-keep", long("kept")),
        ]);
        TokenHeader::default()
            .inject(&mut AmqpHeadersMut::new(&mut t), "new.token.value")
            .unwrap();
        let names: Vec<&str> = t.inner().keys().map(ShortString::as_str).collect();
        assert_eq!(names, ["Authorization", "x-keep"]);
        assert_eq!(
            t.inner().get("Authorization"),
            Some(&long("Bearer new.token.value"))
        );
        assert_eq!(extract(&t), Ok("new.token.value".to_owned()));
    }

    #[test]
    fn set_refuses_a_name_longer_than_a_short_string() {
        let mut t = FieldTable::default();
        let name = "x".repeat(256);
        let err = AmqpHeadersMut::new(&mut t).set(&name, "v").unwrap_err();
        assert!(err.to_string().contains("255 bytes"));
        assert!(t.inner().is_empty());
    }

    #[test]
    fn debug_shows_names_only() {
        let t = table(&[("Authorization", long("Bearer secret-token"))]);
        let shown = format!("{:?}", AmqpHeaders::new(&t));
        assert!(
            shown.contains("Authorization") && !shown.contains("secret-token"),
            "{shown}"
        );
        let mut t = t;
        let shown = format!("{:?}", AmqpHeadersMut::new(&mut t));
        assert!(!shown.contains("secret-token"), "{shown}");
    }

    #[test]
    fn counts_read_every_integer_type_and_saturate() {
        let t = table(&[
            ("a", AMQPValue::LongLongInt(3)),
            ("b", AMQPValue::ShortShortUInt(4)),
            ("c", long(" 5 ")),
            ("d", AMQPValue::LongLongInt(-2)),
            ("e", AMQPValue::LongLongInt(i64::MAX)),
            ("f", AMQPValue::Boolean(true)),
        ]);
        let read = |n| read_count(Some(&t), n);
        assert_eq!(
            [
                read("a"),
                read("b"),
                read("c"),
                read("d"),
                read("e"),
                read("f"),
                read("none")
            ],
            [3, 4, 5, 0, u32::MAX, 0, 0]
        );
        assert_eq!(read_count(None, "a"), 0);
        let mut t = t;
        write_count(&mut t, "a", 9);
        assert_eq!(read_count(Some(&t), "a"), 9);
    }
}
