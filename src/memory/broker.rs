//! The in-memory broker: named topics of ordered messages.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tokio::time::Instant;

use super::message::{Message, MessageId};
use crate::carrier::Headers;
use crate::consume::policy::PublishTime;

/// An in-process broker for tests and demonstrations. Topics are created on
/// first use and keep their messages in publish order. Cheap to clone:
/// clones share the topics.
///
/// [`publish`](Self::publish) is raw: the headers go in exactly as given, for
/// tests that send forged or malformed tokens. Services publish through a
/// [`MemoryPublisher`](super::MemoryPublisher), which writes the token the
/// way every adapter does.
#[derive(Clone, Default)]
pub struct MemoryBroker {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Woken on every publish and every rescheduled message.
    changed: Notify,
}

#[derive(Default)]
struct State {
    topics: HashMap<String, Topic>,
    next_id: u64,
}

#[derive(Default)]
struct Topic {
    entries: VecDeque<Entry>,
    counters: Counters,
}

struct Entry {
    message: Message,
    /// Not delivered before this instant (a scheduled retry).
    due: Option<Instant>,
    /// Delivered to a consumer that has not settled it yet.
    leased: bool,
    /// How many times the handler failed on it.
    failures: u32,
}

/// What happened in one topic since the broker started.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages published to it (dead-lettered copies count in their
    /// dead-letter topic).
    pub published: u64,
    /// Messages its handler processed and acknowledged.
    pub accepted: u64,
    /// Redeliveries scheduled: a transient failure, or a handler failure
    /// with attempts left.
    pub retried: u64,
    /// Messages moved out of it into its dead-letter topic.
    pub dead_lettered: u64,
}

/// What a consumer finds in a topic.
pub(crate) enum Next {
    /// This message, now leased to the caller, and its handler failures so far.
    Ready(Message, u32),
    /// Nothing ready; the earliest scheduled retry is due then.
    Wait(Instant),
    /// Nothing ready and nothing scheduled.
    Idle,
}

impl MemoryBroker {
    /// A broker with no topics.
    pub fn new() -> Self {
        MemoryBroker::default()
    }

    /// Appends a message to `topic` with exactly these headers, stamped
    /// with the broker's clock ([`TimestampSource::Broker`](crate::consume::TimestampSource)).
    /// No token is written: publish from a service with a
    /// [`MemoryPublisher`](super::MemoryPublisher).
    pub fn publish(&self, topic: &str, headers: Headers, payload: impl Into<Vec<u8>>) -> MessageId {
        self.publish_at(topic, headers, payload, PublishTime::broker(SystemTime::now()))
    }

    /// Appends a message with a publish time of the caller's choosing: a
    /// client-set time, or one in the past to test expiry policies.
    pub fn publish_at(
        &self,
        topic: &str,
        headers: Headers,
        payload: impl Into<Vec<u8>>,
        published: PublishTime,
    ) -> MessageId {
        let id = {
            let mut state = self.lock();
            let id = MessageId(state.next_id);
            state.next_id += 1;
            let message = Message {
                id,
                topic: topic.to_owned(),
                headers,
                payload: payload.into(),
                published,
                attempt: 0,
            };
            state.push(message);
            id
        };
        self.shared.changed.notify_waiters();
        id
    }

    /// The messages in `topic`, in order: waiting, scheduled for a retry,
    /// or being processed. Empty for a topic never used.
    pub fn messages(&self, topic: &str) -> Vec<Message> {
        self.lock()
            .topics
            .get(topic)
            .map(|t| t.entries.iter().map(|e| e.message.clone()).collect())
            .unwrap_or_default()
    }

    /// The messages in `<topic>.dlq`, the default dead-letter topic of
    /// `topic`.
    pub fn dead_letters(&self, topic: &str) -> Vec<Message> {
        self.messages(&dead_letter_topic(topic))
    }

    /// The counters of `topic` (all zero for a topic never used).
    pub fn counters(&self, topic: &str) -> Counters {
        self.lock()
            .topics
            .get(topic)
            .map(|t| t.counters)
            .unwrap_or_default()
    }

    /// Leases the first message of `topic` that is due at `now`.
    pub(crate) fn next(&self, topic: &str, now: Instant) -> Next {
        let mut state = self.lock();
        let Some(topic) = state.topics.get_mut(topic) else {
            return Next::Idle;
        };
        let mut earliest: Option<Instant> = None;
        for entry in topic.entries.iter_mut().filter(|e| !e.leased) {
            match entry.due {
                Some(due) if due > now => earliest = Some(earliest.map_or(due, |t| t.min(due))),
                _ => {
                    entry.leased = true;
                    return Next::Ready(entry.message.clone(), entry.failures);
                }
            }
        }
        earliest.map_or(Next::Idle, Next::Wait)
    }

    /// Removes a handled message.
    pub(crate) fn ack(&self, topic: &str, id: MessageId) {
        let mut state = self.lock();
        if let Some(t) = state.topics.get_mut(topic) {
            t.entries.retain(|e| e.message.id != id);
            t.counters.accepted += 1;
        }
    }

