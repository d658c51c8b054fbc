//! The ambient identity and the publish side: which token a message leaves
//! with, read from the headers a broker would carry.

use jwt_relay_test_support as common;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::{Signer, claims, fixture, now};
use jwt_relay::consume::{MessageInfo, Outcome, PublishTime};
use jwt_relay::exchange::{ExchangeRequest, IssuedToken, TokenExchanger};
use jwt_relay::publish::{PublishErrorKind, WithIdentity};
use jwt_relay::{
    Acceptance, Algorithm, AuthContext, Grace, Guard, Headers, Issuer, Key, Propagator, Verifier, current,
    scope,
};
use serde_json::{Value, json};

const ISS: &str = "https://id.example.test";
const AUD: &str = "orders";

fn verifier() -> Verifier {
    let key = Key::from_pem(&fixture("ed25519.pub.pem"), Algorithm::EdDSA)
        .expect("Ed25519 fixture")
        .with_kid("ed25519");
    Verifier::builder()
        .issuer(
            Issuer::new(ISS)
                .audience(AUD)
                .audience("billing")
                .key(key)
                .expect("one key"),
        )
        .build()
        .expect("the verifier builds")
}

/// A verified context for `sub`, whose token lives `ttl` seconds.
async fn context(sub: &str, ttl: i64) -> AuthContext {
    let token = Signer::ed25519().sign(&claims(ISS, AUD, sub, ttl));
    verifier().verify(&token).await.expect("the token verifies")
}

/// A context accepted under grace: expired, on a message published while
/// it was valid, judged by a guard with the `Grace` policy.
async fn grace_context() -> AuthContext {
    let exp = now() - 120;
    let token = Signer::ed25519().sign(&json!({
        "iss": ISS, "aud": AUD, "sub": "alice", "iat": exp - 600, "exp": exp,
    }));
    let mut headers = Headers::new();
    headers.append("Authorization", format!("Bearer {token}"));
    let published = SystemTime::now() - Duration::from_secs(200);
    let guard = Guard::builder(verifier())
        .policy(Grace::new(Duration::from_secs(600)))
        .build();
    let info = MessageInfo::new(AUD).published(PublishTime::broker(published));
    match guard.check(&headers, &info).await {
        Outcome::Accept(ctx) => {
            assert_eq!(ctx.acceptance(), Acceptance::Grace);
            ctx
        }
        other => panic!("expected Accept under grace, got {other:?}"),
    }
}

/// The single value of the token header, as a string.
#[track_caller]
fn written_token(headers: &Headers) -> String {
    let values: Vec<_> = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .collect();
    assert_eq!(values.len(), 1, "one token header: {headers:?}");
    let value = std::str::from_utf8(values[0].1).expect("ASCII header");
    value
        .strip_prefix("Bearer ")
        .expect("the Bearer scheme")
        .to_owned()
}

async fn publish(propagator: &Propagator, destination: &str, explicit: Option<&AuthContext>) -> Headers {
    let mut headers = Headers::new();
    headers.append("x-order", "42");
    propagator
        .inject(destination, explicit, &mut headers)
        .await
        .expect("the publish has a token");
    headers
}

/// A token service that records every request and answers with a fresh
/// token of the same subject for the requested audience, acting as `svc-b`.
#[derive(Debug, Default)]
struct FakeExchanger {
    seen: Mutex<Vec<ExchangeRequest>>,
}

impl FakeExchanger {
    fn requests(&self) -> Vec<ExchangeRequest> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

impl TokenExchanger for FakeExchanger {
    fn exchange<'a>(
        &'a self,
        request: &'a ExchangeRequest,
    ) -> Pin<Box<dyn Future<Output = jwt_relay::Result<IssuedToken>> + Send + 'a>> {
        Box::pin(async move {
            self.seen.lock().expect("not poisoned").push(request.clone());
            // The subject of the token given, expired or not (a real
            // service checks far more; the tests assert on what it saw).
            let subject: Value = match verifier().verify(&request.subject_token).await {
                Ok(ctx) => ctx.subject().into(),
                Err(e) => e.expired_context().and_then(AuthContext::subject).into(),
            };
            let aud = request.audience.first().map_or(AUD, String::as_str);
            let mut fresh = claims(ISS, aud, "", 900);
            fresh["sub"] = subject;
            fresh["act"] = json!({ "sub": "svc-b" });
            Ok(IssuedToken {
                access_token: Signer::ed25519().sign(&fresh),
                issued_token_type: Some(jwt_relay::exchange::ACCESS_TOKEN_TYPE.to_owned()),
                token_type: "Bearer".to_owned(),
                expires_in: Some(900),
                scope: None,
            })
        })
    }
}

