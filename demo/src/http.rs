//! The HTTP side: `gateway` (`POST /orders`, each order published to Kafka as the caller),
//! `fraud-check` (`GET /check`), the client billing calls it with, and the user's own client.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use jwt_relay::exchange::TokenExchanger;
use jwt_relay::{Propagator, Verifier};
use jwt_relay_http::{BearerLayer, PropagateIdentity, destination};
use jwt_relay_kafka::Publisher;
use jwt_relay_kafka::rdkafka::producer::FutureRecord;
use reqwest_middleware::ClientWithMiddleware;

use super::{Failure, Identity, Timeline};

/// Serves `app` on a free loopback port; its base URL.
pub(crate) async fn serve(app: Router) -> Result<String, Failure> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}

struct Gateway {
    producer: Publisher,
    topic: String,
    timeline: Timeline,
}

/// `POST /orders` for callers with a token for `gateway`: each order goes to `topic` carrying
/// the caller's token, which the handler never touches.
pub(crate) fn gateway(verifier: Verifier, producer: Publisher, topic: String, timeline: Timeline) -> Router {
    let state = Arc::new(Gateway {
        producer,
        topic,
        timeline,
    });
    Router::new()
        .route("/orders", post(take_order))
        .with_state(state)
        .layer(BearerLayer::new(verifier))
}

async fn take_order(State(gateway): State<Arc<Gateway>>, order: Bytes) -> StatusCode {
    let record = FutureRecord::<(), [u8]>::to(&gateway.topic).payload(&order[..]);
    match gateway.producer.send(record, None).await {
        Ok(_) => {
            if let Some(context) = jwt_relay::current() {
                let what = format!(
                    "accepted {:?} → `{}`",
                    String::from_utf8_lossy(&order),
                    gateway.topic
                );
                gateway.timeline.hop("gateway", &context, &what);
            }
            StatusCode::ACCEPTED
        }
        Err(error) => {
            tracing::warn!(%error, "the gateway could not publish an order");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// `GET /check` for callers with a token for `fraud-check`: records and answers whom it
/// checked and who acted for them.
pub(crate) fn fraud_check(verifier: Verifier, checked: Arc<Mutex<Vec<Identity>>>) -> Router {
    Router::new()
        .route(
            "/check",
            get(move || {
                let checked = checked.clone();
                async move {
                    let Some(context) = jwt_relay::current() else {
                        return String::new();
                    };
                    let identity = Identity::of(&context);
                    let answer = format!("{} acted for by {:?}", identity.subject, identity.actors);
                    checked.lock().unwrap_or_else(|p| p.into_inner()).push(identity);
                    answer
                }
            }),
        )
        .layer(BearerLayer::new(verifier))
}

/// billing's client for fraud-check: the current identity's token, exchanged for
/// fraud-check's audience (once per user token: the cache remembers it), and checked with
/// billing's verifier before it leaves.
#[derive(Clone)]
pub(crate) struct FraudCheck {
    client: ClientWithMiddleware,
    url: String,
}

pub(crate) fn client(
    exchanger: Arc<dyn TokenExchanger>,
    verifier: Verifier,
    base: &str,
) -> Result<FraudCheck, Failure> {
    let propagator = Propagator::builder()
        .exchanger(exchanger)
        .verifier(verifier)
        .audience_for(destination(&base.parse()?), "fraud-check")
        .build()?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(PropagateIdentity::new(propagator))
        .build();
    Ok(FraudCheck {
        client,
        url: format!("{base}/check"),
    })
}

impl FraudCheck {
    /// fraud-check's answer; an error (so the message is retried) unless it said 200.
    pub(crate) async fn check(&self) -> Result<String, Failure> {
        let answer = self.client.get(&self.url).send().await?.error_for_status()?;
        Ok(answer.text().await?)
    }
}

/// alice's app: `orders` orders posted to the gateway with her token.
pub(crate) async fn place_orders(gateway: &str, token: &str, orders: usize) -> Result<(), Failure> {
    let client = reqwest::Client::new();
    for n in 0..orders {
        let answer = client
            .post(format!("{gateway}/orders"))
            .bearer_auth(token)
            .body(format!("order {n}"))
            .send()
            .await?;
        if answer.status() != StatusCode::ACCEPTED {
            return Err(format!("the gateway answered order {n} with {}", answer.status()).into());
        }
    }
    Ok(())
}
