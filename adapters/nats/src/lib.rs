//! # jwt-relay-nats
//!
//! [jwt-relay](jwt_relay) for NATS, over [`async_nats`]: the end user's
//! token travels in message headers (`Authorization: Bearer …`), and is
//! verified by the core [`Guard`](jwt_relay::Guard) before your handler
//! runs, on core NATS, request/reply and JetStream.
//!
//! | piece | publish side | consume side |
//! |---|---|---|
//! | core NATS | [`Publisher::publish`] | [`Consumer`] (plain or queue group): rejections reported through a callback and the [`Stats`], optionally copied to a dead-letter subject |
//! | request/reply | [`Publisher::request`] | [`NatsService`] over NATS micro endpoints or plain subscriptions: a refused token is answered at once with a 401 [`ServiceError`] |
//! | JetStream | [`JetStreamPublisher`] (waits for the stream's ack) | [`JetStreamConsumer`] (pull, at least once: ack, nak with delay, dead-letter then term, `in_progress`); [`Topology`] declares the dead-letter stream |
//! | headers | [`NatsHeaders`] / [`NatsHeadersRef`]: jwt-relay carriers over [`async_nats::HeaderMap`] | |
//!
//! On publish the token comes from the context you pass, else from the
//! current one ([`jwt_relay::current`]): inside a handler, what you publish
//! carries the identity of the message you are handling, with nothing to
//! pass around. On consume, every message ends in exactly one of the core's
//! outcomes, and this crate maps each onto NATS; the JetStream metadata
//! timestamp (set by the server) reaches the expiry policy as a broker-set
//! publish time, so [`Grace`](jwt_relay::Grace) can accept a token that
//! expired while its message waited.
//!
//! ## Features
//!
//! `aws-lc-rs` (default) and `rust-crypto` choose the core's signature
//! backend, as `jwt-relay`'s features of the same names do. This crate
//! enables async-nats's `jetstream` and `service` features, with TLS
//! through `aws-lc-rs` (whichever signature backend is chosen); enable more
//! (`nkeys`, `websockets`, …) on your own `async-nats` dependency: the
//! features unify.
//!
//! ## Example
//!
//! ```no_run
//! use std::time::Duration;
//! use jwt_relay::{AuthContext, Grace, Guard, Issuer, Propagator, Verifier};
//! use jwt_relay_nats::{Received, JetStreamConsumer, JetStreamPublisher, Topology, async_nats};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let user: AuthContext = todo!();
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let js = async_nats::jetstream::new(client);
//! let declared = Topology::new("ORDERS", ["orders.*"]).declare(&js).await?;
//!
//! // Publishing as the user (for example in an HTTP handler that verified them).
//! let publisher = JetStreamPublisher::new(js.clone(), Propagator::default());
//! jwt_relay::scope(user, async {
//!     publisher.publish("orders.eu", Default::default(), "2 books", None).await
//! })
//! .await?;
//!
//! // Consuming: verified before the handler runs; expired tokens accepted for
//! // an hour after they were published, by the server's clock.
//! let verifier = Verifier::builder()
//!     .issuer(Issuer::new("https://id.example.com").audience("orders").discovery())
//!     .build()?;
//! let guard = Guard::builder(verifier).policy(Grace::new(Duration::from_secs(3600))).build();
//! let consumer = declared
//!     .stream
//!     .get_or_create_consumer("billing", async_nats::jetstream::consumer::pull::Config {
//!         durable_name: Some("billing".into()),
//!         ..Default::default()
//!     })
//!     .await?;
//! JetStreamConsumer::new(consumer, guard)
//!     .run(
//!         |delivery: Received| async move {
//!             println!("{:?} ordered {:?}", delivery.context().subject(), delivery.payload());
//!             Ok::<(), String>(())
//!         },
//!         async { tokio::signal::ctrl_c().await.unwrap_or(()) },
//!     )
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! Rejected messages (missing, forged, expired, wrong audience, …) are
//! copied to `orders.eu.dlq` with `x-jwt-relay-reason-*` headers and without
//! the token, then terminated; a key-set outage makes messages wait (`nak`
//! with a delay) instead of failing them.

mod acks;
mod consumer;
mod dead_letter;
mod error;
mod headers;
mod jetstream_consumer;
mod jetstream_publisher;
mod jetstream_source;
mod publisher;
mod received;
mod run_loop;
mod service;
mod service_error;
mod subject;
mod topology;

pub use consumer::{Consumer, Subscription};
pub use dead_letter::DeadLetter;
pub use error::{Error, ErrorKind, Result};
pub use headers::{NatsHeaders, NatsHeadersRef};
pub use jetstream_consumer::JetStreamConsumer;
pub use jetstream_publisher::JetStreamPublisher;
pub use jwt_relay::consume::{Position, Stats};
pub use jwt_relay::{Event, EventOutcome, RunReport};
pub use publisher::Publisher;
pub use received::Received;
pub use service::{NatsService, ServiceRequest};
pub use service_error::ServiceError;
pub use topology::{Declared, Topology};

// The headers saying where a dead-lettered copy came from: the core names them for every adapter.
pub use jwt_relay::consume::{ORIGINAL_SEQUENCE, ORIGINAL_STREAM, ORIGINAL_SUBJECT};

/// Re-exported so users build clients, headers and consumers with the same version.
pub use async_nats;
/// Re-exported: payloads are [`bytes::Bytes`].
pub use bytes;
