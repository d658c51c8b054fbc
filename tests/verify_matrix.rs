//! The verification matrix: for every check the verifier makes, a token that
//! only that check stops, and the kind, class and message it fails with.
//!
//! Attack tokens are correctly signed wherever that is possible (with the key
//! the verifier trusts, or the key it would be confused into using), so that
//! removing the check under test turns the rejection into an `Ok`, or at
//! least into another kind, and the test fails.
//!
//! Every rejection also asserts that the error is `Permanent` (a hostile
//! token must never look like our own misconfiguration) and that neither its
//! `Display` nor its `Debug` contains the token or any long part of it.

use jwt_relay_test_support as common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use jsonwebtoken::EncodingKey;
use jwt_relay::verify::{MAX_LEEWAY, VerifierBuilder};
use jwt_relay::{
    Algorithm, AuthContext, Error, ErrorClass, ErrorKind, Headers, Issuer, Key, KeySet, Verifier,
};
use serde_json::{Value, json};

use common::{Signer, b64url, claims, fixture, hmac_secret, now, raw_token};

const ISS: &str = "https://issuer.test";
const AUD: &str = "svc";
const SUB: &str = "alice";
/// A fixed instant for the `verify_at` tests.
const T0: i64 = 1_700_000_000;

// ---------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------

fn pem_key(file: &str, alg: Algorithm, kid: &str) -> Key {
    Key::from_pem(&fixture(file), alg)
        .expect("fixture PEM key")
        .with_kid(kid)
}

/// The five keys of `jwks.json`, the HS256 secret (kid `hs`), and rsa-a
/// pinned to RS384 (kid `rsa-a-384`) and RS512 (kid `rsa-a-512`).
fn key_set() -> KeySet {
    let jwks = KeySet::from_jwks(&fixture("jwks.json")).expect("jwks.json loads");
    let hs = Key::from_secret(&hmac_secret("hs256.secret"), Algorithm::HS256)
        .expect("hs256.secret is long enough")
        .with_kid("hs");
    let extra = [
        hs,
        pem_key("rsa2048-a.pub.pem", Algorithm::RS384, "rsa-a-384"),
        pem_key("rsa2048-a.pub.pem", Algorithm::RS512, "rsa-a-512"),
    ];
    KeySet::new(jwks.keys().cloned().chain(extra)).expect("kids are distinct")
}

fn issuer() -> Issuer {
    Issuer::new(ISS).audience(AUD).keys(key_set())
}

fn build(builder: VerifierBuilder) -> Verifier {
    builder.build().expect("a valid configuration")
}

/// The matrix verifier: one issuer, every key, default options.
fn verifier() -> Verifier {
    verifier_for(issuer())
}

fn verifier_for(issuer: Issuer) -> Verifier {
    build(Verifier::builder().issuer(issuer))
}

/// The matrix verifier, accepting tokens of up to 64 KiB.
fn roomy_verifier() -> Verifier {
    build(Verifier::builder().issuer(issuer()).max_token_size(64 * 1024))
}

fn hs() -> Signer {
    Signer::hs256().with_kid(Some("hs"))
}

/// Signs RS256 with rsa-b's private key while the header names rsa-a: a
/// well-formed signature by a key the named kid does not belong to.
fn forger() -> Signer {
    let mut s = Signer::rsa_b().with_kid(Some("rsa-a"));
    s.alg = Algorithm::RS256;
    s
}

/// Valid claims: `{iss, aud, sub, iat: now, exp: now + 300}`.
fn valid() -> Value {
    claims(ISS, AUD, SUB, 300)
}

/// `base` with the members of `patch` set; a `null` in `patch` removes one.
fn with(mut base: Value, patch: Value) -> Value {
    let (Value::Object(map), Value::Object(patch)) = (&mut base, patch) else {
        panic!("with() takes two objects");
    };
    for (name, value) in patch {
        if value.is_null() {
            map.remove(&name);
        } else {
            map.insert(name, value);
        }
    }
    base
}

fn header_with(signer: &Signer, patch: Value) -> Value {
    with(signer.header(), patch)
}

fn at(secs: i64) -> SystemTime {
    let d = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 { UNIX_EPOCH + d } else { UNIX_EPOCH - d }
}

fn parts(token: &str) -> (&str, &str, &str) {
    let mut it = token.splitn(3, '.');
    match (it.next(), it.next(), it.next()) {
        (Some(h), Some(p), Some(s)) => (h, p, s),
        _ => panic!("not a three-part token"),
    }
}

fn rsa_a_private() -> EncodingKey {
    EncodingKey::from_rsa_pem(&fixture("rsa2048-a.pem")).expect("RSA fixture")
}

/// Signs the exact `signing_input` given (already base64url, possibly
/// non-canonically): the token's signature is valid over its literal bytes.
fn sign_input(key: &EncodingKey, alg: Algorithm, signing_input: &str) -> String {
    jwt_relay::verify::crypto_provider();
    let sig = jsonwebtoken::crypto::sign(signing_input.as_bytes(), key, alg).expect("signs");
    format!("{signing_input}.{sig}")
}

/// A token whose HMAC key is `secret` (whatever bytes those are).
fn hmac_token(secret: &[u8], alg: Algorithm, header: &Value, claims: &Value) -> String {
    let key = EncodingKey::from_secret(secret).expect("any bytes are an HMAC key");
    let input = format!("{}.{}", b64url(header.to_string()), b64url(claims.to_string()));
    sign_input(&key, alg, &input)
}

// ---------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------

#[track_caller]
fn expect_ok(result: jwt_relay::Result<AuthContext>, case: &str) -> AuthContext {
    result.unwrap_or_else(|e| panic!("{case}: expected the token to verify, got {e}"))
}

#[track_caller]
fn expect_err(result: jwt_relay::Result<AuthContext>, token: &str, kind: ErrorKind, case: &str) -> Error {
    expect_err_in(result, token, &[kind], case)
}

/// Shorthand: `v.verify(token)` fails with `kind` (see [`expect_err`]).
async fn rejects(v: &Verifier, token: &str, kind: ErrorKind, case: &str) -> Error {
    expect_err(v.verify(token).await, token, kind, case)
}

/// Shorthand: `v.verify(token)` succeeds.
async fn accepts(v: &Verifier, token: &str, case: &str) -> AuthContext {
    expect_ok(v.verify(token).await, case)
}

/// The token is refused with one of `kinds`, as a permanent failure, and the
/// error shows nothing of the token.
#[track_caller]
fn expect_err_in(
    result: jwt_relay::Result<AuthContext>,
    token: &str,
    kinds: &[ErrorKind],
    case: &str,
) -> Error {
    let err = match result {
        Ok(ctx) => panic!("{case}: expected {kinds:?}, but the token verified: {ctx:?}"),
        Err(err) => err,
    };
    assert!(
        kinds.contains(&err.kind()),
        "{case}: expected {kinds:?}, got {err}"
    );
    assert_eq!(err.class(), ErrorClass::Permanent, "{case}: {err}");
    assert_redacted(&format!("{err:?}"), token, case);
    assert_redacted(&err.to_string(), token, case);
    err
}

