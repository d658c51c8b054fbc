//! Token exchange against a server built on another implementation: `@jmondi/oauth2-server` 4.x
//! (npm), whose token-exchange answers carry no `issued_token_type` although RFC 8693 requires
//! it. `tests/interop/jmondi/server.mjs` runs it on a loopback port with a key this test makes;
//! the consumer's `Exchange` policy and the publisher's `Propagator` must take its tokens when
//! they verify for the same user, and its refusals must be classed as from any service.
//!
//! Needs `node` and `npm ci --prefix tests/interop/jmondi` (`.ci/run` does both): skipped
//! loudly without them on a developer's machine, a failure under `CI=true`.

#![cfg(feature = "testing")]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use jwt_relay::consume::{MessageInfo, Outcome};
use jwt_relay::exchange::{ClientAuth, ExchangeCache, ExchangeRequest, TokenExchanger};
use jwt_relay::jsonwebtoken::{Header, encode};
use jwt_relay::testing::{PrivateKey, program_available};
use jwt_relay::verify::now_unix;
use jwt_relay::{
    Acceptance, Algorithm, ErrorKind, Exchange, Guard, Headers, Issuer, Key, Propagator, Rfc8693Client,
    Verifier,
};
use serde_json::{Value, json};

const ISSUER: &str = "https://jmondi.interop.test";
const KID: &str = "jmondi-1";
const CLIENT_ID: &str = "relay";
const CLIENT_SECRET: &str = "interop-secret";

/// The server's folder, where `npm ci` installs its dependencies.
fn server_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/jmondi")
}

/// `node` on the `PATH`, if there is one.
fn node() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("node"))
        .find(|candidate| candidate.is_file())
}

/// The running server: stopped (its standard input closed, then killed) when dropped.
struct JmondiServer {
    child: Child,
    token_endpoint: String,
    key: PrivateKey,
}

impl Drop for JmondiServer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl JmondiServer {
    /// Starts the server with a fresh ES256 key; `None` when node or the server's
    /// dependencies are missing (outside CI).
    fn start() -> Option<JmondiServer> {
        let node = node();
        let shown = node
            .as_deref()
            .map_or_else(|| "`node` on the PATH".to_owned(), |p| p.display().to_string());
        if !program_available("Node.js", &shown) {
            return None;
        }
        let installed = server_dir().join("node_modules/@jmondi/oauth2-server/package.json");
        let installed = installed.display().to_string();
        if !program_available(
            "@jmondi/oauth2-server (npm ci --prefix tests/interop/jmondi)",
            &installed,
        ) {
            return None;
        }
        node.map(|node| JmondiServer::spawn(&node))
    }

