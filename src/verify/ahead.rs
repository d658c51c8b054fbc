//! Tokens verified ahead of their message's turn. A consumer that has messages waiting
//! starts their signature checks on the runtime's other threads; the check in turn then finds
//! the token in the verified-token cache, or waits for that verification instead of repeating
//! it, and takes over its failure when that failure depends on the token alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::error::{Error, ErrorClass, ErrorKind};

/// The tokens being verified ahead. Each maps to a receiver whose sender is dropped when that
/// verification ends, by which time a good token is in the cache, or a failure that the check
/// in turn would only repeat was sent.
#[derive(Default)]
pub(crate) struct Ahead {
    running: Mutex<HashMap<Arc<str>, watch::Receiver<Option<Error>>, foldhash::fast::RandomState>>,
}

/// One verification running ahead: dropping it (the verification ended, or its task was
/// dropped) removes the token from the running ones and wakes whoever waits for it.
pub(crate) struct Running {
    ahead: Arc<Ahead>,
    token: Arc<str>,
    ended: watch::Sender<Option<Error>>,
}

/// What the check in turn found of a verification ahead.
pub(crate) enum Waited {
    /// None was running.
    Nothing,
    /// One ended: a good token is in the cache.
    Ended,
    /// One failed in a way that depends on the token alone (a bad signature, a foreign
    /// issuer): the check in turn would fail the same way.
    Failed(Error),
}

impl Ahead {
    fn running(
        &self,
    ) -> MutexGuard<'_, HashMap<Arc<str>, watch::Receiver<Option<Error>>, foldhash::fast::RandomState>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers `token` as verified ahead; `None` if it already is.
    pub(crate) fn start(self: &Arc<Self>, token: &str) -> Option<Running> {
        let mut running = self.running();
        if running.contains_key(token) {
            return None;
        }
        let token: Arc<str> = Arc::from(token);
        let (ended, waiting) = watch::channel(None);
        running.insert(token.clone(), waiting);
        Some(Running {
            ahead: self.clone(),
            token,
            ended,
        })
    }

    /// Waits for the verification of `token` running ahead, if there is one.
    pub(crate) async fn wait_for(&self, token: &str) -> Waited {
        let waiting = self.running().get(token).cloned();
        let Some(mut waiting) = waiting else {
            return Waited::Nothing;
        };
        // Returns once the sender is dropped, the failure (if any) sent before.
        while waiting.changed().await.is_ok() {}
        let failed = waiting.borrow().clone();
        failed.map_or(Waited::Ended, Waited::Failed)
    }
}

impl Running {
    /// The token being verified.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// Records the verification's failure for the check in turn, if it depends on the token
    /// alone. One that depends on a dependency (the key set unreachable) or on the key set's
    /// contents at that moment (an unknown key id) is checked again in turn.
    pub(crate) fn failed(&self, error: &Error) {
        if error.class() == ErrorClass::Permanent && error.kind() != ErrorKind::UnknownKeyId {
            self.ended.send_replace(Some(error.clone()));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.ahead.running().remove(&self.token);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_token_runs_once_and_its_waiters_wake_when_it_ends() {
        let ahead = Arc::new(Ahead::default());
        let running = ahead.start("a.b.c").unwrap();
        assert!(ahead.start("a.b.c").is_none(), "already running");
        assert!(ahead.start("d.e.f").is_some(), "another token runs beside it");
        assert!(matches!(ahead.wait_for("g.h.i").await, Waited::Nothing));

        let waiter = tokio::spawn({
            let ahead = ahead.clone();
            async move { ahead.wait_for("a.b.c").await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "waits while the verification runs");
        drop(running);
        assert!(
            matches!(waiter.await.unwrap(), Waited::Ended),
            "woken when it ended"
        );
        assert!(ahead.start("a.b.c").is_some(), "ended: it can run again");
    }

    #[tokio::test]
    async fn a_failure_of_the_token_itself_is_handed_to_its_turn_and_others_are_not() {
        let ahead = Arc::new(Ahead::default());
        let forged = ahead.start("forged").unwrap();
        let unknown = ahead.start("unknown-kid").unwrap();
        let down = ahead.start("key-set-down").unwrap();
        let waiter = |token: &'static str| {
            let ahead = ahead.clone();
            tokio::spawn(async move { ahead.wait_for(token).await })
        };
        let waiting = [waiter("forged"), waiter("unknown-kid"), waiter("key-set-down")];
        tokio::task::yield_now().await;
        forged.failed(&Error::new(ErrorKind::BadSignature, "bad"));
        unknown.failed(&Error::new(ErrorKind::UnknownKeyId, "no such key"));
        down.failed(&Error::new(ErrorKind::KeySetUnavailable, "down"));
        drop((forged, unknown, down));
        let [forged, unknown, down] = waiting;
        match (forged.await.unwrap(), unknown.await.unwrap(), down.await.unwrap()) {
            (Waited::Failed(e), Waited::Ended, Waited::Ended) => {
                assert_eq!(e.kind(), ErrorKind::BadSignature)
            }
            _ => panic!("only the bad signature is handed over"),
        }
    }
}
