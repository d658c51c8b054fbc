//! `jwt-relay nats publish|consume|serve-echo`: the NATS adapter from the command line.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jwt_relay::{Guard, Propagator};
use jwt_relay_nats::async_nats::jetstream::{self, consumer::PullConsumer, consumer::pull};
use jwt_relay_nats::async_nats::service::ServiceExt as _;
use jwt_relay_nats::async_nats::{self, HeaderMap, HeaderName, HeaderValue};
use jwt_relay_nats::{
    Consumer, Event, EventOutcome, JetStreamConsumer, NatsHeaders, NatsService, Received, ServiceError,
    ServiceRequest, bytes::Bytes,
};
use serde::Serialize;
use tokio::sync::Notify;

use crate::guard_args::GuardArgs;
use crate::lines::{Outcomes, TokenLines, json, parse_header};
use crate::{Failure, print_line};

/// `jwt-relay nats …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Publish one message per token read from stdin (one token per line); print one JSON line
    /// per message.
    Publish(PublishArgs),
    /// Consume a subject (core NATS) or a JetStream pull consumer through the guard, with the
    /// library's acks and dead-lettering; print one JSON line per message.
    Consume(Box<ConsumeArgs>),
    /// Serve a verified echo service (NATS micro) on a subject: requests with a refused token
    /// get a 401 error reply; print one JSON line per request.
    ServeEcho(Box<ServeEchoArgs>),
}

/// A NATS URL: `Debug` hides its credentials.
#[derive(Clone)]
pub(crate) struct NatsUrl(String);

impl fmt::Debug for NatsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.split_once('@') {
            Some((scheme_and_user, host)) => {
                let scheme = scheme_and_user.split_once("://").map_or("nats", |(s, _)| s);
                write!(f, "\"{scheme}://[redacted]@{host}\"")
            }
            None => fmt::Debug::fmt(&self.0, f),
        }
    }
}

fn parse_url(text: &str) -> Result<NatsUrl, String> {
    let schemes = ["nats://", "tls://", "ws://", "wss://"];
    if schemes.iter().any(|s| text.starts_with(s)) || !text.contains("://") {
        Ok(NatsUrl(text.to_owned()))
    } else {
        Err("a NATS URL starts with nats://, tls://, ws:// or wss:// (or is host:port)".to_owned())
    }
}

/// Options of `jwt-relay nats publish`.
#[derive(Debug, clap::Args)]
pub(crate) struct PublishArgs {
    /// The server, for example nats://127.0.0.1:4222.
    #[arg(long, env = "NATS_URL", hide_env_values = true, value_name = "NATS_URL", value_parser = parse_url)]
    url: NatsUrl,
    /// The subject.
    #[arg(long, value_name = "SUBJECT")]
    subject: String,
    /// Publish to JetStream and wait for each message's store ack.
    #[arg(long)]
    jetstream: bool,
    /// A header `name=value`, repeatable. The token header is written last.
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// The message body.
    #[arg(long, value_name = "TEXT")]
    payload: String,
}

/// Options of `jwt-relay nats consume`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConsumeArgs {
    /// The server, for example nats://127.0.0.1:4222.
    #[arg(long, env = "NATS_URL", hide_env_values = true, value_name = "NATS_URL", value_parser = parse_url)]
    url: NatsUrl,
    /// Subscribe to this subject (core NATS).
    #[arg(long, value_name = "SUBJECT", required_unless_present = "stream", conflicts_with_all = ["stream", "consumer"])]
    subject: Option<String>,
    /// With --subject: join this queue group.
    #[arg(long, value_name = "GROUP", requires = "subject")]
    queue_group: Option<String>,
    /// Consume this JetStream stream (with --consumer).
    #[arg(long, value_name = "STREAM", requires = "consumer")]
    stream: Option<String>,
    /// The durable pull consumer of --stream.
    #[arg(long, value_name = "CONSUMER", requires = "stream")]
    consumer: Option<String>,
    /// With --stream: create the durable pull consumer if it does not exist.
    #[arg(long, requires = "stream")]
    create_consumer: bool,
    /// Where rejected messages are copied, without the token: JetStream default `<subject>.dlq`;
    /// core NATS: no copy unless given.
    #[arg(long, value_name = "SUBJECT")]
    dlq: Option<String>,
    /// Stop after this many messages.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    #[command(flatten)]
    guard: GuardArgs,
}

/// Options of `jwt-relay nats serve-echo`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeEchoArgs {
    /// The server, for example nats://127.0.0.1:4222.
    #[arg(long, env = "NATS_URL", hide_env_values = true, value_name = "NATS_URL", value_parser = parse_url)]
    url: NatsUrl,
    /// The subject the echo endpoint listens on.
    #[arg(long, value_name = "SUBJECT")]
    subject: String,
    /// The service's name, as NATS micro shows it.
    #[arg(long, value_name = "NAME", default_value = "jwt-relay-echo")]
    name: String,
    /// Stop after this many requests.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    #[command(flatten)]
    guard: GuardArgs,
}

