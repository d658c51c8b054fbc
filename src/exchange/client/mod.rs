//! An RFC 8693 token-exchange client over HTTP: the client, its builder
//! and the retry loop here; client authentication in `auth`; finding the
//! token endpoint in `discovery`; reading and classifying the endpoint's
//! answers in `response`.

mod auth;
mod discovery;
mod response;
#[cfg(feature = "fuzzing")]
pub(crate) use response::read_answer;
#[cfg(test)]
mod test_server;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use tracing::Instrument as _;

use self::response::Failure;
use crate::backoff::Backoff;
use crate::error::{Error, ErrorKind, Result, quote};
use crate::exchange::{ExchangeRequest, IssuedToken, TokenExchanger};
use crate::observe;

pub use self::auth::ClientAuth;

/// RFC 8693 §2.1.
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`TokenExchanger`] that talks RFC 8693 to a token endpoint: a form
/// POST, no redirects followed, a timeout per request, answers read up to
/// 64 KiB.
///
/// Failures are classed by what the answer is about. Only an answer about
/// our client or its setup stops a consumer: `invalid_client`,
/// `unauthorized_client` or `unsupported_grant_type` is
/// [`ExchangeUnauthorized`](ErrorKind::ExchangeUnauthorized), and an
/// endpoint that redirects or answers 404/405 is
/// [`Configuration`](ErrorKind::Configuration). A refusal of this token
/// (`invalid_grant`, `invalid_target`, `invalid_request`, `invalid_scope`)
/// is [`ExchangeDenied`](ErrorKind::ExchangeDenied) (permanent). Everything
/// else is [`ExchangeUnavailable`](ErrorKind::ExchangeUnavailable)
/// (transient): timeouts, connection failures, 408, 429, 5xx,
/// `temporarily_unavailable` and `server_error` are retried in place
/// (`max_attempts`, jittered backoff, `Retry-After` honoured up to
/// `max_retry_after`); an answer that does not say what is wrong (a 400,
/// 401 or 403 without an OAuth error code, an unknown code, a 200 whose
/// body is not a token response) is not, as asking again at once would
/// most likely get the same answer. A consumer retries a transient failure
/// a bounded number of times ([`Exchange::max_retries`](crate::Exchange::max_retries)).
/// The answer's `token_type` and `issued_token_type` are returned as the
/// server gave them; the [`Exchange`](crate::Exchange) policy and the
/// [`Propagator`](crate::Propagator) check them, and the token, before
/// using it. Messages name the
/// endpoint and the server's error code and description (escaped, cut
/// short), never a token. `Debug` never shows a secret.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use jwt_relay::{Exchange, Rfc8693Client};
/// use jwt_relay::exchange::{ClientAuth, ExchangeCache, ExchangeRequest, TokenExchanger};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), jwt_relay::Error> {
/// let client = Rfc8693Client::discover("https://id.example.com")
///     .await?
///     .client_auth(ClientAuth::ClientSecretBasic {
///         client_id: "billing-worker".into(),
///         client_secret: std::env::var("CLIENT_SECRET").unwrap_or_default(),
///     })
///     .timeout(Duration::from_secs(5))
///     .build()?;
/// // A burst of messages carrying one token makes one call.
/// let exchanger = Arc::new(ExchangeCache::new(client));
///
/// let request = ExchangeRequest::new("<the caller's token>").audience("ledger");
/// let issued = exchanger.exchange(&request).await?;
/// println!("a {} token for the ledger, valid {:?} s", issued.token_type, issued.expires_in);
///
/// // Or as the expiry policy of a Guard: expired tokens are exchanged.
/// let policy = Exchange::new(exchanger);
/// # let _ = policy;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Rfc8693Client {
    endpoint: String,
    auth: ClientAuth,
    /// The precomputed `Authorization` header of `client_secret_basic`.
    basic: Option<HeaderValue>,
    http: reqwest::Client,
    timeout: Duration,
    max_attempts: u32,
    backoff: Backoff,
    max_retry_after: Duration,
}

impl fmt::Debug for Rfc8693Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rfc8693Client")
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("max_retry_after", &self.max_retry_after)
            .finish_non_exhaustive()
    }
}

