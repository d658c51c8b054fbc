//! Client authentication at the token endpoint: `client_secret_basic`,
//! `client_secret_post` (RFC 6749 §2.3.1) and `private_key_jwt`
//! (RFC 7523 §2.2, OpenID Connect Core §9).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Mutex, PoisonError};

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use super::config::ClientConfig;
use super::oauth_error::OAuthError;
use super::params::Params;
use crate::error::{Error, ErrorKind, Result};
use crate::verify::issuer::Issuer;
use crate::verify::key::Key;
use crate::verify::verifier::{Verifier, now_unix};

/// `client_assertion_type` of `private_key_jwt`.
pub(super) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The registered clients and how to check them. `Debug` shows client ids only.
pub(super) struct Clients {
    /// SHA-256 of each client's secret, compared in constant time.
    secrets: HashMap<String, [u8; 32]>,
    /// Verifies client assertions: one issuer per `private_key_jwt` client,
    /// named by its client id, accepting the token endpoint or the issuer
    /// as audience.
    assertions: Option<Verifier>,
    /// `jti`s of accepted assertions, with their `exp`, so none is replayed.
    seen: Mutex<HashMap<(String, String), i64>>,
    ids: Vec<String>,
}

impl fmt::Debug for Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clients")
            .field("ids", &self.ids)
            .finish_non_exhaustive()
    }
}

impl Clients {
    /// Checks the client keys and builds the assertion verifier.
    pub(super) fn new(
        clients: &BTreeMap<String, ClientConfig>,
        issuer: &str,
        token_endpoint: &str,
    ) -> Result<Clients> {
        let mut secrets = HashMap::new();
        let mut assertions = Verifier::builder().cache_capacity(0);
        let mut any_jwk = false;
        for (id, client) in clients {
            if let Some(secret) = &client.secret {
                secrets.insert(id.clone(), digest(secret));
            }
            if let Some(jwk) = &client.jwk {
                let key = Key::from_jwk(jwk).map_err(|e| {
                    Error::new(
                        ErrorKind::InvalidKey,
                        format!("the public key of client `{id}`: {}", e.message()),
                    )
                })?;
                if key.key_type() == "oct" {
                    return Err(Error::new(
                        ErrorKind::InvalidKey,
                        format!("client `{id}`: private_key_jwt needs a public key, not a secret (`oct`)"),
                    ));
                }
                let rules = Issuer::new(id.clone())
                    .audience(token_endpoint)
                    .audience(issuer)
                    .key(key)?;
                assertions = assertions.issuer(rules);
                any_jwk = true;
            }
        }
        Ok(Clients {
            secrets,
            assertions: if any_jwk { Some(assertions.build()?) } else { None },
            seen: Mutex::new(HashMap::new()),
            ids: clients.keys().cloned().collect(),
        })
    }

