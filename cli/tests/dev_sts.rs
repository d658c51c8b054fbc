//! `jwt-relay dev-sts` run as a user runs it: started on a free port, its
//! announcement line read, its endpoints used, then killed.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The running service; killed when dropped, even when a test fails.
struct Service {
    child: Child,
    announced: Value,
}

impl Service {
    fn start(args: &[&str]) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jwt-relay"))
            .arg("dev-sts")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let announced = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        Service { child, announced }
    }

    fn get(&self, name: &str) -> &str {
        self.announced[name].as_str().unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get_json(url: &str) -> Value {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK, "{url}");
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

fn fixture(name: &str) -> String {
    format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn announces_a_free_port_and_serves_discovery() {
    let service = Service::start(&["--listen", "127.0.0.1:0"]);
    let issuer = service.get("issuer");
    let port: u16 = issuer.strip_prefix("http://127.0.0.1:").unwrap().parse().unwrap();
    assert_ne!(port, 0, "the real port is announced");
    assert_eq!(service.get("token_endpoint"), format!("{issuer}/token"));
    assert_eq!(service.announced["clients"], serde_json::json!(["jwt-relay"]));
    assert!(!service.announced.to_string().contains("dev-secret"));

    let doc = get_json(&format!("{issuer}/.well-known/openid-configuration")).await;
    assert_eq!(doc["issuer"], issuer);
    assert_eq!(doc["jwks_uri"], service.get("jwks_uri"));
    let jwks = get_json(service.get("jwks_uri")).await;
    assert_eq!(jwks["keys"][0]["kid"], "dev-sts-1");
}

#[tokio::test]
async fn exchanges_a_token_minted_with_its_key() {
    let key = fixture("private/ec256.jwk.json");
    let service = Service::start(&[
        "--listen",
        "127.0.0.1:0",
        "--key",
        &key,
        "--ttl",
        "2m",
        "--client",
        "orders:s3cret:with-colon",
    ]);
    assert!(!service.announced.to_string().contains("s3cret"));
    let issuer = service.get("issuer");
    let minted = Command::new(env!("CARGO_BIN_EXE_jwt-relay"))
        .args(["mint", "--key", &key, "--iss", issuer, "--aud", "orders"])
        .args(["--sub", "alice", "--ttl", "5m"])
        .output()
        .unwrap();
    assert!(minted.status.success());
    let token = String::from_utf8(minted.stdout).unwrap();

    let form = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
         &subject_token={}&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt\
         &audience=billing",
        token.trim()
    );
    let response = reqwest::Client::new()
        .post(service.get("token_endpoint"))
        .basic_auth("orders", Some("s3cret:with-colon"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(answer["expires_in"], 120);
    assert!(answer["access_token"].as_str().unwrap().split('.').count() == 3);
}

#[test]
fn refuses_an_unusable_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_jwt-relay"))
        .args(["dev-sts", "--listen", "127.0.0.1:0", "--key"])
        .arg(fixture("private/rsa-a.jwk.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("P-256"), "{stderr}");
}
