//! `jwt-relay rabbitmq publish|consume`: the RabbitMQ adapter from the command line.

use std::convert::Infallible;
use std::fmt;

use jwt_relay::Propagator;
use jwt_relay_rabbitmq::lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use jwt_relay_rabbitmq::lapin::{BasicProperties, Connection, ConnectionProperties};
use jwt_relay_rabbitmq::{
    Connector, Consumer, DeadLetter, Event, EventOutcome, Position, Publisher, Topology,
};
use serde::Serialize;

use crate::guard_args::GuardArgs;
use crate::lines::{Outcomes, TokenLines, ctrl_c, json, parse_header};
use crate::{Failure, print_line};

/// `jwt-relay rabbitmq …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Publish one message per token read from stdin (one token per line), waiting for each
    /// confirm; print one JSON line per message.
    Publish(PublishArgs),
    /// Consume a queue through the guard, with the library's acks, retries and dead-lettering;
    /// print one JSON line per message.
    Consume(Box<ConsumeArgs>),
}

/// An AMQP URL: `Debug` hides its credentials.
#[derive(Clone)]
pub(crate) struct AmqpUrl(String);

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&Connector::new(self.0.as_str()), f)
    }
}

fn parse_url(text: &str) -> Result<AmqpUrl, String> {
    if text.starts_with("amqp://") || text.starts_with("amqps://") {
        Ok(AmqpUrl(text.to_owned()))
    } else {
        Err("an AMQP URL starts with amqp:// or amqps://".to_owned())
    }
}

/// Options of `jwt-relay rabbitmq publish`.
#[derive(Debug, clap::Args)]
pub(crate) struct PublishArgs {
    /// The broker, for example amqp://guest:guest@127.0.0.1:5672/%2f.
    #[arg(long, env = "AMQP_ADDR", hide_env_values = true, value_name = "AMQP_URL", value_parser = parse_url)]
    url: AmqpUrl,
    /// The exchange (default: the default exchange, where the routing key names a queue).
    #[arg(long, value_name = "EXCHANGE", default_value = "")]
    exchange: String,
    /// The routing key.
    #[arg(long, value_name = "KEY")]
    routing_key: String,
    /// A header `name=value` (a long string), repeatable. The token header is written last.
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// The message body.
    #[arg(long, value_name = "TEXT")]
    payload: String,
}

/// Options of `jwt-relay rabbitmq consume`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConsumeArgs {
    /// The broker, for example amqp://guest:guest@127.0.0.1:5672/%2f.
    #[arg(long, env = "AMQP_ADDR", hide_env_values = true, value_name = "AMQP_URL", value_parser = parse_url)]
    url: AmqpUrl,
    /// The queue to consume.
    #[arg(long, value_name = "QUEUE")]
    queue: String,
    /// The dead-letter queue (default `<queue>.dlq`).
    #[arg(long, value_name = "QUEUE")]
    dlq: Option<String>,
    /// The retry queue (default `<queue>.retry`).
    #[arg(long, value_name = "QUEUE")]
    retry_queue: Option<String>,
    /// Stop after this many messages.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// How many messages are handled at once.
    #[arg(long, value_name = "N", default_value_t = 10)]
    prefetch: u16,
    /// Declare the queue, its dead-letter exchange and queue and its retry queue first.
    #[arg(long)]
    declare: bool,
    #[command(flatten)]
    guard: GuardArgs,
}

/// Runs a `rabbitmq` subcommand.
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
    exchange: &'a str,
    routing_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// Publishes one message per stdin line. `Ok(true)` when every one was confirmed.
