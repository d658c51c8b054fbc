//! The token service goes down while messages with expired tokens arrive under `Exchange`. It
//! answers 503 first, then is too slow for the client's timeout. The messages go through the
//! retry queue with backoff, none is dead-lettered, all flow once the service is back, and the
//! calls it received stay bounded: failed exchanges are shared between the messages of one
//! token, not made once per message per try.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::Acceptance;
use jwt_relay::testing::{DevSts, DevStsConfig, Mode};
use jwt_relay::verify::now_unix;
use jwt_relay_rabbitmq::lapin::BasicProperties;
use jwt_relay_rabbitmq::{Consumer, EventOutcome};
use serde_json::json;

use crate::support::broker::{broker, eventually, headers, id_of, spawn};

const MESSAGES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_out_a_token_service_outage() {
    let Some(broker) = broker().await else { return };
    let sts = DevSts::start(DevStsConfig::default()).await.unwrap();
    let topology = broker.topology("token-outage");
    broker.declare(&topology).await;
    let publisher = broker.publisher().await;
    let now = now_unix();
    let expired = ["alice", "bob"].map(|sub| {
        sts.mint_claims(json!({
            "iss": sts.issuer(), "aud": "orders", "sub": sub, "iat": now - 600, "exp": now - 60,
        }))
    });
    let ids: BTreeSet<String> = (0..MESSAGES).map(|i| format!("{i:02}")).collect();
    for (n, id) in ids.iter().enumerate() {
        let properties = BasicProperties::default().with_headers(headers(id, &[]));
        publisher
            .publish_with_token("", topology.queue(), b"x", properties, Some(&expired[n % 2]))
            .await
            .unwrap();
    }

    sts.set_mode(Mode::Unavailable { retry_after: None });
    let guard = sts.exchanging_guard(sts.verifier("orders").unwrap()).unwrap();
    let retried = Arc::new(AtomicUsize::new(0));
    let counted = retried.clone();
    let consumer = Consumer::builder(broker.connector("token-outage"), topology.queue(), guard)
        .on_event(move |event| {
            if matches!(event.outcome, EventOutcome::Retry { .. }) {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let running = spawn(consumer, move |received| {
        let exchanged = received.context().acceptance() == Acceptance::Exchanged;
        record.lock().unwrap().push((id_of(&received), exchanged));
        async { Ok(()) }
    });

    eventually("retries are scheduled", Duration::from_secs(30), || {
        retried.load(Ordering::SeqCst) >= MESSAGES
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sts.set_mode(Mode::Slow(Duration::from_secs(2)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing handled while it is down"
    );
    let during = sts.stats().token_requests;

    sts.set_mode(Mode::Normal);
    eventually("every message is handled", Duration::from_secs(60), || {
        seen.lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect::<BTreeSet<_>>()
            == ids
    })
    .await;
    let report = running.stop().await.unwrap();
    assert!(seen.lock().unwrap().iter().all(|(_, exchanged)| *exchanged));
    assert_eq!(report.dead_lettered, 0, "{report:?}");
    let calls = sts.stats().token_requests;
    eprintln!(
        "token service calls: {during} during the outage, {calls} in all, for {} retries",
        retried.load(Ordering::SeqCst)
    );
    assert!(
        during < retried.load(Ordering::SeqCst) as u64,
        "fewer calls ({during}) than retries: tries of one token share a call"
    );
    broker.cleanup(&topology).await;
    sts.shutdown().await;
}
