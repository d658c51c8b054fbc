//! Core NATS publishing and requests, with the token written by the core
//! [`Propagator`].

use std::time::Duration;

use async_nats::client::RequestErrorKind;
use async_nats::{Client, HeaderMap, Message};
use bytes::Bytes;
use jwt_relay::publish::PublishErrorKind;
use jwt_relay::{AuthContext, Propagator, PublishError};

use crate::headers::{NatsHeaders, remove_any_casing};

/// Publishes on core NATS as a service does: each message leaves with the
/// token of the explicit context if one is given, else of the current one
/// ([`jwt_relay::current`], set inside a handler), through the
/// [`Propagator`] (forward, per-subject audience exchange, refresh-ahead).
/// With no identity the publish fails with
/// [`PublishErrorKind::NoIdentity`] unless the propagator allows anonymous
/// messages (then no token header is written at all).
///
/// Core NATS keeps nothing: a message published while no one subscribes is
/// gone. Use [`JetStreamPublisher`](crate::JetStreamPublisher) for messages
/// that must wait.
#[derive(Debug, Clone)]
pub struct Publisher {
    client: Client,
    propagator: Propagator,
}

impl Publisher {
    /// Publishes through `client`, writing tokens with `propagator`.
    pub fn new(client: Client, propagator: Propagator) -> Self {
        Publisher { client, propagator }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The propagator.
    pub fn propagator(&self) -> &Propagator {
        &self.propagator
    }

    /// Publishes `payload` to `subject` with the user's `headers` plus the
    /// token header.
    pub async fn publish(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: impl Into<Bytes>,
        context: Option<&AuthContext>,
    ) -> Result<(), PublishError> {
        let headers = with_token(&self.propagator, subject, headers, context).await?;
        self.client
            .publish_with_headers(subject.to_owned(), headers, payload.into())
            .await
            .map_err(|e| {
                PublishError::new(
                    PublishErrorKind::Broker,
                    format!("publishing to `{subject}` failed: {e}"),
                )
                .with_source(e)
            })
    }

    /// Sends a request carrying the token and waits for the reply (the
    /// client's request timeout applies). A service wrapped by this crate
    /// answers a refused token at once with an error reply: read it with
    /// [`ServiceError::from_reply`](crate::ServiceError::from_reply).
    pub async fn request(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: impl Into<Bytes>,
        context: Option<&AuthContext>,
    ) -> Result<Message, PublishError> {
        let headers = with_token(&self.propagator, subject, headers, context).await?;
        self.client
            .request_with_headers(subject.to_owned(), headers, payload.into())
            .await
            .map_err(|e| {
                let kind = match e.kind() {
                    RequestErrorKind::TimedOut => PublishErrorKind::Timeout,
                    _ => PublishErrorKind::Broker,
                };
                PublishError::new(kind, format!("request to `{subject}` failed: {e}")).with_source(e)
            })
    }

    /// Like [`request`](Self::request) with its own timeout.
    pub async fn request_with_timeout(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: impl Into<Bytes>,
        context: Option<&AuthContext>,
        timeout: Duration,
    ) -> Result<Message, PublishError> {
        match tokio::time::timeout(timeout, self.request(subject, headers, payload, context)).await {
            Ok(reply) => reply,
            Err(_) => Err(PublishError::new(
                PublishErrorKind::Timeout,
                format!("no reply from `{subject}` within {timeout:?}"),
            )),
        }
    }
}

/// `headers` with the token for `subject` written in (or without any token
/// header, for an anonymous message).
pub(crate) async fn with_token(
    propagator: &Propagator,
    subject: &str,
    mut headers: HeaderMap,
    context: Option<&AuthContext>,
) -> Result<HeaderMap, PublishError> {
    let token = propagator.token_for(subject, context).await?;
    match token {
        Some(token) => propagator.write(&mut NatsHeaders(&mut headers), Some(&token))?,
        // A token header the caller copied from elsewhere never leaves unchosen.
        None => remove_any_casing(&mut headers, propagator.token_header().name()),
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn an_anonymous_message_leaves_without_a_copied_token() {
        let propagator = Propagator::builder().allow_anonymous().build().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer copied.from.elsewhere");
        headers.insert("x-order", "1");
        let sent = with_token(&propagator, "orders", headers, None).await.unwrap();
        assert!(sent.get("authorization").is_none() && sent.get("Authorization").is_none());
        assert_eq!(sent.get("x-order").map(|v| v.as_str()), Some("1"));
    }
}