/// `shown` contains neither the token nor any of its parts longer than 16
/// characters (the signature above all).
#[track_caller]
fn assert_redacted(shown: &str, token: &str, case: &str) {
    if token.len() >= 16 {
        assert!(!shown.contains(token), "{case}: the token leaked: {shown}");
    }
    for part in token.split('.').filter(|p| p.len() >= 16) {
        assert!(!shown.contains(part), "{case}: a token part leaked: {shown}");
    }
}

#[track_caller]
fn assert_message_names(err: &Error, what: &str, case: &str) {
    assert!(
        err.message().contains(what),
        "{case}: the message should name {what}: {err}"
    );
}

// ---------------------------------------------------------------------------
// Positive: every algorithm, with and without kid
// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_algorithm_verifies_with_its_pinned_key() {
    let v = verifier();
    let cases = [
        (Signer::rsa_a(), "rsa-a", Algorithm::RS256),
        (
            Signer::rsa_a_with(Algorithm::RS384).with_kid(Some("rsa-a-384")),
            "rsa-a-384",
            Algorithm::RS384,
        ),
        (
            Signer::rsa_a_with(Algorithm::RS512).with_kid(Some("rsa-a-512")),
            "rsa-a-512",
            Algorithm::RS512,
        ),
        (Signer::rsa_b(), "rsa-b", Algorithm::PS256),
        (Signer::ec256(), "ec256", Algorithm::ES256),
        (Signer::ec384(), "ec384", Algorithm::ES384),
        (Signer::ed25519(), "ed25519", Algorithm::EdDSA),
        (hs(), "hs", Algorithm::HS256),
    ];
    for (signer, kid, alg) in cases {
        let token = signer.sign(&valid());
        let ctx = accepts(&v, &token, kid).await;
        assert_eq!(ctx.subject(), Some(SUB), "{kid}");
        assert_eq!(ctx.issuer(), ISS, "{kid}");
        assert_eq!(ctx.kid(), Some(kid));
        assert_eq!(ctx.algorithm(), alg, "{kid}");
        assert_eq!(ctx.claims().audience(), [AUD], "{kid}");
        assert_eq!(ctx.token(), token, "{kid}: the raw token is kept to forward");
        let shown = format!("{ctx:?}");
        assert!(shown.contains("[redacted]"), "{kid}: {shown}");
        assert!(shown.contains(SUB), "{kid}: {shown}");
        assert_redacted(&shown, &token, kid);
    }
}

#[tokio::test]
async fn a_token_without_kid_uses_the_only_key_of_its_algorithm() {
    let v = verifier();
    let cases = [
        (Signer::rsa_a(), Algorithm::RS256),
        (Signer::rsa_a_with(Algorithm::RS512), Algorithm::RS512),
        (Signer::ec384(), Algorithm::ES384),
        (Signer::hs256(), Algorithm::HS256),
    ];
    for (signer, alg) in cases {
        let token = signer.with_kid(None).sign(&valid());
        let ctx = accepts(&v, &token, &format!("{alg:?} without kid")).await;
        assert_eq!((ctx.kid(), ctx.algorithm()), (None, alg));
    }
}

// ---------------------------------------------------------------------------
// Signatures
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_tampered_or_foreign_signature_is_a_bad_signature() {
    let v = verifier();
    let good = Signer::rsa_a().sign(&valid());
    let (h, p, s) = parts(&good);
    let other_payload = b64url(with(valid(), json!({"sub": "mallory"})).to_string());
    let cases = [
        ("payload swapped", format!("{h}.{other_payload}.{s}")),
        ("signed by rsa-b as rsa-a", forger().sign(&valid())),
        ("signature of another token", {
            let other = Signer::rsa_a().sign(&with(valid(), json!({"jti": "x"})));
            format!("{h}.{p}.{}", parts(&other).2)
        }),
        ("signature truncated", format!("{h}.{p}.{}", &s[..s.len() - 2])),
        ("HS256 with another secret", {
            let secret = [7u8; 48];
            hmac_token(&secret, Algorithm::HS256, &hs().header(), &valid())
        }),
    ];
    for (case, token) in cases {
        let err = rejects(&v, &token, ErrorKind::BadSignature, case).await;
        assert_message_names(&err, ISS, case);
    }
}

/// Checks running at once on several threads, sharing one verifier and its cache, each get
/// their own verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_on_worker_threads_keep_their_own_verdicts() {
    let v = verifier();
    let checks = (0..32).map(|i| {
        let v = v.clone();
        let subject = format!("user-{i}");
        let claims = with(valid(), json!({"sub": subject}));
        let token = if i % 2 == 0 {
            Signer::rsa_a().sign(&claims)
        } else {
            forger().sign(&claims)
        };
        tokio::spawn(async move { (i, subject, v.verify(&token).await) })
    });
    for check in checks.collect::<Vec<_>>() {
        let (i, subject, verdict) = check.await.expect("the check finished");
        match verdict {
            Ok(context) if i % 2 == 0 => assert_eq!(context.subject(), Some(subject.as_str())),
            Err(e) if i % 2 == 1 => assert_eq!(e.kind(), ErrorKind::BadSignature, "{subject}: {e}"),
            other => panic!("{subject}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn ecdsa_all_zero_signatures_are_bad_signatures() {
    let v = verifier();
    for (signer, size) in [(Signer::ec256(), 64), (Signer::ec384(), 96)] {
        let good = signer.sign(&valid());
        let (h, p, s) = parts(&good);
        assert_eq!(URL_SAFE_NO_PAD.decode(s).expect("b64").len(), size, "R||S size");
        let token = format!("{h}.{p}.{}", b64url(vec![0u8; size]));
        let case = format!("{:?} with r = s = 0", signer.alg);
        rejects(&v, &token, ErrorKind::BadSignature, &case).await;
    }
}

/// ASN.1 DER `SEQUENCE { INTEGER r, INTEGER s }` of a JOSE `R || S` signature.
fn der_ecdsa(fixed: &[u8]) -> Vec<u8> {
    fn integer(bytes: &[u8]) -> Vec<u8> {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len() - 1);
        let minimal = &bytes[start..];
        let sign_pad = minimal[0] & 0x80 != 0;
        let len = minimal.len() + usize::from(sign_pad);
        let mut out = vec![0x02, u8::try_from(len).expect("short integer")];
        if sign_pad {
            out.push(0);
        }
        out.extend_from_slice(minimal);
        out
    }
    let (r, s) = fixed.split_at(fixed.len() / 2);
    let body = [integer(r), integer(s)].concat();
    assert!(body.len() < 128, "short-form length only");
    let mut out = vec![0x30, u8::try_from(body.len()).expect("short body")];
    out.extend(body);
    out
}

#[tokio::test]
async fn ecdsa_der_signatures_are_never_accepted() {
    let v = verifier();
    for signer in [Signer::ec256(), Signer::ec384()] {
        let good = signer.sign(&valid());
        accepts(&v, &good, "the R||S original").await;
        let (h, p, s) = parts(&good);
        let der = der_ecdsa(&URL_SAFE_NO_PAD.decode(s).expect("b64"));
        assert_eq!(der[0], 0x30);
        let token = format!("{h}.{p}.{}", b64url(der));
        let case = format!("{:?} signature in DER", signer.alg);
        expect_err_in(
            v.verify(&token).await,
            &token,
            &[ErrorKind::BadSignature, ErrorKind::Malformed],
            &case,
        );
    }
}

// ---------------------------------------------------------------------------
// Algorithms: none, unknown, key confusion, pinning
// ---------------------------------------------------------------------------

#[tokio::test]
async fn alg_none_is_refused_in_every_casing() {
    let v = verifier();
    let payload = valid().to_string();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "typ": "JWT"}).to_string();
        // A non-empty bogus signature: refused by name.
        let bogus = raw_token(&header, &payload, "c2lnbmF0dXJl");
        let err = rejects(&v, &bogus, ErrorKind::UnsupportedAlgorithm, alg).await;
        assert_message_names(&err, "none", alg);

        // A trusted kid and a real RS256 signature change nothing.
        let signed =
            Signer::rsa_a().sign_with_header(&json!({"alg": alg, "typ": "JWT", "kid": "rsa-a"}), &valid());
        rejects(&v, &signed, ErrorKind::UnsupportedAlgorithm, alg).await;

        // Unsigned: `h.p.` and `h.p`.
        let unsigned = format!("{}.{}.", b64url(&header), b64url(&payload));
        expect_err_in(
            v.verify(&unsigned).await,
            &unsigned,
            &[ErrorKind::Malformed, ErrorKind::UnsupportedAlgorithm],
            &format!("{alg}: h.p."),
        );
        let two_parts = format!("{}.{}", b64url(&header), b64url(&payload));
        expect_err_in(
            v.verify(&two_parts).await,
            &two_parts,
            &[ErrorKind::Malformed, ErrorKind::UnsupportedAlgorithm],
            &format!("{alg}: h.p"),
        );
    }
}

