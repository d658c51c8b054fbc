//! Remote key sets against a real local HTTP server: one fetch serves many
//! tokens, rotation is picked up (also when the key appears while the refetch
//! cooldown runs: its tokens are retried, not dead-lettered), unknown `kid`
//! storms and cold starts share one fetch, outages keep the last good set
//! serving and fail new keys as transient (and a check ahead of a message's
//! turn that found the set down is tried again in turn), a failed fetch is
//! tried again after about a second, hostile answers (slow, oversize,
//! redirect, wrong status, bad documents) make the set unavailable instead of
//! trusted, and keys that could never verify are left out while the rest of
//! the set serves.
//!
//! Every fetch count is read from the server.

use jwt_relay_test_support as common;
use jwt_relay_test_support::jwks_server;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Signer, claims, fixture, hmac_secret};
use jwks_server::{JwksServer, Mode};
use jwt_relay::consume::{MessageInfo, Outcome};
use jwt_relay::verify::{JwkOutcome, RemoteOptions, check_jwks};
use jwt_relay::{AuthContext, Error, ErrorClass, ErrorKind, Guard, Headers, Issuer, Verifier};
use serde_json::{Value, json};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

const ISS: &str = "https://id.example.test";
const AUD: &str = "svc";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A verifier trusting `iss` with the key set at `url`.
fn remote_verifier(iss: &str, url: &str, options: RemoteOptions) -> Verifier {
    Verifier::builder()
        .issuer(Issuer::new(iss).audience(AUD).jwks_url_with(url, options))
        .build()
        .expect("the verifier builds")
}

fn verifier_for(server: &JwksServer, options: RemoteOptions) -> Verifier {
    remote_verifier(ISS, &server.jwks_url(), options)
}

/// A token of `ISS` for `AUD`, valid for five minutes.
fn token(signer: &Signer, sub: &str) -> String {
    signer.sign(&claims(ISS, AUD, sub, 300))
}

/// Signed by rsa-a, but naming a `kid` no key set holds.
fn unknown_kid_token(i: usize) -> String {
    token(&Signer::rsa_a().with_kid(Some(&format!("nope-{i}"))), "mallory")
}

/// Sleeps into the next Unix second: a token minted then is issued later than any key set
/// fetched before (`iat` counts whole seconds).
async fn next_second() {
    let into_this_one = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .subsec_nanos();
    let rest = Duration::from_secs(1) - Duration::from_nanos(u64::from(into_this_one));
    tokio::time::sleep(rest + ms(10)).await;
}

fn bearer(token: &str) -> Headers {
    let mut headers = Headers::new();
    headers.append("Authorization", format!("Bearer {token}"));
    headers
}

async fn verify_err(verifier: &Verifier, token: &str) -> Error {
    match verifier.verify(token).await {
        Ok(ctx) => panic!("verified, for {:?}", ctx.subject()),
        Err(e) => e,
    }
}

fn assert_unavailable(e: &Error) {
    assert_eq!(e.kind(), ErrorKind::KeySetUnavailable, "{e}");
    assert_eq!(e.class(), ErrorClass::Transient, "{e}");
}

/// Verifies all tokens at once: each on its own task, released together.
async fn verify_concurrently(
    verifier: &Verifier,
    tokens: Vec<String>,
) -> Vec<jwt_relay::Result<AuthContext>> {
    let start = Arc::new(Barrier::new(tokens.len()));
    let mut tasks = JoinSet::new();
    for token in tokens {
        let (verifier, start) = (verifier.clone(), start.clone());
        tasks.spawn(async move {
            start.wait().await;
            verifier.verify(&token).await
        });
    }
    tasks.join_all().await
}

/// A JWKS document holding these JWKs.
fn jwks_of(keys: impl IntoIterator<Item = Value>) -> Vec<u8> {
    json!({ "keys": keys.into_iter().collect::<Vec<_>>() })
        .to_string()
        .into_bytes()
}

/// The rsa-a JWK from `jwks-rsa-a.json`.
fn rsa_a_jwk() -> Value {
    let doc: Value = serde_json::from_slice(&fixture("jwks-rsa-a.json")).expect("fixture JSON");
    doc["keys"][0].clone()
}