    /// Runs `server.mjs` with `node` and waits until it listens.
    fn spawn(node: &Path) -> JmondiServer {
        let key = PrivateKey::generate(Algorithm::ES256).expect("a P-256 key");
        let jwk = key.private_jwk(KID, Algorithm::ES256).expect("its JWK");
        let mut child = Command::new(node)
            .arg("server.mjs")
            .current_dir(server_dir())
            .env("JMONDI_ISSUER", ISSUER)
            .env("JMONDI_SIGNING_JWK", jwk.to_string())
            .env("JMONDI_CLIENT_ID", CLIENT_ID)
            .env("JMONDI_CLIENT_SECRET", CLIENT_SECRET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node starts");
        let stdout = child.stdout.take().expect("its standard output");
        let (sender, ready) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let mut server = JmondiServer {
            child,
            token_endpoint: String::new(),
            key,
        };
        let line = ready
            .recv_timeout(Duration::from_secs(30))
            .expect("the server says where it listens");
        let listening: Value = serde_json::from_str(&line).expect("a JSON line");
        let port = listening["listening"].as_u64().expect("a port");
        server.token_endpoint = format!("http://127.0.0.1:{port}/token");
        server
    }

    /// A token of this server's issuer, signed with its key, issued 10 minutes before it
    /// expires, `exp_in` seconds from now.
    fn mint(&self, subject: &str, audience: &str, exp_in: i64) -> String {
        let exp = now_unix() + exp_in;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(KID.to_owned());
        let claims = json!({
            "iss": ISSUER, "sub": subject, "aud": audience, "iat": exp - 600, "exp": exp,
        });
        encode(&header, &claims, &self.key.encoding_key().expect("key")).expect("signed")
    }

    /// A consumer of `audience` trusting this server's key.
    fn verifier(&self, audience: &str) -> Verifier {
        let public = self.key.public_jwk(KID, Algorithm::ES256).expect("public JWK");
        let key = Key::from_jwk(&public.to_string()).expect("key");
        Verifier::builder()
            .issuer(Issuer::new(ISSUER).audience(audience).key(key).expect("issuer"))
            .build()
            .expect("verifier")
    }

    fn client(&self, secret: &str) -> Rfc8693Client {
        Rfc8693Client::builder(&self.token_endpoint)
            .client_auth(ClientAuth::ClientSecretBasic {
                client_id: CLIENT_ID.to_owned(),
                client_secret: secret.to_owned(),
            })
            .max_attempts(1)
            .build()
            .expect("client")
    }
}

fn bearer(token: &str) -> Headers {
    let mut headers = Headers::new();
    headers.append("Authorization", format!("Bearer {token}"));
    headers
}

#[tokio::test]
async fn an_expired_token_is_exchanged_though_the_answer_omits_issued_token_type() {
    let Some(server) = JmondiServer::start() else {
        return;
    };
    let expired = server.mint("alice", "orders", -60);

    // What the server answers: a bearer token, of no stated type.
    let issued = server
        .client(CLIENT_SECRET)
        .exchange(&ExchangeRequest::new(expired.as_str()).audience("orders"))
        .await
        .expect("exchanged");
    assert_eq!(issued.issued_token_type, None, "this server leaves it out");
    assert_eq!(issued.token_type, "Bearer");

    // The consumer takes the fresh token: it verifies, for alice.
    let exchange = Exchange::new(Arc::new(ExchangeCache::new(server.client(CLIENT_SECRET))));
    let guard = Guard::builder(server.verifier("orders")).policy(exchange).build();
    match guard.check(&bearer(&expired), &MessageInfo::new("orders")).await {
        Outcome::Accept(context) => {
            assert_eq!(context.acceptance(), Acceptance::Exchanged);
            assert_eq!(context.subject(), Some("alice"));
            assert_eq!(context.issuer(), ISSUER);
            assert_ne!(context.token(), expired);
        }
        other => panic!("expected Accept, got {other:?}"),
    }

    // Its refusals: of a token expired too long ago for it (this message: `invalid_grant`), and
    // of our client (our setup: `invalid_client`).
    let too_old = server.mint("alice", "orders", -7_200);
    match guard.check(&bearer(&too_old), &MessageInfo::new("orders")).await {
        Outcome::Reject(e) => assert_eq!(e.kind(), ErrorKind::ExchangeDenied, "{e}"),
        other => panic!("expected Reject, got {other:?}"),
    }
    let wrong_secret = Exchange::new(Arc::new(server.client("not-the-secret")));
    let misconfigured = Guard::builder(server.verifier("orders"))
        .policy(wrong_secret)
        .build();
    match misconfigured
        .check(&bearer(&expired), &MessageInfo::new("orders"))
        .await
    {
        Outcome::Halt(e) => assert_eq!(e.kind(), ErrorKind::ExchangeUnauthorized, "{e}"),
        other => panic!("expected Halt, got {other:?}"),
    }
}

#[tokio::test]
async fn a_publisher_sends_on_a_token_the_server_issued_for_the_next_hop() {
    let Some(server) = JmondiServer::start() else {
        return;
    };
    let alice = server
        .verifier("orders")
        .verify(&server.mint("alice", "orders", 300))
        .await
        .expect("alice's token");
    let propagator = Propagator::builder()
        .exchanger(Arc::new(server.client(CLIENT_SECRET)))
        .verifier(server.verifier("orders"))
        .audience_for("invoices", "billing")
        .build()
        .expect("propagator");
    let mut headers = Headers::new();
    propagator
        .inject("invoices", Some(&alice), &mut headers)
        .await
        .expect("published");
    let written = String::from_utf8_lossy(headers.get("authorization").expect("a token")).into_owned();
    let token = written.strip_prefix("Bearer ").expect("bearer");
    let billing = server
        .verifier("billing")
        .verify(token)
        .await
        .expect("for billing");
    assert_eq!(billing.subject(), Some("alice"));
    assert_eq!(billing.claims().get("aud"), Some(&json!("billing")));
}
