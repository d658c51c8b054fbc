//! The expiry policy hook: what happens to a token that verified but expired
//! on its way through the broker.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use crate::error::{Error, ErrorClass};
use crate::verify::context::AuthContext;
use crate::verify::verifier::{Verifier, unix_seconds};

/// What a consumer does with a message: the only four outcomes adapters
/// map onto broker operations.
#[derive(Debug)]
pub enum Outcome {
    /// Run the handler with this identity, then acknowledge.
    Accept(AuthContext),
    /// The message is bad: dead-letter it with this reason.
    Reject(Error),
    /// A dependency is down: redeliver after this delay; never drop.
    Retry(Error, Duration),
    /// Our setup is wrong: stop consuming and report.
    Halt(Error),
}

/// Who set a message's publish time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampSource {
    /// The broker stamped it on arrival (Kafka `LogAppendTime`, JetStream
    /// metadata): the publisher cannot choose it.
    Broker,
    /// The publishing client set it (Kafka `CreateTime`, the AMQP
    /// `timestamp` property): the publisher chooses it.
    Client,
}

/// When a message was published, and who says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishTime {
    /// The publish time.
    pub at: SystemTime,
    /// Who set it.
    pub source: TimestampSource,
}

impl PublishTime {
    /// A time stamped by the broker.
    pub fn broker(at: SystemTime) -> Self {
        PublishTime {
            at,
            source: TimestampSource::Broker,
        }
    }

    /// A time set by the publishing client.
    pub fn client(at: SystemTime) -> Self {
        PublishTime {
            at,
            source: TimestampSource::Client,
        }
    }
}

/// A token whose signature, issuer and audience verified but whose `exp`
/// has passed, with what a policy needs to decide.
#[derive(Clone)]
pub struct ExpiredToken {
    pub(crate) message: String,
    pub(crate) context: AuthContext,
    pub(crate) published: Option<PublishTime>,
    pub(crate) now: SystemTime,
    pub(crate) destination: String,
    pub(crate) attempt: u32,
    pub(crate) verifier: Verifier,
}

impl fmt::Debug for ExpiredToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpiredToken")
            .field("context", &self.context)
            .field("published", &self.published)
            .field("destination", &self.destination)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl ExpiredToken {
    /// The verified (but expired) identity.
    pub fn context(&self) -> &AuthContext {
        &self.context
    }

    /// When the message was published, if the broker said.
    pub fn published(&self) -> Option<PublishTime> {
        self.published
    }

    /// The time of the decision.
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// Where the message was consumed from (topic, queue, subject).
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// How many times the message was delivered before (0 the first time):
    /// a policy that retries bounds its retries with it.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The verifier that judged the token, to verify a replacement with.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The `Expired` error, for a policy that refuses.
    pub fn reject(self) -> Outcome {
        Outcome::Reject(Error::expired(self.context, self.message))
    }

    /// Accepts the expired token as it is, marked as accepted under grace.
    pub fn accept_under_grace(self) -> Outcome {
        Outcome::Accept(self.context.into_grace())
    }

    /// The `exp` of the token, in Unix seconds.
    pub(crate) fn expires_at(&self) -> i64 {
        self.context.claims().expires_at().unwrap_or(i64::MIN)
    }
}

/// Decides what happens to an expired token. Called only for tokens whose
/// signature, issuer and audience verified. Closures work too:
///
/// ```
/// use jwt_relay::consume::{ExpiredToken, Outcome};
/// let reject_all = |expired: ExpiredToken| async move { expired.reject() };
/// # fn is_policy(_: impl jwt_relay::consume::ExpiryPolicy) {}
/// # is_policy(reject_all);
/// ```
pub trait ExpiryPolicy: Send + Sync + 'static {
    /// Decides on one expired token.
    fn decide(&self, expired: ExpiredToken) -> impl Future<Output = Outcome> + Send;

    /// Tries `self`, and `other` when `self` rejects.
    fn or<P: ExpiryPolicy>(self, other: P) -> Or<Self, P>
    where
        Self: Sized,
    {
        Or {
            first: self,
            second: other,
        }
    }
}

