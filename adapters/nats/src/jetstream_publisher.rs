//! JetStream publishing: the token in the headers, and the server's ack
//! awaited.

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind as JsPublishErrorKind;
use async_nats::jetstream::{self, publish::PublishAck};
use bytes::Bytes;
use jwt_relay::publish::PublishErrorKind;
use jwt_relay::{AuthContext, Propagator, PublishError};

use crate::publisher::with_token;

/// Publishes to JetStream as a service does (the token chosen as by
/// [`Publisher`](crate::Publisher)) and returns only once the
/// stream stored the message: no ack within the context's timeout, no
/// stream for the subject, or an error ack is a [`PublishError`], never a
/// silent loss.
#[derive(Debug, Clone)]
pub struct JetStreamPublisher {
    jetstream: jetstream::Context,
    propagator: Propagator,
}

impl JetStreamPublisher {
    /// Publishes through `jetstream`, writing tokens with `propagator`.
    pub fn new(jetstream: jetstream::Context, propagator: Propagator) -> Self {
        JetStreamPublisher {
            jetstream,
            propagator,
        }
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// The propagator.
    pub fn propagator(&self) -> &Propagator {
        &self.propagator
    }

    /// Publishes `payload` to `subject` with the user's `headers` plus the
    /// token header, and waits for the stream's ack.
    pub async fn publish(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: impl Into<Bytes>,
        context: Option<&AuthContext>,
    ) -> Result<PublishAck, PublishError> {
        let headers = with_token(&self.propagator, subject, headers, context).await?;
        publish_acked(&self.jetstream, subject, headers, payload.into()).await
    }
}

/// Publishes and waits for the ack, mapping failures to [`PublishError`].
pub(crate) async fn publish_acked(
    jetstream: &jetstream::Context,
    subject: &str,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<PublishAck, PublishError> {
    let failed = |e: jetstream::context::PublishError| {
        let kind = match e.kind() {
            JsPublishErrorKind::TimedOut => PublishErrorKind::Timeout,
            JsPublishErrorKind::StreamNotFound => PublishErrorKind::Unroutable,
            _ => PublishErrorKind::Broker,
        };
        PublishError::new(kind, format!("publishing to `{subject}` failed: {e}")).with_source(e)
    };
    let ack = jetstream
        .publish_with_headers(subject.to_owned(), headers, payload)
        .await
        .map_err(failed)?;
    ack.await.map_err(failed)
}