fn exchanging(exchanger: &Arc<FakeExchanger>) -> jwt_relay::publish::PropagatorBuilder {
    Propagator::builder()
        .exchanger(exchanger.clone())
        .verifier(verifier())
}

// ---------------------------------------------------------------------------
// The ambient context
// ---------------------------------------------------------------------------

#[tokio::test]
async fn there_is_no_identity_outside_a_scope() {
    assert!(current().is_none());
    scope(context("alice", 300).await, async {}).await;
    assert!(current().is_none(), "a finished scope leaves nothing behind");
}

#[tokio::test]
async fn inside_a_scope_the_identity_is_current() {
    let alice = context("alice", 300).await;
    let token = alice.token().to_owned();
    scope(alice, async move {
        let ctx = current().expect("in scope");
        assert_eq!(ctx.subject(), Some("alice"));
        assert_eq!(ctx.token(), token);
    })
    .await;
}

#[tokio::test]
async fn nested_scopes_shadow_and_restore() {
    let alice = context("alice", 300).await;
    let bob = context("bob", 300).await;
    scope(alice, async move {
        scope(bob, async {
            assert_eq!(current().expect("inner").subject(), Some("bob"));
        })
        .await;
        assert_eq!(current().expect("outer again").subject(), Some("alice"));
    })
    .await;
}

// ---------------------------------------------------------------------------
// Forwarding
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_handler_in_scope_forwards_exactly_its_token() {
    let alice = context("alice", 300).await;
    let expected = alice.token().to_owned();
    let propagator = Propagator::default();
    let headers = scope(alice, publish(&propagator, "invoices", None)).await;
    assert_eq!(written_token(&headers), expected);
    assert_eq!(headers.get("x-order"), Some(&b"42"[..]), "other headers are kept");
}

#[tokio::test]
async fn without_any_identity_the_publish_fails() {
    let mut headers = Headers::new();
    let e = Propagator::default()
        .inject("invoices", None, &mut headers)
        .await
        .expect_err("no identity");
    assert_eq!(e.kind(), PublishErrorKind::NoIdentity, "{e}");
    assert!(headers.is_empty(), "nothing was written: {headers:?}");
}

#[tokio::test]
async fn anonymous_publishing_writes_no_header_at_all() {
    let propagator = Propagator::builder().allow_anonymous().build().expect("valid");
    let mut headers = Headers::new();
    propagator
        .inject("invoices", None, &mut headers)
        .await
        .expect("anonymous is allowed");
    assert_eq!(headers.get("authorization"), None, "{headers:?}");
    assert!(headers.is_empty(), "{headers:?}");
}

#[tokio::test]
async fn an_explicit_context_wins_over_the_ambient_one() {
    let alice = context("alice", 300).await;
    let bob = context("bob", 300).await;
    let expected = bob.token().to_owned();
    let propagator = Propagator::default();
    let headers = scope(alice, async {
        publish(&propagator, "invoices", Some(&bob)).await
    })
    .await;
    assert_eq!(written_token(&headers), expected);
}

// ---------------------------------------------------------------------------
// Spawned tasks
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_spawned_task_loses_the_identity_unless_carried() {
    let alice = context("alice", 300).await;
    let bob = context("bob", 300).await;
    scope(alice, async move {
        let lost = tokio::spawn(async { current() }).await.expect("the task ran");
        assert!(lost.is_none(), "task-locals are not inherited");

        let kept = tokio::spawn(async { current() }.with_current_identity())
            .await
            .expect("the task ran");
        assert_eq!(kept.expect("carried").subject(), Some("alice"));

        let set = tokio::spawn(async { current() }.with_identity(bob))
            .await
            .expect("the task ran");
        assert_eq!(set.expect("set").subject(), Some("bob"));
    })
    .await;
}

