//! The consume side: a queue consumed through the Guard, with reconnects.

use std::fmt;
use std::fmt::Display;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use jwt_relay::consume::{Engine, Event, Reporter, RunReport, Stats};
use jwt_relay::{Backoff, Guard};

use crate::connect::{Connect, Connector};
use crate::dead_letter::DeadLetter;
use crate::error::{Error, Result};
use crate::received::Received;
use crate::session::{Session, SessionEnd};

/// Consumes one queue through a [`Guard`], with the core's [`Engine`] like every adapter (and
/// [`jwt_relay::memory::MemoryConsumer`] in memory):
///
/// | outcome | what happens to the message |
/// |---|---|
/// | `Accept` | the handler runs in the identity's [`scope`](jwt_relay::scope), a panic caught; success acknowledges it |
/// | handler error or panic | a copy goes through the retry queue (count in [`FAILURES_HEADER`](crate::FAILURES_HEADER)), at most [`max_attempts`](ConsumerBuilder::max_attempts) handler calls in all, then it is dead-lettered (`Handler`) |
/// | `Reject` | it is dead-lettered ([`DeadLetter`]: by default a copy to `<queue>.dlq` with the reason and without the token or other credentials, confirmed, then the original acknowledged); a message that already is a dead-lettered copy is acknowledged without another ([`EventOutcome::Rejected`](jwt_relay::EventOutcome::Rejected) without a `dead_letter`) |
/// | `Retry` | a copy goes to the retry queue (`<queue>.retry`) with a per-message TTL of the delay; the queue dead-letters it back to the work queue when it expires: no hot requeue loop |
/// | `Halt` | it goes back to its queue untouched, the consumer stops, and [`run`](Consumer::run) returns [`ErrorKind::Halted`](crate::ErrorKind::Halted) |
///
/// What the broker dead-letters itself (a message TTL, `x-max-length` overflow, a quorum queue's
/// delivery limit, a `basic.reject` from another client) still has its token, so it goes to a
/// holding queue ([`held_queue`](ConsumerBuilder::held_queue), `<queue>.held`, which
/// [`Topology`](crate::Topology) binds to the work queue's dead-letter exchange). The consumer
/// also consumes that queue and moves each message to the dead-letter destination like its own
/// rejections: without the token and other credentials, with the broker's `x-death` record as
/// the reason ([`jwt_relay::ErrorKind::BrokerDeadLettered`]). The dead-letter queue never holds a
/// token, whoever dead-lettered the message. When the holding queue does not exist, a warning
/// says so once per connection and the consumer goes on without it.
///
/// Each message is reported once, as it is settled: to [`on_event`](ConsumerBuilder::on_event),
/// the [`stats`](Consumer::stats), the log and the metrics (`broker="rabbitmq"`, labelled with
/// the work queue).
///
/// Deliveries are handled concurrently, at most [`prefetch`](ConsumerBuilder::prefetch) at a
/// time (`basic.qos`), each acknowledged on its own. The message's `timestamp` property goes to
/// the expiry policy as a client-set time. The retry and dead-letter queues must exist:
/// [`Topology`](crate::Topology) declares them; when one does not, the message goes back to its
/// queue and the run stops with [`ErrorKind::Broker`](crate::ErrorKind::Broker).
///
/// The consumer owns its connector ([`Connect`]: a [`Connector`], or a closure returning
/// `lapin::Connection::connect(..)`), so that it can open a new connection when the old one
/// drops. Clones share the connector, the configuration and the [`stats`](Consumer::stats).
/// `Debug` shows the configuration, never the connector (nor its credentials).
///
/// Delivery is at least once: a handler may see a message again after a lost connection
/// ([`Received::redelivered`]).
pub struct Consumer<C = Connector> {
    connect: Arc<C>,
    config: Arc<Config>,
}

/// What a consumer is set to do.
pub(crate) struct Config {
    pub(crate) queue: Arc<str>,
    /// The guard, the handler attempts and backoff, the dead-letter redaction, the reporter.
    pub(crate) engine: Engine,
    pub(crate) prefetch: u16,
    pub(crate) dead_letter: DeadLetter,
    pub(crate) held_queue: String,
    pub(crate) retry_queue: String,
    /// The engine's handler backoff, also the wait before requeueing a message whose retry
    /// copy the broker refused for now.
    pub(crate) backoff: Backoff,
    pub(crate) reconnect: Backoff,
    pub(crate) confirm_timeout: Duration,
    pub(crate) limit: Option<u64>,
}

/// Builds a [`Consumer`].
pub struct ConsumerBuilder<C = Connector> {
    connect: C,
    config: Config,
}

