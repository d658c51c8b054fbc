//! `jwt-relay rabbitmq publish|consume`, run as a user runs them, against the real RabbitMQ
//! (`AMQP_ADDR`, default `amqp://guest:guest@127.0.0.1:5672/%2f`; skipped loudly when it is
//! unreachable, failed under `CI=true`).

#![allow(clippy::unwrap_used)]

use std::path::Path;

use jwt_relay_rabbitmq::Topology;
use serde_json::Value;

#[allow(dead_code, unreachable_pub)]
#[path = "../../adapters/rabbitmq/tests/broker/support/broker.rs"]
mod broker;

use broker::{broker, unique};

mod support;

use support::{ISS, keygen, mint, run};

const AUD: &str = "invoices";

/// A key pair in `dir`, and tokens of `alice`: valid, then expired.
fn tokens(dir: &Path) -> (String, String, String) {
    let (key, jwks) = keygen(dir, "ES256", "rmq-1");
    let key = key.to_str().unwrap();
    let mint = |ttl: &str| mint(key, AUD, &["--ttl", ttl]);
    (jwks.to_str().unwrap().to_owned(), mint("5m"), mint("-10m"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_then_consume_prints_one_line_per_message() {
    let Some(broker) = broker().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (jwks, valid, expired) = tokens(dir.path());
    let queue = unique("cli");
    let addr = broker.addr.as_str();
    let guard_flags = ["--jwks", jwks.as_str(), "--issuer", ISS, "--audience", AUD];
    let consume = |extra: &[&str]| {
        let mut args = vec!["rabbitmq", "consume", "--url", addr, "--queue", queue.as_str()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&guard_flags);
        run(&args, "")
    };

    // Declare the queue, its dead-letter queue and its retry queue; take nothing.
    let declared = consume(&["--declare", "--count", "0"]);
    assert_eq!(declared.code, 0, "{}", declared.stderr);
    assert_eq!(declared.stdout, "");

    let published = run(
        &[
            "rabbitmq",
            "publish",
            "--url",
            addr,
            "--routing-key",
            &queue,
            "--header",
            "x-order=42",
            "--payload",
            "2 books",
        ],
        &format!("{valid}\n{expired}\nnot-a-token\n"),
    );
    assert_eq!(published.code, 0, "{}", published.stderr);
    let lines = published.lines();
    assert_eq!(lines.len(), 3);
    assert!(
        lines
            .iter()
            .all(|l| l["published"] == true && l["routing_key"] == queue.as_str())
    );

    let consumed = consume(&["--count", "3", "--prefetch", "1"]);
    assert_eq!(consumed.code, 1, "some were dead-lettered: {}", consumed.stderr);
    let lines = consumed.lines();
    let summary: Vec<(String, Value, Value, Value)> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["queue"], queue.as_str());
            assert!(l["delivery_tag"].as_u64().is_some());
            (
                l["outcome"].as_str().unwrap().to_owned(),
                l["sub"].clone(),
                l["kind"].clone(),
                l["class"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("accepted".to_owned(), "alice".into(), Value::Null, Value::Null),
            (
                "dead-lettered".to_owned(),
                Value::Null,
                "Expired".into(),
                "permanent".into()
            ),
            (
                "dead-lettered".to_owned(),
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
    let dead = broker.drain(&format!("{queue}.dlq")).await;
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|m| m.header("x-order").as_deref() == Some("42")));
    assert!(dead.iter().all(|m| !m.has_header_any_case("authorization")));

    let nowhere = run(
        &[
            "rabbitmq",
            "publish",
            "--url",
            addr,
            "--routing-key",
            &unique("cli-nowhere"),
            "--payload",
            "x",
        ],
        &format!("{valid}\n"),
    );
    assert_eq!(nowhere.code, 1);
    assert_eq!(nowhere.lines()[0]["kind"], "Unroutable");

    broker.cleanup(&Topology::new(queue.as_str())).await;
}
