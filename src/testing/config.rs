//! [`DevStsConfig`]: where the development token service listens, how long
//! its tokens live, which clients it knows and which key it signs with.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};

/// The configuration of a [`DevSts`](super::DevSts), builder style.
/// `Debug` never shows client secrets or the signing key.
///
/// Defaults: listen on `127.0.0.1:0` (a free port), tokens live 60 s,
/// subject tokens that expired less than 1 h ago are still exchanged, one
/// client [`DEFAULT_CLIENT_ID`] with secret [`DEFAULT_CLIENT_SECRET`], and
/// a fresh ES256 key with `kid` [`DEFAULT_KID`](super::DEFAULT_KID).
///
/// ```
/// use std::time::Duration;
/// use jwt_relay::testing::DevStsConfig;
///
/// let config = DevStsConfig::default()
///     .ttl(Duration::from_secs(300))
///     .accept_expired_for(Duration::from_secs(600))
///     .client("billing-worker", "s3cret");
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct DevStsConfig {
    pub(super) listen: SocketAddr,
    pub(super) ttl: Duration,
    pub(super) accept_expired_for: Duration,
    pub(super) clients: BTreeMap<String, ClientConfig>,
    pub(super) signing_key: Option<String>,
}

/// How one client may authenticate: with a secret, a public key, or both.
#[derive(Clone, Default)]
pub(super) struct ClientConfig {
    pub(super) secret: Option<String>,
    pub(super) jwk: Option<String>,
}

impl Default for DevStsConfig {
    fn default() -> Self {
        DevStsConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            ttl: Duration::from_secs(60),
            accept_expired_for: Duration::from_secs(3600),
            clients: BTreeMap::new(),
            signing_key: None,
        }
    }
}

impl DevStsConfig {
    /// The address to listen on (default `127.0.0.1:0`: a free port, see
    /// [`DevSts::local_addr`](super::DevSts::local_addr)). On an unspecified
    /// address (`0.0.0.0`, `[::]`) the issuer names the loopback address.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The lifetime of issued tokens (default 60 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long after its `exp` a subject or actor token is still exchanged
    /// (default 1 h; zero refuses every expired token, as Keycloak does).
    pub fn accept_expired_for(mut self, window: Duration) -> Self {
        self.accept_expired_for = window;
        self
    }

    /// Registers a client that authenticates with `client_secret_basic` or
    /// `client_secret_post`. Registering any client (here or with
    /// [`client_jwk`](Self::client_jwk)) replaces the default one.
    pub fn client(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.clients.entry(id.into()).or_default().secret = Some(secret.into());
        self
    }

    /// Registers a client that authenticates with `private_key_jwt`
    /// (RFC 7523 §2.2): a JWT with `iss` = `sub` = the client id, `aud` =
    /// the token endpoint or the issuer, `exp` and a `jti` used once,
    /// signed by the private half of this public JWK. If the JWK has a
    /// `kid`, the assertion must name it; if not, it must name none.
    /// Checked when the service starts.
    pub fn client_jwk(mut self, id: impl Into<String>, public_jwk_json: impl Into<String>) -> Self {
        self.clients.entry(id.into()).or_default().jwk = Some(public_jwk_json.into());
        self
    }

    /// Signs with this private JWK instead of a fresh key: P-256 (`ES256`)
    /// or Ed25519 (`EdDSA`), as `jwt-relay keygen` writes them. Its `kid`
    /// is used when it has one. Checked when the service starts.
    pub fn signing_key(mut self, private_jwk_json: impl Into<String>) -> Self {
        self.signing_key = Some(private_jwk_json.into());
        self
    }

    /// The clients, with the default one when none was registered.
    pub(super) fn effective_clients(&self) -> BTreeMap<String, ClientConfig> {
        if !self.clients.is_empty() {
            return self.clients.clone();
        }
        let default = ClientConfig {
            secret: Some(DEFAULT_CLIENT_SECRET.to_owned()),
            jwk: None,
        };
        BTreeMap::from([(DEFAULT_CLIENT_ID.to_owned(), default)])
    }
}

impl fmt::Debug for DevStsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevStsConfig")
            .field("listen", &self.listen)
            .field("ttl", &self.ttl)
            .field("accept_expired_for", &self.accept_expired_for)
            .field("clients", &self.effective_clients())
            .field(
                "signing_key",
                &self.signing_key.as_ref().map_or("generated", |_| "[redacted]"),
            )
            .finish()
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut methods = Vec::new();
        if self.secret.is_some() {
            methods.push("client_secret");
        }
        if self.jwk.is_some() {
            methods.push("private_key_jwt");
        }
        f.debug_list().entries(methods).finish()
    }
}
