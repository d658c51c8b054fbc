//! Entry points for the `cargo fuzz` targets in `fuzz/` (feature `fuzzing`): parsers private to
//! the crate that read what a remote service controls. Not a stable API.

/// Reads `body` as the token endpoint's answer with this `status` and `Retry-After` value, as
/// the RFC 8693 client does: `Ok` with the issued token's length, or the error message.
pub async fn token_response(status: u16, retry_after: &[u8], body: Vec<u8>) -> Result<usize, String> {
    crate::exchange::read_answer(status, retry_after, body).await
}