    /// Puts a leased message back, due after `delay`, one attempt later.
    pub(crate) fn retry(&self, topic: &str, id: MessageId, delay: Duration, failures: u32) {
        {
            let mut state = self.lock();
            let Some(t) = state.topics.get_mut(topic) else {
                return;
            };
            if let Some(entry) = t.entries.iter_mut().find(|e| e.message.id == id) {
                entry.leased = false;
                entry.due = Some(due_after(delay));
                entry.failures = failures;
                entry.message.attempt = entry.message.attempt.saturating_add(1);
                t.counters.retried += 1;
            }
        }
        self.shared.changed.notify_waiters();
    }

    /// Moves a leased message into `dead_letter_topic`, with new headers, in
    /// one step: no moment where it is in neither topic or in both.
    pub(crate) fn dead_letter(&self, topic: &str, id: MessageId, dead_letter_topic: &str, headers: Headers) {
        {
            let mut state = self.lock();
            let Some(t) = state.topics.get_mut(topic) else {
                return;
            };
            let Some(index) = t.entries.iter().position(|e| e.message.id == id) else {
                return;
            };
            let Some(entry) = t.entries.remove(index) else {
                return;
            };
            t.counters.dead_lettered += 1;
            let copy_id = MessageId(state.next_id);
            state.next_id += 1;
            state.push(Message {
                id: copy_id,
                topic: dead_letter_topic.to_owned(),
                headers,
                payload: entry.message.payload,
                published: PublishTime::broker(SystemTime::now()),
                attempt: 0,
            });
        }
        self.shared.changed.notify_waiters();
    }

    /// Returns a leased message untouched (a halted or cancelled consumer).
    pub(crate) fn release(&self, topic: &str, id: MessageId) {
        {
            let mut state = self.lock();
            let entry = state
                .topics
                .get_mut(topic)
                .and_then(|t| t.entries.iter_mut().find(|e| e.message.id == id));
            if let Some(entry) = entry {
                entry.leased = false;
            }
        }
        self.shared.changed.notify_waiters();
    }

    /// Completes after the next publish or reschedule (enable it before
    /// looking at the topics, so nothing in between is missed).
    pub(crate) fn changed(&self) -> Notified<'_> {
        self.shared.changed.notified()
    }

    /// No code panics while holding the lock, so a poisoned one is still consistent.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn push(&mut self, message: Message) {
        let topic = self.topics.entry(message.topic.clone()).or_default();
        topic.counters.published += 1;
        topic.entries.push_back(Entry {
            message,
            due: None,
            leased: false,
            failures: 0,
        });
    }
}

impl fmt::Debug for MemoryBroker {
    /// Topic names and message counts only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        let mut topics: Vec<_> = state
            .topics
            .iter()
            .map(|(name, t)| (name.as_str(), t.entries.len()))
            .collect();
        topics.sort_unstable();
        f.debug_struct("MemoryBroker").field("topics", &topics).finish()
    }
}

/// Now plus `delay`, capped at a year so an absurd delay (a hostile
/// `Retry-After`) holds the message instead of overflowing the clock.
fn due_after(delay: Duration) -> Instant {
    const CAP: Duration = Duration::from_secs(365 * 24 * 3600);
    let now = Instant::now();
    now.checked_add(delay.min(CAP)).unwrap_or(now)
}

/// `<topic>.dlq`.
pub(crate) fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_in_order_and_holds_scheduled_retries() {
        let broker = MemoryBroker::new();
        let a = broker.publish("t", Headers::new(), "a");
        let b = broker.publish("t", Headers::new(), "b");
        let now = Instant::now();
        let Next::Ready(first, 0) = broker.next("t", now) else {
            panic!("a is ready");
        };
        assert_eq!(first.id, a);
        broker.retry("t", a, Duration::from_secs(60), 1);
        let Next::Ready(second, 0) = broker.next("t", Instant::now()) else {
            panic!("b is ready");
        };
        assert_eq!(second.id, b);
        broker.ack("t", b);
        assert!(matches!(broker.next("t", Instant::now()), Next::Wait(_)));
        let later = Instant::now() + Duration::from_secs(61);
        let Next::Ready(again, 1) = broker.next("t", later) else {
            panic!("a is due again");
        };
        assert_eq!((again.id, again.attempt), (a, 1));
        broker.release("t", a);
        assert_eq!(broker.messages("t").len(), 1);
        assert_eq!(
            broker.counters("t"),
            Counters {
                published: 2,
                accepted: 1,
                retried: 1,
                dead_lettered: 0
            }
        );
        assert!(matches!(broker.next("nothing", now), Next::Idle));
    }

    #[test]
    fn an_absurd_delay_holds_the_message_without_overflowing() {
        let broker = MemoryBroker::new();
        let id = broker.publish("t", Headers::new(), "a");
        assert!(matches!(broker.next("t", Instant::now()), Next::Ready(..)));
        broker.retry("t", id, Duration::MAX, 0);
        assert!(matches!(broker.next("t", Instant::now()), Next::Wait(_)));
    }
}
