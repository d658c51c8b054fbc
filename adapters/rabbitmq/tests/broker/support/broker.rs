//! The RabbitMQ every test uses: found (or, outside CI, skipped) in one place, with helpers to
//! declare, publish, inspect and clean up uniquely named queues.

use std::future::Future;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jwt_relay::Propagator;
use jwt_relay_rabbitmq::lapin::options::{BasicGetOptions, QueueDeclareOptions};
use jwt_relay_rabbitmq::lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use jwt_relay_rabbitmq::lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use jwt_relay_rabbitmq::{Connector, Consumer, Publisher, Received, RunReport, Topology};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The broker of the machine, unless `AMQP_ADDR` says otherwise.
pub const DEFAULT_ADDR: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A connection to the broker under test, with a channel for the test's own operations.
pub struct Broker {
    pub addr: String,
    pub channel: Channel,
    _connection: Connection,
}

/// The broker, or `None` when it is unreachable and the test should be skipped. Under
/// `CI=true` an unreachable broker fails the test instead: CI must never skip silently
/// ([`jwt_relay::testing::broker_available`]).
pub async fn broker() -> Option<Broker> {
    let addr = std::env::var("AMQP_ADDR").unwrap_or_else(|_| DEFAULT_ADDR.to_owned());
    if !jwt_relay::testing::broker_available("RabbitMQ", &addr) {
        return None;
    }
    let connection = tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(&addr, ConnectionProperties::default()),
    )
    .await
    .expect("RabbitMQ answers within 5 s")
    .expect("RabbitMQ accepts the connection");
    let channel = connection.create_channel().await.expect("a channel");
    Some(Broker {
        addr,
        channel,
        _connection: connection,
    })
}

/// A name no other test (or run) uses.
pub fn unique(test: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("jwt-relay-test-{test}-{}-{nanos}-{n}", std::process::id())
}

/// A message taken from a queue.
pub struct Got {
    pub properties: BasicProperties,
    pub data: Vec<u8>,
}

impl Got {
    /// A header's value, if it is a string.
    pub fn header(&self, name: &str) -> Option<String> {
        match self.properties.headers().as_ref()?.inner().get(name)? {
            AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
            _ => None,
        }
    }

    /// Whether a header of this name, in any casing, is present.
    pub fn has_header_any_case(&self, name: &str) -> bool {
        self.properties
            .headers()
            .as_ref()
            .is_some_and(|h| h.inner().keys().any(|k| k.as_str().eq_ignore_ascii_case(name)))
    }
}

impl Broker {
    /// The topology of a queue of its own for `test`.
    pub fn topology(&self, test: &str) -> Topology {
        Topology::new(unique(test))
    }

    /// Declares it.
    pub async fn declare(&self, topology: &Topology) {
        topology
            .declare(&self.channel)
            .await
            .expect("declare the topology");
    }

    /// Deletes it, with whatever it holds.
    pub async fn cleanup(&self, topology: &Topology) {
        topology.delete(&self.channel).await.expect("delete the topology");
    }

    /// A publisher on a channel of its own, forwarding tokens as they are.
    pub async fn publisher(&self) -> Publisher {
        let connection = Connection::connect(&self.addr, ConnectionProperties::default())
            .await
            .expect("connect");
        let channel = connection.create_channel().await.expect("a channel");
        // The channel keeps the connection open.
        Publisher::new(channel, Propagator::default())
            .await
            .expect("publisher")
    }

    /// A connector whose connections carry `name`, so a test can close exactly them.
    pub fn connector(&self, name: &str) -> Connector {
        let properties = ConnectionProperties::default().with_connection_name(LongString::from(name));
        Connector::new(self.addr.as_str()).properties(properties)
    }

    /// Takes every message out of `queue`.
    pub async fn drain(&self, queue: &str) -> Vec<Got> {
        let mut got = Vec::new();
        let options = BasicGetOptions { no_ack: true };
        while let Some(message) = self
            .channel
            .basic_get(ShortString::from(queue), options)
            .await
            .expect("basic.get")
        {
            let delivery = message.delivery;
            got.push(Got {
                properties: delivery.properties,
                data: delivery.data,
            });
        }
        got
    }

    /// How many messages wait in `queue`.
    pub async fn depth(&self, queue: &str) -> u32 {
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        self.channel
            .queue_declare(ShortString::from(queue), passive, FieldTable::default())
            .await
            .expect("passive declare")
            .message_count()
    }
}

/// Headers `x-id: <id>` plus `extra`.
pub fn headers(id: &str, extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    table.insert("x-id".into(), AMQPValue::LongString(id.into()));
    for (name, value) in extra {
        table.insert(ShortString::from(*name), value.clone());
    }
    table
}

/// The `x-id` of a received message.
pub fn id_of(received: &Received) -> String {
    match received.headers().and_then(|h| h.inner().get("x-id")) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        _ => String::new(),
    }
}

/// A consumer running in a task of its own until stopped.
pub struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<jwt_relay_rabbitmq::Result<RunReport>>,
}

/// Runs `consumer` with `handler`.
pub fn spawn<H, Fut>(consumer: Consumer, handler: H) -> Running
where
    H: Fn(Received) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        consumer.run(handler, shutdown).await
    });
    Running { stop, task }
}

impl Running {
    /// Shuts the consumer down gracefully and returns what it did.
    pub async fn stop(self) -> jwt_relay_rabbitmq::Result<RunReport> {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the consumer stops within 30 s")
            .expect("the consumer task")
    }

    /// Whether the run ended by itself.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Waits until `done` holds, checking every 50 ms; panics after `within`.
pub async fn eventually(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `rabbitmqctl` of the broker under test (`RABBITMQCTL`, default `/usr/sbin/rabbitmqctl`),
/// or `None` to skip a test that needs it; under `CI=true` a missing one fails the test.
pub fn rabbitmqctl() -> Option<String> {
    let ctl = std::env::var("RABBITMQCTL").unwrap_or_else(|_| "/usr/sbin/rabbitmqctl".to_owned());
    jwt_relay::testing::program_available("rabbitmqctl (set RABBITMQCTL)", &ctl).then_some(ctl)
}

/// Closes, from the broker's side, every connection whose client named it `name`
/// (`rabbitmqctl close_connection`), and returns how many it closed.
pub fn close_connections_named(ctl: &str, name: &str) -> usize {
    let listed = Command::new(ctl)
        .args([
            "list_connections",
            "--quiet",
            "--no-table-headers",
            "pid",
            "client_properties",
        ])
        .output()
        .expect("run rabbitmqctl list_connections");
    assert!(
        listed.status.success(),
        "rabbitmqctl: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listing = String::from_utf8_lossy(&listed.stdout).into_owned();
    let mut closed = 0;
    for line in listing.lines().filter(|l| l.contains(name)) {
        let Some(pid) = line.split_whitespace().next() else {
            continue;
        };
        let status = Command::new(ctl)
            .args(["close_connection", pid, "closed by a jwt-relay test"])
            .status()
            .expect("run rabbitmqctl close_connection");
        assert!(status.success(), "rabbitmqctl close_connection {pid}");
        closed += 1;
    }
    closed
}
