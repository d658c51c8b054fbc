//! The loop every subscriber, service and consumer runs: take messages while
//! fewer than `limit` are in flight, read a few ahead while they are not,
//! stop on shutdown (after draining the source, where it can be drained) or
//! on a halt, and let the ones in flight finish before returning.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::stream::{FuturesUnordered, Stream, StreamExt as _};
use tokio::sync::watch;

use async_nats::service::endpoint::Endpoint;
use async_nats::{Message, Subscriber};
use jwt_relay::Guard;
use jwt_relay::consume::Stats;
use jwt_relay::verify::ReadAhead;

use crate::acks::Acks;
use crate::error::Error;
use crate::headers::NatsHeadersRef;

/// The fewest items read ahead while every slot is taken. Deeper reads let the other threads
/// verify more tokens while the loop handles one: a JetStream consumer checking a distinct RS256
/// token per message went from about 24 000 to about 35 000 messages a second between 2 and 16
/// (see `BENCHMARKS.md`).
const READ_AHEAD: usize = 16;

/// How long a stopping run still takes what its drained source had received, by default (the
/// Kafka consumer's `drain_timeout` has the same default).
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Tells in-flight work that the run is stopping, so that a message held
/// for a retry does not hold the shutdown up.
#[derive(Debug, Clone)]
pub(crate) struct Stopping(watch::Receiver<bool>);

impl Stopping {
    /// Sleeps for `delay`; `false` if the run started stopping first.
    pub(crate) async fn sleep(&mut self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            _ = self.0.wait_for(|stopping| *stopping) => false,
        }
    }

    /// Whether the run is stopping.
    pub(crate) fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }
}

/// What a run reads its items from, and how it leaves it when it stops.
pub(crate) trait Source: Stream + Unpin {
    /// Tells the server to send this source nothing more, so that it ends once it has yielded
    /// what the client already received. `false` when it cannot be left that way: the run then
    /// drops what it has not started.
    fn drain(&mut self) -> impl Future<Output = bool> + Send;
}

/// A core NATS subscription: unsubscribed on the server ([`Subscriber::drain`]), it yields the
/// messages the client already received, then ends.
impl Source for Subscriber {
    async fn drain(&mut self) -> bool {
        match Subscriber::drain(self).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("cannot drain the subscription: {e}");
                false
            }
        }
    }
}

/// A NATS micro endpoint: stopped ([`Endpoint::stop`], an unsubscribe), it yields the requests
/// the client already received, then ends.
impl Source for Endpoint {
    async fn drain(&mut self) -> bool {
        match self.stop().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("cannot stop the endpoint: {e}");
                false
            }
        }
    }
}

