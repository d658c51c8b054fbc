//! The loop every subscriber, service and consumer runs: take messages while
//! fewer than `limit` are in flight, stop on shutdown or on a halt, and let
//! the ones in flight finish before returning.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, Stream, StreamExt as _};
use tokio::sync::watch;

use crate::error::Error;

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

/// Runs `process` on each item of `source`, at most `limit` at a time,
/// until the source ends, `shutdown` completes, or a `process` returns an
/// error (a halt). Then signals [`Stopping`] and waits for the items in
/// flight. Returns the first error.
pub(crate) async fn run_loop<St, P, Fut, S>(
    source: St,
    limit: usize,
    shutdown: S,
    mut process: P,
) -> Result<(), Error>
where
    St: Stream,
    P: FnMut(St::Item, Stopping) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
    S: Future<Output = ()>,
{
    let limit = limit.max(1);
    let (stop, stopping) = watch::channel(false);
    let mut source = pin!(source);
    let mut shutdown = pin!(shutdown);
    let mut in_flight = FuturesUnordered::new();
    let mut result = Ok(());
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                if let Err(e) = done {
                    result = Err(e);
                    break;
                }
            }
            item = source.next(), if in_flight.len() < limit => match item {
                Some(item) => in_flight.push(process(item, Stopping(stopping.clone()))),
                None => break,
            },
        }
    }
    stop.send_replace(true);
    while let Some(done) = in_flight.next().await {
        if let (Err(e), Ok(())) = (done, &result) {
            result = Err(e);
        }
    }
    result
}
