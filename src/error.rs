//! The error type of verification, and its three classes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::AuthContext;

/// A `Result` whose error is a jwt-relay [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong. Each kind belongs to one [`ErrorClass`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No token header was present.
    Missing,
    /// The token header appeared more than once (in any casing).
    DuplicateHeader,
    /// The token header's value uses another scheme than the configured one.
    InvalidScheme,
    /// The token header was present but its value was empty.
    EmptyToken,
    /// The token header's value was not ASCII, or not a string at all.
    NonAscii,
    /// The token is larger than the configured maximum.
    TooLarge,
    /// The token is not a well-formed compact JWS (parts, base64url, JSON).
    Malformed,
    /// The token's `alg` is not accepted (`none`, or not enabled).
    UnsupportedAlgorithm,
    /// The token's `alg` differs from the algorithm its key is pinned to.
    AlgorithmMismatch,
    /// No key of the issuer has the token's `kid`.
    UnknownKeyId,
    /// The signature does not verify.
    BadSignature,
    /// The token has expired (`exp`). Its signature, issuer and audience verified.
    Expired,
    /// The token is not valid yet (`nbf`).
    NotYetValid,
    /// The token claims to be issued in the future (`iat`).
    IssuedInFuture,
    /// The `iss` claim is missing, not a string, or not a configured issuer.
    InvalidIssuer,
    /// The `aud` claim is missing, of the wrong type, or names none of ours.
    InvalidAudience,
    /// The `typ` header is missing or not the expected one.
    InvalidType,
    /// A claim has the wrong type, a required claim is missing, or the
    /// token's lifetime exceeds the configured maximum.
    InvalidClaim,
    /// The `crit` header names an extension we do not understand.
    CriticalHeader,
    /// The header carries `jku`, `x5u`, `jwk` or `x5c`.
    ForbiddenHeader,
    /// The token is a nested token (`cty: JWT`).
    NestedToken,
    /// The key set could not be fetched, or it lacks the token's key while
    /// the token is newer than the set and a refetch waits for its cooldown
    /// ([`Error::retry_after`] says how long): retry later.
    KeySetUnavailable,
    /// The token service refused to exchange this message's token
    /// (`invalid_grant`, `invalid_target`, `invalid_request`, `invalid_scope`).
    ExchangeDenied,
    /// The token service is unreachable or slow, answered 5xx, 408 or 429,
    /// or gave an answer that does not say what is wrong (a 400, 401 or 403
    /// without an OAuth error code, an unknown code, a body that is not a
    /// token response).
    ExchangeUnavailable,
    /// The token service refused our client or its setup (`invalid_client`,
    /// `unauthorized_client`, `unsupported_grant_type`): every exchange
    /// would fail the same way.
    ExchangeUnauthorized,
    /// The token service issued a token that names another end user than
    /// the token it was given (another `sub`, or none).
    ExchangeWrongSubject,
    /// The token service's answer labels the token as another type than
    /// the one asked for (`issued_token_type`), or as another kind than a
    /// bearer token (`token_type` neither `Bearer` nor `N_A`).
    ExchangeWrongTokenType,
    /// The user's handler failed (after its retries).
    Handler,
    /// The broker dead-lettered the message itself (message TTL, queue
    /// length limit, delivery limit, a reject by another client); the
    /// message says why, from the broker's own record.
    BrokerDeadLettered,
    /// The message is itself a dead-lettered copy (it carries jwt-relay's
    /// reason headers) and would be dead-lettered again: it is settled
    /// without another copy, so a dead-letter destination that its own
    /// consumer reads cannot loop.
    AlreadyDeadLettered,
    /// A configured key is unusable (weak, wrong curve, bad encoding).
    InvalidKey,
    /// The setup is wrong (no issuer, bad option, crypto backend missing).
    Configuration,
}

impl ErrorKind {
    /// The class of this kind: what a consumer should do with the message.
    pub fn class(self) -> ErrorClass {
        match self {
            ErrorKind::KeySetUnavailable | ErrorKind::ExchangeUnavailable => ErrorClass::Transient,
            ErrorKind::InvalidKey | ErrorKind::Configuration | ErrorKind::ExchangeUnauthorized => {
                ErrorClass::Configuration
            }
            _ => ErrorClass::Permanent,
        }
    }

    /// The kind's name, as it appears in JSON output and dead-letter headers.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Missing => "Missing",
            ErrorKind::DuplicateHeader => "DuplicateHeader",
            ErrorKind::InvalidScheme => "InvalidScheme",
            ErrorKind::EmptyToken => "EmptyToken",
            ErrorKind::NonAscii => "NonAscii",
            ErrorKind::TooLarge => "TooLarge",
            ErrorKind::Malformed => "Malformed",
            ErrorKind::UnsupportedAlgorithm => "UnsupportedAlgorithm",
            ErrorKind::AlgorithmMismatch => "AlgorithmMismatch",
            ErrorKind::UnknownKeyId => "UnknownKeyId",
            ErrorKind::BadSignature => "BadSignature",
            ErrorKind::Expired => "Expired",
            ErrorKind::NotYetValid => "NotYetValid",
            ErrorKind::IssuedInFuture => "IssuedInFuture",
            ErrorKind::InvalidIssuer => "InvalidIssuer",
            ErrorKind::InvalidAudience => "InvalidAudience",
            ErrorKind::InvalidType => "InvalidType",
            ErrorKind::InvalidClaim => "InvalidClaim",
            ErrorKind::CriticalHeader => "CriticalHeader",
            ErrorKind::ForbiddenHeader => "ForbiddenHeader",
            ErrorKind::NestedToken => "NestedToken",
            ErrorKind::KeySetUnavailable => "KeySetUnavailable",
            ErrorKind::ExchangeDenied => "ExchangeDenied",
            ErrorKind::ExchangeUnavailable => "ExchangeUnavailable",
            ErrorKind::ExchangeUnauthorized => "ExchangeUnauthorized",
            ErrorKind::ExchangeWrongSubject => "ExchangeWrongSubject",
            ErrorKind::ExchangeWrongTokenType => "ExchangeWrongTokenType",
            ErrorKind::Handler => "Handler",
            ErrorKind::BrokerDeadLettered => "BrokerDeadLettered",
            ErrorKind::AlreadyDeadLettered => "AlreadyDeadLettered",
            ErrorKind::InvalidKey => "InvalidKey",
            ErrorKind::Configuration => "Configuration",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a consumer does with a message whose verification failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The message is bad: dead-letter it.
    Permanent,
    /// A dependency is down: retry later, never drop.
    Transient,
    /// Our own setup is wrong: stop and say so.
    Configuration,
}