impl<F, Fut> ExpiryPolicy for F
where
    F: Fn(ExpiredToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send,
{
    fn decide(&self, expired: ExpiredToken) -> impl Future<Output = Outcome> + Send {
        self(expired)
    }
}

/// The default: an expired token is rejected.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reject;

impl ExpiryPolicy for Reject {
    async fn decide(&self, expired: ExpiredToken) -> Outcome {
        expired.reject()
    }
}

/// Accepts a token that was valid when its message was published (publish
/// time ≤ `exp` + the issuer's leeway) while the message is younger than
/// `max_age`. Needs a broker-set timestamp unless told to trust the
/// client's. The context is marked [`Acceptance::Grace`](crate::Acceptance):
/// a downstream publish must exchange it.
#[derive(Debug, Clone, Copy)]
pub struct Grace {
    max_age: Duration,
    trust_client_timestamps: bool,
}

impl Grace {
    /// Grace for messages younger than `max_age`.
    pub fn new(max_age: Duration) -> Self {
        Grace {
            max_age,
            trust_client_timestamps: false,
        }
    }

    /// Also trusts publish times set by the publishing client, which a
    /// publisher holding an expired token could backdate.
    pub fn trust_client_timestamps(mut self) -> Self {
        self.trust_client_timestamps = true;
        self
    }

    /// The decision, without waiting for anything.
    pub fn judge(&self, expired: ExpiredToken) -> Outcome {
        let Some(published) = expired.published else {
            return expired.reject();
        };
        if published.source == TimestampSource::Client && !self.trust_client_timestamps {
            return expired.reject();
        }
        let published_at = unix_seconds(published.at);
        let leeway = expired.context.issuer_config().leeway.as_secs() as i64;
        let valid_when_published = published_at < expired.expires_at().saturating_add(leeway);
        let age = expired.now.duration_since(published.at).unwrap_or(Duration::ZERO);
        if valid_when_published && age <= self.max_age {
            expired.accept_under_grace()
        } else {
            expired.reject()
        }
    }
}

impl ExpiryPolicy for Grace {
    async fn decide(&self, expired: ExpiredToken) -> Outcome {
        self.judge(expired)
    }
}

/// Two policies: the second decides when the first rejects.
#[derive(Debug, Clone, Copy)]
pub struct Or<A, B> {
    first: A,
    second: B,
}

impl<A: ExpiryPolicy, B: ExpiryPolicy> ExpiryPolicy for Or<A, B> {
    async fn decide(&self, expired: ExpiredToken) -> Outcome {
        match self.first.decide(expired.clone()).await {
            Outcome::Reject(_) => self.second.decide(expired).await,
            decided => decided,
        }
    }
}

/// An [`ExpiryPolicy`] behind a pointer, for policies chosen at run time
/// (per issuer, per destination).
pub(crate) trait DynPolicy: Send + Sync {
    fn decide_boxed(&self, expired: ExpiredToken) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>>;
}

impl<P: ExpiryPolicy> DynPolicy for P {
    fn decide_boxed(&self, expired: ExpiredToken) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>> {
        Box::pin(self.decide(expired))
    }
}

impl Outcome {
    /// The outcome a failure calls for, by its class: permanent → reject,
    /// transient → retry (after the error's `Retry-After`, else `delay`),
    /// configuration → halt.
    pub fn from_error(error: Error, delay: Duration) -> Outcome {
        match error.class() {
            ErrorClass::Permanent => Outcome::Reject(error),
            ErrorClass::Transient => {
                let delay = error.retry_after().unwrap_or(delay);
                Outcome::Retry(error, delay)
            }
            ErrorClass::Configuration => Outcome::Halt(error),
        }
    }
}
