//! Reading the token endpoint's answer: RFC 8693 §2.2.1 token responses,
//! RFC 6749 §5.2 error responses, `Retry-After`, and what each failure
//! means (see [`Rfc8693Client`](super::Rfc8693Client)).

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, ErrorKind, quote};
use crate::exchange::IssuedToken;
use crate::http::{BodyError, read_capped};
use crate::verify::verifier::unix_seconds;

/// The largest token-endpoint answer read.
const MAX_BODY: usize = 64 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong with one attempt.
pub(super) struct Failure {
    kind: ErrorKind,
    /// What happened, for the message: no token, server text quoted.
    pub(super) what: String,
    source: Option<BoxError>,
    /// Whether another attempt may succeed.
    pub(super) retry: bool,
    pub(super) retry_after: Option<Duration>,
}

impl Failure {
    fn new(kind: ErrorKind, what: String) -> Self {
        Failure {
            kind,
            what,
            source: None,
            retry: false,
            retry_after: None,
        }
    }

    /// A request that got no answer (timeout, connection refused): retried.
    pub(super) fn network(e: reqwest::Error, timeout: Duration) -> Self {
        let what = if e.is_timeout() {
            format!("no answer within {} ms", timeout.as_millis())
        } else if e.is_connect() {
            "cannot connect".to_owned()
        } else {
            "the request failed".to_owned()
        };
        let mut failure = Failure::new(ErrorKind::ExchangeUnavailable, what);
        failure.retry = true;
        failure.source = Some(Box::new(e));
        failure
    }

    /// The error the exchange ends in, naming the endpoint (and the client,
    /// when it was refused), after `attempts` attempts; `note` is added to
    /// the message.
    pub(super) fn into_error(
        self,
        endpoint: &str,
        client_id: Option<&str>,
        attempts: u32,
        note: &str,
    ) -> Error {
        let what = &self.what;
        let message = match self.kind {
            ErrorKind::ExchangeDenied => {
                format!("the token service at {endpoint} refused the exchange: {what}{note}")
            }
            ErrorKind::ExchangeUnauthorized => {
                let client = client_id.map_or_else(|| "(none)".to_owned(), quote);
                format!("the token service at {endpoint} refused client {client}: {what}{note}")
            }
            ErrorKind::ExchangeUnavailable => {
                let tries = if attempts == 1 { "attempt" } else { "attempts" };
                format!("the token service at {endpoint} gave no token ({attempts} {tries}): {what}{note}")
            }
            _ => format!("the token endpoint {endpoint}: {what}{note}"),
        };
        let mut error = Error::new(self.kind, message);
        if let Some(source) = self.source {
            error = error.with_source(source);
        }
        if let Some(wait) = self.retry_after {
            error = error.with_retry_after(wait);
        }
        error
    }
}

/// The issued token of an answer, or the answer classified as a failure.
pub(super) async fn read(mut response: reqwest::Response) -> Result<IssuedToken, Failure> {
    let status = response.status();
    let retry_after = match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            retry_after(response.headers(), SystemTime::now())
        }
        _ => None,
    };
    let body = read_capped(&mut response, MAX_BODY).await;
    if status == StatusCode::OK {
        let body = body.map_err(|e| {
            let mut failure = Failure::new(
                ErrorKind::ExchangeUnavailable,
                format!("it answered 200, but {e}"),
            );
            if let BodyError::Read(e) = e {
                // The answer was cut short: another attempt may get it whole.
                failure.retry = true;
                failure.source = Some(Box::new(e));
            }
            failure
        })?;
        // The server misbehaves: transient for the consumer, but asking
        // again at once would most likely get the same answer.
        return parse_token_response(&body).ok_or_else(|| {
            Failure::new(
                ErrorKind::ExchangeUnavailable,
                "it answered 200 with a body that is not an RFC 8693 token response (JSON with \
                 `access_token` and `token_type`)"
                    .to_owned(),
            )
        });
    }
    let oauth = body
        .ok()
        .and_then(|body| serde_json::from_slice::<OAuthError>(&body).ok());
    let mut failure = classify(status, oauth.as_ref());
    failure.retry_after = retry_after;
    Err(failure)
}

/// Reads a made-up answer as [`read`] does, for the fuzz target (`fuzz/`, feature `fuzzing`):
/// the issued token's length, or the error message the client would give.
#[cfg(feature = "fuzzing")]
pub(crate) async fn read_answer(status: u16, retry_after: &[u8], body: Vec<u8>) -> Result<usize, String> {
    let mut response = http::Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if let Ok(value) = reqwest::header::HeaderValue::from_bytes(retry_after) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    match read(reqwest::Response::from(response)).await {
        Ok(issued) => Ok(issued.access_token.len()),
        Err(failure) => Err(failure
            .into_error("https://sts.example/token", None, 1, "")
            .message()
            .to_owned()),
    }
}

