//! The consume side, written once for every transport.
//!
//! - The [`Guard`] decides on a message's token: verify, then, for an expired one, the
//!   [expiry policy](ExpiryPolicy) ([`Reject`], [`Grace`], token exchange, or your own).
//! - The [`Engine`] runs the whole sequence for each message (the guard, the handler in the
//!   identity's scope, the retry budget, the dead-letter copy) and reports it: [`Event`]s,
//!   [`RunReport`]s and live [`Stats`].
//! - Each transport implements [`Settle`] with its broker's own verbs (ack, retry later,
//!   dead-letter a copy, release) and keeps only its read loop.
//! - Dead-lettered copies carry the [reason and origin headers](REASON_KIND) and no credential
//!   ([`Redaction`]).

pub(crate) mod dead_letter;
mod engine;
pub(crate) mod error;
mod event;
mod exchange;
pub(crate) mod guard;
mod handler;
pub(crate) mod policy;
mod report;
mod settle;

pub use dead_letter::{
    CREDENTIAL_HEADERS, MAX_REASON_MESSAGE, ORIGINAL_DESTINATION, ORIGINAL_OFFSET, ORIGINAL_PARTITION,
    ORIGINAL_SEQUENCE, ORIGINAL_STREAM, ORIGINAL_SUBJECT, ORIGINAL_TIMESTAMP, REASON_CLASS, REASON_KIND,
    REASON_MESSAGE, REASON_TIME, Redaction, already_dead_lettered, dead_letter_headers, reason_headers,
};
pub use engine::{Engine, Incoming, Step};
pub use error::{ConsumeError, ConsumeErrorKind};
pub use event::{Event, OnEvent, Position, Reporter};
pub use exchange::Exchange;
pub use guard::{Guard, GuardBuilder, MessageInfo};
pub use policy::{ExpiredToken, ExpiryPolicy, Grace, Or, Outcome, PublishTime, Reject, TimestampSource};
pub use report::{EventOutcome, RunReport, Stats};
pub use settle::{CopyFailed, DeadLetterCopy, Origin, Retried, Settle, Tries};
