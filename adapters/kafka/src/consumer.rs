//! The consume side: topics read through the Guard, partitions handled in order and
//! concurrently, offsets stored only once a record is settled.

use std::collections::VecDeque;
use std::fmt;
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use jwt_relay::consume::{ConsumeErrorKind, Stats};
use jwt_relay::verify::ReadAhead;
use jwt_relay::{Backoff, ConsumeError, Guard, RunReport};
use rdkafka::ClientConfig;
use rdkafka::client::{DefaultClientContext, OAuthToken};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientContext, Statistics};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::dead_letter::DeadLetter;
use crate::headers::KafkaHeaders;
use crate::ownership::Ownership;
use crate::partition::{Incoming, Partition, Signal, StoredOffset, set_paused};
use crate::received::Received;
use jwt_relay::consume::{Engine, Event, Reporter};

/// What a consumer stops with: [`jwt_relay::ConsumeError`].
pub type Result<T, E = ConsumeError> = std::result::Result<T, E>;

/// How long reading waits for half of a full partition's buffer to be free before it hands
/// that partition its next record as soon as one place is free.
const REFILL_WAIT: Duration = Duration::from_millis(1);

/// How long reading then waits for one free place before it takes the partition for stuck: its
/// records wait aside, and the other partitions are read on. A handler stuck on one record holds
/// the others up for at most this long.
const STUCK_WAIT: Duration = Duration::from_millis(100);

/// Consumer settings that a producer does not know (removed from the dead-letter producer's
/// configuration, so that librdkafka does not warn about them).
const CONSUMER_ONLY: [&str; 13] = [
    "group.id",
    "group.instance.id",
    "group.protocol",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.commit.interval.ms",
    "auto.offset.reset",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "isolation.level",
    "enable.partition.eof",
];

/// The consumer's rdkafka context. It counts partition assignments, so that a partition's task
/// knows when its records come from a new assignment (and forgets a rewind or retry counts of
/// the previous one), and it hands revoked partitions over cleanly: their buffered records are
/// dropped, their handlers in flight finish, and their offsets are committed before the
/// rebalance goes on ([`ConsumerBuilder::drain_timeout`]).
#[derive(Debug)]
pub struct Rebalances<C = DefaultClientContext> {
    assignments: AtomicU64,
    pub(crate) ownership: Ownership,
    client: C,
}

impl<C> Rebalances<C> {
    fn new(client: C, drain: Duration) -> Self {
        Rebalances {
            assignments: AtomicU64::new(0),
            ownership: Ownership::new(drain),
            client,
        }
    }

    /// How many assignments the consumer has received.
    pub fn assignments(&self) -> u64 {
        self.assignments.load(Ordering::SeqCst)
    }

    /// The user's own context ([`ConsumerBuilder::context`]).
    pub fn client(&self) -> &C {
        &self.client
    }
}

/// Every client callback goes to the user's context: logs, statistics, errors, and the
/// OAUTHBEARER token refresh.
impl<C: ClientContext> ClientContext for Rebalances<C> {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = C::ENABLE_REFRESH_OAUTH_TOKEN;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.client.log(level, fac, log_message);
    }

    fn stats(&self, statistics: Statistics) {
        self.client.stats(statistics);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.client.stats_raw(statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.client.error(error, reason);
    }

    fn generate_oauth_token(
        &self,
        oauthbearer_config: Option<&str>,
    ) -> std::result::Result<OAuthToken, Box<dyn std::error::Error>> {
        self.client.generate_oauth_token(oauthbearer_config)
    }
}

/// Eager rebalances revoke every partition and assign the new set; `cooperative-sticky` ones
/// revoke and assign only the partitions that move. Either way a revoked partition is handed
/// over before librdkafka lets it go.
impl<C: ClientContext> ConsumerContext for Rebalances<C> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            self.ownership.revoked(consumer, list);
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let generation = self.assignments.fetch_add(1, Ordering::SeqCst) + 1;
            self.ownership.assigned(list, generation);
        }
    }
}

