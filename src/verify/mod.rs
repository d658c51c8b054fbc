//! Verification: a header value in, a verified identity or a precise error out.
//!
//! A [`Verifier`] trusts one or more [`Issuer`]s, each with its [`Key`]s (a fixed [`KeySet`],
//! or a remote one: a JWKS URL or OIDC discovery, refreshed with care, [`RemoteOptions`]). What
//! it proves is an [`AuthContext`]: the subject, the [`Claims`], how it was accepted
//! ([`Acceptance`]) and the actor chain ([`Actor`]). Verified tokens are cached, and a consumer
//! verifies the tokens of waiting messages ahead of their turn ([`ReadAhead`]).

mod ahead;
pub(crate) mod claims;
pub(crate) mod context;
pub(crate) mod crypto;
pub(crate) mod issuer;
pub(crate) mod jose;
pub(crate) mod key;
pub(crate) mod key_set;
pub(crate) mod read_ahead;
pub(crate) mod remote;
pub(crate) mod verified_cache;
pub(crate) mod verifier;

pub use claims::Claims;
pub use context::{Acceptance, Actor, AuthContext};
pub use crypto::crypto_provider;
pub use issuer::{Issuer, MAX_LEEWAY, dangerous};
pub use key::{Key, alg_name};
pub use key_set::{JwkCheck, JwkOutcome, KeySet, check_jwks};
pub use read_ahead::ReadAhead;
pub use remote::RemoteOptions;
pub use verifier::{Verifier, VerifierBuilder, now_unix};
