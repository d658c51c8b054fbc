//! The HTTP edge over real HTTP (axum servers on loopback, reqwest clients): the layer's
//! answers to every kind of token, and a gateway calling a second service on the user's behalf,
//! with the token exchanged for that service's audience.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use jwt_relay::exchange::{ClientAuth, ExchangeCache};
use jwt_relay::testing::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DevSts, DevStsConfig};
use jwt_relay::verify::now_unix;
use jwt_relay::{Issuer, Propagator, Rfc8693Client, Verifier};
use jwt_relay_http::{BearerLayer, PropagateIdentity};
use serde_json::{Value, json};

/// Serves `app` on a free loopback port; returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn verifier(sts: &DevSts, audience: &str, jwks_url: &str) -> Verifier {
    Verifier::builder()
        .issuer(
            Issuer::new(sts.issuer())
                .audience(audience)
                .leeway(Duration::ZERO)
                .jwks_url(jwks_url),
        )
        .build()
        .unwrap()
}

/// Who the handler runs as, from the ambient identity.
async fn whoami() -> String {
    jwt_relay::current()
        .and_then(|c| c.subject().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_answers_each_token_as_rfc_6750_says() {
    let sts = DevSts::start(DevStsConfig::default()).await.unwrap();
    let app = |verifier| {
        Router::new()
            .route("/whoami", get(whoami))
            .layer(BearerLayer::new(verifier))
    };
    let base = serve(app(verifier(&sts, "gateway", &sts.jwks_url()))).await;
    // A key set nobody serves: its port was free a moment ago.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/jwks.json", listener.local_addr().unwrap())
    };
    let down = serve(app(verifier(&sts, "gateway", &closed))).await;

    let now = now_unix();
    let valid = sts.mint("alice", "gateway", Duration::from_secs(300));
    let expired = sts.mint_claims(json!({
        "iss": sts.issuer(), "aud": "gateway", "sub": "alice", "iat": now - 600, "exp": now - 60,
    }));
    let other_audience = sts.mint("alice", "payroll", Duration::from_secs(300));
    let forged = format!("{}.{}", valid.rsplit_once('.').unwrap().0, "A".repeat(86));
    let client = reqwest::Client::new();
    let get = |base: &str, authorization: Option<String>| {
        let mut request = client.get(format!("{base}/whoami"));
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            let retry_after = response.headers().get("retry-after").is_some();
            let body = response.text().await.unwrap();
            (status, challenge, retry_after, body)
        }
    };
    let bearer = |token: &str| Some(format!("Bearer {token}"));
    let invalid = |kind: &str| {
        Some(format!(
            r#"Bearer error="invalid_token", error_description="{kind}""#
        ))
    };

    assert_eq!(
        get(&base, bearer(&valid)).await,
        (200, None, false, "alice".to_owned())
    );
    assert_eq!(
        get(&base, None).await,
        (401, Some("Bearer".to_owned()), false, String::new())
    );
    for (authorization, kind) in [
        (bearer(&expired), "Expired"),
        (bearer(&forged), "BadSignature"),
        (bearer(&other_audience), "InvalidAudience"),
        (Some(format!("Basic {valid}")), "InvalidScheme"),
        (bearer("not-a-token"), "Malformed"),
    ] {
        assert_eq!(
            get(&base, authorization).await,
            (401, invalid(kind), false, String::new()),
            "{kind}"
        );
    }
    let (status, challenge, retry_after, _) = get(&down, bearer(&valid)).await;
    assert_eq!(
        (status, challenge, retry_after),
        (503, None, true),
        "keys unreachable: try later"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_calls_another_service_on_the_users_behalf() {
    let sts = DevSts::start(DevStsConfig::default()).await.unwrap();
    // fraud-check accepts only tokens for itself, and says whom it checked for and who acted.
    let fraud_check = Router::new()
        .route(
            "/check",
            get(|| async {
                let context = jwt_relay::current().unwrap();
                let actors: Vec<Option<String>> = context.actors().into_iter().map(|a| a.subject).collect();
                axum::Json(json!({ "sub": context.subject(), "actors": actors }))
            }),
        )
        .layer(BearerLayer::new(verifier(&sts, "fraud-check", &sts.jwks_url())));
    let fraud_check = serve(fraud_check).await;
    let target = jwt_relay_http::destination(&fraud_check.parse().unwrap());

    // The gateway exchanges the user's token for fraud-check's audience on the way out.
    let exchanger = Rfc8693Client::builder(sts.token_endpoint())
        .client_auth(ClientAuth::ClientSecretBasic {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
        })
        .build()
        .unwrap();
    let propagator = Propagator::builder()
        .exchanger(Arc::new(ExchangeCache::new(exchanger)))
        .verifier(verifier(&sts, "gateway", &sts.jwks_url()))
        .audience_for(target, "fraud-check")
        .build()
        .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(PropagateIdentity::new(propagator))
        .build();
    let url = format!("{fraud_check}/check");
    let gateway = Router::new()
        .route(
            "/orders",
            get(move || {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    let answer = client.get(&url).send().await.unwrap();
                    answer.text().await.unwrap()
                }
            }),
        )
        .layer(BearerLayer::new(verifier(&sts, "gateway", &sts.jwks_url())));
    let gateway = serve(gateway).await;

    let token = sts.mint("alice", "gateway", Duration::from_secs(300));
    let answer = reqwest::Client::new()
        .get(format!("{gateway}/orders"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let seen: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    assert_eq!(seen, json!({ "sub": "alice", "actors": [DEFAULT_CLIENT_ID] }));
    assert_eq!(sts.stats().exchanges_issued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_identity_no_authorization_header_is_sent() {
    // An echo of the Authorization headers a request arrived with.
    let echo = Router::new().route(
        "/echo",
        get(|headers: HeaderMap| async move {
            let values: Vec<String> = headers
                .get_all("authorization")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            axum::Json(values)
        }),
    );
    let echo = serve(echo).await;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(PropagateIdentity::new(Propagator::default()))
        .build();
    let url = format!("{echo}/echo");

    let sent: Vec<String> =
        serde_json::from_str(&client.get(&url).send().await.unwrap().text().await.unwrap()).unwrap();
    assert!(sent.is_empty(), "no header, not an empty one: {sent:?}");
    let answer = client
        .get(&url)
        .header("Authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    let sent: Vec<String> = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    assert_eq!(
        sent,
        ["Basic dXNlcjpwYXNz"],
        "the caller's own header is left alone"
    );
}
