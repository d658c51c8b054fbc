//! NATS headers as jwt-relay carriers.
//!
//! The rules of NATS headers, and what jwt-relay does with them:
//!
//! - **Names are case-sensitive** on the wire and in [`HeaderMap`]
//!   (`Authorization` and `authorization` are two headers). jwt-relay matches
//!   the token header in *any* casing, so a second copy in another casing
//!   cannot hide behind the first.
//! - **Names may repeat**, and one name may hold several values. A token
//!   header present more than once, in one casing or several, is rejected
//!   (`ErrorKind::DuplicateHeader`), never "first wins".
//! - **Values are text without CR or LF**; jwt-relay writes only printable
//!   ASCII (`0x20..=0x7E`) and reads the token only if it is ASCII.
//! - Writing the token replaces every header of that name in any casing, so a
//!   published message carries it exactly once.
//!
//! Writing never panics: names and values are validated first (async-nats's
//! `insert` with a `&str` would panic on a bad one) and a bad one is an
//! [`InjectError`].

use std::fmt;
use std::str::FromStr as _;

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use jwt_relay::carrier::{Extractor, InjectError, Injector};

/// A mutable NATS header map as a jwt-relay carrier: the token is written
/// into it on publish, and read from it on consume.
///
/// ```
/// use jwt_relay::TokenHeader;
/// use jwt_relay::carrier::Injector as _;
/// use jwt_relay_nats::NatsHeaders;
///
/// let mut headers = async_nats::HeaderMap::new();
/// headers.insert("authorization", "Bearer stale");
/// TokenHeader::default().inject(&mut NatsHeaders(&mut headers), "a.b.c")?;
/// assert!(headers.get("authorization").is_none());
/// assert_eq!(headers.get("Authorization").map(|v| v.as_str()), Some("Bearer a.b.c"));
/// # Ok::<(), jwt_relay::carrier::InjectError>(())
/// ```
pub struct NatsHeaders<'a>(pub &'a mut HeaderMap);

/// A read-only view of a message's headers (possibly none) as a jwt-relay
/// [`Extractor`].
#[derive(Clone, Copy)]
pub struct NatsHeadersRef<'a>(Option<&'a HeaderMap>);

impl<'a> NatsHeadersRef<'a> {
    /// Reads from `headers`.
    pub fn new(headers: &'a HeaderMap) -> Self {
        NatsHeadersRef(Some(headers))
    }

    /// Reads the headers of `message` (a message without headers has none).
    pub fn of(message: &'a async_nats::Message) -> Self {
        NatsHeadersRef(message.headers.as_ref())
    }
}

impl Injector for NatsHeaders<'_> {
    fn set(&mut self, name: &str, value: &str) -> Result<(), InjectError> {
        let header =
            HeaderName::from_str(name).map_err(|_| InjectError::new(name, "not a valid NATS header name"))?;
        if !is_printable_ascii(value) {
            return Err(InjectError::new(name, "the value is not printable ASCII"));
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| InjectError::new(name, "not a valid NATS header value"))?;
        remove_any_casing(self.0, name);
        self.0.insert(header, value);
        Ok(())
    }
}

impl Extractor for NatsHeaders<'_> {
    fn get_all(&self, name: &str) -> Vec<jwt_relay::carrier::HeaderValue<'_>> {
        values_any_casing(Some(self.0), name)
    }
}

impl Extractor for NatsHeadersRef<'_> {
    fn get_all(&self, name: &str) -> Vec<jwt_relay::carrier::HeaderValue<'_>> {
        values_any_casing(self.0, name)
    }
}

impl fmt::Debug for NatsHeaders<'_> {
    /// Names only: a value may be a token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_names(Some(self.0), f)
    }
}

impl fmt::Debug for NatsHeadersRef<'_> {
    /// Names only: a value may be a token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_names(self.0, f)
    }
}

/// Every header as `(name, value)`, one pair per value. The order of
/// different names is the map's (unspecified); values of one name keep theirs.
pub(crate) fn pairs(headers: Option<&HeaderMap>) -> impl Iterator<Item = (&str, &[u8])> {
    headers.into_iter().flat_map(|map| {
        map.iter().flat_map(|(name, values)| {
            let name: &str = name.as_ref();
            values.iter().map(move |v| (name, v.as_str().as_bytes()))
        })
    })
}

/// A header map holding `pairs`, skipping (with a warning naming it) any
/// pair NATS cannot carry: a bad name, or a value that is not text without
/// CR or LF.
pub(crate) fn to_header_map(pairs: impl IntoIterator<Item = (String, Vec<u8>)>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let parsed = HeaderName::from_str(&name).ok().zip(
            std::str::from_utf8(&value)
                .ok()
                .and_then(|v| HeaderValue::from_str(v).ok()),
        );
        match parsed {
            Some((name, value)) => map.append(name, value),
            None => tracing::warn!(header = %name.escape_default(), "header dropped: NATS cannot carry it"),
        }
    }
    map
}

/// Whether `map` has a header named `name` in any casing.
pub(crate) fn contains_any_casing(map: &HeaderMap, name: &str) -> bool {
    map.iter()
        .any(|(n, _)| AsRef::<str>::as_ref(n).eq_ignore_ascii_case(name))
}

fn is_printable_ascii(value: &str) -> bool {
    // Each chunk is checked without stopping early, so that the compiler can check its bytes
    // side by side: a token is checked on every publish.
    value.as_bytes().chunks(32).all(|chunk| {
        chunk
            .iter()
            .fold(true, |printable, &b| printable & (0x20..=0x7e).contains(&b))
    })
}

fn values_any_casing<'a>(map: Option<&'a HeaderMap>, name: &str) -> Vec<jwt_relay::carrier::HeaderValue<'a>> {
    pairs(map)
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| jwt_relay::carrier::HeaderValue::Bytes(v))
        .collect()
}

