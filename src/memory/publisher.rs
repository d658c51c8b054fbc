//! Publishing as a service does: through the Propagator.

use super::broker::MemoryBroker;
use super::message::MessageId;
use crate::carrier::Headers;
use crate::publish::error::PublishError;
use crate::publish::propagator::Propagator;
use crate::verify::context::AuthContext;

/// Publishes to a [`MemoryBroker`] the way every adapter does: the
/// [`Propagator`] chooses the token (the explicit context, else the ambient
/// one of [`scope`](crate::scope)) and writes it into the headers, and the
/// broker stamps the publish time.
#[derive(Debug, Clone)]
pub struct MemoryPublisher {
    broker: MemoryBroker,
    propagator: Propagator,
}

impl MemoryPublisher {
    /// Publishes to `broker` through `propagator`.
    pub fn new(broker: MemoryBroker, propagator: Propagator) -> Self {
        MemoryPublisher { broker, propagator }
    }

    /// The broker published to.
    pub fn broker(&self) -> &MemoryBroker {
        &self.broker
    }

    /// Writes the token for `topic` into `headers` (replacing any token
    /// header already there) and appends the message. Nothing is published
    /// when no token can be chosen: no identity, a grace-accepted token
    /// without an exchanger, or a failed exchange.
    pub async fn publish(
        &self,
        topic: &str,
        mut headers: Headers,
        payload: impl Into<Vec<u8>>,
        explicit: Option<&AuthContext>,
    ) -> Result<MessageId, PublishError> {
        self.propagator.inject(topic, explicit, &mut headers).await?;
        Ok(self.broker.publish(topic, headers, payload))
    }
}
