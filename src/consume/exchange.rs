//! The `Exchange` expiry policy: trade the expired token for a fresh one.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::backoff::Backoff;
use crate::consume::policy::{ExpiredToken, ExpiryPolicy, Outcome};
use crate::error::{Error, ErrorClass};
use crate::exchange::{ExchangeRequest, Recipient, TokenExchanger, verify_issued};

/// Redeliveries of one message while the token service gives no token, by default.
const DEFAULT_MAX_RETRIES: u32 = 10;

/// Exchanges an expired token for a fresh one through a
/// [`TokenExchanger`], and continues with the fresh token, so downstream
/// publishes carry it. The context is marked
/// [`Acceptance::Exchanged`](crate::Acceptance).
///
/// What the token service issued is checked before it is used: `token_type`
/// must be `Bearer` or `N_A` and `issued_token_type`, when the service
/// gives it, the type asked for
/// ([`ExchangeWrongTokenType`](crate::ErrorKind::ExchangeWrongTokenType));
/// the token must verify like any other here (signed by an issuer the
/// verifier trusts, for this service's audience, in time); and it must name
/// the same end user (`sub`) as the expired token
/// ([`ExchangeWrongSubject`](crate::ErrorKind::ExchangeWrongSubject)). Each
/// failure is permanent: the message is dead-lettered.
///
/// A failure is decided by its class: a refusal of this token (or of what
/// was issued for it) dead-letters the message; a refusal of our client
/// halts the consumer; anything transient (the service down, or an answer
/// that does not say what is wrong) redelivers the message after the
/// [`backoff`](Self::backoff) (or the service's `Retry-After`), at most
/// [`max_retries`](Self::max_retries) times; the next transient failure
/// dead-letters it with the transient error as the reason, so it can be
/// replayed once the service is back.
///
/// Token services differ: Keycloak refuses an expired subject token
/// (`invalid_grant` → the message is dead-lettered), others accept one
/// within a window. With a service that refuses, exchange *before* the
/// token dies: set [`refresh_ahead`](crate::publish::PropagatorBuilder::refresh_ahead)
/// on the publishing side so messages leave with a token that outlives
/// their wait.
#[derive(Debug, Clone)]
pub struct Exchange {
    exchanger: Arc<dyn TokenExchanger>,
    audiences: Vec<String>,
    scope: Option<String>,
    backoff: Backoff,
    max_retries: u32,
}

impl Exchange {
    /// Exchanges through `exchanger`. Wrap it in an
    /// [`ExchangeCache`](crate::exchange::ExchangeCache) so a burst of messages with
    /// one token makes one call.
    pub fn new(exchanger: Arc<dyn TokenExchanger>) -> Self {
        Exchange {
            exchanger,
            audiences: Vec::new(),
            scope: None,
            backoff: Backoff::default(),
            max_retries: DEFAULT_MAX_RETRIES,
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

    /// The wait before a message is redelivered after a transient failure
    /// that did not say how long to wait (`Retry-After`), by the number of
    /// deliveries so far (1 s doubling to 1 min, jittered).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The same wait before every redelivery after a transient failure
    /// (`backoff(Backoff::new(delay, delay))`).
    pub fn retry_delay(self, delay: Duration) -> Self {
        self.backoff(Backoff::new(delay, delay))
    }

    /// How many times one message is redelivered after transient failures
    /// before the next one dead-letters it (10; with the default backoff,
    /// about 2.5 to 5 minutes of waiting, plus the client's own attempts).
    /// Counted from the message's deliveries (the `attempt` of its
    /// [`MessageInfo`](crate::consume::MessageInfo)).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The outcome of a failure on the message's delivery number `attempt` (0 the first).
    fn failed(&self, error: Error, attempt: u32) -> Outcome {
        if error.class() == ErrorClass::Transient && attempt >= self.max_retries {
            let message = format!(
                "{}; given up after {} deliveries",
                error.message(),
                attempt.saturating_add(1)
            );
            return Outcome::Reject(Error::new(error.kind(), message).with_source(error));
        }
        Outcome::from_error(error, self.backoff.delay(attempt))
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
            Err(e) => return self.failed(e, expired.attempt()),
        };
        // The fresh token was issued after `expired.now()`: checked against that time, its `iat`
        // could be a second in the future.
        let now = SystemTime::now().max(expired.now());
        let verifier = expired.verifier();
        match verify_issued(verifier, &request, &issued, context, Recipient::Here, now).await {
            Ok(fresh) => Outcome::Accept(fresh.into_exchanged()),
            Err(e) => self.failed(e, expired.attempt()),
        }
    }
}