impl ErrorClass {
    /// `permanent`, `transient` or `configuration`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Permanent => "permanent",
            ErrorClass::Transient => "transient",
            ErrorClass::Configuration => "configuration",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verification failure: its [`kind`](Error::kind), its
/// [`class`](Error::class), a message naming what failed (never the token),
/// and the underlying error when there is one.
///
/// Cloning is cheap: clones share the message, the source and the expired
/// context, so one failure can be handed to every caller that waited on it.
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    message: String,
    source: Option<SharedError>,
    expired: Option<AuthContext>,
    retry_after: Option<Duration>,
}

impl Error {
    /// An error of `kind` with a message saying what failed.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            inner: Arc::new(Inner {
                kind,
                message: message.into(),
                source: None,
                expired: None,
                retry_after: None,
            }),
        }
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        Arc::make_mut(&mut self.inner).source = Some(Arc::from(source.into()));
        self
    }

    /// Says how long to wait before retrying (a `Retry-After` answer).
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        Arc::make_mut(&mut self.inner).retry_after = Some(delay);
        self
    }

    /// How long the failed dependency asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    pub(crate) fn expired(context: AuthContext, message: String) -> Self {
        let mut error = Error::new(ErrorKind::Expired, message);
        Arc::make_mut(&mut error.inner).expired = Some(context);
        error
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// What to do about it: dead-letter, retry, or stop.
    pub fn class(&self) -> ErrorClass {
        self.inner.kind.class()
    }

    /// The message alone, without the kind.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// For [`ErrorKind::Expired`]: the verified context of the expired token
    /// (signature, issuer and audience passed), for the expiry policy.
    pub fn expired_context(&self) -> Option<&AuthContext> {
        self.inner.expired.as_ref()
    }

    /// Takes the verified context of an expired token out of the error
    /// (a copy, if a clone of the error still shares it).
    pub fn into_expired_context(self) -> Option<AuthContext> {
        match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner.expired,
            Err(shared) => shared.expired.clone(),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind)
            .field("class", &self.class())
            .field("message", &self.inner.message);
        if let Some(source) = &self.inner.source {
            d.field("source", &source.to_string());
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.inner.kind, self.inner.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// Quotes a value taken from a token (a `kid`, an `iss`) for an error
/// message: escaped, and cut to 64 characters so hostile input stays short.
pub(crate) fn quote(value: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = value.chars().take(MAX).flat_map(char::escape_debug).collect();
    if value.chars().nth(MAX).is_some() {
        out.push('…');
    }
    format!("`{out}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(ErrorKind::BadSignature.class(), ErrorClass::Permanent);
        assert_eq!(ErrorKind::KeySetUnavailable.class(), ErrorClass::Transient);
        assert_eq!(ErrorKind::InvalidKey.class(), ErrorClass::Configuration);
    }

    #[test]
    fn quote_escapes_and_truncates() {
        assert_eq!(quote("k1"), "`k1`");
        assert_eq!(quote("a\nb"), "`a\\nb`");
        let long = "x".repeat(500);
        let q = quote(&long);
        assert!(q.len() < 80, "{q}");
        assert!(q.ends_with("…`"));
    }

    #[test]
    fn clones_share_the_message_source_and_delay() {
        let e = Error::new(ErrorKind::ExchangeUnavailable, "down")
            .with_source(std::io::Error::other("connection refused"))
            .with_retry_after(Duration::from_secs(7));
        let clone = e.clone();
        drop(e);
        assert_eq!(clone.kind(), ErrorKind::ExchangeUnavailable);
        assert_eq!(clone.message(), "down");
        assert_eq!(clone.retry_after(), Some(Duration::from_secs(7)));
        let source = std::error::Error::source(&clone).expect("source");
        assert_eq!(source.to_string(), "connection refused");
        // A builder on a shared error changes only its own copy.
        let later = clone.clone().with_retry_after(Duration::from_secs(1));
        assert_eq!(later.retry_after(), Some(Duration::from_secs(1)));
        assert_eq!(clone.retry_after(), Some(Duration::from_secs(7)));
    }

    #[test]
    fn display_names_kind_and_message() {
        let e = Error::new(ErrorKind::UnknownKeyId, "unknown key id `k7`");
        assert_eq!(e.to_string(), "UnknownKeyId: unknown key id `k7`");
        assert_eq!(e.class(), ErrorClass::Permanent);
    }
}
