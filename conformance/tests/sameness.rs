//! One engine decides for every transport, so the same messages must come out the same way on
//! each: the hostile corpus (`jwt_relay::testing::hostile`, the classes every broker can
//! carry), three good messages, and one whose handler fails, then panics. Through the
//! in-memory broker, Kafka (librdkafka's mock cluster, and the broker at `KAFKA_BROKERS`),
//! RabbitMQ (`AMQP_ADDR`), core NATS and JetStream (`NATS_URL`), the test asserts that
//!
//! - the reported outcomes (label and error kind) are the same,
//! - the `jwt_relay_messages_total` series are the same but for their `broker` and
//!   `destination` labels, which name the transport,
//! - the same messages are dead-lettered, each copy with the same reason headers, the origin
//!   headers, and no token.
//!
//! A broker that is not reachable is skipped with a loud line, except under `CI=true`, where
//! that fails the test.

#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use jwt_relay::consume::{ORIGINAL_DESTINATION, ORIGINAL_SUBJECT, REASON_CLASS, REASON_KIND, REASON_MESSAGE};
use jwt_relay::testing::{DevSts, DevStsConfig, broker_available, hostile};
use jwt_relay::{Backoff, Event, EventOutcome, Guard, Headers};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::sync::Notify;

const AUD: &str = "orders";
const FLAKY: &str = "flaky";
const MAX_ATTEMPTS: u32 = 2;

/// One message: its id (also its payload) and its headers, as they travel.
#[derive(Clone)]
struct Message {
    id: String,
    headers: Vec<(String, Vec<u8>)>,
}

/// One reported event: its outcome label and error kind.
type Outcome = (&'static str, Option<String>);

/// What one transport did with the corpus.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    /// Every reported event: its outcome label and error kind, sorted.
    outcomes: Vec<Outcome>,
    /// The dead-lettered copies by message id: their reason kind, class and message (without
    /// its digits).
    dead_letters: BTreeMap<String, [String; 3]>,
    /// The `jwt_relay_messages_total` series of the transport's destination, without the
    /// `broker` and `destination` labels.
    series: BTreeMap<Vec<(String, String)>, u64>,
}

/// A dead-lettered copy as read back from its broker: id and headers.
struct Copy {
    id: String,
    headers: Vec<(String, Vec<u8>)>,
}

impl Copy {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// The corpus: good messages, the flaky one, and every hostile class all transports carry
/// (text header values, small enough for NATS and AMQP).
fn corpus(sts: &DevSts) -> Vec<Message> {
    let good = |id: String| Message {
        id,
        headers: vec![(
            "Authorization".to_owned(),
            format!("Bearer {}", sts.mint("alice", AUD, Duration::from_secs(300))).into_bytes(),
        )],
    };
    let mut messages: Vec<Message> = (0..3).map(|i| good(format!("good-{i}"))).collect();
    messages.push(good(FLAKY.to_owned()));
    for (i, case) in hostile(sts, AUD).into_iter().enumerate() {
        let size: usize = case.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        if case.is_text() && size < 16 * 1024 {
            messages.push(Message {
                id: format!("hostile-{i}"),
                headers: case.headers,
            });
        }
    }
    messages
}

/// The handler every transport runs: succeeds, except on the flaky message, where its first
/// call fails and its second panics.
#[derive(Clone, Default)]
struct Handler {
    calls: Arc<Mutex<HashMap<String, u32>>>,
}

impl Handler {
    fn call(&self, payload: &[u8]) -> impl Future<Output = Result<(), String>> + Send + use<> {
        let id = String::from_utf8_lossy(payload).into_owned();
        let calls = {
            let mut calls = self.calls.lock().unwrap();
            let n = calls.entry(id.clone()).or_insert(0);
            *n += 1;
            *n
        };
        async move {
            match (id.as_str(), calls) {
                (FLAKY, 1) => Err("the first call fails".to_owned()),
                (FLAKY, _) => panic!("the second call panics"),
                _ => Ok(()),
            }
        }
    }
}

/// Collects what a consumer reports, and says when every message has reached its end.
#[derive(Clone)]
struct Watch {
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    ended: Arc<Mutex<usize>>,
    expected: usize,
    done: Arc<Notify>,
}

impl Watch {
    fn new(expected: usize) -> Self {
        Watch {
            outcomes: Arc::default(),
            ended: Arc::default(),
            expected,
            done: Arc::new(Notify::new()),
        }
    }

