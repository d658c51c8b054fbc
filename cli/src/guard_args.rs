//! The flags that build a verifier (`verify`, and every consume subcommand) and a guard (every
//! consume subcommand, whatever the broker).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jwt_relay::exchange::{ClientAuth, ExchangeCache};
use jwt_relay::verify::RemoteOptions;
use jwt_relay::{Algorithm, Exchange, Grace, Guard, Issuer, KeySet, Rfc8693Client, Verifier, dangerous};

use crate::{Failure, duration, jwks, parse_alg};

/// How tokens are verified: `--jwks`, `--issuer`, `--audience` and the finer rules.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifierArgs {
    /// The key set: a JWKS file, or an http(s) URL fetched on first use.
    #[arg(long, value_name = "FILE|URL")]
    jwks: String,
    /// A trusted issuer (`iss`). Repeat for more: each gets every audience and the same keys.
    #[arg(long = "issuer", value_name = "ISS", required = true)]
    issuers: Vec<String>,
    /// An accepted audience (`aud`). Repeat for more.
    #[arg(long = "audience", value_name = "AUD", required = true)]
    audiences: Vec<String>,
    /// The accepted algorithms, comma-separated (for example `RS256,ES256`).
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_alg)]
    alg: Vec<Algorithm>,
    /// The required `typ` header (for example `at+jwt`).
    #[arg(long, value_name = "TYP")]
    typ: Option<String>,
    /// Tolerated clock skew in seconds (default 30, at most 300).
    #[arg(long, value_name = "SECONDS")]
    leeway: Option<u64>,
    /// The largest token accepted, in bytes (default 8192).
    #[arg(long, value_name = "BYTES")]
    max_size: Option<usize>,
    /// With a `--jwks` URL: at most one fetch of the key set per this interval for unknown key
    /// ids, like `30s` (the default) or `2m`. A failed fetch is tried again sooner (1 s,
    /// doubling up to this).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse_duration)]
    jwks_cooldown: Option<Duration>,
    /// With a `--jwks` URL: how old the key set may get before it is fetched again, like
    /// `10m` (the default).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse_duration)]
    jwks_max_age: Option<Duration>,
    /// Accept a plain `http://` `--jwks` URL (and, for consumers, `exchange:` token endpoint)
    /// on a host that is not loopback. Anyone on the network path can then swap the keys or
    /// read the tokens: only for a network you trust like this machine.
    #[arg(long)]
    dangerous_allow_plain_http: bool,
}

impl VerifierArgs {
    /// The verifier the flags describe.
    pub(crate) fn build(&self) -> Result<Verifier, Failure> {
        let file_keys = if jwks::is_url(&self.jwks) {
            None
        } else {
            let json = std::fs::read(&self.jwks)
                .map_err(|e| Failure::new(format!("cannot read the JWKS file {}: {e}", self.jwks)))?;
            let keys = KeySet::from_jwks(&json)
                .map_err(|e| Failure::new(format!("the JWKS file {}: {}", self.jwks, e.message())))?;
            Some(only_allowed(keys, &self.alg)?)
        };
        if file_keys.is_some() && (self.jwks_cooldown.is_some() || self.jwks_max_age.is_some()) {
            return Err(Failure::new(
                "--jwks-cooldown and --jwks-max-age apply to a --jwks URL, not a file",
            ));
        }
        let mut options = RemoteOptions::default();
        if let Some(cooldown) = self.jwks_cooldown {
            options = options.cooldown(cooldown);
        }
        if let Some(max_age) = self.jwks_max_age {
            options = options.max_age(max_age);
        }
        let mut builder = Verifier::builder();
        for name in &self.issuers {
            let mut issuer = self
                .audiences
                .iter()
                .fold(Issuer::new(name), |issuer, aud| issuer.audience(aud));
            issuer = match &file_keys {
                Some(keys) => issuer.keys(keys.clone()),
                None => issuer.jwks_url_with(&self.jwks, options.clone()),
            };
            if self.dangerous_allow_plain_http {
                issuer = dangerous::allow_plain_http(issuer);
            }
            if !self.alg.is_empty() {
                issuer = issuer.algorithms(self.alg.iter().copied());
            }
            if let Some(typ) = &self.typ {
                issuer = issuer.typ(typ);
            }
            if let Some(leeway) = self.leeway {
                issuer = issuer.leeway(Duration::from_secs(leeway));
            }
            builder = builder.issuer(issuer);
        }
        if let Some(max) = self.max_size {
            builder = builder.max_token_size(max);
        }
        Ok(builder.build()?)
    }
}

