//! Kafka: rdkafka's `FutureProducer` and `StreamConsumer` against jwt-relay's `Publisher` and
//! `Consumer`, on librdkafka's mock cluster or a real broker.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use jwt_relay::{AuthContext, Guard, Propagator};
use jwt_relay_kafka::rdkafka::config::ClientConfig;
use jwt_relay_kafka::rdkafka::consumer::{Consumer as _, StreamConsumer};
use jwt_relay_kafka::rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use jwt_relay_kafka::rdkafka::mocking::MockCluster;
use jwt_relay_kafka::rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use jwt_relay_kafka::rdkafka::util::Timeout;
use jwt_relay_kafka::{Consumer, Publisher, ensure_topics};

use crate::instances::{Running, Tally, counting};
use crate::measure::{Progress, numbered_payload, payload};
use crate::{AUTHORIZATION, Failure, IN_FLIGHT, Side, bearer, check_by_hand, concurrently, unique};

pub(crate) struct Kafka {
    name: &'static str,
    /// Kept alive for the run; `None` on a real broker.
    mock: Option<MockCluster<'static, DefaultProducerContext>>,
    bootstrap: String,
    raw: FutureProducer,
    wrapped: Publisher,
    publish_topic: String,
    /// The topic `prepare` filled, and how many records it holds.
    consume_topic: Mutex<Option<(String, usize)>>,
    /// The topic of [`PARTITIONS`] partitions `fill_numbered` filled, for `--instances`.
    instances_topic: Mutex<Option<String>>,
}

/// The partitions of the topic that `--instances` consumer groups share.
pub(crate) const PARTITIONS: i32 = 6;

impl Kafka {
    /// librdkafka's mock cluster (one broker).
    pub(crate) async fn mock() -> Result<Kafka, Failure> {
        let mock = MockCluster::new(1)?;
        let bootstrap = mock.bootstrap_servers();
        Kafka::new("kafka (mock cluster)", Some(mock), bootstrap).await
    }

    /// The broker at `bootstrap`.
    pub(crate) async fn broker(bootstrap: &str) -> Result<Kafka, Failure> {
        Kafka::new("kafka (Tansu broker)", None, bootstrap.to_owned()).await
    }

