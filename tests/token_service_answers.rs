//! What consumers and publishers do with each answer of a token service, over real HTTP
//! against the development token service playing each answer: an answer about our client
//! halts, one about this message's token dead-letters it, anything else is retried a bounded
//! number of times; and a token issued for another user, or labelled as another type, is
//! never used, on either side.

#![cfg(feature = "testing")]

use std::sync::Arc;
use std::time::Duration;

use jwt_relay::consume::{MessageInfo, Outcome, REASON_CLASS, REASON_KIND, REASON_MESSAGE};
use jwt_relay::exchange::{ACCESS_TOKEN_TYPE, ExchangeRequest, JWT_TOKEN_TYPE, TokenExchanger};
use jwt_relay::memory::{MemoryBroker, MemoryConsumer, Received};
use jwt_relay::publish::PublishErrorKind;
use jwt_relay::testing::{DevSts, DevStsConfig, Mode};
use jwt_relay::verify::now_unix;
use jwt_relay::{
    Acceptance, AuthContext, ErrorClass, ErrorKind, Exchange, Guard, Headers, Propagator, Rfc8693Client,
    Verifier,
};
use serde_json::json;

async fn sts() -> DevSts {
    DevSts::start(DevStsConfig::default())
        .await
        .expect("the token service starts")
}

/// One attempt per exchange, 500 ms at most: each answer is seen once.
fn client(sts: &DevSts) -> Rfc8693Client {
    sts.client()
        .max_attempts(1)
        .timeout(Duration::from_millis(500))
        .build()
        .expect("client")
}

fn verifier(sts: &DevSts, audience: &str) -> Verifier {
    sts.verifier(audience).expect("verifier")
}

/// A guard for `orders` exchanging expired tokens at `sts`, without a cache, redelivering
/// after 10 ms at most 3 times.
fn exchanging_guard(sts: &DevSts) -> Guard {
    let exchange = Exchange::new(Arc::new(client(sts)))
        .retry_delay(Duration::from_millis(10))
        .max_retries(3);
    Guard::builder(verifier(sts, "orders")).policy(exchange).build()
}

/// A token of `subject` for `orders` that expired a minute ago.
fn expired(sts: &DevSts, subject: &str) -> String {
    let now = now_unix();
    sts.mint_claims(json!({
        "iss": sts.issuer(), "sub": subject, "aud": "orders", "iat": now - 600, "exp": now - 60,
    }))
}

fn bearer(token: &str) -> Headers {
    let mut headers = Headers::new();
    headers.append("Authorization", format!("Bearer {token}"));
    headers
}

fn header(headers: &Headers, name: &str) -> String {
    String::from_utf8_lossy(headers.get(name).unwrap_or_default()).into_owned()
}

fn refuse(status: u16, error: Option<&'static str>) -> Mode {
    Mode::Refuse { status, error }
}

#[tokio::test]
async fn each_answer_is_classed_by_what_it_is_about() {
    use ErrorClass::{Configuration, Permanent, Transient};
    let sts = sts().await;
    let guard = exchanging_guard(&sts);
    let cases = [
        // About our client or its setup: the same for every message.
        (refuse(401, Some("invalid_client")), Configuration),
        (refuse(400, Some("unauthorized_client")), Configuration),
        (refuse(400, Some("unsupported_grant_type")), Configuration),
        // About this message's token.
        (refuse(400, Some("invalid_grant")), Permanent),
        (refuse(400, Some("invalid_target")), Permanent),
        (refuse(400, Some("invalid_request")), Permanent),
        (refuse(400, Some("invalid_scope")), Permanent),
        // Anything else: the service is down, or its answer does not say what is wrong.
        (refuse(500, None), Transient),
        (refuse(503, Some("temporarily_unavailable")), Transient),
        (refuse(429, None), Transient),
        (Mode::Slow(Duration::from_secs(2)), Transient),
        (refuse(401, None), Transient),
        (refuse(403, None), Transient),
        (refuse(400, None), Transient),
        (refuse(401, Some("access_denied")), Transient),
    ];
    for (mode, class) in cases {
        sts.set_mode(mode);
        let token = expired(&sts, "alice");
        let error = client(&sts)
            .exchange(&ExchangeRequest::new(token.as_str()).audience("orders"))
            .await
            .expect_err("refused");
        assert_eq!(error.class(), class, "{mode:?}: {error}");
        assert!(!error.message().contains(&token), "{mode:?}: {error}");
        let outcome = guard.check(&bearer(&token), &MessageInfo::new("orders")).await;
        match (class, outcome) {
            (Configuration, Outcome::Halt(e)) => assert_eq!(e.kind(), ErrorKind::ExchangeUnauthorized),
            (Permanent, Outcome::Reject(e)) => assert_eq!(e.kind(), ErrorKind::ExchangeDenied),
            (Transient, Outcome::Retry(e, _)) => assert_eq!(e.kind(), ErrorKind::ExchangeUnavailable),
            (class, outcome) => panic!("{mode:?}: a {class} failure ended in {outcome:?}"),
        }
    }
}

