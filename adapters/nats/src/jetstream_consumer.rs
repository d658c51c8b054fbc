//! The JetStream pull consumer: the Guard before the handler, and each
//! outcome mapped onto ack, nak, term and the dead-letter subject.

use std::fmt::{self, Display};
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, AckKind};
use jwt_relay::consume::{
    CopyFailed, DeadLetterCopy, Engine, Event, Incoming, Reporter, Retried, Settle, Step, Tries,
};
use jwt_relay::consume::{Position, PublishTime, Stats};
use jwt_relay::publish::PublishErrorKind;
use jwt_relay::{Backoff, Guard, RunReport};
use tokio::time::Instant;

use crate::acks::{Acks, settled};
use crate::dead_letter::{DeadLetter, copy_headers};
use crate::error::{Error, ErrorKind, Result};
use crate::headers::NatsHeadersRef;
use crate::jetstream_publisher::publish_acked;
use crate::jetstream_source::{PullOptions, messages};
use crate::received::{JetStreamMeta, Received, Shared};
use crate::run_loop::{Stopping, or_limit, run_loop, verify_ahead};
use crate::subject::overlap;

/// Consumes a JetStream pull consumer through a [`Guard`], at least once:
///
/// | outcome | what happens to the message |
/// |---|---|
/// | `Accept` | the handler runs in the identity's [`jwt_relay::scope`], with `in_progress` acks while it works; success → `ack`, sent with the other acks ready (a double ack when [configured](Self::double_ack)) |
/// | handler error or panic | `nak` with the [`Backoff`] delay, until the last allowed delivery ([`max_attempts`](Self::max_attempts), else the consumer's `max_deliver`, else 3); then dead-lettered (`Handler`) |
/// | `Reject` | a copy with the reason headers and without the token is published to the dead-letter subject (`<subject>.dlq` by default) and its store acknowledged, then the original is `term`ed. If the copy cannot be stored, the original is `nak`ed instead: never lost |
/// | `Retry` | `nak` with the delay. At the consumer's last allowed delivery (`max_deliver`), when the server would not deliver it again, the message is held here instead, with `in_progress` acks, and checked again after the delay |
/// | `Halt` | `nak`, and the run stops and returns the error |
///
/// The JetStream metadata timestamp (set by the server when it stored the
/// message) is given to the expiry policy as a broker-set publish time, so
/// [`Grace`](jwt_relay::Grace) works; the delivery count is the attempt.
///
/// Acks of handled messages are sent in groups: when the consumer is about
/// to wait for anything (the next message, a handler), or after 64 messages
/// handled without waiting, so that a fast consumer does not pay one socket
/// write and one wake-up of the connection per message. When the run stops,
/// they are sent and confirmed before `run` returns. Naks, terms and
/// `in_progress` acks go at once.
///
/// Capture the dead-letter subject with a stream (see
/// [`Topology`](crate::Topology)), and keep it outside the consumer's
/// filter. Prefer an unlimited `max_deliver` (the default) or a generous
/// one: the server's delivery count also counts transient retries.
#[derive(Clone)]
pub struct JetStreamConsumer {
    consumer: PullConsumer,
    engine: Engine,
    dead_letter: DeadLetter,
    double_ack: bool,
    max_attempts: Option<u32>,
    progress_every: Option<Duration>,
    concurrency: usize,
    batch: Option<usize>,
    limit: Option<u64>,
}

