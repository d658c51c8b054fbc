//! Token exchange over real HTTP, against the development token service:
//! the RFC 8693 client (each error class, retries, `Retry-After`, client
//! authentication), the exchange cache (one call for a burst), and the
//! `Exchange` expiry policy end to end through a `Guard`.

#![cfg(feature = "testing")]

use std::sync::Arc;
use std::time::Duration;

use jwt_relay::consume::{MessageInfo, Outcome};
use jwt_relay::exchange::{
    ClientAuth, ExchangeCache, ExchangeRequest, JWT_TOKEN_TYPE, Rfc8693ClientBuilder, TokenExchanger,
};
use jwt_relay::jsonwebtoken::EncodingKey;
use jwt_relay::testing::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DevSts, DevStsConfig, Mode};
use jwt_relay::verify::now_unix;
use jwt_relay::{
    Acceptance, Algorithm, Backoff, ErrorClass, ErrorKind, Exchange, Guard, Headers, Issuer, Rfc8693Client,
    Verifier,
};
use serde_json::{Value, json};

const EC256_PEM: &[u8] = include_bytes!("fixtures/ec256.pem");
const JWKS: &str = include_str!("fixtures/jwks.json");

async fn sts() -> Arc<DevSts> {
    Arc::new(
        DevSts::start(DevStsConfig::default())
            .await
            .expect("the token service starts"),
    )
}

/// A client of the service with the default client's secret and a short backoff.
fn client(sts: &DevSts) -> Rfc8693ClientBuilder {
    with_secret(sts, DEFAULT_CLIENT_SECRET)
}

fn with_secret(sts: &DevSts, secret: &str) -> Rfc8693ClientBuilder {
    Rfc8693Client::builder(sts.token_endpoint())
        .client_auth(ClientAuth::ClientSecretBasic {
            client_id: DEFAULT_CLIENT_ID.into(),
            client_secret: secret.into(),
        })
        .backoff(Backoff::new(Duration::from_millis(10), Duration::from_millis(50)))
}

/// A consumer of `audience` that trusts the service through its JWKS URL.
fn verifier(sts: &DevSts, audience: &str) -> Verifier {
    Verifier::builder()
        .issuer(
            Issuer::new(sts.issuer())
                .audience(audience)
                .jwks_url(sts.jwks_url()),
        )
        .build()
        .expect("verifier")
}

/// A token of `subject` for `orders` that expired a minute ago (within the
/// service's window for exchanging expired tokens).
fn expired(sts: &DevSts, subject: &str) -> String {
    let now = now_unix();
    sts.mint_claims(json!({
        "iss": sts.issuer(),
        "sub": subject,
        "aud": "orders",
        "iat": now - 600,
        "exp": now - 60,
        "jti": format!("{subject}-{now}"),
    }))
}

fn bearer(token: &str) -> Headers {
    let mut headers = Headers::new();
    headers.append("Authorization", format!("Bearer {token}"));
    headers
}

#[tokio::test]
async fn a_fresh_token_for_the_requested_audience() {
    let sts = sts().await;
    let user = sts.mint("alice", "orders", Duration::from_secs(60));
    let client = client(&sts).build().expect("client");

    let issued = client
        .exchange(&ExchangeRequest::new(user.as_str()).audience("billing"))
        .await
        .expect("exchanged");
    assert_eq!(issued.token_type, "Bearer");
    assert_eq!(issued.expires_in, Some(60));
    assert_ne!(issued.access_token, user);

    let fresh = verifier(&sts, "billing")
        .verify(&issued.access_token)
        .await
        .expect("the new token verifies for billing");
    assert_eq!(fresh.subject(), Some("alice"));
    assert_eq!(fresh.claims().get("aud"), Some(&json!("billing")));
    let actors = fresh.actors();
    assert_eq!(actors[0].subject.as_deref(), Some(DEFAULT_CLIENT_ID));

    // Discovery finds the same endpoint.
    let discovered = Rfc8693Client::discover(sts.issuer())
        .await
        .expect("discovered")
        .client_auth(ClientAuth::ClientSecretPost {
            client_id: DEFAULT_CLIENT_ID.into(),
            client_secret: DEFAULT_CLIENT_SECRET.into(),
        })
        .build()
        .expect("client");
    assert_eq!(discovered.token_endpoint(), sts.token_endpoint());
    discovered
        .exchange(&ExchangeRequest::new(user.as_str()).audience("ledger"))
        .await
        .expect("exchanged with client_secret_post");
    let stats = sts.stats();
    assert_eq!((stats.token_requests, stats.exchanges_issued), (2, 2));
}

