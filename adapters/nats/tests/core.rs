//! Core NATS and request/reply against a real nats-server: what a user would
//! check is the verified subject in the handler, each message handled once
//! in a queue group, every rejection reported (and copied without the token
//! to the dead-letter subject), and refused requests answered at once.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::service::ServiceExt as _;
use futures_util::StreamExt as _;
use jwt_relay::consume::{REASON_CLASS, REASON_KIND};
use jwt_relay::{ErrorKind, Propagator, scope};
use jwt_relay_nats::{
    Consumer, EventOutcome, NatsService, ORIGINAL_SUBJECT, Publisher, Received, ServiceError, ServiceRequest,
    async_nats, bytes::Bytes,
};
use support::{forged, guard, headers, shutdown, token, unique, user, wait_until};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_the_handler_sees_the_verified_subject() {
    let Some(client) = support::connect().await else {
        return;
    };
    let subject = unique("core.orders");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscription = Consumer::new(client.clone(), guard())
        .subscribe(&subject)
        .await
        .expect("subscribed");
    let (stop, stopped) = shutdown();
    let record = seen.clone();
    let run = tokio::spawn(subscription.run(
        move |d: Received| {
            let record = record.clone();
            async move {
                let ambient = jwt_relay::current().and_then(|c| c.subject().map(str::to_owned));
                record.lock().unwrap().push((
                    d.context().subject().map(str::to_owned),
                    ambient,
                    d.subject().to_owned(),
                    d.payload().clone(),
                ));
                Ok::<(), String>(())
            }
        },
        stopped,
    ));

    let publisher = Publisher::new(client.clone(), Propagator::default());
    let alice = user("alice", 300).await;
    scope(
        alice,
        publisher.publish(&subject, Default::default(), "2 books", None),
    )
    .await
    .expect("published with the ambient identity");
    let nobody = publisher.publish(&subject, Default::default(), "x", None).await;
    assert_eq!(
        nobody.expect_err("no identity").kind(),
        jwt_relay::publish::PublishErrorKind::NoIdentity
    );

    assert!(
        wait_until(WAIT, || !seen.lock().unwrap().is_empty()).await,
        "the message arrives"
    );
    stop.send(()).ok();
    let report = run.await.unwrap().expect("the run ends cleanly");
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[0],
        (
            Some("alice".to_owned()),
            Some("alice".to_owned()),
            subject.clone(),
            Bytes::from("2 books")
        )
    );
    assert_eq!((report.accepted, report.rejected), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_group_each_message_is_handled_once() {
    let Some(client) = support::connect().await else {
        return;
    };
    let subject = unique("core.queue");
    let group = unique("workers");
    let seen = Arc::new(Mutex::new(Vec::<(usize, String)>::new()));
    let mut runs = Vec::new();
    let mut stops = Vec::new();
    for member in 0..2 {
        let subscription = Consumer::new(client.clone(), guard())
            .queue_group(&group)
            .subscribe(&subject)
            .await
            .expect("subscribed");
        let (stop, stopped) = shutdown();
        let record = seen.clone();
        runs.push(tokio::spawn(subscription.run(
            move |d: Received| {
                let record = record.clone();
                async move {
                    let id = String::from_utf8_lossy(d.payload()).into_owned();
                    record.lock().unwrap().push((member, id));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Ok::<(), String>(())
                }
            },
            stopped,
        )));
        stops.push(stop);
    }
    let publisher = Publisher::new(client.clone(), Propagator::default());
    let alice = user("alice", 300).await;
    for i in 0..40 {
        publisher
            .publish(&subject, Default::default(), format!("{i}"), Some(&alice))
            .await
            .expect("published");
    }
    assert!(
        wait_until(WAIT, || seen.lock().unwrap().len() >= 40).await,
        "all 40 arrive"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    for stop in stops {
        stop.send(()).ok();
    }
    for run in runs {
        run.await.unwrap().expect("the run ends cleanly");
    }
    let seen = seen.lock().unwrap();
    let mut ids: Vec<_> = seen.iter().map(|(_, id)| id.parse::<u32>().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..40).collect::<Vec<_>>(),
        "each message exactly once across the group"
    );
    assert!(
        seen.iter().any(|(m, _)| *m == 0) && seen.iter().any(|(m, _)| *m == 1),
        "both members worked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_messages_are_reported_and_dead_lettered_without_the_token() {
    let Some(client) = support::connect().await else {
        return;
    };
    let subject = unique("core.reject");
    let dead = format!("{subject}.dlq");
    let mut dead_letters = client.subscribe(dead.clone()).await.expect("dlq subscription");
    let events = Arc::new(Mutex::new(Vec::new()));
    let record = events.clone();
    let subscription = Consumer::new(client.clone(), guard())
        .dead_letter(jwt_relay_nats::DeadLetter::subject(&dead))
        .on_event(move |e| {
            if let EventOutcome::Rejected { reason, dead_letter } = &e.outcome {
                record
                    .lock()
                    .unwrap()
                    .push((reason.kind(), dead_letter.map(str::to_owned)));
            }
        })
        .subscribe(&subject)
        .await
        .expect("subscribed");
    let stats = subscription.stats();
    let (stop, stopped) = shutdown();
    let handled = Arc::new(Mutex::new(0));
    let count = handled.clone();
    let run = tokio::spawn(subscription.run(
        move |_: Received| {
            *count.lock().unwrap() += 1;
            async { Ok::<(), String>(()) }
        },
        stopped,
    ));

    let forgery = forged("mallory");
    client
        .publish_with_headers(subject.clone(), headers(Some(&forgery), "forged"), "f".into())
        .await
        .unwrap();
    client
        .publish_with_headers(subject.clone(), headers(None, "missing"), "m".into())
        .await
        .unwrap();
    let mut twice = headers(Some(&token("alice", 300)), "twice");
    twice.insert(
        "authorization",
        format!("Bearer {}", token("alice", 300)).as_str(),
    );
    client
        .publish_with_headers(subject.clone(), twice, "t".into())
        .await
        .unwrap();

    let mut copies = Vec::new();
    while copies.len() < 3 {
        let copy = tokio::time::timeout(WAIT, dead_letters.next())
            .await
            .expect("a dead-lettered copy arrives")
            .expect("subscription open");
        copies.push(copy);
    }
    stop.send(()).ok();
    run.await.unwrap().expect("the run ends cleanly");

    let mut kinds: Vec<_> = events.lock().unwrap().iter().map(|(k, _)| *k).collect();
    kinds.sort_by_key(|k| k.as_str());
    assert_eq!(
        kinds,
        [
            ErrorKind::BadSignature,
            ErrorKind::DuplicateHeader,
            ErrorKind::Missing
        ]
    );
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .all(|(_, d)| d.as_deref() == Some(dead.as_str()))
    );
    assert_eq!(
        *handled.lock().unwrap(),
        0,
        "no rejected message reaches the handler"
    );
    let report = stats.snapshot();
    assert_eq!(
        (report.rejected, report.dead_lettered, report.accepted),
        (3, 3, 0)
    );
    for copy in &copies {
        let h = copy.headers.as_ref().expect("headers");
        assert!(
            !h.iter()
                .any(|(n, _)| AsRef::<str>::as_ref(n).eq_ignore_ascii_case("authorization")),
            "no token in a dead-lettered copy"
        );
        assert_eq!(h.get(REASON_CLASS).unwrap().as_str(), "permanent");
        assert!(h.get(REASON_KIND).is_some());
        assert_eq!(h.get(ORIGINAL_SUBJECT).unwrap().as_str(), subject);
        assert!(h.get("x-id").is_some(), "other headers kept");
        assert!(!String::from_utf8_lossy(&copy.payload).contains(&forgery));
    }
}

/// The service handler of the request tests: hello to anyone but mallory.
async fn hello(request: ServiceRequest) -> Result<Bytes, ServiceError> {
    match request.context().subject() {
        Some("mallory") => Err(ServiceError::forbidden("mallory may not say hello")),
        Some(sub) => Ok(Bytes::from(format!(
            "hello {sub}: {}",
            String::from_utf8_lossy(request.payload())
        ))),
        None => Err(ServiceError::forbidden("no subject")),
    }
}

/// A bad token gets a 401 at once, a good one the handler's reply, and a
/// valid token the handler refuses a 403.
async fn check_requests(publisher: &Publisher, subject: &str) {
    let started = Instant::now();
    let reply = publisher
        .client()
        .request_with_headers(
            subject.to_owned(),
            headers(Some(&forged("alice")), "1"),
            "hi".into(),
        )
        .await
        .expect("an answer, not a timeout");
    assert!(started.elapsed() < Duration::from_secs(2), "answered at once");
    let error = ServiceError::from_reply(&reply).expect("an error reply");
    assert_eq!(
        (error.code(), error.status()),
        (401, "Unauthorized: BadSignature")
    );

    let reply = publisher
        .client()
        .request_with_headers(subject.to_owned(), headers(None, "2"), "hi".into())
        .await
        .expect("an answer");
    assert_eq!(ServiceError::from_reply(&reply).map(|e| e.code()), Some(401));

    let alice = user("alice", 300).await;
    let reply = scope(alice, publisher.request(subject, Default::default(), "hi", None))
        .await
        .expect("the request propagates the current identity");
    assert!(ServiceError::from_reply(&reply).is_none());
    assert_eq!(reply.payload, Bytes::from("hello alice: hi"));

    let mallory = user("mallory", 300).await;
    let reply = publisher
        .request(subject, Default::default(), "hi", Some(&mallory))
        .await
        .expect("an answer");
    assert_eq!(ServiceError::from_reply(&reply).map(|e| e.code()), Some(403));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn micro_service_refuses_bad_tokens_at_once_and_answers_good_ones() {
    let Some(client) = support::connect().await else {
        return;
    };
    let name = unique("svc");
    let subject = format!("{name}.hello");
    let service = client
        .service_builder()
        .start(&name, "1.0.0")
        .await
        .expect("the micro service starts");
    let endpoint = service.endpoint(&subject).await.expect("the endpoint");
    let nats_service = NatsService::new(client.clone(), guard());
    let stats = nats_service.stats();
    let (stop, stopped) = shutdown();
    let served = subject.clone();
    let run = tokio::spawn(async move {
        nats_service
            .serve_endpoint(&served, endpoint, hello, stopped)
            .await
    });

    check_requests(&Publisher::new(client.clone(), Propagator::default()), &subject).await;
    stop.send(()).ok();
    run.await.unwrap().expect("serving ends cleanly");
    let report = stats.snapshot();
    assert_eq!((report.accepted, report.rejected), (2, 2));
    service.stop().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_subscription_service_refuses_bad_tokens_at_once() {
    let Some(client) = support::connect().await else {
        return;
    };
    let subject = unique("plain.hello");
    let subscriber = client.subscribe(subject.clone()).await.expect("subscribed");
    let nats_service = NatsService::new(client.clone(), guard());
    let (stop, stopped) = shutdown();
    let served = subject.clone();
    let run = tokio::spawn(async move {
        nats_service
            .serve_subscriber(&served, subscriber, hello, stopped)
            .await
    });

    check_requests(&Publisher::new(client.clone(), Propagator::default()), &subject).await;
    let expired = client
        .request_with_headers(
            subject.clone(),
            headers(Some(&token("alice", -60)), "3"),
            "hi".into(),
        )
        .await
        .expect("an answer");
    let error = ServiceError::from_reply(&expired).expect("an error reply");
    assert_eq!((error.code(), error.status()), (401, "Unauthorized: Expired"));
    stop.send(()).ok();
    run.await.unwrap().expect("serving ends cleanly");
}
