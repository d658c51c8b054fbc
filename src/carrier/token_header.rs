//! Which header carries the token, and how it is read and written.

use crate::carrier::{Extractor, HeaderValue, InjectError, Injector};
use crate::error::{Error, ErrorKind, Result};

/// The header that carries the token: `Authorization: Bearer <jwt>` by
/// default, or any name with or without a scheme (for example `Txn-Token`
/// with no scheme, as in the OAuth Transaction Tokens draft).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHeader {
    name: String,
    scheme: Option<String>,
}

impl Default for TokenHeader {
    fn default() -> Self {
        TokenHeader::bearer("Authorization")
    }
}

impl TokenHeader {
    /// `name: Bearer <jwt>`.
    pub fn bearer(name: impl Into<String>) -> Self {
        TokenHeader {
            name: name.into(),
            scheme: Some("Bearer".to_owned()),
        }
    }

    /// `name: <jwt>`, with no scheme.
    pub fn raw(name: impl Into<String>) -> Self {
        TokenHeader {
            name: name.into(),
            scheme: None,
        }
    }

    /// `name: <scheme> <jwt>`.
    pub fn with_scheme(name: impl Into<String>, scheme: impl Into<String>) -> Self {
        TokenHeader {
            name: name.into(),
            scheme: Some(scheme.into()),
        }
    }

    /// The header's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scheme, if any.
    pub fn scheme(&self) -> Option<&str> {
        self.scheme.as_deref()
    }

    /// Writes `token` into the carrier, once.
    pub fn inject(&self, carrier: &mut dyn Injector, token: &str) -> Result<(), InjectError> {
        match &self.scheme {
            Some(scheme) => {
                // Written on every publish: one allocation of the right size, no formatting.
                let mut value = String::with_capacity(scheme.len() + 1 + token.len());
                value.push_str(scheme);
                value.push(' ');
                value.push_str(token);
                carrier.set(&self.name, &value)
            }
            None => carrier.set(&self.name, token),
        }
    }

    /// Reads the token from the carrier. The name matches in any ASCII
    /// casing; a header present twice, a null or non-string value, a
    /// non-ASCII value, another scheme, an empty value, or a value longer
    /// than `max_size` is an error of its own kind. Nothing is decoded here.
    pub fn extract<'a>(&self, carrier: &'a dyn Extractor, max_size: usize) -> Result<&'a str> {
        let name = &self.name;
        let bytes = match carrier.get_all(name).as_slice() {
            [] => {
                return Err(Error::new(ErrorKind::Missing, format!("no `{name}` header")));
            }
            [HeaderValue::Bytes(bytes)] => *bytes,
            [HeaderValue::Null] => {
                return Err(Error::new(
                    ErrorKind::EmptyToken,
                    format!("header `{name}` has no value"),
                ));
            }
            [HeaderValue::Other(ty)] => {
                return Err(Error::new(
                    ErrorKind::NonAscii,
                    format!("header `{name}` holds a value of type {ty}, not a string"),
                ));
            }
            many => {
                return Err(Error::new(
                    ErrorKind::DuplicateHeader,
                    format!("header `{name}` appears {} times", many.len()),
                ));
            }
        };
        // The scheme and one space, then the token: bounded before anything else.
        let limit = max_size + self.scheme.as_ref().map_or(0, |s| s.len() + 1);
        if bytes.len() > limit {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "header `{name}` is {} bytes, more than the {max_size} allowed",
                    bytes.len()
                ),
            ));
        }
        if !bytes.is_ascii() {
            return Err(Error::new(
                ErrorKind::NonAscii,
                format!("header `{name}` is not ASCII"),
            ));
        }
        let value = std::str::from_utf8(bytes).map_err(|e| {
            Error::new(ErrorKind::NonAscii, format!("header `{name}` is not ASCII")).with_source(e)
        })?;
        let token = match &self.scheme {
            None => value,
            Some(scheme) => strip_scheme(value, scheme).ok_or_else(|| {
                if value.trim().is_empty() {
                    Error::new(ErrorKind::EmptyToken, format!("header `{name}` is empty"))
                } else {
                    Error::new(
                        ErrorKind::InvalidScheme,
                        format!("header `{name}` does not use the `{scheme}` scheme"),
                    )
                }
            })?,
        };
        let token = token.trim_matches(' ');
        if token.is_empty() {
            return Err(Error::new(
                ErrorKind::EmptyToken,
                format!("header `{name}` holds no token"),
            ));
        }
        Ok(token)
    }
}

