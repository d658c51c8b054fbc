//! The development token service over real HTTP, as a client and a consumer
//! see it: discovery and keys served, exchanges verified by a `Verifier`
//! that fetches the service's JWKS, delegation chains in `act`, the expiry
//! window, client authentication (secret and `private_key_jwt`), modes and
//! counters.

#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jwt_relay::exchange::{ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE};
use jwt_relay::jsonwebtoken::{EncodingKey, Header};
use jwt_relay::testing::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_KID, DevSts, DevStsConfig, Mode};
use jwt_relay::verify::{Actor, now_unix};
use jwt_relay::{Algorithm, AuthContext, Issuer, KeySet, Verifier};
use reqwest::StatusCode;
use serde_json::{Value, json};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How a test request authenticates its client.
enum Auth<'a> {
    Basic(&'a str, &'a str),
    Post(&'a str, &'a str),
    Assertion(&'a str),
    None,
}

/// What the token endpoint answered.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn token(&self) -> &str {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        self.body["access_token"].as_str().unwrap()
    }

    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// POSTs a form with these parameters to the token endpoint.
async fn post(sts: &DevSts, auth: Auth<'_>, params: &[(&str, &str)]) -> Answer {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.extend_pairs(params);
    let mut request = reqwest::Client::new()
        .post(sts.token_endpoint())
        .header("content-type", "application/x-www-form-urlencoded");
    match auth {
        Auth::Basic(id, secret) => {
            // RFC 6749 §2.3.1: each part form-urlencoded, then Basic.
            let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                encode(id),
                encode(secret)
            ));
            request = request.header("authorization", format!("Basic {credentials}"));
        }
        Auth::Post(id, secret) => {
            form.append_pair("client_id", id)
                .append_pair("client_secret", secret);
        }
        Auth::Assertion(assertion) => {
            form.append_pair("client_assertion_type", JWT_BEARER)
                .append_pair("client_assertion", assertion);
        }
        Auth::None => {}
    }
    let response = request.body(form.finish()).send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

/// Exchanges `subject` for a token for `audience`, as the default client.
async fn exchange(sts: &DevSts, subject: &str, audience: &str) -> Answer {
    post(
        sts,
        Auth::Basic(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("audience", audience),
        ],
    )
    .await
}

/// A consumer of `audience` that trusts the service through its JWKS URL.
async fn consume(sts: &DevSts, audience: &str, token: &str) -> AuthContext {
    Verifier::builder()
        .issuer(
            Issuer::new(sts.issuer())
                .audience(audience)
                .jwks_url(sts.jwks_url()),
        )
        .build()
        .unwrap()
        .verify(token)
        .await
        .unwrap()
}

fn actor(subject: &str) -> Actor {
    Actor {
        subject: Some(subject.to_owned()),
        issuer: None,
    }
}

async fn get_json(url: String) -> Value {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn discovery_and_key_set_are_served() {
    let sts = DevSts::start(DevStsConfig::default()).await.unwrap();
    let issuer = sts.issuer();
    assert_eq!(issuer, format!("http://127.0.0.1:{}", sts.local_addr().port()));
    assert_eq!(sts.token_endpoint(), format!("{issuer}/token"));

    let doc = get_json(format!("{issuer}/.well-known/openid-configuration")).await;
    assert_eq!(doc["issuer"], issuer.as_str());
    assert_eq!(doc["jwks_uri"], sts.jwks_url().as_str());
    assert_eq!(doc["token_endpoint"], sts.token_endpoint().as_str());
    assert_eq!(doc["grant_types_supported"], json!([TOKEN_EXCHANGE]));
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "private_key_jwt"])
    );

    let jwks = get_json(sts.jwks_url()).await;
    assert!(
        jwks.to_string().find("\"d\"").is_none(),
        "no private member is published"
    );
    let keys = KeySet::from_jwks(jwks.to_string().as_bytes()).unwrap();
    let key = keys.keys().next().unwrap();
    assert_eq!(
        (keys.len(), key.kid(), key.algorithm()),
        (1, Some(DEFAULT_KID), Algorithm::ES256)
    );

    let stats = sts.stats();
    assert_eq!((stats.discovery_requests, stats.jwks_requests), (1, 1));
}

