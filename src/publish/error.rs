//! Why a publish failed: a separate type, because a publish failure is not
//! a verification failure.

use std::fmt;

use crate::failure::{BoxError, Failure};

/// What went wrong on the publishing side.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublishErrorKind {
    /// No explicit context, no ambient one, and anonymous messages are not
    /// allowed.
    NoIdentity,
    /// The current token was accepted under grace and no exchanger is set:
    /// an expired token is never forwarded as-is.
    GraceNotForwardable,
    /// The token exchange failed; the source is the exchange's [`crate::Error`].
    Exchange,
    /// The token header could not be written.
    Inject,
    /// The broker refused or failed the publish.
    Broker,
    /// The broker did not confirm the publish in time.
    Timeout,
    /// The broker negatively acknowledged the message.
    Nacked,
    /// The message could not be routed (a returned mandatory message).
    Unroutable,
}

/// A publish failure: its [`kind`](PublishError::kind), a message, and the
/// underlying error. Never carries a token.
pub struct PublishError(Failure<PublishErrorKind>);

impl PublishError {
    /// A failure of `kind`, saying what failed.
    pub fn new(kind: PublishErrorKind, message: impl Into<String>) -> Self {
        PublishError(Failure::new(kind, message.into()))
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.0.set_source(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> PublishErrorKind {
        self.0.kind
    }

    /// The message alone.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// For [`PublishErrorKind::Exchange`]: the exchange's error, with its class.
    pub fn exchange_error(&self) -> Option<&crate::Error> {
        self.0.source_as()
    }
}

impl fmt::Debug for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.debug("PublishError", f)
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.0.kind, self.0.message)
    }
}

impl std::error::Error for PublishError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
