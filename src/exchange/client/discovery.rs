//! Finding the token endpoint through OpenID Connect discovery.

use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use serde_json::Value;

use super::{DEFAULT_TIMEOUT, Rfc8693Client, Rfc8693ClientBuilder, http_client};
use crate::error::{Error, ErrorKind, Result, quote};
use crate::http::{parse_url, read_capped};

/// The largest discovery document read.
const MAX_DISCOVERY_BODY: usize = 1 << 20;

impl Rfc8693Client {
    /// Starts a client of the token endpoint named by the issuer's
    /// `{issuer}/.well-known/openid-configuration`. The document must name
    /// `issuer` exactly (OpenID Connect Discovery §4.3), else
    /// [`ErrorKind::Configuration`]; an unreachable or unreadable document
    /// is [`ErrorKind::ExchangeUnavailable`]. A plain `http` issuer whose
    /// host is not loopback is refused before any request
    /// ([`ErrorKind::Configuration`]): give such a token endpoint to
    /// [`Rfc8693Client::builder`] with
    /// [`dangerous::allow_plain_http_token_endpoint`](crate::dangerous::allow_plain_http_token_endpoint)
    /// instead.
    pub async fn discover(issuer: impl Into<String>) -> Result<Rfc8693ClientBuilder> {
        let issuer = issuer.into();
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let opt_in = "`Rfc8693Client::builder` and `dangerous::allow_plain_http_token_endpoint`";
        parse_url(&url, "the discovery URL", opt_in, false)?;
        let unavailable = |what: String| Error::new(ErrorKind::ExchangeUnavailable, what);
        let http = http_client(DEFAULT_TIMEOUT)?;
        let mut response = http
            .get(&url)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unavailable(format!("GET {url} failed")).with_source(e))?;
        let status = response.status();
        if status != StatusCode::OK {
            let note = if status.is_redirection() {
                " (redirects are not followed)"
            } else {
                ""
            };
            return Err(unavailable(format!("GET {url} answered {status}{note}")));
        }
        let body = read_capped(&mut response, MAX_DISCOVERY_BODY)
            .await
            .map_err(|e| unavailable(format!("GET {url}: {e}")))?;
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("{url} is not JSON")).with_source(e))?;
        if doc.get("issuer").and_then(Value::as_str) != Some(issuer.as_str()) {
            return Err(Error::new(
                ErrorKind::Configuration,
                format!("{url} names another issuer than {}", quote(&issuer)),
            ));
        }
        let endpoint = doc
            .get("token_endpoint")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::new(ErrorKind::Configuration, format!("{url} has no `token_endpoint`")))?;
        Ok(Rfc8693Client::builder(endpoint))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_server::{ok, request, serve};
    use super::*;
    use crate::exchange::TokenExchanger;

    #[tokio::test]
    async fn discovery_finds_the_token_endpoint() {
        let (base, script) = serve(vec![ok()]).await;
        *script.discovery.lock().expect("lock") =
            Some(json!({"issuer": base, "token_endpoint": format!("{base}/token")}));
        let client = Rfc8693Client::discover(&base)
            .await
            .expect("discovered")
            .build()
            .expect("client");
        assert_eq!(client.token_endpoint(), format!("{base}/token"));
        client.exchange(&request()).await.expect("exchange");

        *script.discovery.lock().expect("lock") =
            Some(json!({"issuer": "https://evil.example", "token_endpoint": format!("{base}/token")}));
        let error = Rfc8693Client::discover(&base).await.expect_err("issuer mismatch");
        assert_eq!(error.kind(), ErrorKind::Configuration);

        let error = Rfc8693Client::discover("http://127.0.0.1:9")
            .await
            .expect_err("nothing listens");
        assert_eq!(error.kind(), ErrorKind::ExchangeUnavailable);
    }

    #[tokio::test]
    async fn a_plain_http_issuer_off_loopback_is_refused_before_any_request() {
        // Not loopback by the rule (a connection would still stay on this machine, where nothing
        // listens on port 9: an attempt would fail as ExchangeUnavailable, not Configuration).
        let error = Rfc8693Client::discover("http://0.0.0.0:9")
            .await
            .expect_err("plain http off loopback");
        assert_eq!(error.kind(), ErrorKind::Configuration, "{error}");
        assert!(
            error.to_string().contains("http://0.0.0.0:9/.well-known"),
            "{error}"
        );
        assert!(
            error.to_string().contains("allow_plain_http_token_endpoint"),
            "{error}"
        );
    }
}