/// A JWK of `rsa1024.pub.pem`: too weak, so a remote set must skip it.
fn weak_rsa_jwk(kid: &str) -> Value {
    use jwt_relay::jsonwebtoken::DecodingKey;
    let key = DecodingKey::from_rsa_pem(&fixture("rsa1024.pub.pem")).expect("RSA PEM fixture");
    let der = key.try_get_as_bytes().expect("DER of the PEM key");
    let provider = jwt_relay::verify::crypto_provider();
    let (n, e) = (provider.key_utils.rsa_pub_components_from_public_key)(der).expect("n and e");
    assert_eq!(n.len(), 128, "rsa1024 has a 1024-bit modulus");
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
           "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e)})
}

// 1. Round trip.
#[tokio::test]
async fn one_fetch_serves_many_tokens() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    let verifier = verifier_for(&server, RemoteOptions::default());
    let signer = Signer::rsa_a();

    let ctx = verifier
        .verify(&token(&signer, "alice"))
        .await
        .expect("an rsa-a token verifies");
    assert_eq!(ctx.subject(), Some("alice"));
    assert_eq!(ctx.kid(), Some("rsa-a"));
    assert_eq!(server.jwks_hits(), 1);

    for i in 0..100 {
        let sub = format!("user-{i}");
        let ctx = verifier
            .verify(&token(&signer, &sub))
            .await
            .expect("a fresh rsa-a token verifies");
        assert_eq!(ctx.subject(), Some(sub.as_str()));
    }
    assert_eq!(server.jwks_hits(), 1, "101 tokens, one fetch");
}

// 2. Rotation.
#[tokio::test]
async fn a_rotated_key_is_picked_up_after_the_cooldown() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    let verifier = verifier_for(&server, RemoteOptions::default().cooldown(ms(50)));
    verifier
        .verify(&token(&Signer::rsa_a(), "alice"))
        .await
        .expect("an rsa-a token verifies");
    assert_eq!(server.jwks_hits(), 1);

    server.set_jwks(fixture("jwks-rotated.json"));
    tokio::time::sleep(ms(100)).await;
    let ctx = verifier
        .verify(&token(&Signer::rsa_b(), "bob"))
        .await
        .expect("the new key rsa-b is fetched and verifies");
    assert_eq!(ctx.subject(), Some("bob"));
    assert_eq!(ctx.kid(), Some("rsa-b"));
    assert_eq!(ctx.algorithm(), jwt_relay::Algorithm::PS256);
    assert_eq!(server.jwks_hits(), 2);

    verifier
        .verify(&token(&Signer::rsa_a(), "carol"))
        .await
        .expect("rsa-a still verifies after the rotation");
    assert_eq!(server.jwks_hits(), 2);
}

// 3. Unknown-kid storm on a warm verifier, default 30 s cooldown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_storm_costs_at_most_one_fetch() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    let verifier = verifier_for(&server, RemoteOptions::default());
    // Issued before the set is fetched, as a backlog waiting for a consumer: the set in use is
    // newer than these tokens, so their kids are unknown for good at once.
    let tokens = (0..1000).map(unknown_kid_token).collect();
    verifier
        .verify(&token(&Signer::rsa_a(), "alice"))
        .await
        .expect("an rsa-a token verifies");
    assert_eq!(server.jwks_hits(), 1);

    let results = verify_concurrently(&verifier, tokens).await;
    assert_eq!(results.len(), 1000);
    for result in results {
        let e = result.expect_err("a token naming an unknown kid fails");
        assert_eq!(e.kind(), ErrorKind::UnknownKeyId, "{e}");
        assert_eq!(e.class(), ErrorClass::Permanent, "{e}");
        assert!(e.message().contains("`nope-"), "{e}");
    }
    let hits = server.jwks_hits();
    assert!(hits <= 2, "1000 unknown kids caused {} fetches", hits - 1);

    verifier
        .verify(&token(&Signer::rsa_a(), "bob"))
        .await
        .expect("rsa-a still verifies after the storm");
    assert_eq!(server.jwks_hits(), hits);
}

// 3b. Cold storm: the first fetch is slow, and every caller waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_storm_shares_one_fetch() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    server.set_mode(Mode::Delay(ms(200)));
    let verifier = verifier_for(&server, RemoteOptions::default());
    let signer = Signer::rsa_a();

    let tokens = (0..1000).map(|i| token(&signer, &format!("user-{i}"))).collect();
    let results = verify_concurrently(&verifier, tokens).await;
    assert_eq!(results.len(), 1000);
    for result in results {
        let ctx = result.expect("every first verification succeeds");
        assert!(ctx.subject().is_some_and(|s| s.starts_with("user-")));
    }
    assert_eq!(server.jwks_hits(), 1, "1000 cold verifications, one fetch");
}

