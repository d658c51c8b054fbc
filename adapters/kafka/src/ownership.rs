//! Which partitions this consumer owns, and the hand-over when a rebalance takes some away:
//! no record of a revoked partition is started, the ones in flight finish (for at most the
//! drain timeout), and the offsets they stored are committed before the partitions go.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio::runtime::{Handle, RuntimeFlavor};

/// The partitions of one consumer, each with its lease.
#[derive(Debug)]
pub(crate) struct Ownership {
    leases: Mutex<HashMap<(String, i32), Arc<Lease>>>,
    /// How long a revoke waits for the handlers in flight on the revoked partitions.
    drain: Duration,
}

/// One partition's tenure here: since which assignment it is owned (none once revoked), and
/// whether a record of it is being handled.
#[derive(Debug, Default)]
pub(crate) struct Lease {
    state: Mutex<Tenure>,
    idle: Condvar,
}

#[derive(Debug, Default)]
struct Tenure {
    /// The assignment count at which the partition was (last) assigned; `None` while it is not
    /// ours.
    since: Option<u64>,
    /// Being revoked: no record starts, and the one in flight may still store its offset.
    draining: bool,
    busy: bool,
}

/// A record of the partition being handled: the lease is busy until this is dropped.
#[derive(Debug)]
pub(crate) struct Turn<'a>(&'a Lease);

impl Ownership {
    pub(crate) fn new(drain: Duration) -> Self {
        Ownership {
            leases: Mutex::default(),
            drain,
        }
    }

    /// The lease of `topic`[`partition`], shared with its task.
    pub(crate) fn lease(&self, topic: &str, partition: i32) -> Arc<Lease> {
        self.leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((topic.to_owned(), partition))
            .or_default()
            .clone()
    }

    /// The partitions of `list` are ours from assignment number `generation` on.
    pub(crate) fn assigned(&self, list: &TopicPartitionList, generation: u64) {
        for element in list.elements() {
            let lease = self.lease(element.topic(), element.partition());
            let mut tenure = lease.lock();
            (tenure.since, tenure.draining) = (Some(generation), false);
        }
    }

    /// Takes the partitions of `list` away: none of their records starts from now on. Unless
    /// they were lost (the group already gave them to another member), waits for their
    /// handlers in flight, for at most the drain timeout, then commits the stored offsets, so
    /// that their next owner starts after the last record handled here.
    pub(crate) fn revoked<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, list: &TopicPartitionList) {
        let leases: Vec<Arc<Lease>> = list
            .elements()
            .iter()
            .map(|e| self.lease(e.topic(), e.partition()))
            .collect();
        let lost = consumer.assignment_lost();
        for lease in &leases {
            let mut tenure = lease.lock();
            tenure.draining = true;
            if lost {
                tenure.since = None;
            }
        }
        if lost {
            tracing::warn!(
                partitions = list.count(),
                "Kafka partitions lost (the group gave them away, after a session timeout or a long poll gap): \
                 their records in flight may be handled again by their new owner"
            );
            return;
        }
        let started = Instant::now();
        let deadline = started + self.drain;
        let drain = || leases.iter().all(|lease| lease.wait_idle(deadline));
        // rdkafka calls back wherever the consumer is polled: on a worker of a multi-thread
        // runtime, the worker's other tasks (the handlers waited for among them) move to the
        // other workers meanwhile; a current-thread runtime cannot run them while its thread
        // waits, so there nothing is waited for.
        let drained = match Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(drain),
            Ok(_) => leases.iter().all(|lease| lease.wait_idle(started)),
            Err(_) => drain(),
        };
        for lease in &leases {
            let mut tenure = lease.lock();
            (tenure.since, tenure.draining) = (None, false);
        }
        if !drained {
            tracing::warn!(
                partitions = list.count(),
                drain_timeout = ?self.drain,
                "handlers of revoked Kafka partitions still run after the drain timeout: \
                 their records will be handled again by the partitions' next owner"
            );
        }
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(
                "cannot commit the offsets of revoked partitions (their last records will be handled again): {e}"
            ),
        }
        tracing::debug!(partitions = list.count(), waited = ?started.elapsed(), "Kafka partitions handed over");
    }
}

impl Lease {
    fn lock(&self) -> MutexGuard<'_, Tenure> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts handling a record read under assignment number `generation`, if the partition
    /// is still ours since then; `None` for a record of a revoked partition (its next owner
    /// reads it again).
    pub(crate) fn begin(&self, generation: u64) -> Option<Turn<'_>> {
        let mut tenure = self.lock();
        if tenure.open(generation) {
            tenure.busy = true;
            Some(Turn(self))
        } else {
            None
        }
    }

    /// Whether a record read under `generation` may start: the partition is ours since then,
    /// and not being revoked.
    pub(crate) fn open(&self, generation: u64) -> bool {
        self.lock().open(generation)
    }

    /// Whether a record read under `generation` may still store its offset: the partition is
    /// ours since then (a revoke waiting for it included).
    pub(crate) fn holds(&self, generation: u64) -> bool {
        self.lock().holds(generation)
    }

    /// Waits until no record is being handled, or `deadline`; `false` at the deadline.
    fn wait_idle(&self, deadline: Instant) -> bool {
        let mut tenure = self.lock();
        while tenure.busy {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            tenure = self
                .idle
                .wait_timeout(tenure, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

impl Tenure {
    fn holds(&self, generation: u64) -> bool {
        self.since.is_some_and(|since| since <= generation)
    }

    fn open(&self, generation: u64) -> bool {
        !self.draining && self.holds(generation)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.lock().busy = false;
        self.0.idle.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_starts_only_while_its_partition_is_owned_since_it_was_read() {
        let lease = Lease::default();
        assert!(lease.begin(1).is_none(), "not assigned yet");
        lease.lock().since = Some(2);
        assert!(lease.begin(1).is_none(), "read under an earlier assignment");
        assert!(lease.holds(2) && lease.holds(5));
        let turn = lease.begin(3).expect("owned since 2");
        lease.lock().draining = true;
        assert!(
            lease.holds(3),
            "the record in flight stores its offset while the revoke waits"
        );
        assert!(
            !lease.open(4) && lease.begin(4).is_none(),
            "no record starts while revoked"
        );
        drop(turn);
        lease.lock().since = None;
        assert!(!lease.holds(3), "revoked");
    }

    #[test]
    fn a_revoke_waits_for_the_record_in_flight_and_no_longer_than_the_deadline() {
        let lease = Arc::new(Lease::default());
        lease.lock().since = Some(1);
        let turn_held = {
            let lease = lease.clone();
            std::thread::spawn(move || {
                let _turn = lease.begin(1).expect("owned");
                std::thread::sleep(Duration::from_millis(50));
            })
        };
        while !lease.lock().busy {
            std::thread::yield_now();
        }
        assert!(
            lease.wait_idle(Instant::now() + Duration::from_secs(10)),
            "the handler finished"
        );
        turn_held.join().expect("the handler's thread");

        let _stuck = lease.begin(1).expect("owned");
        assert!(
            !lease.wait_idle(Instant::now() + Duration::from_millis(20)),
            "a stuck handler is not waited for"
        );
    }
}
