//! JetStream against a real nats-server: the round trip, bad tokens in the
//! dead-letter stream with their reasons and without the token and never
//! redelivered, failing handlers retried then dead-lettered at
//! `max_deliver`, a handler publishing downstream propagating the token, and
//! a publish no stream stores.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use jwt_relay::consume::{REASON_CLASS, REASON_KIND, REASON_MESSAGE};
use jwt_relay::publish::PublishErrorKind;
use jwt_relay::{Acceptance, ErrorKind, Propagator, scope};
use jwt_relay_nats::{
    JetStreamConsumer, JetStreamPublisher, ORIGINAL_SEQUENCE, ORIGINAL_STREAM, ORIGINAL_SUBJECT, Received,
    async_nats,
};
use support::js::{Seen, Setup, recorder};
use support::{
    backoff, forged, guard, has_header_any_casing, header, headers, pull_consumer, shutdown, stored, token,
    unique, user, wait_until, wrong_audience,
};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_then_bad_tokens_go_to_the_dead_letter_stream_once() {
    let Some(client) = support::connect().await else {
        return;
    };
    let setup = Setup::new(client.clone()).await;
    let subject = setup.subject("eu");
    let publisher = JetStreamPublisher::new(setup.js.clone(), Propagator::default());

    let alice = user("alice", 300).await;
    let ack = scope(
        alice,
        publisher.publish(&subject, headers(None, "good"), "2 books", None),
    )
    .await
    .expect("stored, with the ambient identity");
    assert_eq!(ack.stream, setup.topology.stream_name());
    let bad = [
        ("missing", None, ErrorKind::Missing),
        ("forged", Some(forged("mallory")), ErrorKind::BadSignature),
        ("expired", Some(token("alice", -60)), ErrorKind::Expired),
        (
            "audience",
            Some(wrong_audience("alice")),
            ErrorKind::InvalidAudience,
        ),
    ];
    for (id, token, _) in &bad {
        // Raw publishes: what a forger, or a client without jwt-relay, sends.
        setup
            .js
            .publish_with_headers(subject.clone(), headers(token.as_deref(), id), "x".into())
            .await
            .expect("sent")
            .await
            .expect("stored");
    }

    let consumer = pull_consumer(&setup.declared.stream, "billing", |_| {}).await;
    let consumer = JetStreamConsumer::new(consumer, guard()).double_ack();
    let stats = consumer.stats();
    let seen: Seen = Default::default();
    let (stop, stopped) = shutdown();
    let handler = recorder(&seen);
    let run = tokio::spawn(async move { consumer.run(handler, stopped).await });
    assert!(
        wait_until(WAIT, || {
            let r = stats.snapshot();
            r.accepted == 1 && r.dead_lettered == 4
        })
        .await,
        "1 handled and 4 dead-lettered: {:?}",
        stats.snapshot()
    );
    // Long enough for a redelivery, were any coming.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(()).ok();
    run.await.unwrap().expect("the run ends cleanly");

    assert_eq!(
        *seen.lock().unwrap(),
        [(Some("alice".to_owned()), Acceptance::Verified, "good".to_owned())]
    );
    let dead = stored(&setup.js, &setup.topology.dead_letter_stream_name()).await;
    assert_eq!(dead.len(), 4, "each bad message dead-lettered once");
    for (id, token, kind) in &bad {
        let copy = dead
            .iter()
            .find(|m| header(m, "x-id").as_deref() == Some(id))
            .unwrap_or_else(|| panic!("`{id}` is in the dead-letter stream"));
        assert_eq!(copy.subject.as_str(), format!("{subject}.dlq"));
        assert_eq!(header(copy, REASON_KIND).as_deref(), Some(kind.as_str()), "{id}");
        assert_eq!(header(copy, REASON_CLASS).as_deref(), Some("permanent"));
        assert!(header(copy, REASON_MESSAGE).is_some_and(|m| !m.is_empty()));
        assert_eq!(header(copy, ORIGINAL_SUBJECT).as_deref(), Some(subject.as_str()));
        assert_eq!(
            header(copy, ORIGINAL_STREAM).as_deref(),
            Some(setup.topology.stream_name())
        );
        assert!(header(copy, ORIGINAL_SEQUENCE).is_some());
        assert!(
            !has_header_any_casing(copy, "authorization"),
            "{id}: no token header"
        );
        if let Some(token) = token {
            let all: String = copy.headers.iter().map(|(_, v)| format!("{v:?}")).collect();
            assert!(!all.contains(token.as_str()), "{id}: the token appears nowhere");
        }
        assert_eq!(copy.payload.as_ref(), b"x");
    }
    let info = setup
        .declared
        .stream
        .consumer_info("billing")
        .await
        .expect("consumer info");
    assert_eq!(info.num_ack_pending, 0, "everything acked or terminated");
    assert_eq!(info.num_redelivered, 0, "nothing redelivered");
    assert_eq!(info.num_pending, 0);
    setup.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_errors_nak_with_backoff_then_dead_letter_at_max_deliver() {
    let Some(client) = support::connect().await else {
        return;
    };
    let setup = Setup::new(client.clone()).await;
    let subject = setup.subject("flaky");
    let publisher = JetStreamPublisher::new(setup.js.clone(), Propagator::default());
    let alice = user("alice", 300).await;
    publisher
        .publish(&subject, headers(None, "doomed"), "x", Some(&alice))
        .await
        .expect("stored");
    publisher
        .publish(&subject, headers(None, "fine"), "x", Some(&alice))
        .await
        .expect("stored");

    let consumer = pull_consumer(&setup.declared.stream, "flaky", |c| c.max_deliver = 3).await;
    let consumer = JetStreamConsumer::new(consumer, guard()).backoff(backoff());
    let stats = consumer.stats();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let record = calls.clone();
    let (stop, stopped) = shutdown();
    let run = tokio::spawn(async move {
        consumer
            .run(
                move |d: Received| {
                    let id = d
                        .headers()
                        .and_then(|h| h.get("x-id"))
                        .map(|v| v.as_str().to_owned());
                    record.lock().unwrap().push((id.clone(), d.delivered()));
                    async move {
                        match id.as_deref() {
                            Some("doomed") => Err("the database is on fire".to_owned()),
                            _ => Ok(()),
                        }
                    }
                },
                stopped,
            )
            .await
    });
    assert!(
        wait_until(WAIT, || stats.snapshot().dead_lettered == 1).await,
        "dead-lettered: {:?}",
        stats.snapshot()
    );
    stop.send(()).ok();
    run.await.unwrap().expect("the run ends cleanly");

    let doomed: Vec<_> = calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(id, _)| id.as_deref() == Some("doomed"))
        .map(|(_, delivered)| *delivered)
        .collect();
    assert_eq!(
        doomed,
        [Some(1), Some(2), Some(3)],
        "one call per delivery, up to max_deliver"
    );
    let report = stats.snapshot();
    assert_eq!(
        (report.accepted, report.handler_failures, report.rejected),
        (1, 3, 1)
    );
    let dead = stored(&setup.js, &setup.topology.dead_letter_stream_name()).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(header(&dead[0], REASON_KIND).as_deref(), Some("Handler"));
    assert!(header(&dead[0], REASON_MESSAGE).is_some_and(|m| m.contains("the database is on fire")));
    assert!(!has_header_any_casing(&dead[0], "authorization"));
    setup.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_publishing_downstream_propagates_the_token() {
    let Some(client) = support::connect().await else {
        return;
    };
    let setup = Setup::new(client.clone()).await;
    let (orders, invoices) = (setup.subject("orders"), setup.subject("invoices"));
    let publisher = JetStreamPublisher::new(setup.js.clone(), Propagator::default());
    let alice = user("alice", 300).await;
    let original = alice.token().to_owned();
    publisher
        .publish(&orders, headers(None, "1"), "order", Some(&alice))
        .await
        .expect("stored");

    // Hop 1: billing consumes orders and publishes an invoice, passing no identity.
    let billing = pull_consumer(&setup.declared.stream, "billing", |c| {
        c.filter_subject = orders.clone()
    })
    .await;
    let billing = JetStreamConsumer::new(billing, guard());
    let billing_stats = billing.stats();
    let downstream = publisher.clone();
    let invoices_subject = invoices.clone();
    let (stop_billing, billing_stopped) = shutdown();
    let billing_run = tokio::spawn(async move {
        billing
            .run(
                move |_: Received| {
                    let downstream = downstream.clone();
                    let subject = invoices_subject.clone();
                    async move {
                        downstream
                            .publish(&subject, Default::default(), "invoice", None)
                            .await
                            .map(|_| ())
                    }
                },
                billing_stopped,
            )
            .await
    });

    // Hop 2: shipping consumes invoices.
    let shipping = pull_consumer(&setup.declared.stream, "shipping", |c| {
        c.filter_subject = invoices.clone()
    })
    .await;
    let shipping = JetStreamConsumer::new(shipping, guard());
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let record = tokens.clone();
    let (stop_shipping, shipping_stopped) = shutdown();
    let shipping_run = tokio::spawn(async move {
        shipping
            .run(
                move |d: Received| {
                    record.lock().unwrap().push((
                        d.context().subject().map(str::to_owned),
                        d.context().token().to_owned(),
                    ));
                    std::future::ready(Ok::<(), String>(()))
                },
                shipping_stopped,
            )
            .await
    });

    assert!(
        wait_until(WAIT, || !tokens.lock().unwrap().is_empty()).await,
        "the invoice arrives"
    );
    stop_billing.send(()).ok();
    stop_shipping.send(()).ok();
    billing_run.await.unwrap().expect("billing ends cleanly");
    shipping_run.await.unwrap().expect("shipping ends cleanly");
    assert_eq!(billing_stats.snapshot().accepted, 1);
    let (sub, forwarded) = tokens.lock().unwrap()[0].clone();
    assert_eq!(sub.as_deref(), Some("alice"));
    assert!(forwarded == original, "the original token was forwarded");
    setup.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_where_no_stream_listens_is_an_error() {
    let Some(client) = support::connect().await else {
        return;
    };
    let publisher = JetStreamPublisher::new(jetstream::new(client), Propagator::default());
    let alice = user("alice", 300).await;
    let error = publisher
        .publish(&unique("nowhere"), Default::default(), "x", Some(&alice))
        .await
        .expect_err("no stream, no ack");
    assert_eq!(error.kind(), PublishErrorKind::Unroutable);
    let no_identity = publisher
        .publish(&unique("nowhere"), Default::default(), "x", None)
        .await;
    assert_eq!(
        no_identity.expect_err("no identity").kind(),
        PublishErrorKind::NoIdentity
    );
}

/// A backlog of messages, each with a token of its own, a forged and an
/// expired one among them, handled one at a time: the tokens of the messages
/// read ahead are verified meanwhile, and each message is still decided in its
/// turn and handled in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_distinct_tokens_is_decided_in_order() {
    let Some(client) = support::connect().await else {
        return;
    };
    let setup = Setup::new(client.clone()).await;
    let subject = setup.subject("ahead");
    const MESSAGES: usize = 60;
    let (forged_at, expired_at) = (17, 41);
    let mut expected = Vec::new();
    for i in 0..MESSAGES {
        let (id, user) = (i.to_string(), format!("user{i}"));
        let token = match i {
            _ if i == forged_at => forged(&user),
            _ if i == expired_at => token(&user, -60),
            _ => {
                expected.push((user.clone(), id.clone()));
                token(&user, 300)
            }
        };
        setup
            .js
            .publish_with_headers(subject.clone(), headers(Some(&token), &id), "x".into())
            .await
            .expect("sent")
            .await
            .expect("stored");
    }

    let consumer = pull_consumer(&setup.declared.stream, "ahead", |_| {}).await;
    let consumer = JetStreamConsumer::new(consumer, guard()).batch(20);
    let stats = consumer.stats();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let handler = move |delivery: Received| {
        let id = delivery
            .headers()
            .and_then(|h| h.get("x-id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let subject = delivery.context().subject().unwrap_or_default().to_owned();
        record.lock().unwrap().push((subject, id));
        async {
            // A little work per message, so that a backlog waits behind it.
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok::<(), String>(())
        }
    };
    let (stop, stopped) = shutdown();
    let run = tokio::spawn(async move { consumer.run(handler, stopped).await });
    assert!(
        wait_until(WAIT, || {
            let r = stats.snapshot();
            r.accepted == MESSAGES as u64 - 2 && r.dead_lettered == 2
        })
        .await,
        "{} handled and 2 dead-lettered: {:?}",
        MESSAGES - 2,
        stats.snapshot()
    );
    stop.send(()).ok();
    run.await.unwrap().expect("the run ends cleanly");

    assert_eq!(
        *seen.lock().unwrap(),
        expected,
        "every good message, in order, with its own identity"
    );
    let dead = stored(&setup.js, &setup.topology.dead_letter_stream_name()).await;
    let kinds: Vec<Option<String>> = dead.iter().map(|m| header(m, REASON_KIND)).collect();
    assert_eq!(
        kinds,
        [Some("BadSignature".to_owned()), Some("Expired".to_owned())]
    );
    setup.delete().await;
}

/// A stream whose wildcard captures `<subject>.dlq`: the consumer would
/// receive its own dead letters, forever. It refuses before deciding any
/// message, naming both subjects, and the message stays in the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_captures_its_own_dead_letters_is_refused_and_nothing_loops() {
    let Some(client) = support::connect().await else {
        return;
    };
    let js = jetstream::new(client);
    let prefix = unique("loop");
    let stream = stream_with_a_message_without_token(&js, &prefix, &format!("{prefix}.>")).await;

    let consumer = pull_consumer(&stream, "billing", |_| {}).await;
    let consumer = JetStreamConsumer::new(consumer, guard());
    let run = consumer.run(
        |_: Received| async { Ok::<(), String>(()) },
        tokio::time::sleep(WAIT),
    );
    let error = tokio::time::timeout(WAIT, run)
        .await
        .expect("refused at once, not after the shutdown")
        .expect_err("a configuration error");
    assert_eq!(error.kind(), jwt_relay_nats::ErrorKind::Configuration, "{error}");
    let text = error.to_string();
    assert!(
        text.contains(&format!("`{prefix}.>.dlq`")),
        "names the dead-letter subject: {text}"
    );
    assert!(
        text.contains(&format!("`{prefix}.>`")),
        "names the stream's subject: {text}"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    let kept = stored(&js, &prefix.to_uppercase()).await;
    assert_eq!(kept.len(), 1, "no copy was stored: nothing loops");
    let info = stream.consumer_info("billing").await.expect("consumer info");
    assert_eq!(
        info.ack_floor.stream_sequence, 0,
        "neither acknowledged nor terminated: kept for the next run: {info:?}"
    );
    js.delete_stream(prefix.to_uppercase()).await.expect("deleted");
}

/// A message that already carries jwt-relay's reason headers (a dead letter
/// that found its way back) is terminated and counted, never copied again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_that_comes_back_is_settled_not_copied_again() {
    let Some(client) = support::connect().await else {
        return;
    };
    let setup = Setup::new(client).await;
    let mut copy = headers(None, "returned");
    copy.insert(REASON_KIND, "Missing");
    setup
        .js
        .publish_with_headers(setup.subject("eu"), copy, "x".into())
        .await
        .expect("sent")
        .await
        .expect("stored");

    let consumer = pull_consumer(&setup.declared.stream, "billing", |_| {}).await;
    let consumer = JetStreamConsumer::new(consumer, guard()).double_ack();
    let stats = consumer.stats();
    let (stop, stopped) = shutdown();
    let run = tokio::spawn(async move { consumer.run(|_| async { Ok::<(), String>(()) }, stopped).await });
    assert!(
        wait_until(WAIT, || stats.snapshot().rejected == 1).await,
        "{:?}",
        stats.snapshot()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(()).ok();
    let report = run.await.unwrap().expect("the run ends cleanly");
    assert_eq!((report.rejected, report.dead_lettered), (1, 0));
    assert!(
        stored(&setup.js, &setup.topology.dead_letter_stream_name())
            .await
            .is_empty()
    );
    let info = setup
        .declared
        .stream
        .consumer_info("billing")
        .await
        .expect("info");
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0), "terminated");
    setup.delete().await;
}

/// No stream captures the dead-letter subject: the consumer stops with an
/// error naming it, the message is kept, and once a dead-letter stream
/// exists the next run dead-letters it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dead_letter_stream_stops_the_consumer_and_keeps_the_message() {
    let Some(client) = support::connect().await else {
        return;
    };
    let js = jetstream::new(client);
    let prefix = unique("nodlq");
    let topology = jwt_relay_nats::Topology::new(prefix.to_uppercase(), [format!("{prefix}.*")])
        .storage(jetstream::stream::StorageType::Memory);
    let stream = stream_with_a_message_without_token(&js, &prefix, &format!("{prefix}.*")).await;

    // A pull request of the stopped run may still hold the redelivery: short ack_wait.
    let consumer = pull_consumer(&stream, "billing", |c| c.ack_wait = Duration::from_secs(2)).await;
    let first = JetStreamConsumer::new(consumer.clone(), guard());
    let run = first.run(
        |_: Received| async { Ok::<(), String>(()) },
        tokio::time::sleep(WAIT),
    );
    let error = tokio::time::timeout(WAIT, run)
        .await
        .expect("stops at once, not after the shutdown")
        .expect_err("the dead-letter destination is missing");
    assert_eq!(error.kind(), jwt_relay_nats::ErrorKind::Broker, "{error}");
    assert!(
        error.to_string().contains(&format!("`{prefix}.eu.dlq`")),
        "{error}"
    );

    topology
        .declare(&js)
        .await
        .expect("the dead-letter stream is added");
    let consumer = JetStreamConsumer::new(consumer, guard()).double_ack();
    let stats = consumer.stats();
    let (stop, stopped) = shutdown();
    let run = tokio::spawn(async move { consumer.run(|_| async { Ok::<(), String>(()) }, stopped).await });
    assert!(
        wait_until(WAIT, || stats.snapshot().dead_lettered == 1).await,
        "the kept message is dead-lettered now: {:?}",
        stats.snapshot()
    );
    stop.send(()).ok();
    run.await.unwrap().expect("the run ends cleanly");
    let dead = stored(&js, &topology.dead_letter_stream_name()).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(header(&dead[0], REASON_KIND).as_deref(), Some("Missing"));
    topology.delete(&js).await.expect("deleted");
}

/// A stream `<PREFIX>` on `subjects` alone (no dead-letter stream), in
/// memory, holding one message without a token on `<prefix>.eu`.
async fn stream_with_a_message_without_token(
    js: &jetstream::Context,
    prefix: &str,
    subjects: &str,
) -> jetstream::stream::Stream {
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: prefix.to_uppercase(),
            subjects: vec![subjects.to_owned()],
            storage: jetstream::stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .expect("the stream is created");
    js.publish_with_headers(
        format!("{prefix}.eu"),
        headers(None, "no-token"),
        "7 bytes".into(),
    )
    .await
    .expect("sent")
    .await
    .expect("stored");
    stream
}
