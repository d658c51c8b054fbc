//! HTTP headers as jwt-relay carriers.

use std::fmt;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue as HttpValue};
use jwt_relay::carrier::{Extractor, HeaderValue, InjectError, Injector};

/// Reads a request's headers: every value of a name (HTTP names are case-insensitive), as bytes.
pub(crate) struct HttpHeaders<'a>(pub(crate) &'a HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get_all(&self, name: &str) -> Vec<HeaderValue<'_>> {
        self.0
            .get_all(name)
            .iter()
            .map(|v| HeaderValue::Bytes(v.as_bytes()))
            .collect()
    }
}

impl fmt::Debug for HttpHeaders<'_> {
    /// Names only: a value may be a token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// Writes a request's headers, replacing every value of the name.
pub(crate) struct HttpHeadersMut<'a>(pub(crate) &'a mut HeaderMap);

impl Injector for HttpHeadersMut<'_> {
    fn set(&mut self, name: &str, value: &str) -> Result<(), InjectError> {
        let name =
            HeaderName::try_from(name).map_err(|_| InjectError::new(name, "not an HTTP header name"))?;
        let mut value = HttpValue::try_from(value)
            .map_err(|_| InjectError::new(name.as_str(), "not a valid HTTP header value"))?;
        value.set_sensitive(true);
        self.0.insert(name, value);
        Ok(())
    }
}

impl fmt::Debug for HttpHeadersMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}
