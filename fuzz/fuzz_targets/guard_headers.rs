//! Arbitrary token header entries through the guard: no panic, never accepted, always a
//! permanent refusal. The input is split on `\n` into entries, each `name:value` (raw bytes).

#![no_main]

use jwt_relay::{ErrorClass, Guard, Headers};
use jwt_relay::consume::{MessageInfo, Outcome};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let mut headers = Headers::new();
    for entry in data.split(|b| *b == b'\n').take(8) {
        let mut parts = entry.splitn(2, |b| *b == b':');
        let name = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        headers.append(name, parts.next().unwrap_or_default().to_vec());
    }
    let guard = Guard::new(common::verifier());
    let outcome = common::runtime().block_on(guard.check(&headers, &MessageInfo::new("orders")));
    match outcome {
        Outcome::Reject(error) => assert_eq!(error.class(), ErrorClass::Permanent),
        other => panic!("not a rejection: {other:?}"),
    }
});
