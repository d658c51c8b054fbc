//! One delivery through the core [`Engine`](jwt_relay::consume::Engine), and RabbitMQ's verbs
//! for settling it: acks and nacks, the retry queue, the confirmed dead-letter copy.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use jwt_relay::consume::PublishTime;
use jwt_relay::consume::{CopyFailed, DeadLetterCopy, Incoming, Position, Retried, Settle, Step, Tries};
use jwt_relay::publish::PublishErrorKind;
use jwt_relay::{AuthContext, PublishError};
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::FieldTable;
use lapin::{Acker, Channel};

use crate::confirm::{Route, lapin_source, publish_confirmed};
use crate::consumer::Config;
use crate::copy::{ATTEMPT_HEADER, FAILURES_HEADER, dead_letter_copy, retry_copy};
use crate::error::{Error, ErrorKind as StopKind};
use crate::headers::{AmqpHeaders, read_count};
use crate::held::broker_reason;
use crate::received::{Inbound, Received};

/// How a delivery's task ended, for its session.
pub(crate) enum TaskEnd {
    /// The message is settled (or left for the broker to redeliver): go on.
    Settled,
    /// The guard halted: stop consuming.
    Halt(jwt_relay::Error),
    /// Settling cannot go on.
    Stop(Stop),
}

/// Why settling cannot go on: the [`Settle::Stop`] of a [`Task`].
pub(crate) enum Stop {
    /// A destination is missing or refused: stop consuming.
    Fatal(Error),
    /// The publishing channel broke: open a new session.
    Broken(String),
}

/// Decides on one delivery of the work queue through the engine, and settles it.
pub(crate) async fn settle<H, Fut, E>(
    config: Arc<Config>,
    publish: Channel,
    handler: Arc<H>,
    delivery: lapin::message::Delivery,
) -> TaskEnd
where
    H: Fn(Received) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + 'static,
{
    let (mut task, message) = Task::new(config, publish, delivery, false);
    let empty = FieldTable::default();
    let headers = AmqpHeaders::new(message.properties.headers().as_ref().unwrap_or(&empty));
    let incoming = incoming(&message, &headers);
    let handle = |context: AuthContext, _tries: Tries| {
        handler(Received {
            context,
            message: message.clone(),
        })
    };
    let config = task.config.clone();
    end(config.engine.process(&incoming, &mut task, handle).await)
}

/// Moves one message the broker dead-lettered from the holding queue to the dead-letter
/// destination, through [`Engine::reject`](jwt_relay::consume::Engine::reject): a copy without
/// credentials whose reason is the broker's `x-death` record ([`broker_reason`]), confirmed,
/// then the held message acknowledged.
pub(crate) async fn move_held(
    config: Arc<Config>,
    publish: Channel,
    delivery: lapin::message::Delivery,
) -> TaskEnd {
    let reason = broker_reason(&delivery.properties);
    let (mut task, message) = Task::new(config, publish, delivery, true);
    let empty = FieldTable::default();
    let headers = AmqpHeaders::new(message.properties.headers().as_ref().unwrap_or(&empty));
    // Its tries are 0 (`Task::new`): its counts in the work queue no longer matter.
    let incoming = incoming(&message, &headers);
    let config = task.config.clone();
    end(config.engine.reject(&incoming, &mut task, &reason).await)
}

/// The message as the engine sees it. `destination` is the work queue (also for a held
/// message: that is where the broker dead-lettered it from), `subject` the routing key.
fn incoming<'a>(message: &'a Inbound, headers: &'a AmqpHeaders<'a>) -> Incoming<'a, AmqpHeaders<'a>> {
    let published = message
        .properties
        .timestamp()
        .and_then(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs)))
        // The AMQP timestamp is whatever the publishing client wrote.
        .map(PublishTime::client);
    Incoming {
        headers,
        destination: &message.queue,
        subject: message.routing_key.as_str(),
        position: Position::DeliveryTag(message.delivery_tag),
        published,
        tries: tries(message.attempt, message.failures),
    }
}

