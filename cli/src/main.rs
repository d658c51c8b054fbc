//! The `jwt-relay` command.
//!
//! - `verify` reads tokens from stdin, one per line, and prints one JSON
//!   verdict per line.
//! - `jwks check` says which keys of a JWKS document would be used.
//! - `keygen` and `mint` make development keys and tokens, for tests and
//!   local setups.
//! - `dev-sts` runs a development token service (identity provider and
//!   RFC 8693 token exchange) until Ctrl-C.
//! - `rabbitmq publish|consume` publishes tokens read from stdin and
//!   consumes a queue through the guard, one JSON line per message.
//! - `nats publish|consume|serve-echo` does the same on NATS (core or
//!   JetStream), and serves a verified echo service for request/reply.
//! - `kafka publish|consume` does the same on Kafka.
//!
//! Exit status: 0 when everything passed, 1 when a token failed or a key was
//! rejected, 2 on a usage or configuration error. Tokens and key material
//! never appear in an error message.

mod dev_sts;
mod duration;
mod guard_args;
mod jwks;
mod kafka;
mod keygen;
mod lines;
mod mint;
mod nats;
mod rabbitmq;
mod verify;

use std::fmt;
use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use jwt_relay::Algorithm;

/// Verify tokens, check key sets, make development keys and tokens.
#[derive(Debug, Parser)]
#[command(name = "jwt-relay", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify tokens read from stdin (one per line); print one JSON verdict per line.
    Verify(verify::Args),
    /// Inspect JWKS documents.
    #[command(subcommand)]
    Jwks(jwks::Command),
    /// Generate a signing key: a private JWK and a public JWKS holding it.
    Keygen(keygen::Args),
    /// Print one signed token, for tests and development.
    Mint(mint::Args),
    /// Run a development token service (identity provider and RFC 8693 token exchange) until Ctrl-C.
    DevSts(dev_sts::Args),
    /// Publish to and consume from RabbitMQ, with the token in the message headers.
    #[command(subcommand)]
    Rabbitmq(rabbitmq::Command),
    /// Publish to and consume from NATS (core and JetStream), and serve a verified echo service.
    #[command(subcommand)]
    Nats(nats::Command),
    /// Send to and consume from Kafka, with the token in the record headers.
    #[command(subcommand)]
    Kafka(kafka::Command),
}

/// What stops a command before it is done: a bad option, an unreadable
/// file, a configuration the core refuses. Exit status 2.
#[derive(Debug)]
struct Failure(String);

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Failure(message.into())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<jwt_relay::Error> for Failure {
    fn from(e: jwt_relay::Error) -> Self {
        Failure(e.to_string())
    }
}

/// Writes one line to stdout and flushes it. A closed pipe is a failure,
/// where `println!` would panic.
fn print_line(line: impl fmt::Display) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::new(format!("cannot write to stdout: {e}")))
}

/// Parses one JOSE algorithm name (`RS256`, `ES256`, `EdDSA`...).
fn parse_alg(name: &str) -> Result<Algorithm, String> {
    name.trim()
        .parse()
        .map_err(|_| format!("`{name}` is not a JOSE signature algorithm"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let passed = match &cli.command {
        Command::Verify(args) => verify::run(args).await,
        Command::Jwks(jwks::Command::Check { source }) => jwks::check(source).await,
        Command::Keygen(args) => keygen::run(args).map(|()| true),
        Command::Mint(args) => mint::run(args).map(|()| true),
        Command::DevSts(args) => dev_sts::run(args).await.map(|()| true),
        Command::Rabbitmq(command) => rabbitmq::run(command).await,
        Command::Nats(command) => nats::run(command).await,
        Command::Kafka(command) => kafka::run(command).await,
    };
    match passed {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(failure) => {
            // Nothing is left to do if stderr is closed too.
            let _ = writeln!(std::io::stderr(), "error: {failure}");
            ExitCode::from(2)
        }
    }
}
