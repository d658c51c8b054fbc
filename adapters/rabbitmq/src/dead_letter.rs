//! Where rejected messages go.

/// Where a [`Consumer`](crate::Consumer) sends the messages it rejects (a permanent verification
/// failure, or a handler out of attempts), and those the broker dead-lettered itself (moved from
/// the [holding queue](crate::ConsumerBuilder::held_queue)): a copy published by the consumer,
/// with the payload, the properties, the other headers and the reason headers
/// ([`jwt_relay::consume::REASON_KIND`], …), **without the token header or any other credential header**
/// (unless [`keep_token_in_dead_letters`](crate::ConsumerBuilder::keep_token_in_dead_letters),
/// which keeps the token header alone). The original is acknowledged only after the broker
/// confirmed the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
}

impl DeadLetter {
    /// Copies go to the queue `name`, through the default exchange (`<queue>.dlq` by default).
    pub fn queue(name: impl Into<String>) -> Self {
        DeadLetter::exchange("", name)
    }

    /// Copies go to `exchange` with `routing_key`.
    pub fn exchange(exchange: impl Into<String>, routing_key: impl Into<String>) -> Self {
        DeadLetter {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
        }
    }

    /// Where copies go, as an [`Event`](jwt_relay::Event) names it: the queue for the default
    /// exchange, else `<exchange>/<routing key>`.
    pub fn target(&self) -> String {
        if self.exchange.is_empty() {
            self.routing_key.clone()
        } else {
            format!("{}/{}", self.exchange, self.routing_key)
        }
    }
}
