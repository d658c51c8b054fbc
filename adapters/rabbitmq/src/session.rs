//! One connection's worth of consuming: open the channels, take deliveries, hand each to its
//! own task, and on the way out let the tasks finish before closing.

use std::fmt::Display;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;

use futures_core::Stream;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection};
use tokio::task::JoinSet;

use crate::connect::Connect;
use crate::consumer::Config;
use crate::error::{Error, ErrorKind};
use crate::received::Received;
use crate::settle::{Stop, TaskEnd, move_held, settle};

/// The AMQP reply code of a normal close.
const REPLY_SUCCESS: u16 = 200;

/// A connection with a consuming channel, a publishing (confirm-mode) channel, and a channel
/// consuming the holding queue of the broker's dead letters when it exists.
pub(crate) struct Session {
    connection: Connection,
    consume: Channel,
    publish: Channel,
    consumer: lapin::Consumer,
    held: Option<(Channel, lapin::Consumer)>,
}

/// Why a session ended.
pub(crate) enum SessionEnd {
    /// Shut down, or the limit reached: the run is over.
    Done,
    /// The guard halted.
    Halted(jwt_relay::Error),
    /// Something reconnecting cannot fix.
    Fatal(Error),
    /// The connection or a channel went away: reconnect.
    Lost(String),
}

/// A failure to open a session.
pub(crate) struct OpenError {
    step: &'static str,
    error: lapin::Error,
    /// Refused on purpose, or impossible as configured: reconnecting cannot fix it.
    fatal: bool,
}

impl OpenError {
    /// A failure of `step`; fatal when the broker refused on purpose (a channel-level AMQP
    /// error: the queue does not exist, access refused).
    fn new(step: &'static str, error: lapin::Error) -> Self {
        let fatal = error.is_amqp_soft_error();
        OpenError { step, error, fatal }
    }

    /// Whether reconnecting cannot fix it.
    pub(crate) fn is_fatal(&self) -> bool {
        self.fatal
    }

    pub(crate) fn into_error(self, queue: &str) -> Error {
        let kind = if self.is_fatal() {
            ErrorKind::Broker
        } else {
            ErrorKind::Connection
        };
        Error::new(kind, format!("cannot consume `{queue}`: {self}")).with_source(self.error)
    }
}

impl Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.step, self.error)
    }
}

