//! # jwt-relay
//!
//! Carry an end user's identity through asynchronous messaging. In a
//! synchronous chain each service forwards `Authorization: Bearer <jwt>` and
//! verifies it locally; across Kafka, RabbitMQ or NATS the message waits, the
//! token expires on the way, and every hop must still know who the user is.
//!
//! This crate is the broker-independent core: where the token travels
//! ([`TokenHeader`], [`Injector`], [`Extractor`]), how it is verified
//! ([`Verifier`], [`Issuer`], [`Key`], [`KeySet`]), and what a failure means
//! ([`Error`], [`ErrorKind`], [`ErrorClass`]: dead-letter, retry, or stop).
//! Broker adapters (`jwt-relay-kafka`, `jwt-relay-rabbitmq`, `jwt-relay-nats`)
//! only map headers and outcomes onto their broker.
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
//! ([`crypto_provider`]). The adapters forward both features (`aws-lc-rs` by
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
pub use carrier::{Extractor, HeaderValue, Headers, InjectError, Injector, TokenHeader};
pub use consume::{
    CREDENTIAL_HEADERS, ConsumeError, ConsumeErrorKind, Event, EventOutcome, ExpiredToken, ExpiryPolicy,
    Grace, Guard, GuardBuilder, MAX_REASON_MESSAGE, MessageInfo, ORIGINAL_DESTINATION, ORIGINAL_OFFSET,
    ORIGINAL_PARTITION, ORIGINAL_SEQUENCE, ORIGINAL_STREAM, ORIGINAL_SUBJECT, ORIGINAL_TIMESTAMP, Or,
    Outcome, Position, PublishTime, REASON_CLASS, REASON_KIND, REASON_MESSAGE, REASON_TIME, Redaction,
    Reject, RunReport, Stats, TimestampSource, already_dead_lettered, dead_letter_headers, reason_headers,
};
pub use error::{Error, ErrorClass, ErrorKind, Result};
pub use exchange::{
    ACCESS_TOKEN_TYPE, ClientAuth, Exchange, ExchangeCache, ExchangeRequest, IssuedToken, JWT_TOKEN_TYPE,
    Rfc8693Client, Rfc8693ClientBuilder, TokenExchanger,
};
pub use jsonwebtoken::Algorithm;
pub use publish::{
    Propagator, PropagatorBuilder, PublishError, PublishErrorKind, WithIdentity, current, scope,
};
pub use verify::{
    Acceptance, Actor, AuthContext, Claims, Issuer, JwkCheck, JwkOutcome, Key, KeySet, MAX_LEEWAY, ReadAhead,
    RemoteOptions, Verifier, VerifierBuilder, alg_name, check_jwks, crypto_provider, dangerous, now_unix,
};

/// Re-exported so users can build keys and tokens with the same version.
pub use jsonwebtoken;

/// The README's Rust snippets compile as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