#[tokio::test]
async fn resources_and_token_type_through_a_shared_or_boxed_exchanger() {
    let sts = sts().await;
    let user = sts.mint("alice", "orders", Duration::from_secs(60));
    // An `Arc` or a `Box` of an exchanger is an exchanger (and can be cached).
    let shared: Arc<dyn TokenExchanger> = Arc::new(client(&sts).build().expect("client"));
    let boxed: Box<dyn TokenExchanger> = Box::new(ExchangeCache::new(Arc::clone(&shared)));
    let request = ExchangeRequest::new(user.as_str())
        .audience("billing")
        .resource("https://ledger.example/")
        .requested_token_type(JWT_TOKEN_TYPE);
    for exchanger in [&shared as &dyn TokenExchanger, &boxed] {
        let issued = exchanger.exchange(&request).await.expect("exchanged");
        assert_eq!(issued.issued_token_type.as_deref(), Some(JWT_TOKEN_TYPE));
        let fresh = verifier(&sts, "https://ledger.example/")
            .verify(&issued.access_token)
            .await
            .expect("the new token verifies for the resource");
        assert_eq!(
            fresh.claims().get("aud"),
            Some(&json!(["billing", "https://ledger.example/"]))
        );
    }
    assert_eq!(sts.stats().exchanges_issued, 2);
}

#[tokio::test]
async fn a_refusal_is_permanent_and_not_retried() {
    let sts = sts().await;
    sts.set_mode(Mode::RejectAll);
    let user = sts.mint("alice", "orders", Duration::from_secs(60));
    let error = client(&sts)
        .build()
        .expect("client")
        .exchange(&ExchangeRequest::new(user.as_str()).audience("billing"))
        .await
        .expect_err("refused");
    assert_eq!(error.kind(), ErrorKind::ExchangeDenied);
    assert_eq!(error.class(), ErrorClass::Permanent);
    let message = error.to_string();
    assert!(message.contains(&sts.token_endpoint()), "{message}");
    assert!(message.contains("`invalid_grant`"), "{message}");
    assert!(!message.contains(&user), "{message}");
    assert_eq!(sts.stats().token_requests, 1);
}

#[tokio::test]
async fn a_wrong_secret_is_a_configuration_error() {
    let sts = sts().await;
    let user = sts.mint("alice", "orders", Duration::from_secs(60));
    let error = with_secret(&sts, "not-the-secret")
        .build()
        .expect("client")
        .exchange(&ExchangeRequest::new(user.as_str()).audience("billing"))
        .await
        .expect_err("unauthorized");
    assert_eq!(error.kind(), ErrorKind::ExchangeUnauthorized);
    assert_eq!(error.class(), ErrorClass::Configuration);
    let message = error.to_string();
    assert!(message.contains(&format!("`{DEFAULT_CLIENT_ID}`")), "{message}");
    assert!(!message.contains("not-the-secret"), "{message}");
    assert_eq!(sts.stats().token_requests, 1);
}

#[tokio::test]
async fn an_unavailable_service_is_retried_then_transient() {
    let sts = sts().await;
    sts.set_mode(Mode::Unavailable { retry_after: None });
    let user = sts.mint("alice", "orders", Duration::from_secs(60));
    let error = client(&sts)
        .max_attempts(4)
        .build()
        .expect("client")
        .exchange(&ExchangeRequest::new(user.as_str()).audience("billing"))
        .await
        .expect_err("unavailable");
    assert_eq!(error.kind(), ErrorKind::ExchangeUnavailable);
    assert_eq!(error.class(), ErrorClass::Transient);
    assert_eq!(error.retry_after(), None);
    assert!(error.message().contains("4 attempts"), "{error}");
    assert_eq!(sts.stats().token_requests, 4);
}

