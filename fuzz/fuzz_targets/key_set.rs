//! Arbitrary bytes as a JWKS document: parsing and checking never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = jwt_relay::KeySet::from_jwks(data);
    let _ = jwt_relay::verify::check_jwks(data, true);
});
