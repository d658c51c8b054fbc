//! The token's claims: the registered ones typed, and all of them kept.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Result, quote};

/// The verified claims of a token. Registered claims are type-checked when
/// the token is verified: a numeric `aud` or an object `iss` is an error.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    iss: String,
    sub: Option<String>,
    aud: Vec<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    jti: Option<String>,
    all: Map<String, Value>,
}

impl Claims {
    pub(crate) fn parse(all: Map<String, Value>) -> Result<Claims> {
        let iss = match all.get("iss") {
            Some(Value::String(iss)) => iss.clone(),
            Some(_) => {
                return Err(Error::new(
                    ErrorKind::InvalidIssuer,
                    "the `iss` claim is not a string",
                ));
            }
            None => {
                return Err(Error::new(
                    ErrorKind::InvalidIssuer,
                    "the token has no `iss` claim",
                ));
            }
        };
        let aud = match all.get("aud") {
            None => Vec::new(),
            Some(Value::String(aud)) => vec![aud.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .map(|a| a.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidAudience,
                        "the `aud` claim holds a value that is not a string",
                    )
                })?,
            Some(_) => {
                return Err(Error::new(
                    ErrorKind::InvalidAudience,
                    "the `aud` claim is neither a string nor an array of strings",
                ));
            }
        };
        Ok(Claims {
            sub: string_claim(&all, "sub")?,
            jti: string_claim(&all, "jti")?,
            exp: numeric_date(&all, "exp")?,
            nbf: numeric_date(&all, "nbf")?,
            iat: numeric_date(&all, "iat")?,
            iss,
            aud,
            all,
        })
    }

    /// `iss`: the issuer.
    pub fn issuer(&self) -> &str {
        &self.iss
    }

    /// `sub`: the subject, usually the end user.
    pub fn subject(&self) -> Option<&str> {
        self.sub.as_deref()
    }

    /// `aud`: the audiences, as a list even when the token holds one string.
    pub fn audience(&self) -> &[String] {
        &self.aud
    }

    /// `exp`, in Unix seconds.
    pub fn expires_at(&self) -> Option<i64> {
        self.exp
    }

    /// `nbf`, in Unix seconds.
    pub fn not_before(&self) -> Option<i64> {
        self.nbf
    }

    /// `iat`, in Unix seconds.
    pub fn issued_at(&self) -> Option<i64> {
        self.iat
    }

    /// `jti`: the token's identifier.
    pub fn token_id(&self) -> Option<&str> {
        self.jti.as_deref()
    }

    /// One claim by name, as JSON.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.all.get(name)
    }

    /// Every claim, as JSON.
    pub fn all(&self) -> &Map<String, Value> {
        &self.all
    }

    /// The claim set deserialised into the caller's own type.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(&Value::Object(self.all.clone())).map_err(|e| {
            Error::new(
                ErrorKind::InvalidClaim,
                format!("the claims do not fit the requested type: {e}"),
            )
        })
    }
}

fn string_claim(all: &Map<String, Value>, name: &str) -> Result<Option<String>> {
    match all.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::new(
            ErrorKind::InvalidClaim,
            format!("the `{name}` claim is not a string"),
        )),
    }
}

/// A NumericDate (RFC 7519 §2): a JSON number of seconds, possibly
/// fractional, kept as whole seconds. A string, a boolean or a number out
/// of range is an error.
fn numeric_date(all: &Map<String, Value>, name: &str) -> Result<Option<i64>> {
    let Some(value) = all.get(name) else {
        return Ok(None);
    };
    let seconds = match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                .map(|f| f.floor() as i64)
        }),
        _ => None,
    };
    seconds.map(Some).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidClaim,
            format!("the {} claim is not a NumericDate", quote(name)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Claims> {
        match v {
            Value::Object(map) => Claims::parse(map),
            _ => unreachable!(),
        }
    }

    #[test]
    fn typed_registered_claims() {
        let c = parse(
            json!({"iss":"i","sub":"alice","aud":["a","b"],"exp":10,"nbf":1.9,"iat":1,"extra":{"x":1}}),
        )
        .unwrap();
        assert_eq!(c.issuer(), "i");
        assert_eq!(c.subject(), Some("alice"));
        assert_eq!(c.audience(), ["a", "b"]);
        assert_eq!(
            (c.expires_at(), c.not_before(), c.issued_at()),
            (Some(10), Some(1), Some(1))
        );
        assert_eq!(c.get("extra"), Some(&json!({"x":1})));
        assert_eq!(parse(json!({"iss":"i","aud":"a"})).unwrap().audience(), ["a"]);
    }

    #[test]
    fn type_confusion_is_an_error() {
        let kind = |v| parse(v).unwrap_err().kind();
        assert_eq!(kind(json!({"iss":{"a":1}})), ErrorKind::InvalidIssuer);
        assert_eq!(kind(json!({"aud":"a"})), ErrorKind::InvalidIssuer);
        assert_eq!(kind(json!({"iss":"i","aud":7})), ErrorKind::InvalidAudience);
        assert_eq!(kind(json!({"iss":"i","aud":["a",7]})), ErrorKind::InvalidAudience);
        assert_eq!(
            kind(json!({"iss":"i","exp":"1700000000"})),
            ErrorKind::InvalidClaim
        );
        assert_eq!(kind(json!({"iss":"i","nbf":true})), ErrorKind::InvalidClaim);
        assert_eq!(kind(json!({"iss":"i","iat":1e300})), ErrorKind::InvalidClaim);
        assert_eq!(kind(json!({"iss":"i","sub":5})), ErrorKind::InvalidClaim);
    }

    #[test]
    fn deserialize_into_user_type() {
        #[derive(serde::Deserialize)]
        struct Mine {
            tenant: String,
        }
        let c = parse(json!({"iss":"i","tenant":"acme"})).unwrap();
        assert_eq!(c.deserialize::<Mine>().unwrap().tenant, "acme");
        assert_eq!(
            c.deserialize::<Vec<u8>>().unwrap_err().kind(),
            ErrorKind::InvalidClaim
        );
    }
}
