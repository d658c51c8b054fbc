//! Why a subscriber, service or consumer stopped, or a topology could not be declared: the
//! core's [`jwt_relay::ConsumeError`], shared by every adapter.

/// A failure of this crate's subscribers, services, consumers or topology helper:
/// [`jwt_relay::ConsumeError`]. [`ErrorKind::Halted`]: the guard's halt
/// ([`Error::halt_reason`]); [`ErrorKind::Connection`]: subscribing failed;
/// [`ErrorKind::Broker`]: the JetStream consumer is gone, is not a pull consumer or refused our
/// pull requests, or a stream or consumer could not be created, read or deleted;
/// [`ErrorKind::Configuration`]: the topology asked for is not possible.
pub type Error = jwt_relay::ConsumeError;

/// What went wrong: [`jwt_relay::consume::ConsumeErrorKind`].
pub type ErrorKind = jwt_relay::consume::ConsumeErrorKind;

/// A `Result` whose error is a jwt-relay-nats [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
