//! What the handlers of a many-instance test did: every call, every success, the first failure of
//! the ids made to fail once, and, when an instance is to be killed, where it froze.
//!
//! The instances' handlers all call [`Ledger::call`]. The instance to kill (the victim, if any)
//! freezes on its first call once enough calls succeeded, and on every call it would finish
//! after that: its handlers stop where they are, as a killed process's do. The first freeze
//! cuts it off its broker through the [`KillSwitch`] it was [armed](Ledger::arm) with.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::forwarder::KillSwitch;

/// One successful handler call. `D` is what the broker said about the delivery (a JetStream
/// delivery count, a RabbitMQ `redelivered` flag, ...).
#[derive(Debug, Clone)]
pub struct Handled<D> {
    /// The instance that handled it.
    pub instance: usize,
    /// The message's id.
    pub id: String,
    /// What the broker said about the delivery.
    pub delivery: D,
    /// When.
    pub at: Instant,
}

/// The instance to kill, and when it freezes.
#[derive(Debug, Clone, Copy)]
struct Victim {
    instance: usize,
    /// It freezes on its first call once this many calls succeeded.
    freeze_at: usize,
}

/// What the instances' handlers did, shared by the instances of one test.
#[derive(Debug)]
pub struct Ledger<D> {
    /// Every handler call: (instance, id).
    calls: Mutex<Vec<(usize, String)>>,
    handled: Mutex<Vec<Handled<D>>>,
    handled_ids: Mutex<HashSet<String>>,
    handled_count: AtomicUsize,
    /// The ids whose first call failed, and on which instance.
    failed: Mutex<BTreeMap<String, usize>>,
    victim: Option<Victim>,
    /// The ids the instance to kill froze on: taken, never finished.
    frozen_on: Mutex<Vec<String>>,
    frozen: watch::Sender<bool>,
    /// Cuts the instance to kill off the broker, at the moment it freezes.
    kill_switch: Mutex<Option<KillSwitch>>,
    /// When it froze (and was cut off), and how many messages were handled then.
    frozen_at: Mutex<Option<(Instant, usize)>>,
}

