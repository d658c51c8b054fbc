//! Token exchange (RFC 8693): trading a token for a fresh one, or for one
//! meant for another audience.

mod cache;
mod client;
mod issued;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::Result;

pub use cache::ExchangeCache;
#[cfg(feature = "fuzzing")]
pub(crate) use client::read_answer;
pub use client::{ClientAuth, Rfc8693Client, Rfc8693ClientBuilder};
pub(crate) use issued::{Recipient, verify_issued};

/// `urn:ietf:params:oauth:token-type:access_token`.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// `urn:ietf:params:oauth:token-type:jwt`.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// Trades a token for another. Object-safe, so a [`Propagator`](crate::Propagator)
/// and the [`Exchange`](crate::Exchange) policy can share one behind an `Arc`; an `Arc` or a
/// `Box` of an exchanger is an exchanger too.
pub trait TokenExchanger: Send + Sync + fmt::Debug {
    /// Performs one exchange. Errors are classed:
    /// [`ExchangeDenied`](crate::ErrorKind::ExchangeDenied) (permanent: the
    /// service refused this token),
    /// [`ExchangeUnavailable`](crate::ErrorKind::ExchangeUnavailable)
    /// (transient), and, both of class configuration,
    /// [`ExchangeUnauthorized`](crate::ErrorKind::ExchangeUnauthorized) (the
    /// service refused our client) and
    /// [`Configuration`](crate::ErrorKind::Configuration) or
    /// [`InvalidKey`](crate::ErrorKind::InvalidKey) (our side is wrong: a
    /// malformed request, an endpoint that is not a token endpoint, a
    /// client key that cannot sign, no crypto backend).
    fn exchange<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> Pin<Box<dyn Future<Output = Result<IssuedToken>> + Send + 'a>>;
}

impl<T: TokenExchanger + ?Sized> TokenExchanger for Arc<T> {
    fn exchange<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> Pin<Box<dyn Future<Output = Result<IssuedToken>> + Send + 'a>> {
        (**self).exchange(request)
    }
}

impl<T: TokenExchanger + ?Sized> TokenExchanger for Box<T> {
    fn exchange<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> Pin<Box<dyn Future<Output = Result<IssuedToken>> + Send + 'a>> {
        (**self).exchange(request)
    }
}

/// An RFC 8693 §2.1 request. `Debug` never shows the tokens.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ExchangeRequest {
    /// The token to exchange.
    pub subject_token: String,
    /// Its type (default [`ACCESS_TOKEN_TYPE`]).
    pub subject_token_type: String,
    /// The acting party's own token, for delegation.
    pub actor_token: Option<String>,
    /// The actor token's type.
    pub actor_token_type: Option<String>,
    /// The audiences the new token is for.
    pub audience: Vec<String>,
    /// The resources (URIs) the new token is for.
    pub resource: Vec<String>,
    /// The scope requested.
    pub scope: Option<String>,
    /// The type of token wanted back.
    pub requested_token_type: Option<String>,
}

impl ExchangeRequest {
    /// A request to exchange this access token.
    pub fn new(subject_token: impl Into<String>) -> Self {
        ExchangeRequest {
            subject_token: subject_token.into(),
            subject_token_type: ACCESS_TOKEN_TYPE.to_owned(),
            actor_token: None,
            actor_token_type: None,
            audience: Vec::new(),
            resource: Vec::new(),
            scope: None,
            requested_token_type: None,
        }
    }

    /// Adds an audience.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience.push(audience.into());
        self
    }

    /// Adds a resource: the URI of a service the new token is for
    /// (RFC 8707).
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource.push(resource.into());
        self
    }

    /// Sets the scope.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Asks for this type of token back (e.g. [`JWT_TOKEN_TYPE`]).
    pub fn requested_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.requested_token_type = Some(token_type.into());
        self
    }

    /// Names the acting party with its own token.
    pub fn actor(mut self, actor_token: impl Into<String>, actor_token_type: impl Into<String>) -> Self {
        self.actor_token = Some(actor_token.into());
        self.actor_token_type = Some(actor_token_type.into());
        self
    }
}

impl fmt::Debug for ExchangeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeRequest")
            .field("subject_token", &"[redacted]")
            .field("subject_token_type", &self.subject_token_type)
            .field("actor_token", &self.actor_token.as_ref().map(|_| "[redacted]"))
            .field("audience", &self.audience)
            .field("resource", &self.resource)
            .field("scope", &self.scope)
            .field("requested_token_type", &self.requested_token_type)
            .finish()
    }
}

/// An RFC 8693 §2.2.1 response. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The new token.
    pub access_token: String,
    /// Its type, as the server says (`issued_token_type`).
    pub issued_token_type: Option<String>,
    /// How to use it (`token_type`, usually `Bearer` or `N_A`).
    pub token_type: String,
    /// Its lifetime in seconds, if the server said.
    pub expires_in: Option<u64>,
    /// The scope granted, if it differs from the one requested.
    pub scope: Option<String>,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("access_token", &"[redacted]")
            .field("issued_token_type", &self.issued_token_type)
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}
