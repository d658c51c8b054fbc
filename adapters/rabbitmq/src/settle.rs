//! One delivery, from the Guard's outcome to the broker operation that settles it.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jwt_relay::observe::record_message;
use jwt_relay::{
    AuthContext, HandlerVerdict, MessageInfo, Outcome, PublishError, PublishErrorKind, PublishTime,
    already_dead_lettered,
};
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::FieldTable;
use lapin::{Acker, Channel};

use crate::confirm::{Route, lapin_source, publish_confirmed};
use crate::consumer::Config;
use crate::copy::{ATTEMPT_HEADER, FAILURES_HEADER, dead_letter_copy, retry_copy};
use crate::delivery::{Delivery, Received, Settled, Settlement, Tally};
use crate::error::{Error, ErrorKind as StopKind};
use crate::headers::{AmqpHeaders, read_count};
use crate::held::broker_reason;

/// How a delivery's task ended, for its session.
pub(crate) enum TaskEnd {
    /// The message is settled (or left for the broker to redeliver): go on.
    Settled,
    /// The guard halted: stop consuming.
    Halt(jwt_relay::Error),
    /// A destination is missing or refused: stop consuming.
    Fatal(Error),
    /// The publishing channel broke: open a new session.
    Broken(String),
}

/// What a delivery's task works with.
struct Task {
    config: Arc<Config>,
    tally: Arc<Tally>,
    publish: Channel,
    acker: Acker,
    message: Arc<Received>,
}

/// Decides on one delivery and settles it: the guard, then the handler, an ack, a dead-letter
/// or a retry copy.
pub(crate) async fn settle<H, Fut, E>(
    config: Arc<Config>,
    tally: Arc<Tally>,
    publish: Channel,
    handler: Arc<H>,
    delivery: lapin::message::Delivery,
) -> TaskEnd
where
    H: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + 'static,
{
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
    let message = Arc::new(Received {
        queue: config.queue.clone(),
        delivery_tag,
        exchange,
        routing_key,
        redelivered,
        attempt: read_count(headers, ATTEMPT_HEADER),
        failures: read_count(headers, FAILURES_HEADER),
        properties,
        data,
    });
    let task = Task {
        config,
        tally,
        publish,
        acker,
        message,
    };
    let outcome = task.check().await;
    match outcome {
        Outcome::Accept(context) => task.handle(context, handler).await,
        Outcome::Reject(reason) => task.dead_letter(&reason, None).await,
        Outcome::Retry(error, delay) => {
            let m = &task.message;
            tracing::debug!(queue = %m.queue, delivery_tag = m.delivery_tag, ?delay, "redelivering later: {error}");
            task.retry(m.attempt.saturating_add(1), m.failures, delay, &error, None)
                .await
        }
        Outcome::Halt(reason) => {
            tracing::error!(queue = %task.message.queue, "consumer halted: {reason}");
            task.nack(true).await;
            TaskEnd::Halt(reason)
        }
    }
}

/// Moves one message the broker dead-lettered from the holding queue to the dead-letter
/// destination: a copy without credentials, whose reason is the broker's `x-death` record
/// ([`broker_reason`]), confirmed, then the held message acknowledged.
pub(crate) async fn move_held(
    config: Arc<Config>,
    tally: Arc<Tally>,
    publish: Channel,
    delivery: lapin::message::Delivery,
) -> TaskEnd {
    let reason = broker_reason(&delivery.properties);
    let message = Arc::new(Received {
        queue: config.queue.clone(),
        delivery_tag: delivery.delivery_tag,
        exchange: delivery.exchange,
        routing_key: delivery.routing_key,
        redelivered: delivery.redelivered,
        attempt: 0,
        failures: 0,
        properties: delivery.properties,
        data: delivery.data,
    });
    let task = Task {
        config,
        tally,
        publish,
        acker: delivery.acker,
        message,
    };
    task.dead_letter(&reason, None).await
}

