//! # jwt-relay for RabbitMQ
//!
//! The end user's JWT travels in the AMQP message's headers and is verified before your
//! handler runs, over [lapin](https://docs.rs/lapin) (re-exported as [`lapin`]):
//!
//! - [`Publisher`] wraps a `lapin::Channel` in confirm mode: it writes the token of an explicit
//!   or the ambient context ([`jwt_relay::scope`]) through the core [`jwt_relay::Propagator`],
//!   keeps your properties and headers, stamps the `timestamp` property when you did not, and
//!   waits for the confirm: a nack, a timeout or a returned (mandatory) message is an error.
//! - [`Consumer`] runs the core [`jwt_relay::Guard`] on every delivery and your async handler in
//!   the verified identity's scope, acknowledging only after it succeeded; rejected messages go
//!   to a dead-letter queue with their reason and without their token ([`DeadLetter`]),
//!   transient failures and handler errors come back later through a retry queue, a
//!   configuration error stops it. It reconnects with backoff when the connection drops. It
//!   decides with the core's consume engine, and reports what it did as every adapter does:
//!   [`Event`]s, [`Stats`] and a [`RunReport`].
//! - [`Topology`] declares the work queue, its dead-letter exchange and queue and its retry
//!   queue, classic or quorum, in one call.
//! - [`AmqpHeaders`] and [`AmqpHeadersMut`] map AMQP's typed headers onto the core's carrier
//!   traits; their documentation states the AMQP header rules.
//!
//! ## Features
//!
//! | feature | default | what it does |
//! |---|---|---|
//! | `aws-lc-rs` | yes | the core's signature checks through aws-lc-rs (`jwt-relay/aws-lc-rs`) |
//! | `rust-crypto` | no | the core's signature checks in pure Rust (`jwt-relay/rust-crypto`), with `default-features` off |
//! | `rustls` | yes | `amqps://` through rustls (aws-lc-rs, as the core), trusting the platform's certificates |
//!
//! lapin runs on tokio (a tokio runtime must be running). For another TLS stack, turn
//! `default-features` off and enable lapin's (`native-tls`, `openssl`) in your own `Cargo.toml`.
//!
//! ## Example
//!
//! ```no_run
//! use jwt_relay::{Guard, Issuer, Propagator, Verifier};
//! use jwt_relay_rabbitmq::lapin::{BasicProperties, Connection, ConnectionProperties};
//! use jwt_relay_rabbitmq::{Connector, Consumer, Publisher, Received, Topology};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let addr = std::env::var("AMQP_ADDR").unwrap_or_else(|_| "amqp://127.0.0.1:5672/%2f".into());
//! let verifier = Verifier::builder()
//!     .issuer(Issuer::new("https://id.example.com").audience("invoices").discovery())
//!     .build()?;
//!
//! // Once: the work queue, `invoices.dlx`, `invoices.held`, `invoices.dlq` and `invoices.retry`.
//! let connection = Connection::connect(&addr, ConnectionProperties::default()).await?;
//! Topology::new("invoices").declare(&connection.create_channel().await?).await?;
//!
//! // Publishing from a handler (or any code inside `jwt_relay::scope`) carries the user's token.
//! let publisher = Publisher::new(connection.create_channel().await?, Propagator::default()).await?;
//!
//! // Consuming: verified before the handler runs, which runs in the user's identity.
//! // It owns its connector, to connect again when the connection drops.
//! let consumer = Consumer::builder(Connector::new(addr), "invoices", Guard::new(verifier))
//!     .prefetch(16)
//!     .build();
//! let report = consumer
//!     .run(
//!         move |received: Received| {
//!             let publisher = publisher.clone();
//!             async move {
//!                 println!("invoice for {:?}", received.context().subject());
//!                 let shipping = BasicProperties::default();
//!                 publisher.publish("", "shipping", received.payload(), shipping, None).await
//!             }
//!         },
//!         std::future::pending::<()>(), // or a shutdown signal
//!     )
//!     .await?;
//! println!("{} accepted, {} dead-lettered", report.accepted, report.dead_lettered);
//! # Ok(())
//! # }
//! ```
//!
//! ## Secrets in lapin's own logs
//!
//! Nothing in this crate logs or prints a token, and `Debug` of its types shows header names
//! only. lapin itself logs a returned (unroutable) message with its headers at `WARN` (target
//! `lapin::returned_messages`), and discarded frames at `TRACE` (target `lapin::frames`): filter
//! those targets out of your subscriber where logs are kept. `Debug` of lapin's own
//! `BasicProperties` and `Delivery` shows header values: do not log them.

mod confirm;
mod connect;
mod consumer;
mod copy;
mod dead_letter;
mod error;
mod headers;
mod held;
mod publisher;
mod received;
mod session;
mod settle;
mod topology;

pub use connect::{Connect, Connector};
pub use consumer::{Consumer, ConsumerBuilder};
pub use copy::{ATTEMPT_HEADER, FAILURES_HEADER};
pub use dead_letter::DeadLetter;
pub use error::{Error, ErrorKind, Result};
pub use headers::{AmqpHeaders, AmqpHeadersMut};
// What a consumer reports, the same for every broker.
pub use jwt_relay::consume::{ORIGINAL_DESTINATION, ORIGINAL_SUBJECT, ORIGINAL_TIMESTAMP, Position, Stats};
pub use jwt_relay::{Event, EventOutcome, RunReport};
pub use publisher::{Publisher, destination};
pub use received::Received;
pub use topology::{QueueKind, Topology};

/// Re-exported so users build channels, properties and tables with the same version.
pub use lapin;
