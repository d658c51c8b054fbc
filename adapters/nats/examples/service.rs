//! A verified request/reply service on NATS micro: a request whose token is
//! refused gets a 401 error reply at once, a good one the handler's answer.
//! Runs the service and its two callers in one process.
//!
//! ```sh
//! cargo run -p jwt-relay-nats --example nats-service   # NATS_URL defaults to nats://127.0.0.1:4222
//! ```

use async_nats::service::ServiceExt as _;
use jwt_relay::jsonwebtoken::{EncodingKey, Header, encode};
use jwt_relay::verify::now_unix;
use jwt_relay::{Algorithm, Guard, Issuer, Key, Propagator, Verifier};
use jwt_relay_nats::{NatsService, Publisher, ServiceError, ServiceRequest, async_nats, bytes::Bytes};

/// The development issuer and key the three examples share.
const ISSUER: &str = "https://id.example.com";
const SECRET: &[u8] = b"a development secret of 32+ bytes!";

async fn greet(request: ServiceRequest) -> Result<Bytes, ServiceError> {
    match request.context().subject() {
        Some(user) => Ok(Bytes::from(format!("hello, {user}"))),
        None => Err(ServiceError::forbidden("a token without a subject")),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = async_nats::connect(url.as_str()).await?;
    let verifier = Verifier::builder()
        .issuer(
            Issuer::new(ISSUER)
                .audience("greeter")
                .key(Key::from_secret(SECRET, Algorithm::HS256)?)?,
        )
        .build()?;

    // The service.
    let service = client.service_builder().start("greeter", "1.0.0").await?;
    let endpoint = service.endpoint("greeter.hello").await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let nats_service = NatsService::new(client.clone(), Guard::new(verifier.clone()));
        async move {
            let stopped = async move {
                let _ = stopped.await;
            };
            nats_service
                .serve_endpoint("greeter.hello", endpoint, greet, stopped)
                .await
        }
    });

    // A caller without a token: refused at once, not left to time out.
    let reply = client.request("greeter.hello", "hi".into()).await?;
    if let Some(error) = ServiceError::from_reply(&reply) {
        println!("without a token: {} {}", error.code(), error.status());
    }

    // A caller with alice's token, propagated by the request helper.
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": "greeter", "sub": "alice", "exp": now_unix() + 300,
    });
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET)?,
    )?;
    let alice = verifier.verify(&token).await?;
    let caller = Publisher::new(client.clone(), Propagator::default());
    let reply = caller
        .request("greeter.hello", Default::default(), "hi", Some(&alice))
        .await?;
    println!("as alice: {}", String::from_utf8_lossy(&reply.payload));

    let _ = stop.send(());
    server.await??;
    service.stop().await?;
    Ok(())
}
