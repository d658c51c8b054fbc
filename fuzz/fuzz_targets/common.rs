//! The verifier every target uses: one issuer, one HS256 key. A fuzzer cannot forge its MAC, so
//! any token it accepts is a bug.

use jwt_relay::{Algorithm, Issuer, Key, Verifier};

pub fn verifier() -> Verifier {
    let key = Key::from_secret(b"a fuzzing secret of at least 32 bytes", Algorithm::HS256)
        .expect("a valid secret")
        .with_kid("k1");
    Verifier::builder()
        .issuer(
            Issuer::new("https://id.example")
                .audience("orders")
                .key(key)
                .expect("one key"),
        )
        .build()
        .expect("a valid verifier")
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
}
