//! Many consumers of one queue, in one process (issue 25): three instances with a prefetch share
//! the work queue, one is killed mid-stream and a new one joins.
//!
//! The instance to kill (instance 0) reaches the broker through a local TCP forwarder. Once
//! [`FREEZE_AT`] messages are handled, it freezes on its next delivery: its handlers stop where
//! they are, as a killed process's do. The test then cuts the forwarder (the broker sees the
//! socket close with no `basic.cancel`, no last acks and no `connection.close`, as after
//! `kill -9` or a lost host), aborts the consumer's run (dropping its connection without closing
//! it) and starts a new instance. Then it publishes the rest.
//!
//! What a user would check: every valid message handled at least once; what the killed instance
//! held is redelivered (`redelivered`) to the others; a message is handled twice only if the
//! killed instance took it, and no more of them than its prefetch; a handler failing once goes
//! through the retry queue and is handled by any instance; each hostile message is
//! dead-lettered exactly once. The test prints a `many-instances rabbitmq: ...` line for
//! RELIABILITY.md, and a line of details.
//!
//! Hostile messages go where the kill cannot reach them: before the first valid message (and
//! dead-lettered before it is published), and after the kill. Dead-lettering is "confirm the
//! copy, then ack the original": a kill between the two stores a second copy (at least once),
//! which this test does not provoke.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Forwarder;
use jwt_relay::{AuthContext, Backoff, Guard};
use jwt_relay_rabbitmq::lapin::BasicProperties;
use jwt_relay_rabbitmq::{Connector, Consumer, Publisher, Received, RunReport, Stats};
use jwt_relay_test_support as common;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::support::broker::{Broker, broker, eventually, headers, id_of};
use crate::support::tokens::{claims, forged, token, token_with, verifier};

/// Valid messages.
const VALID: usize = 20_000;
/// Valid messages published before the kill; the rest after the new instance joined.
const BEFORE_KILL: usize = VALID / 2;
/// Once this many messages are handled, the instance to kill freezes on its next delivery.
const FREEZE_AT: usize = VALID / 5;
/// Hostile messages published before the first valid one, and after the kill.
const HOSTILE_BEFORE: usize = 3;
const HOSTILE_AFTER: usize = 2;
/// The first handler call fails for every id divisible by this (20 ids): retried through the
/// retry queue.
const FAIL_EVERY: usize = 1_000;
/// Instances at the start; the one that joins is instance `INSTANCES`.
const INSTANCES: usize = 3;
/// The instance that is killed.
const VICTIM: usize = 0;
/// Each instance's prefetch: at most this many of the killed instance's deliveries are
/// unacknowledged when it dies.
const PREFETCH: u16 = 16;
/// Publishes waiting for their confirm at once.
const IN_FLIGHT: usize = 64;
/// Messages published between two looks at whether the instance to kill froze.
const CHUNK: usize = 500;
/// Distinct users whose tokens the valid messages carry.
const USERS: usize = 8;
const WAIT: Duration = Duration::from_secs(60);

fn valid_id(n: usize) -> String {
    format!("m{n:05}")
}

fn number(id: &str) -> Option<usize> {
    id.strip_prefix('m')?.parse().ok()
}

/// `(id, token)` of the hostile messages: forged signatures and a wrong audience, in turn.
fn hostile() -> Vec<(String, String)> {
    (0..HOSTILE_BEFORE + HOSTILE_AFTER)
        .map(|k| {
            let token = if k % 2 == 0 {
                forged(&format!("mallory{k}"))
            } else {
                token_with(&claims("alice", "payroll", 300))
            };
            (format!("hostile-{k}"), token)
        })
        .collect()
}

/// The ledger of the test: what the handlers did, with each delivery's `redelivered` flag.
type Ledger = common::Ledger<bool>;

