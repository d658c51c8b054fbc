//! One partition's task: its records in order, each settled before the next starts, with the
//! partition paused and rewound while a record waits for a retry.

use std::fmt::Display;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use std::convert::Infallible;

use jwt_relay::ErrorKind;
use jwt_relay::consume::{self, CopyFailed, DeadLetterCopy, Retried, Settle};
use jwt_relay::consume::{Position, PublishTime};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Headers as _;
use rdkafka::message::{Message as _, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientContext, Offset, Timestamp, TopicPartitionList};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, watch};

use crate::consumer::{Inner, Rebalances};
use crate::dead_letter::copy_headers;
use crate::headers::KafkaHeaders;
use crate::ownership::Lease;
use crate::received::Received;

/// A record on its way to its partition's task.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) record: Arc<OwnedMessage>,
    /// The consumer's assignment count when the record was read.
    generation: u64,
    /// Whether its headers can be read: rdkafka panics on a header name that is not UTF-8.
    pub(crate) readable: bool,
}

impl Incoming {
    pub(crate) fn new(record: OwnedMessage, generation: u64) -> Self {
        let readable = catch_unwind(AssertUnwindSafe(|| {
            record.headers().map_or(0, |h| h.iter().count())
        }))
        .is_ok();
        Incoming {
            record: Arc::new(record),
            generation,
            readable,
        }
    }
}

/// What a partition tells the run.
#[derive(Debug)]
pub(crate) enum Signal {
    /// The guard halted: stop everything.
    Halt(jwt_relay::Error),
    /// The last record under the limit was settled.
    LimitReached,
}

/// What became of one try at a record.
enum Step {
    /// Its offset is stored: on to the next.
    Settled,
    /// Try it again after this delay.
    Later(Duration),
    /// Stop the consumer.
    Halt(jwt_relay::Error),
}

/// The tries at the record in hand, kept while it is read again after a rewind.
#[derive(Debug, Default)]
struct Tries {
    /// The record's offset and assignment.
    at: Option<(i64, u64)>,
    /// Whether it holds one of the limit's tickets, not yet settled.
    ticket: bool,
    /// The engine's counts.
    tried: consume::Tries,
}

pub(crate) struct Partition<H, C: ClientContext + 'static> {
    /// Dropped before `inner`: the list holds a reference to librdkafka's partition, and
    /// destroying the consumer waits until none is left.
    pub(crate) offsets: StoredOffset,
    pub(crate) inner: Arc<Inner<C>>,
    pub(crate) handler: Arc<H>,
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// Whether the partition is still ours, and whether one of its records is being handled.
    pub(crate) lease: Arc<Lease>,
    pub(crate) stopping: watch::Receiver<bool>,
    pub(crate) signal: mpsc::UnboundedSender<Signal>,
}

/// Where a partition's task stores its offsets: a list of that one partition, kept for the
/// task's life. Storing through it allocates nothing, where rdkafka's `store_offset` makes a
/// C string of the topic's name, and looks the topic up, for every record.
pub(crate) struct StoredOffset(Mutex<TopicPartitionList>);

impl StoredOffset {
    pub(crate) fn new(topic: &str, partition: i32) -> Self {
        let mut list = TopicPartitionList::with_capacity(1);
        list.add_partition(topic, partition);
        StoredOffset(Mutex::new(list))
    }

    /// Stores the offset after `offset`'s: the next record to read.
    fn store<C: ClientContext>(
        &self,
        consumer: &StreamConsumer<Rebalances<C>>,
        offset: i64,
    ) -> KafkaResult<()> {
        let mut list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        list.set_all_offsets(Offset::Offset(offset.saturating_add(1)))?;
        consumer.store_offsets(&list)
    }
}

