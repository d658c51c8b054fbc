//! `jwt-relay kafka publish|consume`, run as a user runs them, against librdkafka's embedded
//! mock cluster (started in this test process, reached over TCP by the command) and against the
//! real broker at `KAFKA_BROKERS` (skipped loudly when it is unreachable, failed under
//! `CI=true`).

#![allow(clippy::unwrap_used)]

use std::path::Path;

use serde_json::Value;

#[allow(dead_code, unreachable_pub)]
#[path = "../../adapters/kafka/tests/kafka/support.rs"]
mod kafka;

mod support;

use kafka::{Cluster, header, unique};
use support::{ISS, keygen, mint, run};

const AUD: &str = "orders";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_mock_cluster() {
    publish_then_consume_prints_one_line_per_record(Cluster::mock()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_broker() {
    if let Some(cluster) = Cluster::broker() {
        publish_then_consume_prints_one_line_per_record(cluster).await;
    }
}

/// A key pair in `dir`, and tokens of `alice`: valid, then expired.
fn tokens(dir: &Path) -> (String, String, String) {
    let (key, jwks) = keygen(dir, "ES256", "kafka-1");
    let key = key.to_str().unwrap();
    let mint = |ttl: &str| mint(key, AUD, &["--ttl", ttl]);
    (jwks.to_str().unwrap().to_owned(), mint("5m"), mint("-10m"))
}

async fn publish_then_consume_prints_one_line_per_record(cluster: Cluster) {
    let dir = tempfile::tempdir().unwrap();
    let (jwks, valid, expired) = tokens(dir.path());
    let topic = unique("cli");
    cluster.topic(&topic, 1).await;
    let brokers = cluster.bootstrap();
    let published = run(
        &[
            "kafka",
            "publish",
            "--brokers",
            &brokers,
            "--topic",
            &topic,
            "--key",
            "order-42",
            "--header",
            "x-order=42",
            "--payload",
            "2 books",
        ],
        &format!("{valid}\n\n{expired}\nnot-a-token\n"),
    );
    assert_eq!(published.code, 0, "{}", published.stderr);
    let offsets: Vec<Value> = published
        .lines()
        .iter()
        .map(|l| {
            assert_eq!(
                (&l["published"], &l["topic"]),
                (&Value::Bool(true), &Value::from(topic.as_str()))
            );
            l["offset"].clone()
        })
        .collect();
    assert_eq!(offsets, [0, 1, 2].map(Value::from));

    let group = unique("cli-group");
    let consumed = run(
        &[
            "kafka",
            "consume",
            "--brokers",
            &brokers,
            "--topic",
            &topic,
            "--group",
            &group,
            "--count",
            "3",
            "--jwks",
            &jwks,
            "--issuer",
            ISS,
            "--audience",
            AUD,
        ],
        "",
    );
    assert_eq!(consumed.code, 1, "some were dead-lettered: {}", consumed.stderr);
    let summary: Vec<(Value, Value, Value, Value, Value)> = consumed
        .lines()
        .iter()
        .map(|l| {
            assert_eq!(
                (&l["topic"], &l["partition"]),
                (&Value::from(topic.as_str()), &Value::from(0))
            );
            (
                l["offset"].clone(),
                l["outcome"].clone(),
                l["sub"].clone(),
                l["kind"].clone(),
                l["class"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                0.into(),
                "accepted".into(),
                "alice".into(),
                Value::Null,
                Value::Null
            ),
            (
                1.into(),
                "dead-lettered".into(),
                Value::Null,
                "Expired".into(),
                "permanent".into()
            ),
            (
                2.into(),
                "dead-lettered".into(),
                Value::Null,
                "Malformed".into(),
                "permanent".into()
            ),
        ]
    );
    for output in [
        &published.stdout,
        &published.stderr,
        &consumed.stdout,
        &consumed.stderr,
    ] {
        assert!(
            !output.contains(&valid) && !output.contains(&expired),
            "no token printed"
        );
    }
    let copies = cluster.read(&format!("{topic}.dlq"), 2);
    assert_eq!(copies.len(), 2);
    assert!(
        copies
            .iter()
            .all(|c| header(c, "x-order").as_deref() == Some("42"))
    );
    assert!(copies.iter().all(|c| header(c, "authorization").is_none()));
    assert_eq!(
        cluster.committed(&group, &topic),
        3,
        "the group's offset moved past all three"
    );
}