#[tokio::test]
async fn a_slow_service_times_out_as_transient() {
    let sts = sts().await;
    sts.set_mode(Mode::Slow(Duration::from_secs(2)));
    let user = sts.mint("alice", "orders", Duration::from_secs(60));
    let error = client(&sts)
        .timeout(Duration::from_millis(200))
        .max_attempts(2)
        .build()
        .expect("client")
        .exchange(&ExchangeRequest::new(user.as_str()).audience("billing"))
        .await
        .expect_err("timed out");
    assert_eq!(error.kind(), ErrorKind::ExchangeUnavailable);
    assert!(error.message().contains("no answer within 200 ms"), "{error}");
    assert_eq!(sts.stats().token_requests, 2);
}

#[tokio::test]
async fn a_service_that_comes_back_is_waited_for() {
    let sts = sts().await;
    sts.set_mode(Mode::Unavailable { retry_after: None });
    let user = sts.mint("alice", "orders", Duration::from_secs(60));
    let back = sts.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        back.set_mode(Mode::Normal);
    });
    client(&sts)
        .max_attempts(20)
        .build()
        .expect("client")
        .exchange(&ExchangeRequest::new(user.as_str()).audience("billing"))
        .await
        .expect("exchanged once the service is back");
    let stats = sts.stats();
    assert!(stats.token_requests >= 2, "{stats:?}");
    assert_eq!(stats.exchanges_issued, 1);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let sts = sts().await;
    sts.set_mode(Mode::Unavailable {
        retry_after: Some(Duration::from_secs(1)),
    });
    let user = sts.mint("alice", "orders", Duration::from_secs(60));
    let back = sts.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        back.set_mode(Mode::Normal);
    });
    // Without Retry-After, three attempts 1 ms apart would all meet the 503.
    client(&sts)
        .backoff(Backoff::new(Duration::from_millis(1), Duration::from_millis(1)))
        .max_attempts(3)
        .build()
        .expect("client")
        .exchange(&ExchangeRequest::new(user.as_str()).audience("billing"))
        .await
        .expect("the second attempt, a second later, succeeds");
    let stats = sts.stats();
    assert_eq!((stats.token_requests, stats.exchanges_issued), (2, 1));
}

#[tokio::test]
async fn a_long_retry_after_is_left_to_the_consumer() {
    let sts = sts().await;
    sts.set_mode(Mode::Unavailable {
        retry_after: Some(Duration::from_secs(120)),
    });
    let user = sts.mint("alice", "orders", Duration::from_secs(60));
    let error = client(&sts)
        .max_retry_after(Duration::from_secs(30))
        .build()
        .expect("client")
        .exchange(&ExchangeRequest::new(user.as_str()).audience("billing"))
        .await
        .expect_err("not waited in place");
    assert_eq!(error.kind(), ErrorKind::ExchangeUnavailable);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(sts.stats().token_requests, 1);
}