#[tokio::test]
async fn minted_tokens_verify_through_discovery() {
    let sts = DevSts::start(DevStsConfig::default()).await.unwrap();
    let token = sts.mint("alice", "orders", Duration::from_secs(60));
    let verifier = Verifier::builder()
        .issuer(Issuer::new(sts.issuer()).audience("orders").discovery())
        .build()
        .unwrap();
    let ctx = verifier.verify(&token).await.unwrap();
    assert_eq!((ctx.subject(), ctx.kid()), (Some("alice"), Some(DEFAULT_KID)));
    assert_eq!(ctx.claims().audience(), ["orders"]);
    let lifetime = ctx.claims().expires_at().unwrap() - ctx.claims().issued_at().unwrap();
    assert_eq!(lifetime, 60);
    assert!(ctx.actors().is_empty());
}

#[tokio::test]
async fn exchange_issues_a_verifiable_token_and_chains_actors() {
    let sts = DevSts::start(
        DevStsConfig::default()
            .client(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
            .client("shipping-worker", "p@ss:word"),
    )
    .await
    .unwrap();
    let user = sts.mint("alice", "orders", Duration::from_secs(60));

    let first = exchange(&sts, &user, "billing").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.header("cache-control"), Some("no-store"));
    assert_eq!(first.body["issued_token_type"], ACCESS_TOKEN_TYPE);
    assert_eq!(first.body["token_type"], "Bearer");
    assert_eq!(first.body["expires_in"], 60);
    let billing = consume(&sts, "billing", first.token()).await;
    assert_eq!(billing.subject(), Some("alice"));
    assert_eq!(billing.claims().audience(), ["billing"]);
    assert_eq!(billing.actors(), [actor(DEFAULT_CLIENT_ID)]);
    assert_eq!(billing.claims().get("client_id"), Some(&json!(DEFAULT_CLIENT_ID)));
    assert_ne!(billing.claims().token_id(), None);

    // Billing's worker passes it on to shipping: the chain grows, newest first.
    let second = post(
        &sts,
        Auth::Post("shipping-worker", "p@ss:word"),
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", first.token()),
            ("subject_token_type", JWT_TOKEN_TYPE),
            ("audience", "shipping"),
            ("audience", "audit"),
            ("scope", "ship:write"),
        ],
    )
    .await;
    let shipping = consume(&sts, "shipping", second.token()).await;
    assert_eq!(shipping.subject(), Some("alice"));
    assert_eq!(shipping.claims().audience(), ["shipping", "audit"]);
    assert_eq!(shipping.claims().get("scope"), Some(&json!("ship:write")));
    assert_eq!(
        shipping.actors(),
        [actor("shipping-worker"), actor(DEFAULT_CLIENT_ID)]
    );

    // Basic credentials with reserved characters are form-urlencoded first.
    let basic = post(
        &sts,
        Auth::Basic("shipping-worker", "p@ss:word"),
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", &user),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
        ],
    )
    .await;
    // Without `audience`, the subject's audience is kept.
    assert_eq!(
        consume(&sts, "orders", basic.token()).await.actors(),
        [actor("shipping-worker")]
    );
}