impl<C> Clone for Consumer<C> {
    fn clone(&self) -> Self {
        Consumer {
            connect: Arc::clone(&self.connect),
            config: Arc::clone(&self.config),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.queue)
            .field("engine", &self.engine)
            .field("prefetch", &self.prefetch)
            .field("dead_letter", &self.dead_letter)
            .field("held_queue", &self.held_queue)
            .field("retry_queue", &self.retry_queue)
            .field("backoff", &self.backoff)
            .field("reconnect", &self.reconnect)
            .field("confirm_timeout", &self.confirm_timeout)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<C> fmt::Debug for Consumer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt(f)
    }
}

impl<C> fmt::Debug for ConsumerBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt(f)
    }
}

impl<C: Connect> Consumer<C> {
    /// Starts a consumer of `queue` through `guard`, connecting through `connect` (a
    /// [`Connector`], or a closure returning `lapin::Connection::connect(..)`): prefetch 10,
    /// 3 handler attempts, dead letters to `<queue>.dlq` without the token, the broker's dead
    /// letters moved there from `<queue>.held`, retries through `<queue>.retry`, handler
    /// retries after the default [`Backoff`] (1 s doubling to 1 min), reconnects after 0.5 s
    /// doubling to 30 s.
    pub fn builder(connect: C, queue: impl Into<String>, guard: Guard) -> ConsumerBuilder<C> {
        let queue: String = queue.into();
        ConsumerBuilder {
            connect,
            config: Config {
                dead_letter: DeadLetter::queue(format!("{queue}.dlq")),
                held_queue: format!("{queue}.held"),
                retry_queue: format!("{queue}.retry"),
                queue: queue.into(),
                engine: Engine::new(guard, Reporter::new("rabbitmq")),
                prefetch: 10,
                backoff: Backoff::default(),
                reconnect: Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
                confirm_timeout: Duration::from_secs(10),
                limit: None,
            },
        }
    }

    /// The queue consumed.
    pub fn queue(&self) -> &str {
        &self.config.queue
    }

    /// The live counts of every run of this consumer and its clones; readable while
    /// [`run`](Self::run) runs.
    pub fn stats(&self) -> Stats {
        self.config.engine.stats().clone()
    }

    /// Consumes until `shutdown` completes, the [`limit`](ConsumerBuilder::limit) is reached,
    /// or the guard halts. Each accepted message is passed to `handler`, which runs in its own
    /// task, in the message's identity's scope.
    ///
    /// Connects through the consumer's connector first; if that fails, returns
    /// [`ErrorKind::Connection`](crate::ErrorKind::Connection). When the connection drops
    /// later (a broker restart, a closed connection), it connects again with backoff and
    /// resumes: the broker redelivers what was not acknowledged, so nothing is lost.
    ///
    /// Shutting down is graceful: the consumer is cancelled, handlers in flight finish and
    /// their messages are settled, then the channels and the connection are closed. Messages
    /// the broker had sent ahead but no handler started go back to the queue. `shutdown`'s
    /// output is ignored.
    ///
    /// Returns what this run did ([`RunReport::reconnects`] counts the reconnections).
    pub async fn run<H, Fut, E, S>(&self, handler: H, shutdown: S) -> Result<RunReport>
    where
        H: Fn(Received) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: Display + 'static,
        S: Future,
    {
        let handler = Arc::new(handler);
        let stats = self.config.engine.stats();
        let before = stats.snapshot();
        let report = || stats.snapshot().since(&before);
        let mut shutdown = pin!(async {
            shutdown.await;
        });
        let mut taken = 0;
        let mut failed_opens = 0;
        let mut connected = false;
        loop {
            let session = match Session::open(&*self.connect, &self.config).await {
                Ok(session) => session,
                Err(e) if !connected || e.is_fatal() => return Err(e.into_error(&self.config.queue)),
                Err(e) => {
                    let delay = self.config.reconnect.delay(failed_opens);
                    failed_opens = failed_opens.saturating_add(1);
                    tracing::warn!(queue = %self.config.queue, ?delay, "cannot reconnect to RabbitMQ: {e}");
                    tokio::select! {
                        () = shutdown.as_mut() => return Ok(report()),
                        () = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            if connected {
                stats.reconnected();
                tracing::info!(queue = %self.config.queue, "reconnected to RabbitMQ");
            }
            connected = true;
            failed_opens = 0;
            let end = session
                .run(&self.config, &handler, shutdown.as_mut(), &mut taken)
                .await;
            match end {
                SessionEnd::Done => return Ok(report()),
                SessionEnd::Halted(reason) => return Err(Error::halted(reason)),
                SessionEnd::Fatal(error) => return Err(error),
                SessionEnd::Lost(why) => {
                    tracing::warn!(queue = %self.config.queue, "lost the connection to RabbitMQ ({why}); reconnecting");
                }
            }
        }
    }
}

impl<C: Connect> ConsumerBuilder<C> {
    /// How many deliveries may be in flight at once (`basic.qos` prefetch; 10, at least 1).
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.config.prefetch = prefetch.max(1);
        self
    }

    /// How many times the handler is called for one message before it is dead-lettered (3; at
    /// least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.config.engine = self.config.engine.max_attempts(attempts);
        self
    }

    /// Where rejected messages go (a copy to `<queue>.dlq`).
    pub fn dead_letter(mut self, dead_letter: DeadLetter) -> Self {
        self.config.dead_letter = dead_letter;
        self
    }

    /// Keeps the token header in dead-lettered copies. Off by default: a dead-letter queue is
    /// read by operators and tools, and should not hold usable tokens. Other credential headers
    /// ([`GuardBuilder::credential_headers`](jwt_relay::consume::GuardBuilder::credential_headers)) are
    /// removed all the same.
    pub fn keep_token_in_dead_letters(mut self) -> Self {
        self.config.engine = self.config.engine.keep_token(true);
        self
    }

    /// The holding queue (`<queue>.held`): where the work queue's dead-letter exchange routes
    /// what the broker dead-letters, as [`Topology`](crate::Topology) declares it. The consumer
    /// moves each message from it to the dead-letter destination without its credentials.
    pub fn held_queue(mut self, queue: impl Into<String>) -> Self {
        self.config.held_queue = queue.into();
        self
    }

    /// The retry queue (`<queue>.retry`): a queue without consumers whose dead-letter exchange
    /// is the default exchange and whose dead-letter routing key is the work queue, as
    /// [`Topology`](crate::Topology) declares it.
    pub fn retry_queue(mut self, queue: impl Into<String>) -> Self {
        self.config.retry_queue = queue.into();
        self
    }

    /// The backoff between handler attempts (transient verification failures use the guard's).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.engine = self.config.engine.backoff(backoff);
        self.config.backoff = backoff;
        self
    }

