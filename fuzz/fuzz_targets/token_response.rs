//! Arbitrary answers from a token endpoint, read as the RFC 8693 client reads them: no panic,
//! a token only from a 200, and a bounded error message. The first two bytes are the status,
//! the third the length of the `Retry-After` value that follows; the rest is the body.

#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let [high, low, length, rest @ ..] = data else {
        return;
    };
    let status = 100 + u16::from_be_bytes([*high, *low]) % 500;
    let (retry_after, body) = rest.split_at(usize::from(*length).min(rest.len()));
    let answer = common::runtime().block_on(jwt_relay::fuzzing::token_response(
        status,
        retry_after,
        body.to_vec(),
    ));
    match answer {
        Ok(length) => assert!(status == 200 && length > 0),
        Err(message) => assert!(message.len() < 2_000, "{}", message.len()),
    }
});
