//! The price of propagation, in one run: for each broker reachable now (Kafka on librdkafka's
//! mock cluster and on the broker at `KAFKA_BROKERS`, RabbitMQ at `AMQP_ADDR`, core NATS and
//! JetStream at `NATS_URL`), publish and consume 1 KiB messages with the raw client and with
//! jwt-relay, alternating raw and wrapped runs in the same process against the same broker, and
//! report the median rates and their ratio. Then what needs no broker: the latency the guard
//! adds, token-endpoint calls for a burst of one expired token, key-set fetches in an
//! unknown-`kid` storm, and resident memory while a million distinct tokens pass the cache.
//!
//! ```sh
//! cargo run --release -p jwt-relay-bench            # the full run (minutes)
//! cargo run -p jwt-relay-bench -- --quick           # a smoke run, as CI does
//! cargo run --release -p jwt-relay-bench -- --instances  # 1, 2, 3 consumers on one destination
//! ```
//!
//! Output: one JSON line per measurement, then Markdown tables (`BENCHMARKS.md` keeps the
//! latest).

mod core;
mod instances;
mod kafka;
mod measure;
mod nats;
mod rabbitmq;
mod tokens;

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use clap::Parser;
use futures_util::{StreamExt as _, TryStreamExt as _};
use jwt_relay::testing::Mode;
use jwt_relay::{Algorithm, AuthContext, Guard, Verifier};
use serde_json::{Value, json};

use measure::{Comparison, rate};
use tokens::{Keys, Scenario};

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Publishes in flight at once, raw and wrapped alike, where the client waits for a confirm.
const IN_FLIGHT: usize = 256;

#[derive(Debug, Parser)]
struct Args {
    /// Messages per run in scenarios (a) and (b).
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Messages per run in scenario (c) (each a distinct token, signed beforehand).
    #[arg(long, default_value_t = 4_000)]
    distinct: usize,
    /// Raw/wrapped pairs per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Distinct tokens for the memory measurement.
    #[arg(long, default_value_t = 1_000_000)]
    memory_tokens: usize,
    /// Measure only the brokers whose name contains this (`mock`, `Tansu`, `rabbitmq`, `core`,
    /// `JetStream`, or `none` for the broker-free measurements alone).
    #[arg(long)]
    only: Option<String>,
    /// Only these scenarios (`a`, `b`, `c`), e.g. `--scenarios a` for profiling.
    #[arg(long, default_value = "abc")]
    scenarios: String,
    /// Skip what needs no broker (latency, exchange burst, `kid` storm, memory).
    #[arg(long)]
    brokers_only: bool,
    /// Only measure consuming with 1, 2 and 3 jwt-relay consumer instances (each its own
    /// client and connection) sharing `--messages` messages on one destination: a Kafka group
    /// on a topic of 6 partitions (the broker at `KAFKA_BROKERS`, not the mock cluster), a
    /// RabbitMQ queue, a durable JetStream pull consumer. `--runs` runs each; `--only` applies.
    #[arg(long)]
    instances: bool,
    /// A small, fast run that checks every measurement works (CI runs this).
    #[arg(long)]
    quick: bool,
    /// Only check one shared token this many times through the guard, and nothing else: for
    /// `valgrind --tool=callgrind`, whose instruction count repeats from run to run. The
    /// difference between two counts, divided by the difference in checks, is the cost of one.
    #[arg(long, value_name = "N")]
    cached_checks: Option<usize>,
    /// Only fill the mock cluster with `--messages` records of scenario (a) (at most 2 000, all
    /// it keeps) and read them once with this side (`none`: not at all), and nothing else: for
    /// `valgrind --tool=callgrind --dump-before='*callgrind_mark*'`, which then counts in five
    /// parts: start and fill (RSA key generation: it varies by a billion instructions), the
    /// consumer's start to its first record, the other records, its shutdown, the exit. Parts 2
    /// to 4, less the idle producers' polling (`BaseProducer::poll`, inclusive), differ between
    /// two runs by the records' cost; over the difference in records, one record's.
    #[arg(long, value_name = "SIDE", value_parser = ["raw", "by-hand", "jwt-relay", "none"])]
    instructions: Option<String>,
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    kafka_brokers: String,
    #[arg(
        long,
        env = "AMQP_ADDR",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    amqp_addr: String,
    #[arg(
        long,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true
    )]
    nats_url: String,
}

