//! A development token service (feature `testing`): identity provider and
//! RFC 8693 token exchange server in one, running in-process on a local
//! port, for tests, the demonstration and local development. Never for
//! production: keys and secrets live in memory, it speaks plain HTTP, and
//! it trusts no issuer but itself. [`PrivateKey`] makes, reads and writes
//! the development signing keys it (and `jwt-relay keygen` and `mint`) uses.
//!
//! [`DevSts`] serves
//!
//! | endpoint | what |
//! |---|---|
//! | `GET /.well-known/openid-configuration` | OIDC discovery: `issuer`, `jwks_uri`, `token_endpoint` |
//! | `GET /jwks.json` | the public key set |
//! | `POST /token` | token exchange (RFC 8693 §2.1), switched by [`Mode`] |
//! | `GET /stats` | [`Stats`] as JSON |
//!
//! `POST /token` authenticates the client (`client_secret_basic`,
//! `client_secret_post` or `private_key_jwt`; else `401 invalid_client`),
//! then verifies the `subject_token` (and an `actor_token`, if sent) as one
//! of its own tokens, for any audience. A token that expired less than
//! [`accept_expired_for`](DevStsConfig::accept_expired_for) ago is still
//! exchanged; older, forged or otherwise invalid ones get `400
//! invalid_grant`, whose description never holds the token. The new token
//! keeps the subject's `sub`; its `aud` is the requested `audience` and
//! `resource` values (else the subject's `aud`), its `scope` the requested
//! one, its `client_id` the authenticated client, and its `act` (RFC 8693
//! §4.1) names the actor (the actor token's `sub`, else the client), with
//! the subject token's own `act` nested inside.
//!
//! ```
//! use std::time::Duration;
//! use jwt_relay::testing::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DevSts, DevStsConfig};
//! use jwt_relay::{Issuer, Verifier};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sts = DevSts::start(DevStsConfig::default()).await?;
//! let user_token = sts.mint("alice", "orders", Duration::from_secs(60));
//!
//! // The orders service trades the user's token for one meant for billing.
//! let form = format!(
//!     "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
//!      &subject_token={user_token}\
//!      &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
//!      &audience=billing"
//! );
//! let answer = reqwest::Client::new()
//!     .post(sts.token_endpoint())
//!     .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
//!     .header("content-type", "application/x-www-form-urlencoded")
//!     .body(form)
//!     .send()
//!     .await?
//!     .bytes()
//!     .await?;
//! let answer: serde_json::Value = serde_json::from_slice(&answer)?;
//! let billing_token = answer["access_token"].as_str().unwrap_or_default();
//!
//! let verifier = Verifier::builder()
//!     .issuer(Issuer::new(sts.issuer()).audience("billing").jwks_url(sts.jwks_url()))
//!     .build()?;
//! let ctx = verifier.verify(billing_token).await?;
//! assert_eq!(ctx.subject(), Some("alice"));
//! assert_eq!(ctx.actors()[0].subject.as_deref(), Some(DEFAULT_CLIENT_ID));
//! assert_eq!(sts.stats().exchanges_issued, 1);
//! # Ok(())
//! # }
//! ```

mod broker;
mod client_auth;
mod config;
mod hostile;
mod mode;
mod oauth_error;
mod params;
mod private_key;
mod signer;
mod sts;
mod token_endpoint;

pub use broker::{broker_available, program_available};
pub use config::DevStsConfig;
pub use hostile::{Hostile, hostile};
pub use mode::{Mode, Stats};
pub use private_key::PrivateKey;
pub use sts::DevSts;

/// The client registered when none is configured.
pub const DEFAULT_CLIENT_ID: &str = "jwt-relay";
/// The secret of [`DEFAULT_CLIENT_ID`].
pub const DEFAULT_CLIENT_SECRET: &str = "dev-secret";
/// The `kid` of the generated signing key (and of a configured one without `kid`).
pub const DEFAULT_KID: &str = "dev-sts-1";