/// An RFC 6749 §5.2 error answer.
#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Classifies a non-200 answer: see [`Rfc8693Client`](super::Rfc8693Client).
///
/// Only an answer about our client or its setup (`invalid_client`, `unauthorized_client`,
/// `unsupported_grant_type`; a redirect, 404 or 405 from the endpoint URL) is a configuration
/// error; only a code about this request's token (`invalid_grant`, `invalid_target`,
/// `invalid_request`, `invalid_scope`) refuses the message. Anything else does not say what
/// is wrong (a bare 401 may well be the service's answer to an expired subject token): it is
/// transient, so one message can neither stop a consumer nor be dropped on a guess.
fn classify(status: StatusCode, oauth: Option<&OAuthError>) -> Failure {
    use ErrorKind::{Configuration, ExchangeDenied, ExchangeUnauthorized, ExchangeUnavailable};
    let code = oauth.map(|o| o.error.as_str());
    let mut what = format!("it answered {status}");
    if let Some(oauth) = oauth {
        what.push_str(&format!(", {}", quote(&oauth.error)));
        if let Some(description) = &oauth.error_description {
            what.push_str(&format!(" ({})", quote(description)));
        }
    }
    let (kind, retry) = match (status.as_u16(), code) {
        (408 | 429 | 500..=599, _) => (ExchangeUnavailable, true),
        (_, Some("invalid_client" | "unauthorized_client" | "unsupported_grant_type")) => {
            (ExchangeUnauthorized, false)
        }
        (_, Some("invalid_grant" | "invalid_target" | "invalid_request" | "invalid_scope")) => {
            (ExchangeDenied, false)
        }
        (_, Some("temporarily_unavailable" | "server_error")) => (ExchangeUnavailable, true),
        (300..=399, None) => {
            what.push_str(" (redirects are not followed)");
            (Configuration, false)
        }
        (404 | 405, None) => {
            what.push_str(" (is this the token endpoint?)");
            (Configuration, false)
        }
        // A bare 4xx, an unknown code, 1xx, or a 2xx other than 200. Asking again at once would
        // most likely get the same answer: left to the consumer's bounded redelivery.
        (_, Some(_)) => (ExchangeUnavailable, false),
        (_, None) => {
            what.push_str(" without an OAuth error code saying why");
            (ExchangeUnavailable, false)
        }
    };
    let mut failure = Failure::new(kind, what);
    failure.retry = retry;
    failure
}

/// An RFC 8693 §2.2.1 answer. `issued_token_type` is required by the RFC
/// but some servers leave it out; `expires_in` is tolerated as a string.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    #[serde(default)]
    issued_token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<Value>,
    #[serde(default)]
    scope: Option<String>,
}

fn parse_token_response(body: &[u8]) -> Option<IssuedToken> {
    let response: TokenResponse = serde_json::from_slice(body).ok()?;
    if response.access_token.is_empty() || response.token_type.is_empty() {
        return None;
    }
    let expires_in = response.expires_in.and_then(|v| match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    });
    Some(IssuedToken {
        access_token: response.access_token,
        issued_token_type: response.issued_token_type,
        token_type: response.token_type,
        expires_in,
        scope: response.scope,
    })
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an IMF-fixdate.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // An absurdly long number is still a (very long) delay.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(value)?;
    Some(Duration::from_secs(
        u64::try_from(at.saturating_sub(unix_seconds(now))).unwrap_or(0),
    ))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → Unix seconds.