/// Reads Kafka topics through a [`Guard`], with at-least-once delivery:
///
/// | outcome | what happens to the record |
/// |---|---|
/// | `Accept` | the handler runs in the identity's [`scope`](jwt_relay::scope); on success its offset is stored |
/// | handler error or panic | the handler is called again after the [`backoff`](ConsumerBuilder::backoff), at most [`max_attempts`](ConsumerBuilder::max_attempts) times in all, then the record is dead-lettered (`Handler`) |
/// | `Reject` | a copy goes to the [dead-letter topic](DeadLetter) (`<topic>.dlq`) with the reason, the original topic, partition, offset and timestamp as headers and without the token; once the broker acknowledged it, the offset is stored. If the copy cannot be written, the record is tried again later: never lost |
/// | `Retry` | the partition is paused and rewound to the record, and resumed after the delay; other partitions keep flowing, no offset moves |
/// | `Halt` | nothing is stored for the record, the consumer stops, and [`run`](Consumer::run) returns [`ConsumeErrorKind::Halted`] |
///
/// Records of one partition are handled in order, one at a time; partitions are handled
/// concurrently, at most [`concurrency`](ConsumerBuilder::concurrency) at once, and a handler
/// stuck on one partition holds the others up for at most 100 ms ([`buffer`](ConsumerBuilder::buffer)). While a
/// record is handled, the tokens of the records waiting behind it are verified ahead on the
/// runtime's other threads ([`ReadAhead`]): a stream of distinct tokens uses every core, and
/// each record is still decided in turn, against the time of its turn. The consumer
/// sets `enable.auto.offset.store=false`: an offset is stored only after its record was handled
/// or dead-lettered, and committed by librdkafka's auto-commit (and at shutdown). The record's
/// timestamp goes to the expiry policy: `LogAppendTime` as set by the broker, `CreateTime` as
/// set by the producer.
///
/// # Many instances
///
/// Instances with the same `group.id` share the topics' partitions. When a rebalance takes a
/// partition away (eager, or `cooperative-sticky`, where only the moved partitions stop), its
/// records not started yet are dropped, its handler in flight finishes (for at most the
/// [`drain_timeout`](ConsumerBuilder::drain_timeout)), and the stored offsets are committed
/// before librdkafka lets the partition go: its next owner starts after the last record handled
/// here, and no partition is handled by two instances at once. Partitions lost without a revoke
/// (the session timed out) stop at once; their records in flight may be handled again. An
/// instance killed without a clean close leaves what it settled since its last commit
/// (`auto.commit.interval.ms`, 5 s by default) to be handled again.
///
/// ```no_run
/// use jwt_relay::{Guard, Verifier};
/// use jwt_relay_kafka::Consumer;
/// use jwt_relay_kafka::rdkafka::ClientConfig;
///
/// # async fn run(verifier: Verifier) -> Result<(), jwt_relay::ConsumeError> {
/// let mut config = ClientConfig::new();
/// config
///     .set("bootstrap.servers", "127.0.0.1:9092")
///     .set("group.id", "billing");
/// let consumer = Consumer::builder(&config, Guard::new(verifier)).topic("orders").build()?;
/// let report = consumer
///     .run(
///         |delivery| async move {
///             println!("order from {:?}", delivery.context().subject());
///             Ok::<_, std::io::Error>(())
///         },
///         std::future::pending::<()>(), // a shutdown signal, such as Ctrl-C
///     )
///     .await?;
/// println!("{} handled", report.accepted);
/// # Ok(())
/// # }
/// ```
pub struct Consumer<C = DefaultClientContext>
where
    C: ClientContext + 'static,
{
    inner: Arc<Inner<C>>,
}