/// The tries of a message from its headers: [`ATTEMPT_HEADER`] counts every pass through the
/// retry queue, [`FAILURES_HEADER`] those after a handler failure; the rest were checks.
fn tries(attempt: u32, failures: u32) -> Tries {
    Tries {
        checks: attempt.saturating_sub(failures),
        failures,
        copies: 0,
    }
}

/// What the engine's step means for the session.
fn end(step: Step<Stop>) -> TaskEnd {
    match step {
        // The retry queue holds every retry: the engine never gets `Retried::Hold` from us.
        Step::Done | Step::Again { .. } => TaskEnd::Settled,
        // The engine reported and logged it.
        Step::Halt(reason) => TaskEnd::Halt(reason),
        Step::Stop(stop) => TaskEnd::Stop(stop),
    }
}

/// One delivery's settle verbs: acks and nacks on its consuming channel, confirmed copies on
/// the session's publishing channel.
struct Task {
    config: Arc<Config>,
    publish: Channel,
    acker: Acker,
    message: Arc<Inbound>,
    /// A message of the holding queue: a retry puts it back there, never through the retry
    /// queue (which leads to the work queue).
    held: bool,
}

impl Task {
    fn new(
        config: Arc<Config>,
        publish: Channel,
        delivery: lapin::message::Delivery,
        held: bool,
    ) -> (Task, Arc<Inbound>) {
        let lapin::message::Delivery {
            delivery_tag,
            exchange,
            routing_key,
            redelivered,
            properties,
            data,
            acker,
        } = delivery;
        let headers = properties.headers().as_ref();
        // A held message's counts were the work queue's: the broker gave up on it.
        let (attempt, failures) = if held {
            (0, 0)
        } else {
            (
                read_count(headers, ATTEMPT_HEADER),
                read_count(headers, FAILURES_HEADER),
            )
        };
        let message = Arc::new(Inbound {
            queue: config.queue.clone(),
            delivery_tag,
            exchange,
            routing_key,
            redelivered,
            attempt,
            failures,
            properties,
            data,
        });
        let task = Task {
            config,
            publish,
            acker,
            message: message.clone(),
            held,
        };
        (task, message)
    }

    /// Publishes a copy to `route` and waits for the broker's confirm.
    async fn publish(
        &self,
        route: Route<'_>,
        properties: lapin::BasicProperties,
    ) -> Result<(), PublishError> {
        publish_confirmed(
            &self.publish,
            route,
            true,
            &self.message.data,
            properties,
            self.config.confirm_timeout,
        )
        .await
    }

    /// A copy could not be published. A missing or refusing destination stops the consumer
    /// (our setup is wrong), the message back in its queue; a broken channel calls for a new
    /// session (the broker redelivers the unacknowledged message to it). A nack or a timeout
    /// is for now: the error is handed back.
    async fn copy_failed(&self, e: PublishError, what: &str) -> Result<Stop, PublishError> {
        let refused = e.kind() == PublishErrorKind::Unroutable
            || (e.kind() == PublishErrorKind::Broker
                && lapin_source(&e).is_some_and(lapin::Error::is_amqp_soft_error));
        if refused {
            self.nack(true).await;
            let message = format!(
                "cannot {what} messages of `{}`: {e} (declare the queues, for example with Topology::declare)",
                self.message.queue
            );
            return Ok(Stop::Fatal(Error::new(StopKind::Broker, message).with_source(e)));
        }
        if e.kind() == PublishErrorKind::Broker {
            return Ok(Stop::Broken(format!("the {what} copy failed: {e}")));
        }
        Err(e)
    }

    /// Puts the message back in its queue as it was after `delay` (`basic.nack` with requeue):
    /// the broker delivers it again.
    async fn requeue_after(&self, delay: Duration) {
        tokio::time::sleep(delay).await;
        self.nack(true).await;
    }