#[tokio::test]
async fn an_expired_token_and_a_bare_401_do_not_stop_a_consumer_but_invalid_client_does() {
    let sts = sts().await;
    // A service that answers a subject token it no longer accepts with a bare 401.
    sts.set_mode(refuse(401, None));
    let broker = MemoryBroker::new();
    let stale = expired(&sts, "mallory");
    broker.publish("orders", bearer(&stale), "from an old token");
    broker.publish(
        "orders",
        bearer(&sts.mint("bob", "orders", Duration::from_secs(60))),
        "from bob",
    );
    let handled = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = |delivery: Received| {
        let handled = handled.clone();
        async move {
            let who = delivery.context().subject().unwrap_or("?").to_owned();
            handled.lock().expect("lock").push(who);
            Ok::<(), String>(())
        }
    };
    let report = MemoryConsumer::new(broker.clone(), "orders", exchanging_guard(&sts))
        .run_until_idle(record)
        .await
        .expect("a bare 401 does not halt the consumer");

    assert_eq!(*handled.lock().expect("lock"), ["bob"]);
    assert_eq!(
        (report.accepted, report.retried, report.dead_lettered),
        (1, 3, 1),
        "{report:?}"
    );
    assert_eq!(
        sts.stats().token_requests,
        4,
        "one call per delivery, four deliveries"
    );
    let dead = broker.dead_letters("orders");
    let reason = &dead[0].headers;
    assert_eq!(header(reason, REASON_KIND), "ExchangeUnavailable");
    assert_eq!(header(reason, REASON_CLASS), "transient", "replayable");
    let message = header(reason, REASON_MESSAGE);
    assert!(
        message.contains("401") && message.contains("given up after 4 deliveries"),
        "{message}"
    );
    assert!(!message.contains(&stale));
    assert!(broker.messages("orders").is_empty());

    // The service refuses our client: every exchange would fail, the consumer stops.
    sts.set_mode(refuse(401, Some("invalid_client")));
    broker.publish("invoices", bearer(&expired(&sts, "carol")), "from carol");
    let guard = exchanging_guard(&sts);
    let error = MemoryConsumer::new(broker.clone(), "invoices", guard)
        .run_until_idle(|_: Received| async { Ok::<(), String>(()) })
        .await
        .expect_err("invalid_client halts");
    assert_eq!(error.kind(), ErrorKind::ExchangeUnauthorized, "{error}");
    assert_eq!(
        broker.messages("invoices").len(),
        1,
        "the message waits for a fixed setup"
    );
    assert!(broker.dead_letters("invoices").is_empty());
}

// ---------------------------------------------------------------------------
// What was issued: for the same user, of the type asked for
// ---------------------------------------------------------------------------

/// A publisher for `invoices` (exchanged for `billing`) that refreshes tokens expiring
/// within a minute, checking what it exchanged with the orders service's verifier.
fn propagator(sts: &DevSts) -> Propagator {
    Propagator::builder()
        .exchanger(Arc::new(client(sts)))
        .verifier(verifier(sts, "orders"))
        .audience_for("invoices", "billing")
        .refresh_ahead(Duration::from_secs(60))
        .build()
        .expect("propagator")
}

async fn alice(sts: &DevSts, ttl: u64) -> AuthContext {
    let token = sts.mint("alice", "orders", Duration::from_secs(ttl));
    verifier(sts, "orders").verify(&token).await.expect("alice")
}

