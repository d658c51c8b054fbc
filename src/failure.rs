//! What the core's error types beside [`Error`](crate::Error) hold: a kind, a
//! message and the underlying error ([`PublishError`](crate::PublishError),
//! [`ConsumeError`](crate::ConsumeError)).

use std::error::Error as StdError;
use std::fmt;

/// The underlying error of a failure.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A kind, a message saying what failed, and the underlying error. Never
/// holds a token.
pub(crate) struct Failure<K> {
    pub(crate) kind: K,
    pub(crate) message: String,
    source: Option<BoxError>,
}

impl<K: Copy + fmt::Debug> Failure<K> {
    pub(crate) fn new(kind: K, message: String) -> Self {
        Failure {
            kind,
            message,
            source: None,
        }
    }

    pub(crate) fn set_source(&mut self, source: BoxError) {
        self.source = Some(source);
    }

    /// The underlying error, if it is a `T`.
    pub(crate) fn source_as<T: StdError + 'static>(&self) -> Option<&T> {
        self.source.as_ref()?.downcast_ref()
    }

    /// For [`std::error::Error::source`].
    pub(crate) fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn StdError + 'static))
    }

    /// `Debug` as `name { kind, message, source }`, the source as text.
    pub(crate) fn debug(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct(name);
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", &source.to_string());
        }
        d.finish()
    }
}