    fn callback(&self) -> impl Fn(&Event<'_>) + Send + Sync + 'static {
        let watch = self.clone();
        move |event| watch.record(event)
    }

    fn record(&self, event: &Event<'_>) {
        let kind = match &event.outcome {
            EventOutcome::Accepted(_) => None,
            EventOutcome::Rejected { reason, .. }
            | EventOutcome::Retry { reason, .. }
            | EventOutcome::HandlerFailed { reason, .. }
            | EventOutcome::Halted(reason) => Some(reason.kind().as_str().to_owned()),
            _ => Some("unknown".to_owned()),
        };
        self.outcomes.lock().unwrap().push((event.outcome.label(), kind));
        if matches!(
            event.outcome,
            EventOutcome::Accepted(_) | EventOutcome::Rejected { .. }
        ) {
            let mut ended = self.ended.lock().unwrap();
            *ended += 1;
            if *ended >= self.expected {
                self.done.notify_one();
            }
        }
    }

    /// Completes once every message has ended (accepted or rejected).
    fn all_ended(&self) -> impl Future<Output = ()> + Send + 'static {
        let done = self.done.clone();
        async move { done.notified().await }
    }

    /// What was seen, with the dead letters and the metric series of `destination`.
    fn observed(&self, copies: &[Copy], destination: &str) -> Observed {
        let mut outcomes = self.outcomes.lock().unwrap().clone();
        outcomes.sort();
        let dead_letters = copies
            .iter()
            .map(|copy| {
                assert!(
                    copy.header("authorization").is_none(),
                    "{}: a copy without the token",
                    copy.id
                );
                assert!(
                    copy.header(ORIGINAL_DESTINATION).is_some() && copy.header(ORIGINAL_SUBJECT).is_some(),
                    "{}: a copy names its origin",
                    copy.id
                );
                // Numbers differ with the time of the check ("expired 60 s ago"): left out.
                let reason = [REASON_KIND, REASON_CLASS, REASON_MESSAGE].map(|name| {
                    let value = copy.header(name).unwrap_or_default();
                    value.replace(|c: char| c.is_ascii_digit(), "")
                });
                (copy.id.clone(), reason)
            })
            .collect();
        Observed {
            outcomes,
            dead_letters,
            series: series(destination),
        }
    }
}

/// The process's metrics, recorded from the first call on.
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().unwrap();
        snapshotter
    })
}

/// The `jwt_relay_messages_total` series labelled with `destination`, without their
/// `broker` and `destination` labels.
fn series(destination: &str) -> BTreeMap<Vec<(String, String)>, u64> {
    snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let key = key.key();
            let ours = key.name() == jwt_relay::observe::MESSAGES_TOTAL
                && key
                    .labels()
                    .any(|l| l.key() == "destination" && l.value() == destination);
            let DebugValue::Counter(count) = value else {
                return None;
            };
            ours.then(|| {
                let mut labels: Vec<(String, String)> = key
                    .labels()
                    .filter(|l| l.key() != "broker" && l.key() != "destination")
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                labels.sort();
                (labels, count)
            })
        })
        .collect()
}

fn backoff() -> Backoff {
    Backoff::new(Duration::from_millis(20), Duration::from_millis(100))
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

const PATIENCE: Duration = Duration::from_secs(90);

mod memory {
    use super::*;
    use jwt_relay::memory::{MemoryBroker, MemoryConsumer};

    pub(super) async fn run(messages: &[Message], guard: Guard) -> Observed {
        let broker = MemoryBroker::new();
        let topic = unique("conformance-memory");
        for message in messages {
            let mut headers = Headers::new();
            for (name, value) in &message.headers {
                headers.append(name.as_str(), value.clone());
            }
            broker.publish(&topic, headers, message.id.as_bytes().to_vec());
        }
        let watch = Watch::new(messages.len());
        let handler = Handler::default();
        let consumer = MemoryConsumer::new(broker.clone(), topic.as_str(), guard)
            .max_attempts(MAX_ATTEMPTS)
            .backoff(backoff())
            .on_event(watch.callback());
        tokio::time::timeout(PATIENCE, consumer.run_until_idle(|d| handler.call(d.payload())))
            .await
            .unwrap()
            .unwrap();
        let copies: Vec<Copy> = broker
            .dead_letters(&topic)
            .into_iter()
            .map(|m| Copy {
                id: String::from_utf8_lossy(&m.payload).into_owned(),
                headers: m
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_owned(), v.to_vec()))
                    .collect(),
            })
            .collect();
        watch.observed(&copies, &topic)
    }
}