    /// The backoff between attempts to reconnect (0.5 s doubling to 30 s).
    pub fn reconnect_backoff(mut self, backoff: Backoff) -> Self {
        self.config.reconnect = backoff;
        self
    }

    /// How long a dead-lettered or retried copy waits for the broker's confirm (10 s).
    pub fn confirm_timeout(mut self, timeout: Duration) -> Self {
        self.config.confirm_timeout = timeout;
        self
    }

    /// Stops after taking this many deliveries (all of them settled): for tools and tests.
    pub fn limit(mut self, deliveries: u64) -> Self {
        self.config.limit = Some(deliveries);
        self
    }

    /// Calls `callback` with what happened to each message (accepted, rejected with or
    /// without a dead-lettered copy, retried, handler failed, halted), once the broker has it
    /// settled, from the task that handled it: for logs, metrics and tools. The event's
    /// `destination` is the queue, its `subject` the routing key, its `position` the delivery
    /// tag. It must not block.
    pub fn on_event(mut self, callback: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.config.engine = self.config.engine.on_event(callback);
        self
    }

    /// Builds the consumer.
    pub fn build(self) -> Consumer<C> {
        Consumer {
            connect: Arc::new(self.connect),
            config: Arc::new(self.config),
        }
    }
}

#[cfg(test)]
mod tests {
    use jwt_relay::{Algorithm, Issuer, Key, Verifier};

    use super::*;

    fn guard() -> Guard {
        let key = Key::from_secret(b"a unit-test secret of 32+ bytes!!", Algorithm::HS256).unwrap();
        let issuer = Issuer::new("https://id.example.com")
            .audience("invoices")
            .key(key)
            .unwrap();
        Guard::new(Verifier::builder().issuer(issuer).build().unwrap())
    }

    #[test]
    fn debug_never_shows_the_connectors_credentials() {
        let builder = Consumer::builder(Connector::new("amqp://u:hunter2@h/%2f"), "invoices", guard());
        let shown = format!("{builder:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let consumer = builder.build();
        let shown = format!("{:?}", consumer.clone());
        assert!(
            shown.contains("invoices") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn a_closure_is_a_connector_and_the_consumer_clones() {
        let connect = || lapin::Connection::connect("amqp://127.0.0.1:1/%2f", Default::default());
        let consumer = Consumer::builder(connect, "invoices", guard()).build();
        let clone = consumer.clone();
        assert_eq!(clone.queue(), "invoices");
        assert!(format!("{clone:?}").contains("invoices"));
    }
}
