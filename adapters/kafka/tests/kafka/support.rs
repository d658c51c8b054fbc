//! The two Kafka implementations every scenario runs on (librdkafka's embedded mock cluster, and
//! the real broker at `KAFKA_BROKERS`), the development token service, and small helpers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use jwt_relay::testing::{DevSts, DevStsConfig};
use jwt_relay::verify::now_unix;
use jwt_relay::{AuthContext, Guard, Propagator, RunReport, Verifier};
use jwt_relay_kafka::rdkafka::consumer::{BaseConsumer, Consumer as _};
use jwt_relay_kafka::rdkafka::message::{Headers as _, Message as _, OwnedMessage};
use jwt_relay_kafka::rdkafka::mocking::MockCluster;
use jwt_relay_kafka::rdkafka::producer::DefaultProducerContext;
use jwt_relay_kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use jwt_relay_kafka::{Consumer, ConsumerBuilder, Publisher, Received};
use serde_json::json;

/// The audience of every consumer under test.
pub const AUD: &str = "orders";

/// A Kafka cluster to run a scenario on.
pub enum Cluster {
    /// librdkafka's embedded mock cluster (one broker), made for this test.
    Mock(MockCluster<'static, DefaultProducerContext>),
    /// A real broker, shared by the tests.
    Broker(String),
}

impl Cluster {
    /// A new mock cluster.
    pub fn mock() -> Cluster {
        Cluster::Mock(MockCluster::new(1).expect("the mock cluster starts"))
    }

    /// The broker at `KAFKA_BROKERS` (default `127.0.0.1:9092`); `None` (after saying so) when
    /// it is unreachable, except under `CI=true`, where that fails the test.
    pub fn broker() -> Option<Cluster> {
        let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
        let first = brokers.split(',').next().unwrap_or_default().to_owned();
        jwt_relay::testing::broker_available("Kafka", &first).then_some(Cluster::Broker(brokers))
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Cluster::Mock(mock) => mock.bootstrap_servers(),
            Cluster::Broker(brokers) => brokers.clone(),
        }
    }

    /// A client configuration for this cluster.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap())
            .set("message.timeout.ms", "20000")
            .set("socket.timeout.ms", "10000");
        config
    }

    /// A consumer configuration in `group`, from the start of each partition, committing often.
    pub fn group(&self, group: &str) -> ClientConfig {
        let mut config = self.config();
        config
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("auto.commit.interval.ms", "200")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500");
        config
    }

    /// Creates `topic` with `partitions` partitions, and its dead-letter topic with one.
    pub async fn topic(&self, topic: &str, partitions: i32) {
        self.create(topic, partitions).await;
        self.create(&format!("{topic}.dlq"), 1).await;
    }

    pub async fn create(&self, topic: &str, partitions: i32) {
        match self {
            Cluster::Mock(mock) => mock.create_topic(topic, partitions, 1).expect("topic created"),
            Cluster::Broker(_) => jwt_relay_kafka::ensure_topics(&self.config(), &[topic], partitions)
                .await
                .expect("topic created"),
        }
    }

    /// A producer with `propagator`.
    pub fn producer(&self, propagator: Propagator) -> Publisher {
        Publisher::from_config(&self.config(), propagator).expect("producer")
    }

    /// Every record of `topic` (all partitions), read with a group of its own until `count`
    /// arrived (or 30 s passed).
    pub fn read(&self, topic: &str, count: usize) -> Vec<OwnedMessage> {
        let consumer: BaseConsumer = self.group(&unique("reader")).create().expect("reader");
        consumer.subscribe(&[topic]).expect("subscribe");
        let mut records = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while records.len() < count && Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
                records.push(message.detach());
            }
        }
        records
    }

    /// The committed offset of `group` on partition 0 of `topic` (-1001 for none).
    pub fn committed(&self, group: &str, topic: &str) -> i64 {
        let consumer: BaseConsumer = self.group(group).create().expect("consumer");
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, 0);
        let offset = {
            // Dropped before the consumer: librdkafka hangs otherwise.
            let committed = consumer
                .committed_offsets(list, Duration::from_secs(10))
                .expect("committed offsets");
            match committed.elements().first().map(|e| e.offset()) {
                Some(Offset::Offset(n)) => n,
                _ => -1001,
            }
        };
        drop(consumer);
        offset
    }
}