// 4. Outage: the last good set serves; a new kid is transient, never unknown.
#[tokio::test]
async fn during_an_outage_known_keys_serve_and_new_keys_are_transient() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    let options = RemoteOptions::default().max_age(ms(100)).cooldown(ms(50));
    let verifier = verifier_for(&server, options);
    verifier
        .verify(&token(&Signer::rsa_a(), "alice"))
        .await
        .expect("an rsa-a token verifies");
    assert_eq!(server.jwks_hits(), 1);

    server.set_mode(Mode::Status(StatusCode::SERVICE_UNAVAILABLE));
    let rsa_b_token = token(&Signer::rsa_b(), "bob");
    for round in 0..3 {
        // Past max_age and cooldown: every round tries the endpoint again.
        tokio::time::sleep(ms(150)).await;
        let sub = format!("round-{round}");
        let ctx = verifier
            .verify(&token(&Signer::rsa_a(), &sub))
            .await
            .expect("the last good set keeps serving rsa-a");
        assert_eq!(ctx.subject(), Some(sub.as_str()));
        let e = verify_err(&verifier, &rsa_b_token).await;
        assert_unavailable(&e);
        assert!(e.message().contains("`rsa-b`"), "{e}");
        assert!(e.message().contains("503"), "{e}");
    }
    let during = server.jwks_hits();
    assert!(
        during >= 4,
        "the endpoint was retried while down ({during} fetches)"
    );

    server.set_jwks(fixture("jwks-rotated.json"));
    server.set_mode(Mode::Ok);
    tokio::time::sleep(ms(150)).await;
    let ctx = verifier
        .verify(&rsa_b_token)
        .await
        .expect("after recovery the retried rsa-b token verifies");
    assert_eq!(ctx.subject(), Some("bob"));
    assert_eq!(server.jwks_hits(), during + 1);
}

// 4b. Cold start during an outage: one fetch, and every caller is told to retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_during_an_outage_shares_one_failed_fetch() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    server.set_mode(Mode::Status(StatusCode::SERVICE_UNAVAILABLE));
    let verifier = verifier_for(&server, RemoteOptions::default());
    let signer = Signer::rsa_a();

    let tokens = (0..200).map(|i| token(&signer, &format!("user-{i}"))).collect();
    for result in verify_concurrently(&verifier, tokens).await {
        assert_unavailable(&result.expect_err("no key set yet"));
    }
    assert_eq!(
        server.jwks_hits(),
        1,
        "200 cold verifications during an outage, one fetch"
    );
}

// 4d. A check ahead of the message's turn that found the key set down is not the turn's verdict:
// the turn tries the key set again (it may be back by then).
#[tokio::test]
async fn a_check_ahead_that_found_the_key_set_down_is_tried_again_in_turn() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    server.set_mode(Mode::Status(StatusCode::SERVICE_UNAVAILABLE));
    let verifier = verifier_for(&server, RemoteOptions::default().cooldown(Duration::ZERO));
    let alice = token(&Signer::rsa_a(), "alice");
    let mut headers = jwt_relay::Headers::new();
    headers.append("Authorization", format!("Bearer {alice}"));
    assert!(verifier.verify_ahead(&headers), "started");
    // In turn, while the check ahead runs (this test's runtime has one thread): it waits for it,
    // then fetches again itself.
    assert_unavailable(&verify_err(&verifier, &alice).await);
    assert_eq!(server.jwks_hits(), 2, "one fetch ahead, one in turn");

    server.set_mode(Mode::Ok);
    let ctx = verifier.verify(&alice).await.expect("the key set is back");
    assert_eq!(ctx.subject(), Some("alice"));
}