/// What a consumer is, shared with its partitions' tasks.
pub(crate) struct Inner<C: ClientContext + 'static> {
    pub(crate) consumer: StreamConsumer<Rebalances<C>>,
    pub(crate) producer: FutureProducer,
    pub(crate) engine: Engine,
    pub(crate) topics: Vec<String>,
    pub(crate) dead_letter: DeadLetter,
    /// Between tries at seeking back.
    pub(crate) backoff: Backoff,
    pub(crate) buffer: usize,
    pub(crate) concurrency: Semaphore,
    pub(crate) limit: Option<u64>,
    /// Records started and settled under the limit.
    pub(crate) taken: AtomicU64,
    pub(crate) settled: AtomicU64,
    pub(crate) produce_timeout: Duration,
}

impl<C: ClientContext> Inner<C> {
    /// Whether records may still be taken: no limit, or fewer taken. A partition's task that
    /// ends while this holds ended early, which only a halt (signalled) or a bug does.
    fn below_limit(&self) -> bool {
        self.limit
            .is_none_or(|limit| self.taken.load(Ordering::SeqCst) < limit)
    }
}

impl<C: ClientContext> Clone for Consumer<C> {
    fn clone(&self) -> Self {
        Consumer {
            inner: self.inner.clone(),
        }
    }
}

