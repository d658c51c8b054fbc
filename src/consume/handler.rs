//! Running a user's handler: with its identity in scope, and with its
//! failures (errors and panics) turned into one [`Error`] of kind
//! [`ErrorKind::Handler`], so a bad message never takes a consumer down.
//! The [`Engine`](super::Engine) calls this for every transport.

use std::any::Any;
use std::fmt::Display;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::backoff::Backoff;
use crate::error::{Error, ErrorKind};
use crate::publish::ambient::scope;
use crate::verify::context::AuthContext;

/// Runs `handler` with `context` as its current identity
/// ([`current`](crate::current)), so what it publishes carries the token.
/// A returned error or a panic becomes an [`ErrorKind::Handler`] error whose
/// message is the handler's own (the consumer retries, then dead-letters).
///
/// Pass the call inside an `async move { handler(message).await }` block, so
/// a handler that panics before returning its future is caught too.
pub(crate) async fn run_handler<F, E>(context: AuthContext, handler: F) -> Result<(), Error>
where
    F: Future<Output = Result<(), E>>,
    E: Display,
{
    // Pinned in place: no allocation per message.
    match CatchUnwind(std::pin::pin!(scope(context, handler))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::new(ErrorKind::Handler, e.to_string())),
        Err(payload) => Err(Error::new(
            ErrorKind::Handler,
            format!("the handler panicked: {}", panic_message(payload.as_ref())),
        )),
    }
}

/// What to do with a message after its handler failed: every transport
/// decides the same way ([`after_handler_failure`]) and maps the verdict
/// onto its broker.
#[derive(Debug)]
pub(crate) enum HandlerVerdict {
    /// Attempts are left: deliver it to the handler again after this delay.
    Retry(Duration),
    /// Out of attempts: dead-letter it with this reason (an
    /// [`ErrorKind::Handler`] error naming the count and the last failure).
    DeadLetter(Error),
}

/// The decision after the handler failed on a message for the `failures`-th
/// time (1 the first time), `failure` being that failure (from
/// [`run_handler`]): while `failures < max_attempts`, retry after
/// `backoff.delay(failures - 1)`; else dead-letter with the reason "the
/// handler failed N times; the last time: …".
pub(crate) fn after_handler_failure(
    failures: u32,
    max_attempts: u32,
    backoff: &Backoff,
    failure: &Error,
) -> HandlerVerdict {
    if failures < max_attempts {
        HandlerVerdict::Retry(backoff.delay(failures.saturating_sub(1)))
    } else {
        HandlerVerdict::DeadLetter(Error::new(
            ErrorKind::Handler,
            format!(
                "the handler failed {failures} times; the last time: {}",
                failure.message()
            ),
        ))
    }
}

/// Completes with `Err(panic payload)` if polling the inner future panics;
/// the inner future, pinned in `run_handler`, is dropped when it returns, so
/// nothing observes it half-updated.
struct CatchUnwind<'a, F>(Pin<&'a mut F>);

impl<F: Future> Future for CatchUnwind<'_, F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// The text of a panic payload (`panic!("…")` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string payload")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_while_attempts_are_left_then_dead_letters() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let failure = Error::new(ErrorKind::Handler, "the database is on fire");
        match after_handler_failure(1, 3, &backoff, &failure) {
            HandlerVerdict::Retry(delay) => {
                assert!(
                    delay >= Duration::from_millis(50) && delay <= Duration::from_millis(100),
                    "{delay:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        match after_handler_failure(2, 3, &backoff, &failure) {
            HandlerVerdict::Retry(delay) => {
                assert!(
                    delay >= Duration::from_millis(100) && delay <= Duration::from_millis(200),
                    "{delay:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        match after_handler_failure(3, 3, &backoff, &failure) {
            HandlerVerdict::DeadLetter(reason) => {
                assert_eq!(reason.kind(), ErrorKind::Handler);
                assert_eq!(
                    reason.message(),
                    "the handler failed 3 times; the last time: the database is on fire"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            after_handler_failure(1, 1, &backoff, &failure),
            HandlerVerdict::DeadLetter(_)
        ));
    }
}
