//! What the CLI tests share: running the built `jwt-relay` binary, and
//! making keys and tokens with it.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The issuer every CLI test mints for.
pub const ISS: &str = "https://id.example.test";

/// What one run of the binary left.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout lines, each parsed as JSON.
    pub fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Starts the binary with `args` and extra environment variables.
pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_jwt-relay"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Feeds `stdin` to a started binary and waits for it.
pub fn finish(mut child: Child, stdin: &str) -> Run {
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Runs the binary with `args`, feeding `stdin`.
pub fn run(args: &[&str], stdin: &str) -> Run {
    finish(spawn(args, &[]), stdin)
}

/// The path of a file in the repository's `tests/fixtures/`.
pub fn fixture(name: &str) -> String {
    format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `keygen` into `dir`; returns the private JWK and public JWKS paths.
pub fn keygen(dir: &Path, alg: &str, kid: &str) -> (PathBuf, PathBuf) {
    let out = run(
        &[
            "keygen",
            "--alg",
            alg,
            "--kid",
            kid,
            "--out-dir",
            dir.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let paths: Vec<PathBuf> = out.stdout.lines().map(PathBuf::from).collect();
    assert_eq!(
        paths,
        [
            dir.join(format!("{kid}.jwk.json")),
            dir.join(format!("{kid}.jwks.json"))
        ]
    );
    (paths[0].clone(), paths[1].clone())
}

/// `mint` a token of subject `alice` for [`ISS`] and `aud` (5 minutes unless
/// `extra` says `--ttl`).
pub fn mint(key: &str, aud: &str, extra: &[&str]) -> String {
    let mut args = vec!["mint", "--key", key, "--iss", ISS, "--aud", aud, "--sub", "alice"];
    args.extend_from_slice(extra);
    if !extra.iter().any(|a| a.starts_with("--ttl")) {
        args.extend_from_slice(&["--ttl", "5m"]);
    }
    let out = run(&args, "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let token = out.stdout.trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");
    token
}