impl<C: ClientContext> fmt::Debug for Consumer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("Consumer")
            .field("topics", &inner.topics)
            .field("engine", &inner.engine)
            .field("dead_letter", &inner.dead_letter)
            .field("buffer", &inner.buffer)
            .field("limit", &inner.limit)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Consumer`].
pub struct ConsumerBuilder<C = DefaultClientContext> {
    config: ClientConfig,
    context: C,
    engine: Engine,
    topics: Vec<String>,
    producer: Option<FutureProducer>,
    dead_letter: DeadLetter,
    backoff: Backoff,
    buffer: usize,
    concurrency: usize,
    limit: Option<u64>,
    produce_timeout: Duration,
    drain: Duration,
}

impl<C> fmt::Debug for ConsumerBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerBuilder")
            .field("topics", &self.topics)
            .field("dead_letter", &self.dead_letter)
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Starts a consumer with `config` (at least `bootstrap.servers` and `group.id`) through
    /// `guard`: dead letters to `<topic>.dlq` without the token, 3 handler attempts with the
    /// default [`Backoff`] between them, 16 partitions at once, 64 records buffered per
    /// partition.
    pub fn builder(config: &ClientConfig, guard: Guard) -> ConsumerBuilder {
        ConsumerBuilder {
            config: config.clone(),
            context: DefaultClientContext,
            engine: Engine::new(guard, Reporter::new("kafka")),
            topics: Vec::new(),
            producer: None,
            dead_letter: DeadLetter::default(),
            backoff: Backoff::default(),
            buffer: 64,
            concurrency: 16,
            limit: None,
            produce_timeout: Duration::from_secs(30),
            drain: Duration::from_secs(30),
        }
    }
}

impl<C: ClientContext> Consumer<C> {
    /// The counts so far; readable while [`run`](Self::run) runs.
    pub fn stats(&self) -> Stats {
        self.inner.engine.stats().clone()
    }

    /// The rdkafka consumer, for what this wrapper does not do (lag, watermarks).
    pub fn inner(&self) -> &StreamConsumer<Rebalances<C>> {
        &self.inner.consumer
    }

    /// Consumes until `shutdown` completes, the [`limit`](ConsumerBuilder::limit) is reached,
    /// or the guard halts. Each accepted record is passed to `handler`, which runs in its
    /// partition's task, in the record's identity's scope.
    ///
    /// Subscribing fails with [`ConsumeErrorKind::Connection`]. Broker outages later are
    /// librdkafka's to ride out: it reconnects, and the records not yet stored are read again.
    ///
    /// Shutting down is graceful: no more records are taken, the handlers in flight finish and
    /// their records are settled, the stored offsets are committed, and the consumer leaves its
    /// group. Records buffered but not started are read again by the next consumer of their
    /// partition. Dropping the future instead stops at once, committing nothing more: the
    /// records not committed are delivered again (at least once).
    pub async fn run<H, Fut, E, S>(&self, handler: H, shutdown: S) -> Result<RunReport>
    where
        H: Fn(Received) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: Display + 'static,
        S: Future,
    {
        let inner = &self.inner;
        let topics: Vec<&str> = inner.topics.iter().map(String::as_str).collect();
        inner.consumer.subscribe(&topics).map_err(|e| {
            ConsumeError::new(
                ConsumeErrorKind::Connection,
                format!("cannot subscribe to Kafka topics {topics:?}: {e}"),
            )
            .with_source(e)
        })?;
        inner.taken.store(0, Ordering::SeqCst);
        inner.settled.store(0, Ordering::SeqCst);
        if inner.limit == Some(0) {
            self.close().await;
            return Ok(inner.engine.stats().snapshot());
        }
        // The dispatcher runs as a task of its own, beside the partitions' tasks, wherever
        // `run` is awaited: from a thread outside the runtime (`#[tokio::main]`'s), every
        // record would cross threads on its way to its partition.
        let (quit, quitting) = oneshot::channel();
        let mut dispatcher = AbortOnDrop(tokio::spawn(self.clone().dispatch(Arc::new(handler), quitting)));
        let dispatched = tokio::select! {
            done = &mut dispatcher.0 => done,
            _ = shutdown => {
                let _ = quit.send(());
                (&mut dispatcher.0).await
            }
        };
        let result = dispatched.unwrap_or_else(|e| {
            Err(ConsumeError::new(
                ConsumeErrorKind::Broker,
                format!("the Kafka consumer's dispatcher failed: {e}"),
            ))
        });
        self.close().await;
        result.map(|()| inner.engine.stats().snapshot())
    }

    /// Reads records and hands each to its partition's task, until `quitting` fires, the
    /// limit is reached or a partition halts; then lets the partitions finish.
    async fn dispatch<H, Fut, E>(self, handler: Arc<H>, mut quitting: oneshot::Receiver<()>) -> Result<()>
    where
        H: Fn(Received) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: Display + 'static,
    {
        let inner = &self.inner;
        let (stop, stopping) = watch::channel(false);
        let (signal, mut signals) = mpsc::unbounded_channel();
        let mut partitions = Partitions::default();
        let mut ahead = ReadAhead::new(inner.engine.guard().verifier().clone());
        let mut tasks = JoinSet::new();
        let mut result = Ok(());
        {
            let mut stream = inner.consumer.stream();
            // While records of a slow partition wait aside, what frees room for them.
            let mut tick = tokio::time::interval(REFILL_WAIT);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                if let Err(stopped) = partitions.flush(&inner.consumer) {
                    if inner.below_limit() {
                        result = Err(stopped);
                    }
                    break;
                }
                let message = tokio::select! {
                    biased;
                    _ = &mut quitting => break,
                    Some(signal) = signals.recv() => match signal {
                        Signal::Halt(reason) => {
                            result = Err(ConsumeError::halted(reason));
                            break;
                        }
                        Signal::LimitReached => break,
                    },
                    message = stream.next() => message,
                    _ = tick.tick(), if partitions.waiting() => continue,
                };
                let incoming = match message {
                    None => break,
                    Some(Ok(message)) => {
                        Incoming::new(message.detach(), inner.consumer.context().assignments())
                    }
                    Some(Err(e)) => {
                        // librdkafka reconnects and retries by itself; these are reports.
                        tracing::warn!(topics = ?inner.topics, "Kafka consumer error: {e}");
                        continue;
                    }
                };
                let record = &incoming.record;
                let slot = partitions.slot(record.topic(), record.partition(), || {
                    let (queue, records) = mpsc::channel(inner.buffer);
                    let partition = Partition {
                        inner: self.inner.clone(),
                        handler: handler.clone(),
                        topic: record.topic().to_owned(),
                        partition: record.partition(),
                        lease: inner
                            .consumer
                            .context()
                            .ownership
                            .lease(record.topic(), record.partition()),
                        stopping: stopping.clone(),
                        signal: signal.clone(),
                        offsets: StoredOffset::new(record.topic(), record.partition()),
                    };
                    tasks.spawn(partition.run(records));
                    queue
                });
                // A record that waits behind others has its token verified meanwhile, on
                // another thread; one its partition takes at once is checked there.
                if incoming.readable
                    && (slot.queue.capacity() < slot.queue.max_capacity() || !slot.aside.is_empty())
                {
                    ahead.offer(&KafkaHeaders::new(record.headers()));
                }
                if !slot.aside.is_empty() {
                    slot.set_aside(incoming, &inner.consumer);
                    continue;
                }
                if slot.queue.capacity() == 0 {
                    // A full partition is refilled once half its buffer is free (or after a
                    // moment), not record by record: the records still queued keep it busy
                    // while this task waits for a thread, behind the checks it started.
                    let half = (slot.queue.max_capacity() / 2).max(1);
                    let queue = &slot.queue;
                    let room = async {
                        if tokio::time::timeout(REFILL_WAIT, queue.reserve_many(half))
                            .await
                            .is_err()
                        {
                            let _ = tokio::time::timeout(STUCK_WAIT, queue.reserve()).await;
                        }
                    };
                    tokio::select! {
                        biased;
                        _ = &mut quitting => break,
                        () = room => {}
                    }
                }
                match slot.queue.try_send(incoming) {
                    Ok(()) => {}
                    // Still full: the partition's handler is stuck (or very slow). Its records
                    // wait aside, and the other partitions are read on.
                    Err(TrySendError::Full(incoming)) => slot.set_aside(incoming, &inner.consumer),
                    Err(TrySendError::Closed(_)) => {
                        if inner.below_limit() {
                            result = Err(slot.stopped());
                        }
                        break;
                    }
                }
            }
        }
        stop.send_replace(true);
        drop(partitions);
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!("a Kafka partition task failed: {e}");
            }
        }
        // A halt found while the others finished.
        if let (Ok(()), Ok(Signal::Halt(reason))) = (&result, signals.try_recv()) {
            result = Err(ConsumeError::halted(reason));
        }
        result
    }

    async fn close(&self) {
        let inner = self.inner.clone();
        let closed = tokio::task::spawn_blocking(move || {
            match inner.consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => tracing::warn!(
                    topics = ?inner.topics,
                    "cannot commit the stored offsets (their records will be read again): {e}"
                ),
            }
            inner.consumer.unsubscribe();
        })
        .await;
        if let Err(e) = closed {
            tracing::error!("closing the Kafka consumer failed: {e}");
        }
    }
}

