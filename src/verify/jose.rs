//! The compact JWS: strict splitting, base64url and JSON, and the header's
//! hygiene checks (RFC 7515, RFC 8725). Nothing here trusts the token.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Result, quote};

/// The three parts of a compact JWS, still encoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Compact<'a> {
    pub(crate) header: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) signature: &'a str,
    /// `header.payload`, the bytes the signature covers.
    pub(crate) signing_input: &'a str,
}

pub(crate) fn split(token: &str) -> Result<Compact<'_>> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        let n = token.split('.').count();
        return Err(Error::new(
            ErrorKind::Malformed,
            format!("a compact JWS has 3 parts, this token has {n}"),
        ));
    };
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err(Error::new(ErrorKind::Malformed, "a part of the token is empty"));
    }
    let signing_input = &token[..header.len() + 1 + payload.len()];
    Ok(Compact {
        header,
        payload,
        signature,
        signing_input,
    })
}

/// Decodes base64url without padding, rejecting non-canonical encodings
/// (padding, stray bits in the last character, other alphabets).
pub(crate) fn decode_part(part: &str, what: &str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(part).map_err(|e| {
        Error::new(
            ErrorKind::Malformed,
            format!("the token's {what} is not canonical base64url"),
        )
        .with_source(e)
    })
}

/// Parses a JSON object, rejecting duplicate member names at any depth
/// (RFC 7515 §5.2 and RFC 8725 §3.4: a duplicate must not be "last wins").
pub(crate) fn parse_object(bytes: &[u8], what: &str) -> Result<Map<String, Value>> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| {
            Error::new(
                ErrorKind::Malformed,
                format!("the token's {what} is not valid JSON: {e}"),
            )
        })?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(Error::new(
            ErrorKind::Malformed,
            format!("the token's {what} is not a JSON object"),
        )),
    }
}

/// A `serde_json::Value` seed that refuses duplicate object keys.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate member {}",
                    quote(&key)
                )));
            }
            let value = map.next_value_seed(StrictValue)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// The protected header, after the checks that need no key.
#[derive(Debug, Clone)]
pub(crate) struct JoseHeader {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    pub(crate) typ: Option<String>,
}

/// Header parameters that point at keys or certificates. Trusting them lets
/// the token choose its own key (RFC 8725 §3.10); they are never fetched.
const FORBIDDEN: [&str; 4] = ["jku", "x5u", "jwk", "x5c"];

pub(crate) fn parse_header(part: &str) -> Result<JoseHeader> {
    let map = parse_object(&decode_part(part, "header")?, "header")?;
    let alg = match map.get("alg") {
        Some(Value::String(alg)) => parse_alg(alg)?,
        Some(_) => {
            return Err(Error::new(
                ErrorKind::Malformed,
                "the header's `alg` is not a string",
            ));
        }
        None => return Err(Error::new(ErrorKind::Malformed, "the header has no `alg`")),
    };
    if let Some(name) = FORBIDDEN.iter().find(|n| map.contains_key(**n)) {
        return Err(Error::new(
            ErrorKind::ForbiddenHeader,
            format!("the header carries `{name}`; keys are never taken from a token"),
        ));
    }
    if let Some(crit) = map.get("crit") {
        let names = match crit {
            Value::Array(names) if !names.is_empty() => names
                .iter()
                .take(5)
                .map(|n| n.as_str().map_or_else(|| quote(&n.to_string()), quote))
                .collect::<Vec<_>>()
                .join(", "),
            _ => "a malformed list".to_owned(),
        };
        return Err(Error::new(
            ErrorKind::CriticalHeader,
            format!("the header's `crit` names extensions not understood here: {names}"),
        ));
    }
    if let Some(cty) = map.get("cty") {
        match cty.as_str() {
            Some(c) if c.eq_ignore_ascii_case("JWT") || c.eq_ignore_ascii_case("application/jwt") => {
                return Err(Error::new(
                    ErrorKind::NestedToken,
                    "nested tokens (`cty: JWT`) are not accepted",
                ));
            }
            Some(_) => {}
            None => {
                return Err(Error::new(
                    ErrorKind::Malformed,
                    "the header's `cty` is not a string",
                ));
            }
        }
    }
    let kid = optional_string(&map, "kid")?;
    let typ = optional_string(&map, "typ")?;
    Ok(JoseHeader { alg, kid, typ })
}

