//! # jwt-relay
//!
//! Carry an end user's identity through asynchronous messaging. In a
//! synchronous chain each service forwards `Authorization: Bearer <jwt>` and
//! verifies it locally; across Kafka, RabbitMQ or NATS the message waits, the
//! token expires on the way, and every hop must still know who the user is.
//!
//! This crate is the broker-independent core. Its parts, one module each:
//!
//! | module | what it holds |
//! |---|---|
//! | [`verify`] | a header value in, a verified identity ([`AuthContext`]) or a precise [`Error`] out: the [`Verifier`], its [`Issuer`]s and their [`Key`]s, remote key sets |
//! | [`consume`] | the consume side: the [`Guard`] and its expiry policies ([`Reject`], [`Grace`], [`Exchange`]), and the one [`Engine`](consume::Engine) every consumer runs, each transport implementing [`Settle`](consume::Settle) |
//! | [`publish`] | the publish side: which token a message leaves with ([`Propagator`], the ambient identity [`scope`] / [`current`]) |
//! | [`exchange`] | OAuth 2.0 Token Exchange (RFC 8693): the client ([`Rfc8693Client`]) and its cache |
//! | [`carrier`] | where the token travels: the [`TokenHeader`], and the [`Injector`](carrier::Injector) / [`Extractor`](carrier::Extractor) traits every adapter implements for its headers |
//! | [`observe`] | the metrics and the `jwt_relay.consume` span |
//! | [`memory`] | an in-memory broker and its consumer, on the same engine as the adapters |
//! | `testing` | (feature `testing`) the development token service and hostile inputs |
//!
//! What fails says what it means ([`ErrorClass`]: dead-letter, retry, or
//! stop). The broker adapters (`jwt-relay-kafka`, `jwt-relay-rabbitmq`,
//! `jwt-relay-nats`) each implement [`Settle`](consume::Settle) once, over
//! their broker's own verbs, and keep their read loop; everything else is
//! here.
//!
//! ## Features
//!
//! | feature | default | what it does |
//! |---|---|---|
//! | `aws-lc-rs` | yes | signature checks through aws-lc-rs (RS256 ≈ 15× faster than pure Rust); the one used when both backends are on |
//! | `rust-crypto` | no | signature checks in pure Rust, for targets without a C compiler (with `default-features = false`) |
//! | `opentelemetry` | no | W3C trace context in message headers: a publish writes the current span's `traceparent`, a consumed message's span continues it (OpenTelemetry's global propagator) |
//! | `testing` | no | the development token service `jwt_relay::testing::DevSts`, for tests and local development (and development keys, `jwt_relay::testing::PrivateKey`) |
//!
//! One backend is required: a build with neither does not compile. Features
//! add up across a build, so both may end up on (another crate enabling
//! jsonwebtoken's `rust_crypto`, say): then aws-lc-rs checks the signatures,
//! installed as jsonwebtoken's process-wide provider on first use
//! ([`crypto_provider`](verify::crypto_provider)). The adapters forward both features (`aws-lc-rs` by
//! default), so `rust-crypto` alone needs `default-features = false` on each
//! jwt-relay crate you depend on.
//!
//! ## Example
//!
//! ```
//! use jwt_relay::{Algorithm, Headers, Issuer, Key, Verifier, ErrorClass};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), jwt_relay::Error> {
//! let secret = b"a development secret of 32+ bytes!";
//! let verifier = Verifier::builder()
//!     .issuer(
//!         Issuer::new("https://id.example.com")
//!             .audience("billing")
//!             .key(Key::from_secret(secret, Algorithm::HS256)?)?,
//!     )
//!     .build()?;
//!
//! // A message as a broker adapter sees it: headers in, identity out.
//! let mut headers = Headers::new();
//! headers.append("Authorization", "Bearer not-a-token");
//! match verifier.verify_headers(&headers).await {
//!     Ok(ctx) => println!("message from {:?}", ctx.subject()),
//!     Err(e) if e.class() == ErrorClass::Permanent => println!("dead-letter: {e}"),
//!     Err(e) => println!("retry or stop: {e}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! A remote issuer is one line: `Issuer::new(iss).audience(aud).discovery()`
//! or `.jwks_url(url)`; the key set is fetched on first use, refreshed after
//! ten minutes, refetched (at most once per 30 s, one fetch shared by all
//! callers) for an unknown `kid`, and kept serving while its endpoint is down.

mod backoff;
pub mod carrier;
pub mod consume;
mod error;
pub mod exchange;
mod failure;
mod http;
pub mod memory;
pub mod observe;
pub mod publish;
pub mod verify;

#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use backoff::Backoff;
pub use carrier::{Headers, TokenHeader};
pub use consume::{ConsumeError, Event, EventOutcome, Exchange, Grace, Guard, Reject, RunReport};
pub use error::{Error, ErrorClass, ErrorKind, Result};
pub use exchange::Rfc8693Client;
pub use jsonwebtoken::Algorithm;
pub use publish::{Propagator, PublishError, current, scope};
pub use verify::{Acceptance, AuthContext, Claims, Issuer, Key, KeySet, Verifier, dangerous};

/// Re-exported so users can build keys and tokens with the same version.
pub use jsonwebtoken;

/// The README's Rust snippets compile as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
