//! One publish, confirmed: the broker's ack, or a typed error. Never a silent loss.

use std::fmt;
use std::time::Duration;

use jwt_relay::PublishError;
use jwt_relay::publish::PublishErrorKind;
use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Confirmation};

/// Where a message goes: an exchange (empty for the default exchange) and a routing key.
#[derive(Clone, Copy)]
pub(crate) struct Route<'a> {
    pub(crate) exchange: &'a str,
    pub(crate) routing_key: &'a str,
}

impl fmt::Display for Route<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exchange.is_empty() {
            write!(f, "queue `{}` (default exchange)", self.routing_key)
        } else {
            write!(
                f,
                "exchange `{}` (routing key `{}`)",
                self.exchange, self.routing_key
            )
        }
    }
}

/// Publishes on a channel in confirm mode and waits for the confirm. `mandatory` makes an
/// unroutable message an error ([`PublishErrorKind::Unroutable`]); a nack is
/// [`PublishErrorKind::Nacked`], no confirm within `timeout` is [`PublishErrorKind::Timeout`],
/// and a failure of the channel or connection is [`PublishErrorKind::Broker`] with lapin's error
/// as the source.
pub(crate) async fn publish_confirmed(
    channel: &Channel,
    route: Route<'_>,
    mandatory: bool,
    payload: &[u8],
    properties: BasicProperties,
    timeout: Duration,
) -> Result<(), PublishError> {
    let short = |what: &str, value: &str| {
        ShortString::try_new(value).map_err(|_| {
            PublishError::new(
                PublishErrorKind::Broker,
                format!("the {what} of {route} is longer than 255 bytes"),
            )
        })
    };
    let exchange = short("exchange name", route.exchange)?;
    let routing_key = short("routing key", route.routing_key)?;
    let broker = |e: lapin::Error| {
        PublishError::new(
            PublishErrorKind::Broker,
            format!("publishing to {route} failed: {e}"),
        )
        .with_source(e)
    };
    let options = BasicPublishOptions {
        mandatory,
        ..BasicPublishOptions::default()
    };
    let confirm = channel
        .basic_publish(exchange, routing_key, options, payload, properties)
        .await
        .map_err(broker)?;
    let confirmation = tokio::time::timeout(timeout, confirm)
        .await
        .map_err(|_| {
            PublishError::new(
                PublishErrorKind::Timeout,
                format!("the broker did not confirm the message to {route} within {timeout:?}"),
            )
        })?
        .map_err(broker)?;
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => Err(PublishError::new(
            PublishErrorKind::Unroutable,
            format!(
                "the broker returned the message to {route}: {} {}",
                returned.reply_code, returned.reply_text
            ),
        )),
        Confirmation::Nack(None) => Err(PublishError::new(
            PublishErrorKind::Nacked,
            format!("the broker refused (nacked) the message to {route}"),
        )),
        Confirmation::NotRequested => Err(PublishError::new(
            PublishErrorKind::Broker,
            format!("publisher confirms are not enabled on the channel publishing to {route}"),
        )),
    }
}

/// The lapin error behind a [`PublishErrorKind::Broker`] failure, if any.
pub(crate) fn lapin_source(error: &PublishError) -> Option<&lapin::Error> {
    std::error::Error::source(error)?.downcast_ref()
}