/// Runs a `nats` subcommand.
pub(crate) async fn run(command: &Command) -> Result<bool, Failure> {
    match command {
        Command::Publish(args) => publish(args).await,
        Command::Consume(args) => consume(args).await,
        Command::ServeEcho(args) => serve_echo(args).await,
    }
}

/// One line of `publish`.
#[derive(Debug, Serialize)]
struct Published<'a> {
    published: bool,
    subject: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Publishes one message per stdin line. `Ok(true)` when every one was sent (and stored, with
/// `--jetstream`).
async fn publish(args: &PublishArgs) -> Result<bool, Failure> {
    let mut base = HeaderMap::new();
    for (name, value) in &args.headers {
        let name: HeaderName = name
            .parse()
            .map_err(|_| Failure::new(format!("`{name}` is not a NATS header name")))?;
        let value: HeaderValue = value
            .parse()
            .map_err(|_| Failure::new(format!("the value of `{name}` holds a line break")))?;
        base.append(name, value);
    }
    let client = connect(&args.url).await?;
    let js = jetstream::new(client.clone());
    let propagator = Propagator::default();
    let mut tokens = TokenLines::stdin();
    let mut all_published = true;
    while let Some(token) = tokens.next().await? {
        let token = token.as_str();
        let mut headers = base.clone();
        let mut published = Published {
            published: false,
            subject: &args.subject,
            stream: None,
            stream_seq: None,
            error: None,
        };
        // The token as given, valid or not: this is a tool to replay tokens.
        match propagator.write(&mut NatsHeaders(&mut headers), Some(token)) {
            Err(e) => published.error = Some(e.message().to_owned()),
            Ok(()) if args.jetstream => {
                let stored = async {
                    js.publish_with_headers(args.subject.clone(), headers, args.payload.clone().into())
                        .await?
                        .await
                };
                match stored.await {
                    Ok(ack) => {
                        published.published = true;
                        published.stream = Some(ack.stream);
                        published.stream_seq = Some(ack.sequence);
                    }
                    Err(e) => published.error = Some(e.to_string()),
                }
            }
            Ok(()) => {
                let sent = client
                    .publish_with_headers(args.subject.clone(), headers, args.payload.clone().into())
                    .await;
                match sent {
                    Ok(()) => published.published = true,
                    Err(e) => published.error = Some(e.to_string()),
                }
            }
        }
        all_published &= published.published;
        print_line(json(&published)?)?;
    }
    client
        .flush()
        .await
        .map_err(|e| Failure::new(format!("cannot flush to the server: {e}")))?;
    Ok(all_published)
}

/// One line of `consume` and `serve-echo`. Never holds the token.
#[derive(Debug, Serialize)]
struct Consumed<'a> {
    subject: &'a str,
    stream_seq: Option<u64>,
    outcome: &'static str,
    sub: Option<&'a str>,
    kind: Option<&'static str>,
    class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// The JSON line of an event; `None` for a handler failure (the handlers here never fail).
fn consumed<'a>(event: &Event<'a>) -> Option<Consumed<'a>> {
    let (outcome, sub, error) = match &event.outcome {
        EventOutcome::Accepted(context) => ("accepted", context.subject(), None),
        EventOutcome::Rejected {
            reason,
            dead_letter: Some(_),
        } => ("dead-lettered", None, Some(*reason)),
        EventOutcome::Rejected { reason, .. } => ("rejected", None, Some(*reason)),
        EventOutcome::Retry { reason, .. } => ("retry", None, Some(*reason)),
        EventOutcome::Halted(reason) => ("halted", None, Some(*reason)),
        _ => return None,
    };
    Some(Consumed {
        subject: event.subject,
        stream_seq: match event.position {
            jwt_relay::consume::Position::Sequence { sequence, .. } => Some(sequence),
            _ => None,
        },
        outcome,
        sub,
        kind: error.map(|e| e.kind().as_str()),
        class: error.map(|e| e.class().as_str()),
        error: error.map(jwt_relay::Error::message),
    })
}

/// Prints events as JSON lines, stops the run after `count` of them, and remembers whether any
/// message was refused and whether stdout broke.
#[derive(Clone)]
struct Printer {
    count: Option<u64>,
    printed: Arc<AtomicU64>,
    outcomes: Outcomes,
    done: Arc<Notify>,
}

impl Printer {
    fn new(count: Option<u64>) -> Self {
        Printer {
            count,
            printed: Arc::default(),
            outcomes: Outcomes::default(),
            done: Arc::default(),
        }
    }

    fn print(&self, event: &Event<'_>) {
        let Some(line) = consumed(event) else { return };
        if !self.outcomes.print(&line, line.outcome != "accepted") {
            self.done.notify_one();
        }
        let printed = self.printed.fetch_add(1, Ordering::Relaxed) + 1;
        if self.count.is_some_and(|n| printed >= n) {
            self.done.notify_one();
        }
    }

    /// Completes on Ctrl-C, after `count` events, or when stdout breaks.
    async fn shutdown(self) {
        if self.count == Some(0) {
            return;
        }
        tokio::select! {
            () = self.done.notified() => {}
            signal = tokio::signal::ctrl_c() => {
                // Without a signal handler, Ctrl-C ends the process; unacked messages go back.
                if signal.is_err() {
                    self.done.notified().await;
                }
            }
        }
    }

