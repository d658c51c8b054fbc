//! Consumes the invoices that `--example rabbitmq-publish` sent: each is verified before the handler
//! runs, and the handler sees who the user is.
//!
//! ```sh
//! cargo run -p jwt-relay-rabbitmq --example rabbitmq-consume
//! ```
//!
//! `AMQP_ADDR` selects the broker (default `amqp://guest:guest@127.0.0.1:5672/%2f`); `COUNT`
//! how many messages to take before stopping (default 3).

use std::convert::Infallible;

use jwt_relay::{Algorithm, Guard, Issuer, Key, Verifier};
use jwt_relay_rabbitmq::lapin::{Connection, ConnectionProperties};
use jwt_relay_rabbitmq::{Connector, Consumer, Received, Topology};

const QUEUE: &str = "jwt-relay-example-invoices";
const ISSUER: &str = "https://id.example.com";
const SECRET: &[u8] = b"a development secret of 32+ bytes!";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("AMQP_ADDR").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let count = std::env::var("COUNT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(3);

    let verifier = Verifier::builder()
        .issuer(
            Issuer::new(ISSUER)
                .audience("invoices")
                .key(Key::from_secret(SECRET, Algorithm::HS256)?)?,
        )
        .build()?;
    // The queue, its dead-letter exchange and queue, and its retry queue (idempotent).
    let connection = Connection::connect(&addr, ConnectionProperties::default()).await?;
    Topology::new(QUEUE)
        .declare(&connection.create_channel().await?)
        .await?;

    let consumer = Consumer::builder(Connector::new(addr), QUEUE, Guard::new(verifier))
        .limit(count)
        .build();
    println!("waiting for {count} messages on {QUEUE}");
    let report = consumer
        .run(
            |received: Received| async move {
                let who = received.context().subject().unwrap_or("?");
                println!("{} for {who}", String::from_utf8_lossy(received.payload()));
                Ok::<(), Infallible>(())
            },
            std::future::pending::<()>(),
        )
        .await?;
    println!(
        "{} accepted, {} dead-lettered (see {QUEUE}.dlq), {} retried",
        report.accepted, report.dead_lettered, report.retried
    );
    Ok(())
}
