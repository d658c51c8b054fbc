//! [`DevSts`]: the server, its shared state, and its read-only endpoints
//! (discovery, key set, statistics).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::client_auth::Clients;
use super::config::DevStsConfig;
use super::mode::{Counters, Mode, Stats};
use super::signer::Signer;
use super::token_endpoint::{self, TOKEN_EXCHANGE};
use crate::backoff::Backoff;
use crate::consume::Exchange;
use crate::consume::guard::Guard;
use crate::error::{Error, ErrorKind, Result};
use crate::exchange::{ClientAuth, ExchangeCache, Rfc8693Client, Rfc8693ClientBuilder};
use crate::verify::issuer::{Issuer, dangerous};
use crate::verify::verifier::{Verifier, now_unix};

/// How long [`DevSts::shutdown`] waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A development token service running in-process: an identity provider
/// (OIDC discovery, a JWKS, [`mint`](DevSts::mint)ed user tokens) and an
/// RFC 8693 token exchange server, on a local port. For tests, the
/// demonstration and local development; never for production.
///
/// Stops on [`shutdown`](DevSts::shutdown), or when dropped. `Debug`
/// shows no key or secret.
///
/// ```
/// use std::time::Duration;
/// use jwt_relay::testing::{DevSts, DevStsConfig};
/// use jwt_relay::{Issuer, Verifier};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), jwt_relay::Error> {
/// let sts = DevSts::start(DevStsConfig::default()).await?;
/// let token = sts.mint("alice", "billing", Duration::from_secs(60));
///
/// // A consumer trusts the service like any identity provider.
/// let verifier = Verifier::builder()
///     .issuer(Issuer::new(sts.issuer()).audience("billing").jwks_url(sts.jwks_url()))
///     .build()?;
/// let ctx = verifier.verify(&token).await?;
/// assert_eq!(ctx.subject(), Some("alice"));
/// assert_eq!(sts.stats().jwks_requests, 1);
///
/// sts.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct DevSts {
    pub(super) service: Arc<Service>,
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// What the handlers share.
pub(super) struct Service {
    pub(super) issuer: String,
    pub(super) token_endpoint: String,
    pub(super) jwks_url: String,
    pub(super) signer: Signer,
    pub(super) ttl: Duration,
    pub(super) accept_expired_for: Duration,
    pub(super) clients: Clients,
    /// Verifies subject and actor tokens: the service's own, for any audience.
    pub(super) tokens: Verifier,
    pub(super) counters: Counters,
    mode: Mutex<Mode>,
    jti_prefix: String,
    jti_counter: AtomicU64,
}

impl Service {
    /// The current mode.
    pub(super) fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A token id unique to this service instance and across instances.
    pub(super) fn next_jti(&self) -> String {
        let n = self.jti_counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.jti_prefix)
    }
}

impl fmt::Debug for DevSts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let service = &self.service;
        f.debug_struct("DevSts")
            .field("issuer", &service.issuer)
            .field("local_addr", &self.local_addr)
            .field("kid", &service.signer.kid())
            .field("alg", &service.signer.algorithm())
            .field("clients", &service.clients.ids())
            .field("mode", &service.mode())
            .finish_non_exhaustive()
    }
}

