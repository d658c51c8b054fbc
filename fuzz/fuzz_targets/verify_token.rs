//! Arbitrary bytes as a token: no panic, never verified, the message bounded.

#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let verified = common::runtime().block_on(common::verifier().verify(&token));
    let error = verified.expect_err("a fuzzer cannot forge an HS256 token");
    assert!(error.message().len() < 1_000);
});