#[tokio::test]
async fn an_actor_token_names_the_actor() {
    let sts = DevSts::start(DevStsConfig::default()).await.unwrap();
    let user = sts.mint("alice", "orders", Duration::from_secs(60));
    let service = sts.mint("svc-orders", "sts", Duration::from_secs(60));
    let answer = post(
        &sts,
        Auth::Basic(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", &user),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("actor_token", &service),
            ("actor_token_type", JWT_TOKEN_TYPE),
            ("audience", "billing"),
        ],
    )
    .await;
    let ctx = consume(&sts, "billing", answer.token()).await;
    assert_eq!(ctx.actors(), [actor("svc-orders")]);

    let no_type = post(
        &sts,
        Auth::Basic(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", &user),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("actor_token", &service),
        ],
    )
    .await;
    assert_eq!(
        (no_type.status, no_type.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
}

#[tokio::test]
async fn expired_subjects_are_exchanged_only_within_the_window() {
    let sts = DevSts::start(DevStsConfig::default().accept_expired_for(Duration::from_secs(600)))
        .await
        .unwrap();
    let expired_ago = |seconds: i64| {
        sts.mint_claims(json!({
            "iss": sts.issuer(), "sub": "alice", "aud": "orders",
            "iat": now_unix() - seconds - 60, "exp": now_unix() - seconds,
        }))
    };

    let recent = expired_ago(120);
    let answer = exchange(&sts, &recent, "billing").await;
    let ctx = consume(&sts, "billing", answer.token()).await;
    assert_eq!(ctx.subject(), Some("alice"));
    assert!(ctx.claims().expires_at().unwrap() > now_unix());

    let old = expired_ago(3600);
    let refused = exchange(&sts, &old, "billing").await;
    assert_eq!(
        (refused.status, refused.error()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    let description = refused.body["error_description"].as_str().unwrap();
    assert!(description.contains("600 s"), "{description}");
    assert!(!description.contains(&old));
}

#[tokio::test]
async fn forged_and_foreign_subjects_are_invalid_grants() {
    let sts = DevSts::start(DevStsConfig::default()).await.unwrap();
    let impostor = DevSts::start(DevStsConfig::default()).await.unwrap();
    // Same issuer and kid, another key: the signature fails.
    let forged = impostor.mint_claims(json!({
        "iss": sts.issuer(), "sub": "mallory", "aud": "orders", "exp": now_unix() + 60,
    }));
    let foreign = impostor.mint("mallory", "orders", Duration::from_secs(60));
    for (token, kind) in [(&forged, "BadSignature"), (&foreign, "InvalidIssuer")] {
        let answer = exchange(&sts, token, "billing").await;
        assert_eq!(
            (answer.status, answer.error()),
            (StatusCode::BAD_REQUEST, "invalid_grant")
        );
        let description = answer.body["error_description"].as_str().unwrap();
        assert!(description.contains(kind), "{description}");
        assert!(!description.contains(token.as_str()));
        assert!(!description.contains(token.split('.').nth(2).unwrap()));
    }
    let garbage = exchange(&sts, "not.a.token", "billing").await;
    assert_eq!(garbage.error(), "invalid_grant");
    assert_eq!(sts.stats().exchanges_issued, 0);
}

#[tokio::test]
async fn bad_client_credentials_are_invalid_client() {
    let sts = DevSts::start(DevStsConfig::default()).await.unwrap();
    let user = sts.mint("alice", "orders", Duration::from_secs(60));
    let params = [
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", user.as_str()),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
    ];
    for auth in [
        Auth::Basic(DEFAULT_CLIENT_ID, "guess-7f3a"),
        Auth::Basic("nobody", DEFAULT_CLIENT_SECRET),
        Auth::Post(DEFAULT_CLIENT_ID, "guess-7f3a"),
        Auth::None,
    ] {
        let answer = post(&sts, auth, &params).await;
        assert_eq!(
            (answer.status, answer.error()),
            (StatusCode::UNAUTHORIZED, "invalid_client")
        );
        assert!(answer.header("www-authenticate").unwrap().starts_with("Basic"));
        let body = answer.body.to_string();
        assert!(
            !body.contains("guess-7f3a") && !body.contains(DEFAULT_CLIENT_SECRET),
            "{body}"
        );
    }
}

#[tokio::test]
async fn malformed_requests_are_refused_before_any_token_is_read() {
    let sts = DevSts::start(DevStsConfig::default()).await.unwrap();
    let user = sts.mint("alice", "orders", Duration::from_secs(60));
    let auth = || Auth::Basic(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET);
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("grant_type", "client_credentials")], "unsupported_grant_type"),
        (
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token_type", ACCESS_TOKEN_TYPE),
            ],
            "invalid_request",
        ),
        (
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token", &user),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:saml2"),
            ],
            "invalid_request",
        ),
        (
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token", &user),
                ("subject_token", &user),
                ("subject_token_type", ACCESS_TOKEN_TYPE),
            ],
            "invalid_request",
        ),
    ];
    for (params, error) in cases {
        let answer = post(&sts, auth(), params).await;
        assert_eq!(
            (answer.status, answer.error()),
            (StatusCode::BAD_REQUEST, error),
            "{params:?}"
        );
    }
    let json_body = reqwest::Client::new()
        .post(sts.token_endpoint())
        .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
        .header("content-type", "application/json")
        .body(json!({"grant_type": TOKEN_EXCHANGE}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), StatusCode::BAD_REQUEST);
}

/// A fresh Ed25519 client key: its public JWK and a jsonwebtoken signing key.
fn client_key(kid: &str) -> (String, EncodingKey) {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    let key = SigningKey::from_bytes(&seed);
    let public = json!({
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
    });
    let der = key.to_pkcs8_der().unwrap();
    (public.to_string(), EncodingKey::from_ed_der(der.as_bytes()))
}

