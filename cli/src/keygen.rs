//! `jwt-relay keygen`: a new signing key as a private JWK and a public JWKS.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use jwt_relay::Algorithm;
use jwt_relay::testing::PrivateKey;
use serde_json::{Value, json};

use crate::{Failure, parse_alg, print_line};

/// Options of `jwt-relay keygen`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512 or EdDSA (RSA keys are 2048 bits).
    #[arg(long, value_parser = parse_alg)]
    alg: Algorithm,
    /// The key id; also names the files `<kid>.jwk.json` and `<kid>.jwks.json`.
    #[arg(long)]
    kid: String,
    /// Where to write the two files.
    #[arg(long, value_name = "DIR", default_value = ".")]
    out_dir: PathBuf,
}

/// Writes `<kid>.jwk.json` (private, mode 0600 on Unix) and
/// `<kid>.jwks.json` (public), refusing to overwrite either, and prints
/// their paths.
pub(crate) fn run(args: &Args) -> Result<(), Failure> {
    check_file_name(&args.kid)?;
    let private_path = args.out_dir.join(format!("{}.jwk.json", args.kid));
    let public_path = args.out_dir.join(format!("{}.jwks.json", args.kid));
    for path in [&private_path, &public_path] {
        if path.exists() {
            return Err(Failure::new(format!(
                "{} already exists; not overwriting it",
                path.display()
            )));
        }
    }
    let key = PrivateKey::generate(args.alg).map_err(key_failure)?;
    let public = json!({ "keys": [key.public_jwk(&args.kid, args.alg).map_err(key_failure)?] });
    let private = key.private_jwk(&args.kid, args.alg).map_err(key_failure)?;
    write_new(&private_path, &private, 0o600)?;
    write_new(&public_path, &public, 0o644)?;
    print_line(private_path.display())?;
    print_line(public_path.display())
}

/// A key error, said as its message alone (without the kind).
pub(crate) fn key_failure(e: jwt_relay::Error) -> Failure {
    Failure::new(e.message())
}

/// A kid that is safe as a file name: no separator, no control character,
/// not empty, not `.` or `..`.
fn check_file_name(kid: &str) -> Result<(), Failure> {
    let unsafe_char = |c: char| matches!(c, '/' | '\\') || c.is_control();
    if kid.is_empty() || kid == "." || kid == ".." || kid.chars().any(unsafe_char) {
        return Err(Failure::new(
            "--kid names the output files: it must be non-empty, not `.` or `..`, \
             and hold no path separator or control character",
        ));
    }
    Ok(())
}

/// Writes pretty JSON to a file that must not exist yet, with this mode
/// on Unix.
fn write_new(path: &Path, json: &Value, mode: u32) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::new(format!("cannot write {}: {e}", path.display()));
    let text = serde_json::to_string_pretty(json)
        .map_err(|e| Failure::new(format!("cannot encode {}: {e}", path.display())))?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .map_err(fail)
}