impl<C: ClientContext> ConsumerBuilder<C> {
    /// Creates the rdkafka consumer with `context`, the user's own (for OAUTHBEARER token
    /// refresh, statistics, logs): every client callback goes to it. Rebalances stay the
    /// consumer's own.
    pub fn context<D: ClientContext>(self, context: D) -> ConsumerBuilder<D> {
        ConsumerBuilder {
            config: self.config,
            context,
            engine: self.engine,
            topics: self.topics,
            producer: self.producer,
            dead_letter: self.dead_letter,
            backoff: self.backoff,
            buffer: self.buffer,
            concurrency: self.concurrency,
            limit: self.limit,
            produce_timeout: self.produce_timeout,
            drain: self.drain,
        }
    }

    /// Adds a topic to read (at least one).
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Where rejected records go ([`DeadLetter`]: `<topic>.dlq` by default).
    pub fn dead_letter(mut self, dead_letter: DeadLetter) -> Self {
        self.dead_letter = dead_letter;
        self
    }

    /// Writes dead-lettered copies with this producer, instead of one created from the
    /// consumer's configuration.
    pub fn dead_letter_producer(mut self, producer: FutureProducer) -> Self {
        self.producer = Some(producer);
        self
    }

    /// Keeps the token header in dead-lettered copies. Off by default: a dead-letter topic is
    /// read by operators and tools, and should not hold usable tokens.
    pub fn keep_token_in_dead_letters(mut self) -> Self {
        self.engine = self.engine.keep_token(true);
        self
    }

