//! The consume side: extract, verify, ask the expiry policy, and decide.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use crate::backoff::Backoff;
use crate::carrier::Extractor;
use crate::consume::dead_letter::Redaction;
use crate::consume::policy::{DynPolicy, ExpiredToken, ExpiryPolicy, Outcome, PublishTime, Reject};
use crate::error::ErrorKind;
use crate::verify::context::{Acceptance, AuthContext};
use crate::verify::verifier::{Verifier, unix_seconds};
use tracing::Span;

/// What the Guard needs to know about a message besides its headers. It borrows the
/// destination's name: deciding on a message allocates nothing for it.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageInfo<'a> {
    /// Where it was consumed from: topic, queue or subject.
    pub destination: &'a str,
    /// When it was published, and who set that time.
    pub published: Option<PublishTime>,
    /// How many times it was delivered before (0 the first time), for backoff.
    pub attempt: u32,
}

impl<'a> MessageInfo<'a> {
    /// A message from `destination`, first delivery, publish time unknown.
    pub fn new(destination: &'a str) -> Self {
        MessageInfo {
            destination,
            ..MessageInfo::default()
        }
    }

    /// Sets the publish time.
    pub fn published(mut self, published: PublishTime) -> Self {
        self.published = Some(published);
        self
    }

    /// Sets the delivery attempt (0 the first time).
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }
}

/// Turns a message's headers into exactly one [`Outcome`]: extract →
/// verify → on `Expired`, the expiry policy (per destination, else per
/// issuer, else the default, [`Reject`]). Adapters map the outcome onto
/// their broker and nothing else. Cheap to clone.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