    /// `Ok(true)` when every message was accepted.
    fn verdict(&self) -> Result<bool, Failure> {
        self.outcomes.verdict()
    }
}

/// Consumes until `--count` messages or Ctrl-C. `Ok(true)` when every message was accepted.
async fn consume(args: &ConsumeArgs) -> Result<bool, Failure> {
    let guard = args.guard.build()?;
    let client = connect(&args.url).await?;
    let printer = Printer::new(args.count);
    let shutdown = printer.clone().shutdown();
    let on_event = {
        let printer = printer.clone();
        move |event: &Event<'_>| printer.print(event)
    };
    let accept = |_: Received| async { Ok::<(), std::convert::Infallible>(()) };
    let ran = match (&args.subject, &args.stream, &args.consumer) {
        (Some(subject), _, _) => {
            let mut subscriber = Consumer::new(client.clone(), guard).on_event(on_event);
            if let Some(group) = &args.queue_group {
                subscriber = subscriber.queue_group(group);
            }
            if let Some(dlq) = &args.dlq {
                subscriber = subscriber.dead_letter(jwt_relay_nats::DeadLetter::subject(dlq));
            }
            let subscription = subscriber
                .subscribe(subject)
                .await
                .map_err(|e| Failure::new(e.to_string()))?;
            subscription.run(accept, shutdown).await
        }
        (None, Some(stream), Some(consumer)) => {
            let consumer = pull_consumer(&client, stream, consumer, args.create_consumer).await?;
            let mut consumer = JetStreamConsumer::new(consumer, guard).on_event(on_event);
            if let Some(dlq) = &args.dlq {
                consumer = consumer.dead_letter(jwt_relay_nats::DeadLetter::subject(dlq));
            }
            consumer.run(accept, shutdown).await
        }
        _ => return Err(Failure::new("give --subject, or --stream and --consumer")),
    };
    ran.map_err(|e| Failure::new(e.to_string()))?;
    // Dead-letter copies and acks are sent; make sure they left.
    let _ = client.flush().await;
    printer.verdict()
}

/// The durable pull consumer `name` of `stream`, created first when asked.
async fn pull_consumer(
    client: &async_nats::Client,
    stream: &str,
    name: &str,
    create: bool,
) -> Result<PullConsumer, Failure> {
    let js = jetstream::new(client.clone());
    let stream_handle = js
        .get_stream(stream)
        .await
        .map_err(|e| Failure::new(format!("cannot find stream `{stream}`: {e}")))?;
    let found = if create {
        let config = pull::Config {
            durable_name: Some(name.to_owned()),
            ..Default::default()
        };
        stream_handle
            .get_or_create_consumer(name, config)
            .await
            .map_err(|e| e.to_string())
    } else {
        stream_handle.get_consumer(name).await.map_err(|e| e.to_string())
    };
    found.map_err(|e| Failure::new(format!("cannot get consumer `{name}` of stream `{stream}`: {e}")))
}

/// Serves echo requests until `--count` requests or Ctrl-C. `Ok(true)` when every request was
/// answered by the handler.
async fn serve_echo(args: &ServeEchoArgs) -> Result<bool, Failure> {
    let guard: Guard = args.guard.build()?;
    let client = connect(&args.url).await?;
    let service = client
        .service_builder()
        .description("echoes the payload of requests whose token verifies (jwt-relay)")
        .start(&args.name, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| Failure::new(format!("cannot start the service `{}`: {e}", args.name)))?;
    let endpoint = service
        .endpoint(&args.subject)
        .await
        .map_err(|e| Failure::new(format!("cannot add the endpoint `{}`: {e}", args.subject)))?;
    let printer = Printer::new(args.count);
    let shutdown = printer.clone().shutdown();
    let on_event = {
        let printer = printer.clone();
        move |event: &Event<'_>| printer.print(event)
    };
    let echo = |request: ServiceRequest| async move { Ok::<Bytes, ServiceError>(request.payload().clone()) };
    let served = NatsService::new(client.clone(), guard)
        .on_event(on_event)
        .serve_endpoint(&args.subject, endpoint, echo, shutdown)
        .await;
    // The replies are sent; the service's own stop is best effort.
    let _ = client.flush().await;
    let _ = service.stop().await;
    served.map_err(|e| Failure::new(e.to_string()))?;
    printer.verdict()
}

async fn connect(url: &NatsUrl) -> Result<async_nats::Client, Failure> {
    async_nats::connect(url.0.as_str())
        .await
        .map_err(|e| Failure::new(format!("cannot connect to {url:?}: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn urls_hide_their_credentials() {
        let url = parse_url("nats://user:hunter2@127.0.0.1:4222").unwrap();
        let shown = format!("{url:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("127.0.0.1:4222"));
        assert!(parse_url("http://x").is_err());
        assert!(parse_url("127.0.0.1:4222").is_ok());
    }
}
