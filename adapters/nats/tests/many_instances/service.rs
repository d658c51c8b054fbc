//! Request/reply, micro endpoints and plain queue subscriptions: each request is answered
//! exactly once, by one instance, a joining instance included.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::service::ServiceExt as _;
use futures_util::StreamExt as _;
use jwt_relay::Propagator;
use jwt_relay_nats::bytes::Bytes;
use jwt_relay_nats::{NatsService, Publisher, RunReport, ServiceError, ServiceRequest, async_nats};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::{self, guard, headers, nats_url, shutdown, unique};
use crate::{CONCURRENCY, IN_FLIGHT, INSTANCES, USERS, VALID, hostile, users, valid_id};

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
