//! Every expiry policy's decision table, through `Guard::check`: the only
//! entry point adapters use. Each row is a token, a publish time and a
//! policy, and the outcome a consumer acts on.
//!
//! Tokens are signed with the Ed25519 fixture; "expired" tokens are expired
//! well past the issuer's leeway unless a row is about the leeway itself.

use jwt_relay_test_support as common;
use jwt_relay_test_support::jwks_server;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use common::{Signer, claims, fixture, now};
use jwks_server::{JwksServer, Mode};
use jwt_relay::consume::{ExpiredToken, ExpiryPolicy, GuardBuilder, MessageInfo, Outcome, PublishTime};
use jwt_relay::exchange::{ACCESS_TOKEN_TYPE, ExchangeRequest, IssuedToken, TokenExchanger};
use jwt_relay::verify::RemoteOptions;
use jwt_relay::{
    Acceptance, Algorithm, Backoff, Error, ErrorClass, ErrorKind, Exchange, Grace, Guard, Headers, Issuer,
    Key, Verifier,
};
use serde_json::Value;

const ISS: &str = "https://id.example.test";
const OTHER_ISS: &str = "https://partner.example.test";
const AUD: &str = "billing";
const DEST: &str = "orders";

// ---------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------

fn ed25519_issuer(leeway: Duration) -> Issuer {
    let key = Key::from_pem(&fixture("ed25519.pub.pem"), Algorithm::EdDSA)
        .expect("Ed25519 fixture")
        .with_kid("ed25519");
    Issuer::new(ISS)
        .audience(AUD)
        .leeway(leeway)
        .key(key)
        .expect("one key")
}

/// `ISS` (Ed25519, 30 s leeway) and `OTHER_ISS` (P-256).
fn verifier() -> Verifier {
    verifier_with_leeway(Duration::from_secs(30))
}

fn verifier_with_leeway(leeway: Duration) -> Verifier {
    let ec = Key::from_pem(&fixture("ec256.pub.pem"), Algorithm::ES256)
        .expect("P-256 fixture")
        .with_kid("ec256");
    Verifier::builder()
        .issuer(ed25519_issuer(leeway))
        .issuer(Issuer::new(OTHER_ISS).audience(AUD).key(ec).expect("one key"))
        .build()
        .expect("the verifier builds")
}

fn guard(builder: impl FnOnce(GuardBuilder) -> GuardBuilder) -> Guard {
    builder(Guard::builder(verifier())).build()
}

/// A token of `ISS` for `AUD` whose `exp` is `exp`, issued an hour before it.
fn token_expiring_at(exp: i64) -> String {
    let mut c = claims(ISS, AUD, "alice", 0);
    c["iat"] = Value::from(exp - 3600);
    c["exp"] = Value::from(exp);
    Signer::ed25519().sign(&c)
}

/// Expired ten minutes ago: far past any leeway used here.
fn expired_token() -> String {
    token_expiring_at(now() - 600)
}

fn headers(token: &str) -> Headers {
    let mut h = Headers::new();
    h.append("Authorization", format!("Bearer {token}"));
    h
}

fn at(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).expect("after 1970"))
}

fn info_published(published: PublishTime) -> MessageInfo<'static> {
    MessageInfo::new(DEST).published(published)
}

async fn check(guard: &Guard, token: &str, info: &MessageInfo<'_>) -> Outcome {
    guard.check(&headers(token), info).await
}

#[track_caller]
fn accepted(outcome: Outcome) -> jwt_relay::AuthContext {
    match outcome {
        Outcome::Accept(ctx) => ctx,
        other => panic!("expected Accept, got {other:?}"),
    }
}

#[track_caller]
fn rejected(outcome: Outcome) -> Error {
    match outcome {
        Outcome::Reject(e) => {
            assert_eq!(e.class(), ErrorClass::Permanent, "{e}");
            e
        }
        other => panic!("expected Reject, got {other:?}"),
    }
}

