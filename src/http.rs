//! HTTP pieces shared by the key-set fetcher and the token-exchange client.

use std::fmt;

use reqwest::Url;

use crate::error::{Error, ErrorKind, Result, quote};

/// Why a body was not read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// It is larger than this many bytes.
    TooLarge(usize),
    /// The connection failed or timed out while reading it.
    Read(reqwest::Error),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge(max) => write!(f, "the body is larger than {max} bytes"),
            BodyError::Read(_) => f.write_str("reading the body failed"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BodyError::TooLarge(_) => None,
            BodyError::Read(e) => Some(e),
        }
    }
}

/// Reads at most `max` bytes of the body.
pub(crate) async fn read_capped(
    response: &mut reqwest::Response,
    max: usize,
) -> std::result::Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a URL jwt-relay is to fetch keys from: `http` or `https`, and plain `http` only as
/// [`require_tls`] allows. `what` names the URL in the error ("the key set URL");
/// every refusal is [`ErrorKind::Configuration`].
pub(crate) fn parse_url(url: &str, what: &str, opt_in: &str, allow_plain_http: bool) -> Result<Url> {
    let config = |why: String| Error::new(ErrorKind::Configuration, why);
    let parsed =
        Url::parse(url).map_err(|e| config(format!("{what} {} is not a URL", quote(url))).with_source(e))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(config(format!("{what} {} is not an http(s) URL", quote(url))));
    }
    require_tls(&parsed, what, opt_in, allow_plain_http)?;
    Ok(parsed)
}

/// Refuses a plain `http` URL unless its host is loopback (`127.0.0.0/8`, `::1` or
/// `localhost`), or `allow_plain_http` (the user's explicit opt-in, named by `opt_in`): over
/// plain HTTP anyone on the network path can read the tokens sent, or swap the keys fetched
/// for their own. The error is [`ErrorKind::Configuration`] and names the URL.
pub(crate) fn require_tls(url: &Url, what: &str, opt_in: &str, allow_plain_http: bool) -> Result<()> {
    if url.scheme() != "http" || allow_plain_http || is_loopback(url) {
        return Ok(());
    }
    // Named without any credentials it carries.
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    Err(Error::new(
        ErrorKind::Configuration,
        format!(
            "{what} `{shown}` is plain http to a host that is not loopback: anyone on the network \
             path could read or replace what travels; use https, or opt in with {opt_in}"
        ),
    ))
}

/// Whether the URL's host is `localhost` or a loopback address (`127.0.0.0/8`, `::1`).
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, allowed: bool) -> Result<Url> {
        parse_url(url, "the key set URL", "the opt-in", allowed)
    }

    #[test]
    fn plain_http_only_to_loopback_or_when_allowed() {
        for ok in [
            "https://id.example.com/jwks.json",
            "http://127.0.0.1:8080/jwks.json",
            "http://127.1.2.3/jwks.json",
            "http://[::1]:8080/jwks.json",
            "http://localhost/jwks.json",
            "http://LOCALHOST:99/jwks.json",
        ] {
            assert!(check(ok, false).is_ok(), "{ok}");
        }
        for refused in [
            "http://id.example.com/jwks.json",
            "http://0.0.0.0:8080/jwks.json",
            "http://192.0.2.2/jwks.json",
            "http://localhost.example.com/jwks.json",
            "http://127.0.0.1.example.com/jwks.json",
        ] {
            let e = check(refused, false).expect_err(refused);
            assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
            assert!(e.message().contains("plain http"), "{e}");
            let named = Url::parse(refused).expect("a URL");
            assert!(e.message().contains(named.as_str()), "{e}");
            assert!(check(refused, true).is_ok(), "{refused} with the opt-in");
        }
        let e = check("http://user:hunter2@id.example.com/jwks.json", false).expect_err("plain http");
        assert!(!e.message().contains("hunter2"), "{e}");
        assert!(e.message().contains("http://id.example.com/jwks.json"), "{e}");
        for not_http in [
            "ftp://id.example.com/jwks.json",
            "file:///etc/jwks.json",
            "jwks.json",
        ] {
            let e = check(not_http, true).expect_err(not_http);
            assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
        }
    }
}
