//! What the broker subcommands share: tokens read from stdin one per line, `name=value`
//! headers, and JSON output lines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt as _, BufReader, Stdin};

use crate::{Failure, print_line};

/// The tokens on stdin, one per line; blank lines are skipped.
pub(crate) struct TokenLines {
    stdin: BufReader<Stdin>,
    line: Vec<u8>,
}

impl TokenLines {
    pub(crate) fn stdin() -> Self {
        TokenLines {
            stdin: BufReader::new(tokio::io::stdin()),
            line: Vec::new(),
        }
    }

    /// The next token, trimmed; `None` at the end of stdin.
    pub(crate) async fn next(&mut self) -> Result<Option<String>, Failure> {
        loop {
            self.line.clear();
            let read = self
                .stdin
                .read_until(b'\n', &mut self.line)
                .await
                .map_err(|e| Failure::new(format!("cannot read stdin: {e}")))?;
            if read == 0 {
                return Ok(None);
            }
            let Ok(text) = std::str::from_utf8(&self.line) else {
                return Err(Failure::new("a stdin line is not UTF-8 text"));
            };
            let token = text.trim();
            if !token.is_empty() {
                return Ok(Some(token.to_owned()));
            }
        }
    }
}

/// One JSON line.
pub(crate) fn json(value: &impl Serialize) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|e| Failure::new(format!("cannot write JSON: {e}")))
}

/// `name=value`.
pub(crate) fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not name=value")),
    }
}

/// Prints a consumer's JSON lines, remembering whether any message was refused and whether
/// stdout broke. Cheap to clone: clones share what they remember.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcomes {
    refused: Arc<AtomicBool>,
    unwritable: Arc<AtomicBool>,
}

impl Outcomes {
    /// Prints `line`, the outcome of a message that was `refused` (dead-lettered) or not;
    /// `false` when stdout is broken.
    pub(crate) fn print(&self, line: &impl Serialize, refused: bool) -> bool {
        if refused {
            self.refused.store(true, Ordering::Relaxed);
        }
        let printed = json(line).and_then(print_line).is_ok();
        if !printed {
            self.unwritable.store(true, Ordering::Relaxed);
        }
        printed
    }

    /// `Ok(true)` when no message was refused; an error if stdout broke.
    pub(crate) fn verdict(&self) -> Result<bool, Failure> {
        if self.unwritable.load(Ordering::Relaxed) {
            return Err(Failure::new("cannot write to stdout"));
        }
        Ok(!self.refused.load(Ordering::Relaxed))
    }
}

/// Completes on Ctrl-C. Where no handler can be installed it never completes, and Ctrl-C ends
/// the process: the broker delivers again what was not settled.
pub(crate) async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
