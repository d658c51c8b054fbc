//! Plain `http` is refused for key sets, discovery and the token endpoint unless the host is
//! loopback or the user opts in (`jwt_relay::dangerous`): anyone on the network path of a
//! plain HTTP fetch could swap the keys and have forged tokens accepted, or read the tokens
//! sent for exchange.
//!
//! The servers listen on 127.0.0.1. A URL naming them as `0.0.0.0` is not loopback by the
//! rule (only `127.0.0.0/8`, `::1` and `localhost` are), yet on Linux a connection to
//! `0.0.0.0` reaches this host: so each test can count the requests a refused URL did not make,
//! and see the same URL work once the user opts in.

use jwt_relay_test_support as common;
use jwt_relay_test_support::jwks_server;

use std::time::Duration;

use common::{Signer, claims, fixture};
use jwks_server::JwksServer;
use jwt_relay::exchange::{ClientAuth, ExchangeRequest, TokenExchanger as _};
use jwt_relay::testing::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DevSts, DevStsConfig};
use jwt_relay::{Error, ErrorClass, ErrorKind, Issuer, Rfc8693Client, Verifier, dangerous};

const AUD: &str = "svc";

/// The same URL with its loopback host `127.0.0.1` named as `0.0.0.0`.
fn not_loopback(url: &str) -> String {
    url.replacen("127.0.0.1", "0.0.0.0", 1)
}

fn assert_refused(e: &Error, url: &str) {
    assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
    assert_eq!(e.class(), ErrorClass::Configuration, "{e}");
    assert!(e.message().contains(url), "the error names {url}: {e}");
    assert!(e.message().contains("plain http"), "{e}");
}

fn build(issuer: Issuer) -> jwt_relay::Result<Verifier> {
    Verifier::builder().issuer(issuer).build()
}

async fn verifies(verifier: &Verifier, iss: &str) {
    let token = Signer::rsa_a().sign(&claims(iss, AUD, "alice", 300));
    let ctx = verifier.verify(&token).await.expect("the token verifies");
    assert_eq!(ctx.subject(), Some("alice"));
}

#[tokio::test]
async fn a_plain_http_key_set_url_is_refused_unless_loopback_or_allowed() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    let iss = "https://id.example.test";
    let url = not_loopback(&server.jwks_url());

    let e = build(Issuer::new(iss).audience(AUD).jwks_url(&url)).expect_err("plain http to 0.0.0.0");
    assert_refused(&e, &url);
    assert!(e.message().contains("dangerous::allow_plain_http"), "{e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.jwks_hits(), 0, "the refused URL was fetched");

    // Loopback, by address and by name.
    let by_address = build(Issuer::new(iss).audience(AUD).jwks_url(server.jwks_url())).expect("127.0.0.1");
    verifies(&by_address, iss).await;
    assert_eq!(server.jwks_hits(), 1);
    let by_name = server.jwks_url().replacen("127.0.0.1", "localhost", 1);
    let by_name = build(Issuer::new(iss).audience(AUD).jwks_url(by_name)).expect("localhost");
    verifies(&by_name, iss).await;
    assert_eq!(server.jwks_hits(), 2);

    // The user's explicit opt-in.
    let allowed = build(dangerous::allow_plain_http(
        Issuer::new(iss).audience(AUD).jwks_url(&url),
    ))
    .expect("allowed on purpose");
    verifies(&allowed, iss).await;
    assert_eq!(server.jwks_hits(), 3);
}

#[tokio::test]
async fn a_plain_http_discovery_url_is_refused_at_build() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    let issuer = not_loopback(server.base());
    let e = build(Issuer::new(&issuer).audience(AUD).discovery()).expect_err("plain http discovery");
    assert_refused(&e, &format!("{issuer}/.well-known/openid-configuration"));
    assert_eq!(server.discovery_hits(), 0);
}

#[tokio::test]
async fn a_discovered_plain_http_jwks_uri_is_refused_before_it_is_fetched() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    let iss = server.base().to_owned();
    let jwks_uri = not_loopback(&server.jwks_url());
    server.set_discovery_jwks_uri(&jwks_uri);

    let verifier = build(Issuer::new(&iss).audience(AUD).discovery()).expect("a loopback issuer");
    let token = Signer::rsa_a().sign(&claims(&iss, AUD, "alice", 300));
    let e = verifier
        .verify(&token)
        .await
        .expect_err("the jwks_uri is plain http");
    assert_refused(&e, &jwks_uri);
    assert!(e.message().contains("jwks_uri"), "{e}");
    assert_eq!(server.discovery_hits(), 1);
    assert_eq!(server.jwks_hits(), 0, "the refused jwks_uri was fetched");

    let allowed = build(dangerous::allow_plain_http(
        Issuer::new(&iss).audience(AUD).discovery(),
    ))
    .expect("allowed on purpose");
    verifies(&allowed, &iss).await;
    assert_eq!(server.jwks_hits(), 1);
}

#[tokio::test]
async fn a_plain_http_token_endpoint_is_refused_unless_loopback_or_allowed() {
    let sts = DevSts::start(DevStsConfig::default())
        .await
        .expect("the token service starts");
    let auth = || ClientAuth::ClientSecretBasic {
        client_id: DEFAULT_CLIENT_ID.into(),
        client_secret: DEFAULT_CLIENT_SECRET.into(),
    };
    let endpoint = not_loopback(&sts.token_endpoint());
    let e = Rfc8693Client::builder(&endpoint)
        .client_auth(auth())
        .build()
        .expect_err("plain http to 0.0.0.0");
    assert_refused(&e, &endpoint);
    assert!(
        e.message().contains("dangerous::allow_plain_http_token_endpoint"),
        "{e}"
    );
    assert_eq!(sts.stats().token_requests, 0);

    let user = sts.mint("alice", "orders", Duration::from_secs(60));
    let request = ExchangeRequest::new(&user).audience("billing");
    let loopback = Rfc8693Client::builder(sts.token_endpoint())
        .client_auth(auth())
        .build()
        .expect("127.0.0.1");
    loopback.exchange(&request).await.expect("exchanged on loopback");
    assert_eq!(sts.stats().token_requests, 1);

    let allowed =
        dangerous::allow_plain_http_token_endpoint(Rfc8693Client::builder(&endpoint).client_auth(auth()))
            .build()
            .expect("allowed on purpose");
    allowed.exchange(&request).await.expect("exchanged when allowed");
    assert_eq!(sts.stats().token_requests, 2);
    sts.shutdown().await;
}