#[tokio::test]
async fn unknown_or_malformed_alg_values_are_refused() {
    let v = verifier();
    let cases = [
        (
            json!({"alg": "HS1", "kid": "hs"}),
            ErrorKind::UnsupportedAlgorithm,
        ),
        (
            json!({"alg": "rs256", "kid": "rsa-a"}),
            ErrorKind::UnsupportedAlgorithm,
        ),
        (
            json!({"alg": "RS256 ", "kid": "rsa-a"}),
            ErrorKind::UnsupportedAlgorithm,
        ),
        (
            json!({"alg": "ES256K", "kid": "ec256"}),
            ErrorKind::UnsupportedAlgorithm,
        ),
        (json!({"alg": 256, "kid": "rsa-a"}), ErrorKind::Malformed),
        (json!({"alg": null, "kid": "rsa-a"}), ErrorKind::Malformed),
        (json!({"kid": "rsa-a"}), ErrorKind::Malformed),
    ];
    for (header, kind) in cases {
        let token = Signer::rsa_a().sign_with_header(&header, &valid());
        expect_err(v.verify(&token).await, &token, kind, &header.to_string());
    }
}

#[tokio::test]
async fn hmac_keyed_with_the_rsa_public_key_is_an_algorithm_mismatch() {
    let v = verifier();
    let public_pem = fixture("rsa2048-a.pub.pem");
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let case = format!("{alg:?} keyed with rsa-a's public PEM");
        let header = json!({"alg": format!("{alg:?}"), "typ": "JWT", "kid": "rsa-a"});
        let token = hmac_token(&public_pem, alg, &header, &valid());
        let err = rejects(&v, &token, ErrorKind::AlgorithmMismatch, &case).await;
        assert_message_names(&err, "`rsa-a`", &case);
        assert_message_names(&err, &format!("{alg:?}"), &case);
        assert_message_names(&err, "RS256", &case);
    }
    // Without a kid the forgery lands on the one HS256 key, whose secret it is not.
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let token = hmac_token(&public_pem, Algorithm::HS256, &header, &valid());
    rejects(
        &v,
        &token,
        ErrorKind::BadSignature,
        "HS256 keyed with the PEM, no kid",
    )
    .await;
}

#[tokio::test]
async fn a_pinned_key_refuses_every_other_algorithm() {
    let v = verifier();
    let mut rsa_b_as_rs256 = Signer::rsa_b();
    rsa_b_as_rs256.alg = Algorithm::RS256;
    // (signer, the kid's pinned algorithm). Each RSA token is correctly
    // signed by the very key its kid names, under the switched algorithm.
    let cases = [
        (Signer::rsa_a_with(Algorithm::PS256), "RS256"),
        (Signer::rsa_a_with(Algorithm::RS384), "RS256"),
        (Signer::rsa_a_with(Algorithm::RS512), "RS256"),
        (Signer::rsa_a().with_kid(Some("rsa-a-384")), "RS384"),
        (
            Signer::rsa_a_with(Algorithm::RS512).with_kid(Some("rsa-a-384")),
            "RS384",
        ),
        (rsa_b_as_rs256, "PS256"),
        (Signer::ec384().with_kid(Some("ec256")), "ES256"),
        (Signer::ec256().with_kid(Some("ec384")), "ES384"),
        (Signer::ed25519().with_kid(Some("ec256")), "ES256"),
        (Signer::ec256().with_kid(Some("hs")), "HS256"),
    ];
    for (signer, pinned) in cases {
        let kid = signer.kid.clone().expect("a kid");
        let case = format!("{:?} under kid {kid}", signer.alg);
        let token = signer.sign(&valid());
        let err = rejects(&v, &token, ErrorKind::AlgorithmMismatch, &case).await;
        assert_message_names(&err, &format!("`{kid}`"), &case);
        assert_message_names(&err, pinned, &case);
    }
}

#[tokio::test]
async fn an_algorithm_outside_the_issuers_list_is_unsupported() {
    let only_rs256 = Issuer::new(ISS)
        .audience(AUD)
        .algorithms([Algorithm::RS256])
        .key(pem_key("rsa2048-a.pub.pem", Algorithm::RS256, "rsa-a"))
        .expect("one key");
    let v = verifier_for(only_rs256);
    let token = Signer::ec256().with_kid(Some("rsa-a")).sign(&valid());
    let err = rejects(
        &v,
        &token,
        ErrorKind::UnsupportedAlgorithm,
        "ES256 for an RS256-only issuer",
    )
    .await;
    assert_message_names(&err, "ES256", "allow-list");

    // A key outside the list is a configuration error at build time.
    let err = Verifier::builder()
        .issuer(issuer().algorithms([Algorithm::RS256]))
        .build()
        .expect_err("keys outside the allowed algorithms");
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err}");
}

// ---------------------------------------------------------------------------
// Key ids
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_kid_is_named_in_the_message() {
    let v = verifier();
    let token = Signer::rsa_a().with_kid(Some("k7")).sign(&valid());
    let err = rejects(&v, &token, ErrorKind::UnknownKeyId, "kid k7").await;
    assert_message_names(&err, "`k7`", "kid k7");
    assert_message_names(&err, ISS, "kid k7");
}