#[tokio::test]
async fn private_key_jwt_authenticates_the_client() {
    let jwks: Value = serde_json::from_str(JWKS).expect("jwks fixture");
    let public = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == "ec256"))
        .expect("ec256 in the fixture")
        .to_string();
    let sts = DevSts::start(DevStsConfig::default().client_jwk("relay-worker", public))
        .await
        .expect("the token service starts");
    let client = Rfc8693Client::builder(sts.token_endpoint())
        .client_auth(ClientAuth::PrivateKeyJwt {
            client_id: "relay-worker".into(),
            key: EncodingKey::from_ec_pem(EC256_PEM).expect("key"),
            alg: Algorithm::ES256,
            kid: Some("ec256".into()),
        })
        .build()
        .expect("client");
    let user = sts.mint("alice", "orders", Duration::from_secs(60));
    // Twice: the service accepts each assertion (`jti`) once.
    for audience in ["billing", "ledger"] {
        let issued = client
            .exchange(&ExchangeRequest::new(user.as_str()).audience(audience))
            .await
            .expect("exchanged");
        let fresh = verifier(&sts, audience)
            .verify(&issued.access_token)
            .await
            .expect("verifies");
        assert_eq!(fresh.actors()[0].subject.as_deref(), Some("relay-worker"));
    }
    assert_eq!(sts.stats().exchanges_issued, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_identical_exchanges_makes_one_call() {
    let sts = sts().await;
    let cache = Arc::new(ExchangeCache::new(client(&sts).build().expect("client")));
    let token = expired(&sts, "alice");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1_000 {
        let (cache, token) = (cache.clone(), token.clone());
        tasks.spawn(async move {
            let request = ExchangeRequest::new(token).audience("billing");
            cache.exchange(&request).await.map(|issued| issued.access_token)
        });
    }
    let mut tokens = std::collections::HashSet::new();
    while let Some(done) = tasks.join_next().await {
        tokens.insert(done.expect("task").expect("exchanged"));
    }
    assert_eq!(tokens.len(), 1, "all got the same token");
    let stats = sts.stats();
    assert_eq!((stats.token_requests, stats.exchanges_issued), (1, 1));

    // Later messages with the same token are served from the cache.
    cache
        .exchange(&ExchangeRequest::new(token.as_str()).audience("billing"))
        .await
        .expect("cached");
    assert_eq!(sts.stats().token_requests, 1);
}

/// A guard for `orders` whose expiry policy exchanges through a cache.
fn exchanging_guard(sts: &DevSts, client: Rfc8693Client) -> Guard {
    Guard::builder(verifier(sts, "orders"))
        .policy(Exchange::new(Arc::new(ExchangeCache::new(client))))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_exchange_policy_accepts_expired_tokens_with_a_fresh_one() {
    let sts = sts().await;
    let guard = exchanging_guard(&sts, client(&sts).build().expect("client"));
    let token = expired(&sts, "alice");

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1_000 {
        let (guard, token) = (guard.clone(), token.clone());
        tasks.spawn(async move { guard.check(&bearer(&token), &MessageInfo::new("orders")).await });
    }
    let mut fresh_tokens = std::collections::HashSet::new();
    while let Some(outcome) = tasks.join_next().await {
        match outcome.expect("task") {
            Outcome::Accept(context) => {
                assert_eq!(context.acceptance(), Acceptance::Exchanged);
                assert_eq!(context.subject(), Some("alice"));
                assert!(!context.actors().is_empty());
                assert_ne!(context.token(), token);
                fresh_tokens.insert(context.token().to_owned());
            }
            other => panic!("expected Accept, got {other:?}"),
        }
    }
    assert_eq!(fresh_tokens.len(), 1);
    assert_eq!(sts.stats().token_requests, 1);
}

#[tokio::test]
async fn the_exchange_policy_retries_rejects_and_halts_by_class() {
    let sts = sts().await;
    let guard = exchanging_guard(&sts, client(&sts).max_attempts(2).build().expect("client"));
    let info = MessageInfo::new("orders");

    sts.set_mode(Mode::Unavailable { retry_after: None });
    match guard.check(&bearer(&expired(&sts, "bob")), &info).await {
        Outcome::Retry(error, _) => assert_eq!(error.kind(), ErrorKind::ExchangeUnavailable),
        other => panic!("expected Retry, got {other:?}"),
    }

    sts.set_mode(Mode::Unavailable {
        retry_after: Some(Duration::from_secs(120)),
    });
    match guard.check(&bearer(&expired(&sts, "carol")), &info).await {
        Outcome::Retry(error, delay) => {
            assert_eq!(error.kind(), ErrorKind::ExchangeUnavailable);
            assert_eq!(delay, Duration::from_secs(120), "the service's Retry-After");
        }
        other => panic!("expected Retry, got {other:?}"),
    }

    sts.set_mode(Mode::RejectAll);
    match guard.check(&bearer(&expired(&sts, "dave")), &info).await {
        Outcome::Reject(error) => assert_eq!(error.kind(), ErrorKind::ExchangeDenied),
        other => panic!("expected Reject, got {other:?}"),
    }

    sts.set_mode(Mode::Normal);
    let misconfigured = exchanging_guard(&sts, with_secret(&sts, "wrong").build().expect("client"));
    match misconfigured.check(&bearer(&expired(&sts, "erin")), &info).await {
        Outcome::Halt(error) => assert_eq!(error.kind(), ErrorKind::ExchangeUnauthorized),
        other => panic!("expected Halt, got {other:?}"),
    }
}