/// One broker under measurement.
#[allow(clippy::large_enum_variant, reason = "a handful per run")]
enum Broker {
    Kafka(kafka::Kafka),
    RabbitMq(rabbitmq::RabbitMq),
    Nats(nats::NatsCore),
    JetStream(nats::JetStream),
}

impl Broker {
    fn name(&self) -> &'static str {
        match self {
            Broker::Kafka(b) => b.name(),
            Broker::RabbitMq(b) => b.name(),
            Broker::Nats(b) => b.name(),
            Broker::JetStream(b) => b.name(),
        }
    }

    /// Who publishes in turn: the raw client and jwt-relay, and on RabbitMQ the raw client
    /// asking by hand for what jwt-relay's publisher asks by default (`mandatory`).
    fn publishers(&self) -> &'static [Side] {
        match self {
            Broker::RabbitMq(_) => &Side::ALL,
            _ => &[Side::Raw, Side::JwtRelay],
        }
    }

    async fn publish(
        &self,
        publisher: Side,
        tokens: &[String],
        contexts: &[AuthContext],
    ) -> Result<f64, Failure> {
        let wrapped = publisher == Side::JwtRelay;
        match self {
            Broker::Kafka(b) => b.publish(wrapped, tokens, contexts).await,
            Broker::RabbitMq(b) => b.publish(publisher, tokens, contexts).await,
            Broker::Nats(b) => b.publish(wrapped, tokens, contexts).await,
            Broker::JetStream(b) => b.publish(wrapped, tokens, contexts).await,
        }
    }

    /// The most messages a consume run can read back, if the broker limits it.
    fn capacity(&self) -> Option<usize> {
        match self {
            Broker::Kafka(b) => b.capacity(),
            _ => None,
        }
    }

    async fn prepare(&self, tokens: &[String]) -> Result<(), Failure> {
        match self {
            Broker::Kafka(b) => b.prepare(tokens).await,
            Broker::RabbitMq(b) => b.prepare(tokens).await,
            Broker::Nats(b) => b.prepare(tokens).await,
            Broker::JetStream(b) => b.prepare(tokens).await,
        }
    }

    async fn consume(&self, reader: Side, guard: Guard) -> Result<f64, Failure> {
        match self {
            Broker::Kafka(b) => b.consume(reader, guard).await,
            Broker::RabbitMq(b) => b.consume(reader, guard).await,
            Broker::Nats(b) => b.consume(reader, guard).await,
            Broker::JetStream(b) => b.consume(reader, guard).await,
        }
    }

    async fn remove(&self) -> Result<(), Failure> {
        match self {
            Broker::RabbitMq(b) => b.remove().await,
            Broker::JetStream(b) => b.remove().await,
            Broker::Kafka(_) | Broker::Nats(_) => Ok(()),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let mut args = Args::parse();
    if args.quick {
        (args.messages, args.distinct, args.runs, args.memory_tokens) = (2_000, 200, 1, 30_000);
    }
    let keys = Keys::generate()?;
    if let Some(checks) = args.cached_checks {
        emit(&core::cached_checks(&keys, checks).await?);
        return Ok(());
    }
    if let Some(side) = &args.instructions {
        let reader = Side::ALL.into_iter().find(|s| s.flag() == side);
        emit(&kafka_consume_only(&keys, reader, args.messages).await?);
        return Ok(());
    }
    if args.instances {
        return many_instances(&keys, &args).await;
    }
    let mut comparisons = Vec::new();
    let mut others = Vec::new();

    for broker in brokers(&args).await {
        let broker = match broker {
            Ok(broker) => broker,
            Err(skipped) => {
                emit(&skipped);
                others.push(skipped);
                continue;
            }
        };
        if !selected(&args, &broker) {
            continue;
        }
        eprintln!("measuring {}", broker.name());
        comparisons.extend(measure(&broker, &keys, &args).await?);
        broker.remove().await?;
    }

    if args.brokers_only {
        print_tables(&comparisons, &others);
        return Ok(());
    }
    let samples = if args.quick { 10_000 } else { 200_000 };
    let burst = if args.quick { 1_000 } else { 10_000 };
    eprintln!("measuring what needs no broker");
    for line in [
        core::added_latency(&keys, samples).await?,
        core::exchange_burst(burst, Mode::Normal).await?,
        core::exchange_burst(burst, Mode::RejectAll).await?,
        core::exchange_burst(burst, Mode::Unavailable { retry_after: None }).await?,
        core::unknown_kid_storm(&keys, if args.quick { 1 } else { 5 }, 1_000).await?,
        core::memory_under_distinct_tokens(&keys, args.memory_tokens).await?,
    ] {
        emit(&line);
        others.push(line);
    }

    print_tables(&comparisons, &others);
    Ok(())
}

/// `--instances`: every broker with a destination that instances share, in turn.
async fn many_instances(keys: &Keys, args: &Args) -> Result<(), Failure> {
    let mut scalings = Vec::new();
    let mut others = Vec::new();
    for broker in brokers(args).await {
        let broker = match broker {
            Ok(broker) => broker,
            Err(skipped) => {
                emit(&skipped);
                others.push(skipped);
                continue;
            }
        };
        if !instances::measured(&broker) || !selected(args, &broker) {
            continue;
        }
        eprintln!("measuring {} with 1, 2 and 3 consumer instances", broker.name());
        let started = std::time::Instant::now();
        match instances::measure(&broker, keys, args.messages, args.runs).await {
            Ok(measured) => scalings.extend(measured),
            Err(e) => {
                let failed =
                    json!({"measurement": "instances", "broker": broker.name(), "error": e.to_string()});
                emit(&failed);
                others.push(failed);
            }
        }
        eprintln!("  ({:.0} s)", started.elapsed().as_secs_f64());
        broker.remove().await?;
    }
    instances::print_table(&scalings, &others);
    Ok(())
}

/// Whether `--only` leaves `broker` in.
fn selected(args: &Args, broker: &Broker) -> bool {
    args.only
        .as_ref()
        .is_none_or(|only| broker.name().contains(only.as_str()))
}

/// The Markdown summary after the JSON lines.
fn print_tables(comparisons: &[Comparison], others: &[Value]) {
    println!();
    println!(
        "| broker | scenario | operation | raw msg/s | jwt-relay msg/s | ratio | by hand msg/s (consume: token checked; RabbitMQ publish: `mandatory`) | jwt-relay / by hand | (c): against verification | (c): against the limit |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for comparison in comparisons {
        println!("{}", comparison.markdown());
    }
    println!();
    for line in others {
        println!("- `{line}`");
    }
}

fn emit(line: &Value) {
    println!("{line}");
}

/// Every broker of this run, or a `skipped` line saying why it is not measured.
async fn brokers(args: &Args) -> Vec<Result<Broker, Value>> {
    let skipped = |broker: &str, why: String| json!({"measurement": "skipped", "broker": broker, "why": why});
    let mut brokers = vec![
        kafka::Kafka::mock()
            .await
            .map(Broker::Kafka)
            .map_err(|e| skipped("kafka (mock cluster)", e.to_string())),
    ];
    let first_kafka = args.kafka_brokers.split(',').next().unwrap_or_default();
    brokers.push(match reachable(first_kafka) {
        Ok(()) => kafka::Kafka::broker(&args.kafka_brokers)
            .await
            .map(Broker::Kafka)
            .map_err(|e| skipped("kafka (Tansu broker)", e.to_string())),
        Err(why) => Err(skipped("kafka (Tansu broker)", why)),
    });
    brokers.push(match reachable(&args.amqp_addr) {
        Ok(()) => rabbitmq::RabbitMq::connect(&args.amqp_addr)
            .await
            .map(Broker::RabbitMq)
            .map_err(|e| skipped("rabbitmq", e.to_string())),
        Err(why) => Err(skipped("rabbitmq", why)),
    });
    match reachable(&args.nats_url) {
        Ok(()) => {
            brokers.push(
                nats::NatsCore::connect(&args.nats_url)
                    .await
                    .map(Broker::Nats)
                    .map_err(|e| skipped("nats (core)", e.to_string())),
            );
            brokers.push(
                nats::JetStream::connect(&args.nats_url)
                    .await
                    .map(Broker::JetStream)
                    .map_err(|e| skipped("nats (JetStream)", e.to_string())),
            );
        }
        Err(why) => brokers.push(Err(skipped("nats", why))),
    }
    brokers
}

/// Scenarios (a) and (b) for publish and consume, and (c) for consume, on one broker.
async fn measure(broker: &Broker, keys: &Keys, args: &Args) -> Result<Vec<Comparison>, Failure> {
    let mut comparisons = Vec::new();
    let scenarios = [
        (Scenario::Shared, args.messages),
        (Scenario::EveryThousand, args.messages),
        (Scenario::Distinct(Algorithm::RS256), args.distinct),
        (Scenario::Distinct(Algorithm::ES256), args.distinct),
    ];
    for (scenario, messages) in scenarios {
        if !args.scenarios.contains(scenario.letter()) {
            continue;
        }
        let messages = broker.capacity().map_or(messages, |cap| messages.min(cap));
        let tokens = keys.for_scenario(scenario, messages)?;
        let distinct = matches!(scenario, Scenario::Distinct(_));
        if !distinct {
            let contexts = keys.contexts(&tokens).await?;
            let mut comparison = Comparison::new(broker.name(), scenario, "publish", messages);
            let publishers = broker.publishers();
            for run in 0..args.runs {
                // Each goes first in turn, so warming up favours none.
                for publisher in in_turn(publishers, run) {
                    let rate = broker.publish(publisher, &tokens, &contexts).await?;
                    let name = publisher.name("publish");
                    eprintln!("  {} publish, {name}: {rate:.0}/s", scenario.label());
                    comparison.push(publisher, rate);
                }
            }
            emit(&comparison.json());
            comparisons.push(comparison);
        }
        broker.prepare(&tokens).await?;
        let mut comparison = Comparison::new(broker.name(), scenario, "consume", messages);
        for run in 0..args.runs {
            // Each goes first in turn, so warming up favours none.
            for reader in in_turn(&Side::ALL, run) {
                let mut lost = 0;
                let rate = loop {
                    // A new verifier each time: its cache starts empty, as a new consumer's would.
                    let guard = Guard::new(keys.verifier_with_cache(10_000)?);
                    match broker.consume(reader, guard).await {
                        Err(e) if lost < 2 && e.is::<nats::Lost>() => {
                            lost += 1;
                            eprintln!("  core NATS lost messages, measuring again: {e}");
                        }
                        rate => break rate?,
                    }
                };
                let name = reader.name("consume");
                eprintln!("  {} consume, {name}: {rate:.0}/s", scenario.label());
                comparison.push(reader, rate);
            }
        }
        if distinct {
            comparison.verify = Some(tokens::verification_rate(keys, &tokens, 0).await?);
            let cached = tokens::verification_rate(keys, &tokens, 10_000).await?;
            eprintln!(
                "  {} verification with the cache on (every token new to it): {cached:.0}/s",
                scenario.label()
            );
        }
        emit(&comparison.json());
        comparisons.push(comparison);
    }
    Ok(comparisons)
}

/// `--instructions`: `messages` records of scenario (a) in the mock cluster, read by `reader`
/// (`None`: not read) between two marks (and the first and last record marked on the way).
async fn kafka_consume_only(keys: &Keys, reader: Option<Side>, messages: usize) -> Result<Value, Failure> {
    let broker = kafka::Kafka::mock().await?;
    if broker.capacity().is_some_and(|cap| messages > cap) {
        return Err(format!("the mock cluster keeps about 2 000 records, not {messages}").into());
    }
    let tokens = keys.for_scenario(Scenario::Shared, messages)?;
    broker.prepare(&tokens).await?;
    let guard = Guard::new(keys.verifier_with_cache(10_000)?);
    callgrind_mark("consume");
    if let Some(reader) = reader {
        broker.consume(reader, guard).await?;
    }
    callgrind_mark("consumed");
    let side = reader.map_or("none", |r| r.flag());
    Ok(json!({ "measurement": "kafka_consume_only", "side": side, "messages": messages }))
}

/// Where `valgrind --tool=callgrind --dump-before='*callgrind_mark*'` ends one part of the count
/// (every thread's instructions up to here) and starts the next; nothing otherwise.
#[inline(never)]
fn callgrind_mark(stage: &str) {
    std::hint::black_box(stage);
}

/// `all`, starting with the `run`th (and on from the first after the last).
fn in_turn<T: Copy>(all: &[T], run: usize) -> impl Iterator<Item = T> + '_ {
    all.iter().cycle().skip(run).take(all.len()).copied()
}