#[tokio::test]
async fn hostile_kids_are_unknown_and_stay_short_and_escaped() {
    let v = roomy_verifier();
    let long = "k".repeat(10_000);
    let cases = [
        ("../../etc/passwd", "../../etc/passwd"),
        (long.as_str(), "kkkkkkkk"),
        ("rsa-a\0", "rsa-a\\0"),
        ("a\0b\nc\r\nd", "a\\0b\\nc\\r\\nd"),
        ("' OR '1'='1'; DROP TABLE keys; --", "DROP TABLE keys"),
        ("RSA-A", "RSA-A"),
        (" rsa-a", " rsa-a"),
        ("", "``"),
    ];
    for (kid, shown_as) in cases {
        let token = Signer::rsa_a().with_kid(Some(kid)).sign(&valid());
        let case = format!("kid {:?}", kid.chars().take(20).collect::<String>());
        let err = rejects(&v, &token, ErrorKind::UnknownKeyId, &case).await;
        let text = err.to_string();
        assert!(text.len() < 300, "{case}: {} chars", text.len());
        assert!(
            !text.contains(['\0', '\n', '\r']),
            "{case}: raw control characters: {text:?}"
        );
        assert_message_names(&err, shown_as, &case);
    }
}

#[tokio::test]
async fn a_kid_that_is_not_a_string_is_malformed() {
    let v = verifier();
    for kid in [json!(7), json!(["rsa-a"]), json!({"id": "rsa-a"}), json!(null)] {
        let token = Signer::rsa_a().sign_with_header(&json!({"alg": "RS256", "kid": kid}), &valid());
        rejects(&v, &token, ErrorKind::Malformed, &format!("kid {kid}")).await;
    }
}

// ---------------------------------------------------------------------------
// Header hygiene
// ---------------------------------------------------------------------------

/// rsa-b's public JWK, as `jwks.json` holds it.
fn rsa_b_public_jwk() -> Value {
    let jwks: Value = serde_json::from_slice(&fixture("jwks.json")).expect("JSON");
    jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == "rsa-b"))
        .cloned()
        .expect("rsa-b in jwks.json")
}

#[tokio::test]
async fn headers_that_bring_their_own_key_are_forbidden() {
    let v = verifier();
    // Each token is correctly signed by a key we trust, under its own kid, so
    // only the header check stops it. The `jwk` token is self-signed: the
    // embedded key is the one that signed it.
    let cases = [
        ("jwk", Signer::rsa_b(), json!({"jwk": rsa_b_public_jwk()})),
        (
            "jku",
            Signer::rsa_a(),
            json!({"jku": "https://attacker.test/jwks.json"}),
        ),
        (
            "x5u",
            Signer::rsa_a(),
            json!({"x5u": "https://attacker.test/cert.pem"}),
        ),
        ("x5c", Signer::rsa_a(), json!({"x5c": ["MIIBszCCAVmgAwIBAgIU"]})),
    ];
    for (name, signer, patch) in cases {
        let header = header_with(&signer, patch);
        let token = signer.sign_with_header(&header, &valid());
        let err = rejects(&v, &token, ErrorKind::ForbiddenHeader, name).await;
        assert_message_names(&err, &format!("`{name}`"), name);
    }
}

#[tokio::test]
async fn unknown_critical_extensions_are_refused() {
    let v = verifier();
    let signer = Signer::rsa_a();
    let cases = [
        json!({"crit": ["b64"], "b64": false}),
        json!({"crit": ["exp"], "exp": now() + 60}),
        json!({"crit": ["urn:example:unknown"], "urn:example:unknown": 1}),
        json!({"crit": []}),
        json!({"crit": "b64"}),
    ];
    for patch in cases {
        let case = patch.to_string();
        let token = signer.sign_with_header(&header_with(&signer, patch), &valid());
        rejects(&v, &token, ErrorKind::CriticalHeader, &case).await;
    }
}

/// A non-string `crit` entry is printed whole (`n.to_string()`, not `quote`),
/// so a hostile header makes the error message kilobytes long.
#[tokio::test]
async fn critical_header_message_stays_short_for_hostile_names() {
    let v = verifier();
    let signer = Signer::rsa_a();
    let cases = [
        ("an object entry", json!({"crit": [{"x": "A".repeat(4000)}]})),
        (
            "many names",
            json!({"crit": (0..300).map(|i| format!("ext{i}")).collect::<Vec<_>>()}),
        ),
    ];
    for (case, patch) in cases {
        let token = signer.sign_with_header(&header_with(&signer, patch), &valid());
        assert!(token.len() <= 8 * 1024, "{case}: fits the default size");
        let err = rejects(&v, &token, ErrorKind::CriticalHeader, case).await;
        let len = err.to_string().len();
        assert!(len < 300, "{case}: the message is {len} chars long");
    }
}

#[tokio::test]
async fn nested_tokens_are_refused() {
    let v = verifier();
    let signer = Signer::rsa_a();
    // The payload is an ordinary claims object, so only the `cty` check stops it.
    for cty in ["JWT", "jwt"] {
        let token = signer.sign_with_header(&header_with(&signer, json!({"cty": cty})), &valid());
        rejects(&v, &token, ErrorKind::NestedToken, &format!("cty {cty}")).await;
    }
    let token = signer.sign_with_header(&header_with(&signer, json!({"cty": 1})), &valid());
    rejects(&v, &token, ErrorKind::Malformed, "cty 1").await;
}

// ---------------------------------------------------------------------------
// Claims
// ---------------------------------------------------------------------------

#[tokio::test]
async fn each_bad_claim_fails_with_its_own_kind() {
    use ErrorKind::{
        InvalidAudience as Aud, InvalidClaim as Claim, InvalidIssuer as Iss, IssuedInFuture, NotYetValid,
    };
    let v = verifier();
    let n = now();
    // (case, claims patch, kind, what the message names)
    #[rustfmt::skip]
    let cases = [
        ("missing exp",             json!({"exp": null}),                    Claim, "`exp`"),
        ("exp as a string",         json!({"exp": (n + 300).to_string()}),   Claim, "`exp`"),
        ("exp as a bool",           json!({"exp": true}),                    Claim, "`exp`"),
        ("exp out of range",        json!({"exp": 1e300}),                   Claim, "`exp`"),
        ("nbf as a string",         json!({"nbf": "0"}),                     Claim, "`nbf`"),
        ("iat as an array",         json!({"iat": [n]}),                     Claim, "`iat`"),
        ("sub as a number",         json!({"sub": 5}),                       Claim, "`sub`"),
        ("nbf in the future",       json!({"nbf": n + 120}),                 NotYetValid, "not valid before"),
        ("iat in the future",       json!({"iat": n + 120}),                 IssuedInFuture, "issued at"),
        ("wrong iss",               json!({"iss": "https://evil.test"}),     Iss, "`https://evil.test`"),
        ("iss with a slash",        json!({"iss": "https://issuer.test/"}),  Iss, "`https://issuer.test/`"),
        ("iss as an object",        json!({"iss": {"url": ISS}}),            Iss, "`iss`"),
        ("iss missing",             json!({"iss": null}),                    Iss, "`iss`"),
        ("aud wrong",               json!({"aud": "other"}),                 Aud, "`other`"),
        ("aud in another case",     json!({"aud": "SVC"}),                   Aud, "`SVC`"),
        ("aud numeric",             json!({"aud": 7}),                       Aud, "`aud`"),
        ("aud array without ours",  json!({"aud": ["a", "b"]}),              Aud, "`a`"),
        ("aud array with a number", json!({"aud": [AUD, 7]}),                Aud, "`aud`"),
        ("aud empty array",         json!({"aud": []}),                      Aud, "`aud`"),
        ("aud missing",             json!({"aud": null}),                    Aud, "`aud`"),
    ];
    for (case, patch, kind, names) in cases {
        // Signed by rsa-a: only the claim check stops it.
        let token = Signer::rsa_a().sign(&with(valid(), patch));
        let err = rejects(&v, &token, kind, case).await;
        assert_message_names(&err, names, case);
    }
}

