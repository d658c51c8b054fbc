//! The metrics of a request/reply service against a real nats-server: requests arriving on
//! many subjects under one wildcard are one `destination` series, the subject the service
//! serves, so the label set stays as small as the configuration.
//!
//! One test in this binary: it owns the global metrics recorder.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;

use async_nats::service::ServiceExt as _;
use jwt_relay::observe::MESSAGES_TOTAL;
use jwt_relay_nats::{NatsService, ServiceError, ServiceRequest, async_nats, bytes::Bytes};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use support::{guard, headers, shutdown, token, unique};

async fn echo(request: ServiceRequest) -> Result<Bytes, ServiceError> {
    Ok(request.payload().clone())
}

/// Sends one request with alice's token to each of `subjects`, and one without a token to the
/// first: three answers and a refusal.
async fn requests(client: &async_nats::Client, subjects: &[String]) {
    for (i, subject) in subjects.iter().enumerate() {
        let with_token = headers(Some(&token("alice", 300)), &i.to_string());
        let reply = client
            .request_with_headers(subject.clone(), with_token, "hi".into())
            .await
            .expect("an answer");
        assert!(ServiceError::from_reply(&reply).is_none(), "{subject}: {reply:?}");
    }
    let reply = client
        .request_with_headers(subjects[0].clone(), headers(None, "none"), "hi".into())
        .await
        .expect("an answer");
    assert_eq!(ServiceError::from_reply(&reply).map(|e| e.code()), Some(401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_many_subjects_under_one_wildcard_are_one_destination_series() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let Some(client) = support::connect().await else {
        return;
    };
    let name = unique("svc_metrics");
    let concrete = |pattern: &str, regions: &[&str]| -> Vec<String> {
        regions.iter().map(|r| pattern.replace(['*', '>'], r)).collect()
    };

    // A NATS micro endpoint on `<name>.orders.*`.
    let endpoint_subject = format!("{name}.orders.*");
    let service = client.service_builder().start(&name, "1.0.0").await.unwrap();
    let endpoint = service.endpoint(&endpoint_subject).await.unwrap();
    let nats_service = NatsService::new(client.clone(), guard());
    let (stop_endpoint, stopped) = shutdown();
    let served = endpoint_subject.clone();
    let endpoint_run = tokio::spawn(async move {
        nats_service
            .serve_endpoint(&served, endpoint, echo, stopped)
            .await
    });

    // A plain subscription on `<name>.plain.>`.
    let plain_subject = format!("{name}.plain.>");
    let subscriber = client.subscribe(plain_subject.clone()).await.unwrap();
    let nats_service = NatsService::new(client.clone(), guard());
    let (stop_plain, stopped) = shutdown();
    let served = plain_subject.clone();
    let plain_run = tokio::spawn(async move {
        nats_service
            .serve_subscriber(&served, subscriber, echo, stopped)
            .await
    });
    client.flush().await.unwrap();

    requests(&client, &concrete(&endpoint_subject, &["eu", "us", "asia"])).await;
    requests(&client, &concrete(&plain_subject, &["eu", "us", "asia"])).await;
    stop_endpoint.send(()).ok();
    stop_plain.send(()).ok();
    endpoint_run.await.unwrap().expect("serving ends cleanly");
    plain_run.await.unwrap().expect("serving ends cleanly");
    service.stop().await.ok();

    // (destination, outcome) -> count, over every series of the messages counter.
    let mut series = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        if key.name() != MESSAGES_TOTAL {
            continue;
        }
        let label = |name: &str| {
            key.labels()
                .find(|l| l.key() == name)
                .map(|l| l.value().to_owned())
        };
        assert_eq!(label("broker").as_deref(), Some("nats"));
        let DebugValue::Counter(count) = value else {
            panic!("{MESSAGES_TOTAL} is a counter: {value:?}")
        };
        series.insert((label("destination").unwrap(), label("outcome").unwrap()), count);
    }
    let count = |destination: &str, outcome: &str, n: u64| ((destination.to_owned(), outcome.to_owned()), n);
    assert_eq!(
        series,
        BTreeMap::from([
            count(&endpoint_subject, "accepted", 3),
            count(&endpoint_subject, "rejected", 1),
            count(&plain_subject, "accepted", 3),
            count(&plain_subject, "rejected", 1),
        ])
    );
}