/// Builds an [`Rfc8693Client`].
#[derive(Debug, Clone)]
pub struct Rfc8693ClientBuilder {
    endpoint: String,
    auth: ClientAuth,
    timeout: Duration,
    max_attempts: u32,
    backoff: Backoff,
    max_retry_after: Duration,
    /// Set by [`crate::dangerous::allow_plain_http_token_endpoint`].
    pub(crate) allow_plain_http: bool,
}

impl Rfc8693Client {
    /// Starts a client of this token endpoint.
    pub fn builder(token_endpoint: impl Into<String>) -> Rfc8693ClientBuilder {
        Rfc8693ClientBuilder {
            endpoint: token_endpoint.into(),
            auth: ClientAuth::None,
            timeout: DEFAULT_TIMEOUT,
            max_attempts: 3,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(2)),
            max_retry_after: Duration::from_secs(30),
            allow_plain_http: false,
        }
    }

    /// The token endpoint.
    pub fn token_endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn exchange_with_retries(&self, request: &ExchangeRequest) -> Result<IssuedToken> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            tracing::debug!(endpoint = %self.endpoint, attempt, "token exchange request");
            // A new body per attempt: a client assertion is single-use.
            let body = self.form(request)?;
            let failure = match self.attempt(body).await {
                Ok(issued) => {
                    tracing::debug!(
                        endpoint = %self.endpoint,
                        attempt,
                        expires_in = ?issued.expires_in,
                        issued_token_type = ?issued.issued_token_type,
                        "token exchanged"
                    );
                    return Ok(issued);
                }
                Err(failure) => failure,
            };
            if !failure.retry {
                return Err(self.error(failure, attempt, ""));
            }
            if let Some(wait) = failure.retry_after
                && wait > self.max_retry_after
            {
                let note = format!(
                    "; it asked to retry after {} s, longer than the {} s waited in place",
                    wait.as_secs(),
                    self.max_retry_after.as_secs()
                );
                return Err(self.error(failure, attempt, &note));
            }
            if attempt >= self.max_attempts {
                return Err(self.error(failure, attempt, ""));
            }
            let delay = failure
                .retry_after
                .unwrap_or_else(|| self.backoff.delay(attempt - 1));
            tracing::debug!(
                endpoint = %self.endpoint,
                attempt,
                delay_ms = delay.as_millis() as u64,
                reason = %failure.what,
                "token exchange failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// The error a failure ends in, named after the endpoint (and the
    /// client, when it was refused).
    fn error(&self, failure: Failure, attempts: u32, note: &str) -> Error {
        failure.into_error(&self.endpoint, self.auth.client_id(), attempts, note)
    }

    /// One request, classified.
    async fn attempt(&self, body: String) -> std::result::Result<IssuedToken, Failure> {
        let mut http = self
            .http
            .post(&self.endpoint)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(body);
        if let Some(basic) = &self.basic {
            http = http.header(AUTHORIZATION, basic.clone());
        }
        let response = http.send().await.map_err(|e| Failure::network(e, self.timeout))?;
        response::read(response).await
    }

    /// The request body: RFC 8693 §2.1 parameters, then the client's
    /// credentials when they travel in the body.
    fn form(&self, request: &ExchangeRequest) -> Result<String> {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", GRANT_TYPE)
            .append_pair("subject_token", &request.subject_token)
            .append_pair("subject_token_type", &request.subject_token_type);
        match (&request.actor_token, &request.actor_token_type) {
            (Some(token), Some(token_type)) => {
                form.append_pair("actor_token", token)
                    .append_pair("actor_token_type", token_type);
            }
            (None, None) => {}
            _ => {
                return Err(Error::new(
                    ErrorKind::Configuration,
                    "an exchange request needs both `actor_token` and `actor_token_type`, or neither",
                ));
            }
        }
        for audience in &request.audience {
            form.append_pair("audience", audience);
        }
        for resource in &request.resource {
            form.append_pair("resource", resource);
        }
        if let Some(scope) = &request.scope {
            form.append_pair("scope", scope);
        }
        if let Some(wanted) = &request.requested_token_type {
            form.append_pair("requested_token_type", wanted);
        }
        self.auth.append_to_form(&mut form, &self.endpoint)?;
        Ok(form.finish())
    }
}

