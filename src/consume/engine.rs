//! The consume sequence, written once: the guard, the handler in the identity's scope, the
//! retry budget and backoff, the settlement through the transport's [`Settle`], and the
//! report (counters, callback, log line, metric and span).

use std::fmt::{self, Display};
use std::future::Future;
use std::time::{Duration, SystemTime};

use tracing::Instrument as _;

use super::event::{Event, Position, Reporter};
use super::handler::{HandlerVerdict, after_handler_failure, run_handler};
use super::report::{EventOutcome, Stats};
use super::settle::{CopyFailed, DeadLetterCopy, Origin, Retried, Settle, Tries};
use crate::backoff::Backoff;
use crate::carrier::Extractor;
use crate::consume::dead_letter::already_dead_lettered;
use crate::consume::guard::{Guard, MessageInfo};
use crate::consume::policy::{Outcome, PublishTime};
use crate::error::Error;
use crate::observe::consume_span;
use crate::verify::context::AuthContext;

/// Decides every consumed message the same way, whatever the broker:
///
/// | the guard says | what the engine does |
/// |---|---|
/// | `Accept` | runs the handler in the identity's [`scope`](crate::scope), catching a panic; success is [`Settle::ack`] |
/// | handler error or panic | [`Settle::retry`] after the backoff while attempts are left (`max_attempts` calls in all), then dead-letters (`Handler`) |
/// | `Reject` | [`Settle::dead_letter`]: a copy without credentials, with the reason and origin headers; a message that already is a copy is [`Settle::discard`]ed |
/// | `Retry` | [`Settle::retry`] after the guard's delay |
/// | `Halt` | [`Settle::release`], and the run stops with the error |
///
/// A copy that cannot be stored for now is retried with the backoff; one that never can stops
/// the run. Every outcome is reported once, through the [`Reporter`]. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    guard: Guard,
    reporter: Reporter,
    max_attempts: u32,
    backoff: Backoff,
    keep_token: bool,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("guard", &self.guard)
            .field("reporter", &self.reporter)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("keep_token", &self.keep_token)
            .finish()
    }
}

/// A message as its transport read it: what the engine needs to decide on it.
#[derive(Debug)]
pub struct Incoming<'a, X> {
    /// Its headers.
    pub headers: &'a X,
    /// What the consumer reads: the topic, queue or subscribed subject (the metrics' label).
    pub destination: &'a str,
    /// What it was published to: the topic, routing key or subject.
    pub subject: &'a str,
    /// Where it is in its broker.
    pub position: Position<'a>,
    /// When it was published, and who says so.
    pub published: Option<PublishTime>,
    /// How many times it was tried before.
    pub tries: Tries,
}

/// What the transport does next with the message.
#[derive(Debug)]
#[must_use]
pub enum Step<S> {
    /// It is settled (or the broker has it for later): on to the next.
    Done,
    /// The transport holds it ([`Retried::Hold`]): call the engine again after `delay`, with
    /// these tries.
    Again {
        /// How long to wait.
        delay: Duration,
        /// The counts to pass in the next try.
        tries: Tries,
        /// Why: what to dead-letter it for if the run stops first (see [`Engine::reject`]).
        reason: Error,
    },
    /// The guard halted: stop the run with this error (the message was released).
    Halt(Error),
    /// Settling failed for good: stop the run with the transport's error.
    Stop(S),
}

impl Engine {
    /// An engine deciding with `guard` and reporting to `reporter`: 3 handler attempts, the
    /// default [`Backoff`] between them, dead-lettered copies without the token.
    pub fn new(guard: Guard, reporter: Reporter) -> Self {
        Engine {
            guard,
            reporter,
            max_attempts: 3,
            backoff: Backoff::default(),
            keep_token: false,
        }
    }

    /// How many times the handler is called for one message before it is dead-lettered
    /// (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The backoff between handler attempts, and between tries at storing a copy.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Keeps the token header in dead-lettered copies.
    pub fn keep_token(mut self, keep: bool) -> Self {
        self.keep_token = keep;
        self
    }

    /// Calls `callback` with what happened to each message, as it happens (see
    /// [`Reporter::on_event`]).
    pub fn on_event(mut self, callback: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.reporter = self.reporter.on_event(callback);
        self
    }

    /// The guard.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// The reporter.
    pub fn reporter(&self) -> &Reporter {
        &self.reporter
    }

    /// The live counters.
    pub fn stats(&self) -> &Stats {
        self.reporter.stats()
    }

