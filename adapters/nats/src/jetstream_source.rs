//! The messages of a pull consumer, surviving reconnects: a stream that
//! errs is logged and pulled again; only a consumer that is gone or refuses
//! our pull requests ends it.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::consumer::pull::{MessagesErrorKind, Stream as PullStream};
use async_nats::jetstream::{self};
use futures_util::stream::{self, Stream, StreamExt as _};
use jwt_relay::Backoff;

use crate::error::{Error, ErrorKind};
use crate::run_loop::Source;

/// How messages are pulled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PullOptions {
    /// Messages asked for per pull request.
    pub(crate) batch: usize,
    /// The server's heartbeat while a pull request waits.
    pub(crate) heartbeat: Duration,
}

struct State {
    consumer: PullConsumer,
    options: PullOptions,
    messages: Option<PullStream>,
    failures: u32,
    done: bool,
}

/// The messages of a pull consumer, as [`messages`] pulls them.
pub(crate) struct Messages(Pin<Box<dyn Stream<Item = Result<jetstream::Message, Error>> + Send>>);

impl Stream for Messages {
    type Item = Result<jetstream::Message, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx)
    }
}

/// Never drained: the server delivers the messages pulled but not started again after
/// `ack_wait`.
impl Source for Messages {
    async fn drain(&mut self) -> bool {
        false
    }
}

/// The consumer's messages, pulled again after errors (with backoff) until
/// a terminal error, which is the last item.
pub(crate) fn messages(consumer: PullConsumer, options: PullOptions) -> Messages {
    let state = State {
        consumer,
        options,
        messages: None,
        failures: 0,
        done: false,
    };
    Messages(Box::pin(stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        let item = next(&mut state).await;
        state.done = item.is_err();
        Some((item, state))
    })))
}

async fn next(state: &mut State) -> Result<jetstream::Message, Error> {
    let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let messages = match &mut state.messages {
            Some(messages) => messages,
            None => match pull(state).await {
                Ok(messages) => state.messages.insert(messages),
                Err(e) => {
                    let delay = backoff.delay(state.failures);
                    state.failures = state.failures.saturating_add(1);
                    tracing::warn!(?delay, "cannot pull from the consumer, trying again: {e}");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            },
        };
        match messages.next().await {
            Some(Ok(message)) => {
                state.failures = 0;
                return Ok(message);
            }
            Some(Err(e)) => match e.kind() {
                MessagesErrorKind::ConsumerDeleted
                | MessagesErrorKind::PushBasedConsumer
                | MessagesErrorKind::RequestLimitExceeded => {
                    let name = &state.consumer.cached_info().name;
                    return Err(Error::new(
                        ErrorKind::Broker,
                        format!("consumer `{name}` cannot be pulled from: {e}"),
                    )
                    .with_source(e));
                }
                _ => {
                    let delay = backoff.delay(state.failures);
                    state.failures = state.failures.saturating_add(1);
                    tracing::warn!(?delay, "pulling failed, pulling again: {e}");
                    state.messages = None;
                    tokio::time::sleep(delay).await;
                }
            },
            None => {
                tracing::debug!("the pull stream ended; pulling again");
                state.messages = None;
            }
        }
    }
}

async fn pull(state: &State) -> Result<PullStream, jetstream::consumer::StreamError> {
    state
        .consumer
        .stream()
        .max_messages_per_batch(state.options.batch)
        .heartbeat(state.options.heartbeat)
        .messages()
        .await
}
