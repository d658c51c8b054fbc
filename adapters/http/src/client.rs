//! The outgoing side: a reqwest middleware that sends the current identity's token on.

use std::fmt;

use http::Extensions;
use jwt_relay::{Propagator, current};
use reqwest::{Request, Response, Url};
use reqwest_middleware::{Middleware, Next};

use crate::headers::HttpHeadersMut;

/// A [`reqwest_middleware`] middleware that sets the token header (`Authorization: Bearer` by
/// default) of every request from the current identity ([`jwt_relay::current`], set by
/// [`BearerLayer`](crate::BearerLayer) and by every broker consumer around its handler),
/// through the core [`Propagator`]: forwarded as-is, or exchanged for the target's audience
/// ([`PropagatorBuilder::audience_for`](jwt_relay::publish::PropagatorBuilder::audience_for), keyed by
/// the request's [`destination`]). With no current identity the request goes without the header
/// (never an empty or placeholder value); a header the caller set is left alone then.
///
/// A failed exchange fails the request, as a [`reqwest_middleware::Error::Middleware`] holding
/// the [`PublishError`](jwt_relay::PublishError), before anything is sent.
///
/// ```
/// use jwt_relay::Propagator;
/// use jwt_relay_http::PropagateIdentity;
///
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(PropagateIdentity::new(Propagator::default()))
///     .build();
/// # let _ = client;
/// ```
#[derive(Clone)]
pub struct PropagateIdentity {
    propagator: Propagator,
}

impl PropagateIdentity {
    /// Chooses tokens with `propagator`.
    pub fn new(propagator: Propagator) -> Self {
        PropagateIdentity { propagator }
    }
}

impl fmt::Debug for PropagateIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PropagateIdentity")
            .field("propagator", &self.propagator)
            .finish()
    }
}

/// The destination an HTTP request is known by to the [`Propagator`] (its per-destination
/// audiences): the URL's host, with the port when the URL names one.
///
/// ```
/// use jwt_relay_http::destination;
/// let url = "http://fraud-check.internal:8081/check".parse().unwrap();
/// assert_eq!(destination(&url), "fraud-check.internal:8081");
/// assert_eq!(destination(&"https://api.example.com/x".parse().unwrap()), "api.example.com");
/// ```
pub fn destination(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

#[async_trait::async_trait]
impl Middleware for PropagateIdentity {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        if current().is_some() {
            let destination = destination(request.url());
            let token = self
                .propagator
                .token_for(&destination, None)
                .await
                .map_err(reqwest_middleware::Error::middleware)?;
            self.propagator
                .write(&mut HttpHeadersMut(request.headers_mut()), token.as_deref())
                .map_err(reqwest_middleware::Error::middleware)?;
        }
        next.run(request, extensions).await
    }
}
