//! # jwt-relay-kafka
//!
//! The end user's token through Kafka, over [rdkafka](https://docs.rs/rdkafka) (re-exported as
//! [`rdkafka`]):
//!
//! - [`Publisher`] wraps a `FutureProducer`: each record leaves with the token of an explicit
//!   context or of the handler's ambient one, in its headers, chosen by the core
//!   [`Propagator`](jwt_relay::Propagator) (forwarded, exchanged per topic, refreshed ahead).
//! - [`Consumer`] wraps a `StreamConsumer`: each record goes through the core
//!   [`Guard`](jwt_relay::Guard) before the handler sees it; accepted records reach the handler
//!   with their verified [`AuthContext`](jwt_relay::AuthContext) in scope, rejected ones go to a
//!   [dead-letter topic](DeadLetter), and records waiting for a dependency (the key set, the
//!   token service) are retried with their partition paused, never dropped. An offset is stored
//!   only once its record is settled: at least once.
//!
//! # The Kafka header rules
//!
//! Kafka headers are an ordered list of (name, bytes-or-null) pairs whose names may repeat.
//!
//! - **Written**: the token header once, after every header the caller set, replacing any
//!   header whose name differs from it only in ASCII case.
//! - **Read** ([`KafkaHeaders`]): the name matches in any ASCII case. Two values (one name
//!   repeated, or two casings) are two token headers: rejected (`DuplicateHeader`), never "first
//!   wins". A null value is a header without a value (`EmptyToken`); a value that is not ASCII
//!   is rejected (`NonAscii`).
//!
//! # Example
//!
//! A service that reads `orders`, and sends to `invoices` on behalf of each order's user,
//! without touching headers:
//!
//! ```no_run
//! use jwt_relay::{Guard, Propagator, Verifier};
//! use jwt_relay_kafka::rdkafka::ClientConfig;
//! use jwt_relay_kafka::rdkafka::producer::FutureRecord;
//! use jwt_relay_kafka::{Consumer, Publisher};
//!
//! # async fn run(verifier: Verifier) -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = ClientConfig::new();
//! config.set("bootstrap.servers", "127.0.0.1:9092");
//! let producer = Publisher::from_config(&config, Propagator::default())?;
//! config.set("group.id", "billing");
//! let consumer = Consumer::builder(&config, Guard::new(verifier)).topic("orders").build()?;
//! consumer
//!     .run(
//!         move |order| {
//!             let producer = producer.clone();
//!             async move {
//!                 let invoice = FutureRecord::to("invoices").key("1").payload(order.payload());
//!                 producer.send(invoice, None).await.map(|_| ())
//!             }
//!         },
//!         std::future::pending::<()>(),
//!     )
//!     .await?;
//! # Ok(())
//! # }
//! ```

mod consumer;
mod dead_letter;
mod headers;
mod ownership;
mod partition;
mod publisher;
mod received;
mod topics;

pub use consumer::{Consumer, ConsumerBuilder, Result};
pub use dead_letter::DeadLetter;
pub use headers::KafkaHeaders;
pub use jwt_relay::consume::{
    ConsumeErrorKind as ErrorKind, ORIGINAL_DESTINATION, ORIGINAL_OFFSET, ORIGINAL_PARTITION,
    ORIGINAL_SUBJECT, ORIGINAL_TIMESTAMP, Position, Stats,
};
pub use jwt_relay::{ConsumeError as Error, Event, EventOutcome, RunReport};
pub use publisher::Publisher;
/// The rdkafka version this crate is built on.
pub use rdkafka;
pub use received::Received;
pub use topics::ensure_topics;
