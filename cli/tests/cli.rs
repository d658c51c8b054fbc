//! The `jwt-relay` binary, run as a user runs it: keys made, tokens minted
//! and verified, key sets checked, exit statuses and output lines asserted.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

mod support;

use support::{ISS, Run, fixture, keygen, run};

const AUD: &str = "billing";

/// `mint` a token for [`ISS`], [`AUD`] and subject `alice`.
fn mint(key: &str, extra: &[&str]) -> String {
    support::mint(key, AUD, extra)
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// `verify` the lines of `stdin` against [`ISS`] and [`AUD`].
fn verify(jwks: &str, stdin: &str, extra: &[&str]) -> Run {
    let mut args = vec!["verify", "--jwks", jwks, "--issuer", ISS, "--audience", AUD];
    args.extend_from_slice(extra);
    run(&args, stdin)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn keygen_mint_verify_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    for (alg, kid, private_members) in [
        ("EdDSA", "ed-1", &["d"][..]),
        ("ES256", "ec-1", &["d"][..]),
        ("RS256", "rsa-1", &["d", "p", "q", "dp", "dq", "qi"][..]),
    ] {
        let (private, public) = keygen(dir.path(), alg, kid);
        let jwk = read_json(&private);
        assert_eq!((jwk["kid"].as_str(), jwk["alg"].as_str()), (Some(kid), Some(alg)));
        assert_eq!(jwk["use"], "sig");
        let jwks = read_json(&public);
        let public_jwk = &jwks["keys"][0];
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
        for member in private_members {
            assert!(jwk[member].is_string(), "{alg}: private `{member}`");
            assert!(public_jwk.get(member).is_none(), "{alg}: public `{member}`");
        }

        let token = mint(private.to_str().unwrap(), &[]);
        let out = verify(public.to_str().unwrap(), &format!("{token}\n"), &[]);
        assert_eq!(out.code, 0, "{alg}: {}{}", out.stdout, out.stderr);
        let verdicts = out.lines();
        assert_eq!(verdicts.len(), 1);
        assert_eq!(verdicts[0]["valid"], true);
        assert_eq!(verdicts[0]["iss"], ISS);
        assert_eq!(verdicts[0]["sub"], "alice");
        assert_eq!(verdicts[0]["kid"], kid);
        assert!(verdicts[0]["exp"].as_i64().unwrap() > unix_now());
    }
}

#[test]
fn keygen_refuses_secrets_and_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let out = run(
        &["keygen", "--alg", "HS256", "--kid", "h", "--out-dir", out_dir],
        "",
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("shared secret"), "{}", out.stderr);

    keygen(dir.path(), "ES256", "k");
    let again = run(
        &["keygen", "--alg", "ES256", "--kid", "k", "--out-dir", out_dir],
        "",
    );
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);

    let escape = run(
        &["keygen", "--alg", "ES256", "--kid", "../k", "--out-dir", out_dir],
        "",
    );
    assert_eq!(escape.code, 2);
}

#[test]
fn expired_token_is_permanent_and_never_printed() {
    let token = mint(&fixture("private/ed25519.jwk.json"), &["--ttl", "-10m"]);
    let out = verify(&fixture("jwks.json"), &format!("{token}\n"), &[]);
    assert_eq!(out.code, 1);
    let verdicts = out.lines();
    assert_eq!(verdicts.len(), 1);
    assert_eq!(verdicts[0]["valid"], false);
    assert_eq!(verdicts[0]["kind"], "Expired");
    assert_eq!(verdicts[0]["class"], "permanent");
    assert!(verdicts[0]["error"].as_str().unwrap().contains("expired"));
    let signature = token.rsplit('.').next().unwrap();
    for output in [&out.stdout, &out.stderr] {
        assert!(!output.contains(&token));
        assert!(!output.contains(signature));
    }
}

#[test]
fn wrong_audience() {
    let token = mint(&fixture("private/ec256.jwk.json"), &[]);
    let out = run(
        &[
            "verify",
            "--jwks",
            &fixture("jwks.json"),
            "--issuer",
            ISS,
            "--audience",
            "shipping",
        ],
        &token,
    );
    assert_eq!(out.code, 1);
    let verdicts = out.lines();
    assert_eq!(verdicts[0]["kind"], "InvalidAudience");
    assert_eq!(verdicts[0]["class"], "permanent");
}

