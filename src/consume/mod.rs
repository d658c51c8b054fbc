//! Consuming, written once for every transport: the [`Engine`] decides on each message (the
//! guard, the handler in the identity's scope, the retry budget, the dead-letter copy) and
//! reports it; each transport implements [`Settle`] with its broker's own verbs and keeps its
//! read loop.
//!
//! Applications meet this module through what a consumer reports: [`Event`]s, [`RunReport`]s
//! and live [`Stats`]. Adapters build on the rest.

mod engine;
mod event;
mod handler;
mod report;
mod settle;

pub use engine::{Engine, Incoming, Step};
pub use event::{Event, OnEvent, Position, Reporter};
pub use report::{EventOutcome, RunReport, Stats};
pub use settle::{CopyFailed, DeadLetterCopy, Origin, Retried, Settle, Tries};
