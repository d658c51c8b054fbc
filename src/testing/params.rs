//! The parameters of a token request: an `application/x-www-form-urlencoded`
//! body read with RFC 6749 §3.1's rules.

use std::fmt;

use axum::http::{HeaderMap, header};

use super::oauth_error::OAuthError;

/// The request's parameters. Empty values count as absent (RFC 6749 §3.1).
/// `Debug` shows the names only: the values hold tokens and secrets.
pub(super) struct Params {
    pairs: Vec<(String, String)>,
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.pairs.iter().map(|(name, _)| name))
            .finish()
    }
}

impl Params {
    /// Reads a form body; any other content type is an `invalid_request`.
    pub(super) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Params, OAuthError> {
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
        if !form {
            return Err(OAuthError::invalid_request(
                "the token request must be application/x-www-form-urlencoded",
            ));
        }
        let pairs = url::form_urlencoded::parse(body)
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        Ok(Params { pairs })
    }

    /// A parameter that may appear at most once (RFC 6749 §3.1).
    pub(super) fn one(&self, name: &str) -> Result<Option<&str>, OAuthError> {
        let mut values = self.all(name).into_iter();
        match (values.next(), values.next()) {
            (value, None) => Ok(value),
            (Some(_), Some(_)) => Err(OAuthError::invalid_request(format!(
                "the parameter `{name}` appears more than once"
            ))),
            (None, Some(_)) => Ok(None),
        }
    }

    /// A parameter that must appear exactly once.
    pub(super) fn required(&self, name: &str) -> Result<&str, OAuthError> {
        self.one(name)?
            .ok_or_else(|| OAuthError::invalid_request(format!("the parameter `{name}` is required")))
    }

    /// Every value of a repeatable parameter (`audience`, `resource`), in order.
    pub(super) fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn form(body: &str) -> Result<Params, OAuthError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=UTF-8"),
        );
        Params::parse(&headers, body.as_bytes())
    }

    #[test]
    fn reads_form_rules() {
        let params = form("a=1&b=x%2By+z&aud=p&aud=q&empty=&a2=").unwrap();
        assert_eq!(params.one("b").unwrap(), Some("x+y z"));
        assert_eq!(params.all("aud"), ["p", "q"]);
        assert_eq!(params.one("empty").unwrap(), None);
        assert_eq!(params.one("aud").unwrap_err().error(), "invalid_request");
        assert!(
            params
                .required("missing")
                .unwrap_err()
                .description()
                .contains("`missing`")
        );
        assert_eq!(format!("{params:?}"), r#"["a", "b", "aud", "aud"]"#);
    }

    #[test]
    fn refuses_other_content_types() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(Params::parse(&headers, b"{}").is_err());
        assert!(Params::parse(&HeaderMap::new(), b"a=1").is_err());
    }
}
