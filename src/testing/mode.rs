//! How the token endpoint behaves ([`Mode`]) and what the service has served ([`Stats`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// How `POST /token` answers, switched at run time with
/// [`DevSts::set_mode`](super::DevSts::set_mode) to play a token service
/// that is slow, down or hostile. Discovery, the key set and `/stats` are
/// never affected.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Every request is judged on its merits.
    #[default]
    Normal,
    /// Waits this long before judging a request (to trip client timeouts).
    Slow(Duration),
    /// Answers `503 Service Unavailable`, with `Retry-After` in whole
    /// seconds (rounded up) when given.
    Unavailable {
        /// The `Retry-After` to send, if any.
        retry_after: Option<Duration>,
    },
    /// Answers `400 invalid_grant` to every request, without looking at it.
    RejectAll,
    /// Answers every request with this HTTP status, without looking at it:
    /// with an RFC 6749 §5.2 error body carrying `error` when given, else
    /// with a short HTML page, as a gateway in front of a service answers.
    /// A status that is not one (outside 100..=999) answers 500.
    Refuse {
        /// The HTTP status.
        status: u16,
        /// The OAuth error code, if any (`invalid_client`, `invalid_grant`, …).
        error: Option<&'static str>,
    },
    /// Judges every request as usual, but issues the token for this subject
    /// instead of the subject token's: a compromised or misconfigured
    /// service, whose tokens a client must refuse.
    IssueFor(&'static str),
    /// Judges every request as usual, but labels the answer with this
    /// `issued_token_type` (left out when `None`, as some servers do) and
    /// this `token_type`.
    Label {
        /// The `issued_token_type` of the answer, if any.
        issued_token_type: Option<&'static str>,
        /// The `token_type` of the answer.
        token_type: &'static str,
    },
}

/// What the service has served since it started, for assertions such as
/// "a burst of messages made one exchange". Also served as JSON at `/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Stats {
    /// `POST /token` requests received, whatever their outcome.
    pub token_requests: u64,
    /// Tokens issued by `POST /token`.
    pub exchanges_issued: u64,
    /// `GET /jwks.json` requests.
    pub jwks_requests: u64,
    /// `GET /.well-known/openid-configuration` requests.
    pub discovery_requests: u64,
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) token_requests: AtomicU64,
    pub(super) exchanges_issued: AtomicU64,
    pub(super) jwks_requests: AtomicU64,
    pub(super) discovery_requests: AtomicU64,
}

impl Counters {
    /// Adds one to a counter.
    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as they are now.
    pub(super) fn snapshot(&self) -> Stats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            token_requests: read(&self.token_requests),
            exchanges_issued: read(&self.exchanges_issued),
            jwks_requests: read(&self.jwks_requests),
            discovery_requests: read(&self.discovery_requests),
        }
    }
}
