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

mod ahead;
mod ambient;
mod backoff;
mod carrier;
mod claims;
pub mod consume;
mod consume_error;
mod context;
mod crypto;
mod dead_letter;
mod error;
mod exchange;
mod failure;
mod guard;
mod http;
mod issuer;
mod jose;
mod key;
mod key_set;
pub mod memory;
pub mod observe;
mod policy;
mod propagator;
mod publish_error;
mod read_ahead;
mod remote;
mod token_header;
mod trace_context;
mod verified_cache;
mod verifier;

#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use ambient::{WithIdentity, current, scope};
pub use backoff::Backoff;
pub use carrier::{Extractor, HeaderValue, Headers, InjectError, Injector};
pub use claims::Claims;
pub use consume::{Event, EventOutcome, Position, RunReport, Stats};
pub use consume_error::{ConsumeError, ConsumeErrorKind};
pub use context::{Acceptance, Actor, AuthContext};
pub use crypto::crypto_provider;
pub use dead_letter::{
    CREDENTIAL_HEADERS, MAX_REASON_MESSAGE, ORIGINAL_DESTINATION, ORIGINAL_OFFSET, ORIGINAL_PARTITION,
    ORIGINAL_SEQUENCE, ORIGINAL_STREAM, ORIGINAL_SUBJECT, ORIGINAL_TIMESTAMP, REASON_CLASS, REASON_KIND,
    REASON_MESSAGE, REASON_TIME, Redaction, already_dead_lettered, dead_letter_headers, reason_headers,
};
pub use error::{Error, ErrorClass, ErrorKind, Result};
pub use exchange::{
    ACCESS_TOKEN_TYPE, ClientAuth, Exchange, ExchangeCache, ExchangeRequest, IssuedToken, JWT_TOKEN_TYPE,
    Rfc8693Client, Rfc8693ClientBuilder, TokenExchanger,
};
pub use guard::{Guard, GuardBuilder, MessageInfo};
pub use issuer::{Issuer, MAX_LEEWAY, dangerous};
pub use jsonwebtoken::Algorithm;
pub use key::{Key, alg_name};
pub use key_set::{JwkCheck, JwkOutcome, KeySet, check_jwks};
pub use policy::{ExpiredToken, ExpiryPolicy, Grace, Or, Outcome, PublishTime, Reject, TimestampSource};
pub use propagator::{Propagator, PropagatorBuilder};
pub use publish_error::{PublishError, PublishErrorKind};
pub use read_ahead::ReadAhead;
pub use remote::RemoteOptions;
pub use token_header::TokenHeader;
pub use verifier::{Verifier, VerifierBuilder, now_unix};

/// Re-exported so users can build keys and tokens with the same version.
pub use jsonwebtoken;

/// The README's Rust snippets compile as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
