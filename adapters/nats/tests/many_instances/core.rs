//! Core NATS, a queue group: nothing is handled twice, and what is lost with the killed instance
//! (core NATS redelivers nothing) was published before the kill and still in flight then;
//! everything published after it is handled exactly once. A member that leaves gracefully
//! instead loses nothing: it handles what its client had received before its run returns.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::{Client, RequestErrorKind};
use futures_util::StreamExt as _;
use jwt_relay::Propagator;
use jwt_relay_nats::{Consumer, DeadLetter, Publisher, Stats, async_nats};
use tokio::task::JoinHandle;

use crate::support::{self, guard, headers, shutdown, unique, wait_until};
use crate::{
    BEFORE_KILL, CONCURRENCY, FREEZE_AT, Fence, HOSTILE_AFTER, HOSTILE_BEFORE, INSTANCES, Instance, Ledger,
    USERS, VALID, VICTIM, WAIT, hostile, instance_client, sum, users, valid_id, worker,
};

/// The ids of the dead-lettered copies read so far.
type DeadIds = Arc<Mutex<Vec<String>>>;

/// Reads the copies published to `subject` in the background.
async fn read_dead_letters(client: &Client, subject: &str) -> (DeadIds, JoinHandle<()>) {
    let mut dead_letters = client
        .subscribe(subject.to_owned())
        .await
        .expect("dead letters subscribed");
    client.flush().await.expect("flushed");
    let dead_ids = DeadIds::default();
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
    (dead_ids, reader)
}

/// How many times each id occurs.
fn count(ids: &[String]) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for id in ids {
        *counts.entry(id.clone()).or_default() += 1;
    }
    counts
}

/// The names of a core NATS test.
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
    let (dead_ids, reader) = read_dead_letters(&client, &core.dead).await;
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
    let dead_letters = count(&dead_ids.lock().unwrap());
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

/// The member that leaves gracefully.
const LEAVER: usize = 0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_queue_group_member_leaving_gracefully_loses_nothing() {
    let Some(client) = support::connect().await else {
        return;
    };
    let started = Instant::now();
    let subject = unique("many.leave");
    let core = Core {
        dead: format!("{subject}.dlq"),
        subject,
        group: unique("workers"),
        probe: unique("many.probe"),
    };
    let subject = core.subject.clone();
    let (dead_ids, reader) = read_dead_letters(&client, &core.dead).await;
    let ledger = Ledger::new();
    let mut instances = Vec::new();
    for instance in 0..INSTANCES {
        instances.push(Some(core.instance(instance, &ledger).await));
    }
    let stats: Vec<Stats> = instances.iter().flatten().map(|i| i.stats.clone()).collect();

    // Half of the messages; once they reached the leaver's client, it is told to stop, and the
    // other half is published once it left: its client holds about a third of the first half
    // to hand over, and the other members must get everything published after.
    let publisher = Publisher::new(client.clone(), Propagator::default());
    let users = users().await;
    let hostile = hostile();
    let hostile_every = VALID / hostile.len();
    let leaver = instances[LEAVER].take().expect("alive");
    let fence = Fence::new(&leaver.client).await;
    let publish = async |n: usize| {
        if n.is_multiple_of(hostile_every)
            && let Some((id, token)) = hostile.get(n / hostile_every)
        {
            client
                .publish_with_headers(subject.clone(), headers(Some(token), id), "x".into())
                .await
                .expect("published");
        }
        let id = valid_id(n);
        publisher
            .publish(&subject, headers(None, &id), id.clone(), Some(&users[n % USERS]))
            .await
            .expect("published");
    };
    for n in 0..VALID / 2 {
        publish(n).await;
    }
    fence.pass(&client).await;
    let (told_at, handled_when_told) = (Instant::now(), ledger.handled_by(LEAVER));
    leaver.stop.send(()).ok();
    let report = crate::stopped(leaver.run).await;
    let left_after = told_at.elapsed();
    // Its unsubscribe went before the fence's answer: the server took it.
    fence.pass(&client).await;
    for n in VALID / 2..VALID {
        publish(n).await;
    }
    // Until everything is handled, or nothing more is for 3 s.
    let mut calls = ledger.calls();
    let mut quiet_since = Instant::now();
    while ledger.distinct() < VALID || dead_ids.lock().unwrap().len() < hostile.len() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if ledger.calls() != calls {
            (calls, quiet_since) = (ledger.calls(), Instant::now());
        } else if quiet_since.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    for instance in instances.into_iter().flatten() {
        instance.stop().await;
    }
    reader.abort();

    let by_id = ledger.by_id();
    let lost: Vec<String> = (0..VALID)
        .map(valid_id)
        .filter(|id| !by_id.contains_key(id))
        .collect();
    let duplicated: BTreeMap<&String, Vec<usize>> = by_id
        .iter()
        .filter(|(_, calls)| calls.len() > 1)
        .map(|(id, calls)| (id, calls.iter().map(|(i, ..)| *i).collect()))
        .collect();
    let dead_letters = count(&dead_ids.lock().unwrap());
    eprintln!(
        "many-instances nats-core (graceful leave): published={} handled={} dead_lettered={} duplicated={} lost={}",
        VALID + hostile.len(),
        by_id.len(),
        dead_letters.values().sum::<usize>(),
        duplicated.len(),
        lost.len()
    );
    let leaver = ledger.handled_by(LEAVER);
    let drained = ledger.count_handled(|h| h.instance == LEAVER && h.at >= told_at);
    eprintln!(
        "  instance {LEAVER} told to stop with {} published and {handled_when_told} handled by it: \
         it handled {leaver} in all, {drained} of them after it was told (what its client had \
         received), and returned {left_after:.1?} later; the rest was published then; \
         per instance {:?}; lost {:?}; {:.1?} in all",
        VALID / 2,
        (0..INSTANCES).map(|i| ledger.handled_by(i)).collect::<Vec<_>>(),
        lost.iter().take(10).collect::<Vec<_>>(),
        started.elapsed()
    );
    assert!(lost.is_empty(), "nothing lost: {} lost, {lost:?}", lost.len());
    assert!(duplicated.is_empty(), "nothing handled twice: {duplicated:?}");
    let expected: BTreeMap<String, usize> = hostile.iter().map(|(id, _)| (id.clone(), 1)).collect();
    assert_eq!(
        dead_letters, expected,
        "each hostile message dead-lettered exactly once, nothing else"
    );
    assert_eq!(sum(&stats, |r| r.dead_lettered), hostile.len() as u64);
    assert!(
        drained > 0,
        "the leaver handled what its client had received after it was told to stop"
    );
    assert_eq!(
        report.accepted, leaver as u64,
        "the leaver's report counts what it handled"
    );
}
