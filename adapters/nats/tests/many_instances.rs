//! Many instances of one consumer against the real nats-server, in one process (issue 25):
//! three instances share the work, one is killed mid-stream and a new one joins.
//!
//! The instance to kill (instance 0) reaches the server through a local TCP forwarder. Once
//! [`FREEZE_AT`] messages are handled, it freezes on its next message: its handlers stop where
//! they are, as a killed process's do. The test then cuts the forwarder (the server sees the
//! socket close with no UNSUB and no last acks, as after `kill -9` or a lost host), aborts the
//! instance's run and drops its client without closing or draining anything, and starts a new
//! instance. Then it publishes the rest.
//!
//! - JetStream, one durable pull consumer shared by the instances: every valid message is
//!   handled at least once; what the killed instance was frozen on comes back after `ack_wait`
//!   and the others handle it; a message is handled twice only if the killed instance took it;
//!   a handler failing once is retried (nak) on any instance; each hostile message is
//!   dead-lettered exactly once.
//! - Core NATS, a queue group: nothing is handled twice, and what is lost with the killed
//!   instance (core NATS redelivers nothing) was published before the kill and still in flight
//!   then; everything published after it is handled exactly once.
//! - Request/reply, micro endpoints and plain queue subscriptions: each request is answered
//!   exactly once, by one instance, a joining instance included.
//!
//! Each test prints a `many-instances <transport>: ...` line for RELIABILITY.md, and a line of
//! details.
//!
//! Hostile messages go where the kill cannot reach them: before the first valid message (and
//! dead-lettered before it is published), and after the kill. Dead-lettering is "store the
//! copy, then term the original": a kill between the two stores a second copy (at least once),
//! which these tests do not provoke.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use async_nats::service::ServiceExt as _;
use async_nats::{Client, RequestErrorKind};
use futures_util::StreamExt as _;
use jwt_relay::{AuthContext, Propagator};
use jwt_relay_nats::bytes::Bytes;
use jwt_relay_nats::{
    Consumer, DeadLetter, JetStreamConsumer, JetStreamPublisher, NatsService, Publisher, Received, RunReport,
    ServiceError, ServiceRequest, Stats, async_nats,
};
use support::common::{self, Forwarder};
use support::js::Setup;
use support::{
    backoff, forged, guard, header, headers, nats_url, pull_consumer, shutdown, stored, unique, user,
    wait_until, wrong_audience,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Valid messages per test.
const VALID: usize = 20_000;
/// Valid messages published before the kill; the rest after the new instance joined.
const BEFORE_KILL: usize = VALID / 2;
/// Once this many messages are handled, the instance to kill freezes on its next one.
const FREEZE_AT: usize = VALID / 5;
/// Hostile messages published before the first valid one, and after the kill.
const HOSTILE_BEFORE: usize = 3;
const HOSTILE_AFTER: usize = 2;
/// On JetStream, the first handler call fails for every id divisible by this (20 ids).
const FAIL_EVERY: usize = 1_000;
/// Instances at the start; the one that joins is instance `INSTANCES`.
const INSTANCES: usize = 3;
/// The instance that is killed.
const VICTIM: usize = 0;
/// Messages each instance handles at once.
const CONCURRENCY: usize = 4;
/// The JetStream consumer's `ack_wait`: short, so the killed instance's messages come back soon.
const ACK_WAIT: Duration = Duration::from_secs(2);
/// Messages published at once (JetStream publishes wait for the stream's ack).
const IN_FLIGHT: usize = 64;
/// Messages published between two looks at whether the instance to kill froze.
const CHUNK: usize = 500;
/// Distinct users whose tokens the valid messages carry.
const USERS: usize = 8;
const WAIT: Duration = Duration::from_secs(60);
const DURABLE: &str = "workers";

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
                wrong_audience("alice")
            };
            (format!("hostile-{k}"), token)
        })
        .collect()
}

/// The users whose identities the valid messages carry.
async fn users() -> Vec<AuthContext> {
    let mut users = Vec::new();
    for u in 0..USERS {
        users.push(user(&format!("user{u}"), 1800).await);
    }
    users
}

/// The ledger of a test: what the handlers did, with the JetStream delivery count (1 on core NATS).
type Ledger = common::Ledger<u64>;