#[tokio::test]
async fn claims_within_the_rules_verify() {
    let v = verifier();
    let n = now();
    let cases = [
        ("exp 10 s ago, within the 30 s leeway", json!({"exp": n - 10})),
        ("nbf 20 s ahead, within the leeway", json!({"nbf": n + 20})),
        ("iat 20 s ahead, within the leeway", json!({"iat": n + 20})),
        ("aud array holding ours", json!({"aud": ["other", AUD]})),
        ("fractional exp", json!({"exp": n as f64 + 300.5})),
        ("no sub", json!({"sub": null})),
        ("no iat", json!({"iat": null})),
    ];
    for (case, patch) in cases {
        let token = Signer::rsa_a().sign(&with(valid(), patch));
        accepts(&v, &token, case).await;
    }
}

#[tokio::test]
async fn an_expired_token_carries_its_verified_context() {
    let v = verifier();
    let token = Signer::ec256().sign(&claims(ISS, AUD, SUB, -120));
    let err = rejects(&v, &token, ErrorKind::Expired, "expired 120 s ago").await;
    assert_message_names(&err, ISS, "expired");
    let ctx = err.expired_context().expect("Expired carries the context");
    assert_eq!(ctx.subject(), Some(SUB));
    assert_eq!(ctx.issuer(), ISS);
    assert_eq!((ctx.kid(), ctx.algorithm()), (Some("ec256"), Algorithm::ES256));
    assert_redacted(&format!("{ctx:?}"), &token, "expired context");
    let ctx = err.into_expired_context().expect("owned context");
    assert_eq!(ctx.token(), token);
}

#[tokio::test]
async fn expiry_is_reported_only_after_signature_issuer_and_audience() {
    let v = verifier();
    let expired = || claims(ISS, AUD, SUB, -120);
    let cases = [
        (
            "bad signature",
            forger().sign(&expired()),
            ErrorKind::BadSignature,
        ),
        (
            "wrong audience",
            Signer::rsa_a().sign(&with(expired(), json!({"aud": "other"}))),
            ErrorKind::InvalidAudience,
        ),
        (
            "wrong issuer",
            Signer::rsa_a().sign(&with(expired(), json!({"iss": "https://evil.test"}))),
            ErrorKind::InvalidIssuer,
        ),
        (
            "unknown kid",
            Signer::rsa_a().with_kid(Some("k7")).sign(&expired()),
            ErrorKind::UnknownKeyId,
        ),
        (
            "switched algorithm",
            Signer::rsa_a_with(Algorithm::PS256).sign(&expired()),
            ErrorKind::AlgorithmMismatch,
        ),
    ];
    for (case, token, kind) in cases {
        let err = rejects(&v, &token, kind, case).await;
        assert!(err.expired_context().is_none(), "{case}");
    }
    // With `typ` required, a wrong typ also wins over expiry.
    let typed = verifier_for(issuer().typ("at+jwt"));
    let token = Signer::rsa_a().sign(&expired());
    rejects(&typed, &token, ErrorKind::InvalidType, "wrong typ, expired").await;
}

#[tokio::test]
async fn typ_is_enforced_only_when_required() {
    let typed = verifier_for(issuer().typ("at+jwt"));
    let signer = Signer::rsa_a();
    let token_with_typ =
        |typ: Value| signer.sign_with_header(&header_with(&signer, json!({"typ": typ})), &valid());
    for typ in ["at+jwt", "application/at+jwt", "AT+JWT", "Application/AT+JWT"] {
        let token = token_with_typ(json!(typ));
        accepts(&typed, &token, typ).await;
    }
    for typ in [
        json!("JWT"),
        json!("jwt"),
        json!("application/jwt"),
        json!("at+jwt2"),
        json!(null),
    ] {
        let case = format!("typ {typ}");
        let token = token_with_typ(typ);
        let err = rejects(&typed, &token, ErrorKind::InvalidType, &case).await;
        assert_message_names(&err, "at+jwt", &case);
    }
    let token = token_with_typ(json!(7));
    rejects(&typed, &token, ErrorKind::Malformed, "typ 7").await;

    // Not required: any typ, or none, is fine.
    let v = verifier();
    for typ in [json!("JWT"), json!(null)] {
        let token = token_with_typ(typ.clone());
        accepts(&v, &token, &format!("untyped issuer, typ {typ}")).await;
    }
}

#[tokio::test]
async fn max_lifetime_bounds_exp_minus_iat() {
    let v = verifier_for(issuer().max_lifetime(Duration::from_secs(3600)));
    let token = Signer::rsa_a().sign(&claims(ISS, AUD, SUB, 7200));
    let err = rejects(&v, &token, ErrorKind::InvalidClaim, "lives 2 h").await;
    assert_message_names(&err, "7200", "lives 2 h");
    let token = Signer::rsa_a().sign(&with(valid(), json!({"iat": null})));
    let err = rejects(&v, &token, ErrorKind::InvalidClaim, "no iat").await;
    assert_message_names(&err, "`iat`", "no iat");
    let token = Signer::rsa_a().sign(&claims(ISS, AUD, SUB, 3600));
    accepts(&v, &token, "lives exactly 1 h").await;
}

// ---------------------------------------------------------------------------
// Strict JSON and base64url
// ---------------------------------------------------------------------------

