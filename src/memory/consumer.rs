//! Consuming as every adapter does: the Guard decides, the handler runs in
//! the verified identity's scope, and each outcome maps onto the broker.

use std::convert::Infallible;
use std::fmt::Display;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use super::broker::{MemoryBroker, Next, dead_letter_topic};
use super::message::Message;
use super::received::Received;
use crate::backoff::Backoff;
use crate::carrier::Headers;
use crate::consume::guard::Guard;
use crate::consume::{
    self, CopyFailed, DeadLetterCopy, Engine, Event, Incoming, Position, Reporter, Retried, RunReport,
    Settle, Stats, Tries,
};
use crate::error::{Error, Result};
use crate::verify::context::AuthContext;

/// Consumes one topic of a [`MemoryBroker`] through a [`Guard`], with the
/// same [`Engine`] as every broker adapter:
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
    dead_letter_topic: String,
    engine: Engine,
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
            engine: Engine::new(guard, Reporter::new("memory")),
        }
    }

    /// How many times the handler is called for one message before it is
    /// dead-lettered (3; at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.engine = self.engine.max_attempts(attempts);
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
        self.engine = self.engine.keep_token(true);
        self
    }

    /// The backoff between handler attempts (transient verification
    /// failures use the guard's).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.engine = self.engine.backoff(backoff);
        self
    }

    /// Calls `callback` with what happened to each message, as it happens.
    /// Keep it quick: it runs on the message path.
    pub fn on_event(mut self, callback: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.engine = self.engine.on_event(callback);
        self
    }

    /// The topic consumed.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The live counters of every run of this consumer and its clones.
    pub fn stats(&self) -> Stats {
        self.engine.stats().clone()
    }

    /// Processes messages in order until none is ready and none is
    /// scheduled for a retry, waiting for scheduled retries to come due.
    /// On a halt it stops and returns the error, leaving the message in the
    /// topic. Returns what this run did.
    pub async fn run_until_idle<H, Fut, E>(&self, handler: H) -> Result<RunReport>
    where
        H: Fn(Received) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send,
        E: Display,
    {
        let before = self.engine.stats().snapshot();
        loop {
            match self.step(&self.engine, &handler).await? {
                Step::Processed => {}
                Step::Wait(due) => tokio::time::sleep_until(due).await,
                Step::Idle => return Ok(self.engine.stats().snapshot().since(&before)),
            }
        }
    }

    /// Processes messages as they arrive until `shutdown` completes (checked
    /// between messages: a handler that started finishes; its output is
    /// ignored) or a halt. Returns what this run did.
    pub async fn run<H, Fut, E, S>(&self, handler: H, shutdown: S) -> Result<RunReport>
    where
        H: Fn(Received) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send,
        E: Display,
        S: Future,
    {
        let before = self.engine.stats().snapshot();
        let report = || self.engine.stats().snapshot().since(&before);
        let mut shutdown = pin!(async {
            shutdown.await;
        });
        loop {
            if poll_fn(|cx| Poll::Ready(shutdown.as_mut().poll(cx).is_ready())).await {
                return Ok(report());
            }
            // Registered before looking, so a publish in between still wakes us.
            let mut changed = pin!(self.broker.changed());
            changed.as_mut().enable();
            match self.step(&self.engine, &handler).await? {
                Step::Processed => {}
                Step::Wait(due) => tokio::select! {
                    () = &mut shutdown => return Ok(report()),
                    () = tokio::time::sleep_until(due) => {}
                    () = changed => {}
                },
                Step::Idle => tokio::select! {
                    () = &mut shutdown => return Ok(report()),
                    () = changed => {}
                },
            }
        }
    }

    /// Takes the next ready message, if any, and decides on it.
    async fn step<H, Fut, E>(&self, engine: &Engine, handler: &H) -> Result<Step>
    where
        H: Fn(Received) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send,
        E: Display,
    {
        let (message, failures) = match self.broker.next(&self.topic, Instant::now()) {
            Next::Ready(message, failures) => (message, failures),
            Next::Wait(due) => return Ok(Step::Wait(due)),
            Next::Idle => return Ok(Step::Idle),
        };
        let incoming = Incoming {
            headers: &message.headers,
            destination: &self.topic,
            subject: &message.topic,
            position: Position::Id(message.id.get()),
            published: Some(message.published),
            tries: Tries {
                checks: message.attempt.saturating_sub(failures),
                failures,
                copies: 0,
            },
        };
        let mut lease = Lease {
            broker: &self.broker,
            topic: &self.topic,
            dead_letter_topic: &self.dead_letter_topic,
            message: &message,
            settled: false,
        };
        let handle = |context: AuthContext, _| {
            let delivery = Received {
                context,
                message: message.clone(),
            };
            handler(delivery)
        };
        match engine.process(&incoming, &mut lease, handle).await {
            consume::Step::Done | consume::Step::Again { .. } => Ok(Step::Processed),
            consume::Step::Halt(error) => Err(error),
            consume::Step::Stop(never) => match never {},
        }
    }
}

/// A message taken from its topic: the in-memory broker's settle verbs. Settled at most once;
/// dropped unsettled (a halt, or a consumer future dropped mid-message) it goes back as it was.
struct Lease<'a> {
    broker: &'a MemoryBroker,
    topic: &'a str,
    dead_letter_topic: &'a str,
    message: &'a Message,
    settled: bool,
}

impl Settle for Lease<'_> {
    type Stop = Infallible;

    async fn ack(&mut self) -> bool {
        self.settled = true;
        self.broker.ack(self.topic, self.message.id);
        true
    }

    async fn retry(&mut self, delay: Duration, tries: Tries) -> Result<Retried, Infallible> {
        self.settled = true;
        self.broker
            .retry(self.topic, self.message.id, delay, tries.failures);
        Ok(Retried::Scheduled)
    }

    async fn dead_letter(
        &mut self,
        copy: &DeadLetterCopy<'_>,
    ) -> Result<Option<String>, CopyFailed<Infallible>> {
        let mut headers = Headers::new();
        for (name, value) in copy.with_original(self.message.headers.iter()) {
            headers.append(name, value);
        }
        self.settled = true;
        self.broker
            .dead_letter(self.topic, self.message.id, self.dead_letter_topic, headers);
        Ok(Some(self.dead_letter_topic.to_owned()))
    }

    async fn discard(&mut self, _reason: &Error) -> bool {
        self.ack().await
    }

    async fn release(&mut self) {}
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.broker.release(self.topic, self.message.id);
        }
    }
}