/// The keys of a file pinned to one of the `--alg` algorithms (all of them when the list is
/// empty). The core refuses a static set holding a key of another algorithm; a remote set is
/// filtered per token, and this makes a file behave the same.
fn only_allowed(keys: KeySet, allowed: &[Algorithm]) -> Result<KeySet, Failure> {
    if allowed.is_empty() {
        return Ok(keys);
    }
    let kept: Vec<_> = keys
        .keys()
        .filter(|k| allowed.contains(&k.algorithm()))
        .cloned()
        .collect();
    if kept.is_empty() {
        return Err(Failure::new(
            "no key of the JWKS file is pinned to an --alg algorithm",
        ));
    }
    Ok(KeySet::new(kept)?)
}

/// How a consumer decides on a message: the verifier's flags and the expiry policy.
#[derive(Debug, clap::Args)]
pub(crate) struct GuardArgs {
    #[command(flatten)]
    verifier: VerifierArgs,
    /// What happens to a token that expired on its way: `reject`, `grace:<duration>` (accept it
    /// if it was valid when the message was published, for messages younger than the duration,
    /// like `10m`), or `exchange:<token endpoint URL>` (trade it for a fresh one, RFC 8693).
    #[arg(long, value_name = "POLICY", default_value = "reject", value_parser = parse_policy)]
    policy: Policy,
    /// With `grace`: also trust publish times set by the publishing client (the only kind
    /// RabbitMQ has, and Kafka's CreateTime), which a publisher could backdate.
    #[arg(long)]
    trust_client_timestamps: bool,
    /// With `exchange`: the client id at the token endpoint (client_secret_basic).
    #[arg(long, value_name = "ID", requires = "client_secret")]
    client_id: Option<String>,
    /// With `exchange`: the client secret.
    #[arg(
        long,
        value_name = "SECRET",
        env = "JWT_RELAY_CLIENT_SECRET",
        hide_env_values = true,
        value_parser = |s: &str| Ok::<_, String>(Secret(s.to_owned()))
    )]
    client_secret: Option<Secret>,
}

/// An expiry policy named on the command line.
#[derive(Debug, Clone)]
enum Policy {
    Reject,
    Grace(Duration),
    Exchange(String),
}

/// A secret given on the command line: `Debug` never shows it.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl GuardArgs {
    /// The guard the flags describe.
    pub(crate) fn build(&self) -> Result<Guard, Failure> {
        let verifier = self.verifier.build()?;
        let builder = Guard::builder(verifier);
        let guard = match &self.policy {
            Policy::Reject => builder.build(),
            Policy::Grace(max_age) => {
                let grace = Grace::new(*max_age);
                let grace = if self.trust_client_timestamps {
                    grace.trust_client_timestamps()
                } else {
                    grace
                };
                builder.policy(grace).build()
            }
            Policy::Exchange(endpoint) => {
                let auth = match (&self.client_id, &self.client_secret) {
                    (Some(client_id), Some(Secret(client_secret))) => ClientAuth::ClientSecretBasic {
                        client_id: client_id.clone(),
                        client_secret: client_secret.clone(),
                    },
                    (None, None) => ClientAuth::None,
                    _ => return Err(Failure::new("--client-id and --client-secret go together")),
                };
                let mut client = Rfc8693Client::builder(endpoint).client_auth(auth);
                if self.verifier.dangerous_allow_plain_http {
                    client = dangerous::allow_plain_http_token_endpoint(client);
                }
                let client = client.build()?;
                builder
                    .policy(Exchange::new(Arc::new(ExchangeCache::new(client))))
                    .build()
            }
        };
        Ok(guard)
    }
}

/// `reject`, `grace:<duration>` or `exchange:<url>`.
fn parse_policy(text: &str) -> Result<Policy, String> {
    if text == "reject" {
        return Ok(Policy::Reject);
    }
    if let Some(duration) = text.strip_prefix("grace:") {
        let max_age = duration::parse_duration(duration)?;
        if max_age.is_zero() {
            return Err(format!("the grace period `{duration}` must be positive"));
        }
        return Ok(Policy::Grace(max_age));
    }
    if let Some(url) = text.strip_prefix("exchange:") {
        if !jwks::is_url(url) {
            return Err(format!("`{url}` is not an http(s) URL of a token endpoint"));
        }
        return Ok(Policy::Exchange(url.to_owned()));
    }
    Err(format!(
        "`{text}` is not a policy: reject, grace:<duration> or exchange:<token endpoint URL>"
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn policies_parse() {
        assert!(matches!(parse_policy("reject"), Ok(Policy::Reject)));
        assert!(matches!(parse_policy("grace:10m"), Ok(Policy::Grace(d)) if d == Duration::from_secs(600)));
        assert!(matches!(
            parse_policy("exchange:http://127.0.0.1:1/token"),
            Ok(Policy::Exchange(u)) if u == "http://127.0.0.1:1/token"
        ));
        for bad in [
            "grace:-1m",
            "grace:0",
            "grace:soon",
            "exchange:ftp://x",
            "accept",
            "",
        ] {
            assert!(parse_policy(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_secret_never_shows() {
        assert_eq!(
            format!("{:?}", Some(Secret("hunter2".into()))),
            "Some([redacted])"
        );
    }
}