/// Runs `f(0..n)`, at most `in_flight` at once; the rate of the whole.
async fn concurrently<F, Fut>(n: usize, in_flight: usize, f: F) -> Result<f64, Failure>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let started = std::time::Instant::now();
    futures_util::stream::iter(0..n)
        .map(f)
        .buffer_unordered(in_flight)
        .try_for_each(|()| async { Ok(()) })
        .await?;
    Ok(rate(n, started.elapsed()))
}

/// The header the raw clients write and read the token in, by hand.
const AUTHORIZATION: &str = "Authorization";

/// The header value a raw client writes by hand.
fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Who publishes or consumes the messages of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The raw client. Publishing, it writes the token header by hand; consuming, it reads and
    /// acks (or stores the offset), and nothing more.
    Raw,
    /// The raw client, doing by hand the least of what jwt-relay does beyond it. Consuming: the
    /// token read from its header and verified in place, one message at a time, before the ack
    /// (the least a consumer that checks identity does). Publishing on RabbitMQ: `mandatory`,
    /// so that an unroutable message comes back instead of vanishing (the other brokers' raw
    /// publishers already wait for the same acks as jwt-relay's).
    ByHand,
    /// jwt-relay's publisher or consumer.
    JwtRelay,
}

impl Side {
    const ALL: [Side; 3] = [Side::Raw, Side::ByHand, Side::JwtRelay];

