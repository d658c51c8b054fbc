//! The token service goes down while JetStream messages with expired tokens wait under
//! `Exchange`. It answers 503 first, then is too slow for the client's timeout. The messages are
//! redelivered with backoff (`nak` with a delay), none is dead-lettered, all flow once the
//! service is back, and the calls it received stay fewer than the retries: no retry storm.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use jwt_relay::Acceptance;
use jwt_relay::testing::{DevSts, DevStsConfig, Mode};
use jwt_relay::verify::now_unix;
use jwt_relay_nats::JetStreamConsumer;
use jwt_relay_nats::async_nats::HeaderMap;
use serde_json::json;
use support::js::{Seen, Setup, recorder};
use support::{pull_consumer, shutdown, wait_until};

const MESSAGES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_out_a_token_service_outage() {
    let Some(client) = support::connect().await else {
        return;
    };
    let sts = DevSts::start(DevStsConfig::default()).await.unwrap();
    let setup = Setup::new(client.clone()).await;
    let subject = setup.subject("eu");
    let now = now_unix();
    let expired = ["alice", "bob"].map(|sub| {
        sts.mint_claims(json!({
            "iss": sts.issuer(), "aud": "orders", "sub": sub, "iat": now - 600, "exp": now - 60,
        }))
    });
    let ids: BTreeSet<String> = (0..MESSAGES).map(|i| format!("{i:02}")).collect();
    for (n, id) in ids.iter().enumerate() {
        let mut headers = HeaderMap::new();
        headers.insert("x-id", id.as_str());
        headers.insert("Authorization", format!("Bearer {}", expired[n % 2]).as_str());
        setup
            .js
            .publish_with_headers(subject.clone(), headers, "x".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    sts.set_mode(Mode::Unavailable { retry_after: None });
    let guard = sts.exchanging_guard(sts.verifier("orders").unwrap()).unwrap();
    let consumer = pull_consumer(&setup.declared.stream, "shipping", |_| {}).await;
    let consumer = JetStreamConsumer::new(consumer, guard).concurrency(4);
    let stats = consumer.stats();
    let seen: Seen = Default::default();
    let (stop, stopped) = shutdown();
    let handler = recorder(&seen);
    let run = tokio::spawn(async move { consumer.run(handler, stopped).await });

    assert!(
        wait_until(Duration::from_secs(30), || stats.snapshot().retried >= 4).await,
        "retries are scheduled: {:?}",
        stats.snapshot()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sts.set_mode(Mode::Slow(Duration::from_secs(2)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing handled while it is down"
    );
    let during = sts.stats().token_requests;
    let retries = stats.snapshot().retried;

    sts.set_mode(Mode::Normal);
    let all_seen = || {
        seen.lock()
            .unwrap()
            .iter()
            .map(|(_, _, id)| id.clone())
            .collect::<BTreeSet<_>>()
            == ids
    };
    assert!(
        wait_until(Duration::from_secs(60), all_seen).await,
        "every message is handled: {:?}",
        stats.snapshot()
    );
    stop.send(()).ok();
    let report = run.await.unwrap().expect("the run ends cleanly");
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|(sub, acceptance, _)| { sub.is_some() && *acceptance == Acceptance::Exchanged })
    );
    assert_eq!(report.dead_lettered, 0, "{report:?}");
    let calls = sts.stats().token_requests;
    eprintln!("token service calls: {during} during the outage, {calls} in all, for {retries} retries");
    assert!(
        during < retries,
        "fewer calls ({during}) than retries ({retries})"
    );
    setup.delete().await;
    sts.shutdown().await;
}
