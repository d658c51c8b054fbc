//! `jwt-relay verify`: tokens on stdin, one JSON verdict per line on stdout.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jwt_relay::{Algorithm, AuthContext, Error, ErrorKind, Issuer, KeySet, Verifier};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::{Failure, jwks, parse_alg, print_line};

/// Options of `jwt-relay verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
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
    /// Verify as if the time were this, in Unix seconds.
    #[arg(long, value_name = "UNIX_SECONDS", allow_hyphen_values = true)]
    now: Option<i64>,
}

/// The verdict on a token that verified.
#[derive(Debug, Serialize)]
struct Valid<'a> {
    valid: bool,
    iss: &'a str,
    sub: Option<&'a str>,
    kid: Option<&'a str>,
    exp: Option<i64>,
}

/// The verdict on a token that did not verify. Never holds the token.
#[derive(Debug, Serialize)]
struct Invalid<'a> {
    valid: bool,
    kind: &'static str,
    class: &'static str,
    error: &'a str,
}

/// Verifies every line of stdin. `Ok(true)` when every token verified.
pub(crate) async fn run(args: &Args) -> Result<bool, Failure> {
    let verifier = build(args)?;
    let now = args.now.map(unix_time).transpose()?;
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    let mut all_valid = true;
    loop {
        line.clear();
        let read = stdin
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| Failure::new(format!("cannot read stdin: {e}")))?;
        if read == 0 {
            break;
        }
        let result = match std::str::from_utf8(&line) {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => {
                let token = text.trim();
                match now {
                    Some(now) => verifier.verify_at(token, now).await,
                    None => verifier.verify(token).await,
                }
            }
            Err(_) => Err(Error::new(ErrorKind::NonAscii, "the line is not UTF-8 text")),
        };
        all_valid &= result.is_ok();
        let verdict = verdict(&result).map_err(|e| Failure::new(format!("cannot write the verdict: {e}")))?;
        print_line(verdict)?;
    }
    Ok(all_valid)
}

/// The verifier the options describe.
fn build(args: &Args) -> Result<Verifier, Failure> {
    let file_keys = if jwks::is_url(&args.jwks) {
        None
    } else {
        let json = std::fs::read(&args.jwks)
            .map_err(|e| Failure::new(format!("cannot read the JWKS file {}: {e}", args.jwks)))?;
        let keys = KeySet::from_jwks(&json)
            .map_err(|e| Failure::new(format!("the JWKS file {}: {}", args.jwks, e.message())))?;
        Some(only_allowed(keys, &args.alg)?)
    };
    let mut builder = Verifier::builder();
    for name in &args.issuers {
        let mut issuer = args
            .audiences
            .iter()
            .fold(Issuer::new(name), |issuer, aud| issuer.audience(aud));
        issuer = match &file_keys {
            Some(keys) => issuer.keys(keys.clone()),
            None => issuer.jwks_url(&args.jwks),
        };
        if !args.alg.is_empty() {
            issuer = issuer.algorithms(args.alg.iter().copied());
        }
        if let Some(typ) = &args.typ {
            issuer = issuer.typ(typ);
        }
        if let Some(leeway) = args.leeway {
            issuer = issuer.leeway(Duration::from_secs(leeway));
        }
        builder = builder.issuer(issuer);
    }
    if let Some(max) = args.max_size {
        builder = builder.max_token_size(max);
    }
    Ok(builder.build()?)
}

/// The keys of a file pinned to one of the `--alg` algorithms (all of them
/// when the list is empty). The core refuses a static set holding a key of
/// another algorithm; a remote set is filtered per token, and this makes a
/// file behave the same.
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

/// One JSON line for a verification result.
fn verdict(result: &Result<AuthContext, Error>) -> serde_json::Result<String> {
    match result {
        Ok(ctx) => serde_json::to_string(&Valid {
            valid: true,
            iss: ctx.issuer(),
            sub: ctx.subject(),
            kid: ctx.kid(),
            exp: ctx.claims().expires_at(),
        }),
        Err(e) => serde_json::to_string(&Invalid {
            valid: false,
            kind: e.kind().as_str(),
            class: e.class().as_str(),
            error: e.message(),
        }),
    }
}

/// `seconds` after (or before) the Unix epoch.
fn unix_time(seconds: i64) -> Result<SystemTime, Failure> {
    let offset = Duration::from_secs(seconds.unsigned_abs());
    let time = if seconds >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    };
    time.ok_or_else(|| Failure::new(format!("--now {seconds} is out of range")))
}