    /// How many times the handler is called for one record before it is dead-lettered (3; at
    /// least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.engine = self.engine.max_attempts(attempts);
        self
    }

    /// The backoff between handler attempts (transient verification failures use the guard's).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.engine = self.engine.backoff(backoff);
        self.backoff = backoff;
        self
    }

    /// How many partitions are handled at once (16; at least 1).
    pub fn concurrency(mut self, partitions: usize) -> Self {
        self.concurrency = partitions.max(1);
        self
    }

    /// How many records of one partition wait in memory for their turn (64; at least 1). When
    /// a partition's buffer is full, reading waits until half of it is free, for at most 1 ms,
    /// and after that for one free place, for at most 100 ms: the partition refills in bursts,
    /// with records still queued (their tokens verified ahead) while reading catches up. A
    /// partition still full after that has a handler stuck (or very slow): its next records
    /// wait aside while the other partitions are read on, and once as many wait aside as its
    /// buffer holds, it is paused in librdkafka until they have all gone into its buffer.
    pub fn buffer(mut self, records: usize) -> Self {
        self.buffer = records.max(1);
        self
    }

    /// How long a rebalance waits for the handlers in flight on the partitions it takes away
    /// (30 s). Their offsets are committed after they finish, so the partitions' next owners
    /// start after them: a clean hand-over handles nothing twice. The group waits for this
    /// member meanwhile, for at most `max.poll.interval.ms` (300 s by default): keep this well
    /// under it. A handler still running at the timeout is not waited for: its record is
    /// handled again by the next owner, possibly at the same time.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain = timeout;
        self
    }

    /// How long a dead-lettered copy waits for the broker's acknowledgement (30 s).
    pub fn produce_timeout(mut self, timeout: Duration) -> Self {
        self.produce_timeout = timeout;
        self
    }

    /// Stops after this many records were settled (handled or dead-lettered): for tools and
    /// tests.
    pub fn limit(mut self, records: u64) -> Self {
        self.limit = Some(records);
        self
    }

    /// Calls `callback` with what happened to each record, as it happens, from the record's
    /// partition task: for logs, metrics and tools. It must not block.
    pub fn on_event(mut self, callback: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.engine = self.engine.on_event(callback);
        self
    }

    /// Creates the rdkafka consumer (with `enable.auto.offset.store=false`) and the
    /// dead-letter producer. A missing `group.id`, no topic, or a configuration librdkafka
    /// refuses is a [`ConsumeErrorKind::Configuration`] error.
    pub fn build(self) -> Result<Consumer<C>> {
        let configuration = |message: String| ConsumeError::new(ConsumeErrorKind::Configuration, message);
        if self.config.get("group.id").is_none() {
            return Err(configuration("a Kafka consumer needs `group.id`".to_owned()));
        }
        if self.topics.is_empty() {
            return Err(configuration(
                "a Kafka consumer needs at least one topic".to_owned(),
            ));
        }
        let mut config = self.config.clone();
        config.set("enable.auto.offset.store", "false");
        let consumer: StreamConsumer<Rebalances<C>> = config
            .create_with_context(Rebalances::new(self.context, self.drain))
            .map_err(|e| configuration(format!("cannot create the Kafka consumer: {e}")).with_source(e))?;
        let producer = match self.producer {
            Some(producer) => producer,
            None => {
                let mut config = self.config;
                for key in CONSUMER_ONLY {
                    config.remove(key);
                }
                config.create().map_err(|e| {
                    configuration(format!("cannot create the dead-letter producer: {e}")).with_source(e)
                })?
            }
        };
        Ok(Consumer {
            inner: Arc::new(Inner {
                consumer,
                producer,
                engine: self.engine,
                topics: self.topics,
                dead_letter: self.dead_letter,
                backoff: self.backoff,
                buffer: self.buffer,
                concurrency: Semaphore::new(self.concurrency),
                limit: self.limit,
                taken: AtomicU64::new(0),
                settled: AtomicU64::new(0),
                produce_timeout: self.produce_timeout,
            }),
        })
    }
}

