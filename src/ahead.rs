//! Tokens verified ahead of their message's turn. A consumer that has messages waiting
//! starts their signature checks on the runtime's other threads; the check in turn then finds
//! the token in the verified-token cache, or waits for that verification instead of repeating
//! it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

/// The tokens being verified ahead. Each maps to a receiver whose sender is dropped when that
/// verification ends, by which time a good token is in the cache.
#[derive(Default)]
pub(crate) struct Ahead {
    running: Mutex<HashMap<Arc<str>, watch::Receiver<()>, foldhash::fast::RandomState>>,
}

/// One verification running ahead: dropping it (the verification ended, or its task was
/// dropped) removes the token from the running ones and wakes whoever waits for it.
pub(crate) struct Running {
    ahead: Arc<Ahead>,
    token: Arc<str>,
    _ended: watch::Sender<()>,
}

impl Ahead {
    fn running(&self) -> MutexGuard<'_, HashMap<Arc<str>, watch::Receiver<()>, foldhash::fast::RandomState>> {
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
        let (ended, waiting) = watch::channel(());
        running.insert(token.clone(), waiting);
        Some(Running {
            ahead: self.clone(),
            token,
            _ended: ended,
        })
    }

    /// Waits for the verification of `token` running ahead, if there is one; `true` if there
    /// was.
    pub(crate) async fn wait_for(&self, token: &str) -> bool {
        let waiting = self.running().get(token).cloned();
        match waiting {
            // Never sent to: this returns when the sender is dropped.
            Some(mut waiting) => {
                let _ = waiting.changed().await;
                true
            }
            None => false,
        }
    }
}

impl Running {
    /// The token being verified.
    pub(crate) fn token(&self) -> &str {
        &self.token
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
        assert!(!ahead.wait_for("g.h.i").await, "nothing to wait for");

        let waiter = tokio::spawn({
            let ahead = ahead.clone();
            async move { ahead.wait_for("a.b.c").await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "waits while the verification runs");
        drop(running);
        assert!(waiter.await.unwrap(), "woken when it ended");
        assert!(ahead.start("a.b.c").is_some(), "ended: it can run again");
    }
}