type Handling = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// The handler of `instance`: records each call, works a millisecond, records the success
/// ([`Ledger::call`]). With `fail_once`, the first call of every [`FAIL_EVERY`]th id fails. The
/// instance to kill freezes on its first call after [`FREEZE_AT`] successes, and on any it
/// finishes after that.
fn worker(
    ledger: &Arc<Ledger>,
    instance: usize,
    fail_once: bool,
) -> impl Fn(Received) -> Handling + Send + Sync + 'static {
    let ledger = ledger.clone();
    move |received: Received| {
        let ledger = ledger.clone();
        let id = received
            .headers()
            .and_then(|h| h.get("x-id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let delivered = received.delivered().unwrap_or(1);
        let fails = fail_once && number(&id).is_some_and(|n| n.is_multiple_of(FAIL_EVERY));
        Box::pin(async move { ledger.call(instance, id, delivered, fails).await })
    }
}

/// A client of its own for one instance, as a process of its own would have; the instance to
/// kill goes through a [`Forwarder`] and never reconnects (a killed process does not).
async fn instance_client(instance: usize, ledger: &Ledger) -> (Client, Option<Forwarder>) {
    let forwarder = match instance {
        VICTIM => Some(Forwarder::start(&nats_url(), "nats", 4222).await),
        _ => None,
    };
    if let Some(forwarder) = &forwarder {
        ledger.arm(forwarder.switch());
    }
    let url = forwarder.as_ref().map_or_else(nats_url, |f| f.url().to_owned());
    let mut options = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(2));
    if forwarder.is_some() {
        options = options.max_reconnects(1).ignore_discovered_servers();
    }
    let client = options.connect(url.as_str()).await.expect("connected");
    (client, forwarder)
}

/// One running instance.
struct Instance {
    client: Client,
    forwarder: Option<Forwarder>,
    stats: Stats,
    stop: oneshot::Sender<()>,
    run: JoinHandle<jwt_relay_nats::Result<RunReport>>,
    /// Kept while the instance lives (the core test's probe subscription).
    _keep: Option<async_nats::Subscriber>,
}

impl Instance {
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
        drop(self.client);
    }

    /// Stops it the ordinary way: in-flight messages finish and are settled.
    async fn stop(self) -> RunReport {
        self.stop.send(()).ok();
        tokio::time::timeout(WAIT, self.run)
            .await
            .expect("the run stops")
            .unwrap()
            .expect("the run ends cleanly")
    }
}

fn sum(stats: &[Stats], field: impl Fn(RunReport) -> u64) -> u64 {
    stats.iter().map(|s| field(s.snapshot())).sum()
}

/// An instance of the JetStream consumer `DURABLE` of the setup's stream.
async fn jetstream_instance(setup: &Setup, instance: usize, ledger: &Arc<Ledger>) -> Instance {
    let (client, forwarder) = instance_client(instance, ledger).await;
    let consumer = jetstream::new(client.clone())
        .get_stream(setup.topology.stream_name())
        .await
        .expect("the stream")
        .get_consumer::<pull::Config>(DURABLE)
        .await
        .expect("the durable consumer");
    let consumer = JetStreamConsumer::new(consumer, guard())
        .backoff(backoff())
        .concurrency(CONCURRENCY);
    let stats = consumer.stats();
    let (stop, stopped) = shutdown();
    let handler = worker(ledger, instance, true);
    let run = tokio::spawn(async move { consumer.run(handler, stopped).await });
    Instance {
        client,
        forwarder,
        stats,
        stop,
        run,
        _keep: None,
    }
}

