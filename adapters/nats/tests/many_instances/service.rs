//! Request/reply, micro endpoints and plain queue subscriptions: each request is answered
//! exactly once, by one instance, a joining instance included, and an instance leaving
//! gracefully answers what it had received before it goes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::service::ServiceExt as _;
use futures_util::StreamExt as _;
use jwt_relay::Propagator;
use jwt_relay::publish::PublishError;
use jwt_relay_nats::bytes::Bytes;
use jwt_relay_nats::{NatsService, Publisher, RunReport, ServiceError, ServiceRequest, async_nats};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::support::{self, guard, headers, nats_url, shutdown, unique, wait_until};
use crate::{CONCURRENCY, Fence, IN_FLIGHT, INSTANCES, USERS, VALID, WAIT, hostile, users, valid_id};

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

/// A request's id, and its reply.
type Reply = (String, Result<async_nats::Message, PublishError>);

struct ServiceInstance {
    /// The instance's own client (kept while the instance lives).
    client: async_nats::Client,
    stop: oneshot::Sender<()>,
    run: JoinHandle<jwt_relay_nats::Result<RunReport>>,
    service: Option<async_nats::service::Service>,
}

/// How an instance's service handler works.
#[derive(Debug, Clone, Default)]
struct Work {
    /// How long each request takes.
    takes: Duration,
    /// While it says `false`, the handler waits before it works.
    gate: Option<watch::Receiver<bool>>,
}

/// An instance of the service `name`, serving `subject`, whose handler answers with the
/// request's id, after it did its `work`.
async fn service_instance(
    serve: Serve,
    name: &str,
    subject: &str,
    instance: usize,
    calls: &ServiceCalls,
    work: Work,
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
        let Work { takes, gate } = work.clone();
        async move {
            if let Some(mut gate) = gate {
                gate.wait_for(|open| *open).await.ok();
            }
            if !takes.is_zero() {
                tokio::time::sleep(takes).await;
            }
            Ok::<Bytes, ServiceError>(Bytes::from(id))
        }
    };
    let served = subject.to_owned();
    let client_kept = client.clone();
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
    ServiceInstance {
        client: client_kept,
        stop,
        run,
        service,
    }
}

/// Requests the valid id `n` as one of the `users`; waits 10 s at most for the reply.
async fn request(publisher: &Publisher, subject: &str, users: &[jwt_relay::AuthContext], n: usize) -> Reply {
    let id = valid_id(n);
    let reply = publisher
        .request_with_timeout(
            subject,
            headers(None, &id),
            id.clone(),
            Some(&users[n % USERS]),
            Duration::from_secs(10),
        )
        .await;
    (id, reply)
}

/// Sends the `hostile` requests, checks that each is refused with a 401, and counts them.
async fn refuse(client: &async_nats::Client, subject: &str, hostile: &[(String, String)]) -> usize {
    let mut refused = 0;
    for (id, token) in hostile {
        let reply = client
            .request_with_headers(subject.to_owned(), headers(Some(token), id), "x".into())
            .await
            .expect("an answer");
        let error = ServiceError::from_reply(&reply).expect("an error reply");
        assert_eq!(error.code(), 401, "{id}: refused");
        refused += 1;
    }
    refused
}