async fn publish(args: &PublishArgs) -> Result<bool, Failure> {
    let mut headers = FieldTable::default();
    for (name, value) in &args.headers {
        let name = ShortString::try_new(name.as_str())
            .map_err(|_| Failure::new(format!("the header name `{name}` is longer than 255 bytes")))?;
        headers.insert(name, AMQPValue::LongString(LongString::from(value.as_str())));
    }
    let connection = connect(&args.url).await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| Failure::new(format!("cannot open a channel: {e}")))?;
    let publisher = Publisher::new(channel, Propagator::default())
        .await
        .map_err(|e| Failure::new(e.to_string()))?;
    let mut tokens = TokenLines::stdin();
    let mut all_published = true;
    while let Some(token) = tokens.next().await? {
        let token = token.as_str();
        let properties = BasicProperties::default().with_headers(headers.clone());
        let result = publisher
            .publish_with_token(
                &args.exchange,
                &args.routing_key,
                args.payload.as_bytes(),
                properties,
                Some(token),
            )
            .await;
        all_published &= result.is_ok();
        let (kind, error) = match &result {
            Ok(()) => (None, None),
            Err(e) => (Some(format!("{:?}", e.kind())), Some(e.message())),
        };
        let published = Published {
            published: result.is_ok(),
            exchange: &args.exchange,
            routing_key: &args.routing_key,
            kind,
            error,
        };
        print_line(json(&published)?)?;
    }
    close(&connection).await;
    Ok(all_published)
}

/// One line of `consume`.
#[derive(Debug, Serialize)]
struct Consumed<'a> {
    queue: &'a str,
    delivery_tag: Option<u64>,
    outcome: &'static str,
    sub: Option<&'a str>,
    kind: Option<&'static str>,
    class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// Consumes until `--count` messages or Ctrl-C. `Ok(true)` when none was dead-lettered.
async fn consume(args: &ConsumeArgs) -> Result<bool, Failure> {
    let guard = args.guard.build()?;
    let queue = args.queue.as_str();
    let dlq = args.dlq.clone().unwrap_or_else(|| format!("{queue}.dlq"));
    let retry_queue = args
        .retry_queue
        .clone()
        .unwrap_or_else(|| format!("{queue}.retry"));
    if args.declare {
        let connection = connect(&args.url).await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| Failure::new(format!("cannot open a channel: {e}")))?;
        Topology::new(queue)
            .dead_letter_queue(dlq.as_str())
            .retry_queue(retry_queue.as_str())
            .declare(&channel)
            .await
            .map_err(|e| Failure::new(format!("cannot declare `{queue}` and its queues: {e}")))?;
        close(&connection).await;
    }
    let mut builder = Consumer::builder(Connector::new(args.url.0.as_str()), queue, guard)
        .prefetch(args.prefetch)
        .dead_letter(DeadLetter::queue(dlq))
        .retry_queue(retry_queue);
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
        .build();
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
        EventOutcome::Rejected {
            reason,
            dead_letter: Some(_),
        } => ("dead-lettered", None, Some(*reason)),
        // Already a dead-lettered copy: acknowledged without another.
        EventOutcome::Rejected { reason, .. } => ("rejected", None, Some(*reason)),
        EventOutcome::Retry { reason, .. } | EventOutcome::HandlerFailed { reason, .. } => {
            ("retry", None, Some(*reason))
        }
        _ => return None,
    };
    let delivery_tag = match event.position {
        Position::DeliveryTag(tag) => Some(tag),
        _ => None,
    };
    Some(Consumed {
        queue: event.destination,
        delivery_tag,
        outcome,
        sub,
        kind: error.map(|e| e.kind().as_str()),
        class: error.map(|e| e.class().as_str()),
        error: error.map(jwt_relay::Error::message),
    })
}

async fn connect(url: &AmqpUrl) -> Result<Connection, Failure> {
    Connection::connect(&url.0, ConnectionProperties::default())
        .await
        .map_err(|e| Failure::new(format!("cannot connect to {url:?}: {e}")))
}

async fn close(connection: &Connection) {
    // The work is done and confirmed; a failed close changes nothing.
    let _ = connection.close(200, ShortString::from("OK")).await;
}
