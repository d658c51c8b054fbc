//! Publishes three orders to JetStream as the user `alice`, and one forged
//! order, so `cargo run --example nats-consume` has something to verify and
//! something to dead-letter.
//!
//! ```sh
//! cargo run -p jwt-relay-nats --example nats-publish   # NATS_URL defaults to nats://127.0.0.1:4222
//! ```

use jwt_relay::jsonwebtoken::{EncodingKey, Header, encode};
use jwt_relay::verify::now_unix;
use jwt_relay::{Algorithm, Issuer, Key, Propagator, Verifier, scope};
use jwt_relay_nats::{JetStreamPublisher, Topology, async_nats};

/// The development issuer and key the three examples share.
const ISSUER: &str = "https://id.example.com";
const SECRET: &[u8] = b"a development secret of 32+ bytes!";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = async_nats::connect(url.as_str()).await?;
    let js = async_nats::jetstream::new(client);
    Topology::new("ORDERS", ["orders.*"]).declare(&js).await?;

    // The user's token, as an HTTP edge received and verified it.
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": "orders", "sub": "alice", "exp": now_unix() + 300,
    });
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET)?,
    )?;
    let verifier = Verifier::builder()
        .issuer(
            Issuer::new(ISSUER)
                .audience("orders")
                .key(Key::from_secret(SECRET, Algorithm::HS256)?)?,
        )
        .build()?;
    let alice = verifier.verify(&token).await?;

    // Inside the user's scope, every publish carries the token.
    let publisher = JetStreamPublisher::new(js.clone(), Propagator::default());
    scope(alice, async {
        for order in ["2 books", "1 lamp", "3 mugs"] {
            let ack = publisher
                .publish("orders.eu", Default::default(), order, None)
                .await?;
            println!(
                "published {order:?} as alice: stream {} seq {}",
                ack.stream, ack.sequence
            );
        }
        Ok::<(), jwt_relay::PublishError>(())
    })
    .await?;

    // A forger writes the header by hand, with someone else's signature.
    let (signed, _) = token.rsplit_once('.').unwrap_or_default();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {signed}.AAAA").as_str());
    js.publish_with_headers("orders.eu", headers, "1 free car".into())
        .await?
        .await?;
    println!("published a forged order: the consumer dead-letters it to orders.eu.dlq");
    Ok(())
}