impl TokenExchanger for Rfc8693Client {
    fn exchange<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> Pin<Box<dyn Future<Output = Result<IssuedToken>> + Send + 'a>> {
        Box::pin(async move {
            let span = tracing::info_span!(
                "jwt_relay.exchange",
                endpoint = %self.endpoint,
                result = tracing::field::Empty
            );
            let started = Instant::now();
            let result = self.exchange_with_retries(request).instrument(span.clone()).await;
            metrics::histogram!(observe::EXCHANGE_SECONDS).record(started.elapsed().as_secs_f64());
            let label = observe::exchange_result(&result);
            span.record("result", label);
            metrics::counter!(observe::EXCHANGES_TOTAL, "result" => label).increment(1);
            result
        })
    }
}

impl Rfc8693ClientBuilder {
    /// How the client authenticates (default: [`ClientAuth::None`]).
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// How long one request may take, connecting to reading the answer (10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many requests one exchange may make when the service is
    /// unavailable (3).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The wait between attempts when the service did not say (100 ms
    /// doubling to 2 s, jittered).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The longest `Retry-After` waited in place (30 s). A longer one ends
    /// the exchange at once with an `ExchangeUnavailable` error carrying the
    /// delay ([`Error::retry_after`]), so the message is retried later
    /// instead of holding a consumer.
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Builds the client. Fails ([`ErrorKind::Configuration`], or
    /// [`ErrorKind::InvalidKey`] for a key that cannot sign with its `alg`)
    /// on a token endpoint that is not an `http`/`https` URL, is plain `http`
    /// to a host that is not loopback (unless allowed with
    /// [`crate::dangerous::allow_plain_http_token_endpoint`]) or carries
    /// credentials, zero attempts or timeout, or an empty client id.
    pub fn build(self) -> Result<Rfc8693Client> {
        let config = |what: String| Error::new(ErrorKind::Configuration, what);
        let url = reqwest::Url::parse(&self.endpoint).map_err(|e| {
            config(format!(
                "the token endpoint {} is not a URL",
                quote(&self.endpoint)
            ))
            .with_source(e)
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(config(format!(
                "the token endpoint {} is not an http(s) URL",
                quote(&self.endpoint)
            )));
        }
        crate::http::require_tls(
            &url,
            "the token endpoint",
            "jwt_relay::dangerous::allow_plain_http_token_endpoint",
            self.allow_plain_http,
        )?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(config(
                "the token endpoint URL carries credentials; give them with `client_auth`".to_owned(),
            ));
        }
        if self.max_attempts == 0 {
            return Err(config("`max_attempts` must be at least 1".to_owned()));
        }
        if self.timeout.is_zero() {
            return Err(config("the token exchange `timeout` must not be zero".to_owned()));
        }
        if self.auth.client_id() == Some("") {
            return Err(config("the client id is empty".to_owned()));
        }
        // Fails now, not on the first message, if a key cannot sign.
        let basic = self.auth.prepare(&self.endpoint)?;
        Ok(Rfc8693Client {
            http: http_client(self.timeout)?,
            endpoint: self.endpoint,
            auth: self.auth,
            basic,
            timeout: self.timeout,
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            max_retry_after: self.max_retry_after,
        })
    }
}

fn http_client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .map_err(|e| Error::new(ErrorKind::Configuration, "cannot build the HTTP client").with_source(e))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use jsonwebtoken::{Algorithm, EncodingKey};

    use super::test_server::{fast, oauth, ok, request, serve};
    use super::*;
    use crate::error::ErrorClass;

    const EC256: &[u8] = include_bytes!("../../../tests/fixtures/ec256.pem");