fn parse_http_date(value: &str) -> Option<i64> {
    let parts: Vec<&str> = value.split_ascii_whitespace().collect();
    let [_weekday, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = 1 + [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as i64;
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (Some(Some(h)), Some(Some(m)), Some(Some(s)), None) =
        (hms.next(), hms.next(), hms.next(), hms.next())
    else {
        return None;
    };
    if !(1..=31).contains(&day) || !(0..24).contains(&h) || !(0..60).contains(&m) || !(0..=60).contains(&s) {
        return None;
    }
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3_600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;
    use serde_json::json;

    use super::super::test_server::{fast, oauth, request, serve};
    use super::*;
    use crate::exchange::TokenExchanger;

    #[tokio::test]
    async fn oauth_errors_are_classified_and_quoted() {
        let hostile = format!("line one\nline two {}", "x".repeat(500));
        let unavailable = ErrorKind::ExchangeUnavailable;
        let cases = [
            // About this message's token: permanent.
            (oauth(400, "invalid_grant", &hostile), ErrorKind::ExchangeDenied),
            (oauth(400, "invalid_target", ""), ErrorKind::ExchangeDenied),
            (oauth(400, "invalid_request", ""), ErrorKind::ExchangeDenied),
            (oauth(400, "invalid_scope", ""), ErrorKind::ExchangeDenied),
            (oauth(401, "invalid_grant", ""), ErrorKind::ExchangeDenied),
            // About our client or its setup: configuration.
            (oauth(401, "invalid_client", ""), ErrorKind::ExchangeUnauthorized),
            (oauth(400, "invalid_client", ""), ErrorKind::ExchangeUnauthorized),
            (
                oauth(400, "unauthorized_client", ""),
                ErrorKind::ExchangeUnauthorized,
            ),
            (
                oauth(400, "unsupported_grant_type", ""),
                ErrorKind::ExchangeUnauthorized,
            ),
            // Saying nothing certain: transient, and not asked again at once.
            ((401, vec![], String::new()), unavailable),
            ((403, vec![], "<html>Forbidden</html>".into()), unavailable),
            ((400, vec![], "bad".into()), unavailable),
            (oauth(401, "access_denied", ""), unavailable),
            (oauth(403, "unauthorized_scope", ""), unavailable),
            ((404, vec![], "not here".into()), ErrorKind::Configuration),
            (
                (302, vec![("location", "/elsewhere".into())], String::new()),
                ErrorKind::Configuration,
            ),
            (
                (200, vec![], "<html>hello</html>".into()),
                ErrorKind::ExchangeUnavailable,
            ),
            (
                (200, vec![], json!({"token_type": "Bearer"}).to_string()),
                ErrorKind::ExchangeUnavailable,
            ),
            (
                (200, vec![], "x".repeat(MAX_BODY + 1)),
                ErrorKind::ExchangeUnavailable,
            ),
        ];
        for (answer, kind) in cases {
            let what = format!("{} {}", answer.0, &answer.2[..answer.2.len().min(40)]);
            let (base, script) = serve(vec![answer]).await;
            let client = fast(format!("{base}/token")).build().expect("client");
            let error = client.exchange(&request()).await.expect_err(&what);
            assert_eq!(error.kind(), kind, "{what}: {error}");
            assert_eq!(script.hits(), 1, "{what}: not retried");
            assert!(error.message().len() < 400, "{what}: {error}");
            assert!(!error.message().contains('\n'), "{what}: {error}");
        }
        let (base, _) = serve(vec![oauth(400, "invalid_grant", "subject token expired")]).await;
        let error = fast(format!("{base}/token"))
            .build()
            .expect("client")
            .exchange(&request())
            .await
            .expect_err("denied");
        assert!(
            error
                .message()
                .contains("`invalid_grant` (`subject token expired`)"),
            "{error}"
        );
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let headers = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_str(value).expect("value"));
            h
        };
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(1_835_481_599)
        );
        let now = date - Duration::from_secs(10);
        assert_eq!(retry_after(&headers(" 7 "), now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:49:37 GMT"), now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after(
                &headers("Sun, 06 Nov 1994 08:49:37 GMT"),
                date + Duration::from_secs(5)
            ),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after(&headers("99999999999999999999999"), now),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in [
            "-1",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "",
        ] {
            assert_eq!(retry_after(&headers(bad), now), None, "{bad}");
        }
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn token_responses_are_read_leniently() {
        let parse = |v: Value| parse_token_response(v.to_string().as_bytes());
        let issued =
            parse(json!({"access_token": "t", "token_type": "N_A", "expires_in": "60"})).expect("ok");
        assert_eq!(issued.expires_in, Some(60));
        assert_eq!(issued.issued_token_type, None);
        let issued =
            parse(json!({"access_token": "t", "token_type": "Bearer", "expires_in": 59.9, "scope": "a b"}))
                .expect("ok");
        assert_eq!(issued.expires_in, Some(59));
        assert_eq!(issued.scope.as_deref(), Some("a b"));
        assert!(
            parse(json!({"access_token": "t", "token_type": "Bearer", "expires_in": -5}))
                .is_some_and(|t| t.expires_in.is_none())
        );
        assert!(parse(json!({"access_token": "", "token_type": "Bearer"})).is_none());
        assert!(parse(json!({"access_token": "t"})).is_none());
        assert!(parse(json!(["t"])).is_none());
        assert!(parse_token_response(b"not json").is_none());
    }
}

/// Arbitrary answers from a token endpoint: whatever the status, `Retry-After` and body, reading
/// one never panics; only a 200 with an RFC 8693 body yields a token, and every failure's
/// message stays bounded.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn answer(status: u16, retry_after: &str, body: Vec<u8>) -> reqwest::Response {
        let mut response = http::Response::new(body);
        *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        if let Ok(value) = reqwest::header::HeaderValue::from_str(retry_after) {
            response.headers_mut().insert("retry-after", value);
        }
        reqwest::Response::from(response)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_answers_never_panic(
            status in 100u16..600,
            retry_after in ".{0,40}",
            body in prop::collection::vec(any::<u8>(), 0..512),
            json_like in prop::option::of(r#"\{"(access_token|token_type|error|expires_in)":("[a-z]{0,8}"|[0-9]{1,20}|null|-1.5e400)\}"#),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let body = json_like.map(String::into_bytes).unwrap_or(body);
            let read = runtime.block_on(read(answer(status, &retry_after, body)));
            match read {
                Ok(issued) => {
                    prop_assert_eq!(status, 200);
                    prop_assert!(!issued.access_token.is_empty());
                }
                Err(failure) => {
                    let error = failure.into_error("https://sts.example/token", Some("me"), 1, "");
                    prop_assert!(error.message().len() < 2_000, "{}", error.message().len());
                }
            }
        }
    }
}
