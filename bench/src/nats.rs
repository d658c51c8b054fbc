//! NATS: async-nats against jwt-relay's publishers and consumers, on core NATS (publish, and a
//! subscription fed by a second connection) and on JetStream (acked publishes, and a pull
//! consumer acking each message).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;
use jwt_relay::{AuthContext, Guard, Propagator};
use jwt_relay_nats::async_nats::jetstream::consumer::{PullConsumer, pull};
use jwt_relay_nats::async_nats::jetstream::{self, stream};
use jwt_relay_nats::async_nats::{self, Client, HeaderMap};
use jwt_relay_nats::{Consumer, JetStreamConsumer, JetStreamPublisher, Publisher};
use tokio::sync::Notify;

use crate::instances::{Running, Tally, counting};
use crate::measure::{Progress, numbered_payload, payload, rate};
use crate::{AUTHORIZATION, Failure, IN_FLIGHT, Side, bearer, check_by_hand, concurrently, unique};

fn headers_with(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, bearer(token).as_str());
    headers
}

/// The `Authorization` header's value, as a hand-written consumer reads it.
fn authorization(message: &async_nats::Message) -> Option<&[u8]> {
    let value = message.headers.as_ref()?.get(AUTHORIZATION)?;
    Some(value.as_str().as_bytes())
}

/// Publishes one message per token on `client` to `subject`, headers written by hand.
async fn publish_raw(client: &Client, subject: &str, tokens: &[String]) -> Result<(), Failure> {
    let body = bytes_of(payload());
    for token in tokens {
        client
            .publish_with_headers(subject.to_owned(), headers_with(token), body.clone())
            .await?;
    }
    client.flush().await?;
    Ok(())
}

fn bytes_of(body: Vec<u8>) -> jwt_relay_nats::bytes::Bytes {
    body.into()
}

/// Stops a consumer once `count` messages are settled.
fn stop_after(
    count: usize,
    progress: &Arc<Progress>,
    done: &Arc<Notify>,
) -> impl Fn() + Send + Sync + 'static {
    let (progress, done) = (progress.clone(), done.clone());
    move || {
        if progress.tick() >= count {
            done.notify_one();
        }
    }
}

/// A core NATS consume run in which not every message arrived: core NATS keeps nothing (at most
/// once), so the run is measured again rather than failing the whole harness.
#[derive(Debug)]
pub(crate) struct Lost {
    what: String,
    /// What the two clients reported meanwhile (disconnects, slow consumers).
    events: Vec<String>,
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; client events: {:?}", self.what, self.events)
    }
}

impl std::error::Error for Lost {}

pub(crate) struct NatsCore {
    client: Client,
    /// What both connections reported, since the last consume run began.
    events: Arc<Mutex<Vec<String>>>,
    /// A second connection, publishing while the first consumes.
    feeder: Client,
    wrapped: Publisher,
    tokens: Mutex<Vec<String>>,
}

