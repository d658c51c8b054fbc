//! The publish side: which token a message leaves with.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::Instrument as _;

use crate::carrier::Injector;
use crate::carrier::token_header::TokenHeader;
use crate::exchange::{ExchangeRequest, Recipient, TokenExchanger, verify_issued};
use crate::publish::ambient::current;
use crate::publish::error::{PublishError, PublishErrorKind};
use crate::verify::context::{Acceptance, AuthContext};
use crate::verify::verifier::{Verifier, now_unix};

/// Chooses the token a published message carries and writes it into the
/// message's headers: the explicit context if given, else the ambient one
/// ([`current`](crate::current)), else [`PublishErrorKind::NoIdentity`]
/// (or no header at all, when anonymous messages are allowed).
///
/// By default the token is forwarded unchanged, and every hop verifies the
/// original. Per destination it can be exchanged for a token whose audience
/// is the destination service, so no service receives a token meant for
/// another; and a token about to expire can be exchanged before it leaves.
///
/// An exchanged token leaves only once it has been checked, like the
/// [`Exchange`](crate::Exchange) policy checks one: the answer's
/// `token_type` and `issued_token_type`, the token's signature by an issuer
/// the [`verifier`](PropagatorBuilder::verifier) trusts and its time, the
/// audience asked for (not this service's), and the same end user (`sub`)
/// as the token it replaces. Otherwise the publish fails with
/// [`PublishErrorKind::Exchange`], whose
/// [`exchange_error`](PublishError::exchange_error) says what was wrong.
#[derive(Debug, Clone)]
pub struct Propagator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    header: TokenHeader,
    exchange: Option<Exchanging>,
    audiences: HashMap<String, String>,
    refresh_ahead: Option<Duration>,
    allow_anonymous: bool,
}

/// The exchanger, and the verifier that checks what it issues.
#[derive(Debug)]
struct Exchanging {
    exchanger: Arc<dyn TokenExchanger>,
    verifier: Verifier,
}

/// Builds a [`Propagator`].
#[derive(Debug, Default)]
pub struct PropagatorBuilder {
    header: TokenHeader,
    exchanger: Option<Arc<dyn TokenExchanger>>,
    verifier: Option<Verifier>,
    audiences: HashMap<String, String>,
    refresh_ahead: Option<Duration>,
    allow_anonymous: bool,
}

impl Default for Propagator {
    fn default() -> Self {
        Propagator::builder().build_unchecked()
    }
}

impl Propagator {
    /// Starts a propagator: forwarding, `Authorization: Bearer`.
    pub fn builder() -> PropagatorBuilder {
        PropagatorBuilder::default()
    }

    /// The header written.
    pub fn token_header(&self) -> &TokenHeader {
        &self.inner.header
    }

    /// The token a message to `destination` leaves with; `None` for an
    /// anonymous message (no header is written then).
    ///
    /// Runs in a `jwt_relay.publish` span whose `token` field says what was
    /// chosen: `forwarded`, `exchanged`, `none`, or `error`.
    pub async fn token_for(
        &self,
        destination: &str,
        explicit: Option<&AuthContext>,
    ) -> Result<Option<String>, PublishError> {
        let span = tracing::info_span!("jwt_relay.publish", destination, token = tracing::field::Empty);
        let chosen = self.choose(destination, explicit).instrument(span.clone()).await;
        let (token, label) = match chosen {
            Ok((token, label)) => (Ok(token), label),
            Err(e) => (Err(e), "error"),
        };
        span.record("token", label);
        token
    }

    /// The token and how it was chosen.
    async fn choose(
        &self,
        destination: &str,
        explicit: Option<&AuthContext>,
    ) -> Result<(Option<String>, &'static str), PublishError> {
        let inner = &self.inner;
        let Some(context) = explicit.cloned().or_else(current) else {
            if inner.allow_anonymous {
                return Ok((None, "none"));
            }
            return Err(PublishError::new(
                PublishErrorKind::NoIdentity,
                format!(
                    "no identity to publish to `{destination}`: pass a context, or publish from a handler \
                     (jwt_relay::scope)"
                ),
            ));
        };
        let audience = inner.audiences.get(destination);
        let expiring = inner.refresh_ahead.is_some_and(|horizon| {
            context
                .claims()
                .expires_at()
                .is_some_and(|exp| exp.saturating_sub(now_unix()) < horizon.as_secs() as i64)
        });
        let grace = context.acceptance() == Acceptance::Grace;
        if audience.is_none() && !grace && !expiring {
            return Ok((Some(context.token().to_owned()), "forwarded"));
        }
        let Some(exchanging) = &inner.exchange else {
            return Err(PublishError::new(
                PublishErrorKind::GraceNotForwardable,
                format!(
                    "the token of `{}` was accepted under grace and cannot be forwarded to `{destination}` \
                     as-is; configure an exchanger on the propagator",
                    context.subject().unwrap_or("?")
                ),
            ));
        };
        let mut request = ExchangeRequest::new(context.token());
        request.audience.extend(audience.cloned());
        let failed = |e: crate::Error, what: String| {
            PublishError::new(PublishErrorKind::Exchange, format!("{what}: {e}")).with_source(e)
        };
        let issued = exchanging
            .exchanger
            .exchange(&request)
            .await
            .map_err(|e| failed(e, format!("exchanging the token for `{destination}` failed")))?;
        let next_hop = Recipient::NextHop(&request.audience);
        let now = SystemTime::now();
        verify_issued(&exchanging.verifier, &request, &issued, &context, next_hop, now)
            .await
            .map_err(|e| {
                failed(
                    e,
                    format!("the token exchanged for `{destination}` is not sent on"),
                )
            })?;
        Ok((Some(issued.access_token), "exchanged"))
    }

