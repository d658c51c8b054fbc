//! The core in one screen: tokens as they arrive in message headers, and
//! what a consumer would do with each (handle, dead-letter, retry, stop).
//!
//! `cargo run --release --example verify`

use std::time::{SystemTime, UNIX_EPOCH};

use jwt_relay::jsonwebtoken::{EncodingKey, Header, encode};
use jwt_relay::{Algorithm, ErrorClass, Headers, Issuer, Key, Verifier};
use serde_json::json;

const ISS: &str = "https://id.example.com";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // The identity provider's secret, and a forger's.
    let secret = b"demo secret: at least thirty-two bytes long";
    let forged = b"forger secret: also thirty-two bytes long!!";
    let verifier = Verifier::builder()
        .issuer(
            Issuer::new(ISS)
                .audience("billing")
                .key(Key::from_secret(secret, Algorithm::HS256)?.with_kid("k1"))?,
        )
        .build()?;

    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let mint = |key: &[u8], aud: &str, exp: i64| -> Result<String, Box<dyn std::error::Error>> {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let claims = json!({"iss": ISS, "sub": "alice", "aud": aud, "iat": now - 60, "exp": exp});
        Ok(encode(&header, &claims, &EncodingKey::from_secret(key)?)?)
    };
    let messages = [
        ("valid token", Some(mint(secret, "billing", now + 300)?)),
        ("expired in the queue", Some(mint(secret, "billing", now - 120)?)),
        ("forged signature", Some(mint(forged, "billing", now + 300)?)),
        (
            "meant for another service",
            Some(mint(secret, "shipping", now + 300)?),
        ),
        ("no token at all", None),
    ];

    for (what, token) in messages {
        let mut headers = Headers::new();
        if let Some(token) = token {
            headers.append("Authorization", format!("Bearer {token}"));
        }
        let line = match verifier.verify_headers(&headers).await {
            Ok(ctx) => format!(
                "handle      sub={:?} kid={:?}",
                ctx.subject().unwrap_or("?"),
                ctx.kid().unwrap_or("?")
            ),
            Err(e) => {
                let action = match e.class() {
                    ErrorClass::Permanent => "dead-letter",
                    ErrorClass::Transient => "retry",
                    ErrorClass::Configuration => "stop",
                };
                let note = e.expired_context().map_or(String::new(), |ctx| {
                    format!(
                        " (verified user {:?}: an expiry policy may still accept it)",
                        ctx.subject().unwrap_or("?")
                    )
                });
                format!("{action:<11} {e}{note}")
            }
        };
        println!("{what:<28} -> {line}");
    }
    Ok(())
}
