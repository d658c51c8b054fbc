//! Consumes the orders `cargo run --example nats-publish` sent: each token is
//! verified before the handler runs; the forged order goes to
//! `orders.eu.dlq` (stream `ORDERS_DLQ`) with its reason and without its
//! token. Stops on Ctrl-C, or after 5 seconds without messages.
//!
//! ```sh
//! cargo run -p jwt-relay-nats --example nats-consume   # NATS_URL defaults to nats://127.0.0.1:4222
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull;
use jwt_relay::{Algorithm, Grace, Guard, Issuer, Key, Verifier};
use jwt_relay_nats::{EventOutcome, JetStreamConsumer, Received, Topology, async_nats};

/// The development issuer and key the three examples share.
const ISSUER: &str = "https://id.example.com";
const SECRET: &[u8] = b"a development secret of 32+ bytes!";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = async_nats::connect(url.as_str()).await?;
    let js = async_nats::jetstream::new(client);
    let declared = Topology::new("ORDERS", ["orders.*"]).declare(&js).await?;
    let consumer = declared
        .stream
        .get_or_create_consumer(
            "billing",
            pull::Config {
                durable_name: Some("billing".into()),
                ..Default::default()
            },
        )
        .await?;

    let verifier = Verifier::builder()
        .issuer(
            Issuer::new(ISSUER)
                .audience("orders")
                .key(Key::from_secret(SECRET, Algorithm::HS256)?)?,
        )
        .build()?;
    // Tokens that expired while their message waited are accepted for an
    // hour after publication, by the server's clock.
    let guard = Guard::builder(verifier)
        .policy(Grace::new(Duration::from_secs(3600)))
        .build();

    let last = Arc::new(Mutex::new(Instant::now()));
    let touched = last.clone();
    let consumer = JetStreamConsumer::new(consumer, guard).on_event(move |event| {
        *touched.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        if let EventOutcome::Rejected { reason, dead_letter } = &event.outcome {
            println!("dead-lettered {} to {dead_letter:?}: {reason}", event.position);
        }
    });
    let idle = async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if last.lock().unwrap_or_else(|p| p.into_inner()).elapsed() > Duration::from_secs(5) {
                return;
            }
        }
    };
    let shutdown = async {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = idle => {}
        }
    };
    let report = consumer
        .run(
            |delivery: Received| async move {
                println!(
                    "{} ordered {:?} (seq {:?})",
                    delivery.context().subject().unwrap_or("?"),
                    String::from_utf8_lossy(delivery.payload()),
                    delivery.stream_sequence(),
                );
                Ok::<(), String>(())
            },
            shutdown,
        )
        .await?;
    println!("{report:?}");
    Ok(())
}
