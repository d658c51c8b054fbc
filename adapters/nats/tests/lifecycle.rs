//! A JetStream consumer's life: a halt stops it and leaves the message, a
//! shutdown lets the handler in flight finish and ack, `in_progress` acks
//! keep a long handler's message from being redelivered, and acks sent in
//! groups neither wait for more messages nor stay unsent when the run stops.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::consume::{ExpiredToken, Outcome};
use jwt_relay::{Error, ErrorKind, Guard, Propagator};
use jwt_relay_nats::{ErrorKind as NatsErrorKind, JetStreamConsumer, JetStreamPublisher, Received};
use support::js::{Setup, recorder};
use support::{guard, headers, pull_consumer, shutdown, stored, token, user, verifier, wait_until};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_stops_the_consumer_and_leaves_the_message() {
    let Some(client) = support::connect().await else {
        return;
    };
    let setup = Setup::new(client.clone()).await;
    let subject = setup.subject("halt");
    setup
        .js
        .publish_with_headers(
            subject.clone(),
            headers(Some(&token("alice", -60)), "1"),
            "x".into(),
        )
        .await
        .expect("sent")
        .await
        .expect("stored");
    let consumer = pull_consumer(&setup.declared.stream, "halting", |_| {}).await;
    // A policy that finds our own setup wrong.
    let policy =
        |_: ExpiredToken| async { Outcome::Halt(Error::new(ErrorKind::Configuration, "no exchanger")) };
    let guard = Guard::builder(verifier()).policy(policy).build();
    let (_stop, stopped) = shutdown();
    let result = tokio::time::timeout(
        WAIT,
        JetStreamConsumer::new(consumer, guard).run(recorder(&Default::default()), stopped),
    )
    .await
    .expect("the consumer stops by itself");
    let error = result.expect_err("a halt is an error");
    assert_eq!(error.kind(), NatsErrorKind::Halted);
    assert_eq!(
        error.halt_reason().map(|e| e.kind()),
        Some(ErrorKind::Configuration)
    );
    assert!(
        stored(&setup.js, &setup.topology.dead_letter_stream_name())
            .await
            .is_empty()
    );
    let info = setup
        .declared
        .stream
        .consumer_info("halting")
        .await
        .expect("info");
    assert_eq!(
        info.ack_floor.stream_sequence, 0,
        "the message was not acknowledged"
    );
    setup.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_handler_in_flight_finish_and_ack() {
    let Some(client) = support::connect().await else {
        return;
    };
    let setup = Setup::new(client.clone()).await;
    let subject = setup.subject("slow");
    let publisher = JetStreamPublisher::new(setup.js.clone(), Propagator::default());
    let alice = user("alice", 300).await;
    publisher
        .publish(&subject, headers(None, "slow"), "x", Some(&alice))
        .await
        .expect("stored");
    let consumer = pull_consumer(&setup.declared.stream, "slow", |c| {
        c.ack_wait = Duration::from_secs(1)
    })
    .await;
    let consumer = JetStreamConsumer::new(consumer, guard());
    let stats = consumer.stats();
    let started = Arc::new(tokio::sync::Notify::new());
    let (calls, finished) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(false)));
    let (signal, count, done) = (started.clone(), calls.clone(), finished.clone());
    let (stop, stopped) = shutdown();
    let run = tokio::spawn(async move {
        consumer
            .run(
                move |_: Received| {
                    let (signal, count, done) = (signal.clone(), count.clone(), done.clone());
                    async move {
                        *count.lock().unwrap() += 1;
                        signal.notify_one();
                        tokio::time::sleep(Duration::from_millis(2500)).await;
                        *done.lock().unwrap() = true;
                        Ok::<(), String>(())
                    }
                },
                stopped,
            )
            .await
    });
    tokio::time::timeout(WAIT, started.notified())
        .await
        .expect("the handler starts");
    stop.send(()).ok();
    run.await.unwrap().expect("the run ends cleanly");
    assert!(
        *finished.lock().unwrap(),
        "the run waited for the handler in flight"
    );
    assert_eq!(
        *calls.lock().unwrap(),
        1,
        "in_progress acks prevented a redelivery"
    );
    assert_eq!(stats.snapshot().accepted, 1);
    assert_eq!(
        acked(&setup, "slow").await,
        (0, 1),
        "acked before the run returned"
    );
    setup.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_progress_acks_keep_a_long_handler_from_being_redelivered() {
    let Some(client) = support::connect().await else {
        return;
    };
    let setup = Setup::new(client.clone()).await;
    let subject = setup.subject("long");
    let publisher = JetStreamPublisher::new(setup.js.clone(), Propagator::default());
    let alice = user("alice", 300).await;
    publisher
        .publish(&subject, headers(None, "long"), "x", Some(&alice))
        .await
        .expect("stored");
    // ack_wait is shorter than the handler, and a redelivered copy would be handled at once.
    let consumer = pull_consumer(&setup.declared.stream, "long", |c| {
        c.ack_wait = Duration::from_secs(1)
    })
    .await;
    let consumer = JetStreamConsumer::new(consumer, guard()).concurrency(2);
    let stats = consumer.stats();
    let deliveries = Arc::new(Mutex::new(Vec::new()));
    let record = deliveries.clone();
    let (stop, stopped) = shutdown();
    let run = tokio::spawn(async move {
        consumer
            .run(
                move |d: Received| {
                    record.lock().unwrap().push(d.delivered());
                    async {
                        tokio::time::sleep(Duration::from_millis(2500)).await;
                        Ok::<(), String>(())
                    }
                },
                stopped,
            )
            .await
    });
    assert!(
        wait_until(WAIT, || stats.snapshot().accepted >= 1).await,
        "handled"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.send(()).ok();
    run.await.unwrap().expect("the run ends cleanly");
    assert_eq!(*deliveries.lock().unwrap(), [Some(1)], "delivered once");
    setup.delete().await;
}

/// Publishes `count` messages, each with a token.
async fn publish_many(setup: &Setup, subject: &str, count: usize) {
    for i in 0..count {
        setup
            .js
            .publish_with_headers(
                subject.to_owned(),
                headers(Some(&token("alice", 300)), &i.to_string()),
                "x".into(),
            )
            .await
            .expect("sent")
            .await
            .expect("stored");
    }
}

/// The consumer's unacknowledged messages and its ack floor (stream sequence).
async fn acked(setup: &Setup, name: &str) -> (usize, u64) {
    let info = setup.declared.stream.consumer_info(name).await.expect("info");
    (info.num_ack_pending, info.ack_floor.stream_sequence)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_are_sent_while_the_run_waits_for_more_messages() {
    let Some(client) = support::connect().await else {
        return;
    };
    let setup = Setup::new(client.clone()).await;
    let subject = setup.subject("few");
    // Fewer than a group of acks.
    publish_many(&setup, &subject, 3).await;
    let consumer = pull_consumer(&setup.declared.stream, "few", |_| {}).await;
    let consumer = JetStreamConsumer::new(consumer, guard());
    let stats = consumer.stats();
    let (stop, stopped) = shutdown();
    let run = tokio::spawn(async move { consumer.run(recorder(&Default::default()), stopped).await });
    assert!(
        wait_until(WAIT, || stats.snapshot().accepted == 3).await,
        "handled: {:?}",
        stats.snapshot()
    );
    let start = tokio::time::Instant::now();
    while acked(&setup, "few").await != (0, 3) && start.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!run.is_finished(), "the run still waits for messages");
    assert_eq!(
        acked(&setup, "few").await,
        (0, 3),
        "all three acked while the run goes on"
    );
    stop.send(()).ok();
    run.await.unwrap().expect("the run ends cleanly");
    setup.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_acked_in_full_by_the_time_the_run_returns() {
    let Some(client) = support::connect().await else {
        return;
    };
    let setup = Setup::new(client.clone()).await;
    let subject = setup.subject("burst");
    const MESSAGES: usize = 150;
    publish_many(&setup, &subject, MESSAGES).await;
    let consumer = pull_consumer(&setup.declared.stream, "burst", |_| {}).await;
    // The run is told to stop from the last message's event, with its ack (and maybe a
    // whole group) still queued.
    let (stop, stopped) = shutdown();
    let (stop, events) = (Mutex::new(Some(stop)), AtomicUsize::new(0));
    let consumer = JetStreamConsumer::new(consumer, guard())
        .batch(200)
        .on_event(move |_| {
            if events.fetch_add(1, Ordering::Relaxed) + 1 == MESSAGES
                && let Some(stop) = stop.lock().unwrap().take()
            {
                stop.send(()).ok();
            }
        });
    let report = tokio::time::timeout(WAIT, consumer.run(recorder(&Default::default()), stopped))
        .await
        .expect("the run stops once all are handled")
        .expect("the run ends cleanly");
    assert_eq!(report.accepted, MESSAGES as u64);
    let info = setup.declared.stream.consumer_info("burst").await.expect("info");
    assert_eq!(
        (info.num_ack_pending, info.ack_floor.stream_sequence),
        (0, MESSAGES as u64),
        "every ack settled when the run returned"
    );
    assert_eq!(info.num_redelivered, 0, "nothing redelivered");
    setup.delete().await;
}
