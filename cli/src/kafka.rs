//! `jwt-relay kafka publish|consume`: the Kafka adapter from the command line.

use std::convert::Infallible;
use std::time::Duration;

use jwt_relay::{EventOutcome, Propagator};
use jwt_relay_kafka::rdkafka::ClientConfig;
use jwt_relay_kafka::rdkafka::message::{Header, OwnedHeaders};
use jwt_relay_kafka::rdkafka::producer::FutureRecord;
use jwt_relay_kafka::{Consumer, DeadLetter, Event, Publisher};
use serde::Serialize;

use crate::duration::parse_duration;
use crate::guard_args::GuardArgs;
use crate::lines::{Outcomes, TokenLines, ctrl_c, json, parse_header};
use crate::{Failure, print_line};

/// `jwt-relay kafka …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Send one record per token read from stdin (one token per line), waiting for each
    /// acknowledgement; print one JSON line per record.
    Publish(PublishArgs),
    /// Consume a topic through the guard, with the library's offset storing, retries and
    /// dead-lettering; print one JSON line per record.
    Consume(Box<ConsumeArgs>),
}

/// Options of `jwt-relay kafka publish`.
#[derive(Debug, clap::Args)]
pub(crate) struct PublishArgs {
    /// The bootstrap brokers, for example 127.0.0.1:9092.
    #[arg(long, env = "KAFKA_BROKERS", value_name = "HOST:PORT,…")]
    brokers: String,
    /// The topic.
    #[arg(long, value_name = "TOPIC")]
    topic: String,
    /// The record key.
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// A header `name=value`, repeatable. The token header is written last.
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// The record value.
    #[arg(long, value_name = "TEXT")]
    payload: String,
}

/// Options of `jwt-relay kafka consume`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConsumeArgs {
    /// The bootstrap brokers, for example 127.0.0.1:9092.
    #[arg(long, env = "KAFKA_BROKERS", value_name = "HOST:PORT,…")]
    brokers: String,
    /// The topic to consume.
    #[arg(long, value_name = "TOPIC")]
    topic: String,
    /// The consumer group (a new group starts at the earliest offset).
    #[arg(long, value_name = "GROUP")]
    group: String,
    /// The dead-letter topic (default `<topic>.dlq`).
    #[arg(long, value_name = "TOPIC")]
    dlq: Option<String>,
    /// Stop after this many records were settled (handled or dead-lettered).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// How often the offsets of settled records are committed (`auto.commit.interval.ms`).
    /// A process killed without a clean close leaves the records it settled since its last
    /// commit to be handled again by the partitions' next owner. A clean stop or a rebalance
    /// commits first, and hands nothing over twice.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    commit_interval: Duration,
    /// A librdkafka setting, repeatable: `-X session.timeout.ms=10000`,
    /// `-X partition.assignment.strategy=cooperative-sticky`.
    #[arg(short = 'X', long = "config", value_name = "NAME=VALUE", value_parser = parse_header)]
    config: Vec<(String, String)>,
    #[command(flatten)]
    guard: GuardArgs,
}

/// Runs a `kafka` subcommand.
pub(crate) async fn run(command: &Command) -> Result<bool, Failure> {
    match command {
        Command::Publish(args) => publish(args).await,
        Command::Consume(args) => consume(args).await,
    }
}

/// One line of `publish`.
#[derive(Debug, Serialize)]
struct Published<'a> {
    published: bool,
    topic: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// Sends one record per stdin line. `Ok(true)` when every one was acknowledged.
async fn publish(args: &PublishArgs) -> Result<bool, Failure> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &args.brokers);
    let producer =
        Publisher::from_config(&config, Propagator::default()).map_err(|e| Failure::new(e.to_string()))?;
    let mut tokens = TokenLines::stdin();
    let mut all_published = true;
    while let Some(token) = tokens.next().await? {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &args.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record = FutureRecord::<str, str>::to(&args.topic)
            .payload(&args.payload)
            .headers(headers);
        record.key = args.key.as_deref();
        // The token as given, valid or not: this is a tool to replay tokens.
        let result = producer.send_with_token(record, Some(&token)).await;
        all_published &= result.is_ok();
        let line = match &result {
            Ok(delivery) => Published {
                published: true,
                topic: &args.topic,
                partition: Some(delivery.partition),
                offset: Some(delivery.offset),
                kind: None,
                error: None,
            },
            Err(e) => Published {
                published: false,
                topic: &args.topic,
                partition: None,
                offset: None,
                kind: Some(format!("{:?}", e.kind())),
                error: Some(e.message()),
            },
        };
        print_line(json(&line)?)?;
    }
    Ok(all_published)
}

/// One line of `consume`.
#[derive(Debug, Serialize)]
struct Consumed<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    outcome: &'static str,
    sub: Option<&'a str>,
    kind: Option<&'static str>,
    class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// Consumes until `--count` records or Ctrl-C. `Ok(true)` when none was dead-lettered.
async fn consume(args: &ConsumeArgs) -> Result<bool, Failure> {
    let guard = args.guard.build()?;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", &args.group)
        .set("auto.offset.reset", "earliest")
        .set(
            "auto.commit.interval.ms",
            args.commit_interval.as_millis().to_string(),
        );
    for (name, value) in &args.config {
        config.set(name, value);
    }
    let mut builder = Consumer::builder(&config, guard).topic(args.topic.as_str());
    if let Some(dlq) = &args.dlq {
        builder = builder.dead_letter(DeadLetter::topic(dlq.as_str()));
    }
    if let Some(count) = args.count {
        builder = builder.limit(count);
    }
    let outcomes = Outcomes::default();
    let printer = outcomes.clone();
    let consumer = builder
        .on_event(move |event: &Event<'_>| {
            if let Some(line) = consumed(event) {
                printer.print(&line, line.outcome == "dead-lettered");
            }
        })
        .build()
        .map_err(|e| Failure::new(e.to_string()))?;
    consumer
        .run(|_| async { Ok::<(), Infallible>(()) }, ctrl_c())
        .await
        .map_err(|e| Failure::new(e.to_string()))?;
    outcomes.verdict()
}

/// The JSON line of an event (none for a halt: the run returns it). Never holds the token.
fn consumed<'a>(event: &'a Event<'a>) -> Option<Consumed<'a>> {
    let (outcome, sub, error) = match &event.outcome {
        EventOutcome::Accepted(context) => ("accepted", context.subject(), None),
        EventOutcome::Rejected { reason, .. } => ("dead-lettered", None, Some(*reason)),
        EventOutcome::Retry { reason, .. } | EventOutcome::HandlerFailed { reason, .. } => {
            ("retry", None, Some(*reason))
        }
        _ => return None,
    };
    let jwt_relay::consume::Position::Offset { partition, offset } = event.position else {
        return None;
    };
    Some(Consumed {
        topic: event.destination,
        partition,
        offset,
        outcome,
        sub,
        kind: error.map(|e| e.kind().as_str()),
        class: error.map(|e| e.class().as_str()),
        error: error.map(jwt_relay::Error::message),
    })
}