fn assertion(key: &EncodingKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jwt_relay::verify::crypto_provider();
    jwt_relay::jsonwebtoken::encode(&header, claims, key).unwrap()
}

#[tokio::test]
async fn private_key_jwt_authenticates_a_client() {
    let (public_jwk, key) = client_key("worker-1");
    let sts = DevSts::start(DevStsConfig::default().client_jwk("billing-worker", public_jwk))
        .await
        .unwrap();
    let user = sts.mint("alice", "orders", Duration::from_secs(60));
    let claims = |aud: &str, jti: &str| {
        json!({
            "iss": "billing-worker", "sub": "billing-worker", "aud": aud,
            "exp": now_unix() + 60, "jti": jti,
        })
    };
    let request = |assertion: String| {
        let user = user.clone();
        let sts = &sts;
        async move {
            post(
                sts,
                Auth::Assertion(&assertion),
                &[
                    ("grant_type", TOKEN_EXCHANGE),
                    ("subject_token", &user),
                    ("subject_token_type", ACCESS_TOKEN_TYPE),
                    ("audience", "billing"),
                ],
            )
            .await
        }
    };

    let to_endpoint = assertion(&key, "worker-1", &claims(&sts.token_endpoint(), "a1"));
    let answer = request(to_endpoint.clone()).await;
    let ctx = consume(&sts, "billing", answer.token()).await;
    assert_eq!(ctx.actors(), [actor("billing-worker")]);
    // The issuer is an accepted audience too.
    let to_issuer = assertion(&key, "worker-1", &claims(&sts.issuer(), "a2"));
    assert_eq!(request(to_issuer).await.status, StatusCode::OK);

    // Replayed, for another audience, without jti, or signed by another key.
    let (_, other_key) = client_key("worker-1");
    let refused = [
        to_endpoint,
        assertion(&key, "worker-1", &claims("https://elsewhere.test", "a3")),
        assertion(
            &key,
            "worker-1",
            &json!({"iss": "billing-worker", "sub": "billing-worker",
                    "aud": sts.token_endpoint(), "exp": now_unix() + 60}),
        ),
        assertion(&other_key, "worker-1", &claims(&sts.token_endpoint(), "a4")),
    ];
    for assertion in refused {
        let answer = request(assertion).await;
        assert_eq!(
            (answer.status, answer.error()),
            (StatusCode::UNAUTHORIZED, "invalid_client")
        );
    }
    // Registering a client replaced the default one.
    let default = exchange(&sts, &user, "billing").await;
    assert_eq!(default.error(), "invalid_client");
}