/// A name no other test (or run) uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// The development token service, and a verifier trusting it for [`AUD`] with no leeway.
pub struct Idp {
    pub sts: DevSts,
    pub verifier: Verifier,
}

impl Idp {
    pub async fn start() -> Idp {
        let sts = DevSts::start(DevStsConfig::default())
            .await
            .expect("token service");
        let verifier = sts.verifier(AUD).expect("verifier");
        Idp { sts, verifier }
    }

    /// A valid token of `sub` for the consumers under test.
    pub fn token(&self, sub: &str) -> String {
        self.sts.mint(sub, AUD, Duration::from_secs(300))
    }

    /// A token of `sub` that expired a minute ago.
    pub fn expired(&self, sub: &str) -> String {
        let now = now_unix();
        self.sts.mint_claims(json!({
            "iss": self.sts.issuer(), "aud": AUD, "sub": sub, "iat": now - 600, "exp": now - 60,
        }))
    }

    /// A token of `sub` for another audience.
    pub fn other_audience(&self, sub: &str) -> String {
        self.sts.mint(sub, "payroll", Duration::from_secs(300))
    }

    /// `sub`'s claims with another token's signature.
    pub fn forged(&self, sub: &str) -> String {
        let token = self.token(sub);
        let other = self.token("mallory");
        let (body, _) = token.rsplit_once('.').expect("a JWS");
        let (_, signature) = other.rsplit_once('.').expect("a JWS");
        format!("{body}.{signature}")
    }

    /// `sub`'s verified identity.
    pub async fn context(&self, sub: &str) -> AuthContext {
        self.verifier
            .verify(&self.token(sub))
            .await
            .expect("a valid token")
    }

    pub fn guard(&self) -> Guard {
        Guard::new(self.verifier.clone())
    }
}

/// A header's value as text.
pub fn header(record: &OwnedMessage, name: &str) -> Option<String> {
    let headers = record.headers()?;
    let found = headers.iter().find(|h| h.key.eq_ignore_ascii_case(name))?;
    Some(String::from_utf8_lossy(found.value.unwrap_or_default()).into_owned())
}

/// The record's payload as text.
pub fn text(delivery: &Received) -> String {
    String::from_utf8_lossy(delivery.payload()).into_owned()
}

/// Runs `consumer` until it reaches its limit, failing after `within`.
pub async fn run_to_limit<H, Fut>(consumer: &Consumer, within: Duration, handler: H) -> RunReport
where
    H: Fn(Received) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    tokio::time::timeout(within, consumer.run(handler, std::future::pending::<()>()))
        .await
        .expect("the consumer reaches its limit in time")
        .expect("the run ends cleanly")
}

/// A consumer of `topic` in `group`.
pub fn consumer(cluster: &Cluster, group: &str, topic: &str, guard: Guard) -> ConsumerBuilder {
    Consumer::builder(&cluster.group(group), guard).topic(topic)
}

/// Waits until `done` holds, failing after `within` with `what`.
pub async fn eventually(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The reason kinds of dead-lettered copies, counted.
pub fn reasons(records: &[OwnedMessage]) -> HashMap<String, usize> {
    let mut kinds = HashMap::new();
    for record in records {
        let kind = header(record, jwt_relay::consume::REASON_KIND).unwrap_or_default();
        *kinds.entry(kind).or_insert(0) += 1;
    }
    kinds
}

/// A consumer running in its own task until [`Running::stop`].
pub struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<jwt_relay_kafka::Result<RunReport>>,
}

impl Running {
    /// Shuts the consumer down gracefully and returns its report.
    pub async fn stop(self) -> RunReport {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the consumer stops within 30 s")
            .expect("the consumer task")
            .expect("the run ends cleanly")
    }

    /// Kills the consumer: its future is dropped mid-stream, committing nothing more.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Runs `consumer` in a task.
pub fn spawn<H, Fut>(consumer: Consumer, handler: H) -> Running
where
    H: Fn(Received) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        consumer
            .run(handler, async {
                let _ = stopped.await;
            })
            .await
    });
    Running { stop, task }
}

/// The payload of a record as text.
pub fn payload(record: &OwnedMessage) -> String {
    String::from_utf8_lossy(record.payload().unwrap_or_default()).into_owned()
}