struct Inner {
    verifier: Verifier,
    default: Arc<dyn DynPolicy>,
    by_issuer: HashMap<String, Arc<dyn DynPolicy>>,
    by_destination: HashMap<String, Arc<dyn DynPolicy>>,
    backoff: Backoff,
    record_subject: bool,
    redaction: Redaction,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("verifier", &self.inner.verifier)
            .field(
                "issuer_policies",
                &self.inner.by_issuer.keys().collect::<Vec<_>>(),
            )
            .field(
                "destination_policies",
                &self.inner.by_destination.keys().collect::<Vec<_>>(),
            )
            .field("backoff", &self.inner.backoff)
            .field("record_subject", &self.inner.record_subject)
            .field("redaction", &self.inner.redaction)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Guard`].
pub struct GuardBuilder {
    inner: Inner,
}

impl std::fmt::Debug for GuardBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardBuilder").finish_non_exhaustive()
    }
}

impl Guard {
    /// A guard that rejects expired tokens.
    pub fn new(verifier: Verifier) -> Guard {
        Guard::builder(verifier).build()
    }

    /// Starts a guard over this verifier.
    pub fn builder(verifier: Verifier) -> GuardBuilder {
        GuardBuilder {
            inner: Inner {
                default: Arc::new(Reject),
                by_issuer: HashMap::new(),
                by_destination: HashMap::new(),
                backoff: Backoff::default(),
                record_subject: false,
                redaction: Redaction::new(verifier.token_header().clone()),
                verifier,
            },
        }
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }

    /// The backoff used for transient failures.
    pub fn backoff(&self) -> Backoff {
        self.inner.backoff
    }

    /// What dead-lettered copies leave out: the verifier's token header
    /// (kept when `keep_token`) and the
    /// [credential headers](GuardBuilder::credential_headers).
    pub fn redaction(&self, keep_token: bool) -> Redaction {
        self.inner.redaction.clone().keep_token(keep_token)
    }

    /// Writes who the token is from into the message's span: issuer, key id,
    /// token age (from `iat`), and the subject if asked to.
    fn record_identity(&self, span: &Span, context: &AuthContext, now: SystemTime) {
        span.record("issuer", context.issuer());
        if let Some(kid) = context.kid() {
            span.record("kid", kid);
        }
        if let Some(iat) = context.claims().issued_at() {
            span.record("token_age_s", unix_seconds(now).saturating_sub(iat));
        }
        if self.inner.record_subject
            && let Some(subject) = context.subject()
        {
            span.record("subject", subject);
        }
    }

    /// Decides on one message. A token the verifier has cached is decided before anything
    /// waits, without copying it; any other is copied out of the headers first, so the future
    /// is `Send` whatever the carrier.
    pub fn check<'a>(
        &'a self,
        headers: &dyn Extractor,
        info: &'a MessageInfo<'a>,
    ) -> impl Future<Output = Outcome> + Send + 'a {
        let now = SystemTime::now();
        let verified = self.inner.verifier.verify_headers_at(headers, now);
        async move {
            let span = Span::current();
            let error = match verified.await {
                Ok(context) => {
                    self.record_identity(&span, &context, now);
                    return Outcome::Accept(context);
                }
                Err(e) if e.kind() == ErrorKind::Expired => e,
                Err(e) => return Outcome::from_error(e, self.inner.backoff.delay(info.attempt)),
            };
            self.expired(error, info, now, &span).await
        }
    }

    /// Asks the expiry policy about a token that verified but has expired.
    async fn expired(
        &self,
        error: crate::Error,
        info: &MessageInfo<'_>,
        now: SystemTime,
        span: &Span,
    ) -> Outcome {
        let inner = &self.inner;
        let message = error.message().to_owned();
        let Some(context) = error.into_expired_context() else {
            return Outcome::Reject(crate::Error::new(ErrorKind::Expired, message));
        };
        self.record_identity(span, &context, now);
        let policy = inner
            .by_destination
            .get(info.destination)
            .or_else(|| inner.by_issuer.get(context.issuer()))
            .unwrap_or(&inner.default)
            .clone();
        let token = context.shared_token();
        let expired = ExpiredToken {
            message,
            context,
            published: info.published,
            now,
            destination: info.destination.to_owned(),
            attempt: info.attempt,
            verifier: inner.verifier.clone(),
        };
        let outcome = match policy.decide_boxed(expired).await {
            // A policy that lets the expired token itself through accepts it under grace.
            Outcome::Accept(ctx) if *ctx.token() == *token && ctx.acceptance() == Acceptance::Verified => {
                Outcome::Accept(ctx.into_grace())
            }
            outcome => outcome,
        };
        span.record("policy", policy_label(&outcome));
        outcome
    }
}

impl GuardBuilder {
    /// The policy for expired tokens not covered by a more specific one.
    pub fn policy(mut self, policy: impl ExpiryPolicy) -> Self {
        self.inner.default = Arc::new(policy);
        self
    }

    /// The policy for expired tokens of this issuer.
    pub fn issuer_policy(mut self, issuer: impl Into<String>, policy: impl ExpiryPolicy) -> Self {
        self.inner.by_issuer.insert(issuer.into(), Arc::new(policy));
        self
    }

    /// The policy for expired tokens on messages from this destination
    /// (it wins over the issuer's).
    pub fn destination_policy(mut self, destination: impl Into<String>, policy: impl ExpiryPolicy) -> Self {
        self.inner
            .by_destination
            .insert(destination.into(), Arc::new(policy));
        self
    }

    /// The backoff for transient failures that do not say how long to wait.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.inner.backoff = backoff;
        self
    }

    /// Writes each accepted token's subject into the message's
    /// `jwt_relay.consume` span (off by default: a subject identifies a
    /// person, and traces are widely read). Never in metrics.
    pub fn record_subject(mut self, record: bool) -> Self {
        self.inner.record_subject = record;
        self
    }

    /// The headers, besides the token header, that no dead-lettered copy
    /// carries, in any casing ([`CREDENTIAL_HEADERS`](crate::consume::CREDENTIAL_HEADERS)
    /// by default: `Authorization`, `Proxy-Authorization`,
    /// `X-Forwarded-Authorization`, `Txn-Token`, `Cookie`). This replaces the
    /// list.
    pub fn credential_headers(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.inner.redaction = self.inner.redaction.credentials(names);
        self
    }

    /// Builds the guard.
    pub fn build(self) -> Guard {
        Guard {
            inner: Arc::new(self.inner),
        }
    }
}

/// What the expiry policy did, for the `policy` field of the message's span.
fn policy_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Accept(ctx) if ctx.acceptance() == Acceptance::Exchanged => "exchanged",
        Outcome::Accept(_) => "grace",
        Outcome::Reject(_) => "reject",
        Outcome::Retry(..) => "retry",
        Outcome::Halt(_) => "halt",
    }
}
