//! A local JWKS endpoint that can be switched to `503 Service Unavailable`, like the root
//! crate's `tests/common/jwks_server.rs`, cut down to what the outage test needs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// A running server; it stops with the test's runtime.
#[derive(Debug, Clone)]
pub struct JwksServer {
    url: String,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    jwks: Vec<u8>,
    down: AtomicBool,
    hits: AtomicUsize,
}

impl JwksServer {
    /// Serves `jwks` at `/jwks.json` on a free local port, up or down.
    pub async fn start(jwks: Vec<u8>, down: bool) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/jwks.json", listener.local_addr().expect("address"));
        let shared = Arc::new(Shared {
            jwks,
            down: AtomicBool::new(down),
            hits: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/jwks.json", get(serve))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        JwksServer { url, shared }
    }

    /// The JWKS URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Answers 503 (`true`) or the document from now on.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Requests so far.
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }
}

async fn serve(State(shared): State<Arc<Shared>>) -> Response {
    shared.hits.fetch_add(1, Ordering::SeqCst);
    if shared.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        shared.jwks.clone(),
    )
        .into_response()
}