mod kafka {
    use super::*;
    use jwt_relay_kafka::Consumer;
    use jwt_relay_kafka::rdkafka::ClientConfig;
    use jwt_relay_kafka::rdkafka::consumer::{BaseConsumer, Consumer as _};
    use jwt_relay_kafka::rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
    use jwt_relay_kafka::rdkafka::mocking::MockCluster;
    use jwt_relay_kafka::rdkafka::producer::{FutureProducer, FutureRecord};

    /// Runs the corpus through the cluster at `bootstrap`; `mock` creates its topics.
    pub(super) async fn run(
        messages: &[Message],
        guard: Guard,
        bootstrap: &str,
        mock: Option<&MockCluster<'static, jwt_relay_kafka::rdkafka::producer::DefaultProducerContext>>,
    ) -> Observed {
        let topic = unique("conformance-kafka");
        let dead_letters = format!("{topic}.dlq");
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("message.timeout.ms", "20000");
        match mock {
            Some(mock) => {
                mock.create_topic(&topic, 1, 1).unwrap();
                mock.create_topic(&dead_letters, 1, 1).unwrap();
            }
            None => jwt_relay_kafka::ensure_topics(&config, &[topic.as_str(), dead_letters.as_str()], 1)
                .await
                .unwrap(),
        }
        let producer: FutureProducer = config.create().unwrap();
        for message in messages {
            let mut headers = OwnedHeaders::new();
            for (name, value) in &message.headers {
                headers = headers.insert(Header {
                    key: name.as_str(),
                    value: Some(value.as_slice()),
                });
            }
            let record = FutureRecord::to(&topic)
                .key(message.id.as_str())
                .payload(message.id.as_str())
                .headers(headers);
            producer
                .send(record, Duration::from_secs(20))
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
        let watch = Watch::new(messages.len());
        let handler = Handler::default();
        let mut group = config.clone();
        group
            .set("group.id", unique("conformance"))
            .set("auto.offset.reset", "earliest");
        let consumer = Consumer::builder(&group, guard)
            .topic(topic.as_str())
            .max_attempts(MAX_ATTEMPTS)
            .backoff(backoff())
            .on_event(watch.callback())
            .build()
            .unwrap();
        let handle = move |d: jwt_relay_kafka::Received| handler.call(d.payload());
        tokio::time::timeout(PATIENCE, consumer.run(handle, watch.all_ended()))
            .await
            .unwrap()
            .unwrap();
        let expected = expected_copies(&watch);
        let reader: BaseConsumer = {
            let mut reader = config.clone();
            reader
                .set("group.id", unique("conformance-reader"))
                .set("auto.offset.reset", "earliest");
            reader.create().unwrap()
        };
        reader.subscribe(&[dead_letters.as_str()]).unwrap();
        let mut copies = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while copies.len() < expected && std::time::Instant::now() < deadline {
            if let Some(Ok(record)) = reader.poll(Duration::from_millis(200)) {
                let headers = record
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                copies.push(Copy {
                    id: String::from_utf8_lossy(record.payload().unwrap_or_default()).into_owned(),
                    headers,
                });
            }
        }
        watch.observed(&copies, &topic)
    }
}

mod rabbitmq {
    use super::*;
    use jwt_relay_rabbitmq::lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
    use jwt_relay_rabbitmq::lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
    use jwt_relay_rabbitmq::lapin::{BasicProperties, Connection, ConnectionProperties};
    use jwt_relay_rabbitmq::{Connector, Consumer, Topology};

