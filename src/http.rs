//! HTTP pieces shared by the key-set fetcher and the token-exchange client.

use std::fmt;

/// Why a body was not read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// It is larger than this many bytes.
    TooLarge(usize),
    /// The connection failed or timed out while reading it.
    Read(reqwest::Error),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge(max) => write!(f, "the body is larger than {max} bytes"),
            BodyError::Read(_) => f.write_str("reading the body failed"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BodyError::TooLarge(_) => None,
            BodyError::Read(e) => Some(e),
        }
    }
}

/// Reads at most `max` bytes of the body.
pub(crate) async fn read_capped(
    response: &mut reqwest::Response,
    max: usize,
) -> std::result::Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
