//! `POST /token`: RFC 8693 token exchange, with delegation (`act`).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::mode::{Counters, Mode};
use super::oauth_error::{OAuthError, no_store};
use super::params::Params;
use super::sts::Service;
use crate::error::ErrorKind;
use crate::exchange::{ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE};
use crate::verify::context::AuthContext;
use crate::verify::verifier::now_unix;

/// The RFC 8693 grant type.
pub(super) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// `POST /token`: counts the request, applies the [`Mode`], then judges it.
pub(super) async fn token(State(service): State<Arc<Service>>, headers: HeaderMap, body: Bytes) -> Response {
    Counters::bump(&service.counters.token_requests);
    let mode = service.mode();
    match mode {
        Mode::Normal | Mode::IssueFor(_) | Mode::Label { .. } => {}
        Mode::Slow(delay) => tokio::time::sleep(delay).await,
        Mode::Unavailable { retry_after } => {
            tracing::debug!("token request refused: the service plays unavailable");
            return unavailable(retry_after);
        }
        Mode::RejectAll => {
            tracing::debug!("token request refused: the service rejects everything");
            return OAuthError::invalid_grant("the token service rejects every request (mode RejectAll)")
                .into_response();
        }
        Mode::Refuse { status, error } => {
            tracing::debug!(
                status,
                error,
                "token request refused: the service plays a refusal"
            );
            return refuse(status, error);
        }
    }
    match exchange(&service, mode, &headers, &body).await {
        Ok(issued) => {
            Counters::bump(&service.counters.exchanges_issued);
            issued
        }
        Err(refused) => {
            tracing::debug!(
                error = refused.error(),
                description = refused.description(),
                "token request refused"
            );
            refused.into_response()
        }
    }
}

/// `503 Service Unavailable`, with `Retry-After` in whole seconds.
fn unavailable(retry_after: Option<Duration>) -> Response {
    let body = json!({
        "error": "temporarily_unavailable",
        "error_description": "the token service plays unavailable (mode Unavailable)",
    });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, no_store(), Json(body)).into_response();
    if let Some(delay) = retry_after {
        let seconds = delay
            .as_secs()
            .saturating_add(u64::from(delay.subsec_nanos() > 0));
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// [`Mode::Refuse`]: `status`, with an OAuth error body carrying `error`, else an HTML page.
fn refuse(status: u16, error: Option<&str>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match error {
        Some(error) => {
            let body = json!({
                "error": error,
                "error_description": "the token service plays a refusal (mode Refuse)",
            });
            (status, no_store(), Json(body)).into_response()
        }
        None => {
            let page = format!("<html><body><h1>{status}</h1></body></html>");
            (status, [(header::CONTENT_TYPE, "text/html")], page).into_response()
        }
    }
}

/// Judges one token request (RFC 8693 §2.1) and issues the new token, labelled as `mode` says.
async fn exchange(
    service: &Service,
    mode: Mode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, OAuthError> {
    let params = Params::parse(headers, body)?;
    let client_id = service.clients.authenticate(headers, &params).await?;
    let grant_type = params.required("grant_type")?;
    if grant_type != TOKEN_EXCHANGE {
        return Err(OAuthError::unsupported_grant_type(format!(
            "only the token exchange grant (`{TOKEN_EXCHANGE}`) is supported"
        )));
    }
    let subject_token = params.required("subject_token")?;
    check_token_type("subject_token_type", params.required("subject_token_type")?)?;
    let actor_token = match (params.one("actor_token")?, params.one("actor_token_type")?) {
        (Some(token), Some(kind)) => {
            check_token_type("actor_token_type", kind)?;
            Some(token)
        }
        (None, None) => None,
        (Some(_), None) => {
            return Err(OAuthError::invalid_request(
                "`actor_token_type` is required with `actor_token`",
            ));
        }
        (None, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "`actor_token_type` was sent without `actor_token`",
            ));
        }
    };
    let issued_token_type = match params.one("requested_token_type")? {
        None => ACCESS_TOKEN_TYPE,
        Some(kind) => check_token_type("requested_token_type", kind)?,
    };

    let subject = verify(service, subject_token, "subject token").await?;
    if subject.subject().is_none() {
        return Err(OAuthError::invalid_grant("the subject token has no `sub`"));
    }
    let actor = match actor_token {
        Some(token) => {
            let actor = verify(service, token, "actor token").await?;
            actor
                .subject()
                .map(str::to_owned)
                .ok_or_else(|| OAuthError::invalid_grant("the actor token has no `sub`"))?
        }
        None => client_id.clone(),
    };

    let mut claims = issued_claims(service, &subject, &params, &client_id, &actor)?;
    if let Mode::IssueFor(other) = mode {
        claims["sub"] = Value::from(other);
    }
    let access_token = service.signer.sign(&claims).map_err(|e| {
        tracing::error!(error = %e, "the development token service could not sign a token");
        OAuthError::server_error("the token service could not sign the token")
    })?;
    tracing::debug!(client = %client_id, actor = %actor, "token exchanged");
    let (issued_token_type, token_type) = match mode {
        Mode::Label {
            issued_token_type,
            token_type,
        } => (issued_token_type, token_type),
        _ => (Some(issued_token_type), "Bearer"),
    };
    let mut body = json!({
        "access_token": access_token,
        "token_type": token_type,
        "expires_in": service.ttl.as_secs(),
    });
    if let Some(issued_token_type) = issued_token_type {
        body["issued_token_type"] = Value::from(issued_token_type);
    }
    Ok((StatusCode::OK, no_store(), Json(body)).into_response())
}