impl<D: Clone + Send + 'static> Ledger<D> {
    /// A ledger where no instance freezes.
    pub fn new() -> Arc<Ledger<D>> {
        Self::with(None)
    }

    /// A ledger where `instance` is the one to kill: it freezes on its first call once
    /// `freeze_at` calls succeeded (on any instance).
    pub fn with_victim(instance: usize, freeze_at: usize) -> Arc<Ledger<D>> {
        Self::with(Some(Victim { instance, freeze_at }))
    }

    fn with(victim: Option<Victim>) -> Arc<Ledger<D>> {
        Arc::new(Ledger {
            calls: Mutex::default(),
            handled: Mutex::default(),
            handled_ids: Mutex::default(),
            handled_count: AtomicUsize::new(0),
            failed: Mutex::default(),
            victim,
            frozen_on: Mutex::default(),
            frozen: watch::channel(false).0,
            kill_switch: Mutex::default(),
            frozen_at: Mutex::default(),
        })
    }

    /// The instance to kill, if any.
    pub fn victim(&self) -> Option<usize> {
        self.victim.map(|v| v.instance)
    }

    /// One handler call of `instance` for `id`: recorded, a millisecond of work, then recorded
    /// as handled. With `fails`, the first call for `id` (on any instance) fails instead. The
    /// instance to kill freezes on its first call after its `freeze_at` successes, and on any
    /// call it would finish after that.
    pub async fn call(&self, instance: usize, id: String, delivery: D, fails: bool) -> Result<(), String> {
        self.calls.lock().unwrap().push((instance, id.clone()));
        let freeze_at = self
            .victim
            .filter(|v| v.instance == instance)
            .map(|v| v.freeze_at);
        if let Some(freeze_at) = freeze_at
            && (self.is_frozen() || self.handled_count.load(Ordering::SeqCst) >= freeze_at)
        {
            self.freeze_on(&id).await;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        if fails && self.first_failure(&id, instance) {
            return Err(format!("{id} fails the first time"));
        }
        if freeze_at.is_some() && self.is_frozen() {
            self.freeze_on(&id).await;
        }
        self.handle(instance, id, delivery);
        Ok(())
    }

    /// Whether the instance to kill froze.
    pub fn is_frozen(&self) -> bool {
        *self.frozen.borrow()
    }

    /// The instance to kill stops on `id` for good; the first time, it is cut off the broker
    /// there and then, whatever its other handlers and its acks are doing: it dies.
    async fn freeze_on(&self, id: &str) {
        self.frozen_on.lock().unwrap().push(id.to_owned());
        if !self.frozen.send_replace(true) {
            let handled = self.handled_count.load(Ordering::SeqCst);
            *self.frozen_at.lock().unwrap() = Some((Instant::now(), handled));
            if let Some(switch) = self.kill_switch.lock().unwrap().as_ref() {
                switch.cut();
            }
        }
        std::future::pending::<()>().await;
    }

    /// Cut the instance to kill off with `switch` when it freezes.
    pub fn arm(&self, switch: &KillSwitch) {
        *self.kill_switch.lock().unwrap() = Some(switch.clone());
    }

    /// Waits (at most `wait`, else panics) until the instance to kill froze.
    pub async fn wait_frozen(&self, wait: Duration) {
        let mut frozen = self.frozen.subscribe();
        tokio::time::timeout(wait, frozen.wait_for(|f| *f))
            .await
            .expect("the instance to kill froze mid-stream")
            .unwrap();
    }

    /// When the instance to kill froze (and was cut off), and how many calls had succeeded then.
    pub fn frozen_at(&self) -> Option<(Instant, usize)> {
        *self.frozen_at.lock().unwrap()
    }

    /// The ids the instance to kill froze on: taken, never finished.
    pub fn frozen_on(&self) -> Vec<String> {
        self.frozen_on.lock().unwrap().clone()
    }

    /// Whether this is the first call for `id` (which then fails).
    fn first_failure(&self, id: &str, instance: usize) -> bool {
        let mut failed = self.failed.lock().unwrap();
        if failed.contains_key(id) {
            return false;
        }
        failed.insert(id.to_owned(), instance);
        true
    }

    /// The ids whose first call failed, and the instance it failed on.
    pub fn failed(&self) -> BTreeMap<String, usize> {
        self.failed.lock().unwrap().clone()
    }

    fn handle(&self, instance: usize, id: String, delivery: D) {
        self.handled_ids.lock().unwrap().insert(id.clone());
        self.handled.lock().unwrap().push(Handled {
            instance,
            id,
            delivery,
            at: Instant::now(),
        });
        self.handled_count.fetch_add(1, Ordering::SeqCst);
    }

    /// How many distinct ids were handled.
    pub fn distinct(&self) -> usize {
        self.handled_ids.lock().unwrap().len()
    }

    /// Whether every one of `ids` was handled.
    pub fn handled_all(&self, ids: impl IntoIterator<Item = String>) -> bool {
        let handled = self.handled_ids.lock().unwrap();
        ids.into_iter().all(|id| handled.contains(&id))
    }

    /// How many handler calls there were, failed and unfinished ones included.
    pub fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// The successful calls per id: (instance, delivery, when).
    pub fn by_id(&self) -> BTreeMap<String, Vec<(usize, D, Instant)>> {
        let mut by_id: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for h in self.handled.lock().unwrap().iter() {
            by_id
                .entry(h.id.clone())
                .or_default()
                .push((h.instance, h.delivery.clone(), h.at));
        }
        by_id
    }

    /// The ids `instance` was called for.
    pub fn taken_by(&self, instance: usize) -> BTreeSet<String> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|(i, _)| *i == instance)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// How many calls `instance` finished successfully.
    pub fn handled_by(&self, instance: usize) -> usize {
        self.count_handled(|h| h.instance == instance)
    }

    /// How many successful calls `which` picks.
    pub fn count_handled(&self, which: impl Fn(&Handled<D>) -> bool) -> usize {
        let handled = self.handled.lock().unwrap();
        handled.iter().filter(|h| which(h)).count()
    }
}