// 4c. Outage where the endpoint hangs instead of refusing: the last good set
// must keep serving without waiting for the refresh to time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_refresh_does_not_hold_up_known_keys() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    let options = RemoteOptions::default()
        .max_age(ms(100))
        .cooldown(ms(100))
        .timeout(Duration::from_secs(3));
    let verifier = verifier_for(&server, options);
    let signer = Signer::rsa_a();
    verifier
        .verify(&token(&signer, "alice"))
        .await
        .expect("an rsa-a token verifies");

    server.set_mode(Mode::Delay(Duration::from_secs(30)));
    tokio::time::sleep(ms(150)).await;
    // The set is stale now: this verification starts a refresh that hangs.
    let first = tokio::spawn({
        let (verifier, token) = (verifier.clone(), token(&signer, "bob"));
        async move { verifier.verify(&token).await.map(|_| ()) }
    });
    let refreshing = async {
        while server.jwks_hits() < 2 {
            tokio::time::sleep(ms(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), refreshing)
        .await
        .expect("the stale set is refreshed");

    let started = Instant::now();
    let result =
        tokio::time::timeout(Duration::from_secs(1), verifier.verify(&token(&signer, "carol"))).await;
    let waited = started.elapsed();
    let ctx = result
        .unwrap_or_else(|_| panic!("a known key waited {waited:?} for the hanging refresh"))
        .expect("the last good set serves rsa-a");
    assert_eq!(ctx.subject(), Some("carol"));
    first
        .await
        .expect("the first verification does not panic")
        .expect("the first verification is served by the last good set too");
}

// 5. Timeout.
#[tokio::test]
async fn a_slow_endpoint_times_out_as_transient() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    server.set_mode(Mode::Delay(Duration::from_secs(30)));
    let verifier = verifier_for(&server, RemoteOptions::default().timeout(ms(200)));

    let result = tokio::time::timeout(
        Duration::from_secs(5),
        verifier.verify(&token(&Signer::rsa_a(), "alice")),
    )
    .await
    .expect("verification returns soon after the 200 ms fetch timeout");
    let e = result.expect_err("no key set, no verification");
    assert_unavailable(&e);
    assert_eq!(server.jwks_hits(), 1);
}

// 6. Oversize body, with and without Content-Length.
#[tokio::test]
async fn an_oversize_key_set_is_refused_with_or_without_content_length() {
    let mut doc: Value = serde_json::from_slice(&fixture("jwks-rsa-a.json")).expect("JSON");
    doc["padding"] = Value::String("x".repeat(4096));
    let padded = doc.to_string().into_bytes();
    assert!(padded.len() > 4096);
    let server = JwksServer::start(padded).await;
    let small = || RemoteOptions::default().max_body(1024);

    for mode in [Mode::Ok, Mode::Chunked] {
        server.set_mode(mode);
        let verifier = verifier_for(&server, small());
        let e = verify_err(&verifier, &token(&Signer::rsa_a(), "alice")).await;
        assert_unavailable(&e);
        assert!(e.message().contains("larger than 1024 bytes"), "{mode:?}: {e}");
    }

    // The chunked answer really has no length, and the padded document is
    // otherwise fine: the size alone is refused.
    let response = reqwest::get(server.jwks_url()).await.expect("GET");
    assert_eq!(response.content_length(), None);
    let roomy = verifier_for(&server, RemoteOptions::default().max_body(8192));
    roomy
        .verify(&token(&Signer::rsa_a(), "alice"))
        .await
        .expect("the padded set verifies under a larger limit");
}

// 7. Redirects are not followed.
#[tokio::test]
async fn a_redirect_is_not_followed() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    server.set_mode(Mode::Redirect);
    let verifier = verifier_for(&server, RemoteOptions::default());

    let e = verify_err(&verifier, &token(&Signer::rsa_a(), "alice")).await;
    assert_unavailable(&e);
    assert!(e.message().contains("302"), "{e}");
    assert_eq!(server.jwks_hits(), 1);
    assert_eq!(server.real_hits(), 0, "the redirect target was fetched");
}

// 8. Discovery.
#[tokio::test]
async fn discovery_finds_the_key_set_once() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    let iss = server.base().to_owned();
    let verifier = Verifier::builder()
        .issuer(
            Issuer::new(&iss)
                .audience(AUD)
                .discovery_with(RemoteOptions::default()),
        )
        .build()
        .expect("the verifier builds");
    let signer = Signer::rsa_a();

    for i in 0..10 {
        let sub = format!("user-{i}");
        let ctx = verifier
            .verify(&signer.sign(&claims(&iss, AUD, &sub, 300)))
            .await
            .expect("a token of the discovered issuer verifies");
        assert_eq!(ctx.issuer(), iss);
        assert_eq!(ctx.subject(), Some(sub.as_str()));
    }
    assert_eq!(server.discovery_hits(), 1);
    assert_eq!(server.jwks_hits(), 1);
}

