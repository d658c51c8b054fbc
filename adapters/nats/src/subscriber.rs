//! Core NATS subscribing: the Guard before the handler, on plain and queue
//! subscriptions.

use std::fmt::{self, Display};
use std::future::Future;
use std::sync::Arc;

use async_nats::{Client, Message};
use jwt_relay::{Backoff, Guard, HandlerVerdict, MessageInfo, Outcome, after_handler_failure, run_handler};
use tracing::Instrument as _;

use crate::dead_letter::{DeadLetterConfig, Origin, copy_headers};
use crate::delivery::{Delivery, Shared};
use crate::error::{Error, ErrorKind as NatsErrorKind, Result};
use jwt_relay::{EventOutcome, RunReport, Stats};

use crate::event::{Event, Reporter};
use crate::headers::NatsHeadersRef;
use crate::run_loop::{Stopping, run_loop, verify_ahead};

/// Subscribes on core NATS and runs the [`Guard`] on every message before
/// the user's async handler, which runs with the verified identity in
/// [`jwt_relay::scope`] (so what it publishes carries the token).
///
/// Core NATS keeps nothing and cannot redeliver, so this subscriber does in
/// process what a broker would:
///
/// | outcome | what happens |
/// |---|---|
/// | `Accept` | the handler runs; an error or a panic is retried after the [`Backoff`], at most [`max_attempts`](Self::max_attempts) calls in all, then the message is rejected (`Handler`) |
/// | `Reject` | reported through [`on_event`](Self::on_event) and the [`Stats`], and published with the reason and without the token to the [dead-letter subject](Self::dead_letter_subject), if one is set |
/// | `Retry` | the message is held and checked again after the delay, while the subscription runs; if it stops first, the message is rejected with the transient reason |
/// | `Halt` | the run stops and returns the error |
///
/// A message published by a client is never given a publish time by core
/// NATS: an expiry policy such as [`Grace`](jwt_relay::Grace) sees none and
/// rejects expired tokens. Use JetStream for that.
#[derive(Clone)]
pub struct NatsSubscriber {
    client: Client,
    guard: Guard,
    queue_group: Option<String>,
    dead_letter: DeadLetterConfig,
    max_attempts: u32,
    backoff: Backoff,
    concurrency: usize,
    reporter: Reporter,
}

impl fmt::Debug for NatsSubscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSubscriber")
            .field("guard", &self.guard)
            .field("queue_group", &self.queue_group)
            .field("dead_letter", &self.dead_letter)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("concurrency", &self.concurrency)
            .field("reporter", &self.reporter)
            .finish_non_exhaustive()
    }
}

impl NatsSubscriber {
    /// Subscribes through `client` and judges messages with `guard`: no
    /// queue group, no dead-letter subject, 3 handler attempts with the
    /// default [`Backoff`], one message at a time.
    pub fn new(client: Client, guard: Guard) -> Self {
        NatsSubscriber {
            client,
            guard,
            queue_group: None,
            dead_letter: DeadLetterConfig::default(),
            max_attempts: 3,
            backoff: Backoff::default(),
            concurrency: 1,
            reporter: Reporter::default(),
        }
    }

    /// Joins this queue group: each message goes to one member of the group.
    pub fn queue_group(mut self, group: impl Into<String>) -> Self {
        self.queue_group = Some(group.into());
        self
    }

    /// Publishes each rejected message, with the reason headers and without
    /// the token, to this subject (core NATS: a stream capturing it keeps them).
    pub fn dead_letter_subject(mut self, subject: impl Into<String>) -> Self {
        self.dead_letter.subject = Some(subject.into());
        self
    }

    /// Keeps the token header in dead-lettered copies (off by default).
    pub fn keep_token_in_dead_letters(mut self) -> Self {
        self.dead_letter.keep_token = true;
        self
    }

    /// How many times the handler is called for one message before it is
    /// rejected (3; at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The backoff between handler attempts (transient verification
    /// failures wait as long as the guard says).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How many messages are handled at once (1: in order). While that many
    /// are, as many more (at least 16) are read ahead and their tokens verified
    /// on the runtime's other threads ([`ReadAhead`](jwt_relay::ReadAhead));
    /// each is still decided in its turn.
    pub fn concurrency(mut self, messages: usize) -> Self {
        self.concurrency = messages.max(1);
        self
    }

    /// Calls `callback` with what happened to each message (rejections
    /// included), as it happens. Keep it quick: it runs on the message path.
    pub fn on_event(mut self, callback: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.reporter.set_callback(Arc::new(callback));
        self
    }

    /// The live counters.
    pub fn stats(&self) -> Stats {
        self.reporter.stats().clone()
    }

    /// Subscribes to `subject` (in the queue group, if one is set). Messages
    /// published from now on are kept for [`Subscription::run`].
    pub async fn subscribe(mut self, subject: &str) -> Result<Subscription> {
        self.reporter.set_destination(subject);
        let subscribed = match &self.queue_group {
            Some(group) => {
                self.client
                    .queue_subscribe(subject.to_owned(), group.clone())
                    .await
            }
            None => self.client.subscribe(subject.to_owned()).await,
        };
        let subscriber = subscribed.map_err(|e| {
            Error::new(
                NatsErrorKind::Connection,
                format!("cannot subscribe to `{subject}`: {e}"),
            )
            .with_source(e)
        })?;
        Ok(Subscription {
            config: self,
            subscriber,
        })
    }