/// Runs `process` on each item of `source`, at most `limit` at a time, in
/// the order they come, until the source ends, `shutdown` completes, or a
/// `process` returns an error (a halt). Then signals [`Stopping`] and waits
/// for the items in flight. Returns the first error.
///
/// With `drain` (not zero), when `shutdown` completes the source is [drained](Source::drain)
/// and the run goes on until it ends, so that the items the client already received (those
/// read ahead included) are processed too, for at most `drain`; then what is still unstarted
/// is dropped, and counted in a warning. Items held for a retry go on waiting meanwhile:
/// [`Stopping`] is signalled only when the drain is over.
///
/// While `limit` items are in flight, up to `limit` more (at least [`READ_AHEAD`]) are read
/// ahead, as soon as the source has them, and shown to `ahead` (which starts
/// verifying their tokens on other threads), then started in their turn. Without `drain`,
/// items read ahead are not started if the run stops first: like those the client still
/// buffers, a JetStream server delivers them again.
///
/// With `acks` (a JetStream consumer without double acks), the acks that
/// `process` queued are sent when a group is full and whenever nothing else
/// is ready, before the loop waits; when it stops, they are sent and
/// confirmed before the items in flight are waited for.
pub(crate) async fn run_loop<St, A, P, Fut, S>(
    mut source: St,
    limit: usize,
    mut ahead: A,
    shutdown: S,
    drain: Option<Duration>,
    acks: Option<&Acks>,
    mut process: P,
) -> Result<(), Error>
where
    St: Source,
    A: FnMut(&St::Item),
    P: FnMut(St::Item, Stopping) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
    S: Future,
{
    let limit = limit.max(1);
    let read_ahead = limit.max(READ_AHEAD);
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = pin!(async {
        shutdown.await;
    });
    // Set when `shutdown` completes and the source is draining: the end of the drain.
    let mut deadline = pin!(tokio::time::sleep(Duration::ZERO));
    let mut draining = false;
    let mut in_flight = FuturesUnordered::new();
    let mut waiting = VecDeque::new();
    let mut ended = false;
    let mut result = Ok(());
    loop {
        if let Some(acks) = acks
            && acks.is_full()
        {
            acks.send().await;
        }
        while in_flight.len() < limit
            && let Some(item) = waiting.pop_front()
        {
            in_flight.push(process(item, Stopping(stopping.clone())));
        }
        // With every slot taken, what the source already holds is read ahead without
        // waiting: the ones in flight may not wait on anything (a signature checked in place),
        // and the next token is then checked on another thread meanwhile.
        while in_flight.len() >= limit && !ended && waiting.len() < read_ahead {
            match source.next().now_or_never() {
                Some(Some(item)) => {
                    ahead(&item);
                    waiting.push_back(item);
                }
                Some(None) => ended = true,
                None => break,
            }
        }
        if ended && waiting.is_empty() {
            break;
        }
        let unsent = acks.filter(|acks| !acks.is_empty());
        tokio::select! {
            biased;
            () = &mut shutdown, if !draining => match drain {
                Some(within) if !within.is_zero() && source.drain().await => {
                    deadline.set(tokio::time::sleep(within));
                    draining = true;
                }
                _ => break,
            },
            () = &mut deadline, if draining => {
                let mut dropped = waiting.len();
                while let Some(Some(_)) = source.next().now_or_never() {
                    dropped += 1;
                }
                if dropped > 0 {
                    tracing::warn!(
                        dropped,
                        drain_timeout = ?drain,
                        "the drain timeout passed: messages received but not started are dropped"
                    );
                }
                break;
            }
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                if let Err(e) = done {
                    result = Err(e);
                    break;
                }
            }
            item = source.next(), if !ended && waiting.len() < read_ahead => match item {
                Some(item) if in_flight.len() < limit => {
                    in_flight.push(process(item, Stopping(stopping.clone())));
                }
                Some(item) => {
                    ahead(&item);
                    waiting.push_back(item);
                }
                None => ended = true,
            },
            // Taken only when no branch above is ready: the loop would wait.
            () = std::future::ready(()), if unsent.is_some() => {
                if let Some(acks) = unsent {
                    acks.send().await;
                }
            }
        }
    }
    stop.send_replace(true);
    if let Some(acks) = acks {
        acks.confirm().await;
    }
    while let Some(done) = in_flight.next().await {
        if let (Err(e), Ok(())) = (done, &result) {
            result = Err(e);
        }
    }
    result
}

/// `shutdown`, or the moment `limit` more messages have ended (accepted or rejected) in
/// `stats`, whichever comes first.
pub(crate) fn or_limit<S: Future>(
    shutdown: S,
    limit: Option<u64>,
    stats: &Stats,
) -> impl Future<Output = ()> {
    let limit = limit.map(|messages| stats.ended(messages));
    async move {
        match limit {
            Some(limit) => tokio::select! {
                _ = shutdown => {}
                () = limit => {}
            },
            None => {
                shutdown.await;
            }
        }
    }
}