#[tokio::test]
async fn a_discovery_document_of_another_issuer_is_a_configuration_error() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    server.set_discovery_issuer("https://someone-else.example");
    let iss = server.base().to_owned();
    let verifier = Verifier::builder()
        .issuer(Issuer::new(&iss).audience(AUD).discovery())
        .build()
        .expect("the verifier builds");

    let e = verify_err(&verifier, &Signer::rsa_a().sign(&claims(&iss, AUD, "alice", 300))).await;
    assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
    assert_eq!(e.class(), ErrorClass::Configuration, "{e}");
    assert!(e.message().contains("another issuer"), "{e}");
    assert_eq!(server.discovery_hits(), 1);
    assert_eq!(
        server.jwks_hits(),
        0,
        "the keys of a mismatched issuer were fetched"
    );
}

// 9. Only 200 is accepted, even with a valid document as body.
#[tokio::test]
async fn statuses_other_than_200_are_transient() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    for status in [
        StatusCode::NOT_FOUND,
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::CREATED,
    ] {
        server.set_mode(Mode::Status(status));
        let verifier = verifier_for(&server, RemoteOptions::default());
        let e = verify_err(&verifier, &token(&Signer::rsa_a(), "alice")).await;
        assert_unavailable(&e);
        assert!(e.message().contains(status.as_str()), "{status}: {e}");
    }
    assert_eq!(server.jwks_hits(), 3);
}

// 10. Bad documents.
#[tokio::test]
async fn a_key_set_with_a_duplicate_kid_is_unusable() {
    let server = JwksServer::start(jwks_of([rsa_a_jwk(), rsa_a_jwk()])).await;
    let verifier = verifier_for(&server, RemoteOptions::default());

    let e = verify_err(&verifier, &token(&Signer::rsa_a(), "alice")).await;
    assert_unavailable(&e);
    assert!(e.message().contains("`rsa-a` appears twice"), "{e}");
    assert_eq!(server.jwks_hits(), 1);
}

#[tokio::test]
async fn refused_keys_are_skipped_and_the_rest_of_the_set_serves() {
    let secret = hmac_secret("hs256.secret");
    let oct = json!({"kty": "oct", "kid": "hmac", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(&secret)});
    let server = JwksServer::start(jwks_of([oct, weak_rsa_jwk("rsa-weak"), rsa_a_jwk()])).await;
    let verifier = verifier_for(&server, RemoteOptions::default());
    // Issued before the set is fetched (so an unknown kid is final at once).
    let refused = [
        (token(&Signer::hs256().with_kid(Some("hmac")), "mallory"), "hmac"),
        (
            token(&Signer::rsa_a().with_kid(Some("rsa-weak")), "mallory"),
            "rsa-weak",
        ),
    ];

    let ctx = verifier
        .verify(&token(&Signer::rsa_a(), "alice"))
        .await
        .expect("rsa-a verifies beside the refused keys");
    assert_eq!(ctx.subject(), Some("alice"));

    // The refused keys are not in the set: their kids are unknown.
    for (token, kid) in refused {
        let e = verify_err(&verifier, &token).await;
        assert_eq!(e.kind(), ErrorKind::UnknownKeyId, "{kid}: {e}");
    }
    assert_eq!(server.jwks_hits(), 1);
}

// 11. The verified-token cache does not outlive `exp`.
#[tokio::test]
async fn a_cached_token_still_expires_on_time() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    let verifier = verifier_for(&server, RemoteOptions::default());
    let short = Signer::rsa_a().sign(&claims(ISS, AUD, "alice", 2));
    let now = SystemTime::now();

    let ctx = verifier.verify_at(&short, now).await.expect("valid now");
    assert_eq!(ctx.subject(), Some("alice"));
    let e = match verifier.verify_at(&short, now + Duration::from_secs(60)).await {
        Ok(_) => panic!("a token past exp (and leeway) verified from the cache"),
        Err(e) => e,
    };
    assert_eq!(e.kind(), ErrorKind::Expired, "{e}");
    assert_eq!(e.expired_context().and_then(AuthContext::subject), Some("alice"));
    assert_eq!(server.jwks_hits(), 1);
}