impl NatsCore {
    pub(crate) async fn connect(url: &str) -> Result<NatsCore, Failure> {
        let events = Arc::new(Mutex::new(Vec::new()));
        let connect = |name: &'static str| {
            let events = events.clone();
            async_nats::ConnectOptions::new()
                .event_callback(move |event| {
                    let events = events.clone();
                    async move {
                        let mut events = events.lock().unwrap_or_else(|p| p.into_inner());
                        events.push(format!("{name}: {event}"));
                    }
                })
                .connect(url)
        };
        let client = connect("subscriber").await?;
        Ok(NatsCore {
            wrapped: Publisher::new(client.clone(), Propagator::default()),
            client,
            events: events.clone(),
            feeder: connect("feeder").await?,
            tokens: Mutex::new(Vec::new()),
        })
    }

    fn lost(&self, what: String) -> Failure {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Box::new(Lost { what, events })
    }

    pub(crate) fn name(&self) -> &'static str {
        "nats (core)"
    }

    /// Publishes one message per token (nobody subscribes), then flushes.
    pub(crate) async fn publish(
        &self,
        wrapped: bool,
        tokens: &[String],
        contexts: &[AuthContext],
    ) -> Result<f64, Failure> {
        let subject = unique("bench.publish");
        let started = std::time::Instant::now();
        if wrapped {
            let body = bytes_of(payload());
            for context in contexts {
                self.wrapped
                    .publish(&subject, HeaderMap::new(), body.clone(), Some(context))
                    .await?;
            }
            self.client.flush().await?;
        } else {
            publish_raw(&self.client, &subject, tokens).await?;
        }
        Ok(rate(tokens.len(), started.elapsed()))
    }

    pub(crate) async fn prepare(&self, tokens: &[String]) -> Result<(), Failure> {
        *self.tokens.lock().unwrap_or_else(|p| p.into_inner()) = tokens.to_vec();
        Ok(())
    }

    /// Subscribes, then has the second connection publish every message.
    pub(crate) async fn consume(&self, reader: Side, guard: Guard) -> Result<f64, Failure> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let count = tokens.len();
        let subject = unique("bench.consume");
        self.events.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let progress = Arc::new(Progress::default());
        let done = Arc::new(Notify::new());
        let feed = || {
            let (feeder, subject, tokens) = (self.feeder.clone(), subject.clone(), tokens.clone());
            tokio::spawn(async move {
                publish_raw(&feeder, &subject, &tokens)
                    .await
                    .map_err(|e| e.to_string())
            })
        };
        if reader == Side::JwtRelay {
            let settled = stop_after(count, &progress, &done);
            let subscription = Consumer::new(self.client.clone(), guard)
                .on_event(move |_| settled())
                .subscribe(&subject)
                .await?;
            self.client.flush().await?;
            let fed = feed();
            let waiting = done.clone();
            let report = tokio::time::timeout(
                crate::tokens::PATIENCE,
                subscription.run(|_| async { Ok::<(), Infallible>(()) }, async move {
                    waiting.notified().await
                }),
            )
            .await
            .map_err(|_| {
                self.lost(format!(
                    "the subscriber settled {} of {count} messages in time",
                    progress.tick() - 1
                ))
            })??;
            fed.await??;
            if report.accepted != count as u64 {
                return Err(format!("{} of {count} messages accepted: {report:?}", report.accepted).into());
            }
        } else {
            let mut subscriber = self.client.subscribe(subject.clone()).await?;
            self.client.flush().await?;
            let fed = feed();
            let read = async {
                while let Some(message) = subscriber.next().await {
                    if reader == Side::ByHand {
                        check_by_hand(guard.verifier(), authorization(&message)).await?;
                    }
                    if progress.tick() == count {
                        break;
                    }
                }
                Ok::<(), Failure>(())
            };
            tokio::time::timeout(crate::tokens::PATIENCE, read)
                .await
                .map_err(|_| {
                    self.lost(format!(
                        "the raw subscriber got {} of {count} messages in time",
                        progress.tick() - 1
                    ))
                })??;
            fed.await??;
        }
        Ok(progress.rate())
    }
}

pub(crate) struct JetStream {
    /// Where `--instances` connects each instance anew.
    url: String,
    jetstream: jetstream::Context,
    wrapped: JetStreamPublisher,
    stream: String,
    subject: String,
    /// How many messages `prepare` left in the stream.
    prepared: Mutex<usize>,
}

impl JetStream {
    pub(crate) async fn connect(url: &str) -> Result<JetStream, Failure> {
        let jetstream = jetstream::new(async_nats::connect(url).await?);
        let subject = unique("bench.js");
        let stream = subject.replace('.', "_").to_uppercase();
        jetstream
            .create_stream(stream::Config {
                name: stream.clone(),
                subjects: vec![subject.clone()],
                storage: stream::StorageType::Memory,
                ..Default::default()
            })
            .await?;
        Ok(JetStream {
            url: url.to_owned(),
            wrapped: JetStreamPublisher::new(jetstream.clone(), Propagator::default()),
            jetstream,
            stream,
            subject,
            prepared: Mutex::new(0),
        })
    }