#[test]
fn repeated_issuers_and_audiences() {
    let token = mint(&fixture("private/ec256.jwk.json"), &[]);
    let out = run(
        &[
            "verify",
            "--jwks",
            &fixture("jwks.json"),
            "--issuer",
            "https://other.test",
            "--issuer",
            ISS,
            "--audience",
            "shipping",
            "--audience",
            AUD,
        ],
        &token,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

#[test]
fn mixed_input_one_verdict_per_token() {
    let good = mint(&fixture("private/rsa-a.jwk.json"), &[]);
    let input = format!("{good}\n\n   \nnot-a-token\n");
    let out = verify(&fixture("jwks.json"), &input, &[]);
    assert_eq!(out.code, 1);
    let verdicts = out.lines();
    assert_eq!(verdicts.len(), 2, "{}", out.stdout);
    assert_eq!(verdicts[0]["valid"], true);
    assert_eq!(verdicts[0]["kid"], "rsa-a");
    assert_eq!(verdicts[1]["valid"], false);
    assert_eq!(verdicts[1]["kind"], "Malformed");
    assert!(!out.stdout.contains("not-a-token"));
}

#[test]
fn now_turns_back_the_clock() {
    let now = unix_now();
    let iat = format!("iat={}", now - 3600);
    let token = mint(
        &fixture("private/ec384.jwk.json"),
        &["--ttl=-10m", "--claim", &iat],
    );
    let input = format!("{token}\n");
    assert_eq!(verify(&fixture("jwks.json"), &input, &[]).code, 1);
    let then = (now - 1200).to_string();
    let out = verify(&fixture("jwks.json"), &input, &["--now", &then]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(out.lines()[0]["valid"], true);
}

#[test]
fn alg_list_narrows_the_key_set() {
    let token = mint(&fixture("private/ed25519.jwk.json"), &[]);
    let jwks = fixture("jwks.json");
    let refused = verify(&jwks, &token, &["--alg", "RS256,ES256"]);
    assert_eq!(refused.code, 1);
    assert_eq!(refused.lines()[0]["kind"], "UnsupportedAlgorithm");
    let accepted = verify(&jwks, &token, &["--alg", "ES256,EdDSA"]);
    assert_eq!(accepted.code, 0, "{}", accepted.stderr);
}

#[test]
fn configuration_errors_exit_2() {
    let missing = verify("/nonexistent/jwks.json", "", &[]);
    assert_eq!(missing.code, 2);
    assert!(missing.stdout.is_empty());
    assert!(missing.stderr.contains("/nonexistent/jwks.json"));

    let jwks = fixture("jwks.json");
    assert_eq!(verify(&jwks, "", &["--leeway", "3600"]).code, 2);
    assert_eq!(verify(&jwks, "", &["--alg", "XX256"]).code, 2);
    let no_issuer = run(&["verify", "--jwks", &jwks, "--audience", AUD], "");
    assert_eq!(no_issuer.code, 2);
}

#[test]
fn jwks_check_fixture_set() {
    let out = run(&["jwks", "check", &fixture("jwks.json")], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(lines.iter().all(|l| l.starts_with("accepted ")));
    assert!(lines.contains(&"accepted kid=rsa-b kty=RSA alg=PS256"));
    assert!(lines.contains(&"accepted kid=ed25519 kty=OKP alg=EdDSA"));
}

#[test]
fn jwks_check_rejects_a_1024_bit_rsa_key() {
    let dir = tempfile::tempdir().unwrap();
    // A 1024-bit modulus: 128 bytes of 0xff, base64url.
    let n = format!("{}8", "_".repeat(170));
    let doc = serde_json::json!({"keys": [
        {"kty": "RSA", "kid": "weak", "n": n, "e": "AQAB", "use": "sig"},
        {"kty": "EC", "kid": "enc", "use": "enc", "crv": "P-256"},
    ]});
    let path = dir.path().join("weak.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    let out = run(&["jwks", "check", path.to_str().unwrap()], "");
    assert_eq!(out.code, 1);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("rejected kid=weak kty=RSA reason=") && lines[0].contains("1024"),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("skipped kid=enc kty=EC reason="));
}

#[test]
fn jwks_check_names_keys_that_could_never_verify() {
    let dir = tempfile::tempdir().unwrap();
    let fixture_set = read_json(Path::new(&fixture("jwks.json")));
    let key = |kid: &str| -> Value {
        let keys = fixture_set["keys"].as_array().unwrap();
        keys.iter().find(|k| k["kid"] == kid).unwrap().clone()
    };
    let mut e1 = key("rsa-a");
    e1["kid"] = "rsa-e1".into();
    e1["e"] = "AQ".into();
    let mut off_curve = key("ec256");
    off_curve["kid"] = "ec-off".into();
    // The fixture's x with y = x: off the curve.
    off_curve["y"] = off_curve["x"].clone();
    let mut small = key("ed25519");
    small["kid"] = "ed-small".into();
    small["x"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
    // An encryption key sharing a signature key's kid (RFC 7517 §4.5) is skipped, not a clash.
    let mut enc = key("rsa-b");
    enc["kid"] = "ec256".into();
    enc["use"] = "enc".into();
    let doc = serde_json::json!({"keys": [e1, off_curve, small, enc, key("ec256")]});
    let path = dir.path().join("never.json");
    std::fs::write(&path, doc.to_string()).unwrap();

    let out = run(&["jwks", "check", path.to_str().unwrap()], "");
    assert_eq!(out.code, 1, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", out.stdout);
    for (line, (start, why)) in lines.iter().zip([
        (
            "rejected kid=rsa-e1 kty=RSA reason=",
            "RSA exponent 1; it must be odd and at least 3",
        ),
        ("rejected kid=ec-off kty=EC reason=", "not on the curve P-256"),
        ("rejected kid=ed-small kty=OKP reason=", "small-order point"),
        ("skipped kid=ec256 kty=RSA reason=", "\"sig\""),
    ]) {
        assert!(line.starts_with(start) && line.contains(why), "{line}");
    }
    assert_eq!(lines[4], "accepted kid=ec256 kty=EC alg=ES256");
}

#[test]
fn jwks_check_refuses_what_is_not_a_key_set() {
    let dir = tempfile::tempdir().unwrap();
    let not_jwks = dir.path().join("not.json");
    std::fs::write(&not_jwks, "[]").unwrap();
    let dup = dir.path().join("dup.json");
    let key = r#"{"kty":"OKP","crv":"Ed25519","x":"umjiozaFEu2omctSHZ_wuzWMi9JfI3xFObPkUcPwsuM","kid":"a"}"#;
    std::fs::write(&dup, format!(r#"{{"keys":[{key},{key}]}}"#)).unwrap();
    for path in [not_jwks, dup, dir.path().join("missing.json")] {
        let out = run(&["jwks", "check", path.to_str().unwrap()], "");
        assert_eq!(out.code, 2, "{}", path.display());
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn mint_with_fixture_jwks_and_pems() {
    let jwks = fixture("jwks.json");
    let keys = [
        ("rsa-a", "rsa2048-a.pem", "RS256"),
        ("rsa-b", "rsa2048-b.pem", "PS256"),
        ("ec256", "ec256.pem", "ES256"),
        ("ec384", "ec384.pem", "ES384"),
        ("ed25519", "ed25519.pem", "EdDSA"),
    ];
    let mut input = String::new();
    for (kid, pem, alg) in keys {
        input += &mint(&fixture(&format!("private/{kid}.jwk.json")), &[]);
        input += "\n";
        input += &mint(&fixture(pem), &["--alg", alg, "--kid", kid]);
        input += "\n";
    }
    let out = verify(&jwks, &input, &[]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let kids: Vec<_> = out.lines().iter().map(|v| v["kid"].clone()).collect();
    let want: Vec<_> = keys.iter().flat_map(|(kid, ..)| [*kid, *kid]).collect();
    assert_eq!(kids, want);
}

#[test]
fn mint_claims_audiences_and_refusals() {
    let key = fixture("private/ec256.jwk.json");
    let token = mint(
        &key,
        &[
            "--aud",
            "shipping",
            "--claim",
            "tenant=acme",
            "--claim",
            "n=[1,2]",
        ],
    );
    let out = run(
        &[
            "verify",
            "--jwks",
            &fixture("jwks.json"),
            "--issuer",
            ISS,
            "--audience",
            "shipping",
        ],
        &token,
    );
    assert_eq!(out.code, 0, "{}", out.stdout);

    // A PEM key needs --alg; a key cannot sign another algorithm; the
    // public JWKS cannot sign at all.
    for args in [
        vec!["--key", &fixture("ec256.pem")[..]],
        vec!["--key", &key[..], "--alg", "RS256"],
        vec!["--key", &fixture("jwks.json")[..]],
    ] {
        let mut all = vec!["mint", "--iss", ISS, "--aud", AUD, "--sub", "s", "--ttl", "1m"];
        all.extend(args);
        let out = run(&all, "");
        assert_eq!(out.code, 2, "{all:?}");
        assert!(out.stdout.is_empty());
    }
}

mod remote {
    use super::*;

    use axum::Router;
    use axum::http::{StatusCode, header};
    use axum::routing::get;

    /// Serves the fixture JWKS at `/jwks.json` and a redirect at `/moved`.
    async fn serve() -> String {
        let jwks = std::fs::read_to_string(fixture("jwks.json")).unwrap();
        let app = Router::new()
            .route(
                "/jwks.json",
                get(move || async move { ([(header::CONTENT_TYPE, "application/json")], jwks) }),
            )
            .route(
                "/moved",
                get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/jwks.json")]) }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn verify_against_a_jwks_url() {
        let base = serve().await;
        let good = mint(&fixture("private/rsa-b.jwk.json"), &[]);
        let expired = mint(&fixture("private/ec256.jwk.json"), &["--ttl", "-10m"]);
        let url = format!("{base}/jwks.json");
        let input = format!("{good}\n{expired}\n");
        let out = tokio::task::spawn_blocking(move || verify(&url, &input, &[]))
            .await
            .unwrap();
        assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
        let verdicts = out.lines();
        assert_eq!(verdicts[0]["valid"], true);
        assert_eq!(verdicts[0]["kid"], "rsa-b");
        assert_eq!(verdicts[1]["kind"], "Expired");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_plain_http_jwks_url_off_loopback_needs_the_dangerous_flag() {
        let base = serve().await;
        let good = mint(&fixture("private/rsa-b.jwk.json"), &[]);
        // 0.0.0.0 is not loopback by the rule, yet reaches this host's server on Linux.
        let url = format!("{}/jwks.json", base.replacen("127.0.0.1", "0.0.0.0", 1));
        let (refused, allowed) = tokio::task::spawn_blocking(move || {
            let input = format!("{good}\n");
            (
                verify(&url, &input, &[]),
                verify(&url, &input, &["--dangerous-allow-plain-http"]),
            )
        })
        .await
        .unwrap();
        assert_eq!(refused.code, 2, "{}{}", refused.stdout, refused.stderr);
        assert!(refused.stderr.contains("0.0.0.0"), "{}", refused.stderr);
        assert!(refused.stderr.contains("plain http"), "{}", refused.stderr);
        assert_eq!(allowed.code, 0, "{}{}", allowed.stdout, allowed.stderr);
        assert_eq!(allowed.lines()[0]["valid"], true);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_key_set_cooldown_and_age_are_flags() {
        let base = serve().await;
        let good = mint(&fixture("private/rsa-b.jwk.json"), &[]);
        let url = format!("{base}/jwks.json");
        let file = fixture("jwks.json");
        let (set, on_a_file, bad) = tokio::task::spawn_blocking(move || {
            let input = format!("{good}\n");
            let flags = ["--jwks-cooldown", "5s", "--jwks-max-age", "2m"];
            (
                verify(&url, &input, &flags),
                verify(&file, &input, &flags),
                verify(&url, &input, &["--jwks-cooldown", "soon"]),
            )
        })
        .await
        .unwrap();
        assert_eq!(set.code, 0, "{}{}", set.stdout, set.stderr);
        assert_eq!(on_a_file.code, 2);
        assert!(on_a_file.stderr.contains("not a file"), "{}", on_a_file.stderr);
        assert_eq!(bad.code, 2);
        assert!(bad.stderr.contains("soon"), "{}", bad.stderr);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn jwks_check_a_url() {
        let base = serve().await;
        let (ok, moved) = tokio::task::spawn_blocking(move || {
            (
                run(&["jwks", "check", &format!("{base}/jwks.json")], ""),
                run(&["jwks", "check", &format!("{base}/moved")], ""),
            )
        })
        .await
        .unwrap();
        assert_eq!(ok.code, 0, "{}", ok.stderr);
        assert_eq!(ok.stdout.lines().count(), 5);
        assert_eq!(moved.code, 2);
        assert!(
            moved.stderr.contains("redirects are not followed"),
            "{}",
            moved.stderr
        );
    }
}