#[tokio::test]
async fn modes_play_a_slow_down_or_hostile_service() {
    let sts = DevSts::start(DevStsConfig::default()).await.unwrap();
    let user = sts.mint("alice", "orders", Duration::from_secs(60));

    sts.set_mode(Mode::Unavailable {
        retry_after: Some(Duration::from_millis(1500)),
    });
    let down = exchange(&sts, &user, "billing").await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down.header("retry-after"), Some("2"));
    // Discovery and keys stay up.
    get_json(sts.jwks_url()).await;

    sts.set_mode(Mode::Unavailable { retry_after: None });
    let down = exchange(&sts, &user, "billing").await;
    assert_eq!(
        (down.status, down.header("retry-after")),
        (StatusCode::SERVICE_UNAVAILABLE, None)
    );

    sts.set_mode(Mode::RejectAll);
    let rejected = exchange(&sts, &user, "billing").await;
    assert_eq!(
        (rejected.status, rejected.error()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );

    sts.set_mode(Mode::Slow(Duration::from_millis(300)));
    let started = Instant::now();
    let slow = exchange(&sts, &user, "billing").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(slow.status, StatusCode::OK);

    sts.set_mode(Mode::Refuse {
        status: 401,
        error: Some("invalid_client"),
    });
    let refused = exchange(&sts, &user, "billing").await;
    assert_eq!(
        (refused.status, refused.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    sts.set_mode(Mode::Refuse {
        status: 403,
        error: None,
    });
    let bare = exchange(&sts, &user, "billing").await;
    assert_eq!((bare.status, &bare.body), (StatusCode::FORBIDDEN, &Value::Null));
    assert_eq!(bare.header("content-type"), Some("text/html"));

    sts.set_mode(Mode::IssueFor("mallory"));
    let swapped = exchange(&sts, &user, "billing").await;
    assert_eq!(
        consume(&sts, "billing", swapped.token()).await.subject(),
        Some("mallory")
    );

    sts.set_mode(Mode::Label {
        issued_token_type: None,
        token_type: "N_A",
    });
    let labelled = exchange(&sts, &user, "billing").await;
    assert_eq!(labelled.body["token_type"], "N_A");
    assert!(
        labelled.body.get("issued_token_type").is_none(),
        "{}",
        labelled.body
    );
    assert_eq!(
        consume(&sts, "billing", labelled.token()).await.subject(),
        Some("alice")
    );

    sts.set_mode(Mode::Normal);
    let normal = exchange(&sts, &user, "billing").await;
    assert_eq!(normal.body["token_type"], "Bearer");
    assert_eq!(normal.body["issued_token_type"], ACCESS_TOKEN_TYPE);
}

#[tokio::test]
async fn stats_count_every_request_and_every_issued_token() {
    let sts = DevSts::start(DevStsConfig::default()).await.unwrap();
    let user = sts.mint("alice", "orders", Duration::from_secs(60));
    exchange(&sts, &user, "billing").await.token();
    exchange(&sts, &user, "shipping").await.token();
    exchange(&sts, "forged", "billing").await;
    sts.set_mode(Mode::Unavailable { retry_after: None });
    exchange(&sts, &user, "billing").await;
    get_json(sts.jwks_url()).await;
    get_json(format!("{}/.well-known/openid-configuration", sts.issuer())).await;

    let stats = sts.stats();
    assert_eq!(stats.token_requests, 4);
    assert_eq!(stats.exchanges_issued, 2);
    assert_eq!((stats.jwks_requests, stats.discovery_requests), (1, 1));
    let served = get_json(format!("{}/stats", sts.issuer())).await;
    assert_eq!(
        served,
        json!({"token_requests": 4, "exchanges_issued": 2, "jwks_requests": 1, "discovery_requests": 1})
    );
}

#[tokio::test]
async fn a_configured_signing_key_is_used_with_its_kid() {
    let jwk = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/private/ec256.jwk.json"
    ))
    .unwrap();
    let config = DevStsConfig::default()
        .signing_key(jwk)
        .ttl(Duration::from_secs(300));
    assert!(!format!("{config:?}").contains("DLxB"));
    let sts = DevSts::start(config).await.unwrap();
    let jwks = get_json(sts.jwks_url()).await;
    assert_eq!(jwks["keys"][0]["kid"], "ec256");
    assert_eq!(
        jwks["keys"][0]["x"],
        "xAc3AprSCY4E_4sC-Kj8I5gWP0WpoULJ-cEyNzP5NKI"
    );

    let user = sts.mint("alice", "orders", Duration::from_secs(60));
    let answer = exchange(&sts, &user, "billing").await;
    assert_eq!(answer.body["expires_in"], 300);
    assert_eq!(
        consume(&sts, "billing", answer.token()).await.kid(),
        Some("ec256")
    );

    let bad = DevSts::start(DevStsConfig::default().signing_key(r#"{"kty":"RSA"}"#)).await;
    assert!(bad.unwrap_err().to_string().contains("P-256"));
    let bad = DevSts::start(DevStsConfig::default().client_jwk("c", r#"{"kty":"oct","k":"AAAA"}"#)).await;
    assert!(bad.is_err());
}

#[tokio::test]
async fn debug_shows_no_secret_and_shutdown_stops_serving() {
    let sts = DevSts::start(DevStsConfig::default().client("svc", "hunter2-secret"))
        .await
        .unwrap();
    let shown = format!("{sts:?}");
    assert!(shown.contains("svc") && !shown.contains("hunter2"), "{shown}");
    let url = sts.jwks_url();
    get_json(url.clone()).await;
    sts.shutdown().await;
    assert!(reqwest::get(url).await.is_err());
}

#[tokio::test]
async fn dropping_the_handle_stops_serving() {
    let sts = DevSts::start(DevStsConfig::default()).await.unwrap();
    let url = sts.jwks_url();
    drop(sts);
    // The server winds down on its own task: give it a moment.
    for _ in 0..50 {
        if reqwest::get(&url).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the service still answers after its handle was dropped");
}