/// The partitions read so far, each with its task's queue, found without allocating for every
/// record (a consumer owns a few partitions: a scan beats hashing an owned key).
#[derive(Default)]
struct Partitions(Vec<Slot>);

/// One partition, as reading sees it.
struct Slot {
    topic: String,
    partition: i32,
    /// Its task's queue (the partition's buffer).
    queue: mpsc::Sender<Incoming>,
    /// Records read while its buffer was full, in order, waiting for room: reading goes on
    /// for the other partitions meanwhile.
    aside: VecDeque<Incoming>,
    /// Whether reading paused it in librdkafka, once a buffer's worth waited aside.
    paused: bool,
}

impl Partitions {
    /// The slot of `topic`[`partition`], its queue made by `spawn` the first time.
    fn slot(
        &mut self,
        topic: &str,
        partition: i32,
        spawn: impl FnOnce() -> mpsc::Sender<Incoming>,
    ) -> &mut Slot {
        let at = match self
            .0
            .iter()
            .position(|s| s.partition == partition && s.topic == topic)
        {
            Some(at) => at,
            None => {
                self.0.push(Slot {
                    topic: topic.to_owned(),
                    partition,
                    queue: spawn(),
                    aside: VecDeque::new(),
                    paused: false,
                });
                self.0.len() - 1
            }
        };
        &mut self.0[at]
    }

    /// Whether any partition has records set aside.
    fn waiting(&self) -> bool {
        self.0.iter().any(|s| !s.aside.is_empty())
    }

    /// Moves the records set aside into their partitions' buffers while there is room, and
    /// resumes a paused partition once none waits. Fails if a partition's task has stopped.
    fn flush<C: ClientContext>(&mut self, consumer: &StreamConsumer<Rebalances<C>>) -> Result<()> {
        for slot in self.0.iter_mut().filter(|s| !s.aside.is_empty()) {
            while let Some(incoming) = slot.aside.pop_front() {
                match slot.queue.try_send(incoming) {
                    Ok(()) => {}
                    Err(TrySendError::Full(incoming)) => {
                        slot.aside.push_front(incoming);
                        break;
                    }
                    Err(TrySendError::Closed(_)) => return Err(slot.stopped()),
                }
            }
            if slot.aside.is_empty() && std::mem::take(&mut slot.paused) {
                // librdkafka fetches again from the record after the last one read.
                set_paused(consumer, &slot.topic, slot.partition, false);
            }
        }
        Ok(())
    }
}

impl Slot {
    /// Sets `incoming` aside, behind the partition's other records waiting there; once a
    /// buffer's worth waits, pauses the partition in librdkafka, which drops the records it
    /// fetched ahead (they are fetched again on resume): memory stays bounded.
    fn set_aside<C: ClientContext>(&mut self, incoming: Incoming, consumer: &StreamConsumer<Rebalances<C>>) {
        self.aside.push_back(incoming);
        // Again at each further buffer's worth: a retry hold of the partition's task resumes it.
        if self.aside.len().is_multiple_of(self.queue.max_capacity())
            && set_paused(consumer, &self.topic, self.partition, true)
        {
            self.paused = true;
        }
    }

    /// The error for a partition whose task ended early: only the limit (or a halt,
    /// signalled) ends one, and any other end is a bug that must not drop records unseen.
    fn stopped(&self) -> ConsumeError {
        ConsumeError::new(
            ConsumeErrorKind::Broker,
            format!(
                "the task of partition {}[{}] stopped; the consumer stops with it",
                self.topic, self.partition
            ),
        )
    }
}

/// Aborts the dispatcher if `run`'s future is dropped: dropping it stops the consumer at once.
struct AbortOnDrop(tokio::task::JoinHandle<Result<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