/// How many `replies` are the handler's answer to their own request (checked), and the
/// requests left unanswered.
fn tally(replies: &[Reply]) -> (usize, Vec<String>) {
    let mut answered = 0;
    let mut unanswered = Vec::new();
    for (id, reply) in replies {
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
    (answered, unanswered)
}

/// The instances each id was handled by.
fn per_id(calls: &[(usize, String)]) -> BTreeMap<&String, Vec<usize>> {
    let mut per_id: BTreeMap<&String, Vec<usize>> = BTreeMap::new();
    for (instance, id) in calls {
        per_id.entry(id).or_default().push(*instance);
    }
    per_id
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
        instances.push(service_instance(serve, &name, &subject, instance, &calls, Work::default()).await);
    }
    let publisher = Publisher::new(client.clone(), Propagator::default());
    let users = users().await;
    let request = async |n: usize| request(&publisher, &subject, &users, n).await;
    let mut replies = Vec::new();
    let half = VALID / 2;
    replies.extend(
        futures_util::stream::iter(0..half)
            .map(request)
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await,
    );
    instances.push(service_instance(serve, &name, &subject, INSTANCES, &calls, Work::default()).await);
    replies.extend(
        futures_util::stream::iter(half..VALID)
            .map(request)
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await,
    );
    let hostile = hostile();
    let refused = refuse(&client, &subject, &hostile).await;
    let mut reports = Vec::new();
    for instance in instances {
        instance.stop.send(()).ok();
        reports.push(instance.run.await.unwrap().expect("serving ends cleanly"));
        if let Some(service) = instance.service {
            service.stop().await.ok();
        }
    }

    let (answered, unanswered) = tally(&replies);
    assert!(unanswered.is_empty(), "every request answered: {unanswered:?}");
    let calls = calls.lock().unwrap().clone();
    let per_id = per_id(&calls);
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

/// The instance that leaves gracefully.
const LEAVER: usize = 0;

/// Three instances of one service in a queue group, each request taking a millisecond, so that
/// requests wait in the instances' clients. Half-way, one is told to stop with requests waiting
/// in its client: it answers them before its run returns, and the others answer the rest. Every
/// request gets one answer.
///
/// While it leaves, its handlers hold (so that requests wait in its client) and no request is
/// sent; [`Fence`] makes sure that the requests sent before reached its client first, and that
/// its unsubscribe reached the server before requests are sent again.
async fn a_service_instance_leaving_gracefully_answers_what_it_received(serve: Serve, transport: &str) {
    let Some(client) = support::connect().await else {
        return;
    };
    let started = Instant::now();
    let name = unique("leave_svc");
    let subject = format!("{name}.hello");
    let calls = ServiceCalls::default();
    let takes = Duration::from_millis(1);
    let (gate, gated) = watch::channel(true);
    let mut instances = Vec::new();
    for instance in 0..INSTANCES {
        let gate = (instance == LEAVER).then(|| gated.clone());
        let work = Work { takes, gate };
        instances.push(service_instance(serve, &name, &subject, instance, &calls, work).await);
    }
    let leaver = instances.remove(LEAVER);
    let fence = Fence::new(&leaver.client).await;
    let publisher = Publisher::new(client.clone(), Propagator::default());
    let users = users().await;
    let (sending, may_send) = watch::channel(true);
    let requests = futures_util::stream::iter(0..VALID)
        .map(async |n: usize| {
            may_send.clone().wait_for(|go| *go).await.ok();
            request(&publisher, &subject, &users, n).await
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>();
    let by_leaver = || calls.lock().unwrap().iter().filter(|(i, _)| *i == LEAVER).count();
    let leave = async {
        assert!(
            wait_until(WAIT, || calls.lock().unwrap().len() >= VALID / 2).await,
            "half of the requests handled"
        );
        // Its handlers hold: the requests sent to it meanwhile wait in its client.
        gate.send_replace(false);
        tokio::time::sleep(Duration::from_millis(200)).await;
        sending.send_replace(false);
        fence.pass(&client).await;
        let (told_at, handled_when_told) = (Instant::now(), by_leaver());
        leaver.stop.send(()).ok();
        gate.send_replace(true);
        let report = crate::stopped(leaver.run).await;
        let left_after = told_at.elapsed();
        if let Some(service) = leaver.service {
            service.stop().await.ok();
        }
        // Its unsubscribe went before the fence's answer: the server took it.
        fence.pass(&client).await;
        sending.send_replace(true);
        (handled_when_told, left_after, report)
    };
    let (replies, (handled_when_told, left_after, leaver_report)) = tokio::join!(requests, leave);
    let hostile = hostile();
    let refused = refuse(&client, &subject, &hostile).await;
    let mut reports = vec![leaver_report];
    for instance in instances {
        instance.stop.send(()).ok();
        reports.push(crate::stopped(instance.run).await);
        if let Some(service) = instance.service {
            service.stop().await.ok();
        }
    }

    let (answered, unanswered) = tally(&replies);
    let calls = calls.lock().unwrap().clone();
    let per_id = per_id(&calls);
    let duplicated: Vec<_> = per_id.iter().filter(|(_, i)| i.len() > 1).collect();
    eprintln!(
        "many-instances {transport} (graceful leave): published={} handled={answered} dead_lettered={refused} \
         duplicated={} lost={}",
        VALID + hostile.len(),
        duplicated.len(),
        unanswered.len()
    );
    let per_instance: Vec<usize> = (0..INSTANCES)
        .map(|i| calls.iter().filter(|(c, _)| *c == i).count())
        .collect();
    let drained = per_instance[LEAVER] - handled_when_told;
    eprintln!(
        "  ({serve:?}) instance {LEAVER} told to stop with {handled_when_told} requests taken by it: \
         it answered {drained} more (what its client had received) and returned {left_after:.1?} later; \
         per instance {per_instance:?}; unanswered {:?}; {:.1?} in all",
        unanswered.iter().take(10).collect::<Vec<_>>(),
        started.elapsed()
    );
    assert!(unanswered.is_empty(), "every request answered: {unanswered:?}");
    assert!(
        duplicated.is_empty(),
        "each request handled by one instance: {duplicated:?}"
    );
    assert_eq!(
        per_id.len(),
        VALID,
        "every valid request reached a handler, no hostile one did"
    );
    assert!(
        drained > 0,
        "the leaver answered what its client had received after it was told to stop"
    );
    assert_eq!(
        reports[0].accepted, per_instance[LEAVER] as u64,
        "the leaver's report counts what it answered"
    );
    let rejected: u64 = reports.iter().map(|r| r.rejected).sum();
    assert_eq!(rejected, hostile.len() as u64, "the refusals were counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_endpoint_leaving_gracefully_answers_what_it_received() {
    a_service_instance_leaving_gracefully_answers_what_it_received(Serve::Endpoint, "nats-service-endpoint")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_queue_subscriber_leaving_gracefully_answers_what_it_received() {
    a_service_instance_leaving_gracefully_answers_what_it_received(
        Serve::Subscriber,
        "nats-service-subscriber",
    )
    .await;
}