impl DevSts {
    /// Binds the listen address and starts serving on the current Tokio
    /// runtime. Fails on an address that cannot be bound, an unusable
    /// signing or client key, or a build without a crypto backend.
    pub async fn start(config: DevStsConfig) -> Result<DevSts> {
        let signer = match &config.signing_key {
            Some(jwk) => Signer::from_private_jwk(jwk)?,
            None => Signer::generate()?,
        };
        // Fails now, rather than in `mint`, when no crypto backend is built in.
        signer.sign(&json!({}))?;
        let listener = TcpListener::bind(config.listen).await.map_err(|e| {
            Error::new(
                ErrorKind::Configuration,
                format!("cannot listen on {}: {e}", config.listen),
            )
            .with_source(e)
        })?;
        let local_addr = listener.local_addr().map_err(|e| {
            Error::new(
                ErrorKind::Configuration,
                format!("the listening socket has no address: {e}"),
            )
        })?;
        let issuer = format!("http://{}", reachable(local_addr));
        let token_endpoint = format!("{issuer}/token");
        let tokens = Verifier::builder()
            .issuer(dangerous::skip_audience_check(
                Issuer::new(issuer.clone()).key(signer.verification_key()?)?,
            ))
            .build()?;
        let clients = Clients::new(&config.effective_clients(), &issuer, &token_endpoint)?;
        let service = Arc::new(Service {
            jwks_url: format!("{issuer}/jwks.json"),
            token_endpoint,
            issuer,
            signer,
            ttl: config.ttl,
            accept_expired_for: config.accept_expired_for,
            clients,
            tokens,
            counters: Counters::default(),
            mode: Mutex::new(Mode::Normal),
            jti_prefix: random_prefix()?,
            jti_counter: AtomicU64::new(1),
        });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks.json", get(jwks))
            .route("/token", post(token_endpoint::token))
            .route("/stats", get(stats))
            .with_state(service.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    // A dropped sender stops the server as well.
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "the development token service stopped with an error");
            }
        });
        tracing::info!(
            issuer = %service.issuer,
            kid = service.signer.kid(),
            "development token service started"
        );
        Ok(DevSts {
            service,
            local_addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The issuer, `http://127.0.0.1:<port>`: the `iss` of every token it
    /// signs, and the base of its endpoints.
    pub fn issuer(&self) -> String {
        self.service.issuer.clone()
    }

    /// The RFC 8693 token endpoint, `{issuer}/token`.
    pub fn token_endpoint(&self) -> String {
        self.service.token_endpoint.clone()
    }

    /// The public key set, `{issuer}/jwks.json`.
    pub fn jwks_url(&self) -> String {
        self.service.jwks_url.clone()
    }

    /// An RFC 8693 client of this service's token endpoint, authenticated as
    /// [`DEFAULT_CLIENT_ID`](super::DEFAULT_CLIENT_ID) (which every configuration accepts):
    /// set timeouts and attempts, then `build`.
    pub fn client(&self) -> Rfc8693ClientBuilder {
        Rfc8693Client::builder(self.token_endpoint()).client_auth(ClientAuth::ClientSecretBasic {
            client_id: super::DEFAULT_CLIENT_ID.to_owned(),
            client_secret: super::DEFAULT_CLIENT_SECRET.to_owned(),
        })
    }

    /// A guard over `verifier` that exchanges expired tokens here and fails fast while this
    /// service is down: one attempt of at most 300 ms per delivery (the consumer does the
    /// retrying), then a redelivery after the [`Exchange`] policy's backoff (1 s doubling, at
    /// most 10 redeliveries); other transient failures (the key set) retry after 100 ms
    /// doubling to 500 ms. What the token-outage tests of every broker run.
    pub fn exchanging_guard(&self, verifier: Verifier) -> Result<Guard> {
        let client = self
            .client()
            .max_attempts(1)
            .timeout(Duration::from_millis(300))
            .build()?;
        Ok(Guard::builder(verifier)
            .policy(Exchange::new(Arc::new(ExchangeCache::new(client))))
            .backoff(Backoff::new(
                Duration::from_millis(100),
                Duration::from_millis(500),
            ))
            .build())
    }

    /// A verifier trusting this service's tokens for `audience`, through its key set, with no
    /// leeway (so tests of `exp`, `nbf` and `iat` are exact).
    pub fn verifier(&self, audience: &str) -> Result<Verifier> {
        Verifier::builder()
            .issuer(
                Issuer::new(self.issuer())
                    .audience(audience)
                    .jwks_url(self.jwks_url())
                    .leeway(Duration::ZERO),
            )
            .build()
    }

    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Switches how `POST /token` answers from now on.
    pub fn set_mode(&self, mode: Mode) {
        *self.service.mode.lock().unwrap_or_else(PoisonError::into_inner) = mode;
        tracing::info!(?mode, "development token service mode changed");
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.service.counters.snapshot()
    }

    /// Signs a user token: `iss` = [`issuer`](Self::issuer), `sub`, `aud`,
    /// `iat` = now, `exp` = now + `ttl`, a unique `jti`; header `typ: JWT`
    /// and the key's `kid`. For an expired token, use
    /// [`mint_claims`](Self::mint_claims) with an `exp` in the past.
    pub fn mint(&self, subject: &str, audience: &str, ttl: Duration) -> String {
        let now = now_unix();
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        self.mint_claims(json!({
            "iss": self.service.issuer,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "exp": now.saturating_add(ttl),
            "jti": self.service.next_jti(),
        }))
    }

    /// Signs these claims exactly as given (nothing is added: set `iss`,
    /// `exp` and the rest yourself), with header `typ: JWT` and the key's `kid`.
    ///
    /// Signing cannot fail once the service has started (`start` signs a
    /// probe token); should it fail anyway, the error is logged and the
    /// empty string returned, which no verifier accepts.
    pub fn mint_claims(&self, claims: Value) -> String {
        self.service.signer.sign(&claims).unwrap_or_else(|e| {
            tracing::error!(error = %e, "the development token service could not sign a token");
            String::new()
        })
    }

    /// Stops accepting connections and waits (at most 5 s) for requests in
    /// flight to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
        tracing::info!(issuer = %self.service.issuer, "development token service stopped");
    }
}

impl Drop for DevSts {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The address clients should use: the loopback address for an unspecified one.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port())),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port())),
        _ => addr,
    }
}

/// 96 random bits, base64url: the `jti` prefix of one service instance.
fn random_prefix() -> Result<String> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(|e| {
        Error::new(
            ErrorKind::Configuration,
            format!("the system random number generator failed: {e}"),
        )
    })?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// `GET /.well-known/openid-configuration`.
async fn discovery(State(service): State<Arc<Service>>) -> Json<Value> {
    Counters::bump(&service.counters.discovery_requests);
    Json(json!({
        "issuer": service.issuer,
        "jwks_uri": service.jwks_url,
        "token_endpoint": service.token_endpoint,
        "grant_types_supported": [TOKEN_EXCHANGE],
        "token_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt"],
    }))
}

/// `GET /jwks.json`.
async fn jwks(State(service): State<Arc<Service>>) -> Json<Value> {
    Counters::bump(&service.counters.jwks_requests);
    Json(service.signer.jwks())
}

/// `GET /stats`.
async fn stats(State(service): State<Arc<Service>>) -> Json<Stats> {
    Json(service.counters.snapshot())
}
