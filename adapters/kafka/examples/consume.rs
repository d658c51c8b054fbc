//! Consumes the orders that `--example kafka-produce` sent: each is verified before the
//! handler runs, and the handler sees who the user is.
//!
//! ```sh
//! cargo run -p jwt-relay-kafka --example kafka-consume
//! ```
//!
//! `KAFKA_BROKERS` selects the cluster (default `127.0.0.1:9092`); `COUNT` how many records to
//! settle before stopping (default 3).

use std::convert::Infallible;

use jwt_relay::{Algorithm, Guard, Issuer, Key, Verifier};
use jwt_relay_kafka::rdkafka::ClientConfig;
use jwt_relay_kafka::{Consumer, Received, ensure_topics};

const TOPIC: &str = "jwt-relay-example-orders";
const ISSUER: &str = "https://id.example.com";
const SECRET: &[u8] = b"a development secret of 32+ bytes!";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let count = std::env::var("COUNT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(3);

    let verifier = Verifier::builder()
        .issuer(
            Issuer::new(ISSUER)
                .audience("orders")
                .key(Key::from_secret(SECRET, Algorithm::HS256)?)?,
        )
        .build()?;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &brokers)
        .set("group.id", "jwt-relay-example-billing")
        .set("auto.offset.reset", "earliest");
    ensure_topics(&config, &[TOPIC, &format!("{TOPIC}.dlq")], 1).await?;
    let consumer = Consumer::builder(&config, Guard::new(verifier))
        .topic(TOPIC)
        .limit(count)
        .build()?;
    println!("waiting for {count} records on {TOPIC}");
    let report = consumer
        .run(
            |delivery: Received| async move {
                let who = delivery.context().subject().unwrap_or("?");
                println!("{} for {who}", String::from_utf8_lossy(delivery.payload()));
                Ok::<(), Infallible>(())
            },
            std::future::pending::<()>(),
        )
        .await?;
    println!(
        "{} accepted, {} dead-lettered (see {TOPIC}.dlq), {} retried",
        report.accepted, report.dead_lettered, report.retried
    );
    Ok(())
}
