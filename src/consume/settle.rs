//! The one trait a transport implements: the verbs its broker has for settling a message.

use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::consume::dead_letter::Redaction;
use crate::consume::policy::PublishTime;
use crate::error::Error;

use super::event::Position;

/// How one message is settled on its broker. The [`Engine`](super::Engine) decides; the
/// transport only carries the decision out, with its broker's own operations (Kafka's offset
/// store and pause/seek, RabbitMQ's acks and retry queue, JetStream's ack, nak with a delay and
/// term, the in-memory broker's lease).
///
/// Each method is called at most once per try at a message, and the engine reports what
/// happened only after it returns.
pub trait Settle: Send {
    /// What stops the run when settling cannot go on (a broken channel, a destination the
    /// broker refuses): the transport's own error, returned by the engine as [`Step::Stop`](super::Step::Stop).
    type Stop: Send;

    /// The handler succeeded: acknowledge. `false` when the broker did not take it (the
    /// channel is gone: it delivers the message again), and the engine reports nothing.
    fn ack(&mut self) -> impl Future<Output = bool> + Send;

    /// Try the message again after `delay`; `tries` are its counts after this try. Either the
    /// broker keeps it until then ([`Retried::Scheduled`]: a nak with a delay, a retry queue)
    /// or the transport holds it in process and the engine returns
    /// [`Step::Again`](super::Step::Again).
    fn retry(
        &mut self,
        delay: Duration,
        tries: Tries,
    ) -> impl Future<Output = Result<Retried, Self::Stop>> + Send;

    /// Store `copy` in the dead-letter destination and, once the broker confirmed it, settle
    /// the original. Returns where the copy went, or `None` when there is no dead-letter
    /// destination (the message is dropped, or, for a request, answered with the error).
    fn dead_letter(
        &mut self,
        copy: &DeadLetterCopy<'_>,
    ) -> impl Future<Output = Result<Option<String>, CopyFailed<Self::Stop>>> + Send;

    /// Settle the message without a copy: it already is a dead-lettered copy (`reason` says
    /// so). `false` as for [`ack`](Self::ack).
    fn discard(&mut self, reason: &Error) -> impl Future<Output = bool> + Send;

    /// The run halts on this message: leave it for the broker to deliver again.
    fn release(&mut self) -> impl Future<Output = ()> + Send;
}

/// Where a retried message waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retried {
    /// The broker has it, and delivers it again after the delay.
    Scheduled,
    /// The transport keeps it: it calls the engine again after the delay, with the new tries.
    Hold,
}

/// Why a dead-lettered copy was not stored.
#[derive(Debug)]
pub enum CopyFailed<S> {
    /// For now (a timeout, a nack): the engine tries the message again later, with the backoff.
    Later(String),
    /// For good: the run stops.
    Stop(S),
}

/// How many times a message was tried before: what decides the backoff, and when a failing
/// handler's message is dead-lettered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tries {
    /// Checks that ended in a retry (a dependency down).
    pub checks: u32,
    /// Handler calls that failed.
    pub failures: u32,
    /// Dead-lettered copies that could not be stored.
    pub copies: u32,
}

/// A dead-lettered copy to store: the transport copies the payload and the headers that
/// [`redaction`](Self::redaction) keeps, then adds [`headers`](Self::headers) (the reason
/// and the origin).
#[derive(Debug)]
pub struct DeadLetterCopy<'a> {
    /// Why.
    pub reason: &'a Error,
    /// What the copy leaves out.
    pub redaction: Redaction,
    /// The message's origin.
    pub origin: Origin<'a>,
    /// When it is dead-lettered.
    pub now: SystemTime,
}

/// Where a dead-lettered message came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// What the consumer reads (topic, queue, subscribed subject).
    pub destination: &'a str,
    /// What it was published to (topic, routing key, subject).
    pub subject: &'a str,
    /// Where it was.
    pub position: Position<'a>,
    /// When it was published, and who says so.
    pub published: Option<PublishTime>,
}

impl DeadLetterCopy<'_> {
    /// The headers jwt-relay adds, printable ASCII, in this order: the reason
    /// ([`reason_headers`](crate::consume::reason_headers)), then the origin:
    /// [`ORIGINAL_DESTINATION`](crate::consume::ORIGINAL_DESTINATION),
    /// [`ORIGINAL_SUBJECT`](crate::consume::ORIGINAL_SUBJECT), the position
    /// ([`ORIGINAL_PARTITION`](crate::consume::ORIGINAL_PARTITION) and
    /// [`ORIGINAL_OFFSET`](crate::consume::ORIGINAL_OFFSET), or
    /// [`ORIGINAL_STREAM`](crate::consume::ORIGINAL_STREAM) and
    /// [`ORIGINAL_SEQUENCE`](crate::consume::ORIGINAL_SEQUENCE)) and
    /// [`ORIGINAL_TIMESTAMP`](crate::consume::ORIGINAL_TIMESTAMP). The redaction leaves out any of
    /// them the original carried.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        crate::consume::dead_letter::copy_headers(self.reason, &self.origin, self.now)
    }

    /// The whole header list of the copy, for a carrier of (name, bytes) pairs: the
    /// `original` headers the redaction keeps, in order, then [`headers`](Self::headers)
    /// ([`dead_letter_headers`](crate::consume::dead_letter_headers) plus the origin).
    pub fn with_original<'o>(
        &self,
        original: impl IntoIterator<Item = (&'o str, &'o [u8])>,
    ) -> Vec<(String, Vec<u8>)> {
        let mut out = crate::consume::dead_letter::dead_letter_headers(
            original,
            self.reason,
            &self.redaction,
            self.now,
        );
        out.extend(
            crate::consume::dead_letter::origin_headers(&self.origin)
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value.into_bytes())),
        );
        out
    }
}