/// Publishes the valid `ids` through JetStream, [`IN_FLIGHT`] at a time.
async fn publish_to_stream(
    publisher: &JetStreamPublisher,
    subject: &str,
    ids: &[usize],
    users: &[AuthContext],
) {
    futures_util::stream::iter(ids)
        .map(|&n| {
            let id = valid_id(n);
            publisher.publish(subject, headers(None, &id), id.clone(), Some(&users[n % USERS]))
        })
        .buffer_unordered(IN_FLIGHT)
        .for_each(|stored| {
            stored.expect("stored");
            std::future::ready(())
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_instances_share_a_durable_consumer_and_a_killed_ones_messages_come_back() {
    let Some(client) = support::connect().await else {
        return;
    };
    let started = Instant::now();
    let setup = Setup::new(client.clone()).await;
    let subject = setup.subject("orders");
    pull_consumer(&setup.declared.stream, DURABLE, |c| c.ack_wait = ACK_WAIT).await;
    let ledger = Ledger::with_victim(VICTIM, FREEZE_AT);
    let mut instances = Vec::new();
    for instance in 0..INSTANCES {
        instances.push(Some(jetstream_instance(&setup, instance, &ledger).await));
    }
    let mut stats: Vec<Stats> = instances.iter().flatten().map(|i| i.stats.clone()).collect();
    let hostile = hostile();
    let publish_hostile = async |(id, token): &(String, String)| {
        setup
            .js
            .publish_with_headers(subject.clone(), headers(Some(token), id), "x".into())
            .await
            .expect("sent")
            .await
            .expect("stored");
    };
    for message in &hostile[..HOSTILE_BEFORE] {
        publish_hostile(message).await;
    }
    assert!(
        wait_until(WAIT, || sum(&stats, |r| r.dead_lettered) == HOSTILE_BEFORE as u64).await,
        "the first hostile messages are dead-lettered before any valid one is published"
    );

    let publisher = JetStreamPublisher::new(setup.js.clone(), Propagator::default());
    let users = users().await;
    let ids: Vec<usize> = (0..VALID).collect();
    let mut killed = false;
    for chunk in ids[..BEFORE_KILL].chunks(CHUNK) {
        if !killed && ledger.is_frozen() {
            kill_and_join_jetstream(&setup, &mut instances, &mut stats, &ledger).await;
            killed = true;
        }
        publish_to_stream(&publisher, &subject, chunk, &users).await;
    }
    if !killed {
        ledger.wait_frozen(WAIT).await;
        kill_and_join_jetstream(&setup, &mut instances, &mut stats, &ledger).await;
    }
    let (killed_at, handled_at_kill) = ledger.frozen_at().expect("killed");
    let after: Vec<&[usize]> = ids[BEFORE_KILL..].chunks(CHUNK).collect();
    let hostile_every = after.len() / HOSTILE_AFTER;
    for (c, chunk) in after.iter().enumerate() {
        if c.is_multiple_of(hostile_every)
            && let Some(message) = hostile.get(HOSTILE_BEFORE + c / hostile_every)
        {
            publish_hostile(message).await;
        }
        publish_to_stream(&publisher, &subject, chunk, &users).await;
    }

    assert!(
        wait_until(WAIT, || ledger.distinct() == VALID
            && sum(&stats, |r| r.dead_lettered) == hostile.len() as u64)
        .await,
        "every valid message handled ({} of {VALID}) and every hostile one dead-lettered: {:?}",
        ledger.distinct(),
        sum(&stats, |r| r.dead_lettered)
    );
    // Until the server has nothing left to deliver nor waits for any ack: every redelivery of
    // the killed instance's messages is handled.
    let deadline = Instant::now() + WAIT;
    loop {
        let info = setup
            .declared
            .stream
            .consumer_info(DURABLE)
            .await
            .expect("consumer info");
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the consumer is settled: {info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for instance in instances.into_iter().flatten() {
        instance.stop().await;
    }

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
    let frozen_on = ledger.frozen_on();
    assert!(!frozen_on.is_empty(), "the killed instance had a message in hand");
    let mut came_back = Vec::new();
    for id in &frozen_on {
        let again = by_id[id]
            .iter()
            .find(|(i, delivered, _)| *i != VICTIM && *delivered >= 2)
            .unwrap_or_else(|| {
                panic!(
                    "{id}, taken by the killed instance, redelivered to another: {:?}",
                    by_id[id]
                )
            });
        came_back.push(again.2.duration_since(killed_at));
    }
    let failed = ledger.failed();
    let redelivered_to_others =
        ledger.count_handled(|h| h.instance != VICTIM && h.delivery >= 2 && !failed.contains_key(&h.id));
    let joined = ledger.handled_by(INSTANCES);
    assert!(joined > 0, "the instance that joined handled messages");

    assert_eq!(failed.len(), VALID / FAIL_EVERY, "each failing id failed once");
    let retried_elsewhere = failed
        .iter()
        .filter(|(id, first)| by_id[*id].iter().any(|(i, ..)| i != *first))
        .count();
    assert!(
        retried_elsewhere > 0,
        "a nak'ed message is redelivered to any instance"
    );

    let dead = stored(&setup.js, &setup.topology.dead_letter_stream_name()).await;
    let mut dead_letters: BTreeMap<String, usize> = BTreeMap::new();
    for copy in &dead {
        *dead_letters
            .entry(header(copy, "x-id").unwrap_or_default())
            .or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = hostile.iter().map(|(id, _)| (id.clone(), 1)).collect();
    assert_eq!(
        dead_letters, expected,
        "each hostile message dead-lettered exactly once, nothing else"
    );

    eprintln!(
        "many-instances nats-jetstream: published={} handled={} dead_lettered={} duplicated={} lost={}",
        VALID + hostile.len(),
        by_id.len(),
        dead.len(),
        duplicated.len(),
        lost.len()
    );
    eprintln!(
        "  killed instance {VICTIM} after {handled_at_kill} handled: took {}, handled {}, frozen on {} \
         (handled by the others {:.1?} to {:.1?} after the kill; ack_wait {ACK_WAIT:?}); messages redelivered \
         to the others: {redelivered_to_others}; joined instance handled {joined}; \
         per instance {:?}; failing once: {} ids, {retried_elsewhere} retried on another instance; duplicated: {:?}; \
         {:.1?} in all",
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
    setup.delete().await;
}

/// Finishes killing the instance that froze, and starts a new one.
async fn kill_and_join_jetstream(
    setup: &Setup,
    instances: &mut Vec<Option<Instance>>,
    stats: &mut Vec<Stats>,
    ledger: &Arc<Ledger>,
) {
    let victim = instances[VICTIM].take().expect("alive");
    victim.kill().await;
    let joined = jetstream_instance(setup, INSTANCES, ledger).await;
    stats.push(joined.stats.clone());
    instances.push(Some(joined));
}

/// The names of the core NATS test.
struct Core {
    subject: String,
    group: String,
    dead: String,
    /// A plain subscription of the instance to kill alone: a request to it has no responders
    /// once the server dropped that instance's connection.
    probe: String,
}

impl Core {
    /// An instance of the queue-group consumer.
    async fn instance(&self, instance: usize, ledger: &Arc<Ledger>) -> Instance {
        let (client, forwarder) = instance_client(instance, ledger).await;
        let subscription = Consumer::new(client.clone(), guard())
            .queue_group(&self.group)
            .dead_letter(DeadLetter::subject(&self.dead))
            .concurrency(CONCURRENCY)
            .subscribe(&self.subject)
            .await
            .expect("subscribed");
        let probe = match forwarder {
            Some(_) => Some(client.subscribe(self.probe.clone()).await.expect("subscribed")),
            None => None,
        };
        client
            .flush()
            .await
            .expect("the subscriptions reached the server");
        let stats = subscription.stats();
        let (stop, stopped) = shutdown();
        let run = tokio::spawn(subscription.run(worker(ledger, instance, false), stopped));
        Instance {
            client,
            forwarder,
            stats,
            stop,
            run,
            _keep: probe,
        }
    }

    /// Finishes killing the instance that froze once everything published so far reached the
    /// server, waits until the server has dropped its connection, and starts a new instance.
    /// `published` were published by then.
    async fn kill_and_join(
        &self,
        client: &Client,
        published: usize,
        instances: &mut Vec<Option<Instance>>,
        stats: &mut Vec<Stats>,
        ledger: &Arc<Ledger>,
    ) -> Killed {
        client
            .flush()
            .await
            .expect("what was published reached the server");
        let handled = ledger.distinct();
        let victim = instances[VICTIM].take().expect("alive");
        victim.kill().await;
        let deadline = Instant::now() + WAIT;
        loop {
            let request = async_nats::Request::new().timeout(Some(Duration::from_millis(200)));
            match client.send_request(self.probe.clone(), request).await {
                Err(e) if e.kind() == RequestErrorKind::NoResponders => break,
                _ => assert!(
                    Instant::now() < deadline,
                    "the server dropped the killed instance"
                ),
            }
        }
        let joined = self.instance(INSTANCES, ledger).await;
        stats.push(joined.stats.clone());
        instances.push(Some(joined));
        Killed { published, handled }
    }
}

/// How far the stream was when the instance was killed.
struct Killed {
    /// Messages published (and flushed to the server) before the server dropped it.
    published: usize,
    /// Messages handled by then.
    handled: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_queue_group_handles_nothing_twice_and_loses_only_what_the_killed_instance_held() {
    let Some(client) = support::connect().await else {
        return;
    };
    let started = Instant::now();
    let subject = unique("many.core");
    let core = Core {
        dead: format!("{subject}.dlq"),
        subject,
        group: unique("workers"),
        probe: unique("many.probe"),
    };
    let subject = core.subject.clone();
    let mut dead_letters = client
        .subscribe(core.dead.clone())
        .await
        .expect("dead letters subscribed");
    client.flush().await.expect("flushed");
    let dead_ids = Arc::new(Mutex::new(Vec::new()));
    let record = dead_ids.clone();
    let reader = tokio::spawn(async move {
        while let Some(copy) = dead_letters.next().await {
            let id = copy
                .headers
                .as_ref()
                .and_then(|h| h.get("x-id"))
                .map(|v| v.as_str().to_owned());
            record.lock().unwrap().push(id.unwrap_or_default());
        }
    });
    let ledger = Ledger::with_victim(VICTIM, FREEZE_AT);
    let mut instances = Vec::new();
    for instance in 0..INSTANCES {
        instances.push(Some(core.instance(instance, &ledger).await));
    }
    let mut stats: Vec<Stats> = instances.iter().flatten().map(|i| i.stats.clone()).collect();
    let hostile = hostile();
    for (id, token) in &hostile[..HOSTILE_BEFORE] {
        client
            .publish_with_headers(subject.clone(), headers(Some(token), id), "x".into())
            .await
            .expect("published");
    }
    assert!(
        wait_until(WAIT, || dead_ids.lock().unwrap().len() == HOSTILE_BEFORE).await,
        "the first hostile messages are dead-lettered before any valid one is published"
    );

    let publisher = Publisher::new(client.clone(), Propagator::default());
    let users = users().await;
    let publish = async |n: usize| {
        let id = valid_id(n);
        publisher
            .publish(&subject, headers(None, &id), id.clone(), Some(&users[n % USERS]))
            .await
            .expect("published");
    };
    let mut killed = None;
    for n in 0..BEFORE_KILL {
        if killed.is_none() && ledger.is_frozen() {
            killed = Some(
                core.kill_and_join(&client, n, &mut instances, &mut stats, &ledger)
                    .await,
            );
        }
        publish(n).await;
    }
    if killed.is_none() {
        ledger.wait_frozen(WAIT).await;
        killed = Some(
            core.kill_and_join(&client, BEFORE_KILL, &mut instances, &mut stats, &ledger)
                .await,
        );
    }
    let Killed {
        published: published_at_kill,
        handled: handled_at_kill,
    } = killed.unwrap();
    let hostile_every = (VALID - BEFORE_KILL) / HOSTILE_AFTER;
    for n in BEFORE_KILL..VALID {
        if (n - BEFORE_KILL).is_multiple_of(hostile_every) {
            let k = HOSTILE_BEFORE + (n - BEFORE_KILL) / hostile_every;
            if let Some((id, token)) = hostile.get(k) {
                client
                    .publish_with_headers(subject.clone(), headers(Some(token), id), "x".into())
                    .await
                    .expect("published");
            }
        }
        publish(n).await;
    }

    let after_kill = || ledger.handled_all((published_at_kill..VALID).map(valid_id));
    assert!(
        wait_until(WAIT, || after_kill()
            && dead_ids.lock().unwrap().len() == hostile.len())
        .await,
        "everything published after the kill is handled ({} handled), every hostile message dead-lettered ({:?})",
        ledger.distinct(),
        dead_ids.lock().unwrap()
    );
    for instance in instances.into_iter().flatten() {
        instance.stop().await;
    }
    reader.abort();

    let by_id = ledger.by_id();
    let duplicated: BTreeMap<&String, Vec<usize>> = by_id
        .iter()
        .filter(|(_, calls)| calls.len() > 1)
        .map(|(id, calls)| (id, calls.iter().map(|(i, ..)| *i).collect()))
        .collect();
    assert!(duplicated.is_empty(), "nothing handled twice: {duplicated:?}");
    let lost: Vec<usize> = (0..VALID)
        .filter(|&n| !by_id.contains_key(&valid_id(n)))
        .collect();
    assert!(
        lost.iter().all(|&n| n < published_at_kill),
        "only what was published before the kill is lost: {lost:?}"
    );
    let in_flight = published_at_kill - handled_at_kill;
    assert!(
        lost.len() <= in_flight,
        "lost {} of the {in_flight} in flight when the instance was killed",
        lost.len()
    );
    let frozen_on = ledger.frozen_on();
    assert!(!frozen_on.is_empty(), "the killed instance had a message in hand");
    for id in &frozen_on {
        assert!(
            !by_id.contains_key(id),
            "{id}, in the killed instance's hands, is lost: core NATS redelivers nothing"
        );
    }
    let joined = ledger.handled_by(INSTANCES);
    assert!(joined > 0, "the instance that joined handled messages");
    let mut dead_letters: BTreeMap<String, usize> = BTreeMap::new();
    for id in dead_ids.lock().unwrap().iter() {
        *dead_letters.entry(id.clone()).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = hostile.iter().map(|(id, _)| (id.clone(), 1)).collect();
    assert_eq!(
        dead_letters, expected,
        "each hostile message dead-lettered exactly once, nothing else"
    );
    assert_eq!(sum(&stats, |r| r.dead_lettered), hostile.len() as u64);

    eprintln!(
        "many-instances nats-core: published={} handled={} dead_lettered={} duplicated={} lost={}",
        VALID + hostile.len(),
        by_id.len(),
        dead_letters.values().sum::<usize>(),
        duplicated.len(),
        lost.len()
    );
    eprintln!(
        "  killed instance {VICTIM} with {published_at_kill} published and {handled_at_kill} handled \
         ({in_flight} in flight in all; it froze at {} handled): it took {}, handled {}, frozen on {}; lost {} (ids {:?}..{:?}); \
         joined instance handled {joined}; per instance {:?}; {:.1?} in all",
        ledger.frozen_at().expect("killed").1,
        ledger.taken_by(VICTIM).len(),
        ledger.handled_by(VICTIM),
        frozen_on.len(),
        lost.len(),
        lost.first(),
        lost.last(),
        (0..=INSTANCES).map(|i| ledger.handled_by(i)).collect::<Vec<_>>(),
        started.elapsed()
    );
}

/// How a service instance takes its requests.
#[derive(Debug, Clone, Copy)]
enum Serve {
    /// A NATS micro endpoint; every instance of a service shares its queue group (`q`).
    Endpoint,
    /// A plain queue subscription, served with `serve_subscriber`.
    Subscriber,
}

/// Calls to the service handler, per id, with the instance.
type ServiceCalls = Arc<Mutex<Vec<(usize, String)>>>;

struct ServiceInstance {
    stop: oneshot::Sender<()>,
    run: JoinHandle<jwt_relay_nats::Result<RunReport>>,
    service: Option<async_nats::service::Service>,
}

async fn service_instance(
    serve: Serve,
    name: &str,
    subject: &str,
    instance: usize,
    calls: &ServiceCalls,
) -> ServiceInstance {
    let client = async_nats::connect(nats_url()).await.expect("connected");
    let nats_service = NatsService::new(client.clone(), guard()).concurrency(CONCURRENCY);
    let (stop, stopped) = shutdown();
    let record = calls.clone();
    let handler = move |request: ServiceRequest| {
        let id = request
            .headers()
            .and_then(|h| h.get("x-id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        record.lock().unwrap().push((instance, id.clone()));
        async move { Ok::<Bytes, ServiceError>(Bytes::from(id)) }
    };
    let served = subject.to_owned();
    let (run, service) = match serve {
        Serve::Endpoint => {
            let service = client
                .service_builder()
                .start(name, "1.0.0")
                .await
                .expect("the micro service starts");
            let endpoint = service.endpoint(subject).await.expect("the endpoint");
            client.flush().await.expect("subscribed");
            let run = tokio::spawn(async move {
                nats_service
                    .serve_endpoint(&served, endpoint, handler, stopped)
                    .await
            });
            (run, Some(service))
        }
        Serve::Subscriber => {
            let subscriber = client
                .queue_subscribe(subject.to_owned(), format!("{name}-group"))
                .await
                .expect("subscribed");
            client.flush().await.expect("subscribed");
            let run = tokio::spawn(async move {
                nats_service
                    .serve_subscriber(&served, subscriber, handler, stopped)
                    .await
            });
            (run, None)
        }
    };
    ServiceInstance { stop, run, service }
}

/// Three instances of one service in a queue group, a fourth joining half-way: every request
/// gets one answer, from one instance; hostile ones get a 401 and never reach a handler.
async fn a_service_in_a_queue_group_answers_each_request_once(serve: Serve, transport: &str) {
    let Some(client) = support::connect().await else {
        return;
    };
    let started = Instant::now();
    let name = unique("many_svc");
    let subject = format!("{name}.hello");
    let calls = ServiceCalls::default();
    let mut instances = Vec::new();
    for instance in 0..INSTANCES {
        instances.push(service_instance(serve, &name, &subject, instance, &calls).await);
    }
    let publisher = Publisher::new(client.clone(), Propagator::default());
    let users = users().await;
    let request = async |n: usize| {
        let id = valid_id(n);
        let reply = publisher
            .request_with_timeout(
                &subject,
                headers(None, &id),
                id.clone(),
                Some(&users[n % USERS]),
                Duration::from_secs(10),
            )
            .await;
        (id, reply)
    };
    let mut replies = Vec::new();
    let half = VALID / 2;
    replies.extend(
        futures_util::stream::iter(0..half)
            .map(request)
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await,
    );
    instances.push(service_instance(serve, &name, &subject, INSTANCES, &calls).await);
    replies.extend(
        futures_util::stream::iter(half..VALID)
            .map(request)
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await,
    );
    let mut refused = 0;
    let hostile = hostile();
    for (id, token) in &hostile {
        let reply = client
            .request_with_headers(subject.clone(), headers(Some(token), id), "x".into())
            .await
            .expect("an answer");
        let error = ServiceError::from_reply(&reply).expect("an error reply");
        assert_eq!(error.code(), 401, "{id}: refused");
        refused += 1;
    }
    let mut reports = Vec::new();
    for instance in instances {
        instance.stop.send(()).ok();
        reports.push(instance.run.await.unwrap().expect("serving ends cleanly"));
        if let Some(service) = instance.service {
            service.stop().await.ok();
        }
    }

    let mut answered = 0;
    let mut unanswered = Vec::new();
    for (id, reply) in &replies {
        match reply {
            Ok(reply) => {
                assert!(
                    ServiceError::from_reply(reply).is_none(),
                    "{id}: answered by the handler"
                );
                assert_eq!(reply.payload, Bytes::from(id.clone()), "{id}: its own answer");
                answered += 1;
            }
            Err(e) => unanswered.push(format!("{id}: {e}")),
        }
    }
    assert!(unanswered.is_empty(), "every request answered: {unanswered:?}");
    let calls = calls.lock().unwrap().clone();
    let mut per_id: BTreeMap<&String, Vec<usize>> = BTreeMap::new();
    for (instance, id) in &calls {
        per_id.entry(id).or_default().push(*instance);
    }
    let duplicated: Vec<_> = per_id.iter().filter(|(_, i)| i.len() > 1).collect();
    assert!(
        duplicated.is_empty(),
        "each request handled by one instance: {duplicated:?}"
    );
    assert_eq!(
        per_id.len(),
        VALID,
        "every valid request reached a handler, no hostile one did"
    );
    let per_instance: Vec<usize> = (0..=INSTANCES)
        .map(|i| calls.iter().filter(|(c, _)| *c == i).count())
        .collect();
    assert!(
        per_instance.iter().all(|&n| n > 0),
        "every instance answered, the one that joined too: {per_instance:?}"
    );
    let rejected: u64 = reports.iter().map(|r| r.rejected).sum();
    assert_eq!(rejected, hostile.len() as u64, "the refusals were counted");

    eprintln!(
        "many-instances {transport}: published={} handled={answered} dead_lettered={refused} duplicated={} lost={}",
        VALID + hostile.len(),
        duplicated.len(),
        unanswered.len()
    );
    eprintln!(
        "  ({serve:?}; dead_lettered counts the requests refused with 401: request/reply keeps no dead letters) \
         per instance {per_instance:?}, the last one joined half-way; {:.1?} in all",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_endpoints_in_a_queue_group_answer_each_request_once() {
    a_service_in_a_queue_group_answers_each_request_once(Serve::Endpoint, "nats-service-endpoint").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_queue_subscribers_answer_each_request_once() {
    a_service_in_a_queue_group_answers_each_request_once(Serve::Subscriber, "nats-service-subscriber").await;
}
