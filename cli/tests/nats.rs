//! `jwt-relay nats publish|consume|serve-echo`, run as a user runs them, against the real
//! nats-server with JetStream (`NATS_URL`, default `nats://127.0.0.1:4222`; skipped loudly when
//! it is unreachable, failed under `CI=true`).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use jwt_relay_nats::async_nats::jetstream::{self, stream::StorageType};
use jwt_relay_nats::{ServiceError, Topology, async_nats};
use serde_json::Value;

mod support;

use support::{ISS, Run, finish, keygen, mint};

const AUD: &str = "shipments";

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A client of the test server, or `None` (said on stderr) when it is unreachable, except
/// under `CI=true`, where that fails the test.
async fn connect() -> Option<async_nats::Client> {
    let url = nats_url();
    let connecting = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(url.as_str());
    match tokio::time::timeout(Duration::from_secs(3), connecting).await {
        Ok(Ok(client)) => Some(client),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and the NATS server at {url} is unreachable")
        }
        _ => {
            eprintln!("SKIPPED: no NATS server at {url}");
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// The binary, started against the test server.
fn spawn(args: &[&str]) -> Child {
    support::spawn(args, &[("NATS_URL", &nats_url())])
}

fn run(args: &[&str], stdin: &str) -> Run {
    finish(spawn(args), stdin)
}

/// A key pair in `dir`, and tokens of `alice`: valid, then for another audience.
fn tokens(dir: &Path) -> (String, String, String) {
    let (key, jwks) = keygen(dir, "ES256", "nats-1");
    let key = key.to_str().unwrap();
    (
        jwks.to_str().unwrap().to_owned(),
        mint(key, AUD, &[]),
        mint(key, "billing", &[]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_publish_then_consume_prints_one_line_per_message() {
    let Some(client) = connect().await else { return };
    let js = jetstream::new(client);
    let prefix = unique("clinats");
    let stream = prefix.to_uppercase();
    let topology = Topology::new(&stream, [format!("{prefix}.*")]).storage(StorageType::Memory);
    topology.declare(&js).await.unwrap();
    let subject = format!("{prefix}.parcels");
    let dir = tempfile::tempdir().unwrap();
    let (jwks, valid, other_audience) = tokens(dir.path());

    let published = run(
        &[
            "nats",
            "publish",
            "--subject",
            &subject,
            "--jetstream",
            "--header",
            "x-id=7",
            "--payload",
            "a parcel",
        ],
        &format!("{valid}\n{other_audience}\n"),
    );
    assert_eq!(published.code, 0, "{}", published.stderr);
    let lines = published.lines();
    assert_eq!(lines.len(), 2);
    assert!(
        lines
            .iter()
            .all(|l| l["published"] == true && l["stream"] == stream.as_str())
    );

    let consumed = run(
        &[
            "nats",
            "consume",
            "--stream",
            &stream,
            "--consumer",
            "cli",
            "--create-consumer",
            "--count",
            "2",
            "--jwks",
            &jwks,
            "--issuer",
            ISS,
            "--audience",
            AUD,
        ],
        "",
    );
    assert_eq!(
        consumed.code, 1,
        "a message was dead-lettered: {}",
        consumed.stderr
    );
    let lines = consumed.lines();
    assert_eq!(lines.len(), 2, "{}", consumed.stdout);
    assert_eq!(lines[0]["outcome"], "accepted");
    assert_eq!(lines[0]["sub"], "alice");
    assert_eq!(lines[0]["subject"], subject.as_str());
    assert_eq!(lines[0]["stream_seq"], 1);
    assert_eq!(lines[1]["outcome"], "dead-lettered");
    assert_eq!(lines[1]["kind"], "InvalidAudience");
    assert_eq!(lines[1]["class"], "permanent");
    assert!(!consumed.stdout.contains(&valid) && !consumed.stdout.contains(&other_audience));
    let dead = js.get_stream(topology.dead_letter_stream_name()).await.unwrap();
    assert_eq!(dead.get_info().await.unwrap().state.messages, 1);
    topology.delete(&js).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_echo_answers_good_tokens_and_refuses_bad_ones() {
    let Some(client) = connect().await else { return };
    let subject = unique("clinats.echo");
    let dir = tempfile::tempdir().unwrap();
    let (jwks, valid, _) = tokens(dir.path());
    let server = spawn(&[
        "nats",
        "serve-echo",
        "--subject",
        &subject,
        "--count",
        "2",
        "--jwks",
        &jwks,
        "--issuer",
        ISS,
        "--audience",
        AUD,
    ]);
    // Wait for the endpoint to subscribe.
    let mut answered = None;
    for _ in 0..100 {
        match client.request(subject.clone(), "ping".into()).await {
            Ok(reply) => {
                answered = Some(reply);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let refused = ServiceError::from_reply(&answered.expect("the echo service answers")).unwrap();
    assert_eq!((refused.code(), refused.status()), (401, "Unauthorized: Missing"));

    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {valid}").as_str());
    let reply = client
        .request_with_headers(subject.clone(), headers, "hello".into())
        .await
        .unwrap();
    assert!(ServiceError::from_reply(&reply).is_none());
    assert_eq!(reply.payload.as_ref(), b"hello");

    let out = finish(server, "");
    assert_eq!(out.code, 1, "one request was refused: {}", out.stderr);
    let lines = out.lines();
    assert_eq!(lines[0]["outcome"], "rejected");
    assert_eq!(lines[0]["kind"], "Missing");
    assert_eq!(lines[1]["outcome"], "accepted");
    assert_eq!(lines[1]["sub"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_consume_prints_the_verified_subject() {
    let Some(client) = connect().await else { return };
    let subject = unique("clinats.core");
    let dir = tempfile::tempdir().unwrap();
    let (jwks, valid, _) = tokens(dir.path());
    let mut consumer = spawn(&[
        "nats",
        "consume",
        "--subject",
        &subject,
        "--count",
        "1",
        "--jwks",
        &jwks,
        "--issuer",
        ISS,
        "--audience",
        AUD,
    ]);
    // Core NATS keeps nothing: publish until the subscriber has seen one.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {valid}").as_str());
    for _ in 0..100 {
        if consumer.try_wait().unwrap().is_some() {
            break;
        }
        client
            .publish_with_headers(subject.clone(), headers.clone(), "x".into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = finish(consumer, "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines = out.lines();
    assert_eq!(lines[0]["outcome"], "accepted");
    assert_eq!(lines[0]["sub"], "alice");
    assert_eq!(lines[0]["subject"], subject.as_str());
    assert_eq!(lines[0]["stream_seq"], Value::Null);
}
