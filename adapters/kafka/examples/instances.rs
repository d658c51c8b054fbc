//! Several instances of one service in one consumer group: three share a topic's six
//! partitions, one leaves mid-stream and another joins. Each partition moves with a clean
//! hand-over (its handlers in flight finish and its offsets are committed first), so no order
//! is handled twice and none is missed.
//!
//! ```sh
//! cargo run -p jwt-relay-kafka --example kafka-instances
//! ```
//!
//! `KAFKA_BROKERS` selects the cluster (default `127.0.0.1:9092`). In production each
//! instance is its own process with the same settings: the group id, the assignment strategy
//! and the commit interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jwt_relay::jsonwebtoken::{EncodingKey, Header, encode};
use jwt_relay::verify::now_unix;
use jwt_relay::{Algorithm, Guard, Issuer, Key, Propagator, Verifier};
use jwt_relay_kafka::rdkafka::ClientConfig;
use jwt_relay_kafka::rdkafka::producer::FutureRecord;
use jwt_relay_kafka::{Consumer, Publisher, Received, ensure_topics};
use tokio::sync::oneshot;

const ISSUER: &str = "https://id.example.com";
const SECRET: &[u8] = b"a development secret of 32+ bytes!";
const ORDERS: usize = 3_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let topic = format!("jwt-relay-example-instances-{run}");
    let key = Key::from_secret(SECRET, Algorithm::HS256)?;
    let verifier = Verifier::builder()
        .issuer(Issuer::new(ISSUER).audience("orders").key(key)?)
        .build()?;

    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &brokers);
    ensure_topics(&config, &[topic.as_str(), &format!("{topic}.dlq")], 6).await?;
    let publisher = Publisher::from_config(&config, Propagator::default())?;
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": "orders", "sub": "alice", "exp": now_unix() + 600,
    });
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET)?,
    )?;
    let alice = verifier.verify(&token).await?;

    // What every instance needs: the same group, and the same commit interval, which bounds
    // what a crashed instance leaves to be handled again. On Kafka,
    // `partition.assignment.strategy=cooperative-sticky` pauses only the partitions that move
    // (Tansu 0.6.0 does not keep that protocol: RELIABILITY.md).
    config
        .set("group.id", format!("jwt-relay-example-billing-{run}"))
        .set("auto.offset.reset", "earliest")
        .set("auto.commit.interval.ms", "1000")
        .set("session.timeout.ms", "10000");
    let handled: Arc<Mutex<HashMap<String, Vec<usize>>>> = Arc::default();
    let start = |instance: usize| {
        let consumer = Consumer::builder(&config, Guard::new(verifier.clone()))
            .topic(topic.as_str())
            .drain_timeout(Duration::from_secs(10))
            .build()?;
        let handled = handled.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            consumer
                .run(
                    move |order: Received| {
                        let id = String::from_utf8_lossy(order.payload()).into_owned();
                        handled
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(id)
                            .or_default()
                            .push(instance);
                        async {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            Ok::<(), std::io::Error>(())
                        }
                    },
                    stopped,
                )
                .await
        });
        Ok::<_, jwt_relay_kafka::Error>((stop, task))
    };

    let mut instances = vec![start(0)?, start(1)?, start(2)?];
    for i in 0..ORDERS {
        if i == ORDERS / 3 {
            println!("instance 0 leaves");
            let (stop, task) = instances.remove(0);
            let _ = stop.send(());
            task.await??;
        }
        if i == ORDERS / 2 {
            println!("instance 3 joins");
            instances.push(start(3)?);
        }
        let id = format!("order-{i}");
        publisher
            .send(FutureRecord::to(&topic).key(&id).payload(&id), Some(&alice))
            .await?;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    while handled.lock().unwrap_or_else(|e| e.into_inner()).len() < ORDERS {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (stop, task) in instances {
        let _ = stop.send(());
        task.await??;
    }
    let handled = handled.lock().unwrap_or_else(|e| e.into_inner());
    let twice = handled.values().filter(|by| by.len() > 1).count();
    let mut per_instance = [0usize; 4];
    for by in handled.values().flatten() {
        per_instance[*by] += 1;
    }
    println!(
        "{ORDERS} orders: handled {} once, {twice} twice; per instance {per_instance:?}",
        handled.len() - twice
    );
    Ok(())
}
