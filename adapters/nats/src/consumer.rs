//! Core NATS subscribing: the Guard before the handler, on plain and queue
//! subscriptions.

use std::convert::Infallible;
use std::fmt::{self, Display};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, Message};
use jwt_relay::consume::{
    CopyFailed, DeadLetterCopy, Engine, Event, Incoming, Reporter, Retried, Settle, Step, Tries,
};
use jwt_relay::consume::{Position, Stats};
use jwt_relay::{Backoff, Guard, RunReport};

use crate::dead_letter::{DeadLetter, copy_headers};
use crate::error::{Error, ErrorKind as NatsErrorKind, Result};
use crate::headers::NatsHeadersRef;
use crate::received::{Received, Shared};
use crate::run_loop::{DRAIN_TIMEOUT, Stopping, or_limit, run_loop, verify_ahead};

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
/// | `Reject` | reported through [`on_event`](Self::on_event) and the [`Stats`], and published with the reason and without the token to the [dead-letter subject](Self::dead_letter), if one is set |
/// | `Retry` | the message is held and checked again after the delay, while the subscription runs (its drain included); if it stops first, the message is rejected with the transient reason |
/// | `Halt` | the run stops and returns the error |
///
/// A message published by a client is never given a publish time by core
/// NATS: an expiry policy such as [`Grace`](jwt_relay::Grace) sees none and
/// rejects expired tokens. Use JetStream for that.
#[derive(Clone)]
pub struct Consumer {
    client: Client,
    engine: Engine,
    queue_group: Option<String>,
    dead_letter: Option<DeadLetter>,
    concurrency: usize,
    limit: Option<u64>,
    drain_timeout: Duration,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("engine", &self.engine)
            .field("queue_group", &self.queue_group)
            .field("dead_letter", &self.dead_letter)
            .field("concurrency", &self.concurrency)
            .field("limit", &self.limit)
            .field("drain_timeout", &self.drain_timeout)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Subscribes through `client` and judges messages with `guard`: no
    /// queue group, no dead-letter subject, 3 handler attempts with the
    /// default [`Backoff`], one message at a time, a 30 s drain when it stops.
    pub fn new(client: Client, guard: Guard) -> Self {
        Consumer {
            client,
            engine: Engine::new(guard, Reporter::new("nats")),
            queue_group: None,
            dead_letter: None,
            concurrency: 1,
            limit: None,
            drain_timeout: DRAIN_TIMEOUT,
        }
    }

    /// Joins this queue group: each message goes to one member of the group.
    pub fn queue_group(mut self, group: impl Into<String>) -> Self {
        self.queue_group = Some(group.into());
        self
    }

    /// Publishes each rejected message, with the reason headers and without
    /// the token, to this [`DeadLetter`] subject (none by default: core NATS
    /// keeps nothing; a stream capturing the subject keeps them).
    pub fn dead_letter(mut self, dead_letter: DeadLetter) -> Self {
        self.dead_letter = Some(dead_letter);
        self
    }

    /// Keeps the token header in dead-lettered copies (off by default).
    pub fn keep_token_in_dead_letters(mut self) -> Self {
        self.engine = self.engine.keep_token(true);
        self
    }

    /// How many times the handler is called for one message before it is
    /// rejected (3; at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.engine = self.engine.max_attempts(attempts);
        self
    }

    /// The backoff between handler attempts (transient verification
    /// failures wait as long as the guard says).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.engine = self.engine.backoff(backoff);
        self
    }

    /// How many messages are handled at once (1: in order). While that many
    /// are, as many more (at least 16) are read ahead and their tokens verified
    /// on the runtime's other threads ([`ReadAhead`](jwt_relay::verify::ReadAhead));
    /// each is still decided in its turn.
    pub fn concurrency(mut self, messages: usize) -> Self {
        self.concurrency = messages.max(1);
        self
    }

    /// Stops after this many messages ended (were handled or rejected): for tools and tests.
    /// It stops as on shutdown ([`Subscription::run`]): the messages in flight finish, and
    /// those the client already received are handled too, so a few more may end.
    pub fn limit(mut self, messages: u64) -> Self {
        self.limit = Some(messages);
        self
    }

    /// How long a stopping run, once unsubscribed, still takes the messages the client had
    /// already received (30 s; see [`Subscription::run`]). Those not started by then are
    /// dropped, with a warning: core NATS keeps nothing. Zero: no drain, they are all dropped.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Calls `callback` with what happened to each message (rejections
    /// included), as it happens. Keep it quick: it runs on the message path.
    pub fn on_event(mut self, callback: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.engine = self.engine.on_event(callback);
        self
    }

    /// The live counters.
    pub fn stats(&self) -> Stats {
        self.engine.stats().clone()
    }

    /// Subscribes to `subject` (in the queue group, if one is set). Messages
    /// published from now on are kept for [`Subscription::run`].
    pub async fn subscribe(self, subject: &str) -> Result<Subscription> {
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
            subject: subject.to_owned(),
            subscriber,
        })
    }

    /// Decides on one message with the engine, holding it in process for its retries (core
    /// NATS redelivers nothing).
    async fn process<H, Fut, E>(
        &self,
        destination: &str,
        message: Message,
        handler: &H,
        mut stopping: Stopping,
    ) -> Result<()>
    where
        H: Fn(Received) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        let message = Arc::new(message);
        let headers = NatsHeadersRef::of(&message);
        let mut settler = CoreSettler {
            client: &self.client,
            dead_letter: self.dead_letter.as_ref(),
            message: &message,
        };
        let mut incoming = Incoming {
            headers: &headers,
            destination,
            subject: message.subject.as_str(),
            position: Position::None,
            published: None,
            tries: Tries::default(),
        };
        loop {
            let handle = |context, _| {
                handler(Received {
                    context,
                    message: Shared::Core(message.clone()),
                    jetstream: None,
                })
            };
            match self.engine.process(&incoming, &mut settler, handle).await {
                Step::Done => return Ok(()),
                Step::Halt(reason) => return Err(Error::halted(reason)),
                Step::Stop(never) => match never {},
                Step::Again { delay, tries, reason } => {
                    if !stopping.sleep(delay).await {
                        let step = self.engine.reject(&incoming, &mut settler, &reason).await;
                        debug_assert!(matches!(step, Step::Done));
                        return Ok(());
                    }
                    incoming.tries = tries;
                }
            }
        }
    }
}

