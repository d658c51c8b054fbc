//! A scripted token endpoint for the client's tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap as AxumHeaders, StatusCode as AxumStatus};
use serde_json::{Value, json};

use super::{Rfc8693Client, Rfc8693ClientBuilder};
use crate::backoff::Backoff;
use crate::exchange::ExchangeRequest;

/// One scripted answer: status, headers, body.
pub(super) type Answer = (u16, Vec<(&'static str, String)>, String);

/// A token endpoint that plays a script (the last answer repeats) and
/// records what it received.
#[derive(Default)]
pub(super) struct Script {
    answers: Vec<Answer>,
    pub(super) received: Mutex<Vec<(AxumHeaders, String)>>,
    pub(super) discovery: Mutex<Option<Value>>,
}

pub(super) async fn serve(answers: Vec<Answer>) -> (String, Arc<Script>) {
    let script = Arc::new(Script {
        answers,
        ..Script::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let app = axum::Router::new()
        .route("/token", axum::routing::post(answer))
        .route("/.well-known/openid-configuration", axum::routing::get(discovery))
        .with_state(script.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, script)
}

async fn answer(
    axum::extract::State(script): axum::extract::State<Arc<Script>>,
    headers: AxumHeaders,
    body: String,
) -> axum::response::Response {
    let n = {
        let mut received = script.received.lock().expect("lock");
        received.push((headers, body));
        received.len() - 1
    };
    let (status, headers, body) = script.answers[n.min(script.answers.len() - 1)].clone();
    let mut response = axum::response::Response::new(axum::body::Body::from(body));
    *response.status_mut() = AxumStatus::from_u16(status).expect("status");
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("header value"));
    }
    response
}

async fn discovery(axum::extract::State(script): axum::extract::State<Arc<Script>>) -> String {
    script
        .discovery
        .lock()
        .expect("lock")
        .clone()
        .unwrap_or_default()
        .to_string()
}

impl Script {
    pub(super) fn hits(&self) -> usize {
        self.received.lock().expect("lock").len()
    }
}

pub(super) fn ok() -> Answer {
    let body = json!({
        "access_token": "fresh.token.here",
        "issued_token_type": crate::exchange::ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": 300,
    });
    (
        200,
        vec![("content-type", "application/json".into())],
        body.to_string(),
    )
}

pub(super) fn oauth(status: u16, error: &str, description: &str) -> Answer {
    let body = json!({"error": error, "error_description": description});
    (status, vec![], body.to_string())
}

pub(super) fn fast(endpoint: String) -> Rfc8693ClientBuilder {
    Rfc8693Client::builder(endpoint).backoff(Backoff::new(Duration::from_millis(1), Duration::from_millis(2)))
}

pub(super) fn request() -> ExchangeRequest {
    ExchangeRequest::new("subject-token-value").audience("billing")
}
