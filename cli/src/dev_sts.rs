//! `jwt-relay dev-sts`: the development token service (identity provider
//! and RFC 8693 token exchange), until Ctrl-C.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jwt_relay::testing::{DEFAULT_CLIENT_ID, DevSts, DevStsConfig};
use serde_json::json;

use crate::duration::parse_duration;
use crate::{Failure, print_line};

/// Options of `jwt-relay dev-sts`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The address to listen on, e.g. 127.0.0.1:8400 (port 0: any free port, printed on start).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Sign with this private JWK (P-256 or Ed25519, as `keygen` writes); default: a fresh ES256 key.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Lifetime of issued tokens: `30s`, `5m`, `1h` or plain seconds.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    ttl: Duration,
    /// How long after expiry a subject token is still exchanged (`0` refuses expired tokens).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    accept_expired_for: Duration,
    /// A client that authenticates with a secret, `ID:SECRET`; repeatable.
    /// Default: `jwt-relay:dev-secret`, unless some client is given.
    #[arg(long = "client", value_name = "ID:SECRET", value_parser = parse_client)]
    clients: Vec<Client>,
    /// A client that authenticates with `private_key_jwt`, `ID:FILE` (FILE: its public JWK); repeatable.
    #[arg(long = "client-jwk", value_name = "ID:FILE", value_parser = parse_client)]
    client_jwks: Vec<Client>,
}

/// `ID:VALUE` from the command line. `Debug` never shows the value: it may
/// be a secret.
#[derive(Clone)]
struct Client {
    id: String,
    value: String,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Client({:?}, [redacted])", self.id)
    }
}

/// Starts the service, prints one JSON line saying where it is (never a
/// secret), and serves until Ctrl-C.
pub(crate) async fn run(args: &Args) -> Result<(), Failure> {
    let mut config = DevStsConfig::default()
        .listen(args.listen)
        .ttl(args.ttl)
        .accept_expired_for(args.accept_expired_for);
    if let Some(path) = &args.key {
        config = config.signing_key(read(path)?);
    }
    let mut ids = Vec::new();
    for client in &args.clients {
        config = config.client(&client.id, &client.value);
        ids.push(client.id.clone());
    }
    for client in &args.client_jwks {
        let jwk = read(Path::new(&client.value))?;
        config = config.client_jwk(&client.id, jwk);
        ids.push(client.id.clone());
    }
    if ids.is_empty() {
        ids.push(DEFAULT_CLIENT_ID.to_owned());
    }
    ids.sort();
    ids.dedup();

    let sts = DevSts::start(config).await?;
    print_line(json!({
        "issuer": sts.issuer(),
        "token_endpoint": sts.token_endpoint(),
        "jwks_uri": sts.jwks_url(),
        "clients": ids,
    }))?;
    let interrupted = tokio::signal::ctrl_c().await;
    sts.shutdown().await;
    interrupted.map_err(|e| Failure::new(format!("cannot wait for Ctrl-C: {e}")))
}

fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))
}

/// `ID:VALUE`, split at the first colon; neither part may be empty.
fn parse_client(text: &str) -> Result<Client, String> {
    match text.split_once(':') {
        Some((id, value)) if !id.is_empty() && !value.is_empty() => Ok(Client {
            id: id.to_owned(),
            value: value.to_owned(),
        }),
        // Never echo the text: it holds a secret.
        _ => Err("expected ID:VALUE, both non-empty".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_split_at_the_first_colon_and_hide_the_secret() {
        let client = parse_client("svc:pa:ss").unwrap();
        assert_eq!((client.id.as_str(), client.value.as_str()), ("svc", "pa:ss"));
        assert!(!format!("{client:?}").contains("pa:ss"));
        assert!(parse_client("svc").is_err());
        assert!(parse_client(":secret").unwrap_err().find("secret").is_none());
    }
}