/// Core NATS's settle verbs: nothing to acknowledge, retries held in process, and a copy
/// published (without confirmation: core NATS has none) to the dead-letter subject, if set.
struct CoreSettler<'a> {
    client: &'a Client,
    dead_letter: Option<&'a DeadLetter>,
    message: &'a Message,
}

impl Settle for CoreSettler<'_> {
    type Stop = Infallible;

    async fn ack(&mut self) -> bool {
        true
    }

    async fn retry(&mut self, _delay: Duration, _tries: Tries) -> std::result::Result<Retried, Infallible> {
        Ok(Retried::Hold)
    }

    async fn dead_letter(
        &mut self,
        copy: &DeadLetterCopy<'_>,
    ) -> std::result::Result<Option<String>, CopyFailed<Infallible>> {
        let Some(target) = self.dead_letter.map(|d| d.subject_for(&self.message.subject)) else {
            return Ok(None);
        };
        let headers = copy_headers(self.message.headers.as_ref(), copy);
        let published = self
            .client
            .publish_with_headers(target.clone(), headers, self.message.payload.clone())
            .await;
        match published {
            Ok(()) => Ok(Some(target)),
            Err(e) => {
                // Nothing keeps the message to try again: it is reported as rejected, uncopied.
                tracing::error!(subject = %self.message.subject, dead_letter = %target, "cannot publish the dead-lettered copy: {e}");
                Ok(None)
            }
        }
    }

    async fn discard(&mut self, _reason: &jwt_relay::Error) -> bool {
        true
    }

    async fn release(&mut self) {}
}

/// A live subscription, ready to [`run`](Self::run). Dropping it unsubscribes.
pub struct Subscription {
    config: Consumer,
    subject: String,
    subscriber: async_nats::Subscriber,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("config", &self.config)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The live counters.
    pub fn stats(&self) -> Stats {
        self.config.stats()
    }

    /// Handles messages until `shutdown` completes (or the [`limit`](Consumer::limit) is
    /// reached), the subscription ends, or a halt (returned as
    /// [`ErrorKind::Halted`](crate::ErrorKind::Halted)). Returns the counts of the whole
    /// subscription.
    ///
    /// On shutdown it leaves gracefully, as a member of a queue group that goes away should:
    /// it unsubscribes on the server ([`Subscriber::drain`](async_nats::Subscriber::drain)),
    /// so that what is published from then on goes to the other members, then handles and
    /// settles every message the client had already received (core NATS would not deliver
    /// them again), lets the handlers in flight finish, and returns. The drain lasts at most
    /// the [`drain_timeout`](Consumer::drain_timeout) (30 s): the messages not started by then
    /// are dropped, with a warning. Messages the server sent just before it took the
    /// unsubscribe and that reach the client after it are lost all the same: async-nats 0.51
    /// forgets the subscription on its connection's next turn, without waiting for the
    /// server's answer.
    ///
    /// After a halt, the messages in flight finish and those not started are dropped.
    pub async fn run<H, Fut, E, S>(self, handler: H, shutdown: S) -> Result<RunReport>
    where
        H: Fn(Received) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
        S: Future,
    {
        let Subscription {
            config,
            subject,
            subscriber,
        } = self;
        let (handler, config_ref, subject) = (&handler, &config, subject.as_str());
        run_loop(
            subscriber,
            config.concurrency,
            verify_ahead(config.engine.guard()),
            or_limit(shutdown, config.limit, config.engine.stats()),
            Some(config.drain_timeout),
            None,
            |message, stopping| config_ref.process(subject, message, handler, stopping),
        )
        .await?;
        Ok(config.engine.stats().snapshot())
    }
}