    async fn process<H, Fut, E>(&self, message: Message, handler: &H, mut stopping: Stopping) -> Result<()>
    where
        H: Fn(Delivery) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        let message = Arc::new(message);
        let subject = message.subject.as_str();
        let mut info = MessageInfo::new(subject);
        let mut failures = 0u32;
        loop {
            match self.guard.check(&NatsHeadersRef::of(&message), &info).await {
                Outcome::Accept(context) => {
                    let delivery = Delivery {
                        context: context.clone(),
                        message: Shared::Core(message.clone()),
                        jetstream: None,
                    };
                    let failure = match run_handler(context.clone(), async { handler(delivery).await }).await
                    {
                        Ok(()) => {
                            report(&self.reporter, subject, EventOutcome::Accepted(&context));
                            return Ok(());
                        }
                        Err(failure) => failure,
                    };
                    failures += 1;
                    let delay =
                        match after_handler_failure(failures, self.max_attempts, &self.backoff, &failure) {
                            HandlerVerdict::Retry(delay) => delay,
                            HandlerVerdict::DeadLetter(reason) => {
                                self.reporter.handler_failed();
                                self.reject(&message, &reason).await;
                                return Ok(());
                            }
                        };
                    report(
                        &self.reporter,
                        subject,
                        EventOutcome::HandlerFailed {
                            reason: &failure,
                            delay,
                        },
                    );
                    if !stopping.sleep(delay).await {
                        self.reject(&message, &failure).await;
                        return Ok(());
                    }
                }
                Outcome::Reject(reason) => {
                    self.reject(&message, &reason).await;
                    return Ok(());
                }
                Outcome::Retry(reason, delay) => {
                    report(
                        &self.reporter,
                        subject,
                        EventOutcome::Retry {
                            reason: &reason,
                            delay,
                        },
                    );
                    if !stopping.sleep(delay).await {
                        self.reject(&message, &reason).await;
                        return Ok(());
                    }
                }
                Outcome::Halt(reason) => {
                    report(&self.reporter, subject, EventOutcome::Halted(&reason));
                    return Err(Error::halted(reason));
                }
            }
            info.attempt = info.attempt.saturating_add(1);
        }
    }

    /// Reports the rejection, after publishing the dead-lettered copy when
    /// a dead-letter subject is set.
    async fn reject(&self, message: &Message, reason: &jwt_relay::Error) {
        let subject = message.subject.as_str();
        let mut dead_letter = None;
        let again = jwt_relay::already_dead_lettered(&NatsHeadersRef::of(message));
        let reason = again.as_ref().unwrap_or(reason);
        if let (Some(target), None) = (&self.dead_letter.subject, &again) {
            let origin = Origin {
                subject,
                stream: None,
                sequence: None,
            };
            let redaction = self.guard.redaction(self.dead_letter.keep_token);
            let headers = copy_headers(message.headers.as_ref(), reason, &redaction, origin);
            match self
                .client
                .publish_with_headers(target.clone(), headers, message.payload.clone())
                .await
            {
                Ok(()) => {
                    self.reporter.dead_lettered();
                    dead_letter = Some(target.as_str());
                }
                Err(e) => {
                    tracing::error!(subject, dead_letter = %target, "cannot publish the dead-lettered copy: {e}")
                }
            }
        }
        self.reporter.report(&Event {
            subject,
            stream_sequence: None,
            delivered: None,
            outcome: EventOutcome::Rejected { reason, dead_letter },
        });
    }
}

/// A live subscription, ready to [`run`](Self::run). Dropping it unsubscribes.
pub struct Subscription {
    config: NatsSubscriber,
    subscriber: async_nats::Subscriber,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The live counters.
    pub fn stats(&self) -> Stats {
        self.config.stats()
    }

    /// Handles messages until `shutdown` completes (messages in flight
    /// finish first; messages received but not started are dropped: core
    /// NATS keeps nothing), the subscription ends, or a halt (returned as
    /// [`ErrorKind::Halted`](crate::ErrorKind::Halted)). Returns the counts
    /// of the whole subscription.
    pub async fn run<H, Fut, E, S>(self, handler: H, shutdown: S) -> Result<RunReport>
    where
        H: Fn(Delivery) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
        S: Future<Output = ()>,
    {
        let Subscription { config, subscriber } = self;
        let handler = &handler;
        let config_ref = &config;
        run_loop(
            subscriber,
            config.concurrency,
            verify_ahead(&config.guard),
            shutdown,
            None,
            |message, stopping| {
                let span = config_ref.reporter.span(&message);
                config_ref.process(message, handler, stopping).instrument(span)
            },
        )
        .await?;
        Ok(config.reporter.stats().snapshot())
    }
}

/// Reports what happened to a core NATS message (no stream coordinates).
fn report(reporter: &Reporter, subject: &str, outcome: EventOutcome<'_>) {
    reporter.report(&Event {
        subject,
        stream_sequence: None,
        delivered: None,
        outcome,
    });
}
