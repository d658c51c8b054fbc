//! Acks sent in groups. A consumer whose handlers finish faster than the
//! client writes one ack at a time queues the acks of handled messages, and
//! the run loop sends them together: when a group is full, or as soon as it
//! is about to wait for anything. One wake-up of the connection and one
//! socket write then carry the whole group.

use std::sync::{Arc, Mutex, PoisonError};

use async_nats::jetstream::{self, AckKind};
use futures_util::future::join_all;

/// Acks sent together at most: the longest a handled message waits
/// unacknowledged while the loop never waits is this many messages.
const GROUP: usize = 64;

/// The acks of handled messages, not sent yet.
#[derive(Default)]
pub(crate) struct Acks {
    queued: Mutex<Vec<Arc<jetstream::Message>>>,
}

impl Acks {
    /// Queues the ack of a handled message.
    pub(crate) fn queue(&self, message: Arc<jetstream::Message>) {
        self.lock().push(message);
    }

    /// Whether a group is ready to go.
    pub(crate) fn is_full(&self) -> bool {
        self.lock().len() >= GROUP
    }

    /// Whether any ack waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Sends the queued acks one after another without waiting in between,
    /// which the client writes out together.
    pub(crate) async fn send(&self) {
        let queued = std::mem::take(&mut *self.lock());
        for message in queued {
            settled(&message, AckKind::Ack, message.ack().await);
        }
    }

    /// Sends the queued acks and waits for the server to confirm each, as a
    /// stopping run does, so that they are settled when the run returns.
    pub(crate) async fn confirm(&self) {
        let queued = std::mem::take(&mut *self.lock());
        join_all(queued.iter().map(|message| async move {
            settled(message, AckKind::Ack, message.double_ack().await);
        }))
        .await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<jetstream::Message>>> {
        self.queued.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Logs an ack, nak or term the client could not send: the server
/// redelivers the message after `ack_wait`.
pub(crate) fn settled(message: &jetstream::Message, kind: AckKind, sent: Result<(), async_nats::Error>) {
    if let Err(e) = sent {
        tracing::warn!(subject = %message.subject, ?kind, "cannot settle (the server will redeliver): {e}");
    }
}