#[tokio::test]
async fn duplicate_members_are_malformed_even_when_signed() {
    let v = verifier();
    let signer = Signer::rsa_a();
    let n = now();
    let exp = n + 300;
    let header = br#"{"alg":"RS256","typ":"JWT","kid":"rsa-a"}"#.as_slice();
    let claims_with =
        |extra: &str| format!(r#"{{"iss":"{ISS}","aud":"{AUD}","iat":{n},"exp":{exp}{extra}}}"#);
    // The same bytes without a duplicate verify: only the duplicate check stops the rest.
    let clean = signer.sign_raw(header, claims_with(r#","sub":"alice""#).as_bytes());
    accepts(&v, &clean, "no duplicate").await;

    let payloads = [
        ("sub twice", claims_with(r#","sub":"alice","sub":"admin""#)),
        ("aud twice", claims_with(r#","aud":"other""#)),
        ("iss twice", claims_with(r#","iss":"https://evil.test""#)),
        ("exp twice", claims_with(&format!(r#","exp":{}"#, n + 999_999))),
        (
            "nested duplicate",
            claims_with(r#","roles":{"admin":false,"admin":true}"#),
        ),
    ];
    for (case, payload) in payloads {
        let token = signer.sign_raw(header, payload.as_bytes());
        let err = rejects(&v, &token, ErrorKind::Malformed, case).await;
        assert_message_names(&err, "duplicate", case);
    }

    let payload = claims_with(r#","sub":"alice""#);
    let headers = [
        (
            "alg twice, none first",
            r#"{"alg":"none","alg":"RS256","kid":"rsa-a"}"#,
        ),
        (
            "alg twice, same value",
            r#"{"alg":"RS256","alg":"RS256","kid":"rsa-a"}"#,
        ),
        ("kid twice", r#"{"alg":"RS256","kid":"k7","kid":"rsa-a"}"#),
        (
            "typ twice",
            r#"{"alg":"RS256","kid":"rsa-a","typ":"JWT","typ":"JWT"}"#,
        ),
    ];
    for (case, header) in headers {
        let token = signer.sign_raw(header.as_bytes(), payload.as_bytes());
        let err = rejects(&v, &token, ErrorKind::Malformed, case).await;
        assert_message_names(&err, "duplicate", case);
    }
}

/// Decodes padding, stray bits, and (with `alphabet`) the standard alphabet:
/// what a lenient verifier would accept.
fn lenient(alphabet: &alphabet::Alphabet) -> GeneralPurpose {
    GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

/// base64url of `base` plus a filler member `"n"` of 0 to 5 `?`, the first
/// whose encoding satisfies `want`. (`?` is 0x3F, so it brings `_` into the
/// encoding; the length varies the padding.)
fn encoded_where(base: &Value, want: impl Fn(&str) -> bool) -> String {
    (0..6)
        .map(|i| b64url(with(base.clone(), json!({"n": "?".repeat(i)})).to_string()))
        .find(|e| want(e))
        .expect("some filler fits")
}

/// The part with its padding spelled out.
fn padded(part: &str) -> String {
    let pad = (4 - part.len() % 4) % 4;
    assert!(pad > 0, "this part needs no padding");
    format!("{part}{}", "=".repeat(pad))
}

/// The part with a stray (ignored) bit set in its last character.
fn with_stray_bit(part: &str) -> String {
    const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert!(!part.len().is_multiple_of(4), "the last character has stray bits");
    let (head, last) = part.split_at(part.len() - 1);
    let index = URL
        .iter()
        .position(|c| *c == last.as_bytes()[0])
        .expect("a base64url character");
    assert_eq!(index & 1, 0, "canonical: the lowest bit is zero");
    let mutated = format!("{head}{}", char::from(URL[index | 1]));
    assert_eq!(
        lenient(&alphabet::URL_SAFE).decode(&mutated).expect("lenient"),
        URL_SAFE_NO_PAD.decode(part).expect("canonical"),
        "a lenient decoder reads the same bytes"
    );
    mutated
}

/// The part in the standard alphabet (`+` and `/`).
fn standard_alphabet(part: &str) -> String {
    assert!(part.contains(['-', '_']), "the part must change");
    let converted = part.replace('-', "+").replace('_', "/");
    assert_eq!(
        lenient(&alphabet::STANDARD).decode(&converted).expect("lenient"),
        URL_SAFE_NO_PAD.decode(part).expect("canonical"),
    );
    converted
}

#[tokio::test]
async fn non_canonical_base64url_is_malformed_even_when_signed() {
    let v = verifier();
    let key = rsa_a_private();
    let sign = |h: &str, p: &str| sign_input(&key, Algorithm::RS256, &format!("{h}.{p}"));
    let header = Signer::rsa_a().header();

    // Parts whose length is not a multiple of 4 (so they have padding and
    // stray bits), and parts holding `-` or `_`.
    let h = encoded_where(&header, |e| !e.len().is_multiple_of(4));
    let p = encoded_where(&valid(), |e| !e.len().is_multiple_of(4));
    let h_alpha = encoded_where(&header, |e| e.contains(['-', '_']));
    let p_alpha = encoded_where(&valid(), |e| e.contains(['-', '_']));
    for (h, p) in [(&h, &p), (&h_alpha, &p_alpha)] {
        expect_ok(v.verify(&sign(h, p)).await, "the canonical originals");
    }
    // An RS256 signature is 256 bytes: 342 characters, padding `==`, 4 stray bits.
    let canonical = sign(&h, &p);
    let s = parts(&canonical).2;
    // A signature holding `-` or `_`: vary the payload until one does.
    let with_dash = (0..64)
        .map(|i| {
            sign(
                &h,
                &b64url(with(valid(), json!({"jti": format!("j{i}")})).to_string()),
            )
        })
        .find(|t| parts(t).2.contains(['-', '_']))
        .expect("some signature holds - or _");
    let (dh, dp, ds) = parts(&with_dash);

    let cases = [
        ("padded header", sign(&padded(&h), &p)),
        ("padded payload", sign(&h, &padded(&p))),
        ("padded signature", format!("{h}.{p}.{}", padded(s))),
        ("stray bits in the header", sign(&with_stray_bit(&h), &p)),
        ("stray bits in the payload", sign(&h, &with_stray_bit(&p))),
        (
            "stray bits in the signature",
            format!("{h}.{p}.{}", with_stray_bit(s)),
        ),
        (
            "header in + / alphabet",
            sign(&standard_alphabet(&h_alpha), &p_alpha),
        ),
        (
            "payload in + / alphabet",
            sign(&h_alpha, &standard_alphabet(&p_alpha)),
        ),
        (
            "signature in + / alphabet",
            format!("{dh}.{dp}.{}", standard_alphabet(ds)),
        ),
        ("trailing newline", format!("{canonical}\n")),
        (
            "space inside the signature",
            format!("{h}.{p}.{} {}", &s[..10], &s[10..]),
        ),
        ("four parts", format!("{canonical}.")),
        ("empty signature", format!("{h}.{p}.")),
        ("empty payload", format!("{h}..{s}")),
    ];
    for (case, token) in cases {
        rejects(&v, &token, ErrorKind::Malformed, case).await;
    }
}

// ---------------------------------------------------------------------------
// Size
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_oversize_token_is_refused_before_anything_else() {
    let big = Signer::rsa_a().sign(&with(valid(), json!({"blob": "x".repeat(9000)})));
    assert!(big.len() > 8 * 1024);
    let err = expect_err(
        verifier().verify(&big).await,
        &big,
        ErrorKind::TooLarge,
        "9 KB token, default limit",
    );
    assert_message_names(&err, "8192", "default limit");
    // Garbage of that size is refused for its size, not parsed.
    let junk = "!".repeat(9000);
    expect_err(verifier().verify(&junk).await, &junk, ErrorKind::TooLarge, "junk");

    // The limit is configurable, both ways, and inclusive.
    let roomy = build(Verifier::builder().issuer(issuer()).max_token_size(16 * 1024));
    accepts(&roomy, &big, "16 KiB limit").await;
    let small = Signer::rsa_a().sign(&valid());
    let exact = build(Verifier::builder().issuer(issuer()).max_token_size(small.len()));
    accepts(&exact, &small, "a token exactly at the limit").await;
    let tight = build(
        Verifier::builder()
            .issuer(issuer())
            .max_token_size(small.len() - 1),
    );
    rejects(&tight, &small, ErrorKind::TooLarge, "one byte over").await;

    // Through the carrier as well.
    let mut headers = Headers::new();
    headers.append("Authorization", format!("Bearer {big}"));
    expect_err(
        verifier().verify_headers(&headers).await,
        &big,
        ErrorKind::TooLarge,
        "via headers",
    );
}

// ---------------------------------------------------------------------------
// Keys and configuration
// ---------------------------------------------------------------------------

#[test]
fn weak_or_unfit_keys_are_configuration_errors() {
    let secret = hmac_secret("hs256.secret");
    let cases = [
        (
            "RSA 1024",
            Key::from_pem(&fixture("rsa1024.pub.pem"), Algorithm::RS256),
            "1024 bits",
        ),
        (
            "16-byte HMAC secret",
            Key::from_secret(&hmac_secret("hs-short.secret"), Algorithm::HS256),
            "16 bytes",
        ),
        (
            "RSA public PEM as an HMAC key",
            Key::from_pem(&fixture("rsa2048-a.pub.pem"), Algorithm::HS256),
            "HMAC",
        ),
        (
            "secret for RS256",
            Key::from_secret(&secret, Algorithm::RS256),
            "RS256",
        ),
        (
            "P-256 key for ES384",
            Key::from_pem(&fixture("ec256.pub.pem"), Algorithm::ES384),
            "ES384",
        ),
        (
            "P-384 key for ES256",
            Key::from_pem(&fixture("ec384.pub.pem"), Algorithm::ES256),
            "ES256",
        ),
        (
            "RSA key for ES256",
            Key::from_pem(&fixture("rsa2048-a.pub.pem"), Algorithm::ES256),
            "ES256",
        ),
        (
            "EC key for EdDSA",
            Key::from_pem(&fixture("ec256.pub.pem"), Algorithm::EdDSA),
            "",
        ),
    ];
    for (case, result, names) in cases {
        let err = result.expect_err(case);
        assert_eq!(err.kind(), ErrorKind::InvalidKey, "{case}: {err}");
        assert_eq!(err.class(), ErrorClass::Configuration, "{case}");
        assert_message_names(&err, names, case);
    }
}

/// A key that could never verify is refused where it is configured, with the reason: from a
/// PEM (a P-256 point off the curve), from a JWK (an RSA exponent of 1), or in a key set file
/// (which fails as a whole, naming the key).
#[test]
fn keys_that_could_never_verify_are_refused_at_load() {
    // ec256.pub.pem with the last bit of y flipped.
    let pem = String::from_utf8(fixture("ec256.pub.pem")).expect("PEM text");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64");
    *der.last_mut().expect("a point") ^= 1;
    let off_curve = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&der)
    );
    let err = Key::from_pem(off_curve.as_bytes(), Algorithm::ES256).expect_err("off the curve");
    assert_eq!(err.kind(), ErrorKind::InvalidKey, "{err}");
    assert_message_names(&err, "not on the curve P-256", "PEM");

    let jwks: Value = serde_json::from_slice(&fixture("jwks.json")).expect("JSON");
    let mut e1 = jwks["keys"][0].clone();
    e1["e"] = json!("AQ");
    let err = Key::from_jwk(&e1.to_string()).expect_err("e = 1");
    assert_eq!(err.kind(), ErrorKind::InvalidKey, "{err}");
    assert_message_names(&err, "exponent 1;", "JWK");

    let mut file = jwks.clone();
    file["keys"][0] = e1;
    let err = KeySet::from_jwks(file.to_string().as_bytes()).expect_err("a file with e = 1");
    assert_eq!(err.kind(), ErrorKind::InvalidKey, "{err}");
    assert_eq!(err.class(), ErrorClass::Configuration);
    assert_message_names(&err, "`rsa-a`", "file");
    assert_message_names(&err, "exponent 1;", "file");
}

/// RFC 7518 §3.2: the HMAC key must be at least as long as the hash output,
/// 48 bytes for HS384 and 64 for HS512. key.rs says so but checks 32 for all.
#[test]
fn hmac_secrets_shorter_than_their_hash_are_refused() {
    let secret_48 = hmac_secret("hs256.secret");
    assert_eq!(secret_48.len(), 48);
    let cases = [
        (
            "32 bytes for HS384",
            Key::from_secret(&[7u8; 32], Algorithm::HS384),
        ),
        (
            "48 bytes for HS512",
            Key::from_secret(&secret_48, Algorithm::HS512),
        ),
    ];
    for (case, result) in cases {
        let err = result.expect_err(case);
        assert_eq!(err.kind(), ErrorKind::InvalidKey, "{case}: {err}");
    }
    assert!(Key::from_secret(&secret_48, Algorithm::HS384).is_ok());
}

#[test]
fn leeway_over_five_minutes_is_refused_at_build() {
    let err = Verifier::builder()
        .issuer(issuer().leeway(MAX_LEEWAY + Duration::from_secs(1)))
        .build()
        .expect_err("301 s of leeway");
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err}");
    assert_eq!(err.class(), ErrorClass::Configuration);
    assert_message_names(&err, ISS, "leeway");
    assert_eq!(MAX_LEEWAY, Duration::from_secs(300));
    build(Verifier::builder().issuer(issuer().leeway(MAX_LEEWAY)));
}

#[test]
fn an_incomplete_setup_is_refused_at_build() {
    let cases = [
        ("no issuer", Verifier::builder()),
        (
            "no audience",
            Verifier::builder().issuer(Issuer::new(ISS).keys(key_set())),
        ),
        (
            "no keys",
            Verifier::builder().issuer(Issuer::new(ISS).audience(AUD)),
        ),
        (
            "empty key set",
            Verifier::builder().issuer(Issuer::new(ISS).audience(AUD).keys(KeySet::default())),
        ),
        (
            "the same issuer twice",
            Verifier::builder().issuer(issuer()).issuer(issuer()),
        ),
    ];
    for (case, builder) in cases {
        let err = builder.build().expect_err(case);
        assert_eq!(err.kind(), ErrorKind::Configuration, "{case}: {err}");
        assert_eq!(err.class(), ErrorClass::Configuration, "{case}");
    }
}

// ---------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------

#[tokio::test]
async fn verify_at_judges_time_against_the_given_clock() {
    let token = Signer::rsa_a().sign(&json!({
        "iss": ISS, "aud": AUD, "sub": SUB, "iat": T0, "nbf": T0, "exp": T0 + 600,
    }));
    let v = verifier();
    // (offset from T0, expected); the default leeway is 30 s.
    let cases = [
        (-31, Some(ErrorKind::NotYetValid)),
        (-30, None),
        (0, None),
        (629, None),
        (630, Some(ErrorKind::Expired)),
        (86_400, Some(ErrorKind::Expired)),
    ];
    for (offset, expected) in cases {
        let case = format!("T0 {offset:+} s");
        let result = v.verify_at(&token, at(T0 + offset)).await;
        match expected {
            None => {
                let ctx = expect_ok(result, &case);
                assert_eq!(ctx.claims().expires_at(), Some(T0 + 600));
            }
            Some(kind) => {
                expect_err(result, &token, kind, &case);
            }
        }
    }
    // Now, years later, the same token is long expired.
    rejects(&v, &token, ErrorKind::Expired, "the real clock").await;

    // With no leeway the edges are exact.
    let strict = verifier_for(issuer().leeway(Duration::ZERO));
    expect_ok(strict.verify_at(&token, at(T0 + 599)).await, "leeway 0, T0+599");
    expect_err(
        strict.verify_at(&token, at(T0 + 600)).await,
        &token,
        ErrorKind::Expired,
        "leeway 0, T0+600",
    );
    expect_err(
        strict.verify_at(&token, at(T0 - 1)).await,
        &token,
        ErrorKind::NotYetValid,
        "leeway 0, T0-1",
    );
}

/// check_time computes `nbf - now` and `iat - now` unchecked: with a clock
/// before 1970 (verify_at takes any SystemTime) a far-future `nbf` or `iat`
/// overflows, which panics in debug builds.
#[tokio::test]
async fn a_clock_before_1970_does_not_panic_on_far_future_dates() {
    let v = verifier();
    let cases = [
        ("nbf", json!({"nbf": i64::MAX}), ErrorKind::NotYetValid),
        ("iat", json!({"iat": i64::MAX}), ErrorKind::IssuedInFuture),
    ];
    for (case, patch, kind) in cases {
        let token = Signer::rsa_a().sign(&with(valid(), patch));
        let result = v.verify_at(&token, at(-3600)).await;
        expect_err(result, &token, kind, case);
    }
}

// ---------------------------------------------------------------------------
// Issuers
// ---------------------------------------------------------------------------

#[tokio::test]
async fn each_issuer_judges_its_tokens_with_its_own_keys_only() {
    const A: &str = "https://a.test";
    const B: &str = "https://b.test";
    // Both issuers have a key named `k1`, pinned to RS256: only the issuer
    // decides which one applies.
    let a = Issuer::new(A)
        .audience(AUD)
        .key(pem_key("rsa2048-a.pub.pem", Algorithm::RS256, "k1"))
        .expect("one key");
    let b = Issuer::new(B).audience(AUD).keys(
        KeySet::new([
            pem_key("rsa2048-b.pub.pem", Algorithm::RS256, "k1"),
            pem_key("ec256.pub.pem", Algorithm::ES256, "ec256"),
        ])
        .expect("two keys"),
    );
    let v = build(Verifier::builder().issuer(a).issuer(b));
    let a_key = Signer::rsa_a().with_kid(Some("k1"));
    let mut b_key = Signer::rsa_b().with_kid(Some("k1"));
    b_key.alg = Algorithm::RS256;

    for (iss, signer) in [(A, &a_key), (B, &b_key)] {
        let token = signer.sign(&claims(iss, AUD, SUB, 300));
        let ctx = accepts(&v, &token, iss).await;
        assert_eq!(ctx.issuer_config().name(), iss);
    }
    let cases = [
        (
            "A's iss, B's k1",
            b_key.sign(&claims(A, AUD, SUB, 300)),
            ErrorKind::BadSignature,
            A,
        ),
        (
            "B's iss, A's k1",
            a_key.sign(&claims(B, AUD, SUB, 300)),
            ErrorKind::BadSignature,
            B,
        ),
        (
            "A's iss, B's ec256",
            Signer::ec256().sign(&claims(A, AUD, SUB, 300)),
            ErrorKind::UnknownKeyId,
            A,
        ),
        (
            "A's iss, B's key without kid",
            b_key.clone().with_kid(None).sign(&claims(A, AUD, SUB, 300)),
            ErrorKind::BadSignature,
            A,
        ),
    ];
    for (case, token, kind, judged_by) in cases {
        let err = rejects(&v, &token, kind, case).await;
        assert_message_names(&err, judged_by, case);
    }
}

// ---------------------------------------------------------------------------
// Cache
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_cache_never_extends_a_token() {
    let v = verifier();
    let token = Signer::rsa_a().sign(&claims(ISS, AUD, SUB, 60));
    let first = accepts(&v, &token, "first, now").await;
    let exp = first.claims().expires_at().expect("exp");
    let iat = first.claims().issued_at().expect("iat");

    expect_ok(v.verify_at(&token, at(exp + 29)).await, "cached, within leeway");
    let err = expect_err(
        v.verify_at(&token, at(exp + 30)).await,
        &token,
        ErrorKind::Expired,
        "cached, after exp + leeway",
    );
    assert_eq!(err.expired_context().and_then(AuthContext::subject), Some(SUB));
    expect_err(
        v.verify_at(&token, at(iat - 31)).await,
        &token,
        ErrorKind::IssuedInFuture,
        "cached, before iat - leeway",
    );
    // An expiry does not poison the entry either.
    accepts(&v, &token, "cached, now again").await;
}

#[tokio::test]
async fn a_cached_token_verifies_to_the_same_identity() {
    let v = verifier();
    let token = Signer::ed25519().sign(&valid());
    let first = accepts(&v, &token, "first").await;
    let second = accepts(&v, &token, "second").await;
    let clone = expect_ok(v.clone().verify(&token).await, "through a clone");
    for ctx in [&second, &clone] {
        assert_eq!(ctx.subject(), first.subject());
        assert_eq!(ctx.subject(), Some(SUB));
        assert_eq!((ctx.kid(), ctx.algorithm()), (Some("ed25519"), Algorithm::EdDSA));
        assert_eq!(ctx.token(), token);
    }
    // Without a cache, the same answer.
    let uncached = build(Verifier::builder().issuer(issuer()).cache_capacity(0));
    for _ in 0..2 {
        let ctx = accepts(&uncached, &token, "uncached").await;
        assert_eq!(ctx.subject(), Some(SUB));
    }
}

#[tokio::test]
async fn the_cache_is_keyed_on_the_whole_token() {
    let v = verifier();
    let token = Signer::ec256().sign(&valid());
    accepts(&v, &token, "cached").await;
    let (h, p, _) = parts(&token);
    // Same header and payload, another signature: must not hit the entry.
    let cases = [
        ("zero signature", format!("{h}.{p}.{}", b64url([0u8; 64]))),
        ("the signature of another token", {
            let other = Signer::ec256().sign(&with(valid(), json!({"jti": "other"})));
            format!("{h}.{p}.{}", parts(&other).2)
        }),
    ];
    for (case, forged) in cases {
        rejects(&v, &forged, ErrorKind::BadSignature, case).await;
    }
}

// ---------------------------------------------------------------------------
// Header extraction
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_token_header_is_read_once_in_any_casing() {
    let v = verifier();
    let token = Signer::rsa_a().sign(&valid());
    let bearer = format!("Bearer {token}");

    for name in ["Authorization", "authorization", "AUTHORIZATION"] {
        let mut headers = Headers::new();
        headers.append("x-request-id", "42");
        headers.append(name, bearer.as_str());
        let ctx = expect_ok(v.verify_headers(&headers).await, name);
        assert_eq!(ctx.subject(), Some(SUB));
    }

    for (first, second) in [
        ("Authorization", "authorization"),
        ("AUTHORIZATION", "Authorization"),
        ("authorization", "authorization"),
    ] {
        let case = format!("{first} + {second}");
        let mut headers = Headers::new();
        headers.append(first, bearer.as_str());
        headers.append(second, bearer.as_str());
        let err = expect_err(
            v.verify_headers(&headers).await,
            &token,
            ErrorKind::DuplicateHeader,
            &case,
        );
        assert_message_names(&err, "Authorization", &case);
    }

    let mut headers = Headers::new();
    headers.append("x-request-id", "42");
    headers.append("Authorisation", bearer.as_str());
    expect_err(
        v.verify_headers(&headers).await,
        &token,
        ErrorKind::Missing,
        "no Authorization",
    );
}