/// `value` without `scheme` and the spaces after it; the scheme matches in
/// any casing (RFC 9110 §11.1). `None` when the value has another scheme.
fn strip_scheme<'v>(value: &'v str, scheme: &str) -> Option<&'v str> {
    let head = value.get(..scheme.len())?;
    let rest = &value[scheme.len()..];
    if !head.eq_ignore_ascii_case(scheme) {
        return None;
    }
    if rest.is_empty() {
        return Some(rest);
    }
    rest.starts_with(' ').then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Headers;

    fn extract(h: &Headers) -> Result<&str> {
        TokenHeader::default().extract(h, 8192)
    }

    fn kind(h: &Headers) -> ErrorKind {
        extract(h).unwrap_err().kind()
    }

    fn with(name: &str, value: &[u8]) -> Headers {
        let mut h = Headers::new();
        h.append(name, value);
        h
    }

    #[test]
    fn reads_bearer_in_any_casing() {
        assert_eq!(extract(&with("Authorization", b"Bearer a.b.c")).unwrap(), "a.b.c");
        assert_eq!(extract(&with("authorization", b"bearer a.b.c")).unwrap(), "a.b.c");
        assert_eq!(
            extract(&with("AUTHORIZATION", b"BEARER  a.b.c")).unwrap(),
            "a.b.c"
        );
    }

    #[test]
    fn rejects_each_bad_shape_with_its_kind() {
        assert_eq!(kind(&Headers::new()), ErrorKind::Missing);
        assert_eq!(kind(&with("Authorization", b"")), ErrorKind::EmptyToken);
        assert_eq!(kind(&with("Authorization", b"Bearer ")), ErrorKind::EmptyToken);
        assert_eq!(kind(&with("Authorization", b"Bearer")), ErrorKind::EmptyToken);
        assert_eq!(
            kind(&with("Authorization", b"Basic dXNlcg==")),
            ErrorKind::InvalidScheme
        );
        assert_eq!(
            kind(&with("Authorization", b"Bearerx.y.z")),
            ErrorKind::InvalidScheme
        );
        assert_eq!(
            kind(&with("Authorization", "Bearer é.b.c".as_bytes())),
            ErrorKind::NonAscii
        );
        assert_eq!(
            kind(&with("Authorization", b"Bearer \xff\xfe")),
            ErrorKind::NonAscii
        );
        let mut twice = with("Authorization", b"Bearer a.b.c");
        twice.append("authorization", "Bearer a.b.c");
        assert_eq!(kind(&twice), ErrorKind::DuplicateHeader);
    }

    #[test]
    fn size_is_checked_before_anything_else() {
        let huge = vec![0xffu8; 1 << 20];
        assert_eq!(kind(&with("Authorization", &huge)), ErrorKind::TooLarge);
        let mut just = b"Bearer ".to_vec();
        just.extend(std::iter::repeat_n(b'a', 8192));
        assert!(extract(&with("Authorization", &just)).is_ok());
        just.push(b'a');
        assert_eq!(kind(&with("Authorization", &just)), ErrorKind::TooLarge);
    }

    #[test]
    fn raw_header_without_scheme() {
        let header = TokenHeader::raw("Txn-Token");
        let mut h = Headers::new();
        header.inject(&mut h, "a.b.c").unwrap();
        assert_eq!(h.get("txn-token"), Some(&b"a.b.c"[..]));
        assert_eq!(header.extract(&h, 100).unwrap(), "a.b.c");
    }

    #[test]
    fn inject_writes_once() {
        let mut h = with("authorization", b"Bearer old");
        TokenHeader::default().inject(&mut h, "new").unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(extract(&h).unwrap(), "new");
    }
}
