//! The `Exchange` expiry policy: trade the expired token for a fresh one.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::exchange::{ExchangeRequest, TokenExchanger};
use crate::policy::{ExpiredToken, ExpiryPolicy, Outcome};

/// Exchanges an expired token for a fresh one through a
/// [`TokenExchanger`], verifies the fresh token like any other, and
/// continues with it, so downstream publishes carry the fresh token. The
/// context is marked [`Acceptance::Exchanged`](crate::Acceptance).
///
/// Token services differ: Keycloak refuses an expired subject token
/// (`invalid_grant` → the message is dead-lettered), others accept one
/// within a window. With a service that refuses, exchange *before* the
/// token dies: set [`refresh_ahead`](crate::PropagatorBuilder::refresh_ahead)
/// on the publishing side so messages leave with a token that outlives
/// their wait.
#[derive(Debug, Clone)]
pub struct Exchange {
    exchanger: Arc<dyn TokenExchanger>,
    audiences: Vec<String>,
    scope: Option<String>,
    retry_delay: Duration,
}

impl Exchange {
    /// Exchanges through `exchanger`. Wrap it in an
    /// [`ExchangeCache`](crate::ExchangeCache) so a burst of messages with
    /// one token makes one call.
    pub fn new(exchanger: Arc<dyn TokenExchanger>) -> Self {
        Exchange {
            exchanger,
            audiences: Vec::new(),
            scope: None,
            retry_delay: Duration::from_secs(1),
        }
    }

    /// An audience to ask for; call again for more (default: the first
    /// audience this consumer accepts for the token's issuer, so the fresh
    /// token verifies here). Ask for the next hops' audiences too when this
    /// service forwards the fresh token.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The scope to ask for.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// How long to wait before retrying when the token service is down and
    /// did not say (`Retry-After`) (1 s).
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }
}

impl ExpiryPolicy for Exchange {
    async fn decide(&self, expired: ExpiredToken) -> Outcome {
        let context = expired.context();
        let mut request = ExchangeRequest::new(context.token());
        if self.audiences.is_empty() {
            request
                .audience
                .extend(context.issuer_config().audiences().first().cloned());
        } else {
            request.audience.extend(self.audiences.iter().cloned());
        }
        request.scope = self.scope.clone();
        let issued = match self.exchanger.exchange(&request).await {
            Ok(issued) => issued,
            Err(e) => return Outcome::from_error(e, self.retry_delay),
        };
        // The fresh token was issued after `expired.now()`: checked against that time, its `iat`
        // could be a second in the future.
        let now = SystemTime::now().max(expired.now());
        match expired.verifier().verify_at(&issued.access_token, now).await {
            Ok(fresh) => Outcome::Accept(fresh.into_exchanged()),
            Err(e) => Outcome::from_error(e, self.retry_delay),
        }
    }
}