/// A closure policy that counts its calls and answers with `decide`.
fn counting(decide: fn(ExpiredToken) -> Outcome) -> (impl ExpiryPolicy + Clone, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let policy = move |expired: ExpiredToken| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move { decide(expired) }
    };
    (policy, calls)
}

fn calls(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------
// Reject, the default
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_valid_token_is_accepted_as_verified() {
    let guard = Guard::new(verifier());
    let token = Signer::ed25519().sign(&claims(ISS, AUD, "alice", 300));
    let ctx = accepted(check(&guard, &token, &MessageInfo::new(DEST)).await);
    assert_eq!(ctx.subject(), Some("alice"));
    assert_eq!(ctx.acceptance(), Acceptance::Verified);
}

#[tokio::test]
async fn reject_is_the_default_whatever_the_publish_time() {
    let guard = Guard::new(verifier());
    let published = PublishTime::broker(at(now() - 700));
    for info in [MessageInfo::new(DEST), info_published(published)] {
        let e = rejected(check(&guard, &expired_token(), &info).await);
        assert_eq!(e.kind(), ErrorKind::Expired, "{e}");
        let ctx = e
            .expired_context()
            .expect("the verified context rides on the error");
        assert_eq!(ctx.subject(), Some("alice"));
    }
}

// ---------------------------------------------------------------------------
// Grace
// ---------------------------------------------------------------------------

fn grace_guard(grace: Grace) -> Guard {
    guard(|b| b.policy(grace))
}

#[tokio::test]
async fn grace_accepts_a_young_message_published_while_its_token_was_valid() {
    let guard = grace_guard(Grace::new(Duration::from_secs(900)));
    let exp = now() - 600;
    let info = info_published(PublishTime::broker(at(exp - 60)));
    let ctx = accepted(check(&guard, &token_expiring_at(exp), &info).await);
    assert_eq!(ctx.acceptance(), Acceptance::Grace);
    assert_eq!(ctx.subject(), Some("alice"));
}

#[tokio::test]
async fn grace_rejects_a_message_published_after_expiry() {
    let guard = grace_guard(Grace::new(Duration::from_secs(900)));
    let exp = now() - 600;
    // Published 5 min after exp: past the 30 s leeway.
    let info = info_published(PublishTime::broker(at(exp + 300)));
    let e = rejected(check(&guard, &token_expiring_at(exp), &info).await);
    assert_eq!(e.kind(), ErrorKind::Expired, "{e}");
}

#[tokio::test]
async fn grace_rejects_a_message_older_than_max_age() {
    let guard = grace_guard(Grace::new(Duration::from_secs(300)));
    let exp = now() - 600;
    // Valid when published, but published ~11 min ago with a 5 min max age.
    let info = info_published(PublishTime::broker(at(exp - 60)));
    let e = rejected(check(&guard, &token_expiring_at(exp), &info).await);
    assert_eq!(e.kind(), ErrorKind::Expired, "{e}");
}

#[tokio::test]
async fn grace_distrusts_client_timestamps_unless_told() {
    let exp = now() - 600;
    let token = token_expiring_at(exp);
    let info = info_published(PublishTime::client(at(exp - 60)));

    let strict = grace_guard(Grace::new(Duration::from_secs(900)));
    let e = rejected(check(&strict, &token, &info).await);
    assert_eq!(e.kind(), ErrorKind::Expired, "{e}");

    let trusting = grace_guard(Grace::new(Duration::from_secs(900)).trust_client_timestamps());
    let ctx = accepted(check(&trusting, &token, &info).await);
    assert_eq!(ctx.acceptance(), Acceptance::Grace);
}

#[tokio::test]
async fn grace_rejects_a_message_without_publish_time() {
    let guard = grace_guard(Grace::new(Duration::from_secs(3600)).trust_client_timestamps());
    let e = rejected(check(&guard, &expired_token(), &MessageInfo::new(DEST)).await);
    assert_eq!(e.kind(), ErrorKind::Expired, "{e}");
}

#[tokio::test]
async fn grace_counts_the_issuer_leeway_at_the_boundary() {
    // Leeway 10 s: "valid when published" means published < exp + 10.
    let guard = Guard::builder(verifier_with_leeway(Duration::from_secs(10)))
        .policy(Grace::new(Duration::from_secs(3600)))
        .build();
    let exp = now() - 600;
    let token = token_expiring_at(exp);

    let inside = info_published(PublishTime::broker(at(exp + 9)));
    assert_eq!(
        accepted(check(&guard, &token, &inside).await).acceptance(),
        Acceptance::Grace
    );

    let outside = info_published(PublishTime::broker(at(exp + 10)));
    let e = rejected(check(&guard, &token, &outside).await);
    assert_eq!(e.kind(), ErrorKind::Expired, "{e}");
}

#[tokio::test]
async fn within_the_verifier_leeway_a_token_is_not_expired_and_no_policy_runs() {
    let (policy, count) = counting(ExpiredToken::reject);
    let guard = Guard::builder(verifier_with_leeway(Duration::from_secs(10)))
        .policy(policy)
        .build();

    // exp 5 s ago, leeway 10 s: still valid.
    let ctx = accepted(check(&guard, &token_expiring_at(now() - 5), &MessageInfo::new(DEST)).await);
    assert_eq!(ctx.acceptance(), Acceptance::Verified);
    assert_eq!(calls(&count), 0);

    // exp exactly one leeway ago: expired, and the policy decides.
    let e = rejected(check(&guard, &token_expiring_at(now() - 10), &MessageInfo::new(DEST)).await);
    assert_eq!(e.kind(), ErrorKind::Expired, "{e}");
    assert_eq!(calls(&count), 1);
}

// ---------------------------------------------------------------------------
// Composition and closures
// ---------------------------------------------------------------------------

#[tokio::test]
async fn when_grace_rejects_the_second_policy_decides() {
    let (fallback, count) = counting(ExpiredToken::accept_under_grace);
    let guard = guard(|b| b.policy(Grace::new(Duration::from_secs(900)).or(fallback)));
    // No publish time: Grace rejects, the closure accepts.
    let ctx = accepted(check(&guard, &expired_token(), &MessageInfo::new(DEST)).await);
    assert_eq!(ctx.acceptance(), Acceptance::Grace);
    assert_eq!(calls(&count), 1);
}

#[tokio::test]
async fn when_grace_accepts_the_second_policy_is_never_called() {
    let (fallback, count) = counting(ExpiredToken::reject);
    let guard = guard(|b| b.policy(Grace::new(Duration::from_secs(900)).or(fallback)));
    let exp = now() - 600;
    let info = info_published(PublishTime::broker(at(exp - 60)));
    let ctx = accepted(check(&guard, &token_expiring_at(exp), &info).await);
    assert_eq!(ctx.acceptance(), Acceptance::Grace);
    assert_eq!(calls(&count), 0);
}

#[tokio::test]
async fn destination_policy_wins_over_issuer_policy_wins_over_default() {
    let (default, default_calls) = counting(ExpiredToken::reject);
    let (by_issuer, issuer_calls) = counting(ExpiredToken::reject);
    let (by_destination, destination_calls) = counting(ExpiredToken::reject);
    let guard = guard(|b| {
        b.policy(default)
            .issuer_policy(ISS, by_issuer)
            .destination_policy(DEST, by_destination)
    });
    let ours = expired_token();
    let mut partner_claims = claims(OTHER_ISS, AUD, "bob", -600);
    partner_claims["iat"] = Value::from(now() - 3600);
    let partners = Signer::ec256().sign(&partner_claims);

    // `orders` has its own policy, whoever issued the token.
    rejected(check(&guard, &ours, &MessageInfo::new(DEST)).await);
    rejected(check(&guard, &partners, &MessageInfo::new(DEST)).await);
    assert_eq!(calls(&destination_calls), 2);
    // Elsewhere, ISS's tokens go to the issuer's policy...
    rejected(check(&guard, &ours, &MessageInfo::new("invoices")).await);
    assert_eq!(calls(&issuer_calls), 1);
    // ...and everyone else's to the default.
    rejected(check(&guard, &partners, &MessageInfo::new("invoices")).await);
    assert_eq!(calls(&default_calls), 1);
    assert_eq!(
        (calls(&destination_calls), calls(&issuer_calls)),
        (2, 1),
        "each message asked one policy"
    );
}

#[tokio::test]
async fn a_closure_accepting_the_expired_token_itself_is_forced_to_grace() {
    let guard = guard(|b| {
        b.policy(|expired: ExpiredToken| async move { Outcome::Accept(expired.context().clone()) })
    });
    let ctx = accepted(check(&guard, &expired_token(), &MessageInfo::new(DEST)).await);
    assert_eq!(ctx.acceptance(), Acceptance::Grace);
}

/// The guard decides a token it has cached before anything waits; once that token expires,
/// the same fast path must hand it to the policy, which sees the token itself.
#[tokio::test]
async fn a_token_the_guard_cached_goes_to_the_policy_once_it_expires() {
    let (policy, calls_made) = counting(|expired| Outcome::Accept(expired.context().clone()));
    let guard = Guard::builder(verifier_with_leeway(Duration::ZERO))
        .policy(policy)
        .build();
    let exp = now() + 2;
    let token = token_expiring_at(exp);
    let info = MessageInfo::new(DEST);
    let fresh = accepted(check(&guard, &token, &info).await);
    assert_eq!(fresh.acceptance(), Acceptance::Verified);
    assert_eq!(calls(&calls_made), 0);
    while now() < exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let late = accepted(check(&guard, &token, &info).await);
    assert_eq!(calls(&calls_made), 1, "the expired token went to the policy");
    assert_eq!(
        late.acceptance(),
        Acceptance::Grace,
        "its own token is accepted under grace only"
    );
    assert_eq!(late.token(), token);
}

#[tokio::test]
async fn a_closure_returning_retry_or_halt_passes_through() {
    let retry = guard(|b| {
        b.policy(|_: ExpiredToken| async {
            Outcome::Retry(
                Error::new(ErrorKind::ExchangeUnavailable, "the token service is down"),
                Duration::from_secs(7),
            )
        })
    });
    match check(&retry, &expired_token(), &MessageInfo::new(DEST)).await {
        Outcome::Retry(e, delay) => {
            assert_eq!(e.kind(), ErrorKind::ExchangeUnavailable);
            assert_eq!(delay, Duration::from_secs(7));
        }
        other => panic!("expected Retry, got {other:?}"),
    }

    let halt = guard(|b| {
        b.policy(|_: ExpiredToken| async {
            Outcome::Halt(Error::new(
                ErrorKind::ExchangeUnauthorized,
                "our client id is refused",
            ))
        })
    });
    match check(&halt, &expired_token(), &MessageInfo::new(DEST)).await {
        Outcome::Halt(e) => assert_eq!(e.kind(), ErrorKind::ExchangeUnauthorized),
        other => panic!("expected Halt, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// What never reaches a policy
// ---------------------------------------------------------------------------

#[tokio::test]
async fn bad_tokens_never_reach_the_policy_and_are_rejected() {
    let (policy, count) = counting(ExpiredToken::accept_under_grace);
    let guard = guard(|b| b.policy(policy));
    let published = info_published(PublishTime::broker(at(now() - 700)));

    // Expired and forged: the signature of another token of the same key.
    let expired = expired_token();
    let other = Signer::ed25519().sign(&claims(ISS, AUD, "mallory", 300));
    let (signing_input, _) = expired.rsplit_once('.').expect("three parts");
    let (_, foreign_signature) = other.rsplit_once('.').expect("three parts");
    let forged = format!("{signing_input}.{foreign_signature}");
    let e = rejected(check(&guard, &forged, &published).await);
    assert_eq!(e.kind(), ErrorKind::BadSignature, "{e}");

    // Expired, and for another audience.
    let mut wrong_aud = claims(ISS, "shipping", "alice", -600);
    wrong_aud["iat"] = Value::from(now() - 3600);
    let e = rejected(check(&guard, &Signer::ed25519().sign(&wrong_aud), &published).await);
    assert_eq!(e.kind(), ErrorKind::InvalidAudience, "{e}");

    // No token at all.
    let e = rejected(guard.check(&Headers::new(), &published).await);
    assert_eq!(e.kind(), ErrorKind::Missing, "{e}");

    assert_eq!(calls(&count), 0, "a policy saw a token that did not verify");
}

#[tokio::test]
async fn an_unreachable_key_set_is_a_retry_after_the_guard_backoff() {
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    server.set_mode(Mode::Status(StatusCode::SERVICE_UNAVAILABLE));
    let verifier = Verifier::builder()
        .issuer(
            Issuer::new(ISS)
                .audience(AUD)
                .jwks_url_with(server.jwks_url(), RemoteOptions::default()),
        )
        .build()
        .expect("the verifier builds");
    let (policy, count) = counting(ExpiredToken::accept_under_grace);
    let guard = Guard::builder(verifier)
        .policy(policy)
        .backoff(Backoff::new(Duration::from_secs(4), Duration::from_secs(4)))
        .build();

    let token = Signer::rsa_a().sign(&claims(ISS, AUD, "alice", 300));
    match check(&guard, &token, &MessageInfo::new(DEST)).await {
        Outcome::Retry(e, delay) => {
            assert_eq!(e.kind(), ErrorKind::KeySetUnavailable, "{e}");
            assert_eq!(e.class(), ErrorClass::Transient);
            assert!(
                (Duration::from_secs(2)..=Duration::from_secs(4)).contains(&delay),
                "{delay:?}"
            );
        }
        other => panic!("expected Retry, got {other:?}"),
    }
    assert_eq!(calls(&count), 0);
}

#[tokio::test]
async fn a_configuration_failure_halts() {
    // OIDC discovery answers for another issuer: our setup is wrong.
    let server = JwksServer::start(fixture("jwks-rsa-a.json")).await;
    server.set_discovery_issuer("https://someone-else.example");
    let iss = server.base().to_owned();
    let verifier = Verifier::builder()
        .issuer(Issuer::new(&iss).audience(AUD).discovery())
        .build()
        .expect("the verifier builds");
    let guard = Guard::new(verifier);

    let token = Signer::rsa_a().sign(&claims(&iss, AUD, "alice", 300));
    match check(&guard, &token, &MessageInfo::new(DEST)).await {
        Outcome::Halt(e) => {
            assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
            assert_eq!(e.class(), ErrorClass::Configuration);
        }
        other => panic!("expected Halt, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Exchange: what the token service answers, and how often a message waits
// ---------------------------------------------------------------------------

/// A token service that gives every request the same answer, made afresh.
#[derive(Debug)]
struct Answering(fn() -> jwt_relay::Result<IssuedToken>);

impl TokenExchanger for Answering {
    fn exchange<'a>(
        &'a self,
        _request: &'a ExchangeRequest,
    ) -> Pin<Box<dyn Future<Output = jwt_relay::Result<IssuedToken>> + Send + 'a>> {
        Box::pin(async move { (self.0)() })
    }
}

fn issued(access_token: String, issued_token_type: Option<&str>) -> jwt_relay::Result<IssuedToken> {
    Ok(IssuedToken {
        access_token,
        issued_token_type: issued_token_type.map(str::to_owned),
        token_type: "Bearer".to_owned(),
        expires_in: Some(300),
        scope: None,
    })
}

fn exchanging(answer: fn() -> jwt_relay::Result<IssuedToken>) -> Guard {
    guard(|b| b.policy(Exchange::new(Arc::new(Answering(answer)))))
}

#[tokio::test]
async fn an_exchanged_token_for_another_user_is_refused() {
    // Alice's expired token, exchanged for a genuine token of the same issuer naming mallory.
    let mallory = exchanging(|| issued(Signer::ed25519().sign(&claims(ISS, AUD, "mallory", 300)), None));
    let e = rejected(check(&mallory, &expired_token(), &MessageInfo::new(DEST)).await);
    assert_eq!(e.kind(), ErrorKind::ExchangeWrongSubject, "{e}");
    assert!(
        !e.message().contains("mallory") && !e.message().contains("alice"),
        "{e}"
    );

    // One without any subject.
    let nobody = exchanging(|| {
        let mut c = claims(ISS, AUD, "", 300);
        c.as_object_mut().expect("an object").remove("sub");
        issued(Signer::ed25519().sign(&c), Some(ACCESS_TOKEN_TYPE))
    });
    let e = rejected(check(&nobody, &expired_token(), &MessageInfo::new(DEST)).await);
    assert_eq!(e.kind(), ErrorKind::ExchangeWrongSubject, "{e}");

    // Alice, but signed by an issuer this consumer does not trust.
    let foreign = exchanging(|| {
        issued(
            Signer::ec384().sign(&claims("https://sts.elsewhere.test", AUD, "alice", 300)),
            None,
        )
    });
    let e = rejected(check(&foreign, &expired_token(), &MessageInfo::new(DEST)).await);
    assert_eq!(e.kind(), ErrorKind::InvalidIssuer, "{e}");

    // Alice, from the other trusted issuer, without `issued_token_type`: accepted.
    let trusted = exchanging(|| issued(Signer::ec256().sign(&claims(OTHER_ISS, AUD, "alice", 300)), None));
    let fresh = accepted(check(&trusted, &expired_token(), &MessageInfo::new(DEST)).await);
    assert_eq!(fresh.acceptance(), Acceptance::Exchanged);
    assert_eq!((fresh.issuer(), fresh.subject()), (OTHER_ISS, Some("alice")));
}

#[tokio::test]
async fn a_transient_exchange_failure_is_retried_a_bounded_number_of_times() {
    let down = || {
        Err(Error::new(
            ErrorKind::ExchangeUnavailable,
            "the token service is down",
        ))
    };
    let guard = guard(|b| {
        b.policy(
            Exchange::new(Arc::new(Answering(down)))
                .backoff(Backoff::new(Duration::from_secs(4), Duration::from_secs(4)))
                .max_retries(3),
        )
    });
    let token = expired_token();
    for attempt in 0..3 {
        match check(&guard, &token, &MessageInfo::new(DEST).attempt(attempt)).await {
            Outcome::Retry(e, delay) => {
                assert_eq!(e.kind(), ErrorKind::ExchangeUnavailable, "{e}");
                assert!(
                    (Duration::from_secs(2)..=Duration::from_secs(4)).contains(&delay),
                    "{delay:?}"
                );
            }
            other => panic!("delivery {attempt}: expected Retry, got {other:?}"),
        }
    }
    // The fourth delivery's failure is the last: dead-lettered, still saying it was transient.
    match check(&guard, &token, &MessageInfo::new(DEST).attempt(3)).await {
        Outcome::Reject(e) => {
            assert_eq!(e.kind(), ErrorKind::ExchangeUnavailable, "{e}");
            assert_eq!(e.class(), ErrorClass::Transient, "replayable");
            assert!(e.message().contains("given up after 4 deliveries"), "{e}");
        }
        other => panic!("expected Reject, got {other:?}"),
    }

    // The service's Retry-After wins over the backoff.
    let busy =
        || Err(Error::new(ErrorKind::ExchangeUnavailable, "busy").with_retry_after(Duration::from_secs(7)));
    match check(&exchanging(busy), &token, &MessageInfo::new(DEST)).await {
        Outcome::Retry(_, delay) => assert_eq!(delay, Duration::from_secs(7)),
        other => panic!("expected Retry, got {other:?}"),
    }
}