    #[tokio::test]
    async fn sends_an_rfc8693_form_with_basic_auth() {
        let (base, script) = serve(vec![ok()]).await;
        let client = fast(format!("{base}/token"))
            .client_auth(ClientAuth::ClientSecretBasic {
                client_id: "relay worker".into(),
                client_secret: "p&ss:word".into(),
            })
            .build()
            .expect("client");
        let request = request()
            .audience("ledger")
            .scope("read write")
            .resource("https://api.example.com/")
            .requested_token_type(crate::exchange::JWT_TOKEN_TYPE)
            .actor("actor-token-value", crate::exchange::JWT_TOKEN_TYPE);
        let issued = client.exchange(&request).await.expect("exchange");
        assert_eq!(issued.access_token, "fresh.token.here");
        assert_eq!(issued.expires_in, Some(300));

        let received = script.received.lock().expect("lock");
        let (headers, body) = &received[0];
        assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
        // RFC 6749 §2.3.1: form-urlencoded, then base64.
        let basic = STANDARD.encode("relay+worker:p%26ss%3Aword");
        assert_eq!(headers["authorization"], format!("Basic {basic}").as_str());
        let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let all = |name: &str| -> Vec<&str> {
            form.iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(all("grant_type"), [GRANT_TYPE]);
        assert_eq!(all("subject_token"), ["subject-token-value"]);
        assert_eq!(all("subject_token_type"), [crate::exchange::ACCESS_TOKEN_TYPE]);
        assert_eq!(all("actor_token"), ["actor-token-value"]);
        assert_eq!(all("actor_token_type"), [crate::exchange::JWT_TOKEN_TYPE]);
        assert_eq!(all("audience"), ["billing", "ledger"]);
        assert_eq!(all("resource"), ["https://api.example.com/"]);
        assert_eq!(all("scope"), ["read write"]);
        assert_eq!(all("requested_token_type"), [crate::exchange::JWT_TOKEN_TYPE]);
        assert!(all("client_secret").is_empty());
    }

    #[tokio::test]
    async fn retries_when_unavailable_then_succeeds() {
        let (base, script) = serve(vec![
            (503, vec![], String::new()),
            (502, vec![], String::new()),
            ok(),
        ])
        .await;
        let client = fast(format!("{base}/token")).build().expect("client");
        client.exchange(&request()).await.expect("third attempt succeeds");
        assert_eq!(script.hits(), 3);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let (base, script) = serve(vec![oauth(500, "server_error", "database down")]).await;
        let client = fast(format!("{base}/token"))
            .max_attempts(4)
            .build()
            .expect("client");
        let error = client.exchange(&request()).await.expect_err("unavailable");
        assert_eq!(error.kind(), ErrorKind::ExchangeUnavailable);
        assert_eq!(error.class(), ErrorClass::Transient);
        assert_eq!(script.hits(), 4);
        let message = error.to_string();
        assert!(message.contains(&format!("{base}/token")), "{message}");
        assert!(
            message.contains("4 attempts") && message.contains("`server_error`"),
            "{message}"
        );
        assert!(!message.contains("subject-token-value"), "{message}");
    }

    #[tokio::test]
    async fn retry_after_is_honoured_up_to_the_maximum() {
        let busy = (429, vec![("retry-after", "1".to_owned())], String::new());
        let (base, script) = serve(vec![busy, ok()]).await;
        let client = fast(format!("{base}/token")).build().expect("client");
        let started = Instant::now();
        client.exchange(&request()).await.expect("after waiting");
        assert!(started.elapsed() >= Duration::from_millis(900));
        assert_eq!(script.hits(), 2);

        let down = (503, vec![("retry-after", "120".to_owned())], String::new());
        let (base, script) = serve(vec![down, ok()]).await;
        let client = fast(format!("{base}/token")).build().expect("client");
        let error = client
            .exchange(&request())
            .await
            .expect_err("not waited in place");
        assert_eq!(error.kind(), ErrorKind::ExchangeUnavailable);
        assert_eq!(error.retry_after(), Some(Duration::from_secs(120)));
        assert_eq!(script.hits(), 1);
    }

    #[test]
    fn build_rejects_bad_settings() {
        let kind = |builder: Rfc8693ClientBuilder| builder.build().map(|_| ()).map_err(|e| e.kind());
        assert_eq!(
            kind(Rfc8693Client::builder("not a url")),
            Err(ErrorKind::Configuration)
        );
        assert_eq!(
            kind(Rfc8693Client::builder("ftp://sts/token")),
            Err(ErrorKind::Configuration)
        );
        assert_eq!(
            kind(Rfc8693Client::builder("https://u:p@sts/token")),
            Err(ErrorKind::Configuration)
        );
        assert_eq!(
            kind(Rfc8693Client::builder("https://sts/token").max_attempts(0)),
            Err(ErrorKind::Configuration)
        );
        let wrong_alg = ClientAuth::PrivateKeyJwt {
            client_id: "relay".into(),
            key: EncodingKey::from_ec_pem(EC256).expect("key"),
            alg: Algorithm::RS256,
            kid: None,
        };
        assert_eq!(
            kind(Rfc8693Client::builder("https://sts/token").client_auth(wrong_alg)),
            Err(ErrorKind::InvalidKey)
        );
        assert_eq!(kind(Rfc8693Client::builder("https://sts/token")), Ok(()));
    }
}
