//! An in-process broker that runs the same [`Propagator`](crate::Propagator)
//! and [`Guard`](crate::Guard) as the broker adapters: test handlers without
//! a broker, run the demonstration anywhere, and read here what every
//! adapter does with each [`Outcome`](crate::consume::Outcome).
//!
//! - [`MemoryBroker`]: named topics, created on first use. Its
//!   [`publish`](MemoryBroker::publish) is raw (headers as given: forged or
//!   garbage tokens for tests); [`messages`](MemoryBroker::messages),
//!   [`dead_letters`](MemoryBroker::dead_letters) and
//!   [`counters`](MemoryBroker::counters) show what a topic holds.
//! - [`MemoryPublisher`]: publishes as a service does, writing the token
//!   through the `Propagator`, with a broker-set publish time.
//! - [`MemoryConsumer`]: consumes through the `Guard`, runs the handler in
//!   the verified identity's [`scope`](crate::scope), and acknowledges,
//!   dead-letters, retries or halts.
//!
//! ```
//! use jwt_relay::jsonwebtoken::{EncodingKey, Header, encode};
//! use jwt_relay::memory::{Received, MemoryBroker, MemoryConsumer, MemoryPublisher};
//! use jwt_relay::{Algorithm, Guard, Headers, Issuer, Key, Propagator, Verifier};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = b"a development secret of 32+ bytes!";
//! let verifier = Verifier::builder()
//!     .issuer(
//!         Issuer::new("https://id.example.com")
//!             .audience("orders")
//!             .key(Key::from_secret(secret, Algorithm::HS256)?)?,
//!     )
//!     .build()?;
//! // The user's token, as the HTTP edge received and verified it.
//! let claims = serde_json::json!({
//!     "iss": "https://id.example.com", "aud": "orders", "sub": "alice",
//!     "exp": jwt_relay::verify::now_unix() + 300,
//! });
//! let signing_key = EncodingKey::from_secret(secret)?;
//! let token = encode(&Header::new(Algorithm::HS256), &claims, &signing_key)?;
//! let user = verifier.verify(&token).await?;
//!
//! // Publishing in the user's scope: the token travels without being passed.
//! let broker = MemoryBroker::new();
//! let publisher = MemoryPublisher::new(broker.clone(), Propagator::default());
//! jwt_relay::scope(user, publisher.publish("orders", Headers::new(), "2 books", None)).await?;
//!
//! // Consuming: verified before the handler runs.
//! let consumer = MemoryConsumer::new(broker.clone(), "orders", Guard::new(verifier));
//! let report = consumer
//!     .run_until_idle(|delivery: Received| async move {
//!         println!("{:?} ordered {:?}", delivery.context().subject(), delivery.payload());
//!         Ok::<(), String>(())
//!     })
//!     .await?;
//! assert_eq!(report.accepted, 1);
//! assert!(broker.messages("orders").is_empty());
//! # Ok(())
//! # }
//! ```

mod broker;
mod consumer;
mod message;
mod publisher;
mod received;

pub use broker::{Counters, MemoryBroker};
pub use consumer::MemoryConsumer;
pub use message::{Message, MessageId};
pub use publisher::MemoryPublisher;
pub use received::Received;
