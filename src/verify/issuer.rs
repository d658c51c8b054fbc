//! One trusted issuer: its keys, audiences and rules.

use std::time::Duration;

use jsonwebtoken::Algorithm;

use crate::error::{Error, ErrorKind, Result};
use crate::http;
use crate::verify::key::Key;
use crate::verify::key_set::KeySet;
use crate::verify::remote::{Location, RemoteOptions};

/// The largest leeway accepted: clocks that disagree by more are broken.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// A trusted issuer and the rules its tokens are judged by. A token is
/// judged only by the rules of the issuer its `iss` names.
///
/// Secure by default: `exp` and `aud` are required, `nbf` and `iat` are
/// checked, leeway is 30 s, and each key pins its algorithm.
#[derive(Debug, Clone)]
pub struct Issuer {
    pub(crate) issuer: String,
    pub(crate) audiences: Vec<String>,
    pub(crate) keys: KeySource,
    pub(crate) algorithms: Option<Vec<Algorithm>>,
    pub(crate) typ: Option<String>,
    pub(crate) leeway: Duration,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) require_exp: bool,
    pub(crate) check_audience: bool,
    pub(crate) allow_plain_http: bool,
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub(crate) enum KeySource {
    None,
    Static(KeySet),
    Remote(Location, RemoteOptions),
}

impl Issuer {
    /// The issuer whose tokens carry exactly this `iss`.
    pub fn new(issuer: impl Into<String>) -> Self {
        Issuer {
            issuer: issuer.into(),
            audiences: Vec::new(),
            keys: KeySource::None,
            algorithms: None,
            typ: None,
            leeway: Duration::from_secs(30),
            max_lifetime: None,
            require_exp: true,
            check_audience: true,
            allow_plain_http: false,
        }
    }

    /// Accepts tokens for this audience (call again for more).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Verifies with these keys.
    pub fn keys(mut self, keys: KeySet) -> Self {
        self.keys = KeySource::Static(keys);
        self
    }

    /// Verifies with this one key.
    pub fn key(self, key: Key) -> Result<Self> {
        Ok(self.keys(KeySet::new([key])?))
    }

    /// Verifies with the key set at this URL, fetched with default options.
    ///
    /// The URL must be `https`, or `http` to a loopback host (`127.0.0.0/8`,
    /// `::1`, `localhost`); any other `http` URL fails
    /// [`VerifierBuilder::build`](crate::verify::VerifierBuilder::build) with
    /// [`ErrorKind::Configuration`] unless allowed with
    /// [`dangerous::allow_plain_http`].
    pub fn jwks_url(self, url: impl Into<String>) -> Self {
        self.jwks_url_with(url, RemoteOptions::default())
    }

    /// Verifies with the key set at this URL.
    pub fn jwks_url_with(mut self, url: impl Into<String>, options: RemoteOptions) -> Self {
        self.keys = KeySource::Remote(Location::Jwks(url.into()), options);
        self
    }

    /// Finds the key set through OIDC discovery
    /// (`{issuer}/.well-known/openid-configuration`).
    ///
    /// Both the discovery document and the `jwks_uri` it names must be
    /// `https`, or `http` to a loopback host, as for
    /// [`jwks_url`](Self::jwks_url): a discovery URL that breaks the rule fails
    /// the build, a `jwks_uri` that breaks it fails the key set with
    /// [`ErrorKind::Configuration`] before anything is fetched from it.
    pub fn discovery(self) -> Self {
        self.discovery_with(RemoteOptions::default())
    }

    /// Finds the key set through OIDC discovery, with these options.
    pub fn discovery_with(mut self, options: RemoteOptions) -> Self {
        self.keys = KeySource::Remote(Location::Discovery(self.issuer.clone()), options);
        self
    }

    /// Accepts only these algorithms (keys of other algorithms are refused).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// Requires this `typ` header, for example `at+jwt` (RFC 9068). The
    /// comparison ignores case and an `application/` prefix.
    pub fn typ(mut self, typ: impl Into<String>) -> Self {
        self.typ = Some(typ.into());
        self
    }

    /// Tolerance for clock skew on `exp`, `nbf` and `iat` (30 s, at most 5 min).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Refuses tokens whose `exp - iat` is longer than this (and tokens
    /// without `iat`).
    pub fn max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = Some(max);
        self
    }

    /// The `iss` this issuer stands for.
    pub fn name(&self) -> &str {
        &self.issuer
    }

    /// The audiences accepted.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let config = |what: String| Err(Error::new(ErrorKind::Configuration, what));
        let name = &self.issuer;
        if name.is_empty() {
            return config("an issuer needs a non-empty name".to_owned());
        }
        if self.check_audience && self.audiences.is_empty() {
            return config(format!("issuer `{name}` has no audience"));
        }
        if self.leeway > MAX_LEEWAY {
            return config(format!(
                "issuer `{name}` has a leeway of {} s; at most {} s is allowed",
                self.leeway.as_secs(),
                MAX_LEEWAY.as_secs()
            ));
        }
        if let (Some(allowed), KeySource::Static(keys)) = (&self.algorithms, &self.keys)
            && let Some(key) = keys.keys().find(|k| !allowed.contains(&k.algorithm()))
        {
            return config(format!(
                "issuer `{name}`: key {} is pinned to {:?}, which is not among the allowed algorithms",
                key.describe(),
                key.algorithm()
            ));
        }
        match &self.keys {
            KeySource::None => config(format!("issuer `{name}` has no keys")),
            KeySource::Static(keys) if keys.is_empty() => {
                config(format!("issuer `{name}` has an empty key set"))
            }
            KeySource::Static(_) => Ok(()),
            KeySource::Remote(location, _) => {
                let (url, what) = location.url();
                http::parse_url(&url, what, PLAIN_HTTP_OPT_IN, self.allow_plain_http).map(|_| ())
            }
        }
    }
}

/// How a user allows plain `http` key-set URLs, for error messages.
pub(crate) const PLAIN_HTTP_OPT_IN: &str = "jwt_relay::dangerous::allow_plain_http";

/// Switches that weaken verification or transport security. Each names what
/// it gives up.
pub mod dangerous {
    use super::Issuer;
    use crate::exchange::Rfc8693ClientBuilder;

    /// Accepts tokens without `exp`: such a token never expires.
    pub fn allow_missing_expiry(mut issuer: Issuer) -> Issuer {
        issuer.require_exp = false;
        issuer
    }

    /// Skips the audience check: a token meant for any service is accepted.
    pub fn skip_audience_check(mut issuer: Issuer) -> Issuer {
        issuer.check_audience = false;
        issuer
    }

    /// Fetches the issuer's key set (and its discovery document) over plain
    /// `http` even from a host that is not loopback: anyone on the network
    /// path can then swap the keys for their own and have forged tokens
    /// accepted. For a private network you trust as much as this process.
    pub fn allow_plain_http(mut issuer: Issuer) -> Issuer {
        issuer.allow_plain_http = true;
        issuer
    }

    /// Sends tokens to a plain `http` token endpoint even on a host that is
    /// not loopback: anyone on the network path can then read the tokens
    /// (and the client's credentials) and use them.
    pub fn allow_plain_http_token_endpoint(mut builder: Rfc8693ClientBuilder) -> Rfc8693ClientBuilder {
        builder.allow_plain_http = true;
        builder
    }
}
