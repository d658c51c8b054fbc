//! # jwt-relay-http
//!
//! The synchronous edge of an asynchronous chain:
//!
//! - [`BearerLayer`]: a tower layer (axum, hyper, tonic) that verifies each request's
//!   `Authorization: Bearer` token with the core [`Verifier`](jwt_relay::Verifier), answers
//!   `401` with an RFC 6750 `WWW-Authenticate` challenge when it fails, and runs the handler
//!   with the verified identity in scope, so what the handler publishes to Kafka, RabbitMQ or
//!   NATS carries the user's token on.
//! - [`PropagateIdentity`]: a [`reqwest_middleware`] middleware for outgoing calls, which sets
//!   `Authorization: Bearer` from the current identity (forwarded, or exchanged for the
//!   target's audience), and sends nothing when there is none.
//!
//! A consumer's handler that calls an HTTP service with a client built with
//! [`PropagateIdentity`] calls it on behalf of the message's user, exactly as a synchronous
//! chain would.

mod client;
mod headers;
mod layer;

pub use client::{PropagateIdentity, destination};
pub use layer::{Bearer, BearerLayer};
pub use reqwest_middleware;