    async fn new(
        name: &'static str,
        mock: Option<MockCluster<'static, DefaultProducerContext>>,
        bootstrap: String,
    ) -> Result<Kafka, Failure> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &bootstrap)
            .set("message.timeout.ms", "30000")
            .set("linger.ms", "5");
        let kafka = Kafka {
            name,
            mock,
            bootstrap,
            raw: config.create()?,
            wrapped: Publisher::from_config(&config, Propagator::default())?,
            publish_topic: unique("bench-publish"),
            consume_topic: Mutex::new(None),
            instances_topic: Mutex::new(None),
        };
        kafka.create(&kafka.publish_topic, 1).await?;
        Ok(kafka)
    }

    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The most records one consume run can read back: the mock cluster keeps only the last
    /// 5 MB of a partition (about 2 500 of these records), and drops older ones as more arrive.
    pub(crate) fn capacity(&self) -> Option<usize> {
        self.mock.as_ref().map(|_| 2_000)
    }

    async fn create(&self, topic: &str, partitions: i32) -> Result<(), Failure> {
        match &self.mock {
            Some(mock) => mock.create_topic(topic, partitions, 1)?,
            None => {
                let mut config = ClientConfig::new();
                config.set("bootstrap.servers", &self.bootstrap);
                ensure_topics(&config, &[topic, &format!("{topic}.dlq")], partitions).await?;
            }
        }
        Ok(())
    }

    fn group(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", unique("bench"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.offset.store", "false")
            .set("session.timeout.ms", "6000");
        config
    }

    /// Publishes one record per token; the raw client writes the header by hand.
    pub(crate) async fn publish(
        &self,
        wrapped: bool,
        tokens: &[String],
        contexts: &[AuthContext],
    ) -> Result<f64, Failure> {
        let body = payload();
        let topic = &self.publish_topic;
        if wrapped {
            concurrently(tokens.len(), IN_FLIGHT, |i| {
                let record = FutureRecord::<(), [u8]>::to(topic).payload(&body[..]);
                async move {
                    self.wrapped.send(record, Some(&contexts[i])).await?;
                    Ok(())
                }
            })
            .await
        } else {
            self.send_raw(topic, tokens, None).await
        }
    }

    /// One record per token to `topic` through rdkafka, the header written by hand. Given a
    /// number of partitions, record `i`'s payload is numbered `i` ([`numbered_payload`]) and it
    /// goes to partition `i` modulo that number: every partition holds as many records (the
    /// producer's sticky partitioner would fill some and leave others almost empty).
    async fn send_raw(&self, topic: &str, tokens: &[String], numbered: Option<i32>) -> Result<f64, Failure> {
        let body = payload();
        concurrently(tokens.len(), IN_FLIGHT, |i| {
            let value = bearer(&tokens[i]);
            let numbered = numbered.map(|partitions| {
                let partition = i32::try_from(i).unwrap_or_default() % partitions.max(1);
                (numbered_payload(i), partition)
            });
            let body = &body;
            async move {
                let (body, partition) = match &numbered {
                    Some((numbered, partition)) => (&numbered[..], Some(*partition)),
                    None => (&body[..], None),
                };
                let headers = OwnedHeaders::new().insert(Header {
                    key: AUTHORIZATION,
                    value: Some(&value),
                });
                let mut record = FutureRecord::<(), [u8]>::to(topic).payload(body).headers(headers);
                record.partition = partition;
                self.raw
                    .send(record, Timeout::After(Duration::from_secs(30)))
                    .await
                    .map_err(|(e, _)| e)?;
                Ok(())
            }
        })
        .await
    }

    /// Fills a new topic with one record per token (not timed).
    pub(crate) async fn prepare(&self, tokens: &[String]) -> Result<(), Failure> {
        let topic = unique("bench-consume");
        self.create(&topic, 1).await?;
        self.send_raw(&topic, tokens, None).await?;
        *self.consume_topic.lock().unwrap_or_else(|p| p.into_inner()) = Some((topic, tokens.len()));
        Ok(())
    }

    /// `--instances`: fills a new topic of [`PARTITIONS`] partitions with one numbered record
    /// per token (untimed).
    pub(crate) async fn fill_numbered(&self, tokens: &[String]) -> Result<(), Failure> {
        let topic = unique("bench-instances");
        self.create(&topic, PARTITIONS).await?;
        self.send_raw(&topic, tokens, Some(PARTITIONS)).await?;
        *self.instances_topic.lock().unwrap_or_else(|p| p.into_inner()) = Some(topic);
        Ok(())
    }

    /// `--instances`: a new consumer group's id, reading the filled topic from its start.
    pub(crate) fn group_for_instances(&self) -> String {
        unique("bench-instances")
    }

    /// `--instances`: one more consumer in `group`, its own client, counting in `tally` what it
    /// handles.
    pub(crate) fn instance(&self, group: &str, guard: Guard, tally: &Arc<Tally>, index: usize) -> Running {
        let mut config = self.group();
        config.set("group.id", group);
        let topic = self
            .instances_topic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let (handler, shutdown) = (counting(tally, index), tally.shutdown());
        Box::pin(async move {
            let topic = topic.ok_or("no topic filled for --instances")?;
            let consumer = Consumer::builder(&config, guard).topic(topic).build()?;
            Ok(consumer.run(handler, shutdown).await?)
        })
    }

    /// Reads the prepared topic from the start in a new group, storing each offset.
    pub(crate) async fn consume(&self, reader: Side, guard: Guard) -> Result<f64, Failure> {
        let (topic, count) = self
            .consume_topic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or("nothing prepared")?;
        let progress = Arc::new(Progress::default());
        if reader == Side::JwtRelay {
            let ticks = progress.clone();
            let consumer = Consumer::builder(&self.group(), guard)
                .topic(&topic)
                .limit(count as u64)
                .on_event(move |_| {
                    tick(&ticks, count);
                })
                .build()?;
            let report = tokio::time::timeout(
                crate::tokens::PATIENCE,
                consumer.run(
                    |_| async { Ok::<(), Infallible>(()) },
                    std::future::pending::<()>(),
                ),
            )
            .await??;
            if report.accepted != count as u64 {
                return Err(format!("{} of {count} records accepted: {report:?}", report.accepted).into());
            }
        } else {
            let consumer: StreamConsumer = self.group().create()?;
            consumer.subscribe(&[&topic])?;
            let mut stream = consumer.stream();
            let read = async {
                while let Some(record) = stream.next().await {
                    let record = record?;
                    if reader == Side::ByHand {
                        let header = record
                            .headers()
                            .and_then(|h| h.iter().find(|h| h.key == AUTHORIZATION))
                            .and_then(|h| h.value);
                        check_by_hand(guard.verifier(), header).await?;
                    }
                    consumer.store_offset_from_message(&record)?;
                    if tick(&progress, count) == count {
                        break;
                    }
                }
                Ok::<(), Failure>(())
            };
            tokio::time::timeout(crate::tokens::PATIENCE, read)
                .await
                .map_err(|_| {
                    format!(
                        "the raw consumer read {} of {count} records in time",
                        progress.tick() - 1
                    )
                })??;
        }
        Ok(progress.rate())
    }
}

/// One more of `count` records settled, and a mark for callgrind at the first and the last (see
/// `--instructions`); the count so far.
fn tick(progress: &Progress, count: usize) -> usize {
    let settled = progress.tick();
    if settled == 1 || settled == count {
        crate::callgrind_mark("record");
    }
    settled
}