impl fmt::Debug for JetStreamConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = self.consumer.cached_info();
        f.debug_struct("JetStreamConsumer")
            .field("stream", &info.stream_name)
            .field("consumer", &info.name)
            .field("engine", &self.engine)
            .field("dead_letter", &self.dead_letter)
            .field("double_ack", &self.double_ack)
            .field("max_attempts", &self.max_attempts)
            .field("progress_every", &self.progress_every)
            .field("concurrency", &self.concurrency)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl JetStreamConsumer {
    /// Consumes `consumer` (a pull consumer with explicit acks) through
    /// `guard`: dead letters to `<subject>.dlq` without the token, acks
    /// sent in groups, the default [`Backoff`] between handler attempts, `in_progress`
    /// every half `ack_wait`, one message at a time.
    pub fn new(consumer: PullConsumer, guard: Guard) -> Self {
        JetStreamConsumer {
            consumer,
            engine: Engine::new(guard, Reporter::new("nats")),
            dead_letter: DeadLetter::default(),
            double_ack: false,
            max_attempts: None,
            progress_every: None,
            concurrency: 1,
            batch: None,
            limit: None,
        }
    }

    /// Where rejected messages go ([`DeadLetter`]: `<subject>.dlq` by default).
    pub fn dead_letter(mut self, dead_letter: DeadLetter) -> Self {
        self.dead_letter = dead_letter;
        self
    }

    /// Keeps the token header in dead-lettered copies (off by default: a
    /// dead-letter stream is read by operators and tools).
    pub fn keep_token_in_dead_letters(mut self) -> Self {
        self.engine = self.engine.keep_token(true);
        self
    }

    /// Waits for the server to confirm each `ack` and `term` (a double ack),
    /// one message at a time: slower, and no ack is grouped with others.
    pub fn double_ack(mut self) -> Self {
        self.double_ack = true;
        self
    }

    /// The delivery at which a failing handler's message is dead-lettered
    /// (at least 1; never more than the consumer's `max_deliver`).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// The backoff of `nak`s after handler failures (transient verification
    /// failures wait as long as the guard says).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.engine = self.engine.backoff(backoff);
        self
    }

    /// How often a running handler tells the server it is still working
    /// (`in_progress`); half the consumer's `ack_wait` by default.
    pub fn progress_every(mut self, every: Duration) -> Self {
        self.progress_every = Some(every.max(Duration::from_millis(10)));
        self
    }

    /// How many messages are handled at once (1: in order). While that many
    /// are, as many more (at least 16, as far as the [batch](Self::batch)
    /// allows) are read ahead and their tokens verified on the runtime's
    /// other threads ([`ReadAhead`](jwt_relay::verify::ReadAhead));
    /// each is still decided in its turn. A message read ahead waits
    /// unacknowledged, as those the client buffers do: with slow handlers,
    /// keep the consumer's `ack_wait` above the time the messages handled and
    /// read ahead take together.
    pub fn concurrency(mut self, messages: usize) -> Self {
        self.concurrency = messages.max(1);
        self
    }

    /// Messages asked for per pull request (twice the concurrency by
    /// default: messages waiting in the client count against `ack_wait`).
    /// A larger batch, when handlers are quick, lets more tokens be verified
    /// ahead: up to 16 more than the concurrency.
    pub fn batch(mut self, messages: usize) -> Self {
        self.batch = Some(messages.max(1));
        self
    }

    /// Stops after this many messages ended (were handled or dead-lettered): for tools and
    /// tests. Messages already in flight then finish.
    pub fn limit(mut self, messages: u64) -> Self {
        self.limit = Some(messages);
        self
    }

    /// Calls `callback` with what happened to each message, as it happens.
    pub fn on_event(mut self, callback: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.engine = self.engine.on_event(callback);
        self
    }

    /// The live counters.
    pub fn stats(&self) -> Stats {
        self.engine.stats().clone()
    }

    /// Handles messages until `shutdown` completes or a halt. On shutdown it
    /// stops pulling and lets the handlers in flight finish and ack;
    /// messages pulled but not started are redelivered by the server after
    /// `ack_wait`. While the server is unreachable (a restart) it keeps
    /// pulling again, and the server redelivers what was not acked.
    pub async fn run<H, Fut, E, S>(&self, handler: H, shutdown: S) -> Result<RunReport>
    where
        H: Fn(Received) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
        S: Future,
    {
        let options = PullOptions {
            batch: self.batch.unwrap_or(self.concurrency.saturating_mul(2)),
            heartbeat: Duration::from_secs(15),
        };
        let source = messages(self.consumer.clone(), options);
        let handler = &handler;
        let mut ahead = verify_ahead(self.engine.guard());
        let limit = u32::try_from(self.handler_limit()).unwrap_or(u32::MAX);
        let engine = &self.engine.clone().max_attempts(limit);
        let stream = self.consumer.cached_info().stream_name.clone();
        let stream = stream.as_str();
        let ahead = move |item: &Result<jetstream::Message>| {
            if let Ok(message) = item {
                ahead(&message.message);
            }
        };
        // A double ack waits for each confirmation: nothing to group.
        let acks = (!self.double_ack).then(Acks::default);
        let acks = acks.as_ref();
        let dead_letters_checked = &tokio::sync::OnceCell::new();
        run_loop(
            source,
            self.concurrency,
            ahead,
            or_limit(shutdown, self.limit, self.engine.stats()),
            None,
            acks,
            |item, stopping| async move {
                let message = item?;
                let problem = dead_letters_checked
                    .get_or_init(|| self.dead_letters_outside(&message.context))
                    .await;
                if let Some(problem) = problem {
                    self.nak(&message, Duration::ZERO).await;
                    return Err(Error::new(ErrorKind::Configuration, problem.clone()));
                }
                self.process(engine, stream, message, handler, stopping, acks)
                    .await
            },
        )
        .await?;
        Ok(self.engine.stats().snapshot())
    }

    /// Why this consumer would receive its own dead letters, if it would: a
    /// dead-letter subject (`<subject>.dlq` for each subject it reads, or the
    /// fixed one) that the stream captures. Checked once, before the first
    /// message is decided.
    async fn dead_letters_outside(&self, jetstream: &jetstream::Context) -> Option<String> {
        let info = self.consumer.cached_info();
        let stream_name = &info.stream_name;
        let stream_subjects = match jetstream.get_stream(stream_name).await {
            Ok(stream) => stream.cached_info().config.subjects.clone(),
            Err(e) => {
                tracing::warn!(stream = %stream_name, "cannot read the stream's subjects to check the dead-letter subject: {e}");
                return None;
            }
        };
        let filter = &info.config.filter_subject;
        let read: Vec<&String> = if filter.is_empty() {
            stream_subjects.iter().collect()
        } else {
            vec![filter]
        };
        let dead_letters: Vec<String> = read.iter().map(|s| self.dead_letter.subject_for(s)).collect();
        let (dead, captured) = dead_letters.iter().find_map(|dead| {
            let captured = stream_subjects.iter().find(|s| overlap(dead, s))?;
            Some((dead, captured))
        })?;
        Some(format!(
            "the dead-letter subject `{dead}` is inside `{captured}`, a subject of stream `{stream_name}` that \
             consumer `{}` reads: it would receive its own dead letters. Set a dead-letter subject outside \
             the stream (`DeadLetter::subject`) and capture it with another stream",
            info.name
        ))
    }

    /// The delivery at which a failing handler's message is dead-lettered.
    fn handler_limit(&self) -> u64 {
        let max_deliver = self.max_deliver();
        match (self.max_attempts, max_deliver) {
            (Some(n), Some(max)) => u64::from(n).min(max),
            (Some(n), None) => u64::from(n),
            (None, Some(max)) => max,
            (None, None) => 3,
        }
    }

    /// The consumer's `max_deliver`, if limited.
    fn max_deliver(&self) -> Option<u64> {
        u64::try_from(self.consumer.cached_info().config.max_deliver)
            .ok()
            .filter(|&n| n > 0)
    }

    fn progress_interval(&self) -> Duration {
        self.progress_every.unwrap_or_else(|| {
            let ack_wait = self.consumer.cached_info().config.ack_wait;
            if ack_wait.is_zero() {
                Duration::from_secs(15)
            } else {
                (ack_wait / 2).max(Duration::from_millis(10))
            }
        })
    }

    /// Decides on one message with the engine, settling it through [`JetStreamSettler`]; at
    /// its last allowed delivery, a message to retry is held here.
    async fn process<H, Fut, E>(
        &self,
        engine: &Engine,
        stream: &str,
        message: jetstream::Message,
        handler: &H,
        stopping: Stopping,
        acks: Option<&Acks>,
    ) -> Result<()>
    where
        H: Fn(Received) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        let meta = match message.info() {
            Ok(info) => JetStreamMeta {
                stream_sequence: info.stream_sequence,
                delivered: u64::try_from(info.delivered).unwrap_or(0).max(1),
                published: SystemTime::from(info.published),
            },
            Err(e) => {
                tracing::warn!(subject = %message.subject, "not a JetStream message, terminated: {e}");
                self.settle(&message, AckKind::Term, &stopping).await;
                return Ok(());
            }
        };
        let message = Arc::new(message);
        let headers = NatsHeadersRef::of(&message.message);
        // The server's delivery count is the count of tries (transient retries and handler
        // failures alike).
        let before = u32::try_from(meta.delivered - 1).unwrap_or(u32::MAX);
        let mut incoming = Incoming {
            headers: &headers,
            destination: stream,
            subject: message.subject.as_str(),
            position: Position::Sequence {
                stream,
                sequence: meta.stream_sequence,
                delivered: meta.delivered,
            },
            published: Some(PublishTime::broker(meta.published)),
            tries: Tries {
                checks: before,
                failures: before,
                copies: 0,
            },
        };
        let mut settler = JetStreamSettler {
            consumer: self,
            message: &message,
            stopping: &stopping,
            acks,
            last_delivery: self.max_deliver().is_some_and(|max| meta.delivered >= max),
        };
        loop {
            let handle = |context, _| {
                let delivery = Received {
                    context,
                    message: Shared::JetStream(message.clone()),
                    jetstream: Some(meta),
                };
                self.with_progress(&message, handler(delivery))
            };
            let (delay, tries) = match engine.process(&incoming, &mut settler, handle).await {
                Step::Done => return Ok(()),
                Step::Halt(reason) => return Err(Error::halted(reason)),
                Step::Stop(error) => return Err(error),
                Step::Again { delay, tries, .. } => (delay, tries),
            };
            let mut holding = stopping.clone();
            if !self.hold(&message, delay, &mut holding).await {
                tracing::error!(
                    subject = %message.subject,
                    seq = meta.stream_sequence,
                    "stopping while holding a message at its last delivery (max_deliver): the server \
                     will not deliver it again"
                );
                self.nak(&message, delay).await;
                return Ok(());
            }
            incoming.tries = tries;
        }
    }

    /// Runs `work`, telling the server every so often that it is still going.
    async fn with_progress<F: Future>(&self, message: &jetstream::Message, work: F) -> F::Output {
        let mut work = pin!(work);
        // A handler that finishes at its first poll needs no timer.
        if let Poll::Ready(output) = poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await {
            return output;
        }
        let every = self.progress_interval();
        let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
        loop {
            tokio::select! {
                biased;
                output = &mut work => return output,
                _ = ticker.tick() => {
                    if let Err(e) = message.ack_with(AckKind::Progress).await {
                        tracing::debug!("cannot send in_progress: {e}");
                    }
                }
            }
        }
    }

    /// Keeps the message for `delay`, with `in_progress` acks; `false` if
    /// the run started stopping first.
    async fn hold(&self, message: &jetstream::Message, delay: Duration, stopping: &mut Stopping) -> bool {
        let every = self.progress_interval();
        let until = Instant::now() + delay;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return !stopping.is_stopping();
            }
            if !stopping.sleep(left.min(every)).await {
                return false;
            }
            if let Err(e) = message.ack_with(AckKind::Progress).await {
                tracing::debug!("cannot send in_progress: {e}");
            }
        }
    }

    async fn nak(&self, message: &jetstream::Message, delay: Duration) {
        let delay = (!delay.is_zero()).then_some(delay);
        if let Err(e) = message.ack_with(AckKind::Nak(delay)).await {
            tracing::warn!(subject = %message.subject, "cannot nak (redelivered after ack_wait): {e}");
        }
    }

    /// Acks or terms, waiting for the server's confirmation when double
    /// acks are on or the run is stopping (so that what the handlers in
    /// flight finished is settled on the server when `run` returns). A
    /// failure is logged: the server redelivers the message.
    async fn settle(&self, message: &jetstream::Message, kind: AckKind, stopping: &Stopping) {
        let sent = if self.double_ack || stopping.is_stopping() {
            message.double_ack_with(kind).await
        } else {
            message.ack_with(kind).await
        };
        settled(message, kind, sent);
    }
}