    pub(super) async fn run(messages: &[Message], guard: Guard, addr: &str) -> Observed {
        let connection = Connection::connect(addr, ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let topology = Topology::new(unique("conformance-rabbitmq"));
        topology.declare(&channel).await.unwrap();
        for message in messages {
            let mut headers = FieldTable::default();
            for (name, value) in &message.headers {
                headers.insert(
                    ShortString::from(name.as_str()),
                    AMQPValue::LongString(LongString::from(value.clone())),
                );
            }
            channel
                .basic_publish(
                    ShortString::from(""),
                    ShortString::from(topology.queue()),
                    BasicPublishOptions::default(),
                    message.id.as_bytes(),
                    BasicProperties::default().with_headers(headers),
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }
        let watch = Watch::new(messages.len());
        let handler = Handler::default();
        let consumer = Consumer::builder(Connector::new(addr), topology.queue(), guard)
            .max_attempts(MAX_ATTEMPTS)
            .backoff(backoff())
            .on_event(watch.callback())
            .build();
        let handle = move |r: jwt_relay_rabbitmq::Received| handler.call(r.payload());
        tokio::time::timeout(PATIENCE, consumer.run(handle, watch.all_ended()))
            .await
            .unwrap()
            .unwrap();
        let mut copies = Vec::new();
        let options = BasicGetOptions { no_ack: true };
        let queue = ShortString::from(topology.dead_letter_queue_name());
        while let Some(message) = channel.basic_get(queue.clone(), options).await.unwrap() {
            let delivery = message.delivery;
            let headers = delivery
                .properties
                .headers()
                .as_ref()
                .map(|table| {
                    table
                        .inner()
                        .iter()
                        .filter_map(|(name, value)| match value {
                            AMQPValue::LongString(v) => Some((name.to_string(), v.as_bytes().to_vec())),
                            AMQPValue::ShortString(v) => {
                                Some((name.to_string(), v.as_str().as_bytes().to_vec()))
                            }
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            copies.push(Copy {
                id: String::from_utf8_lossy(&delivery.data).into_owned(),
                headers,
            });
        }
        let observed = watch.observed(&copies, topology.queue());
        topology.delete(&channel).await.unwrap();
        observed
    }
}

mod nats {
    use super::*;
    use futures_util::StreamExt as _;
    use jwt_relay_nats::async_nats::jetstream::{self, consumer::pull, stream::StorageType};
    use jwt_relay_nats::async_nats::{Client, HeaderMap};
    use jwt_relay_nats::{Consumer, JetStreamConsumer, Topology};

    fn header_map(message: &Message) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in &message.headers {
            headers.append(name.as_str(), std::str::from_utf8(value).unwrap());
        }
        headers
    }

    fn copy_of(headers: Option<&HeaderMap>, payload: &[u8]) -> Copy {
        let headers = headers
            .map(|map| {
                map.iter()
                    .flat_map(|(name, values)| {
                        let name: &str = name.as_ref();
                        values
                            .iter()
                            .map(move |v| (name.to_owned(), v.as_str().as_bytes().to_vec()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Copy {
            id: String::from_utf8_lossy(payload).into_owned(),
            headers,
        }
    }

    pub(super) async fn core(messages: &[Message], guard: Guard, client: Client) -> Observed {
        let subject = unique("conformance.core").replace('-', "_");
        let dead_letters = format!("{subject}_dlq");
        let mut copies_sub = client.subscribe(dead_letters.clone()).await.unwrap();
        let watch = Watch::new(messages.len());
        let handler = Handler::default();
        let subscription = Consumer::new(client.clone(), guard)
            .dead_letter(jwt_relay_nats::DeadLetter::subject(dead_letters.as_str()))
            .max_attempts(MAX_ATTEMPTS)
            .backoff(backoff())
            .on_event(watch.callback())
            .subscribe(&subject)
            .await
            .unwrap();
        for message in messages {
            client
                .publish_with_headers(subject.clone(), header_map(message), message.id.clone().into())
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
        let handle = move |d: jwt_relay_nats::Received| handler.call(d.payload());
        tokio::time::timeout(PATIENCE, subscription.run(handle, watch.all_ended()))
            .await
            .unwrap()
            .unwrap();
        let expected = expected_copies(&watch);
        let mut copies = Vec::new();
        while copies.len() < expected {
            let Ok(Some(copy)) = tokio::time::timeout(Duration::from_secs(10), copies_sub.next()).await
            else {
                break;
            };
            copies.push(copy_of(copy.headers.as_ref(), &copy.payload));
        }
        watch.observed(&copies, &subject)
    }

    pub(super) async fn jetstream(messages: &[Message], guard: Guard, client: Client) -> Observed {
        let js = jetstream::new(client);
        let prefix = unique("conformance_js").replace('-', "_");
        let topology =
            Topology::new(prefix.to_uppercase(), [format!("{prefix}.*")]).storage(StorageType::Memory);
        let declared = topology.declare(&js).await.unwrap();
        let subject = format!("{prefix}.orders");
        for message in messages {
            js.publish_with_headers(subject.clone(), header_map(message), message.id.clone().into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        let consumer = declared
            .stream
            .create_consumer(pull::Config {
                durable_name: Some("conformance".to_owned()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .unwrap();
        let watch = Watch::new(messages.len());
        let handler = Handler::default();
        let consumer = JetStreamConsumer::new(consumer, guard)
            .max_attempts(MAX_ATTEMPTS)
            .backoff(backoff())
            .on_event(watch.callback());
        let handle = move |d: jwt_relay_nats::Received| handler.call(d.payload());
        tokio::time::timeout(PATIENCE, consumer.run(handle, watch.all_ended()))
            .await
            .unwrap()
            .unwrap();
        let mut dead_letter_stream = declared.dead_letter_stream;
        let state = dead_letter_stream.info().await.unwrap().state.clone();
        let mut copies = Vec::new();
        for sequence in state.first_sequence..=state.last_sequence {
            if state.messages == 0 {
                break;
            }
            if let Ok(copy) = dead_letter_stream.get_raw_message(sequence).await {
                copies.push(copy_of(Some(&copy.headers), &copy.payload));
            }
        }
        let observed = watch.observed(&copies, topology.stream_name());
        topology.delete(&js).await.unwrap();
        observed
    }
}

/// How many copies the consumer reported storing.
fn expected_copies(watch: &Watch) -> usize {
    watch
        .outcomes
        .lock()
        .unwrap()
        .iter()
        .filter(|(label, _)| *label == "dead_lettered")
        .count()
}

/// Compares `observed` with the reference, naming the transport.
fn assert_same(name: &str, reference: &Observed, observed: &Observed) {
    assert_eq!(observed.outcomes, reference.outcomes, "{name}: the outcomes");
    assert_eq!(
        observed.dead_letters, reference.dead_letters,
        "{name}: the dead letters"
    );
    assert_eq!(observed.series, reference.series, "{name}: the metric series");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_decides_and_reports_alike() {
    snapshotter();
    let sts = DevSts::start(DevStsConfig::default()).await.unwrap();
    let messages = corpus(&sts);
    // A guard per transport: each fetches the key set itself, as a consumer would.
    let guard = || {
        Guard::builder(sts.verifier(AUD).unwrap())
            .backoff(backoff())
            .build()
    };

    let reference = memory::run(&messages, guard()).await;
    let hostile = messages.iter().filter(|m| m.id.starts_with("hostile")).count();
    assert_eq!(
        reference.dead_letters.len(),
        hostile + 1,
        "every hostile message and the flaky one are dead-lettered: {:?}",
        reference.dead_letters.keys()
    );
    assert_eq!(
        reference.dead_letters[FLAKY][0], "Handler",
        "the flaky message is dead-lettered for its handler"
    );
    assert!(
        reference
            .outcomes
            .contains(&("handler_failed", Some("Handler".to_owned()))),
        "its first failure is retried: {:?}",
        reference.outcomes
    );
    assert_eq!(
        reference.series.values().sum::<u64>(),
        reference.outcomes.len() as u64,
        "one series count per event"
    );

    let mock = jwt_relay_kafka::rdkafka::mocking::MockCluster::new(1).unwrap();
    let observed = kafka::run(&messages, guard(), &mock.bootstrap_servers(), Some(&mock)).await;
    assert_same("Kafka (mock cluster)", &reference, &observed);

    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    if broker_available("Kafka", brokers.split(',').next().unwrap_or_default()) {
        let observed = kafka::run(&messages, guard(), &brokers, None).await;
        assert_same("Kafka (broker)", &reference, &observed);
    }

    let amqp =
        std::env::var("AMQP_ADDR").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    if broker_available("RabbitMQ", &amqp) {
        let observed = rabbitmq::run(&messages, guard(), &amqp).await;
        assert_same("RabbitMQ", &reference, &observed);
    }

    let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    if broker_available("NATS", &nats) {
        let client = jwt_relay_nats::async_nats::connect(nats.as_str()).await.unwrap();
        let observed = nats::core(&messages, guard(), client.clone()).await;
        assert_same("core NATS", &reference, &observed);
        let observed = nats::jetstream(&messages, guard(), client).await;
        assert_same("JetStream", &reference, &observed);
    }
    sts.shutdown().await;
}
