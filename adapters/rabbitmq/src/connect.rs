//! How a consumer gets a connection, the first time and after every loss.

use std::fmt;
use std::future::Future;

use lapin::{Connection, ConnectionProperties};

/// Opens a connection to the broker. A [`Consumer`](crate::Consumer) owns its connector (given
/// to [`Consumer::builder`](crate::Consumer::builder)) so that it can open a new connection when
/// the old one drops; implement this (or pass a closure returning
/// `lapin::Connection::connect(..)`) for connections a [`Connector`] cannot describe, such as a
/// custom TLS configuration.
///
/// ```no_run
/// use jwt_relay::Guard;
/// use jwt_relay_rabbitmq::Consumer;
/// use jwt_relay_rabbitmq::lapin::{Connection, ConnectionProperties};
///
/// # async fn demo(guard: Guard) -> jwt_relay_rabbitmq::Result<()> {
/// let connect = || Connection::connect("amqp://broker:5672/%2f", ConnectionProperties::default());
/// let consumer = Consumer::builder(connect, "invoices", guard).build();
/// consumer
///     .run(|_| async { Ok::<(), String>(()) }, std::future::pending::<()>())
///     .await?;
/// # Ok(())
/// # }
/// ```
pub trait Connect: Send + Sync {
    /// Opens one connection.
    fn connect(&self) -> impl Future<Output = lapin::Result<Connection>> + Send;
}

impl<F, Fut> Connect for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = lapin::Result<Connection>> + Send,
{
    fn connect(&self) -> impl Future<Output = lapin::Result<Connection>> + Send {
        self()
    }
}

/// Connects to an AMQP URI (`amqp://user:password@host:5672/%2f`, or `amqps://…`) with lapin's
/// [`ConnectionProperties`]. `Debug` hides the URI's credentials.
#[derive(Clone)]
pub struct Connector {
    uri: String,
    properties: ConnectionProperties,
}

impl Connector {
    /// Connects to `uri` with default properties.
    pub fn new(uri: impl Into<String>) -> Self {
        Connector {
            uri: uri.into(),
            properties: ConnectionProperties::default(),
        }
    }

    /// Connects with these properties (a connection name, an auth provider, …). Leave lapin's
    /// own recovery (`enable_auto_recover`) off: the consumer reconnects by itself.
    pub fn properties(mut self, properties: ConnectionProperties) -> Self {
        self.properties = properties;
        self
    }

    /// Opens one connection.
    pub async fn open(&self) -> lapin::Result<Connection> {
        Connection::connect(&self.uri, self.properties.clone()).await
    }
}

impl Connect for Connector {
    fn connect(&self) -> impl Future<Output = lapin::Result<Connection>> + Send {
        self.open()
    }
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("uri", &redacted(&self.uri))
            .finish_non_exhaustive()
    }
}

/// The URI without its user information (`amqp://[redacted]@host/…`).
pub(crate) fn redacted(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return "[redacted]".to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://[redacted]@{}", &rest[at + 1..]),
        None => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show() {
        assert_eq!(
            redacted("amqp://guest:s3cret@127.0.0.1:5672/%2f"),
            "amqp://[redacted]@127.0.0.1:5672/%2f"
        );
        assert_eq!(redacted("amqp://host/vh"), "amqp://host/vh");
        assert_eq!(redacted("amqp://u:p@h/a@b"), "amqp://[redacted]@h/a@b");
        assert_eq!(redacted("not a uri"), "[redacted]");
        let shown = format!("{:?}", Connector::new("amqps://u:hunter2@h"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
