//! The loop every subscriber, service and consumer runs: take messages while
//! fewer than `limit` are in flight, read a few ahead while they are not,
//! stop on shutdown or on a halt, and let the ones in flight finish before
//! returning.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::stream::{FuturesUnordered, Stream, StreamExt as _};
use tokio::sync::watch;

use async_nats::Message;
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

/// Runs `process` on each item of `source`, at most `limit` at a time, in
/// the order they come, until the source ends, `shutdown` completes, or a
/// `process` returns an error (a halt). Then signals [`Stopping`] and waits
/// for the items in flight. Returns the first error.
///
/// While `limit` items are in flight, up to `limit` more (at least [`READ_AHEAD`]) are read
/// ahead, as soon as the source has them, and shown to `ahead` (which starts
/// verifying their tokens on other threads), then started in their turn. Items read ahead are not started if
/// the run stops first: like those the client still buffers, a JetStream
/// server delivers them again, and core NATS keeps nothing.
///
/// With `acks` (a JetStream consumer without double acks), the acks that
/// `process` queued are sent when a group is full and whenever nothing else
/// is ready, before the loop waits; when it stops, they are sent and
/// confirmed before the items in flight are waited for.
pub(crate) async fn run_loop<St, A, P, Fut, S>(
    source: St,
    limit: usize,
    mut ahead: A,
    shutdown: S,
    acks: Option<&Acks>,
    mut process: P,
) -> Result<(), Error>
where
    St: Stream,
    A: FnMut(&St::Item),
    P: FnMut(St::Item, Stopping) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
    S: Future,
{
    let limit = limit.max(1);
    let read_ahead = limit.max(READ_AHEAD);
    let (stop, stopping) = watch::channel(false);
    let mut source = pin!(source);
    let mut shutdown = pin!(async {
        shutdown.await;
    });
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
            () = &mut shutdown => break,
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

    use futures_util::stream;

    use super::*;

    /// What `ahead` was shown and the order `process` started in, with each
    /// `process` taking `work`.
    async fn run(limit: usize, work: Duration) -> (Vec<u32>, Vec<u32>) {
        let (ahead, started) = (RefCell::new(Vec::new()), RefCell::new(Vec::new()));
        let in_flight = std::cell::Cell::new(0);
        run_loop(
            stream::iter(0..10u32),
            limit,
            |item| ahead.borrow_mut().push(*item),
            std::future::pending::<()>(),
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
            stream::iter(0..40u32),
            1,
            |item| ahead.borrow_mut().push(*item),
            std::future::pending::<()>(),
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