/// What [`run_loop`] does with a message read ahead: offers it to
/// [`ReadAhead`], which starts verifying its token.
pub(crate) fn verify_ahead(guard: &Guard) -> impl FnMut(&Message) + use<> {
    let mut ahead = ReadAhead::new(guard.verifier().clone());
    move |message| {
        ahead.offer(&NatsHeadersRef::of(message));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::cell::RefCell;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use futures_util::stream;

    use super::*;

    /// The items `0..total`, every one already received; drained, the source ends after
    /// `received` more, as a subscription ends after what its client had buffered.
    struct Items {
        items: stream::Iter<std::ops::Range<u32>>,
        received: Option<usize>,
        left: Option<usize>,
    }

    impl Items {
        fn new(total: u32) -> Self {
            Items {
                items: stream::iter(0..total),
                received: None,
                left: None,
            }
        }

        /// Drainable: `received` items still come once it is drained.
        fn drainable(total: u32, received: usize) -> Self {
            Items {
                received: Some(received),
                ..Items::new(total)
            }
        }
    }

    impl Stream for Items {
        type Item = u32;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u32>> {
            match self.left {
                Some(0) => Poll::Ready(None),
                Some(left) => {
                    self.left = Some(left - 1);
                    self.items.poll_next_unpin(cx)
                }
                None => self.items.poll_next_unpin(cx),
            }
        }
    }

    impl Source for Items {
        async fn drain(&mut self) -> bool {
            self.left = self.received;
            self.received.is_some()
        }
    }

    /// The items started when the run is told to stop before it starts any, with `drain`, each
    /// `process` taking `work`.
    async fn stopped_at_once(source: Items, drain: Option<Duration>, work: Duration) -> Vec<u32> {
        let started = RefCell::new(Vec::new());
        run_loop(
            source,
            1,
            |_| {},
            std::future::ready(()),
            drain,
            None,
            |item, _| {
                started.borrow_mut().push(item);
                async move {
                    tokio::time::sleep(work).await;
                    Ok(())
                }
            },
        )
        .await
        .unwrap();
        started.into_inner()
    }

    #[tokio::test]
    async fn a_drained_source_is_processed_to_its_end() {
        let started = stopped_at_once(
            Items::drainable(100, 5),
            Some(Duration::from_secs(10)),
            Duration::from_millis(1),
        )
        .await;
        assert_eq!(started, [0, 1, 2, 3, 4], "what was received, nothing more");
    }

    #[tokio::test]
    async fn without_a_drain_nothing_more_is_started() {
        let drainable = Items::drainable(100, 5);
        assert!(stopped_at_once(drainable, None, Duration::ZERO).await.is_empty());
        let undrainable = Items::new(100);
        let started = stopped_at_once(undrainable, Some(Duration::from_secs(10)), Duration::ZERO).await;
        assert!(started.is_empty(), "a source that cannot drain stops at once");
    }

    #[tokio::test]
    async fn the_drain_stops_at_its_timeout() {
        let started = stopped_at_once(
            Items::drainable(100, 50),
            Some(Duration::from_millis(150)),
            Duration::from_millis(100),
        )
        .await;
        assert!(
            !started.is_empty() && started.len() < 50,
            "started until the drain timeout, then stopped: {started:?}"
        );
    }

    /// What `ahead` was shown and the order `process` started in, with each
    /// `process` taking `work`.
    async fn run(limit: usize, work: Duration) -> (Vec<u32>, Vec<u32>) {
        let (ahead, started) = (RefCell::new(Vec::new()), RefCell::new(Vec::new()));
        let in_flight = std::cell::Cell::new(0);
        run_loop(
            Items::new(10),
            limit,
            |item| ahead.borrow_mut().push(*item),
            std::future::pending::<()>(),
            None,
            None,
            |item, _| {
                started.borrow_mut().push(item);
                let in_flight = &in_flight;
                async move {
                    in_flight.set(in_flight.get() + 1);
                    assert!(in_flight.get() <= limit, "at most {limit} in flight");
                    if !work.is_zero() {
                        tokio::time::sleep(work).await;
                    }
                    in_flight.set(in_flight.get() - 1);
                    Ok(())
                }
            },
        )
        .await
        .unwrap();
        (ahead.into_inner(), started.into_inner())
    }

    #[tokio::test]
    async fn items_that_wait_are_shown_ahead_and_started_in_order() {
        let (ahead, started) = run(1, Duration::from_millis(2)).await;
        assert_eq!(started, (0..10).collect::<Vec<_>>(), "in order, all of them");
        assert_eq!(ahead, (1..10).collect::<Vec<_>>(), "all but the first waited");
    }

    #[tokio::test]
    async fn items_already_there_are_read_ahead_even_when_nothing_waits() {
        // Processing never waits (a signature checked in place): the next item is still read
        // ahead as each one starts.
        let (ahead, started) = run(1, Duration::ZERO).await;
        assert_eq!(started, (0..10).collect::<Vec<_>>());
        assert_eq!(ahead, (1..10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn one_in_flight_reads_sixteen_ahead() {
        let ahead = RefCell::new(Vec::new());
        let shown_at_start = RefCell::new(Vec::new());
        run_loop(
            Items::new(40),
            1,
            |item| ahead.borrow_mut().push(*item),
            std::future::pending::<()>(),
            None,
            None,
            |_, _| {
                shown_at_start.borrow_mut().push(ahead.borrow().len());
                async {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    Ok(())
                }
            },
        )
        .await
        .unwrap();
        let shown = shown_at_start.into_inner();
        assert_eq!(
            shown[..3],
            [0, READ_AHEAD, READ_AHEAD + 1],
            "16 waiting behind the first"
        );
        assert_eq!(ahead.into_inner(), (1..40).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn with_room_in_flight_nothing_is_read_ahead() {
        let (ahead, started) = run(16, Duration::from_millis(2)).await;
        assert_eq!(started.len(), 10);
        assert!(ahead.is_empty(), "16 in flight leave none waiting: {ahead:?}");
    }

    #[tokio::test]
    async fn several_in_flight_read_as_many_ahead() {
        let (ahead, started) = run(3, Duration::from_millis(2)).await;
        assert_eq!(started, (0..10).collect::<Vec<_>>());
        assert_eq!(ahead, (3..10).collect::<Vec<_>>());
    }
}
