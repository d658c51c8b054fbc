//! The verified identity a handler receives.

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde::de::DeserializeOwned;

use crate::claims::Claims;
use crate::error::Result;
use crate::issuer::Issuer;

/// What verification established about a token: shared between every
/// message that carries the same token.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) claims: Claims,
    pub(crate) kid: Option<String>,
    pub(crate) alg: Algorithm,
    pub(crate) issuer: Arc<Issuer>,
}

/// A verified identity: the raw token (to propagate it), its claims, the
/// key that verified it, and its issuer's configuration. Cheap to clone.
/// `Debug` never shows the token.
#[derive(Clone)]
pub struct AuthContext {
    token: Arc<str>,
    verified: Arc<Verified>,
}

impl AuthContext {
    pub(crate) fn new(token: &str, verified: Arc<Verified>) -> Self {
        AuthContext {
            token: Arc::from(token),
            verified,
        }
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
            .finish()
    }
}
