//! The verified identity a handler receives.

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::Result;
use crate::verify::claims::Claims;
use crate::verify::issuer::Issuer;

/// What verification established about a token: shared between every
/// message that carries the same token.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) claims: Claims,
    pub(crate) kid: Option<String>,
    pub(crate) alg: Algorithm,
    pub(crate) issuer: Arc<Issuer>,
}

/// How a context came to be accepted.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// The token verified and had not expired.
    Verified,
    /// The token had expired and an expiry policy accepted it anyway (it was
    /// valid when the message was published). Never forwarded as-is.
    Grace,
    /// The token was exchanged for a fresh one, which verified.
    Exchanged,
}

impl Acceptance {
    /// `Verified`, `Grace` or `Exchanged`: the `kind` label of an accepted message's metric.
    pub fn as_str(self) -> &'static str {
        match self {
            Acceptance::Verified => "Verified",
            Acceptance::Grace => "Grace",
            Acceptance::Exchanged => "Exchanged",
        }
    }
}

/// A verified identity: the raw token (to propagate it), its claims, the
/// key that verified it, and its issuer's configuration. Cheap to clone.
/// `Debug` never shows the token.
#[derive(Clone)]
pub struct AuthContext {
    token: Arc<str>,
    verified: Arc<Verified>,
    acceptance: Acceptance,
}

impl AuthContext {
    pub(crate) fn new(token: &str, verified: Arc<Verified>) -> Self {
        AuthContext {
            token: Arc::from(token),
            verified,
            acceptance: Acceptance::Verified,
        }
    }

    /// The token, shared rather than copied: the verified-token cache's key.
    pub(crate) fn shared_token(&self) -> Arc<str> {
        self.token.clone()
    }

    /// Marks an expired token as accepted by an expiry policy: a publish
    /// from its handler must exchange it, never forward it.
    pub fn into_grace(mut self) -> Self {
        self.acceptance = Acceptance::Grace;
        self
    }

    pub(crate) fn into_exchanged(mut self) -> Self {
        self.acceptance = Acceptance::Exchanged;
        self
    }

    /// How this context was accepted: verified, under grace, or exchanged.
    pub fn acceptance(&self) -> Acceptance {
        self.acceptance
    }

    /// The services that acted for the subject (RFC 8693 §4.1 `act`), the
    /// most recent first. Empty when the token has no `act` claim.
    pub fn actors(&self) -> Vec<Actor> {
        let mut actors = Vec::new();
        let mut next = self.verified.claims.get("act");
        while let Some(Value::Object(act)) = next {
            let text = |name: &str| act.get(name).and_then(Value::as_str).map(str::to_owned);
            actors.push(Actor {
                subject: text("sub"),
                issuer: text("iss"),
            });
            next = act.get("act");
        }
        actors
    }

    /// The raw token, to forward downstream. Never log it.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The verified claims.
    pub fn claims(&self) -> &Claims {
        &self.verified.claims
    }

    /// `sub`: usually the end user.
    pub fn subject(&self) -> Option<&str> {
        self.verified.claims.subject()
    }

    /// `iss`: who issued the token.
    pub fn issuer(&self) -> &str {
        self.verified.claims.issuer()
    }

    /// The key id that verified the signature, if the token named one.
    pub fn kid(&self) -> Option<&str> {
        self.verified.kid.as_deref()
    }

    /// The algorithm that verified the signature.
    pub fn algorithm(&self) -> Algorithm {
        self.verified.alg
    }

    /// The configuration of the token's issuer.
    pub fn issuer_config(&self) -> &Issuer {
        &self.verified.issuer
    }

    /// The claim set deserialised into the caller's own type.
    pub fn deserialize_claims<T: DeserializeOwned>(&self) -> Result<T> {
        self.verified.claims.deserialize()
    }
}

impl fmt::Debug for AuthContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let claims = &self.verified.claims;
        f.debug_struct("AuthContext")
            .field("token", &"[redacted]")
            .field("iss", &claims.issuer())
            .field("sub", &claims.subject())
            .field("aud", &claims.audience())
            .field("exp", &claims.expires_at())
            .field("kid", &self.verified.kid)
            .field("alg", &self.verified.alg)
            .field("acceptance", &self.acceptance)
            .finish()
    }
}

/// One party in a delegation chain (an `act` claim).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The actor's `sub`, usually a service's client id.
    pub subject: Option<String>,
    /// The actor's `iss`, when given.
    pub issuer: Option<String>,
}