/// Removes every header whose name equals `name` ignoring ASCII case
/// ([`HeaderMap`] has no `remove`: the map is rebuilt, only when needed).
pub(crate) fn remove_any_casing(map: &mut HeaderMap, name: &str) {
    if !contains_any_casing(map, name) {
        return;
    }
    let mut kept = HeaderMap::new();
    for (n, values) in map.iter() {
        if AsRef::<str>::as_ref(n).eq_ignore_ascii_case(name) {
            continue;
        }
        for v in values {
            kept.append(n.clone(), v.clone());
        }
    }
    *map = kept;
}

fn debug_names(map: Option<&HeaderMap>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.debug_list().entries(pairs(map).map(|(n, _)| n)).finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_relay::{ErrorKind, TokenHeader};

    fn extract(map: &HeaderMap) -> jwt_relay::Result<String> {
        TokenHeader::default()
            .extract(&NatsHeadersRef::new(map), 8192)
            .map(str::to_owned)
    }

    #[test]
    fn writes_the_token_once_replacing_every_casing() {
        let mut map = HeaderMap::new();
        map.append("authorization", "Bearer old");
        map.append("AUTHORIZATION", "Bearer older");
        map.append("x-order", "1");
        map.append("x-order", "2");
        TokenHeader::default()
            .inject(&mut NatsHeaders(&mut map), "a.b.c")
            .unwrap();
        let names: Vec<_> = pairs(Some(&map)).map(|(n, _)| n.to_owned()).collect();
        assert_eq!(
            names
                .iter()
                .filter(|n| n.eq_ignore_ascii_case("authorization"))
                .count(),
            1
        );
        assert_eq!(map.get("Authorization").unwrap().as_str(), "Bearer a.b.c");
        let orders: Vec<_> = map.get_all("x-order").map(|v| v.as_str()).collect();
        assert_eq!(orders, ["1", "2"], "other headers keep their values and order");
        assert_eq!(extract(&map).unwrap(), "a.b.c");
    }

    #[test]
    fn names_are_case_sensitive_but_the_token_header_matches_any_casing() {
        let mut map = HeaderMap::new();
        map.insert("authorization", "Bearer a.b.c");
        assert!(
            map.get("Authorization").is_none(),
            "NATS names are case-sensitive"
        );
        assert_eq!(extract(&map).unwrap(), "a.b.c");
    }

    #[test]
    fn a_repeated_token_header_is_rejected_in_any_casing() {
        let mut same = HeaderMap::new();
        same.append("Authorization", "Bearer a.b.c");
        same.append("Authorization", "Bearer a.b.c");
        assert_eq!(extract(&same).unwrap_err().kind(), ErrorKind::DuplicateHeader);

        let mut cased = HeaderMap::new();
        cased.insert("Authorization", "Bearer a.b.c");
        cased.insert("authorization", "Bearer x.y.z");
        assert_eq!(extract(&cased).unwrap_err().kind(), ErrorKind::DuplicateHeader);
    }

    #[test]
    fn missing_headers_and_messages_without_headers() {
        assert_eq!(extract(&HeaderMap::new()).unwrap_err().kind(), ErrorKind::Missing);
        let none = NatsHeadersRef(None);
        let err = TokenHeader::default().extract(&none, 8192).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Missing);
    }

    #[test]
    fn non_ascii_values_are_refused_both_ways() {
        let mut map = HeaderMap::new();
        map.insert("Authorization", "Bearer é.b.c");
        assert_eq!(extract(&map).unwrap_err().kind(), ErrorKind::NonAscii);

        let mut out = HeaderMap::new();
        let mut carrier = NatsHeaders(&mut out);
        assert!(carrier.set("Authorization", "Bearer é").is_err());
        assert!(carrier.set("Authorization", "Bearer a\r\nX-Evil: 1").is_err());
        assert!(carrier.set("Authorization", "Bearer a\tb").is_err());
        let long = "a".repeat(100);
        for bad in ['\n', '\u{7f}', '\u{1f}'] {
            for at in [0, 31, 32, 63, 99] {
                let mut value = long.clone();
                value.replace_range(at..=at, &bad.to_string());
                assert!(carrier.set("Authorization", &value).is_err(), "{bad:?} at {at}");
            }
        }
        assert!(carrier.set("Bad Name", "v").is_err());
        assert!(carrier.set("Bad:Name", "v").is_err());
        assert!(out.is_empty(), "a refused write leaves the map untouched");
        assert!(
            NatsHeaders(&mut out).set("X-Long", &long).is_ok(),
            "a long printable value"
        );
    }

    #[test]
    fn debug_shows_names_only() {
        let mut map = HeaderMap::new();
        map.insert("Authorization", "Bearer secret.token.value");
        let shown = format!(
            "{:?} {:?}",
            NatsHeadersRef::new(&map),
            NatsHeaders(&mut map.clone())
        );
        assert!(shown.contains("Authorization"));
        assert!(!shown.contains("secret"));
    }

    #[test]
    fn to_header_map_keeps_repeats_and_skips_what_nats_cannot_carry() {
        let map = to_header_map(vec![
            ("x-a".to_owned(), b"1".to_vec()),
            ("x-a".to_owned(), b"2".to_vec()),
            ("bad name".to_owned(), b"3".to_vec()),
            ("x-b".to_owned(), b"line\r\nbreak".to_vec()),
            ("x-c".to_owned(), vec![0xff]),
        ]);
        let a: Vec<_> = map.get_all("x-a").map(|v| v.as_str()).collect();
        assert_eq!(a, ["1", "2"]);
        assert_eq!(pairs(Some(&map)).count(), 2);
    }
}