// 12. Keys that could never verify are left out, each with its reason, and the rest serves.
#[tokio::test]
async fn keys_that_could_never_verify_are_left_out_with_their_reason() {
    let fixture_jwk = |kid: &str| -> Value {
        let doc: Value = serde_json::from_slice(&fixture("jwks.json")).expect("fixture JSON");
        let keys = doc["keys"].as_array().expect("keys");
        keys.iter()
            .find(|k| k["kid"] == kid)
            .expect("fixture kid")
            .clone()
    };
    let with = |mut jwk: Value, kid: &str, member: &str, value: &str| {
        jwk["kid"] = json!(kid);
        jwk[member] = json!(value);
        jwk
    };
    // The fixture P-256 point with one bit of y flipped: off the curve.
    let mut off_curve_y = URL_SAFE_NO_PAD
        .decode(fixture_jwk("ec256")["y"].as_str().expect("y"))
        .expect("base64url");
    off_curve_y[31] ^= 1;
    let doc = jwks_of([
        with(rsa_a_jwk(), "rsa-e1", "e", "AQ"),
        with(rsa_a_jwk(), "rsa-e-even", "e", "AQAA"),
        weak_rsa_jwk("rsa-weak"),
        with(
            fixture_jwk("ec256"),
            "ec-off",
            "y",
            &URL_SAFE_NO_PAD.encode(off_curve_y),
        ),
        // y = 0: a point of order 4.
        with(
            fixture_jwk("ed25519"),
            "ed-small",
            "x",
            &URL_SAFE_NO_PAD.encode([0u8; 32]),
        ),
        // y = 2: no point of the curve.
        with(
            fixture_jwk("ed25519"),
            "ed-none",
            "x",
            &URL_SAFE_NO_PAD.encode([2u8].iter().chain(&[0u8; 31]).copied().collect::<Vec<_>>()),
        ),
        rsa_a_jwk(),
    ]);
    let expected = [
        ("rsa-e1", "exponent 1;"),
        ("rsa-e-even", "exponent 65536;"),
        ("rsa-weak", "1024 bits"),
        ("ec-off", "not on the curve P-256"),
        ("ed-small", "small-order"),
        ("ed-none", "not a point"),
    ];
    // What `jwt-relay jwks check` prints.
    let checks = check_jwks(&doc, true).expect("a JWKS");
    for (check, (kid, why)) in checks.iter().zip(expected) {
        assert_eq!(check.kid.as_deref(), Some(kid));
        assert!(
            matches!(&check.outcome, JwkOutcome::Rejected(reason) if reason.contains(why)),
            "{kid}: {:?}",
            check.outcome
        );
    }
    assert_eq!(
        checks[6].outcome,
        JwkOutcome::Accepted(jwt_relay::Algorithm::RS256)
    );

    // Tokens naming the refused keys, minted before the set is fetched.
    let named = |signer: Signer, kid: &str| token(&signer.with_kid(Some(kid)), "mallory");
    let refused = [
        named(Signer::rsa_a(), "rsa-e1"),
        named(Signer::rsa_a(), "rsa-e-even"),
        named(Signer::rsa_a(), "rsa-weak"),
        named(Signer::ec256(), "ec-off"),
        named(Signer::ed25519(), "ed-small"),
        named(Signer::ed25519(), "ed-none"),
    ];
    let server = JwksServer::start(doc).await;
    let verifier = verifier_for(&server, RemoteOptions::default());
    let ctx = verifier
        .verify(&token(&Signer::rsa_a(), "alice"))
        .await
        .expect("rsa-a verifies beside the refused keys");
    assert_eq!(ctx.subject(), Some("alice"));
    for (token, (kid, _)) in refused.iter().zip(expected) {
        // Not a bad signature, and never a halt (a key the backend cannot use would be one):
        // the key is not in the set.
        let e = verify_err(&verifier, token).await;
        assert_eq!(e.kind(), ErrorKind::UnknownKeyId, "{kid}: {e}");
        assert_eq!(e.class(), ErrorClass::Permanent, "{kid}: {e}");
        assert!(e.message().contains(&format!("`{kid}`")), "{e}");
    }
    assert_eq!(server.jwks_hits(), 1);
}