/// Publishes as `context` to `destination`: the error kind of what went wrong in the exchange.
async fn publish_fails(propagator: &Propagator, destination: &str, context: &AuthContext) -> ErrorKind {
    let mut headers = Headers::new();
    let e = propagator
        .inject(destination, Some(context), &mut headers)
        .await
        .expect_err("nothing is published");
    assert_eq!(e.kind(), PublishErrorKind::Exchange, "{e}");
    assert!(headers.is_empty(), "nothing was written: {headers:?}");
    assert!(!e.to_string().contains(context.token()), "{e}");
    e.exchange_error().expect("the exchange's error").kind()
}

#[tokio::test]
async fn a_token_issued_for_another_user_is_refused_on_both_sides() {
    let sts = sts().await;
    sts.set_mode(Mode::IssueFor("mallory"));

    // Consuming: alice's expired token comes back as mallory's.
    let outcome = exchanging_guard(&sts)
        .check(&bearer(&expired(&sts, "alice")), &MessageInfo::new("orders"))
        .await;
    match outcome {
        Outcome::Reject(e) => {
            assert_eq!(e.kind(), ErrorKind::ExchangeWrongSubject, "{e}");
            assert_eq!(e.class(), ErrorClass::Permanent);
            assert!(!e.message().contains("mallory"), "no subject in the reason: {e}");
        }
        other => panic!("expected Reject, got {other:?}"),
    }

    // Publishing: for another audience, and refreshing a dying token.
    let propagator = propagator(&sts);
    let fresh = alice(&sts, 300).await;
    let dying = alice(&sts, 30).await;
    assert_eq!(
        publish_fails(&propagator, "invoices", &fresh).await,
        ErrorKind::ExchangeWrongSubject
    );
    assert_eq!(
        publish_fails(&propagator, "audit", &dying).await,
        ErrorKind::ExchangeWrongSubject
    );

    // The same service, honest again: alice's token for billing leaves.
    sts.set_mode(Mode::Normal);
    let mut headers = Headers::new();
    propagator
        .inject("invoices", Some(&fresh), &mut headers)
        .await
        .expect("published");
    let written = header(&headers, "authorization");
    let token = written.strip_prefix("Bearer ").expect("bearer");
    let billing = verifier(&sts, "billing")
        .verify(token)
        .await
        .expect("for billing");
    assert_eq!(billing.subject(), Some("alice"));
}

#[tokio::test]
async fn answers_labelled_as_another_token_type_are_refused_and_a_missing_type_is_not() {
    let sts = sts().await;
    let guard = exchanging_guard(&sts);
    let propagator = propagator(&sts);
    let fresh = alice(&sts, 300).await;
    let refused = [
        Mode::Label {
            issued_token_type: Some("urn:ietf:params:oauth:token-type:refresh_token"),
            token_type: "Bearer",
        },
        Mode::Label {
            issued_token_type: Some(ACCESS_TOKEN_TYPE),
            token_type: "DPoP",
        },
    ];
    for mode in refused {
        sts.set_mode(mode);
        match guard
            .check(&bearer(&expired(&sts, "alice")), &MessageInfo::new("orders"))
            .await
        {
            Outcome::Reject(e) => assert_eq!(e.kind(), ErrorKind::ExchangeWrongTokenType, "{mode:?}: {e}"),
            other => panic!("{mode:?}: expected Reject, got {other:?}"),
        }
        assert_eq!(
            publish_fails(&propagator, "invoices", &fresh).await,
            ErrorKind::ExchangeWrongTokenType,
            "{mode:?}"
        );
    }

    // RFC 8693 requires `issued_token_type`, but some servers leave it out: the token decides.
    let accepted = [
        Mode::Label {
            issued_token_type: None,
            token_type: "bearer",
        },
        Mode::Label {
            issued_token_type: Some(JWT_TOKEN_TYPE),
            token_type: "N_A",
        },
    ];
    for mode in accepted {
        sts.set_mode(mode);
        match guard
            .check(&bearer(&expired(&sts, "alice")), &MessageInfo::new("orders"))
            .await
        {
            Outcome::Accept(context) => {
                assert_eq!(context.acceptance(), Acceptance::Exchanged, "{mode:?}");
                assert_eq!(context.subject(), Some("alice"), "{mode:?}");
            }
            other => panic!("{mode:?}: expected Accept, got {other:?}"),
        }
        let mut headers = Headers::new();
        propagator
            .inject("invoices", Some(&fresh), &mut headers)
            .await
            .expect("published");
        assert!(
            header(&headers, "authorization").starts_with("Bearer "),
            "{mode:?}"
        );
    }
}
