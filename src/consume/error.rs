//! Why a consumer stopped: a separate type, because a stopped consumer is
//! neither a verification failure nor a publish failure. Every broker
//! adapter's consumers, subscribers and services return it (re-exported there
//! as `Error`).

use std::fmt;

use crate::failure::{BoxError, Failure};

/// Why a consumer (subscriber, service) stopped, or could not start.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumeErrorKind {
    /// The guard decided [`Outcome::Halt`](crate::consume::Outcome::Halt): our
    /// verification setup is wrong. The message was left to the broker
    /// (returned to its queue, or `nak`ed); [`ConsumeError::halt_reason`]
    /// says what is wrong.
    Halted,
    /// The broker could not be reached: the first connection failed, or the
    /// connection could not subscribe (later losses are reconnected where the
    /// broker allows it).
    Connection,
    /// The broker refused what the consumer needs in a way retrying cannot
    /// fix: a queue, stream, consumer or dead-letter destination does not
    /// exist or is of the wrong type, access is refused, a declaration
    /// conflicts or cannot be made. The message being settled was left to
    /// the broker.
    Broker,
    /// What was asked for is not possible (for example a NATS `>` subject
    /// without an explicit dead-letter subject).
    Configuration,
}

/// A consumer that stopped: its [`kind`](ConsumeError::kind), a message, and
/// the underlying error (a [`crate::Error`] for
/// [`ConsumeErrorKind::Halted`], the broker client's error otherwise). Never
/// carries a token.
pub struct ConsumeError(Failure<ConsumeErrorKind>);

impl ConsumeError {
    /// A failure of `kind`, saying what failed.
    pub fn new(kind: ConsumeErrorKind, message: impl Into<String>) -> Self {
        ConsumeError(Failure::new(kind, message.into()))
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.0.set_source(source.into());
        self
    }

    /// The guard's [`Outcome::Halt`](crate::consume::Outcome::Halt), as a stop of
    /// kind [`ConsumeErrorKind::Halted`] whose source is `reason`.
    pub fn halted(reason: crate::Error) -> Self {
        ConsumeError::new(ConsumeErrorKind::Halted, format!("the consumer halted: {reason}"))
            .with_source(reason)
    }

    /// What went wrong.
    pub fn kind(&self) -> ConsumeErrorKind {
        self.0.kind
    }

    /// The message alone.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// For [`ConsumeErrorKind::Halted`]: the verification error that stopped
    /// the consumer, with its kind and class.
    pub fn halt_reason(&self) -> Option<&crate::Error> {
        self.0.source_as()
    }
}

impl fmt::Debug for ConsumeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.debug("ConsumeError", f)
    }
}

impl fmt::Display for ConsumeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for ConsumeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn a_halt_keeps_its_reason() {
        let reason = crate::Error::new(ErrorKind::Configuration, "no exchanger");
        let stopped = ConsumeError::halted(reason);
        assert_eq!(stopped.kind(), ConsumeErrorKind::Halted);
        assert_eq!(
            stopped.halt_reason().map(crate::Error::kind),
            Some(ErrorKind::Configuration)
        );
        assert!(stopped.to_string().contains("no exchanger"), "{stopped}");
        let other = ConsumeError::new(ConsumeErrorKind::Broker, "no queue");
        assert!(other.halt_reason().is_none());
    }
}
