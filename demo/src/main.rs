//! The mission in one process: alice's token enters at an HTTP gateway, crosses Kafka, RabbitMQ
//! and NATS JetStream, expires while `shipping` works through its backlog, is exchanged at the
//! development token service for a fresh one with an `act` chain, and reaches `notifier` with
//! her identity intact. A forged order and one meant for another audience end in the
//! dead-letter topic with their reasons.
//!
//! ```sh
//! cargo run --release -p jwt-relay-demo [-- --orders N]
//! ```
//!
//! `KAFKA_BROKERS`, `AMQP_ADDR` and `NATS_URL` select real brokers (one set but unreachable is
//! an error). Unset, Kafka runs on librdkafka's embedded mock cluster and RabbitMQ and NATS on
//! the in-memory transport, so this runs on a machine with no broker at all.

use clap::Parser;
use metrics_exporter_prometheus::PrometheusBuilder;

use jwt_relay_demo::{Failure, Options, Timeline};

/// The jwt-relay demonstration: gateway → Kafka → billing → RabbitMQ → shipping → NATS → notifier.
#[derive(Debug, Parser)]
struct Args {
    /// How many orders alice places.
    #[arg(long, default_value_t = 20)]
    orders: usize,
    /// Kafka bootstrap servers; unset: librdkafka's embedded mock cluster.
    #[arg(long, env = "KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// RabbitMQ URI; unset: the in-memory transport.
    #[arg(long, env = "AMQP_ADDR", hide_env_values = true)]
    amqp_addr: Option<String>,
    /// NATS server URL; unset: the in-memory transport.
    #[arg(long, env = "NATS_URL", hide_env_values = true)]
    nats_url: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let args = Args::parse();
    let metrics = PrometheusBuilder::new().install_recorder()?;
    jwt_relay::observe::describe();
    let summary = jwt_relay_demo::run(
        Options {
            orders: args.orders,
            kafka_brokers: args.kafka_brokers,
            amqp_addr: args.amqp_addr,
            nats_url: args.nats_url,
        },
        Timeline::new(|line| println!("{line}")),
    )
    .await?;

    println!();
    println!("| hop | transport | accepted | dead-lettered |");
    println!("|---|---|---|---|");
    for hop in &summary.hops {
        println!(
            "| {} | {} | {} | {} |",
            hop.name, hop.transport, hop.accepted, hop.dead_lettered
        );
    }
    println!();
    for letter in &summary.dead_letters {
        println!(
            "dead letter {:?}: {} ({}); token kept in the copy: {}",
            letter.payload, letter.kind, letter.message, letter.carries_token
        );
    }
    if let Some(first) = summary.fraud_checked.first() {
        println!(
            "fraud-check checked {} orders, for {} with {:?} acting",
            summary.fraud_checked.len(),
            first.subject,
            first.actors
        );
    }
    if let Some(first) = summary.notified.first() {
        println!(
            "notifier notified {} times, for {} with {:?} acting",
            summary.notified.len(),
            first.subject,
            first.actors
        );
    }
    println!(
        "token endpoint calls: {} for {} orders ({} invoices exchanged by shipping)",
        summary.token_endpoint_calls, summary.orders_sent, summary.exchanged
    );
    println!();
    println!("metrics (what a Prometheus scrape would see; `--example metrics` serves them):");
    let counters = [
        "jwt_relay_messages_total",
        "jwt_relay_exchanges_total",
        "jwt_relay_jwks_fetches_total",
    ];
    for line in metrics.render().lines() {
        if counters.iter().any(|name| line.starts_with(name)) {
            println!("  {line}");
        }
    }
    println!("{}", summary.json());
    Ok(())
}
