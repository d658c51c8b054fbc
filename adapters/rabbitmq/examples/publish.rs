//! Publishes three invoices on behalf of a user: the user's token travels in the headers
//! without being passed to `publish`.
//!
//! ```sh
//! cargo run -p jwt-relay-rabbitmq --example rabbitmq-publish    # then: --example rabbitmq-consume
//! ```
//!
//! `AMQP_ADDR` selects the broker (default `amqp://guest:guest@127.0.0.1:5672/%2f`). The user's
//! token is minted here with a development secret; in a service it arrives with the request.

use jwt_relay::jsonwebtoken::{EncodingKey, Header, encode};
use jwt_relay::verify::now_unix;
use jwt_relay::{Algorithm, Issuer, Key, Propagator, PublishError, Verifier};
use jwt_relay_rabbitmq::lapin::{BasicProperties, Connection, ConnectionProperties};
use jwt_relay_rabbitmq::{Publisher, Topology};

const QUEUE: &str = "jwt-relay-example-invoices";
const ISSUER: &str = "https://id.example.com";
const SECRET: &[u8] = b"a development secret of 32+ bytes!";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("AMQP_ADDR").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());

    // What the HTTP edge does: verify the caller's token into an identity.
    let verifier = Verifier::builder()
        .issuer(
            Issuer::new(ISSUER)
                .audience("invoices")
                .key(Key::from_secret(SECRET, Algorithm::HS256)?)?,
        )
        .build()?;
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": "invoices", "sub": "alice", "exp": now_unix() + 300,
    });
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET)?,
    )?;
    let alice = verifier.verify(&token).await?;

    let connection = Connection::connect(&addr, ConnectionProperties::default()).await?;
    Topology::new(QUEUE)
        .declare(&connection.create_channel().await?)
        .await?;
    let publisher = Publisher::new(connection.create_channel().await?, Propagator::default()).await?;

    // In the user's scope, as inside an HTTP handler or a consumer's handler.
    jwt_relay::scope(alice, async {
        for n in 1..=3 {
            let invoice = format!("invoice {n}");
            publisher
                .publish("", QUEUE, invoice.as_bytes(), BasicProperties::default(), None)
                .await?;
            println!("published and confirmed: {invoice}");
        }
        Ok::<(), PublishError>(())
    })
    .await?;
    Ok(())
}