// ---------------------------------------------------------------------------
// Exchanging
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_grace_context_is_not_forwarded_without_an_exchanger() {
    let ctx = grace_context().await;
    let mut headers = Headers::new();
    let e = scope(ctx, Propagator::default().inject("invoices", None, &mut headers))
        .await
        .expect_err("an expired token is never forwarded");
    assert_eq!(e.kind(), PublishErrorKind::GraceNotForwardable, "{e}");
    assert!(headers.is_empty(), "{headers:?}");
}

#[tokio::test]
async fn a_grace_context_is_exchanged_and_the_fresh_token_written() {
    let ctx = grace_context().await;
    let original = ctx.token().to_owned();
    let exchanger = Arc::new(FakeExchanger::default());
    let propagator = exchanging(&exchanger).build().expect("valid");

    let headers = scope(ctx, publish(&propagator, "invoices", None)).await;
    let written = written_token(&headers);
    assert_ne!(written, original, "the expired token left as-is");
    let requests = exchanger.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].subject_token, original);

    let fresh = verifier()
        .verify(&written)
        .await
        .expect("the fresh token verifies");
    assert_eq!(fresh.subject(), Some("alice"));
    assert_eq!(fresh.actors()[0].subject.as_deref(), Some("svc-b"));
}

#[tokio::test]
async fn a_destination_with_its_own_audience_gets_a_token_for_it() {
    let alice = context("alice", 300).await;
    let original = alice.token().to_owned();
    let exchanger = Arc::new(FakeExchanger::default());
    let propagator = exchanging(&exchanger)
        .audience_for("invoices", "billing")
        .build()
        .expect("valid");

    let (to_billing, elsewhere) = scope(alice, async {
        (
            publish(&propagator, "invoices", None).await,
            publish(&propagator, "audit", None).await,
        )
    })
    .await;

    let requests = exchanger.requests();
    assert_eq!(requests.len(), 1, "only `invoices` needs an exchange");
    assert_eq!(requests[0].audience, ["billing"]);
    let fresh = verifier()
        .verify(&written_token(&to_billing))
        .await
        .expect("the exchanged token verifies");
    assert_eq!(fresh.claims().audience(), ["billing"]);
    assert_eq!(written_token(&elsewhere), original);
}

#[tokio::test]
async fn refresh_ahead_exchanges_only_a_token_about_to_expire() {
    let exchanger = Arc::new(FakeExchanger::default());
    let propagator = exchanging(&exchanger)
        .refresh_ahead(Duration::from_secs(60))
        .build()
        .expect("valid");

    let long_lived = context("alice", 600).await;
    let kept = long_lived.token().to_owned();
    let headers = scope(long_lived, publish(&propagator, "invoices", None)).await;
    assert_eq!(written_token(&headers), kept);
    assert_eq!(exchanger.requests().len(), 0);

    let dying = context("alice", 30).await;
    let dying_token = dying.token().to_owned();
    let headers = scope(dying, publish(&propagator, "invoices", None)).await;
    let written = written_token(&headers);
    assert_ne!(written, dying_token);
    assert_eq!(exchanger.requests().len(), 1);
    let fresh = verifier().verify(&written).await.expect("verifies");
    assert!(fresh.claims().expires_at().expect("exp") > now() + 60);
}

#[tokio::test]
async fn an_exchanger_needs_a_verifier_to_check_what_it_issues() {
    let exchanger = Arc::new(FakeExchanger::default());
    let e = Propagator::builder()
        .exchanger(exchanger.clone())
        .audience_for("invoices", "billing")
        .build()
        .expect_err("nothing would check the exchanged tokens");
    assert_eq!(e.kind(), jwt_relay::ErrorKind::Configuration, "{e}");
    assert!(e.message().contains("verifier"), "{e}");
}