type Handling = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// The handler of `instance`: records each call, works a millisecond, fails the first call of
/// every [`FAIL_EVERY`]th id, records the success ([`Ledger::call`]). The instance to kill
/// freezes on its first call after [`FREEZE_AT`] successes, and on any it finishes after that.
fn worker(ledger: &Arc<Ledger>, instance: usize) -> impl Fn(Received) -> Handling + Send + Sync + 'static {
    let ledger = ledger.clone();
    move |received: Received| {
        let ledger = ledger.clone();
        let id = id_of(&received);
        let redelivered = received.redelivered();
        let fails = number(&id).is_some_and(|n| n.is_multiple_of(FAIL_EVERY));
        Box::pin(async move { ledger.call(instance, id, redelivered, fails).await })
    }
}

/// One running consumer instance.
struct Instance {
    forwarder: Option<Forwarder>,
    stats: Stats,
    stop: oneshot::Sender<()>,
    run: JoinHandle<jwt_relay_rabbitmq::Result<RunReport>>,
}

impl Instance {
    /// A consumer of `queue` with its own connection; the instance to kill connects through a
    /// [`Forwarder`].
    async fn start(broker: &Broker, queue: &str, instance: usize, ledger: &Arc<Ledger>) -> Instance {
        let forwarder = match instance {
            VICTIM => Some(Forwarder::start(&broker.addr, "amqp", 5672).await),
            _ => None,
        };
        if let Some(forwarder) = &forwarder {
            ledger.arm(forwarder.switch());
        }
        let connector = match &forwarder {
            Some(forwarder) => Connector::new(forwarder.url()),
            None => broker.connector(&format!("{queue}-instance-{instance}")),
        };
        let consumer = Consumer::builder(connector, queue, Guard::new(verifier()))
            .prefetch(PREFETCH)
            .backoff(Backoff::new(
                Duration::from_millis(100),
                Duration::from_millis(200),
            ))
            .build();
        let stats = consumer.stats();
        let (stop, stopped) = oneshot::channel::<()>();
        let handler = worker(ledger, instance);
        let run = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            consumer.run(handler, shutdown).await
        });
        Instance {
            forwarder,
            stats,
            stop,
            run,
        }
    }

    /// Finishes the kill: the forwarder was cut when the instance froze (nothing more of it
    /// reached the server: no acks, no goodbye); now its run is dropped mid-flight, with its
    /// connection, closing nothing.
    async fn kill(self) {
        let forwarder = self.forwarder.expect("the instance to kill has a forwarder");
        forwarder.switch().cut_and_wait().await;
        self.run.abort();
        let ended = self.run.await;
        assert!(
            ended.is_err_and(|e| e.is_cancelled()),
            "the run was killed, not finished"
        );
    }

    /// Stops it the ordinary way: handlers in flight finish and their messages are settled.
    async fn stop(self) -> RunReport {
        self.stop.send(()).ok();
        tokio::time::timeout(WAIT, self.run)
            .await
            .expect("the consumer stops")
            .unwrap()
            .expect("the run ends cleanly")
    }
}

fn sum(stats: &[Stats], field: impl Fn(RunReport) -> u64) -> u64 {
    stats.iter().map(|s| field(s.snapshot())).sum()
}

/// Publishes the valid ids `ids`, [`IN_FLIGHT`] waiting for their confirm at once.
async fn publish(publisher: &Publisher, queue: &str, ids: &[usize], users: &[AuthContext]) {
    let mut publishing = JoinSet::new();
    for lane in 0..IN_FLIGHT {
        let ids: Vec<usize> = ids.iter().copied().skip(lane).step_by(IN_FLIGHT).collect();
        let (publisher, queue, users) = (publisher.clone(), queue.to_owned(), users.to_vec());
        publishing.spawn(async move {
            for n in ids {
                let id = valid_id(n);
                let properties = BasicProperties::default().with_headers(headers(&id, &[]));
                publisher
                    .publish("", &queue, id.as_bytes(), properties, Some(&users[n % USERS]))
                    .await
                    .expect("confirmed");
            }
        });
    }
    while let Some(done) = publishing.join_next().await {
        done.unwrap();
    }
}

