//! Why a consumer stopped: the core's [`jwt_relay::ConsumeError`], shared by every adapter.

/// Why [`Consumer::run`](crate::Consumer::run) returned an error: [`jwt_relay::ConsumeError`].
/// [`ErrorKind::Halted`]: the guard's halt ([`Error::halt_reason`]); [`ErrorKind::Connection`]:
/// the first connection failed (later losses are reconnected); [`ErrorKind::Broker`]: the queue,
/// the dead-letter destination or the retry queue does not exist, access is refused, or a
/// declaration conflicts.
pub type Error = jwt_relay::ConsumeError;

/// What went wrong: [`jwt_relay::consume::ConsumeErrorKind`].
pub type ErrorKind = jwt_relay::consume::ConsumeErrorKind;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
