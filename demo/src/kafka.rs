//! The `orders` hop over Kafka: the broker at `KAFKA_BROKERS`, else librdkafka's embedded mock
//! cluster.

use std::time::{Duration, Instant};

use jwt_relay::consume::{REASON_KIND, REASON_MESSAGE};
use jwt_relay::{Guard, Propagator, TokenHeader};
use jwt_relay_kafka::rdkafka::admin::{AdminClient, AdminOptions};
use jwt_relay_kafka::rdkafka::client::DefaultClientContext;
use jwt_relay_kafka::rdkafka::consumer::{BaseConsumer, Consumer as _};
use jwt_relay_kafka::rdkafka::message::{Headers as _, Message as _, OwnedMessage};
use jwt_relay_kafka::rdkafka::mocking::MockCluster;
use jwt_relay_kafka::rdkafka::producer::{BaseProducer, DefaultProducerContext, FutureRecord, Producer as _};
use jwt_relay_kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use jwt_relay_kafka::{Consumer, Publisher, ensure_topics};

use super::{DeadLetter, Failure, per_run};

/// The `orders` topic and its dead-letter topic, on a real broker or the mock cluster.
pub(crate) struct Orders {
    /// Kept alive for the run; `None` on a real broker.
    mock: Option<MockCluster<'static, DefaultProducerContext>>,
    bootstrap: String,
    topic: String,
}

impl Orders {
    /// Creates the topics on `brokers` (which must answer within 10 s), or on a new mock cluster.
    pub(crate) async fn connect(brokers: Option<&str>) -> Result<Orders, Failure> {
        let Some(brokers) = brokers else {
            let mock = MockCluster::new(1)?;
            for topic in ["orders", "orders.dlq"] {
                mock.create_topic(topic, 1, 1)?;
            }
            return Ok(Orders {
                bootstrap: mock.bootstrap_servers(),
                mock: Some(mock),
                topic: "orders".to_owned(),
            });
        };
        let orders = Orders {
            mock: None,
            bootstrap: brokers.to_owned(),
            topic: per_run("orders"),
        };
        let probe: BaseProducer = orders.config().create()?;
        tokio::task::spawn_blocking(move || probe.client().fetch_metadata(None, Duration::from_secs(10)))
            .await?
            .map_err(|e| format!("KAFKA_BROKERS is {brokers}, and no Kafka broker answers there: {e}"))?;
        ensure_topics(&orders.config(), &[&orders.topic, &orders.dead_letter_topic()], 1).await?;
        Ok(orders)
    }

    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    fn dead_letter_topic(&self) -> String {
        format!("{}.dlq", self.topic)
    }

    /// For the JSON line.
    pub(crate) fn transport(&self) -> &'static str {
        if self.mock.is_some() { "mock" } else { "broker" }
    }

    /// For people.
    pub(crate) fn describe(&self) -> String {
        match self.mock {
            Some(_) => "Kafka (librdkafka's mock cluster)".to_owned(),
            None => format!("Kafka at {}", self.bootstrap),
        }
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("message.timeout.ms", "20000");
        config
    }

    fn group(&self, group: &str) -> ClientConfig {
        let mut config = self.config();
        config
            .set("group.id", per_run(group))
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500");
        config
    }

    /// A producer propagating the current identity's token as it is.
    pub(crate) fn producer(&self) -> Result<Publisher, Failure> {
        Ok(Publisher::from_config(&self.config(), Propagator::default())?)
    }

    /// A consumer of the topic in a group named after `service`, stopping after `limit` records.
    pub(crate) fn consumer(&self, service: &str, guard: Guard, limit: u64) -> Result<Consumer, Failure> {
        Ok(Consumer::builder(&self.group(service), guard)
            .topic(&self.topic)
            .limit(limit)
            .build()?)
    }

    /// Waits (at most 30 s) until `consumer`, running, has joined its group and owns a partition.
    pub(crate) async fn until_assigned(&self, consumer: &Consumer) -> Result<(), Failure> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while consumer.inner().assignment()?.count() == 0 {
            if Instant::now() > deadline {
                return Err(format!("no partition of `{}` was assigned within 30 s", self.topic).into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Publishes `payload` with `token`, as someone with write access to the topic could, without
    /// going through any gateway.
    pub(crate) async fn publish_bad(&self, token: &str, payload: &[u8]) -> Result<(), Failure> {
        let record = FutureRecord::<(), [u8]>::to(&self.topic).payload(payload);
        self.producer()?.send_with_token(record, Some(token)).await?;
        Ok(())
    }

    /// The first `count` records of the dead-letter topic (waiting at most 30 s for them).
    pub(crate) async fn dead_letters(&self, count: usize) -> Result<Vec<DeadLetter>, Failure> {
        // Assigned, not subscribed: no group to join.
        let reader: BaseConsumer = self.group("dead-letter-reader").create()?;
        let mut partition = TopicPartitionList::new();
        partition.add_partition_offset(&self.dead_letter_topic(), 0, Offset::Beginning)?;
        reader.assign(&partition)?;
        let records = tokio::task::spawn_blocking(move || {
            let mut records: Vec<OwnedMessage> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while records.len() < count && Instant::now() < deadline {
                if let Some(Ok(record)) = reader.poll(Duration::from_millis(200)) {
                    records.push(record.detach());
                }
            }
            records
        })
        .await?;
        let token_header = TokenHeader::default();
        Ok(records
            .iter()
            .map(|record| {
                let header = |name: &str| {
                    record.headers().and_then(|headers| {
                        headers
                            .iter()
                            .find(|h| h.key.eq_ignore_ascii_case(name))
                            .map(|h| String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
                    })
                };
                DeadLetter {
                    kind: header(REASON_KIND).unwrap_or_default(),
                    message: header(REASON_MESSAGE).unwrap_or_default(),
                    payload: String::from_utf8_lossy(record.payload().unwrap_or_default()).into_owned(),
                    carries_token: header(token_header.name()).is_some(),
                }
            })
            .collect())
    }

    /// Deletes the topics this run created on a real broker.
    pub(crate) async fn remove(&self) {
        if self.mock.is_some() {
            return;
        }
        let deleted = async {
            let admin: AdminClient<DefaultClientContext> = self.config().create()?;
            let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
            admin
                .delete_topics(&[&self.topic, &self.dead_letter_topic()], &options)
                .await?;
            Ok::<(), Failure>(())
        };
        if let Err(error) = deleted.await {
            tracing::warn!(%error, topic = %self.topic, "could not delete the demonstration's topics");
        }
    }
}
