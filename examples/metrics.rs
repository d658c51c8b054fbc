//! jwt-relay's metrics in Prometheus text format: a few messages go through the in-memory
//! transport (one accepted, one forged, one without a token, one expired and exchanged), then
//! the metrics are printed, or served at `http://ADDR/metrics` with `--serve ADDR`.
//!
//! ```sh
//! cargo run --example metrics                          # print them once
//! cargo run --example metrics -- --serve 127.0.0.1:9000   # and keep serving them
//! ```
//!
//! The names and labels are in the README and in `jwt_relay::observe`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use jwt_relay::exchange::{ClientAuth, ExchangeCache};
use jwt_relay::memory::{MemoryBroker, MemoryConsumer, Received};
use jwt_relay::testing::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DevSts, DevStsConfig};
use jwt_relay::verify::now_unix;
use jwt_relay::{Exchange, Guard, Headers, Issuer, Rfc8693Client, Verifier};
use metrics_exporter_prometheus::PrometheusBuilder;

const AUD: &str = "orders";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let serve = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => None,
        [flag, addr] if flag == "--serve" => Some(addr.parse::<std::net::SocketAddr>()?),
        _ => return Err("usage: metrics [--serve ADDR]".into()),
    };
    let metrics = PrometheusBuilder::new().install_recorder()?;
    jwt_relay::observe::describe();

    // An identity provider and token service, and a consumer that exchanges expired tokens.
    let sts = DevSts::start(DevStsConfig::default()).await?;
    let verifier = Verifier::builder()
        .issuer(Issuer::new(sts.issuer()).audience(AUD).jwks_url(sts.jwks_url()))
        .build()?;
    let client = Rfc8693Client::builder(sts.token_endpoint())
        .client_auth(ClientAuth::ClientSecretBasic {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
        })
        .build()?;
    let exchange = Exchange::new(Arc::new(ExchangeCache::new(client)));
    let guard = Guard::builder(verifier).policy(exchange).build();

    let now = now_unix();
    let valid = sts.mint("alice", AUD, Duration::from_secs(300));
    let expired = sts.mint_claims(serde_json::json!({
        "iss": sts.issuer(), "aud": AUD, "sub": "bob", "iat": now - 600, "exp": now - 60,
    }));
    let forged = format!("{}.AAAA", valid.rsplit_once('.').map_or("", |(body, _)| body));
    let broker = MemoryBroker::new();
    for token in [Some(&valid), Some(&forged), None, Some(&expired)] {
        let mut headers = Headers::new();
        if let Some(token) = token {
            headers.append("Authorization", format!("Bearer {token}"));
        }
        broker.publish("orders", headers, "an order");
    }
    MemoryConsumer::new(broker, "orders", guard)
        .run_until_idle(|_: Received| async { Ok::<(), String>(()) })
        .await?;

    print!("{}", metrics.render());
    if let Some(addr) = serve {
        let app = Router::new().route("/metrics", get(move || std::future::ready(metrics.render())));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        eprintln!("serving http://{addr}/metrics (Ctrl-C stops)");
        axum::serve(listener, app).await?;
    }
    Ok(())
}
