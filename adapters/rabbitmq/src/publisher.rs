//! The publish side: the end user's token into the message's headers, and a confirmed publish.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jwt_relay::publish::PublishErrorKind;
use jwt_relay::{AuthContext, Propagator, PublishError};
use lapin::options::ConfirmSelectOptions;
use lapin::{BasicProperties, Channel};

use crate::confirm::{Route, publish_confirmed};
use crate::headers::AmqpHeadersMut;

/// How long a publish waits for the broker's confirm by default.
const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes on a [`lapin::Channel`] with the end user's token in the message's headers.
///
/// Every publish:
/// - chooses the token through the core [`Propagator`]: the explicit context if given, else the
///   ambient one ([`jwt_relay::current`], set around every handler a [`Consumer`](crate::Consumer)
///   runs), else [`PublishErrorKind::NoIdentity`] (or no header at all, if the propagator allows
///   anonymous messages); forwarded as-is or exchanged per destination
///   ([`destination`] names it);
/// - writes it as one `LongString` header (see the rules on [`AmqpHeaders`](crate::AmqpHeaders)), keeping every
///   property and header the caller set;
/// - sets the `timestamp` property to now (Unix seconds) when the caller did not;
/// - publishes `mandatory` (by default) and waits for the publisher confirm: a nack
///   ([`Nacked`](PublishErrorKind::Nacked)), no confirm in time
///   ([`Timeout`](PublishErrorKind::Timeout)) and a returned message
///   ([`Unroutable`](PublishErrorKind::Unroutable)) are errors, never a silent loss.
///
/// Cheap to clone; clones share the channel, and concurrent publishes are confirmed one by one.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    propagator: Propagator,
    confirm_timeout: Duration,
    mandatory: bool,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("channel", &self.channel.id())
            .field("propagator", &self.propagator)
            .field("confirm_timeout", &self.confirm_timeout)
            .field("mandatory", &self.mandatory)
            .finish()
    }
}

impl Publisher {
    /// Publishes on `channel`, putting it in confirm mode (`confirm.select`) if it is not yet.
    /// Give the publisher a channel of its own: confirm mode cannot be undone.
    pub async fn new(channel: Channel, propagator: Propagator) -> Result<Publisher, PublishError> {
        if !channel.status().confirm() {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| {
                    PublishError::new(
                        PublishErrorKind::Broker,
                        format!("cannot put channel {} in confirm mode: {e}", channel.id()),
                    )
                    .with_source(e)
                })?;
        }
        Ok(Publisher {
            channel,
            propagator,
            confirm_timeout: DEFAULT_CONFIRM_TIMEOUT,
            mandatory: true,
        })
    }

    /// How long a publish waits for the broker's confirm (10 s).
    pub fn confirm_timeout(mut self, timeout: Duration) -> Self {
        self.confirm_timeout = timeout;
        self
    }

    /// Whether messages are published `mandatory` (yes): an unroutable message then comes back
    /// and is an [`Unroutable`](PublishErrorKind::Unroutable) error. Without it the broker drops
    /// an unroutable message and confirms it.
    pub fn mandatory(mut self, mandatory: bool) -> Self {
        self.mandatory = mandatory;
        self
    }

    /// The channel published on.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The propagator choosing the token.
    pub fn propagator(&self) -> &Propagator {
        &self.propagator
    }

    /// Publishes `payload` to `exchange` (empty for the default exchange) with `routing_key`,
    /// carrying the token of `explicit`, else of the ambient context, and waits for the confirm.
    /// Messages are persistent (`delivery_mode` 2) unless `properties` say otherwise, so a
    /// durable queue keeps them across a broker restart.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        properties: BasicProperties,
        explicit: Option<&AuthContext>,
    ) -> Result<(), PublishError> {
        let token = self
            .propagator
            .token_for(destination(exchange, routing_key), explicit)
            .await?;
        self.publish_with_token(exchange, routing_key, payload, properties, token.as_deref())
            .await
    }

    /// Publishes carrying exactly `token` (none for `None`: a token header the properties
    /// already had is removed), written by the propagator's token header, without choosing or
    /// checking it: for replaying recorded messages and for tests.
    /// A service publishing on behalf of its user calls [`publish`](Self::publish).
    pub async fn publish_with_token(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        properties: BasicProperties,
        token: Option<&str>,
    ) -> Result<(), PublishError> {
        let mut properties = properties;
        if token.is_some() {
            let mut headers = properties.headers().clone().unwrap_or_default();
            self.propagator
                .write(&mut AmqpHeadersMut::new(&mut headers), token)?;
            properties = properties.with_headers(headers);
        } else if let Some(headers) = properties.headers().clone() {
            // A token header the caller copied from elsewhere never leaves unchosen.
            let mut headers = headers;
            AmqpHeadersMut::new(&mut headers).remove(self.propagator.token_header().name());
            properties = properties.with_headers(headers);
        }
        // Persistent unless the caller chose: a durable queue keeps it across a broker restart.
        if properties.delivery_mode().is_none() {
            properties = properties.with_delivery_mode(PERSISTENT);
        }
        if properties.timestamp().is_none()
            && let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH)
        {
            properties = properties.with_timestamp(now.as_secs());
        }
        let route = Route {
            exchange,
            routing_key,
        };
        publish_confirmed(
            &self.channel,
            route,
            self.mandatory,
            payload,
            properties,
            self.confirm_timeout,
        )
        .await
    }
}

/// AMQP `delivery_mode` 2: the broker writes the message to disk in a durable queue.
const PERSISTENT: u8 = 2;

/// The destination a publish is known by to the [`Propagator`] (its per-destination audiences):
/// the exchange, or for the default exchange (`""`) the routing key, which is the queue's name.
///
/// ```
/// assert_eq!(jwt_relay_rabbitmq::destination("", "invoices"), "invoices");
/// assert_eq!(jwt_relay_rabbitmq::destination("billing", "invoices.eu"), "billing");
/// ```
pub fn destination<'a>(exchange: &'a str, routing_key: &'a str) -> &'a str {
    if exchange.is_empty() {
        routing_key
    } else {
        exchange
    }
}
