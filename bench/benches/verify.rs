//! Verification cost: jwt-relay against `jsonwebtoken::decode` on the same
//! token and key, uncached per algorithm, and cached for a repeated token.
//!
//! `cargo bench -p jwt-relay-bench --bench verify`

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{BenchmarkId, Criterion, black_box, criterion_group, criterion_main};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use jwt_relay::{Algorithm, Issuer, Key, KeySet, Verifier};
use serde_json::{Value, json};

const ISS: &str = "https://issuer.bench";
const AUD: &str = "svc";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// One algorithm's key pair, read from the fixtures.
struct Case {
    alg: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    key: Key,
}

fn case(alg: Algorithm, private: &str, public: &str) -> Case {
    let (private, public) = (fixture(private), fixture(public));
    let (encoding, decoding) = match alg {
        Algorithm::ES256 | Algorithm::ES384 => (
            EncodingKey::from_ec_pem(&private),
            DecodingKey::from_ec_pem(&public),
        ),
        Algorithm::EdDSA => (
            EncodingKey::from_ed_pem(&private),
            DecodingKey::from_ed_pem(&public),
        ),
        _ => (
            EncodingKey::from_rsa_pem(&private),
            DecodingKey::from_rsa_pem(&public),
        ),
    };
    Case {
        alg,
        encoding: encoding.expect("private fixture"),
        decoding: decoding.expect("public fixture"),
        key: Key::from_pem(&public, alg).expect("public fixture").with_kid("k"),
    }
}

fn hs256() -> Case {
    let secret = base64_secret();
    Case {
        alg: Algorithm::HS256,
        encoding: EncodingKey::from_secret(&secret).expect("secret"),
        decoding: DecodingKey::from_secret(&secret).expect("secret"),
        key: Key::from_secret(&secret, Algorithm::HS256)
            .expect("secret")
            .with_kid("k"),
    }
}

fn base64_secret() -> Vec<u8> {
    use base64::Engine as _;
    let text = String::from_utf8(fixture("hs256.secret")).expect("ascii");
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim())
        .expect("base64url secret")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn token(case: &Case, sub: &str) -> String {
    let mut header = Header::new(case.alg);
    header.kid = Some("k".into());
    let claims = json!({"iss": ISS, "aud": AUD, "sub": sub, "iat": now(), "exp": now() + 3600});
    jsonwebtoken::encode(&header, &claims, &case.encoding).expect("sign")
}

fn verifier(case: &Case, cache: u64) -> Verifier {
    let issuer = Issuer::new(ISS)
        .audience(AUD)
        .keys(KeySet::new([case.key.clone()]).expect("key set"));
    Verifier::builder()
        .issuer(issuer)
        .cache_capacity(cache)
        .build()
        .expect("verifier")
}

/// Runs a future that completes without waiting (static keys never fetch).
fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("verification with static keys does not wait"),
    }
}

fn uncached(c: &mut Criterion) {
    let cases = [
        case(Algorithm::RS256, "rsa2048-a.pem", "rsa2048-a.pub.pem"),
        case(Algorithm::PS256, "rsa2048-b.pem", "rsa2048-b.pub.pem"),
        case(Algorithm::ES256, "ec256.pem", "ec256.pub.pem"),
        case(Algorithm::ES384, "ec384.pem", "ec384.pub.pem"),
        case(Algorithm::EdDSA, "ed25519.pem", "ed25519.pub.pem"),
        hs256(),
    ];
    let mut group = c.benchmark_group("uncached");
    for case in &cases {
        let name = jwt_relay::verify::alg_name(case.alg);
        let token = token(case, "alice");
        let ours = verifier(case, 0);
        assert!(ready(ours.verify(&token)).is_ok(), "{name} token verifies");
        let mut validation = Validation::new(case.alg);
        validation.set_issuer(&[ISS]);
        validation.set_audience(&[AUD]);
        group.bench_with_input(BenchmarkId::new("jsonwebtoken", &name), &token, |b, t| {
            b.iter(|| {
                jsonwebtoken::decode::<Value>(black_box(t), &case.decoding, &validation).expect("valid")
            })
        });
        group.bench_with_input(BenchmarkId::new("jwt-relay", &name), &token, |b, t| {
            b.iter(|| ready(ours.verify(black_box(t))).expect("valid"))
        });
    }
    group.finish();
}

fn cached(c: &mut Criterion) {
    let rs = case(Algorithm::RS256, "rsa2048-a.pem", "rsa2048-a.pub.pem");
    let token = token(&rs, "alice");
    let ours = verifier(&rs, 10_000);
    assert!(ready(ours.verify(&token)).is_ok());
    c.bench_function("cached/jwt-relay/RS256", |b| {
        b.iter(|| ready(ours.verify(black_box(&token))).expect("valid"))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = uncached, cached
}
criterion_main!(benches);
