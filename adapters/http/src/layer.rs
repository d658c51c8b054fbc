//! The incoming side: a tower layer that verifies the request's bearer token before the
//! service runs, and runs it with the verified identity in scope.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use jwt_relay::{AuthContext, Error, ErrorClass, ErrorKind, Verifier};
use tower_layer::Layer;
use tower_service::Service;

use crate::headers::HttpHeaders;

/// A tower [`Layer`] (it works with axum, tonic, hyper services) that verifies every request's
/// token with the core [`Verifier`] (by default from `Authorization: Bearer`):
///
/// | the token | the answer |
/// |---|---|
/// | verifies | the inner service runs in the identity's [`scope`](jwt_relay::scope) (so what it publishes or calls carries the token on), with the [`AuthContext`] in the request's extensions |
/// | none sent | `401` with `WWW-Authenticate: Bearer` (RFC 6750 §3.1: no error code when no credentials were sent) |
/// | bad (expired, forged, wrong audience, malformed, …) | `401` with `WWW-Authenticate: Bearer error="invalid_token", error_description="<kind>"` |
/// | cannot be checked now (the key set is unreachable) | `503` with `Retry-After` |
/// | our setup is wrong | `500` |
///
/// The answers carry no body and never the token or the reason's details; the reason is logged
/// at DEBUG.
///
/// ```
/// use axum::{Router, routing::get};
/// use jwt_relay::{Algorithm, Issuer, Key, Verifier};
/// use jwt_relay_http::BearerLayer;
///
/// # fn app() -> Result<Router, jwt_relay::Error> {
/// let verifier = Verifier::builder()
///     .issuer(Issuer::new("https://id.example.com").audience("gateway")
///         .key(Key::from_secret(b"a development secret of 32+ bytes!", Algorithm::HS256)?)?)
///     .build()?;
/// let app = Router::new()
///     .route("/orders", get(|| async {
///         let who = jwt_relay::current().and_then(|c| c.subject().map(str::to_owned));
///         format!("hello {who:?}")
///     }))
///     .layer(BearerLayer::new(verifier));
/// # Ok(app)
/// # }
/// ```
#[derive(Clone)]
pub struct BearerLayer {
    verifier: Verifier,
}

impl BearerLayer {
    /// Verifies requests with `verifier` (its token header and issuers).
    pub fn new(verifier: Verifier) -> Self {
        BearerLayer { verifier }
    }
}

impl fmt::Debug for BearerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerLayer")
            .field("verifier", &self.verifier)
            .finish()
    }
}

impl<S> Layer<S> for BearerLayer {
    type Service = Bearer<S>;

    fn layer(&self, inner: S) -> Bearer<S> {
        Bearer {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service [`BearerLayer`] wraps around another.
#[derive(Clone)]
pub struct Bearer<S> {
    inner: S,
    verifier: Verifier,
}

impl<S> fmt::Debug for Bearer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bearer")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl<S, B, R> Service<Request<B>> for Bearer<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    R: Default,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this request (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let token = verifier.extract(&HttpHeaders(request.headers()));
        Box::pin(async move {
            let verified = match token {
                Ok(token) => verifier.verify(&token).await,
                Err(e) => Err(e),
            };
            match verified {
                Ok(context) => {
                    request.extensions_mut().insert::<AuthContext>(context.clone());
                    jwt_relay::scope(context, inner.call(request)).await
                }
                Err(error) => Ok(refusal(&error)),
            }
        })
    }
}

/// The answer to a request whose token did not verify.
fn refusal<R: Default>(error: &Error) -> Response<R> {
    tracing::debug!(kind = %error.kind(), class = %error.class(), "request refused: {error}");
    let mut response = Response::new(R::default());
    let headers = response.headers_mut();
    let status = match (error.class(), error.kind()) {
        (ErrorClass::Permanent, ErrorKind::Missing) => {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            StatusCode::UNAUTHORIZED
        }
        (ErrorClass::Permanent, kind) => {
            let challenge = format!(
                r#"Bearer error="invalid_token", error_description="{}""#,
                kind.as_str()
            );
            if let Ok(value) = HeaderValue::try_from(challenge) {
                headers.insert(WWW_AUTHENTICATE, value);
            }
            StatusCode::UNAUTHORIZED
        }
        (ErrorClass::Transient, _) => {
            let seconds = error.retry_after().map_or(5, |d| d.as_secs().max(1));
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    *response.status_mut() = status;
    response
}
