//! Consuming as every adapter does: the Guard decides, the handler runs in
//! the verified identity's scope, and each outcome maps onto the broker.

use std::fmt::Display;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tracing::Instrument as _;

use super::broker::{MemoryBroker, Next, dead_letter_topic};
use super::delivery::{Delivery, RunReport};
use super::message::{Message, MessageId};
use crate::backoff::Backoff;
use crate::carrier::Headers;
use crate::context::AuthContext;
use crate::dead_letter::{already_dead_lettered, dead_letter_headers};
use crate::error::{Error, Result};
use crate::guard::{Guard, MessageInfo};
use crate::handler::{HandlerVerdict, after_handler_failure, run_handler};
use crate::observe::consume_span;
use crate::policy::Outcome;
use crate::report::EventOutcome;

/// Consumes one topic of a [`MemoryBroker`] through a [`Guard`]:
///
/// | outcome | what happens to the message |
/// |---|---|
/// | `Accept` | the handler runs in the identity's [`scope`](crate::scope); success acknowledges (removes) it |
/// | handler error or panic | redelivered after the handler backoff, at most `max_attempts` calls in all, then dead-lettered (`Handler`) |
/// | `Reject` | a copy goes to the dead-letter topic with the reason and without the token; the original is removed |
/// | `Retry` | it stays in the topic, held until the delay passes, one attempt later |
/// | `Halt` | it stays in the topic untouched, and the run returns the error |
///
/// Scheduled retries wait on the tokio clock, so a test can
/// `tokio::time::pause()` instead of sleeping.
#[derive(Debug, Clone)]
pub struct MemoryConsumer {
    broker: MemoryBroker,
    topic: String,
    guard: Guard,
    max_attempts: u32,
    dead_letter_topic: String,
    keep_token: bool,
    backoff: Backoff,
}

enum Step {
    Processed,
    Wait(Instant),
    Idle,
}

impl MemoryConsumer {
    /// Consumes `topic` through `guard`: 3 handler attempts, dead letters to
    /// `<topic>.dlq` without the token, handler retries after the default
    /// [`Backoff`] (1 s doubling to 1 min: set a short one in tests, or
    /// pause the tokio clock).
    pub fn new(broker: MemoryBroker, topic: impl Into<String>, guard: Guard) -> Self {
        let topic = topic.into();
        MemoryConsumer {
            broker,
            dead_letter_topic: dead_letter_topic(&topic),
            topic,
            guard,
            max_attempts: 3,
            keep_token: false,
            backoff: Backoff::default(),
        }
    }

    /// How many times the handler is called for one message before it is
    /// dead-lettered (3; at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Where dead-lettered copies go (`<topic>.dlq`).
    pub fn dead_letter_topic(mut self, topic: impl Into<String>) -> Self {
        self.dead_letter_topic = topic.into();
        self
    }

    /// Keeps the token header in dead-lettered copies. Off by default: a
    /// dead-letter topic is read by operators and tools, and should not
    /// hold usable tokens.
    pub fn keep_token_in_dead_letters(mut self) -> Self {
        self.keep_token = true;
        self
    }

    /// The backoff between handler attempts (transient verification
    /// failures use the guard's).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The topic consumed.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Processes messages in order until none is ready and none is
    /// scheduled for a retry, waiting for scheduled retries to come due.
    /// On [`Outcome::Halt`] it stops and returns the error, leaving the
    /// message in the topic.
    pub async fn run_until_idle<H, Fut, E>(&self, handler: H) -> Result<RunReport>
    where
        H: Fn(Delivery) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send,
        E: Display,
    {
        let mut report = RunReport::default();
        loop {
            match self.step(&handler, &mut report).await? {
                Step::Processed => {}
                Step::Wait(due) => tokio::time::sleep_until(due).await,
                Step::Idle => return Ok(report),
            }
        }
    }

    /// Processes messages as they arrive until `shutdown` completes (checked
    /// between messages: a handler that started finishes) or a halt.
    pub async fn run<H, Fut, E, S>(&self, handler: H, shutdown: S) -> Result<RunReport>
    where
        H: Fn(Delivery) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send,
        E: Display,
        S: Future<Output = ()>,
    {
        let mut report = RunReport::default();
        let mut shutdown = pin!(shutdown);
        loop {
            if poll_fn(|cx| Poll::Ready(shutdown.as_mut().poll(cx).is_ready())).await {
                return Ok(report);
            }
            // Registered before looking, so a publish in between still wakes us.
            let mut changed = pin!(self.broker.changed());
            changed.as_mut().enable();
            match self.step(&handler, &mut report).await? {
                Step::Processed => {}
                Step::Wait(due) => tokio::select! {
                    () = &mut shutdown => return Ok(report),
                    () = tokio::time::sleep_until(due) => {}
                    () = changed => {}
                },
                Step::Idle => tokio::select! {
                    () = &mut shutdown => return Ok(report),
                    () = changed => {}
                },
            }
        }
    }

