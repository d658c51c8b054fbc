//! How the client authenticates to the token endpoint: client secrets
//! (RFC 6749 §2.3.1) and signed client assertions (RFC 7523).

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::HeaderValue;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result, quote};
use crate::verify::crypto::crypto_provider;
use crate::verify::key::alg_name;
use crate::verify::verifier::now_unix;

/// RFC 7523 §2.2.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How long a client assertion is valid.
const ASSERTION_LIFETIME: i64 = 60;

/// How the client authenticates to the token endpoint (RFC 6749 §2.3,
/// RFC 7523 §2.2). `Debug` never shows a secret or a key.
#[non_exhaustive]
#[derive(Clone, Default)]
pub enum ClientAuth {
    /// No client authentication (a public client).
    #[default]
    None,
    /// HTTP Basic, the id and the secret each form-urlencoded first
    /// (RFC 6749 §2.3.1), the method servers must support.
    ClientSecretBasic {
        /// The client id.
        client_id: String,
        /// The client secret.
        client_secret: String,
    },
    /// `client_id` and `client_secret` in the request body.
    ClientSecretPost {
        /// The client id.
        client_id: String,
        /// The client secret.
        client_secret: String,
    },
    /// A JWT signed by the client, new for every request (OpenID Connect
    /// `private_key_jwt`; with an HMAC `alg`, `client_secret_jwt`): `iss` =
    /// `sub` = the client id, `aud` = the token endpoint, valid 60 s, a
    /// unique `jti`.
    PrivateKeyJwt {
        /// The client id.
        client_id: String,
        /// The signing key.
        key: EncodingKey,
        /// The algorithm, which must suit the key.
        alg: crate::Algorithm,
        /// The key id the server knows the key by, if any.
        kid: Option<String>,
    },
}

impl ClientAuth {
    pub(super) fn client_id(&self) -> Option<&str> {
        match self {
            ClientAuth::None => None,
            ClientAuth::ClientSecretBasic { client_id, .. }
            | ClientAuth::ClientSecretPost { client_id, .. }
            | ClientAuth::PrivateKeyJwt { client_id, .. } => Some(client_id),
        }
    }

    /// Checks that the credentials can be used with this token endpoint
    /// (a key that cannot sign fails now, not on the first message), and
    /// returns the precomputed `Authorization` header of
    /// `client_secret_basic`.
    pub(super) fn prepare(&self, endpoint: &str) -> Result<Option<HeaderValue>> {
        if let ClientAuth::ClientSecretBasic {
            client_id,
            client_secret,
        } = self
        {
            return basic_authorization(client_id, client_secret).map(Some);
        }
        // Signs a first assertion, thrown away.
        self.append_to_form(
            &mut url::form_urlencoded::Serializer::new(String::new()),
            endpoint,
        )?;
        Ok(None)
    }

    /// Appends the credentials that travel in the request body: the secret
    /// of `client_secret_post`, or a fresh assertion for `endpoint`.
    pub(super) fn append_to_form(
        &self,
        form: &mut url::form_urlencoded::Serializer<'_, String>,
        endpoint: &str,
    ) -> Result<()> {
        match self {
            ClientAuth::None | ClientAuth::ClientSecretBasic { .. } => {}
            ClientAuth::ClientSecretPost {
                client_id,
                client_secret,
            } => {
                form.append_pair("client_id", client_id)
                    .append_pair("client_secret", client_secret);
            }
            ClientAuth::PrivateKeyJwt {
                client_id,
                key,
                alg,
                kid,
            } => {
                let assertion = sign_assertion(client_id, key, *alg, kid.as_deref(), endpoint)?;
                form.append_pair("client_id", client_id)
                    .append_pair("client_assertion_type", JWT_BEARER)
                    .append_pair("client_assertion", &assertion);
            }
        }
        Ok(())
    }
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAuth::None => f.write_str("None"),
            ClientAuth::ClientSecretBasic { client_id, .. } => f
                .debug_struct("ClientSecretBasic")
                .field("client_id", client_id)
                .field("client_secret", &"[redacted]")
                .finish(),
            ClientAuth::ClientSecretPost { client_id, .. } => f
                .debug_struct("ClientSecretPost")
                .field("client_id", client_id)
                .field("client_secret", &"[redacted]")
                .finish(),
            ClientAuth::PrivateKeyJwt {
                client_id, alg, kid, ..
            } => f
                .debug_struct("PrivateKeyJwt")
                .field("client_id", client_id)
                .field("key", &"[redacted]")
                .field("alg", alg)
                .field("kid", kid)
                .finish(),
        }
    }
}

