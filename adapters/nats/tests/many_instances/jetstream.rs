//! JetStream, one durable pull consumer shared by the instances: every valid message is handled
//! at least once; what the killed instance was frozen on comes back after `ack_wait` and the
//! others handle it; a message is handled twice only if the killed instance took it; a handler
//! failing once is retried (nak) on any instance; each hostile message is dead-lettered exactly
//! once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use futures_util::StreamExt as _;
use jwt_relay::{AuthContext, Propagator};
use jwt_relay_nats::{JetStreamConsumer, JetStreamPublisher, Stats, async_nats};

use crate::support::js::Setup;
use crate::support::{self, backoff, guard, header, headers, pull_consumer, shutdown, stored, wait_until};
use crate::{
    BEFORE_KILL, CONCURRENCY, FAIL_EVERY, FREEZE_AT, HOSTILE_AFTER, HOSTILE_BEFORE, IN_FLIGHT, INSTANCES,
    Instance, Ledger, USERS, VALID, VICTIM, WAIT, hostile, instance_client, sum, users, valid_id, worker,
};

/// The JetStream consumer's `ack_wait`: short, so the killed instance's messages come back soon.
const ACK_WAIT: Duration = Duration::from_secs(2);
/// Messages published between two looks at whether the instance to kill froze.
const CHUNK: usize = 500;
const DURABLE: &str = "workers";

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
