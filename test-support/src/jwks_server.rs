//! A real local HTTP server that plays an identity provider for remote key
//! set tests: it serves a JWKS at `/jwks.json` and an OIDC discovery document
//! at `/.well-known/openid-configuration`, and counts the requests to each.
//!
//! What it serves and how it behaves can be changed while a test runs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// How `/jwks.json` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 with the document and a `Content-Length`.
    Ok,
    /// 200 with the document streamed in chunks, without a `Content-Length`.
    Chunked,
    /// Waits this long, then answers as [`Mode::Ok`].
    Delay(Duration),
    /// This status, with the document as body.
    Status(StatusCode),
    /// 302 to `/real.json`, which serves the document.
    Redirect,
}

/// A running server. It stops with the test's runtime.
#[derive(Debug, Clone)]
pub struct JwksServer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    base: String,
    jwks: Mutex<Vec<u8>>,
    mode: Mutex<Mode>,
    /// The `issuer` the discovery document names (by default, this server).
    discovery_issuer: Mutex<String>,
    /// The `jwks_uri` the discovery document names (by default, this server's `/jwks.json`).
    discovery_jwks_uri: Mutex<String>,
    jwks_hits: AtomicUsize,
    discovery_hits: AtomicUsize,
    real_hits: AtomicUsize,
}

impl JwksServer {
    /// Serves `jwks` on 127.0.0.1 at a free port.
    pub async fn start(jwks: impl Into<Vec<u8>>) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let base = format!("http://{addr}");
        let shared = Arc::new(Shared {
            base: base.clone(),
            jwks: Mutex::new(jwks.into()),
            mode: Mutex::new(Mode::Ok),
            discovery_jwks_uri: Mutex::new(format!("{base}/jwks.json")),
            discovery_issuer: Mutex::new(base),
            jwks_hits: AtomicUsize::new(0),
            discovery_hits: AtomicUsize::new(0),
            real_hits: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/jwks.json", get(serve_jwks))
            .route("/real.json", get(serve_real))
            .route("/.well-known/openid-configuration", get(serve_discovery))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        JwksServer { shared }
    }

    /// `http://127.0.0.1:<port>`: the issuer for discovery tests.
    pub fn base(&self) -> &str {
        &self.shared.base
    }

    /// `http://127.0.0.1:<port>/jwks.json`.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks.json", self.shared.base)
    }

    /// Serves this document from now on.
    pub fn set_jwks(&self, jwks: impl Into<Vec<u8>>) {
        *lock(&self.shared.jwks) = jwks.into();
    }

    /// Answers `/jwks.json` this way from now on.
    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.shared.mode) = mode;
    }

    /// Makes the discovery document name this issuer.
    pub fn set_discovery_issuer(&self, issuer: impl Into<String>) {
        *lock(&self.shared.discovery_issuer) = issuer.into();
    }

    /// Makes the discovery document name this `jwks_uri`.
    pub fn set_discovery_jwks_uri(&self, uri: impl Into<String>) {
        *lock(&self.shared.discovery_jwks_uri) = uri.into();
    }

    /// Requests to `/jwks.json` so far, whatever the answer.
    pub fn jwks_hits(&self) -> usize {
        self.shared.jwks_hits.load(Ordering::SeqCst)
    }

    /// Requests to `/.well-known/openid-configuration` so far.
    pub fn discovery_hits(&self) -> usize {
        self.shared.discovery_hits.load(Ordering::SeqCst)
    }

    /// Requests to `/real.json` (the redirect target) so far.
    pub fn real_hits(&self) -> usize {
        self.shared.real_hits.load(Ordering::SeqCst)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn json(status: StatusCode, body: Body) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn serve_jwks(State(s): State<Arc<Shared>>) -> Response {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let mode = *lock(&s.mode);
    let doc = lock(&s.jwks).clone();
    match mode {
        Mode::Ok => json(StatusCode::OK, Body::from(doc)),
        Mode::Chunked => {
            // A stream has no known length, so hyper sends it chunked.
            let stream = Body::from(doc).into_data_stream();
            json(StatusCode::OK, Body::from_stream(stream))
        }
        Mode::Delay(wait) => {
            tokio::time::sleep(wait).await;
            json(StatusCode::OK, Body::from(doc))
        }
        Mode::Status(status) => json(status, Body::from(doc)),
        Mode::Redirect => (StatusCode::FOUND, [(header::LOCATION, "/real.json")]).into_response(),
    }
}

async fn serve_real(State(s): State<Arc<Shared>>) -> Response {
    s.real_hits.fetch_add(1, Ordering::SeqCst);
    json(StatusCode::OK, Body::from(lock(&s.jwks).clone()))
}

async fn serve_discovery(State(s): State<Arc<Shared>>) -> Response {
    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
    let doc = serde_json::json!({
        "issuer": *lock(&s.discovery_issuer),
        "jwks_uri": *lock(&s.discovery_jwks_uri),
    });
    json(StatusCode::OK, Body::from(doc.to_string()))
}