/// RFC 6749 §2.3.1: the id and the secret are form-urlencoded, then joined
/// by `:` and base64-encoded.
fn basic_authorization(client_id: &str, client_secret: &str) -> Result<HeaderValue> {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let credentials = STANDARD.encode(format!("{}:{}", encode(client_id), encode(client_secret)));
    let mut value = HeaderValue::from_str(&format!("Basic {credentials}")).map_err(|e| {
        Error::new(ErrorKind::Configuration, "cannot build the Authorization header").with_source(e)
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

/// A client assertion (RFC 7523 §3) for one request.
fn sign_assertion(
    client_id: &str,
    key: &EncodingKey,
    alg: Algorithm,
    kid: Option<&str>,
    audience: &str,
) -> Result<String> {
    // jsonwebtoken signs with its process-wide provider: ours, once this returns.
    crypto_provider();
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    header.typ = Some("JWT".to_owned());
    let iat = now_unix();
    let claims = Assertion {
        iss: client_id,
        sub: client_id,
        aud: audience,
        iat,
        exp: iat + ASSERTION_LIFETIME,
        jti: unique_id(),
    };
    jsonwebtoken::encode(&header, &claims, key).map_err(|e| {
        Error::new(
            ErrorKind::InvalidKey,
            format!(
                "cannot sign the client assertion of {} with {}",
                quote(client_id),
                alg_name(alg)
            ),
        )
        .with_source(e)
    })
}

/// A `jti` no other assertion has: 128 bits from the standard library's
/// randomly keyed hasher (seeded from the OS), then a per-process counter.
fn unique_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let hasher = RandomState::new();
    let a = hasher.hash_one((n, nanos, 1u8));
    let b = hasher.hash_one((n, nanos, 2u8));
    format!("{a:016x}{b:016x}-{n:x}")
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::Rfc8693Client;
    use super::super::test_server::{fast, ok, request, serve};
    use super::*;
    use crate::exchange::TokenExchanger;

    const EC256: &[u8] = include_bytes!("../../../tests/fixtures/ec256.pem");
    const EC256_PUB: &[u8] = include_bytes!("../../../tests/fixtures/ec256.pub.pem");

    #[tokio::test]
    async fn private_key_jwt_signs_a_fresh_assertion_per_request() {
        let (base, script) = serve(vec![ok()]).await;
        let endpoint = format!("{base}/token");
        let client = fast(endpoint.clone())
            .client_auth(ClientAuth::PrivateKeyJwt {
                client_id: "relay".into(),
                key: EncodingKey::from_ec_pem(EC256).expect("key"),
                alg: Algorithm::ES256,
                kid: Some("relay-1".into()),
            })
            .build()
            .expect("client");
        client.exchange(&request()).await.expect("first");
        client.exchange(&request()).await.expect("second");

        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.set_audience(&[&endpoint]);
        validation.set_issuer(&["relay"]);
        let key = jsonwebtoken::DecodingKey::from_ec_pem(EC256_PUB).expect("public key");
        let mut jtis = Vec::new();
        for (_, body) in script.received.lock().expect("lock").iter() {
            let form: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(body.as_bytes())
                    .into_owned()
                    .collect();
            assert_eq!(form["client_assertion_type"], JWT_BEARER);
            assert_eq!(form["client_id"], "relay");
            let assertion = &form["client_assertion"];
            let header = jsonwebtoken::decode_header(assertion).expect("header");
            assert_eq!(header.kid.as_deref(), Some("relay-1"));
            let claims = jsonwebtoken::decode::<Value>(assertion, &key, &validation)
                .expect("verifies")
                .claims;
            assert_eq!(claims["sub"], "relay");
            assert_eq!(claims["exp"].as_i64(), claims["iat"].as_i64().map(|iat| iat + 60));
            jtis.push(claims["jti"].as_str().expect("jti").to_owned());
        }
        assert_eq!(jtis.len(), 2);
        assert_ne!(jtis[0], jtis[1]);
    }

    #[tokio::test]
    async fn client_secret_post_puts_the_secret_in_the_body() {
        let (base, script) = serve(vec![ok()]).await;
        let client = fast(format!("{base}/token"))
            .client_auth(ClientAuth::ClientSecretPost {
                client_id: "relay".into(),
                client_secret: "s3cret".into(),
            })
            .build()
            .expect("client");
        client.exchange(&request()).await.expect("exchange");
        let received = script.received.lock().expect("lock");
        let (headers, body) = &received[0];
        assert!(headers.get("authorization").is_none());
        assert!(
            body.contains("client_id=relay") && body.contains("client_secret=s3cret"),
            "{body}"
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let auths = [
            ClientAuth::ClientSecretBasic {
                client_id: "relay".into(),
                client_secret: "s3cret".into(),
            },
            ClientAuth::ClientSecretPost {
                client_id: "relay".into(),
                client_secret: "s3cret".into(),
            },
            ClientAuth::PrivateKeyJwt {
                client_id: "relay".into(),
                key: EncodingKey::from_secret(b"s3cret s3cret s3cret s3cret s3cret").expect("key"),
                alg: Algorithm::HS256,
                kid: None,
            },
        ];
        for auth in auths {
            let builder = Rfc8693Client::builder("https://sts/token").client_auth(auth);
            let client = builder.clone().build().expect("client");
            for debug in [format!("{builder:?}"), format!("{client:?}")] {
                assert!(debug.contains("relay") && debug.contains("[redacted]"), "{debug}");
                assert!(
                    !debug.contains("s3cret") && !debug.contains("czNjcmV0"),
                    "{debug}"
                );
            }
        }
    }

    #[test]
    fn jtis_are_unique() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| unique_id()).collect();
        assert_eq!(ids.len(), 10_000);
    }
}
