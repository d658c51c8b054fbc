//! Keycloak as the identity provider and the token service, instead of the development one:
//! alice signs in at the `gateway` client, `billing` verifies her token through OIDC discovery,
//! and `shipping` exchanges it (RFC 8693, Keycloak's standard token exchange) for a token meant
//! for `notifier`, which shows who acted for her.
//!
//! ```sh
//! docker compose up -d --wait keycloak
//! KEYCLOAK_ISSUER=http://127.0.0.1:8080/realms/jwt-relay cargo run --example keycloak
//! ```
//!
//! The realm (users, clients, audiences, token exchange) is `docker/keycloak/realm.json`.

use jwt_relay::exchange::{ClientAuth, ExchangeRequest, TokenExchanger as _};
use jwt_relay::{Issuer, Rfc8693Client, Verifier};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer =
        std::env::var("KEYCLOAK_ISSUER").unwrap_or_else(|_| "http://127.0.0.1:8080/realms/jwt-relay".into());
    let token_endpoint = format!("{issuer}/protocol/openid-connect/token");

    // alice signs in (the password grant, for a demonstration only).
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "password")
        .append_pair("client_id", "gateway")
        .append_pair("username", "alice")
        .append_pair("password", "alice")
        .finish();
    let answer = reqwest::Client::new()
        .post(&token_endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await?;
    if !answer.status().is_success() {
        return Err(format!("Keycloak refused the sign-in: {}", answer.status()).into());
    }
    let body: serde_json::Value = serde_json::from_slice(&answer.bytes().await?)?;
    let user_token = body["access_token"]
        .as_str()
        .ok_or("no access_token in Keycloak's answer")?;

    // billing verifies it, with the keys found through discovery.
    let billing = Verifier::builder()
        .issuer(Issuer::new(issuer.as_str()).audience("billing").discovery())
        .build()?;
    let alice = billing.verify(user_token).await?;
    println!("billing: a token of {:?}, key {:?}", alice.subject(), alice.kid());

    // shipping exchanges it for notifier's audience.
    let exchanger = Rfc8693Client::builder(token_endpoint)
        .client_auth(ClientAuth::ClientSecretBasic {
            client_id: "shipping".into(),
            client_secret: "shipping-secret".into(),
        })
        .build()?;
    let mut request = ExchangeRequest::new(user_token);
    request.audience.push("notifier".into());
    let issued = exchanger.exchange(&request).await?;

    let notifier = Verifier::builder()
        .issuer(Issuer::new(issuer.as_str()).audience("notifier").discovery())
        .build()?;
    let fresh = notifier.verify(&issued.access_token).await?;
    let actors: Vec<_> = fresh.actors().into_iter().filter_map(|a| a.subject).collect();
    println!(
        "notifier: a token of {:?}; acted for by {actors:?}",
        fresh.subject()
    );
    Ok(())
}