impl<H, Fut, E, C> Partition<H, C>
where
    C: ClientContext,
    H: Fn(Received) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + 'static,
{
    /// Handles the partition's records until the run stops, the limit is reached, or a halt.
    pub(crate) async fn run(mut self, mut records: mpsc::Receiver<Incoming>) {
        let mut tries = Tries::default();
        // The offset (and assignment) the partition was rewound to: later records of that
        // assignment are stale copies, read again.
        let mut rewound: Option<(i64, u64)> = None;
        let mut next = None;
        loop {
            if *self.stopping.borrow() {
                break;
            }
            // A record already queued is taken without waiting (or arming the stop signal).
            let incoming = match next.take().map_or_else(|| records.try_recv(), Ok) {
                Ok(incoming) => incoming,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => tokio::select! {
                    biased;
                    _ = self.stopping.wait_for(|stop| *stop) => break,
                    incoming = records.recv() => match incoming {
                        Some(incoming) => incoming,
                        None => break,
                    },
                },
            };
            let at = (incoming.record.offset(), incoming.generation);
            if rewound.is_some_and(|(offset, generation)| generation == at.1 && at.0 > offset) {
                continue;
            }
            rewound = None;
            if !self.lease.open(at.1) {
                // Read before the partition was revoked: its next owner reads it again.
                continue;
            }
            if tries.at != Some(at) {
                self.release(&mut tries);
                if !self.take_ticket() {
                    break;
                }
                tries = Tries {
                    at: Some(at),
                    ticket: self.inner.limit.is_some(),
                    ..Tries::default()
                };
            }
            let step = {
                let Ok(_permit) = self.inner.concurrency.acquire().await else {
                    break;
                };
                // Revoked while this waited for its turn.
                let Some(_turn) = self.lease.begin(at.1) else {
                    self.release(&mut tries);
                    tries = Tries::default();
                    continue;
                };
                self.process(&incoming, &mut tries).await
            };
            match step {
                Step::Settled => {
                    tries.ticket = false;
                    self.settled();
                }
                Step::Later(delay) => {
                    rewound = Some(at);
                    match self.hold(&mut records, at.0, delay).await {
                        Hold::Resumed => {}
                        Hold::Abandoned => rewound = None,
                        Hold::Earlier(incoming) => next = Some(incoming),
                        Hold::Stopped => break,
                    }
                }
                Step::Halt(reason) => {
                    let _ = self.signal.send(Signal::Halt(reason));
                    break;
                }
            }
        }
        self.release(&mut tries);
    }

    /// Gives back the ticket of a record left unsettled (read again later, maybe elsewhere).
    fn release(&self, tries: &mut Tries) {
        if std::mem::take(&mut tries.ticket) {
            self.inner.taken.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Counts a new record against the limit; `false` once the limit is taken.
    fn take_ticket(&self) -> bool {
        let Some(limit) = self.inner.limit else {
            return true;
        };
        self.inner
            .taken
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |taken| {
                (taken < limit).then_some(taken + 1)
            })
            .is_ok()
    }

    fn settled(&self) {
        if let Some(limit) = self.inner.limit
            && self.inner.settled.fetch_add(1, Ordering::SeqCst) + 1 >= limit
        {
            let _ = self.signal.send(Signal::LimitReached);
        }
    }

    /// One try at `record`, decided by the engine and settled through [`Settler`].
    async fn process(&self, incoming: &Incoming, tries: &mut Tries) -> Step {
        let record = &incoming.record;
        let mut settler = Settler {
            inner: &self.inner,
            offsets: &self.offsets,
            topic: &self.topic,
            record,
            with_headers: incoming.readable,
            lease: (&self.lease, incoming.generation),
        };
        let step = if incoming.readable {
            let headers = KafkaHeaders::new(record.headers());
            let message = self.incoming(&headers, record, tries.tried);
            let handler = &self.handler;
            let handle = |context, tries: consume::Tries| {
                let delivery = Received {
                    context,
                    record: record.clone(),
                    attempt: tries.failures,
                };
                handler(delivery)
            };
            self.inner.engine.process(&message, &mut settler, handle).await
        } else {
            let reason = jwt_relay::Error::new(
                ErrorKind::Malformed,
                "a header name is not UTF-8 text; the copy keeps none of the headers",
            );
            let headers = jwt_relay::Headers::new();
            let message = self.incoming(&headers, record, tries.tried);
            self.inner.engine.reject(&message, &mut settler, &reason).await
        };
        match step {
            consume::Step::Done => Step::Settled,
            consume::Step::Again {
                delay, tries: now, ..
            } => {
                tries.tried = now;
                Step::Later(delay)
            }
            consume::Step::Halt(reason) => Step::Halt(reason),
            consume::Step::Stop(never) => match never {},
        }
    }

    /// The record as the engine sees it.
    fn incoming<'a, X>(
        &'a self,
        headers: &'a X,
        record: &OwnedMessage,
        tries: consume::Tries,
    ) -> consume::Incoming<'a, X> {
        consume::Incoming {
            headers,
            destination: &self.topic,
            subject: &self.topic,
            position: Position::Offset {
                partition: self.partition,
                offset: record.offset(),
            },
            published: publish_time(record.timestamp()),
            tries,
        }
    }

    /// Waits `delay` with the partition paused, dropping the records read after `offset` (they
    /// are read again), then resumes it and seeks back to `offset`.
    async fn hold(&mut self, records: &mut mpsc::Receiver<Incoming>, offset: i64, delay: Duration) -> Hold {
        set_paused(&self.inner.consumer, &self.topic, self.partition, true);
        let wake = tokio::time::sleep(delay);
        tokio::pin!(wake);
        loop {
            let incoming = tokio::select! {
                biased;
                _ = self.stopping.wait_for(|stop| *stop) => return Hold::Stopped,
                () = &mut wake => break,
                incoming = records.recv() => incoming,
            };
            match incoming {
                None => return Hold::Stopped,
                Some(incoming) if incoming.record.offset() > offset && !self.reassigned(&incoming) => {}
                // The partition was reassigned, and is read again from its committed offset.
                Some(incoming) => {
                    self.resume();
                    return Hold::Earlier(incoming);
                }
            }
        }
        self.resume();
        self.seek(offset).await
    }

    fn resume(&self) {
        set_paused(&self.inner.consumer, &self.topic, self.partition, false);
    }

    /// Whether `incoming` was read under a newer assignment than the current one.
    fn reassigned(&self, incoming: &Incoming) -> bool {
        incoming.generation != self.inner.consumer.context().assignments()
    }

    /// Seeks back to `offset`, trying again while the partition is still ours.
    async fn seek(&mut self, offset: i64) -> Hold {
        let mut failures = 0;
        loop {
            let inner = self.inner.clone();
            let (topic, partition) = (self.topic.clone(), self.partition);
            let sought = tokio::task::spawn_blocking(move || {
                inner
                    .consumer
                    .seek(&topic, partition, Offset::Offset(offset), Duration::from_secs(10))
            })
            .await;
            let error = match sought {
                Ok(Ok(())) => return Hold::Resumed,
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            if !self.assigned() {
                // Its next owner (maybe us again) reads it from the committed offset.
                return Hold::Abandoned;
            }
            let delay = self.inner.backoff.delay(failures);
            failures += 1;
            tracing::warn!(topic = %self.topic, partition = self.partition, offset, ?delay, "cannot seek back: {error}");
            tokio::select! {
                _ = self.stopping.wait_for(|stop| *stop) => return Hold::Stopped,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    fn assigned(&self) -> bool {
        self.inner.consumer.assignment().is_ok_and(|list| {
            list.elements()
                .iter()
                .any(|e| e.topic() == self.topic && e.partition() == self.partition)
        })
    }
}

/// Kafka's settle verbs for one record: its offset stored (committed with the next commit), a
/// copy produced and acknowledged, or nothing (the partition holds the record for a retry).
struct Settler<'a, C: ClientContext + 'static> {
    inner: &'a Inner<C>,
    offsets: &'a StoredOffset,
    topic: &'a str,
    record: &'a OwnedMessage,
    /// Whether the copy keeps the record's headers (not when they cannot be read).
    with_headers: bool,
    /// The partition's lease, and the assignment the record was read under.
    lease: (&'a Lease, u64),
}

impl<C: ClientContext> Settler<'_, C> {
    /// Stores the record's offset (librdkafka stores the next one) for the next commit.
    fn store(&self) {
        let record = self.record;
        let (lease, generation) = self.lease;
        if !lease.holds(generation) {
            // Revoked, and handed over without waiting for this record (the drain timeout
            // passed, or the partition was lost): its next owner handles it again.
            tracing::warn!(
                topic = %self.topic,
                partition = record.partition(),
                offset = record.offset(),
                "the partition was revoked while its record was handled; the record will be delivered again"
            );
            return;
        }
        if let Err(e) = self.offsets.store(&self.inner.consumer, record.offset()) {
            // The partition was revoked: its new owner reads the record again.
            tracing::warn!(
                topic = %self.topic,
                partition = record.partition(),
                offset = record.offset(),
                "cannot store the offset (the record will be delivered again): {e}"
            );
        }
    }
}

impl<C: ClientContext> Settle for Settler<'_, C> {
    type Stop = Infallible;

    async fn ack(&mut self) -> bool {
        self.store();
        true
    }

    async fn retry(&mut self, _delay: Duration, _tries: consume::Tries) -> Result<Retried, Infallible> {
        Ok(Retried::Hold)
    }

    /// Writes the copy and waits for the broker's ack, then stores the offset.
    async fn dead_letter(
        &mut self,
        copy: &DeadLetterCopy<'_>,
    ) -> Result<Option<String>, CopyFailed<Infallible>> {
        let (inner, record) = (self.inner, self.record);
        let target = inner.dead_letter.topic_for(self.topic);
        let headers = copy_headers(record, copy, self.with_headers);
        let mut produced: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&target).headers(headers);
        produced.payload = record.payload();
        produced.key = record.key();
        // `send`'s own timeout covers only the wait for room in the local queue.
        let sending = inner.producer.send(produced, inner.produce_timeout);
        let sent = match tokio::time::timeout(inner.produce_timeout, sending).await {
            Ok(sent) => sent.map_err(|(e, _copy)| e),
            Err(_) => Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)),
        };
        match sent {
            Ok(_) => {
                self.store();
                Ok(Some(target))
            }
            Err(e) => Err(CopyFailed::Later(format!("to `{target}`: {e}"))),
        }
    }

    async fn discard(&mut self, _reason: &jwt_relay::Error) -> bool {
        self.store();
        true
    }

    async fn release(&mut self) {}
}