    /// Takes the next ready message, if any, and settles it.
    async fn step<H, Fut, E>(&self, handler: &H, report: &mut RunReport) -> Result<Step>
    where
        H: Fn(Delivery) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send,
        E: Display,
    {
        let (message, failures) = match self.broker.next(&self.topic, Instant::now()) {
            Next::Ready(message, failures) => (message, failures),
            Next::Wait(due) => return Ok(Step::Wait(due)),
            Next::Idle => return Ok(Step::Idle),
        };
        let lease = Lease::new(&self.broker, &self.topic, message.id);
        let info = MessageInfo::new(&self.topic)
            .published(message.published)
            .attempt(message.attempt);
        let span = consume_span("memory", &self.topic, &message.headers);
        let id = message.id;
        let observe = |outcome: EventOutcome<'_>| outcome.observe("memory", &self.topic, &id);
        async {
            match self.guard.check(&message.headers, &info).await {
                Outcome::Accept(context) => {
                    self.handle(lease, context, message, failures, handler, report)
                        .await;
                }
                Outcome::Reject(reason) => self.dead_letter(lease, &message, &reason, report),
                Outcome::Retry(error, delay) => {
                    lease.retry(delay, failures);
                    report.retried += 1;
                    observe(EventOutcome::Retry {
                        reason: &error,
                        delay,
                    });
                }
                Outcome::Halt(error) => {
                    observe(EventOutcome::Halted(&error));
                    drop(lease);
                    return Err(error);
                }
            }
            Ok(())
        }
        .instrument(span)
        .await?;
        Ok(Step::Processed)
    }

    /// Runs the handler in the identity's scope, catching a panic, and
    /// acknowledges, retries or dead-letters.
    async fn handle<H, Fut, E>(
        &self,
        lease: Lease<'_>,
        context: AuthContext,
        message: Message,
        failures: u32,
        handler: &H,
        report: &mut RunReport,
    ) where
        H: Fn(Delivery) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send,
        E: Display,
    {
        let delivery = Delivery {
            context: context.clone(),
            message: message.clone(),
        };
        // The call itself happens inside the guarded future, so a handler
        // that panics before returning its future is caught too.
        let failure = match run_handler(context.clone(), async move { handler(delivery).await }).await {
            Ok(()) => {
                lease.ack();
                report.accepted += 1;
                EventOutcome::Accepted(&context).observe("memory", &self.topic, &message.id);
                return;
            }
            Err(e) => e,
        };
        report.handler_failures += 1;
        let failures = failures.saturating_add(1);
        match after_handler_failure(failures, self.max_attempts, &self.backoff, &failure) {
            HandlerVerdict::Retry(delay) => {
                lease.retry(delay, failures);
                report.retried += 1;
                let outcome = EventOutcome::HandlerFailed {
                    reason: &failure,
                    delay,
                };
                outcome.observe("memory", &self.topic, &message.id);
            }
            HandlerVerdict::DeadLetter(reason) => self.dead_letter(lease, &message, &reason, report),
        }
    }

    /// Publishes the copy and settles the original, or, when the message
    /// already is a dead-lettered copy, settles it without another.
    fn dead_letter(&self, lease: Lease<'_>, message: &Message, reason: &Error, report: &mut RunReport) {
        if let Some(again) = already_dead_lettered(&message.headers) {
            lease.ack();
            report.rejected += 1;
            let outcome = EventOutcome::Rejected {
                reason: &again,
                dead_letter: None,
            };
            outcome.observe("memory", &self.topic, &message.id);
            return;
        }
        let mut headers = Headers::new();
        let kept = dead_letter_headers(
            message.headers.iter(),
            reason,
            &self.guard.redaction(self.keep_token),
            SystemTime::now(),
        );
        for (name, value) in kept {
            headers.append(name, value);
        }
        lease.dead_letter(&self.dead_letter_topic, headers);
        report.dead_lettered += 1;
        let outcome = EventOutcome::Rejected {
            reason,
            dead_letter: Some(&self.dead_letter_topic),
        };
        outcome.observe("memory", &self.topic, &message.id);
    }
}

/// A message taken from its topic. Settled exactly once; dropped unsettled
/// (a halt, or a consumer future dropped mid-message) it goes back as it was.
struct Lease<'a> {
    broker: &'a MemoryBroker,
    topic: &'a str,
    id: MessageId,
    settled: bool,
}

impl<'a> Lease<'a> {
    fn new(broker: &'a MemoryBroker, topic: &'a str, id: MessageId) -> Self {
        Lease {
            broker,
            topic,
            id,
            settled: false,
        }
    }

    fn ack(mut self) {
        self.settled = true;
        self.broker.ack(self.topic, self.id);
    }

    fn retry(mut self, delay: Duration, failures: u32) {
        self.settled = true;
        self.broker.retry(self.topic, self.id, delay, failures);
    }

    fn dead_letter(mut self, dead_letter_topic: &str, headers: Headers) {
        self.settled = true;
        self.broker
            .dead_letter(self.topic, self.id, dead_letter_topic, headers);
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.broker.release(self.topic, self.id);
        }
    }
}
