//! Whether the broker (or the broker tool) a test needs is there: skipped
//! loudly on a developer's machine, a failure under `CI=true` (CI must never
//! skip silently).

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the broker `name` (for messages: `"RabbitMQ"`, `"NATS"`) accepts
/// TCP connections at `addr`: a URL (`amqp://user:pass@host:5672/%2f`,
/// `nats://host:4222`; without a port, the scheme's default) or
/// `host:port`. Tries each resolved address for at most 2 s.
///
/// When it does not: under `CI=true` this panics, naming the broker, the
/// address and the reason; elsewhere it prints a loud `SKIPPED` line on
/// stderr and returns `false`, so the test can return early.
///
/// ```no_run
/// # fn demo() {
/// let addr = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
/// if !jwt_relay::testing::broker_available("NATS", &addr) {
///     return;
/// }
/// // … connect and test.
/// # }
/// ```
pub fn broker_available(name: &str, addr: &str) -> bool {
    match reachable(addr) {
        Ok(()) => true,
        Err(why) => unavailable(&format!(
            "the {name} broker at {} is unreachable ({why})",
            redacted(addr)
        )),
    }
}

/// Whether the program a test needs (`rabbitmqctl`, `nats-server`) is at
/// `path`. When it is not: under `CI=true` this panics; elsewhere it prints
/// a loud `SKIPPED` line on stderr and returns `false`, as
/// [`broker_available`] does.
pub fn program_available(name: &str, path: &str) -> bool {
    std::path::Path::new(path).exists() || unavailable(&format!("{name} is not at {path}"))
}

/// Fails under `CI=true`, else says loudly that the test is skipped; `false`.
fn unavailable(what: &str) -> bool {
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{what}, and CI=true: a test must never be skipped in CI");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {what}. Under CI=true this test fails. !!!!!!!!\n");
    false
}

/// Connects once to the first resolved address that answers.
fn reachable(addr: &str) -> Result<(), String> {
    let (host, port) = host_and_port(addr)?;
    let resolved: Vec<SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last = format!("{host} resolves to no address");
    for socket in resolved {
        match TcpStream::connect_timeout(&socket, CONNECT_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{socket}: {e}"),
        }
    }
    Err(last)
}

/// The host and port of a broker URL or of `host:port`.
fn host_and_port(addr: &str) -> Result<(String, u16), String> {
    if addr.contains("://") {
        let url = url::Url::parse(addr).map_err(|e| format!("not a URL: {e}"))?;
        let host = url.host_str().ok_or("the URL has no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = url
            .port_or_known_default()
            .or_else(|| default_port(url.scheme()))
            .ok_or_else(|| format!("no port, and no default port for `{}`", url.scheme()))?;
        return Ok((host, port));
    }
    let (host, port) = addr.rsplit_once(':').ok_or("expected host:port")?;
    let port = port.parse().map_err(|_| format!("`{port}` is not a port"))?;
    Ok((
        host.trim_start_matches('[').trim_end_matches(']').to_owned(),
        port,
    ))
}

/// The default ports of the brokers' URL schemes.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "amqp" => Some(5672),
        "amqps" => Some(5671),
        "nats" | "tls" => Some(4222),
        "kafka" => Some(9092),
        _ => None,
    }
}

/// The address without its password, for messages.
fn redacted(addr: &str) -> String {
    match url::Url::parse(addr) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => addr.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn reads_urls_and_host_port_pairs() {
        let parsed = |addr: &str| host_and_port(addr).ok();
        assert_eq!(
            parsed("amqp://guest:guest@127.0.0.1:5672/%2f"),
            Some(("127.0.0.1".to_owned(), 5672))
        );
        assert_eq!(
            parsed("amqps://broker.example"),
            Some(("broker.example".to_owned(), 5671))
        );
        assert_eq!(parsed("nats://[::1]"), Some(("::1".to_owned(), 4222)));
        assert_eq!(parsed("localhost:4222"), Some(("localhost".to_owned(), 4222)));
        assert_eq!(parsed("nowhere"), None);
        assert_eq!(redacted("amqp://guest:secret@h:1/"), "amqp://guest:***@h:1/");
    }

    #[test]
    fn a_listening_port_is_available() {
        let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
            return;
        };
        let Ok(local) = listener.local_addr() else {
            return;
        };
        assert!(broker_available("a test broker", &format!("nats://{local}")));
    }
}