async fn publish_hostile(publisher: &Publisher, queue: &str, (id, token): &(String, String)) {
    let properties = BasicProperties::default().with_headers(headers(id, &[]));
    publisher
        .publish_with_token("", queue, b"x", properties, Some(token))
        .await
        .expect("confirmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_share_a_queue_and_a_killed_ones_deliveries_go_to_the_others() {
    let Some(broker) = broker().await else { return };
    let started = Instant::now();
    let topology = broker.topology("many-instances");
    broker.declare(&topology).await;
    let queue = topology.queue().to_owned();
    let ledger = Ledger::with_victim(VICTIM, FREEZE_AT);
    let mut instances = Vec::new();
    for instance in 0..INSTANCES {
        instances.push(Some(Instance::start(&broker, &queue, instance, &ledger).await));
    }
    let mut stats: Vec<Stats> = instances.iter().flatten().map(|i| i.stats.clone()).collect();
    let publisher = broker.publisher().await;
    let hostile = hostile();
    for message in &hostile[..HOSTILE_BEFORE] {
        publish_hostile(&publisher, &queue, message).await;
    }
    eventually(
        "the first hostile messages dead-lettered before any valid one is published",
        WAIT,
        || sum(&stats, |r| r.dead_lettered) == HOSTILE_BEFORE as u64,
    )
    .await;

    let verifier = verifier();
    let mut users = Vec::new();
    for u in 0..USERS {
        users.push(verifier.verify(&token(&format!("user{u}"))).await.unwrap());
    }
    let ids: Vec<usize> = (0..VALID).collect();
    // Finishes killing the instance that froze, and starts a new one.
    let kill_and_join = async |instances: &mut Vec<Option<Instance>>, stats: &mut Vec<Stats>| {
        let victim = instances[VICTIM].take().expect("alive");
        victim.kill().await;
        let joined = Instance::start(&broker, &queue, INSTANCES, &ledger).await;
        stats.push(joined.stats.clone());
        instances.push(Some(joined));
    };
    let mut killed = false;
    for chunk in ids[..BEFORE_KILL].chunks(CHUNK) {
        if !killed && ledger.is_frozen() {
            kill_and_join(&mut instances, &mut stats).await;
            killed = true;
        }
        publish(&publisher, &queue, chunk, &users).await;
    }
    if !killed {
        ledger.wait_frozen(WAIT).await;
        kill_and_join(&mut instances, &mut stats).await;
    }
    let (killed_at, handled_at_kill) = ledger.frozen_at().expect("killed");
    let after: Vec<&[usize]> = ids[BEFORE_KILL..].chunks(CHUNK).collect();
    let hostile_every = after.len() / HOSTILE_AFTER;
    for (c, chunk) in after.iter().enumerate() {
        if c.is_multiple_of(hostile_every)
            && let Some(message) = hostile.get(HOSTILE_BEFORE + c / hostile_every)
        {
            publish_hostile(&publisher, &queue, message).await;
        }
        publish(&publisher, &queue, chunk, &users).await;
    }

    eventually(
        "every valid message handled, every hostile one dead-lettered",
        WAIT,
        || ledger.distinct() == VALID && sum(&stats, |r| r.dead_lettered) == hostile.len() as u64,
    )
    .await;
    // Until nothing waits in the work or retry queue and no handler was called for a while:
    // every redelivery of the killed instance's deliveries is handled.
    let deadline = Instant::now() + WAIT;
    let mut calls = ledger.calls();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let empty = broker.depth(&queue).await == 0 && broker.depth(topology.retry_queue_name()).await == 0;
        let now = ledger.calls();
        if empty && now == calls {
            break;
        }
        calls = now;
        assert!(Instant::now() < deadline, "the queues empty out");
    }
    let mut reports = Vec::new();
    for instance in instances.into_iter().flatten() {
        reports.push(instance.stop().await);
    }
    assert_eq!(broker.depth(&queue).await, 0, "nothing left in the work queue");
    assert_eq!(
        broker.depth(topology.retry_queue_name()).await,
        0,
        "nor in the retry queue"
    );

    let by_id = ledger.by_id();
    let lost: Vec<String> = (0..VALID)
        .map(valid_id)
        .filter(|id| !by_id.contains_key(id))
        .collect();
    assert!(lost.is_empty(), "every valid message handled: lost {lost:?}");
    let taken_by_victim = ledger.taken_by(VICTIM);
    let duplicated: BTreeMap<&String, Vec<usize>> = by_id
        .iter()
        .filter(|(_, calls)| calls.len() > 1)
        .map(|(id, calls)| (id, calls.iter().map(|(i, ..)| *i).collect()))
        .collect();
    for (id, instances) in &duplicated {
        assert!(
            taken_by_victim.contains(*id),
            "{id} handled by instances {instances:?}, though the killed instance never took it"
        );
    }
    assert!(
        duplicated.len() <= usize::from(PREFETCH),
        "no more duplicates than the killed instance's prefetch: {duplicated:?}"
    );
    let frozen_on = ledger.frozen_on();
    assert!(
        !frozen_on.is_empty(),
        "the killed instance had deliveries in hand"
    );
    let mut came_back = Vec::new();
    for id in &frozen_on {
        let again = by_id[id]
            .iter()
            .find(|(i, redelivered, _)| *i != VICTIM && *redelivered)
            .unwrap_or_else(|| {
                panic!(
                    "{id}, held by the killed instance, redelivered to another: {:?}",
                    by_id[id]
                )
            });
        came_back.push(again.2.duration_since(killed_at));
    }
    let redelivered_to_others = ledger.count_handled(|h| h.instance != VICTIM && h.delivery);
    assert!(
        redelivered_to_others <= usize::from(PREFETCH),
        "the broker redelivers only the killed consumer's unacknowledged deliveries, at most its prefetch: \
         {redelivered_to_others}"
    );
    let joined = ledger.handled_by(INSTANCES);
    assert!(joined > 0, "the instance that joined handled messages");

    let failed = ledger.failed();
    assert_eq!(failed.len(), VALID / FAIL_EVERY, "each failing id failed once");
    let retried_elsewhere = failed
        .iter()
        .filter(|(id, first)| by_id[*id].iter().any(|(i, ..)| i != *first))
        .count();
    assert!(retried_elsewhere > 0, "the retry queue feeds every instance");
    let handler_failures: u64 =
        reports.iter().map(|r| r.handler_failures).sum::<u64>() + stats[VICTIM].snapshot().handler_failures;

    let dead = broker.drain(topology.dead_letter_queue_name()).await;
    let mut dead_letters: BTreeMap<String, usize> = BTreeMap::new();
    for copy in &dead {
        assert!(
            !copy.has_header_any_case("authorization"),
            "no token in a dead letter"
        );
        *dead_letters
            .entry(copy.header("x-id").unwrap_or_default())
            .or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = hostile.iter().map(|(id, _)| (id.clone(), 1)).collect();
    assert_eq!(
        dead_letters, expected,
        "each hostile message dead-lettered exactly once, nothing else"
    );

    eprintln!(
        "many-instances rabbitmq: published={} handled={} dead_lettered={} duplicated={} lost={}",
        VALID + hostile.len(),
        by_id.len(),
        dead.len(),
        duplicated.len(),
        lost.len()
    );
    eprintln!(
        "  killed instance {VICTIM} after {handled_at_kill} handled: took {}, handled {}, frozen on {} \
         (handled by the others {:.1?} to {:.1?} after the kill); deliveries redelivered to the others: \
         {redelivered_to_others}; joined instance handled {joined}; per instance {:?}; failing once: {} ids \
         ({handler_failures} handler failures), {retried_elsewhere} retried on another instance; duplicated: \
         {:?}; prefetch {PREFETCH}; {:.1?} in all",
        taken_by_victim.len(),
        ledger.handled_by(VICTIM),
        frozen_on.len(),
        came_back.iter().min().unwrap(),
        came_back.iter().max().unwrap(),
        (0..=INSTANCES).map(|i| ledger.handled_by(i)).collect::<Vec<_>>(),
        failed.len(),
        duplicated,
        started.elapsed()
    );
    broker.cleanup(&topology).await;
}