    /// The registered client ids.
    pub(super) fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Authenticates the client by exactly one method and returns its id.
    pub(super) async fn authenticate(
        &self,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<String, OAuthError> {
        let basic = basic_credentials(headers)?;
        let assertion_type = params.one("client_assertion_type")?;
        let secret = params.one("client_secret")?;
        let client_id = params.one("client_id")?;
        let methods = [basic.is_some(), assertion_type.is_some(), secret.is_some()];
        if methods.iter().filter(|used| **used).count() > 1 {
            return Err(OAuthError::invalid_request(
                "the client authenticated with more than one method (RFC 6749 §2.3)",
            ));
        }
        if let Some((id, secret)) = basic {
            if client_id.is_some_and(|given| given != id) {
                return Err(OAuthError::invalid_request(
                    "`client_id` differs from the client in the Authorization header",
                ));
            }
            return self.check_secret(&id, &secret);
        }
        if let Some(secret) = secret {
            let id = client_id
                .ok_or_else(|| OAuthError::invalid_client("`client_secret` was sent without `client_id`"))?;
            return self.check_secret(id, secret);
        }
        if let Some(kind) = assertion_type {
            if kind != JWT_BEARER {
                return Err(OAuthError::invalid_client(format!(
                    "client_assertion_type must be `{JWT_BEARER}`"
                )));
            }
            let assertion = params
                .one("client_assertion")?
                .ok_or_else(|| OAuthError::invalid_client("`client_assertion` is missing"))?;
            return self.check_assertion(assertion, client_id).await;
        }
        Err(OAuthError::invalid_client(
            "no client authentication: use HTTP Basic, client_secret or a client assertion",
        ))
    }

    fn check_secret(&self, id: &str, secret: &str) -> Result<String, OAuthError> {
        let Some(expected) = self.secrets.get(id) else {
            return Err(OAuthError::invalid_client(format!(
                "no client `{}` authenticates with a secret",
                shorten(id)
            )));
        };
        let given = digest(secret);
        let difference = expected.iter().zip(given).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if difference != 0 {
            return Err(OAuthError::invalid_client(format!(
                "wrong secret for client `{}`",
                shorten(id)
            )));
        }
        Ok(id.to_owned())
    }

    async fn check_assertion(&self, assertion: &str, client_id: Option<&str>) -> Result<String, OAuthError> {
        let Some(verifier) = &self.assertions else {
            return Err(OAuthError::invalid_client(
                "no client is registered for private_key_jwt",
            ));
        };
        let context = verifier
            .verify(assertion)
            .await
            .map_err(|e| OAuthError::invalid_client(format!("the client assertion is not valid: {e}")))?;
        let id = context.issuer().to_owned();
        if context.subject() != Some(id.as_str()) {
            return Err(OAuthError::invalid_client(
                "the client assertion's `sub` must equal its `iss`",
            ));
        }
        if client_id.is_some_and(|given| given != id) {
            return Err(OAuthError::invalid_client(
                "`client_id` differs from the client assertion's `iss`",
            ));
        }
        let Some(jti) = context.claims().token_id() else {
            return Err(OAuthError::invalid_client("the client assertion has no `jti`"));
        };
        let exp = context.claims().expires_at().unwrap_or(i64::MAX);
        let now = now_unix();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        // Assertions are refused after their `exp` (plus leeway) anyway.
        seen.retain(|_, exp| exp.saturating_add(300) >= now);
        if seen.insert((id.clone(), jti.to_owned()), exp).is_some() {
            return Err(OAuthError::invalid_client(format!(
                "the client assertion's `jti` was already used by client `{}`",
                shorten(&id)
            )));
        }
        Ok(id)
    }
}

/// The client id and secret of an `Authorization: Basic` header, each
/// form-urlencoded first as RFC 6749 §2.3.1 requires. `None` without the header.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(OAuthError::invalid_request(
            "the Authorization header appears more than once",
        ));
    }
    let bad = || OAuthError::invalid_client("the Authorization header is not valid HTTP Basic credentials");
    let value = value.to_str().map_err(|_| bad())?;
    let (scheme, encoded) = value.trim().split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client(
            "the Authorization header must use the Basic scheme",
        ));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    Ok(Some((
        form_decode(id).ok_or_else(bad)?,
        form_decode(secret).ok_or_else(bad)?,
    )))
}

/// Decodes one `application/x-www-form-urlencoded` value: `+` is a space,
/// `%XX` a byte; the result must be UTF-8.
fn form_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(b) = input.next() {
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = [input.next()?, input.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).ok()
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A client id for a message: at most 64 characters, control characters escaped.
fn shorten(id: &str) -> String {
    id.chars().take(64).flat_map(char::escape_debug).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode("a%3Ab+c").as_deref(), Some("a:b c"));
        assert_eq!(form_decode("%E2%82%AC").as_deref(), Some("€"));
        assert_eq!(form_decode("%4"), None);
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%FF"), None);
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut headers = HeaderMap::new();
        let encoded = STANDARD.encode("my%20client:p%3Ass+word");
        headers.insert(header::AUTHORIZATION, format!("basic {encoded}").parse().unwrap());
        assert_eq!(
            basic_credentials(&headers).unwrap(),
            Some(("my client".to_owned(), "p:ss word".to_owned()))
        );
        headers.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(basic_credentials(&headers).unwrap_err().error(), "invalid_client");
    }
}
