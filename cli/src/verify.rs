//! `jwt-relay verify`: tokens on stdin, one JSON verdict per line on stdout.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jwt_relay::{AuthContext, Error, ErrorKind};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::guard_args::VerifierArgs;
use crate::{Failure, print_line};

/// Options of `jwt-relay verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    verifier: VerifierArgs,
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
    let verifier = args.verifier.build()?;
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
