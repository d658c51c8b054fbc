//! The publish side: which token a message leaves with.
//!
//! A [`Propagator`] takes the token from an explicit context or from the ambient one (the
//! identity a handler runs with: [`scope`], [`current`]), exchanges it where a destination
//! needs another audience, and writes it through an [`Injector`](crate::carrier::Injector).
//! A failure is a [`PublishError`].

pub(crate) mod ambient;
pub(crate) mod error;
pub(crate) mod propagator;

pub use ambient::{WithIdentity, current, scope};
pub use error::{PublishError, PublishErrorKind};
pub use propagator::{Propagator, PropagatorBuilder};