/// The new token's claims: the subject's `sub`; `aud` from the request's
/// `audience` and `resource` values, else the subject's; the requested
/// `scope`; `client_id`; and `act` naming the actor, the subject's own
/// `act` nested inside (RFC 8693 §4.1, §4.3).
fn issued_claims(
    service: &Service,
    subject: &AuthContext,
    params: &Params,
    client_id: &str,
    actor: &str,
) -> Result<Value, OAuthError> {
    let mut claims = Map::new();
    let mut put = |name: &str, value: Value| claims.insert(name.to_owned(), value);
    put("iss", Value::from(service.issuer.as_str()));
    put("sub", Value::from(subject.subject()));
    let mut audiences = params.all("audience");
    audiences.extend(params.all("resource"));
    match audiences.as_slice() {
        [] => {
            if let Some(aud) = subject.claims().get("aud") {
                put("aud", aud.clone());
            }
        }
        [one] => {
            put("aud", Value::from(*one));
        }
        many => {
            put("aud", Value::from(many.to_vec()));
        }
    }
    let now = now_unix();
    let ttl = i64::try_from(service.ttl.as_secs()).unwrap_or(i64::MAX);
    put("iat", Value::from(now));
    put("exp", Value::from(now.saturating_add(ttl)));
    put("jti", Value::from(service.next_jti()));
    put("client_id", Value::from(client_id));
    if let Some(scope) = params.one("scope")? {
        put("scope", Value::from(scope));
    }
    let mut act = Map::new();
    act.insert("sub".to_owned(), Value::from(actor));
    if let Some(previous) = subject.claims().get("act") {
        act.insert("act".to_owned(), previous.clone());
    }
    put("act", Value::Object(act));
    Ok(Value::Object(claims))
}

/// Accepts the access token and JWT token types, returning the one given.
fn check_token_type<'a>(param: &str, kind: &'a str) -> Result<&'a str, OAuthError> {
    if kind == ACCESS_TOKEN_TYPE || kind == JWT_TOKEN_TYPE {
        Ok(kind)
    } else {
        Err(OAuthError::invalid_request(format!(
            "`{param}` must be `{ACCESS_TOKEN_TYPE}` or `{JWT_TOKEN_TYPE}`"
        )))
    }
}

/// Verifies a subject or actor token: one of the service's own, for any
/// audience, accepted up to `accept_expired_for` after it expired.
async fn verify(service: &Service, token: &str, what: &str) -> Result<AuthContext, OAuthError> {
    let error = match service.tokens.verify(token).await {
        Ok(context) => return Ok(context),
        Err(error) => error,
    };
    if error.kind() == ErrorKind::Expired
        && let Some(context) = error.expired_context()
    {
        let window = i64::try_from(service.accept_expired_for.as_secs()).unwrap_or(i64::MAX);
        let expired_for = context
            .claims()
            .expires_at()
            .map_or(i64::MAX, |exp| now_unix().saturating_sub(exp));
        if expired_for <= window {
            return Ok(context.clone());
        }
        return Err(OAuthError::invalid_grant(format!(
            "the {what} expired {expired_for} s ago; this service exchanges tokens up to {} s after they expire",
            service.accept_expired_for.as_secs()
        )));
    }
    // The core's messages name what failed, never the token.
    Err(OAuthError::invalid_grant(format!(
        "the {what} is not valid: {error}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_saturates() {
        let retry_after = |delay| {
            unavailable(delay)
                .headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(retry_after(Some(Duration::from_millis(1))).as_deref(), Some("1"));
        assert_eq!(retry_after(Some(Duration::from_secs(3))).as_deref(), Some("3"));
        assert_eq!(retry_after(Some(Duration::MAX)), Some(u64::MAX.to_string()));
        assert_eq!(retry_after(None), None);
    }

    #[test]
    fn token_types() {
        assert_eq!(check_token_type("t", JWT_TOKEN_TYPE).unwrap(), JWT_TOKEN_TYPE);
        let refused = check_token_type("t", "urn:ietf:params:oauth:token-type:id_token").unwrap_err();
        assert_eq!(refused.error(), "invalid_request");
    }
}