    /// Writes `token` (from [`token_for`](Self::token_for)) into the
    /// carrier; nothing for `None`. With the `opentelemetry` feature, also the
    /// current span's trace context (`traceparent`).
    pub fn write(&self, carrier: &mut dyn Injector, token: Option<&str>) -> Result<(), PublishError> {
        let Some(token) = token else {
            return Ok(());
        };
        self.inner
            .header
            .inject(carrier, token)
            .map_err(|e| PublishError::new(PublishErrorKind::Inject, e.to_string()).with_source(e))?;
        crate::observe::trace_context::inject(carrier);
        Ok(())
    }

    /// [`token_for`](Self::token_for) then [`write`](Self::write).
    pub async fn inject(
        &self,
        destination: &str,
        explicit: Option<&AuthContext>,
        carrier: &mut (dyn Injector + Send),
    ) -> Result<(), PublishError> {
        let token = self.token_for(destination, explicit).await?;
        self.write(carrier, token.as_deref())
    }
}

impl PropagatorBuilder {
    /// The header to write (`Authorization: Bearer` by default).
    pub fn token_header(mut self, header: TokenHeader) -> Self {
        self.header = header;
        self
    }

    /// The exchanger used for per-destination audiences, refresh-ahead, and
    /// tokens accepted under grace. Wrap it in an
    /// [`ExchangeCache`](crate::exchange::ExchangeCache). Needs a
    /// [`verifier`](Self::verifier).
    pub fn exchanger(mut self, exchanger: Arc<dyn TokenExchanger>) -> Self {
        self.exchanger = Some(exchanger);
        self
    }

    /// The verifier that checks each exchanged token before it leaves: its
    /// issuer must be one this verifier trusts, under that issuer's keys
    /// and rules, except that the token is for the audience asked for
    /// rather than this service's. Usually the verifier of this service's
    /// consumers.
    pub fn verifier(mut self, verifier: Verifier) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Messages to `destination` carry a token exchanged for `audience`.
    pub fn audience_for(mut self, destination: impl Into<String>, audience: impl Into<String>) -> Self {
        self.audiences.insert(destination.into(), audience.into());
        self
    }

    /// A token that expires within `horizon` is exchanged before it is
    /// published, so a message does not leave carrying a dying token.
    pub fn refresh_ahead(mut self, horizon: Duration) -> Self {
        self.refresh_ahead = Some(horizon);
        self
    }

    /// With no identity, publish without a token header instead of failing.
    pub fn allow_anonymous(mut self) -> Self {
        self.allow_anonymous = true;
        self
    }

    /// Checks the configuration: audiences and refresh-ahead need an
    /// exchanger, and an exchanger needs a verifier.
    pub fn build(self) -> crate::Result<Propagator> {
        let config = |what: &str| Err(crate::Error::new(crate::ErrorKind::Configuration, what));
        if self.exchanger.is_none() && (!self.audiences.is_empty() || self.refresh_ahead.is_some()) {
            return config("per-destination audiences and refresh-ahead need an exchanger");
        }
        if self.exchanger.is_some() && self.verifier.is_none() {
            return config(
                "an exchanger needs a verifier (`PropagatorBuilder::verifier`) to check each token it issues \
                 before it is published",
            );
        }
        Ok(self.build_unchecked())
    }

    /// Builds without checking: an exchanger without a verifier is dropped.
    fn build_unchecked(self) -> Propagator {
        let exchange = self
            .exchanger
            .zip(self.verifier)
            .map(|(exchanger, verifier)| Exchanging { exchanger, verifier });
        Propagator {
            inner: Arc::new(Inner {
                header: self.header,
                exchange,
                audiences: self.audiences,
                refresh_ahead: self.refresh_ahead,
                allow_anonymous: self.allow_anonymous,
            }),
        }
    }
}