// 13. RFC 7517 §4.5: an encryption key may carry the `kid` of a signature key.
#[tokio::test]
async fn an_encryption_key_sharing_a_kid_leaves_the_signature_key_usable() {
    let doc: Value = serde_json::from_slice(&fixture("jwks.json")).expect("fixture JSON");
    let mut enc = doc["keys"][1].clone();
    enc["kid"] = json!("rsa-a");
    enc["use"] = json!("enc");
    enc["alg"] = json!("RSA-OAEP-256");
    let mut wrapping = enc.clone();
    wrapping.as_object_mut().expect("an object").remove("use");
    wrapping["key_ops"] = json!(["wrapKey", "unwrapKey"]);
    let server = JwksServer::start(jwks_of([enc, rsa_a_jwk(), wrapping])).await;
    let verifier = verifier_for(&server, RemoteOptions::default());

    let ctx = verifier
        .verify(&token(&Signer::rsa_a(), "alice"))
        .await
        .expect("the signature key rsa-a verifies beside encryption keys of its kid");
    assert_eq!(ctx.subject(), Some("alice"));
    assert_eq!(ctx.kid(), Some("rsa-a"));
    let body = reqwest::get(server.jwks_url())
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("body");
    let outcomes: Vec<_> = check_jwks(&body, true)
        .expect("a usable set")
        .into_iter()
        .map(|c| c.outcome)
        .collect();
    assert!(matches!(outcomes[0], JwkOutcome::Skipped(_)), "{outcomes:?}");
    assert_eq!(outcomes[1], JwkOutcome::Accepted(jwt_relay::Algorithm::RS256));
    assert!(matches!(outcomes[2], JwkOutcome::Skipped(_)), "{outcomes:?}");
}

// 14. Rotation during the cooldown: a forged token with a random kid made the set be fetched
// (and started the cooldown); the issuer then rotates a key in and signs with it. Its tokens
// are retried once the cooldown ends, and verify then.
#[tokio::test]
async fn a_key_rotated_in_during_the_cooldown_is_retried_and_then_verifies() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    let cooldown = Duration::from_secs(3);
    let guard = Guard::new(verifier_for(&server, RemoteOptions::default().cooldown(cooldown)));
    let info = MessageInfo::new("orders");

    match guard.check(&bearer(&unknown_kid_token(0)), &info).await {
        Outcome::Reject(e) => assert_eq!(e.kind(), ErrorKind::UnknownKeyId, "{e}"),
        other => panic!("a forged kid older than the set is dead-lettered, not {other:?}"),
    }
    let fetched = Instant::now();
    assert_eq!(server.jwks_hits(), 1);

    server.set_jwks(fixture("jwks-rotated.json"));
    next_second().await;
    let bob = bearer(&token(&Signer::rsa_b(), "bob"));
    let remaining = cooldown.saturating_sub(fetched.elapsed());
    let delay = match guard.check(&bob, &info).await {
        Outcome::Retry(e, delay) => {
            assert_unavailable(&e);
            assert!(e.message().contains("`rsa-b`"), "{e}");
            assert!(e.message().contains("rotated in"), "{e}");
            assert_eq!(e.retry_after(), Some(delay));
            delay
        }
        other => panic!("a token of a key rotated in during the cooldown is retried, not {other:?}"),
    };
    assert!(
        delay <= remaining && delay >= remaining.saturating_sub(ms(500)),
        "retried in {delay:?}, when the cooldown ends in {remaining:?}"
    );
    assert_eq!(server.jwks_hits(), 1, "no fetch during the cooldown");

    tokio::time::sleep(delay).await;
    match guard.check(&bob, &info).await {
        Outcome::Accept(ctx) => {
            assert_eq!(ctx.subject(), Some("bob"));
            assert_eq!(ctx.kid(), Some("rsa-b"));
        }
        other => panic!("after the cooldown the rotated key verifies, not {other:?}"),
    }
    assert_eq!(server.jwks_hits(), 2);
}