impl Task {
    /// The guard's decision.
    async fn check(&self) -> Outcome {
        let m = &self.message;
        let empty = FieldTable::default();
        let headers = m.properties.headers().as_ref().unwrap_or(&empty);
        let mut info = MessageInfo::new(&*m.queue).attempt(m.attempt);
        if let Some(at) = m
            .properties
            .timestamp()
            .and_then(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs)))
        {
            // The AMQP timestamp is whatever the publishing client wrote.
            info = info.published(PublishTime::client(at));
        }
        self.config.guard.check(&AmqpHeaders::new(headers), &info).await
    }

    /// Runs the handler in the identity's scope, then acknowledges, retries or dead-letters.
    async fn handle<H, Fut, E>(self, context: AuthContext, handler: Arc<H>) -> TaskEnd
    where
        H: Fn(Delivery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + 'static,
    {
        let delivery = Delivery {
            context: context.clone(),
            message: self.message.clone(),
        };
        // The call happens inside the guarded poll, so a handler that panics before returning
        // its future is caught too.
        let run = jwt_relay::run_handler(context.clone(), async move { handler(delivery).await });
        let failure = match run.await {
            Ok(()) => {
                if self.ack().await {
                    self.settled(Settlement::Accepted, Some(&context), None);
                }
                return TaskEnd::Settled;
            }
            Err(failure) => failure,
        };
        Tally::bump(&self.tally.handler_failures);
        let m = &self.message;
        let failures = m.failures.saturating_add(1);
        let config = &self.config;
        match jwt_relay::after_handler_failure(failures, config.max_attempts, &config.backoff, &failure) {
            HandlerVerdict::Retry(delay) => {
                tracing::debug!(queue = %m.queue, delivery_tag = m.delivery_tag, failures, "{failure}");
                let attempt = m.attempt.saturating_add(1);
                self.retry(attempt, failures, delay, &failure, Some(&context))
                    .await
            }
            HandlerVerdict::DeadLetter(reason) => self.dead_letter(&reason, Some(&context)).await,
        }
    }

    /// Dead-letters the message: a confirmed copy then an ack. A message that already is a
    /// dead-lettered copy is acknowledged without another.
    async fn dead_letter(&self, reason: &jwt_relay::Error, context: Option<&AuthContext>) -> TaskEnd {
        let m = &self.message;
        let empty = FieldTable::default();
        let headers = m.properties.headers().as_ref().unwrap_or(&empty);
        if let Some(again) = already_dead_lettered(&AmqpHeaders::new(headers)) {
            tracing::warn!(queue = %m.queue, delivery_tag = m.delivery_tag, "{again}");
            if self.ack().await {
                self.settled(Settlement::Rejected, context, Some(&again));
            }
            return TaskEnd::Settled;
        }
        let dead_letter = &self.config.dead_letter;
        let route = Route {
            exchange: &dead_letter.exchange,
            routing_key: &dead_letter.routing_key,
        };
        let properties = dead_letter_copy(
            &m.properties,
            reason,
            &self.config.guard.redaction(self.config.keep_token),
            SystemTime::now(),
        );
        let published = publish_confirmed(
            &self.publish,
            route,
            true,
            &m.data,
            properties,
            self.config.confirm_timeout,
        )
        .await;
        match published {
            Ok(()) => {
                tracing::warn!(queue = %m.queue, delivery_tag = m.delivery_tag, "dead-lettered to {route}: {reason}");
                if self.ack().await {
                    self.settled(Settlement::DeadLettered, context, Some(reason));
                }
                TaskEnd::Settled
            }
            Err(e) => self.republish_failed(e, "dead-letter", reason, context).await,
        }
    }

    /// Sends a copy through the retry queue, due back after `delay`, then acknowledges.
    async fn retry(
        &self,
        attempt: u32,
        failures: u32,
        delay: Duration,
        cause: &jwt_relay::Error,
        context: Option<&AuthContext>,
    ) -> TaskEnd {
        let m = &self.message;
        let route = Route {
            exchange: "",
            routing_key: &self.config.retry_queue,
        };
        let properties = retry_copy(&m.properties, attempt, failures, delay);
        let published = publish_confirmed(
            &self.publish,
            route,
            true,
            &m.data,
            properties,
            self.config.confirm_timeout,
        )
        .await;
        match published {
            Ok(()) => {
                if self.ack().await {
                    self.settled(Settlement::Retried, context, Some(cause));
                }
                TaskEnd::Settled
            }
            Err(e) => self.republish_failed(e, "retry", cause, context).await,
        }
    }

    /// A copy could not be published. A missing or refusing destination stops the consumer (our
    /// setup is wrong); a broken channel calls for a new session; a nack or a timeout puts the
    /// message back in its queue after a wait. The message is never acknowledged here.
    async fn republish_failed(
        &self,
        e: PublishError,
        what: &str,
        cause: &jwt_relay::Error,
        context: Option<&AuthContext>,
    ) -> TaskEnd {
        let m = &self.message;
        let refused = e.kind() == PublishErrorKind::Unroutable
            || (e.kind() == PublishErrorKind::Broker
                && lapin_source(&e).is_some_and(lapin::Error::is_amqp_soft_error));
        if refused {
            self.nack(true).await;
            let message = format!(
                "cannot {what} messages of `{}`: {e} (declare the queues, for example with Topology::declare)",
                m.queue
            );
            return TaskEnd::Fatal(Error::new(StopKind::Broker, message).with_source(e));
        }
        if e.kind() == PublishErrorKind::Broker {
            // The broker redelivers the unacknowledged message to the next session.
            return TaskEnd::Broken(format!("the {what} copy failed: {e}"));
        }
        let delay = self.config.backoff.delay(m.attempt);
        tracing::warn!(queue = %m.queue, delivery_tag = m.delivery_tag, ?delay, "the {what} copy failed, requeueing later: {e}");
        tokio::time::sleep(delay).await;
        if self.nack(true).await {
            self.settled(Settlement::Requeued, context, Some(cause));
        }
        TaskEnd::Settled
    }

    /// Acknowledges; `false` when the channel is gone (the broker will redeliver).
    async fn ack(&self) -> bool {
        let acked = self.acker.ack(BasicAckOptions::default()).await;
        self.confirmed(acked, "basic.ack")
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

    /// Counts a settlement and tells the callback.
    fn settled(
        &self,
        settlement: Settlement,
        context: Option<&AuthContext>,
        error: Option<&jwt_relay::Error>,
    ) {
        self.tally.count(settlement);
        let outcome = match settlement {
            Settlement::Accepted => "accepted",
            Settlement::DeadLettered => "dead_lettered",
            Settlement::Rejected => "rejected",
            _ => "retry",
        };
        record_message("rabbitmq", &self.message.queue, outcome, context, error);
        if let Some(callback) = &self.config.on_settled {
            callback(&Settled {
                message: &self.message,
                settlement,
                context,
                error,
            });
        }
    }
}
