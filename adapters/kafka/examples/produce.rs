//! Sends three orders on behalf of a user: the user's token travels in the record headers
//! without being passed to `send`.
//!
//! ```sh
//! cargo run -p jwt-relay-kafka --example kafka-produce    # then: --example kafka-consume
//! ```
//!
//! `KAFKA_BROKERS` selects the cluster (default `127.0.0.1:9092`). The user's token is minted
//! here with a development secret; in a service it arrives with the request.

use jwt_relay::jsonwebtoken::{EncodingKey, Header, encode};
use jwt_relay::verify::now_unix;
use jwt_relay::{Algorithm, Issuer, Key, Propagator, PublishError, Verifier};
use jwt_relay_kafka::rdkafka::ClientConfig;
use jwt_relay_kafka::rdkafka::producer::FutureRecord;
use jwt_relay_kafka::{Publisher, ensure_topics};

const TOPIC: &str = "jwt-relay-example-orders";
const ISSUER: &str = "https://id.example.com";
const SECRET: &[u8] = b"a development secret of 32+ bytes!";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());

    // What the HTTP edge does: verify the caller's token into an identity.
    let verifier = Verifier::builder()
        .issuer(
            Issuer::new(ISSUER)
                .audience("orders")
                .key(Key::from_secret(SECRET, Algorithm::HS256)?)?,
        )
        .build()?;
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": "orders", "sub": "alice", "exp": now_unix() + 300,
    });
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET)?,
    )?;
    let alice = verifier.verify(&token).await?;

    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &brokers)
        .set("message.timeout.ms", "10000");
    ensure_topics(&config, &[TOPIC, &format!("{TOPIC}.dlq")], 1).await?;
    let producer = Publisher::from_config(&config, Propagator::default())?;

    // In the user's scope, as inside an HTTP handler or a consumer's handler.
    jwt_relay::scope(alice, async {
        for n in 1..=3 {
            let order = format!("order {n}");
            let key = n.to_string();
            let record = FutureRecord::to(TOPIC).key(&key).payload(&order);
            let delivery = producer.send(record, None).await?;
            println!(
                "sent {order}: partition {} offset {}",
                delivery.partition, delivery.offset
            );
        }
        Ok::<(), PublishError>(())
    })
    .await?;
    Ok(())
}