    /// Its value for `--instructions`.
    fn flag(self) -> &'static str {
        match self {
            Side::Raw => "raw",
            Side::ByHand => "by-hand",
            Side::JwtRelay => "jwt-relay",
        }
    }

    fn name(self, operation: &str) -> &'static str {
        match (self, operation) {
            (Side::Raw, _) => "raw",
            (Side::ByHand, "publish") => "raw, mandatory by hand",
            (Side::ByHand, _) => "raw, checked by hand",
            (Side::JwtRelay, _) => "jwt-relay",
        }
    }
}

/// A hand-written consumer's check of one message: its `Authorization` header's bearer token,
/// verified (through `verifier`'s cache, as the jwt-relay consumer's is).
async fn check_by_hand(verifier: &Verifier, value: Option<&[u8]>) -> Result<(), Failure> {
    let value = value.ok_or("a message without an Authorization header")?;
    let token = std::str::from_utf8(value)?
        .strip_prefix("Bearer ")
        .ok_or("an Authorization header without a bearer token")?;
    verifier.verify(token).await?;
    Ok(())
}

/// A name no other run or measurement uses.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether something answers at the host and port of `address` (a URL or `host:port`).
fn reachable(address: &str) -> Result<(), String> {
    let authority = address.split("://").last().unwrap_or(address);
    let authority = authority.split('/').next().unwrap_or(authority);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let addrs: Vec<_> = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .collect();
    for addr in &addrs {
        if TcpStream::connect_timeout(addr, Duration::from_secs(2)).is_ok() {
            return Ok(());
        }
    }
    Err(format!("nothing answers at {authority}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic_in_result_fn)]
    use super::*;

    #[tokio::test]
    async fn the_check_by_hand_verifies_the_bearer_token_and_refuses_anything_else() -> Result<(), Failure> {
        let keys = Keys::generate()?;
        let verifier = keys.verifier_with_cache(10)?;
        let token = keys.token(Algorithm::ES256, "alice")?;
        check_by_hand(&verifier, Some(bearer(&token).as_bytes())).await?;
        assert!(check_by_hand(&verifier, None).await.is_err(), "no header");
        assert!(
            check_by_hand(&verifier, Some(token.as_bytes())).await.is_err(),
            "no Bearer prefix"
        );
        // A character in the middle of the signature, changed.
        let at = token.len() - 10;
        let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
        let forged = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
        assert!(
            check_by_hand(&verifier, Some(bearer(&forged).as_bytes()))
                .await
                .is_err(),
            "a bad signature"
        );
        Ok(())
    }
}