    pub(crate) fn name(&self) -> &'static str {
        "nats (JetStream)"
    }

    /// Publishes one message per token, the header written by hand, waiting for each ack; message
    /// `i`'s payload numbered `i` if asked ([`numbered_payload`]).
    async fn publish_raw(&self, tokens: &[String], numbered: bool) -> Result<f64, Failure> {
        let body = bytes_of(payload());
        concurrently(tokens.len(), IN_FLIGHT, |i| {
            let headers = headers_with(&tokens[i]);
            let body = if numbered {
                bytes_of(numbered_payload(i))
            } else {
                body.clone()
            };
            async move {
                self.jetstream
                    .publish_with_headers(self.subject.clone(), headers, body)
                    .await?
                    .await?;
                Ok(())
            }
        })
        .await
    }

    async fn purge(&self) -> Result<(), Failure> {
        self.jetstream.get_stream(&self.stream).await?.purge().await?;
        Ok(())
    }

    /// Publishes one message per token, waiting for each ack (then empties the stream, untimed).
    pub(crate) async fn publish(
        &self,
        wrapped: bool,
        tokens: &[String],
        contexts: &[AuthContext],
    ) -> Result<f64, Failure> {
        let rate = if wrapped {
            let body = bytes_of(payload());
            concurrently(tokens.len(), IN_FLIGHT, |i| {
                let body = body.clone();
                async move {
                    self.wrapped
                        .publish(&self.subject, HeaderMap::new(), body, Some(&contexts[i]))
                        .await?;
                    Ok(())
                }
            })
            .await?
        } else {
            self.publish_raw(tokens, false).await?
        };
        self.purge().await?;
        Ok(rate)
    }

    /// Leaves one message per token in the stream (untimed); every consume run reads them all.
    pub(crate) async fn prepare(&self, tokens: &[String]) -> Result<(), Failure> {
        self.purge().await?;
        self.publish_raw(tokens, false).await?;
        *self.prepared.lock().unwrap_or_else(|p| p.into_inner()) = tokens.len();
        Ok(())
    }

    /// A new pull consumer reads the stream from its start, acking each message.
    pub(crate) async fn consume(&self, reader: Side, guard: Guard) -> Result<f64, Failure> {
        let count = *self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        let stream = self.jetstream.get_stream(&self.stream).await?;
        let name = unique("bench").replace('.', "_");
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(name.clone()),
                ..Default::default()
            })
            .await?;
        let progress = Arc::new(Progress::default());
        if reader == Side::JwtRelay {
            let done = Arc::new(Notify::new());
            let settled = stop_after(count, &progress, &done);
            let report = tokio::time::timeout(
                crate::tokens::PATIENCE,
                JetStreamConsumer::new(consumer, guard)
                    .batch(200)
                    .on_event(move |_| settled())
                    .run(|_| async { Ok::<(), Infallible>(()) }, async move {
                        done.notified().await
                    }),
            )
            .await??;
            if report.accepted != count as u64 {
                return Err(format!("{} of {count} messages accepted: {report:?}", report.accepted).into());
            }
        } else {
            let mut messages = consumer.messages().await?;
            let read = async {
                while let Some(message) = messages.next().await {
                    let message = message?;
                    if reader == Side::ByHand {
                        check_by_hand(guard.verifier(), authorization(&message)).await?;
                    }
                    message.ack().await?;
                    if progress.tick() == count {
                        break;
                    }
                }
                Ok::<(), Failure>(())
            };
            tokio::time::timeout(crate::tokens::PATIENCE, read).await??;
        }
        stream.delete_consumer(&name).await?;
        Ok(progress.rate())
    }

    /// `--instances`: empties the stream and leaves one numbered message per token in it
    /// (untimed).
    pub(crate) async fn fill_numbered(&self, tokens: &[String]) -> Result<(), Failure> {
        self.purge().await?;
        self.publish_raw(tokens, true).await?;
        Ok(())
    }

    /// `--instances`: a new durable pull consumer of the stream, from its start; its name.
    pub(crate) async fn durable_for_instances(&self) -> Result<String, Failure> {
        let name = unique("bench-instances").replace('.', "_");
        self.jetstream
            .get_stream(&self.stream)
            .await?
            .create_consumer(pull::Config {
                durable_name: Some(name.clone()),
                ..Default::default()
            })
            .await?;
        Ok(name)
    }

    /// `--instances`: one more instance of the durable consumer `durable`, on its own
    /// connection, counting in `tally` what it handles.
    pub(crate) fn instance(&self, durable: &str, guard: Guard, tally: &Arc<Tally>, index: usize) -> Running {
        let (url, stream, durable) = (self.url.clone(), self.stream.clone(), durable.to_owned());
        let (handler, shutdown) = (counting(tally, index), tally.shutdown());
        Box::pin(async move {
            let jetstream = jetstream::new(async_nats::connect(url).await?);
            let consumer: PullConsumer = jetstream.get_consumer_from_stream(durable, stream).await?;
            let report = JetStreamConsumer::new(consumer, guard)
                .batch(200)
                .run(handler, shutdown)
                .await?;
            Ok(report)
        })
    }

    /// `--instances`: deletes the durable consumer `durable`.
    pub(crate) async fn remove_durable(&self, durable: &str) -> Result<(), Failure> {
        self.jetstream
            .get_stream(&self.stream)
            .await?
            .delete_consumer(durable)
            .await?;
        Ok(())
    }

    /// Deletes the stream.
    pub(crate) async fn remove(&self) -> Result<(), Failure> {
        self.jetstream.delete_stream(&self.stream).await?;
        Ok(())
    }
}
