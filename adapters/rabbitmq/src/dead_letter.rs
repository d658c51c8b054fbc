//! Where rejected messages go.

/// Where a [`Consumer`](crate::Consumer) sends the messages it rejects (a permanent verification
/// failure, or a handler out of attempts).
///
/// | mode | what the dead-letter queue receives |
/// |---|---|
/// | [`queue`](DeadLetter::queue) (default: `<queue>.dlq`), [`exchange`](DeadLetter::exchange) | a copy published by the consumer: the payload, the properties, the other headers and the reason headers ([`jwt_relay::REASON_KIND`], …), **without the token header** (unless [`keep_token_in_dead_letters`](crate::ConsumerBuilder::keep_token_in_dead_letters)). The original is acknowledged only after the broker confirmed the copy. |
/// | [`broker`](DeadLetter::broker) | the original, dead-lettered by the broker (`basic.nack`, `requeue = false`) through the queue's `x-dead-letter-exchange`: the broker keeps **every header, the token included**, adds its `x-death` header, and no reason header. The queue must have a dead-letter exchange ([`Topology`](crate::Topology) declares one), else the broker drops the message. |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub(crate) mode: Mode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The consumer publishes a copy here.
    Publish { exchange: String, routing_key: String },
    /// `basic.nack` without requeue.
    Broker,
}

impl DeadLetter {
    /// Copies go to the queue `name`, through the default exchange.
    pub fn queue(name: impl Into<String>) -> Self {
        DeadLetter::exchange("", name)
    }

    /// Copies go to `exchange` with `routing_key`.
    pub fn exchange(exchange: impl Into<String>, routing_key: impl Into<String>) -> Self {
        DeadLetter {
            mode: Mode::Publish {
                exchange: exchange.into(),
                routing_key: routing_key.into(),
            },
        }
    }

    /// The broker dead-letters the original through the queue's dead-letter exchange, keeping
    /// the token in it.
    pub fn broker() -> Self {
        DeadLetter { mode: Mode::Broker }
    }
}