impl Session {
    /// Connects, sets the prefetch, puts the publishing channel in confirm mode, and starts
    /// consuming.
    pub(crate) async fn open<C: Connect>(connect: &C, config: &Config) -> Result<Session, OpenError> {
        let fail = |step| move |error| OpenError::new(step, error);
        let queue = ShortString::try_new(&*config.queue).map_err(|e| OpenError {
            step: "naming the queue",
            error: lapin::Error::from(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)),
            fatal: true,
        })?;
        let connection = connect.connect().await.map_err(fail("connecting"))?;
        let consume = connection
            .create_channel()
            .await
            .map_err(fail("opening a channel"))?;
        consume
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await
            .map_err(fail("basic.qos"))?;
        let publish = connection
            .create_channel()
            .await
            .map_err(fail("opening a channel"))?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(fail("confirm.select"))?;
        let consumer = consume
            .basic_consume(
                queue,
                ShortString::default(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(fail("basic.consume"))?;
        let held = Self::consume_held(&connection, config)
            .await
            .map_err(fail("consuming the holding queue"))?;
        Ok(Session {
            connection,
            consume,
            publish,
            consumer,
            held,
        })
    }

    /// Consumes the holding queue on a channel of its own; `None` (after a warning) when the
    /// queue does not exist.
    async fn consume_held(
        connection: &Connection,
        config: &Config,
    ) -> lapin::Result<Option<(Channel, lapin::Consumer)>> {
        let Ok(name) = ShortString::try_new(&*config.held_queue) else {
            tracing::warn!(queue = %config.queue, held_queue = %config.held_queue, "the holding queue's name is too long: the broker's dead letters are not moved");
            return Ok(None);
        };
        let channel = connection.create_channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match channel
            .queue_declare(name.clone(), passive, FieldTable::default())
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_amqp_soft_error() => {
                tracing::warn!(
                    queue = %config.queue,
                    held_queue = %config.held_queue,
                    "no holding queue: what the broker dead-letters from this queue is not moved to the \
                     dead-letter queue without its token (declare the topology with Topology::declare): {e}"
                );
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                name,
                ShortString::default(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Some((channel, consumer)))
    }

    /// Takes deliveries until shutdown, the limit, a halt or a lost connection; then lets the
    /// tasks in flight finish and closes what is still open.
    pub(crate) async fn run<H, Fut, E, S>(
        mut self,
        config: &Arc<Config>,
        handler: &Arc<H>,
        mut shutdown: Pin<&mut S>,
        taken: &mut u64,
    ) -> SessionEnd
    where
        H: Fn(Received) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + 'static,
        S: Future<Output = ()>,
    {
        let mut tasks = JoinSet::new();
        let end = loop {
            if config.limit.is_some_and(|limit| *taken >= limit) {
                break SessionEnd::Done;
            }
            tokio::select! {
                biased;
                () = shutdown.as_mut() => break SessionEnd::Done,
                Some(joined) = tasks.join_next() => match task_end(joined) {
                    None => {}
                    Some(end) => break end,
                },
                next = poll_fn(|cx| Pin::new(&mut self.consumer).poll_next(cx)) => match next {
                    Some(Ok(delivery)) => {
                        *taken += 1;
                        // In its `jwt_relay.consume` span, which the engine opens.
                        let task = settle(config.clone(), self.publish.clone(), handler.clone(), delivery);
                        tasks.spawn(task);
                    }
                    Some(Err(e)) => break SessionEnd::Lost(e.to_string()),
                    None => break SessionEnd::Lost("the broker cancelled the consumer".to_owned()),
                },
                next = next_held(&mut self.held) => match next {
                    Some(Ok(delivery)) => {
                        let task = move_held(config.clone(), self.publish.clone(), delivery);
                        tasks.spawn(task);
                    }
                    Some(Err(e)) => break SessionEnd::Lost(e.to_string()),
                    None => break SessionEnd::Lost("the broker cancelled the holding queue's consumer".to_owned()),
                },
            }
        };
        let connected = !matches!(end, SessionEnd::Lost(_));
        if connected {
            // No new deliveries; those sent ahead go back to the queue when the channel closes.
            let cancel = self
                .consume
                .basic_cancel(self.consumer.tag(), BasicCancelOptions::default())
                .await;
            if let Err(e) = cancel {
                tracing::debug!(queue = %config.queue, "basic.cancel failed: {e}");
            }
            if let Some((channel, consumer)) = &self.held
                && let Err(e) = channel
                    .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                    .await
            {
                tracing::debug!(queue = %config.held_queue, "basic.cancel failed: {e}");
            }
        }
        let mut end = end;
        while let Some(joined) = tasks.join_next().await {
            // A second halt or failure while draining changes nothing: the first one stands.
            if let (Some(later), SessionEnd::Done) = (task_end(joined), &end) {
                end = later;
            }
        }
        if connected {
            self.close().await;
        }
        end
    }

    /// Closes the channels and the connection, politely; failures only mean they were gone.
    async fn close(self) {
        let held = self.held.as_ref().map(|(channel, _)| channel);
        for channel in [Some(&self.consume), Some(&self.publish), held]
            .into_iter()
            .flatten()
        {
            if let Err(e) = channel.close(REPLY_SUCCESS, ShortString::from("OK")).await {
                tracing::debug!("closing channel {} failed: {e}", channel.id());
            }
        }
        if let Err(e) = self
            .connection
            .close(REPLY_SUCCESS, ShortString::from("OK"))
            .await
        {
            tracing::debug!("closing the connection failed: {e}");
        }
    }
}

/// The next delivery of the holding queue; never, when there is none.
async fn next_held(
    held: &mut Option<(Channel, lapin::Consumer)>,
) -> Option<lapin::Result<lapin::message::Delivery>> {
    match held {
        Some((_, consumer)) => poll_fn(|cx| Pin::new(&mut *consumer).poll_next(cx)).await,
        None => std::future::pending().await,
    }
}

/// What a finished task means for the session: `None` to go on.
fn task_end(joined: Result<TaskEnd, tokio::task::JoinError>) -> Option<SessionEnd> {
    match joined {
        Ok(TaskEnd::Settled) => None,
        Ok(TaskEnd::Halt(reason)) => Some(SessionEnd::Halted(reason)),
        Ok(TaskEnd::Stop(Stop::Fatal(error))) => Some(SessionEnd::Fatal(error)),
        Ok(TaskEnd::Stop(Stop::Broken(why))) => Some(SessionEnd::Lost(why)),
        // The engine catches handler panics; this is a bug of ours. Its delivery is
        // still unacknowledged: a new session gets it back.
        Err(e) => Some(SessionEnd::Lost(format!("a delivery task failed: {e}"))),
    }
}
