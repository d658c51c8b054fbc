//! The error a service answers with, as NATS micro carries it: the
//! `Nats-Service-Error` and `Nats-Service-Error-Code` headers.

use std::fmt;
use std::time::Duration;

use async_nats::Message;
use async_nats::service::{NATS_SERVICE_ERROR, NATS_SERVICE_ERROR_CODE};
use jwt_relay::ErrorKind;

/// An error reply: a code (HTTP-like: 401, 403, 500, 503) and a status
/// text, sent as the `Nats-Service-Error-Code` and `Nats-Service-Error`
/// headers of an empty reply, as NATS micro services do.
///
/// A handler returns one to refuse a request (for example
/// [`ServiceError::forbidden`] for a valid token whose subject may not do
/// this); [`NatsService`](crate::NatsService) sends the others itself. The
/// status is printable ASCII (anything else is escaped) and never holds a
/// token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    code: u16,
    status: String,
}

impl ServiceError {
    /// An error reply with this code and status text.
    pub fn new(code: u16, status: impl AsRef<str>) -> Self {
        let mut printable = String::new();
        for c in status.as_ref().chars() {
            if c == ' ' || c.is_ascii_graphic() {
                printable.push(c);
            } else {
                printable.extend(c.escape_default());
            }
        }
        ServiceError {
            code,
            status: printable,
        }
    }

    /// 401: the request's token was refused (`kind` says why).
    pub fn unauthorized(kind: ErrorKind) -> Self {
        ServiceError::new(401, format!("Unauthorized: {kind}"))
    }

    /// 403: the token is valid, but its subject may not do this.
    pub fn forbidden(status: impl AsRef<str>) -> Self {
        ServiceError::new(403, format!("Forbidden: {}", status.as_ref()))
    }

    /// 503: the token cannot be checked now (a key set is unreachable);
    /// try again after `retry_after`.
    pub fn unavailable(kind: ErrorKind, retry_after: Duration) -> Self {
        ServiceError::new(
            503,
            format!(
                "Service Unavailable: {kind}, retry after {} ms",
                retry_after.as_millis()
            ),
        )
    }

    /// 500: the service failed (its handler panicked, or its setup is wrong).
    pub fn internal() -> Self {
        ServiceError::new(500, "Internal Server Error")
    }

    /// The code (401, 403, 500, 503, …).
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The status text.
    pub fn status(&self) -> &str {
        &self.status
    }

    /// The error a reply carries, if it is an error reply (it has a
    /// `Nats-Service-Error-Code` header).
    pub fn from_reply(reply: &Message) -> Option<ServiceError> {
        let headers = reply.headers.as_ref()?;
        let code = headers
            .get(NATS_SERVICE_ERROR_CODE)?
            .as_str()
            .trim()
            .parse()
            .ok()?;
        let status = headers
            .get(NATS_SERVICE_ERROR)
            .map(|v| v.as_str())
            .unwrap_or_default();
        Some(ServiceError::new(code, status))
    }

    /// As async-nats's service error, for NATS micro endpoints.
    pub(crate) fn to_micro(&self) -> async_nats::service::error::Error {
        async_nats::service::error::Error {
            status: self.status.clone(),
            code: usize::from(self.code),
        }
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.status)
    }
}

impl std::error::Error for ServiceError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_one_printable_line() {
        let e = ServiceError::forbidden("no\r\nX-Evil: 1 é");
        assert_eq!(e.code(), 403);
        assert!(e.status().bytes().all(|b| (0x20..0x7f).contains(&b)));
        assert_eq!(
            ServiceError::unauthorized(ErrorKind::Expired).status(),
            "Unauthorized: Expired"
        );
    }

    #[test]
    fn reads_an_error_reply() {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(NATS_SERVICE_ERROR, "Unauthorized: Missing");
        headers.insert(NATS_SERVICE_ERROR_CODE, "401");
        let reply = Message {
            subject: "_INBOX.x".into(),
            reply: None,
            payload: bytes::Bytes::new(),
            headers: Some(headers),
            status: None,
            description: None,
            length: 0,
        };
        let e = ServiceError::from_reply(&reply).unwrap();
        assert_eq!((e.code(), e.status()), (401, "Unauthorized: Missing"));
        let ok = Message {
            headers: None,
            ..reply
        };
        assert!(ServiceError::from_reply(&ok).is_none());
    }
}