// 15. A storm of random kids newer than the set: all are retried, none costs a fetch during
// the cooldown; once it ends, one fetch decides them all, and they are dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_kids_newer_than_the_set_wait_for_one_fetch_then_are_final() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    let cooldown = Duration::from_secs(5);
    let verifier = verifier_for(&server, RemoteOptions::default().cooldown(cooldown));
    verifier
        .verify(&token(&Signer::rsa_a(), "alice"))
        .await
        .expect("an rsa-a token verifies");
    assert_eq!(server.jwks_hits(), 1);

    next_second().await;
    let tokens: Vec<String> = (0..200).map(unknown_kid_token).collect();
    let mut longest = Duration::ZERO;
    for result in verify_concurrently(&verifier, tokens.clone()).await {
        let e = result.expect_err("an unknown kid fails");
        assert_unavailable(&e);
        let wait = e.retry_after().expect("says when to retry");
        assert!(wait <= cooldown, "{wait:?}");
        longest = longest.max(wait);
    }
    assert_eq!(
        server.jwks_hits(),
        1,
        "200 new kids during the cooldown, no fetch"
    );

    tokio::time::sleep(longest).await;
    for result in verify_concurrently(&verifier, tokens).await {
        let e = result.expect_err("still unknown");
        assert_eq!(e.kind(), ErrorKind::UnknownKeyId, "{e}");
        assert_eq!(e.class(), ErrorClass::Permanent, "{e}");
    }
    assert_eq!(server.jwks_hits(), 2, "one fetch decided all 200");
}

// 15b. An `iat` in the future buys a forged kid no more than the leeway: one beyond it is
// final at once, one within it is final once a fetch is newer than it.
#[tokio::test]
async fn a_random_kid_with_a_future_iat_is_final_within_leeway_and_cooldown() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    let (leeway, cooldown) = (Duration::from_secs(2), Duration::from_secs(1));
    let verifier = Verifier::builder()
        .issuer(
            Issuer::new(ISS)
                .audience(AUD)
                .leeway(leeway)
                .jwks_url_with(server.jwks_url(), RemoteOptions::default().cooldown(cooldown)),
        )
        .build()
        .expect("the verifier builds");
    verifier
        .verify(&token(&Signer::rsa_a(), "alice"))
        .await
        .expect("an rsa-a token verifies");
    let forged = |iat_ahead: i64| {
        let mut claims = claims(ISS, AUD, "mallory", 300);
        claims["iat"] = json!(claims["iat"].as_i64().expect("iat") + iat_ahead);
        Signer::rsa_a().with_kid(Some("nope")).sign(&claims)
    };

    let beyond = verify_err(&verifier, &forged(5)).await;
    assert_eq!(beyond.kind(), ErrorKind::UnknownKeyId, "{beyond}");

    let within = forged(2);
    let started = Instant::now();
    let mut retries = 0;
    let e = loop {
        let e = verify_err(&verifier, &within).await;
        if e.kind() != ErrorKind::KeySetUnavailable {
            break e;
        }
        retries += 1;
        tokio::time::sleep(e.retry_after().expect("says when to retry")).await;
    };
    assert_eq!(e.kind(), ErrorKind::UnknownKeyId, "{e}");
    assert!(retries >= 1, "a kid newer than the set is retried first");
    let bound = leeway + cooldown + Duration::from_secs(1);
    assert!(started.elapsed() <= bound, "final after {:?}", started.elapsed());
}

// 16. A key-set endpoint down at start: the failed fetch is tried again after about a second,
// then after 2 s, 4 s, ... (at most the cooldown), not only once the 30 s cooldown ends.
#[tokio::test]
async fn a_failed_fetch_is_tried_again_after_a_second_not_the_cooldown() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    server.set_mode(Mode::Status(StatusCode::SERVICE_UNAVAILABLE));
    let verifier = verifier_for(&server, RemoteOptions::default());
    let alice = token(&Signer::rsa_a(), "alice");

    assert_unavailable(&verify_err(&verifier, &alice).await);
    assert_eq!(server.jwks_hits(), 1);
    // Down again at the first retry, one second later; the next waits two.
    tokio::time::sleep(ms(1050)).await;
    assert_unavailable(&verify_err(&verifier, &alice).await);
    assert_eq!(server.jwks_hits(), 2);

    server.set_mode(Mode::Ok);
    tokio::time::sleep(ms(1050)).await;
    assert_unavailable(&verify_err(&verifier, &alice).await);
    assert_eq!(server.jwks_hits(), 2, "two failures in a row wait 2 s");
    tokio::time::sleep(ms(1000)).await;
    let ctx = verifier.verify(&alice).await.expect("the key set is back");
    assert_eq!(ctx.subject(), Some("alice"));
    assert_eq!(server.jwks_hits(), 3);
}
