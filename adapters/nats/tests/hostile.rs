//! Every hostile class of `jwt_relay::testing::hostile`, published raw to JetStream between
//! good messages: each lands in the dead-letter stream with its kind and without a token
//! header, the consumer keeps going, and every good message is handled.
//!
//! Two classes cannot travel through NATS: a binary header value (NATS headers are text, and
//! async-nats takes header values as `&str`), and the 1 MiB header (over the server's
//! `max_payload`, which counts headers: the publish fails, and no consumer sees it).

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jwt_relay::Guard;
use jwt_relay::consume::REASON_KIND;
use jwt_relay::testing::{DevSts, DevStsConfig, hostile};
use jwt_relay_nats::JetStreamConsumer;
use jwt_relay_nats::async_nats::HeaderMap;
use support::js::{Seen, Setup, recorder};
use support::{has_header_any_casing, header, pull_consumer, shutdown, stored, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_class_is_dead_lettered_and_good_messages_flow() {
    let Some(client) = support::connect().await else {
        return;
    };
    let sts = DevSts::start(DevStsConfig::default()).await.unwrap();
    let verifier = sts.verifier("orders").unwrap();
    let setup = Setup::new(client.clone()).await;
    let subject = setup.subject("eu");
    let corpus = hostile(&sts, "orders");

    let publish = |headers: HeaderMap| {
        let (js, subject) = (setup.js.clone(), subject.clone());
        async move {
            js.publish_with_headers(subject, headers, "x".into())
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        }
    };
    let mut goods = BTreeSet::new();
    let mut expected = BTreeMap::new();
    for (i, case) in corpus.iter().enumerate() {
        let good = format!("good-{i}");
        let mut headers = HeaderMap::new();
        headers.insert("x-id", good.as_str());
        let bearer = format!("Bearer {}", sts.mint("alice", "orders", Duration::from_secs(300)));
        headers.insert("Authorization", bearer.as_str());
        publish(headers).await.unwrap();
        goods.insert(good);

        let id = format!("hostile-{i}");
        let Ok(values) = case
            .headers
            .iter()
            .map(|(name, value)| std::str::from_utf8(value).map(|v| (name.as_str(), v)))
            .collect::<Result<Vec<_>, _>>()
        else {
            assert_eq!(
                case.name, "binary header value",
                "only binary values are not text"
            );
            continue;
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-id", id.as_str());
        for (name, value) in values {
            headers.append(name, value);
        }
        match publish(headers).await {
            Ok(_) => {
                expected.insert(id, format!("{:?}", case.kind));
            }
            Err(e) => assert!(case.name.contains("1 MiB"), "{}: not published: {e}", case.name),
        }
    }
    assert_eq!(
        expected.len() + 2,
        corpus.len(),
        "all but the binary and 1 MiB values travel"
    );

    let consumer = pull_consumer(&setup.declared.stream, "billing", |_| {}).await;
    let consumer = JetStreamConsumer::new(consumer, Guard::new(verifier)).double_ack();
    let stats = consumer.stats();
    let seen: Seen = Default::default();
    let (stop, stopped) = shutdown();
    let handler = recorder(&seen);
    let run = tokio::spawn(async move { consumer.run(handler, stopped).await });
    let total = (goods.len(), expected.len());
    assert!(
        wait_until(Duration::from_secs(30), || {
            let r = stats.snapshot();
            (r.accepted as usize, r.dead_lettered as usize) == total
        })
        .await,
        "{total:?} handled and dead-lettered: {:?}",
        stats.snapshot()
    );
    stop.send(()).ok();
    run.await.unwrap().expect("the run ends cleanly");

    let handled: BTreeSet<String> = seen.lock().unwrap().iter().map(|(_, _, id)| id.clone()).collect();
    assert_eq!(handled, goods, "every good message is handled");
    let dead = stored(&setup.js, &setup.topology.dead_letter_stream_name()).await;
    let found: BTreeMap<String, String> = dead
        .iter()
        .map(|copy| {
            assert!(!has_header_any_casing(copy, "authorization"), "no token header");
            (
                header(copy, "x-id").unwrap_or_default(),
                header(copy, REASON_KIND).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(found, expected, "each hostile message's dead-letter reason");
    setup.delete().await;
    sts.shutdown().await;
}