/// JetStream's settle verbs for one message: `ack` (grouped with others unless double acks),
/// `nak` with a delay, `term` after the copy is stored, and a hold in process at the last
/// allowed delivery.
struct JetStreamSettler<'a> {
    consumer: &'a JetStreamConsumer,
    message: &'a Arc<jetstream::Message>,
    stopping: &'a Stopping,
    acks: Option<&'a Acks>,
    last_delivery: bool,
}

impl Settle for JetStreamSettler<'_> {
    type Stop = Error;

    async fn ack(&mut self) -> bool {
        match self.acks {
            Some(acks) if !self.stopping.is_stopping() => acks.queue(self.message.clone()),
            _ => {
                self.consumer
                    .settle(self.message, AckKind::Ack, self.stopping)
                    .await;
            }
        }
        true
    }

    async fn retry(&mut self, delay: Duration, _tries: Tries) -> Result<Retried> {
        if self.last_delivery {
            return Ok(Retried::Hold);
        }
        self.consumer.nak(self.message, delay).await;
        Ok(Retried::Scheduled)
    }

    /// Publishes the copy (waiting for its store), then terms the original. No stream for the
    /// dead-letter subject stops the run, the message kept.
    async fn dead_letter(
        &mut self,
        copy: &DeadLetterCopy<'_>,
    ) -> std::result::Result<Option<String>, CopyFailed<Error>> {
        let message = self.message;
        let subject = message.subject.as_str();
        let target = self.consumer.dead_letter.subject_for(subject);
        let headers = copy_headers(message.headers.as_ref(), copy);
        match publish_acked(&message.context, &target, headers, message.payload.clone()).await {
            Ok(_) => {
                self.consumer.settle(message, AckKind::Term, self.stopping).await;
                Ok(Some(target))
            }
            Err(e) if e.kind() == PublishErrorKind::Unroutable => {
                self.consumer.nak(message, Duration::ZERO).await;
                Err(CopyFailed::Stop(
                    Error::new(
                        ErrorKind::Broker,
                        format!(
                            "cannot dead-letter messages of `{subject}`: no stream captures the dead-letter subject \
                             `{target}`; the message was kept. Declare a dead-letter stream (Topology) or set \
                             `DeadLetter::subject`"
                        ),
                    )
                    .with_source(e),
                ))
            }
            Err(e) => Err(CopyFailed::Later(format!("to `{target}`: {e}"))),
        }
    }

    async fn discard(&mut self, _reason: &jwt_relay::Error) -> bool {
        self.consumer
            .settle(self.message, AckKind::Term, self.stopping)
            .await;
        true
    }

    async fn release(&mut self) {
        self.consumer.nak(self.message, Duration::ZERO).await;
    }
}
