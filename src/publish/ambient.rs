//! The ambient identity: the context a handler runs with, readable without
//! passing it around, so a handler that publishes downstream propagates it.

use std::future::Future;

use tokio::task::futures::TaskLocalFuture;

use crate::verify::context::AuthContext;

tokio::task_local! {
    static CURRENT: Option<AuthContext>;
}

/// Runs `future` with `context` as its current identity.
///
/// ```
/// # async fn demo(ctx: jwt_relay::AuthContext) {
/// jwt_relay::scope(ctx, async {
///     assert!(jwt_relay::current().is_some());
/// })
/// .await;
/// # }
/// ```
pub fn scope<F: Future>(context: AuthContext, future: F) -> TaskLocalFuture<Option<AuthContext>, F> {
    CURRENT.scope(Some(context), future)
}

/// The current identity, inside [`scope`]; `None` elsewhere.
pub fn current() -> Option<AuthContext> {
    CURRENT.try_with(Clone::clone).ok().flatten()
}

/// Carries an identity into a future that runs elsewhere, such as a task
/// given to `tokio::spawn` (task-locals are not inherited), the way
/// tracing's `Instrument` carries a span.
pub trait WithIdentity: Future + Sized {
    /// Runs this future with `context` as its identity.
    fn with_identity(self, context: AuthContext) -> TaskLocalFuture<Option<AuthContext>, Self> {
        CURRENT.scope(Some(context), self)
    }

    /// Runs this future with the identity current where this is called
    /// (none, if there is none).
    ///
    /// ```
    /// use jwt_relay::publish::WithIdentity as _;
    /// # async fn demo() {
    /// tokio::spawn(async { /* jwt_relay::current() is the caller's */ }.with_current_identity());
    /// # }
    /// ```
    fn with_current_identity(self) -> TaskLocalFuture<Option<AuthContext>, Self> {
        CURRENT.scope(current(), self)
    }
}

impl<F: Future> WithIdentity for F {}
