//! A TCP forwarder between one client and its broker, so that a test can cut the client off
//! the way the broker sees a killed process or a lost host: its socket closed, with nothing
//! said first (no goodbye, no last acknowledgements).

use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};

/// Forwards the connections made to [`Forwarder::url`] to the broker, until its
/// [`KillSwitch`] cuts them.
#[derive(Debug)]
pub struct Forwarder {
    url: String,
    switch: KillSwitch,
}

/// Cuts a [`Forwarder`]: stops its listening and drops its connections.
#[derive(Debug, Clone)]
pub struct KillSwitch {
    listener: AbortHandle,
    connections: Arc<Mutex<JoinSet<()>>>,
}

impl KillSwitch {
    /// Cuts at once (the sockets close as their tasks are dropped, right after).
    pub fn cut(&self) {
        self.listener.abort();
        self.connections.lock().unwrap().abort_all();
    }

    /// Cuts, and waits until every forwarded socket is closed.
    pub async fn cut_and_wait(&self) {
        self.cut();
        let mut connections = std::mem::take(&mut *self.connections.lock().unwrap());
        connections.shutdown().await;
    }
}

impl Forwarder {
    /// Listens on a free local port, forwarding to the broker `url` names (`scheme://` and the
    /// port may be left out of `url`: `scheme` and `default_port` then); [`Self::url`] is `url`
    /// pointed at the forwarder.
    pub async fn start(url: &str, scheme: &str, default_port: u16) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a local port");
        let port = listener.local_addr().expect("its address").port();
        let (upstream, url) = redirect(url, scheme, port, default_port);
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let spawned = connections.clone();
        let listener = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let upstream = upstream.clone();
                let mut connections = spawned.lock().unwrap();
                while connections.try_join_next().is_some() {}
                connections.spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream.as_str()).await else {
                        return;
                    };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    tokio::select! {
                        () = pump(&client, &server) => {}
                        () = pump(&server, &client) => {}
                    }
                });
            }
        });
        let switch = KillSwitch {
            listener: listener.abort_handle(),
            connections,
        };
        Forwarder { url, switch }
    }

    /// The broker's address through the forwarder.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What cuts the forwarder.
    pub fn switch(&self) -> &KillSwitch {
        &self.switch
    }
}

/// Copies what `from` receives to `to` until either fails or `from` ends.
async fn pump(from: &TcpStream, to: &TcpStream) {
    let mut buffer = vec![0_u8; 64 * 1024];
    loop {
        if from.readable().await.is_err() {
            return;
        }
        let n = match from.try_read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        let mut sent = 0;
        while sent < n {
            if to.writable().await.is_err() {
                return;
            }
            match to.try_write(&buffer[sent..n]) {
                Ok(written) => sent += written,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
}

/// The `host:port` that `url` names (`default_port` when it names none), and `url` pointed at
/// `127.0.0.1:port` instead (`scheme://` when it names no scheme).
fn redirect(url: &str, scheme: &str, port: u16, default_port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap_or((scheme, url));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (format!("{userinfo}@"), host),
        None => (String::new(), authority),
    };
    let upstream = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:{default_port}")
    };
    (upstream, format!("{scheme}://{userinfo}127.0.0.1:{port}{path}"))
}

#[cfg(test)]
mod tests {
    use super::redirect;

    #[test]
    fn the_url_points_at_the_forwarder_and_keeps_the_rest() {
        assert_eq!(
            redirect("amqp://guest:guest@127.0.0.1:5672/%2f", "amqp", 40000, 5672),
            (
                "127.0.0.1:5672".to_owned(),
                "amqp://guest:guest@127.0.0.1:40000/%2f".to_owned()
            )
        );
        assert_eq!(
            redirect("localhost", "nats", 40000, 4222),
            ("localhost:4222".to_owned(), "nats://127.0.0.1:40000".to_owned())
        );
    }
}