/// Pauses reading `topic`[`partition`] in librdkafka, or resumes it; `false` if librdkafka
/// refused, as it does for a partition no longer assigned (whose records stop anyway).
pub(crate) fn set_paused(
    consumer: &StreamConsumer<Rebalances<impl ClientContext>>,
    topic: &str,
    partition: i32,
    paused: bool,
) -> bool {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    let done = if paused {
        consumer.pause(&list)
    } else {
        consumer.resume(&list)
    };
    if let Err(e) = &done {
        tracing::debug!(topic, partition, paused, "cannot pause or resume reading: {e}");
    }
    done.is_ok()
}

/// How a hold ended.
enum Hold {
    /// The partition reads from the held record again.
    Resumed,
    /// The partition is no longer ours: forget the held record.
    Abandoned,
    /// A record of a new assignment arrived: handle it next.
    Earlier(Incoming),
    /// The run is stopping.
    Stopped,
}

/// A record's timestamp as the expiry policy sees it.
fn publish_time(timestamp: Timestamp) -> Option<PublishTime> {
    let (ms, broker) = match timestamp {
        Timestamp::CreateTime(ms) => (ms, false),
        Timestamp::LogAppendTime(ms) => (ms, true),
        Timestamp::NotAvailable => return None,
    };
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).ok()?);
    Some(if broker {
        PublishTime::broker(at)
    } else {
        PublishTime::client(at)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_relay::consume::TimestampSource;

    #[test]
    fn the_timestamp_type_says_who_set_the_publish_time() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let broker = publish_time(Timestamp::LogAppendTime(1_700_000_000_123));
        assert_eq!(
            broker.map(|p| (p.at, p.source)),
            Some((at, TimestampSource::Broker))
        );
        let client = publish_time(Timestamp::CreateTime(1_700_000_000_123));
        assert_eq!(
            client.map(|p| (p.at, p.source)),
            Some((at, TimestampSource::Client))
        );
        assert!(publish_time(Timestamp::NotAvailable).is_none());
        assert!(
            publish_time(Timestamp::CreateTime(-1)).is_none(),
            "no time before 1970"
        );
    }
}