    /// Negatively acknowledges, back to the queue or (without `requeue`) to its dead-letter
    /// exchange; `false` when the channel is gone.
    async fn nack(&self, requeue: bool) -> bool {
        let options = BasicNackOptions {
            requeue,
            ..BasicNackOptions::default()
        };
        let nacked = self.acker.nack(options).await;
        self.confirmed(nacked, "basic.nack")
    }

    fn confirmed(&self, result: lapin::Result<bool>, what: &str) -> bool {
        let m = &self.message;
        match result {
            Ok(true) => true,
            Ok(false) => {
                tracing::debug!(queue = %m.queue, delivery_tag = m.delivery_tag, "{what} skipped: the channel is gone; the broker redelivers");
                false
            }
            Err(e) => {
                tracing::debug!(queue = %m.queue, delivery_tag = m.delivery_tag, "{what} failed ({e}); the broker redelivers");
                false
            }
        }
    }
}

impl Settle for Task {
    type Stop = Stop;

    /// `basic.ack`; `false` when the channel is gone (the broker redelivers).
    async fn ack(&mut self) -> bool {
        let acked = self.acker.ack(BasicAckOptions::default()).await;
        self.confirmed(acked, "basic.ack")
    }

    /// A copy to the retry queue with the new counts and a TTL of `delay`, confirmed, then the
    /// original acknowledged. When the retry queue refuses for now, the message goes back to
    /// its queue after the backoff instead. A held message goes back to the holding queue
    /// after `delay`.
    async fn retry(&mut self, delay: Duration, tries: Tries) -> Result<Retried, Stop> {
        if self.held {
            self.requeue_after(delay).await;
            return Ok(Retried::Scheduled);
        }
        let route = Route {
            exchange: "",
            routing_key: &self.config.retry_queue,
        };
        let attempt = tries.checks.saturating_add(tries.failures);
        let properties = retry_copy(&self.message.properties, attempt, tries.failures, delay);
        let Err(e) = self.publish(route, properties).await else {
            self.ack().await;
            return Ok(Retried::Scheduled);
        };
        let e = match self.copy_failed(e, "retry").await {
            Ok(stop) => return Err(stop),
            Err(e) => e,
        };
        let m = &self.message;
        let wait = self.config.backoff.delay(m.attempt);
        tracing::warn!(queue = %m.queue, delivery_tag = m.delivery_tag, delay = ?wait, "the retry copy failed, requeueing later: {e}");
        self.requeue_after(wait).await;
        Ok(Retried::Scheduled)
    }

    /// A confirmed copy to the dead-letter destination, then the original acknowledged.
    async fn dead_letter(&mut self, copy: &DeadLetterCopy<'_>) -> Result<Option<String>, CopyFailed<Stop>> {
        let config = self.config.clone();
        let dead_letter = &config.dead_letter;
        let route = Route {
            exchange: &dead_letter.exchange,
            routing_key: &dead_letter.routing_key,
        };
        let properties = dead_letter_copy(&self.message.properties, copy);
        match self.publish(route, properties).await {
            Ok(()) => {
                self.ack().await;
                Ok(Some(dead_letter.target()))
            }
            Err(e) => match self.copy_failed(e, "dead-letter").await {
                Ok(stop) => Err(CopyFailed::Stop(stop)),
                Err(e) => Err(CopyFailed::Later(e.to_string())),
            },
        }
    }

    /// It already is a dead-lettered copy: acknowledged, without another.
    async fn discard(&mut self, _reason: &jwt_relay::Error) -> bool {
        self.ack().await
    }

    /// Back to its queue untouched.
    async fn release(&mut self) {
        self.nack(true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counts_in_the_headers_are_checks_and_failures() {
        assert_eq!(
            tries(5, 2),
            Tries {
                checks: 3,
                failures: 2,
                copies: 0
            }
        );
        assert_eq!(tries(1, 4).checks, 0, "never negative");
        assert_eq!(tries(0, 0), Tries::default());
    }
}