fn optional_string(map: &Map<String, Value>, name: &str) -> Result<Option<String>> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::new(
            ErrorKind::Malformed,
            format!("the header's `{name}` is not a string"),
        )),
    }
}

/// An algorithm name from a token. `none`, in any casing, is refused by
/// name; so is anything jsonwebtoken does not implement.
pub(crate) fn parse_alg(alg: &str) -> Result<Algorithm> {
    if alg.eq_ignore_ascii_case("none") {
        return Err(Error::new(
            ErrorKind::UnsupportedAlgorithm,
            "unsigned tokens (`alg: none`) are never accepted",
        ));
    }
    alg.parse::<Algorithm>().map_err(|_| {
        Error::new(
            ErrorKind::UnsupportedAlgorithm,
            format!("algorithm {} is not supported", quote(alg)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn header_kind(json: &str) -> ErrorKind {
        parse_header(&b64(json)).unwrap_err().kind()
    }

    #[test]
    fn splits_three_parts_only() {
        assert!(split("a.b.c").is_ok());
        assert_eq!(split("a.b").unwrap_err().kind(), ErrorKind::Malformed);
        assert_eq!(split("a.b.c.d.e").unwrap_err().kind(), ErrorKind::Malformed);
        assert_eq!(split("a..c").unwrap_err().kind(), ErrorKind::Malformed);
        assert_eq!(split("a.b.c").unwrap().signing_input, "a.b");
    }

    #[test]
    fn base64url_must_be_canonical() {
        assert_eq!(decode_part("YQ", "x").unwrap(), b"a");
        // Padding, a non-zero stray bit, the standard alphabet.
        assert!(decode_part("YQ==", "x").is_err());
        assert!(decode_part("YR", "x").is_err());
        assert!(decode_part("a+b/", "x").is_err());
    }

    #[test]
    fn duplicate_members_are_rejected_at_any_depth() {
        assert!(parse_object(br#"{"a":1,"b":{"c":1}}"#, "payload").is_ok());
        let e = parse_object(br#"{"sub":"a","sub":"b"}"#, "payload").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Malformed);
        assert!(e.message().contains("duplicate member `sub`"), "{e}");
        assert!(parse_object(br#"{"x":[{"a":1,"a":2}]}"#, "payload").is_err());
        assert!(parse_object(br#"[1]"#, "payload").is_err());
        assert!(parse_object(br#"{"a":1} x"#, "payload").is_err());
    }

    #[test]
    fn header_hygiene() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            assert_eq!(
                header_kind(&format!(r#"{{"alg":"{alg}"}}"#)),
                ErrorKind::UnsupportedAlgorithm
            );
        }
        assert_eq!(header_kind(r#"{"alg":"HS1"}"#), ErrorKind::UnsupportedAlgorithm);
        assert_eq!(header_kind(r#"{"alg":"rs256"}"#), ErrorKind::UnsupportedAlgorithm);
        assert_eq!(header_kind(r#"{"typ":"JWT"}"#), ErrorKind::Malformed);
        assert_eq!(header_kind(r#"{"alg":256}"#), ErrorKind::Malformed);
        for p in ["jku", "x5u", "jwk", "x5c"] {
            assert_eq!(
                header_kind(&format!(r#"{{"alg":"RS256","{p}":"x"}}"#)),
                ErrorKind::ForbiddenHeader
            );
        }
        assert_eq!(
            header_kind(r#"{"alg":"RS256","crit":["exp"],"exp":1}"#),
            ErrorKind::CriticalHeader
        );
        assert_eq!(
            header_kind(r#"{"alg":"RS256","crit":[]}"#),
            ErrorKind::CriticalHeader
        );
        assert_eq!(
            header_kind(r#"{"alg":"RS256","cty":"jwt"}"#),
            ErrorKind::NestedToken
        );
        assert_eq!(header_kind(r#"{"alg":"RS256","kid":7}"#), ErrorKind::Malformed);
        assert_eq!(
            header_kind(r#"{"alg":"RS256","alg":"none"}"#),
            ErrorKind::Malformed
        );
        let h = parse_header(&b64(r#"{"alg":"ES256","kid":"k1","typ":"at+jwt"}"#)).unwrap();
        assert_eq!(
            (h.alg, h.kid.as_deref(), h.typ.as_deref()),
            (Algorithm::ES256, Some("k1"), Some("at+jwt"))
        );
    }
}