    /// One try at `message`, in its `jwt_relay.consume` span: the guard, then the handler (
    /// `handle` builds the transport's delivery from the identity and the tries, and calls the
    /// user's handler), then the settlement and the report.
    pub async fn process<X, S, F, Fut, E>(
        &self,
        message: &Incoming<'_, X>,
        settle: &mut S,
        handle: F,
    ) -> Step<S::Stop>
    where
        X: Extractor + Sync,
        S: Settle,
        F: FnOnce(AuthContext, Tries) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        let span = consume_span(self.reporter.broker(), message.destination, message.headers);
        self.decide(message, settle, handle).instrument(span).await
    }

    /// Dead-letters `message` for `reason` without asking the guard (a record whose headers
    /// cannot be read, a message held for a retry when the run stops), in its span.
    pub async fn reject<X, S>(
        &self,
        message: &Incoming<'_, X>,
        settle: &mut S,
        reason: &Error,
    ) -> Step<S::Stop>
    where
        X: Extractor + Sync,
        S: Settle,
    {
        let span = consume_span(self.reporter.broker(), message.destination, message.headers);
        self.dead_letter(message, settle, reason, message.tries)
            .instrument(span)
            .await
    }

    async fn decide<X, S, F, Fut, E>(
        &self,
        message: &Incoming<'_, X>,
        settle: &mut S,
        handle: F,
    ) -> Step<S::Stop>
    where
        X: Extractor + Sync,
        S: Settle,
        F: FnOnce(AuthContext, Tries) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        let tries = message.tries;
        let info = MessageInfo {
            destination: message.destination,
            published: message.published,
            attempt: tries.checks,
        };
        match self.guard.check(message.headers, &info).await {
            Outcome::Accept(context) => self.handle(message, settle, context, handle).await,
            Outcome::Reject(reason) => self.dead_letter(message, settle, &reason, tries).await,
            Outcome::Retry(reason, delay) => {
                let tries = Tries {
                    checks: tries.checks.saturating_add(1),
                    ..tries
                };
                self.retry(message, settle, (delay, tries), &reason, false).await
            }
            Outcome::Halt(reason) => {
                settle.release().await;
                self.report(message, EventOutcome::Halted(&reason));
                Step::Halt(reason)
            }
        }
    }

    async fn handle<X, S, F, Fut, E>(
        &self,
        message: &Incoming<'_, X>,
        settle: &mut S,
        context: AuthContext,
        handle: F,
    ) -> Step<S::Stop>
    where
        X: Extractor + Sync,
        S: Settle,
        F: FnOnce(AuthContext, Tries) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        let tries = message.tries;
        let scoped = context.clone();
        // The call happens inside the guarded poll, so a handler that panics before returning
        // its future is caught too.
        let failure = match run_handler(context.clone(), async move { handle(scoped, tries).await }).await {
            Ok(()) => {
                if settle.ack().await {
                    self.report(message, EventOutcome::Accepted(&context));
                }
                return Step::Done;
            }
            Err(failure) => failure,
        };
        let tries = Tries {
            failures: tries.failures.saturating_add(1),
            ..tries
        };
        match after_handler_failure(tries.failures, self.max_attempts, &self.backoff, &failure) {
            HandlerVerdict::Retry(delay) => self.retry(message, settle, (delay, tries), &failure, true).await,
            HandlerVerdict::DeadLetter(reason) => {
                self.stats().handler_failed();
                self.dead_letter(message, settle, &reason, tries).await
            }
        }
    }

    /// Asks the transport to try the message again after `delay`, and reports it: as a
    /// handler failure, or as a retry for `reason`.
    async fn retry<X, S: Settle>(
        &self,
        message: &Incoming<'_, X>,
        settle: &mut S,
        (delay, tries): (Duration, Tries),
        reason: &Error,
        handler_failed: bool,
    ) -> Step<S::Stop> {
        let outcome = if handler_failed {
            EventOutcome::HandlerFailed { reason, delay }
        } else {
            EventOutcome::Retry { reason, delay }
        };
        match settle.retry(delay, tries).await {
            Ok(Retried::Scheduled) => {
                self.report(message, outcome);
                Step::Done
            }
            Ok(Retried::Hold) => {
                self.report(message, outcome);
                Step::Again {
                    delay,
                    tries,
                    reason: reason.clone(),
                }
            }
            Err(stop) => Step::Stop(stop),
        }
    }

    /// Stores a copy and settles the original, or settles a message that already is a copy.
    async fn dead_letter<X, S>(
        &self,
        message: &Incoming<'_, X>,
        settle: &mut S,
        reason: &Error,
        tries: Tries,
    ) -> Step<S::Stop>
    where
        X: Extractor + Sync,
        S: Settle,
    {
        if let Some(again) = already_dead_lettered(message.headers) {
            if settle.discard(&again).await {
                let outcome = EventOutcome::Rejected {
                    reason: &again,
                    dead_letter: None,
                };
                self.report(message, outcome);
            }
            return Step::Done;
        }
        let copy = DeadLetterCopy {
            reason,
            redaction: self.guard.redaction(self.keep_token),
            origin: Origin {
                destination: message.destination,
                subject: message.subject,
                position: message.position,
                published: message.published,
            },
            now: SystemTime::now(),
        };
        match settle.dead_letter(&copy).await {
            Ok(target) => {
                let outcome = EventOutcome::Rejected {
                    reason,
                    dead_letter: target.as_deref(),
                };
                self.report(message, outcome);
                Step::Done
            }
            Err(CopyFailed::Later(why)) => {
                let delay = self.backoff.delay(tries.copies);
                tracing::error!(
                    destination = message.destination,
                    position = %message.position,
                    ?delay,
                    "cannot store the dead-lettered copy, the message will be tried again: {why}"
                );
                let tries = Tries {
                    copies: tries.copies.saturating_add(1),
                    ..tries
                };
                self.retry(message, settle, (delay, tries), reason, false).await
            }
            Err(CopyFailed::Stop(stop)) => {
                self.report(message, EventOutcome::Halted(reason));
                Step::Stop(stop)
            }
        }
    }

    fn report<X>(&self, message: &Incoming<'_, X>, outcome: EventOutcome<'_>) {
        self.reporter.report(&Event {
            destination: message.destination,
            subject: message.subject,
            position: message.position,
            outcome,
        });
    }
}
