//! `jwt-relay jwks check`: which keys of a JWKS document would be used, and why not.

use std::time::Duration;

use jwt_relay::verify::{JwkOutcome, alg_name, check_jwks};

use crate::{Failure, print_line};

/// How long one fetch may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest document read.
const MAX_BODY: usize = 1 << 20;

/// The `jwks` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Check every key of a JWKS: one line per key, accepted, skipped or rejected.
    Check {
        /// A JWKS file, or an http(s) URL (checked as a remote set: no secret keys).
        #[arg(value_name = "FILE|URL")]
        source: String,
    },
}

/// Whether a `--jwks` or `check` argument names a remote set.
pub(crate) fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// Prints one line per key. `Ok(false)` when a key was rejected.
pub(crate) async fn check(source: &str) -> Result<bool, Failure> {
    let remote = is_url(source);
    let json = if remote {
        fetch(source).await?
    } else {
        std::fs::read(source).map_err(|e| Failure::new(format!("cannot read {source}: {e}")))?
    };
    let checks = check_jwks(&json, remote).map_err(|e| Failure::new(format!("{source}: {}", e.message())))?;
    let mut none_rejected = true;
    for check in checks {
        let kid = check.kid.as_deref().unwrap_or("-");
        let kty = check.kty.as_deref().unwrap_or("-");
        match check.outcome {
            JwkOutcome::Accepted(alg) => {
                print_line(format_args!("accepted kid={kid} kty={kty} alg={}", alg_name(alg)))?;
            }
            JwkOutcome::Skipped(reason) => {
                print_line(format_args!("skipped kid={kid} kty={kty} reason={reason}"))?
            }
            JwkOutcome::Rejected(reason) => {
                none_rejected = false;
                print_line(format_args!("rejected kid={kid} kty={kty} reason={reason}"))?;
            }
        }
    }
    Ok(none_rejected)
}

/// GETs a document the way the verifier fetches a remote set: only a 200,
/// no redirect, at most [`TIMEOUT`] and [`MAX_BODY`].
async fn fetch(url: &str) -> Result<Vec<u8>, Failure> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| Failure::new(format!("cannot build the HTTP client: {e}")))?;
    let mut response = client
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| Failure::new(format!("GET {url} failed: {e}")))?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        let note = if status.is_redirection() {
            " (redirects are not followed)"
        } else {
            ""
        };
        return Err(Failure::new(format!("GET {url} answered {status}{note}")));
    }
    let too_large = || Failure::new(format!("GET {url}: the body is larger than {MAX_BODY} bytes"));
    if response.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Failure::new(format!("GET {url}: reading the body failed: {e}")))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
