//! The crypto backend signatures are checked (and, in `testing`, made) with.
//!
//! Cargo features add up across a build: when anything in it turns on both
//! backends (another crate using jsonwebtoken's `rust_crypto`, say),
//! jsonwebtoken cannot choose and panics on its first signature. So
//! jwt-relay chooses, always the same way: aws-lc-rs when its feature is on,
//! else RustCrypto, installed as jsonwebtoken's process-wide provider before
//! its first use. A build with neither does not compile.

use std::sync::Once;

use jsonwebtoken::crypto::CryptoProvider;

#[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
compile_error!(
    "jwt-relay needs a crypto backend: enable its `aws-lc-rs` feature (the default) or its `rust-crypto` feature"
);

/// The chosen backend: aws-lc-rs whenever its feature is on.
#[cfg(feature = "aws-lc-rs")]
static BACKEND: &CryptoProvider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
/// The chosen backend: RustCrypto, the only one on.
#[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
static BACKEND: &CryptoProvider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;

/// The jsonwebtoken crypto provider that jwt-relay checks signatures with:
/// aws-lc-rs when the `aws-lc-rs` feature is on (even if `rust-crypto` is
/// too), else RustCrypto.
///
/// The first call installs it as jsonwebtoken's process-wide default
/// ([`CryptoProvider::install_default`]); every jwt-relay call that signs or
/// verifies makes that call first. A provider the application installed
/// before stays, and is the one returned. Call this before using
/// [`jsonwebtoken`] directly in a build where both backends may be on.
pub fn crypto_provider() -> &'static CryptoProvider {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means a provider is installed already: that one is kept.
        let _ = BACKEND.install_default();
    });
    // Installed by now, ours or the application's.
    CryptoProvider::try_get_default().unwrap_or(BACKEND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chosen_backend_is_installed_for_jsonwebtoken() {
        let chosen = crypto_provider();
        let installed = CryptoProvider::try_get_default().map(std::ptr::from_ref);
        assert_eq!(installed, Some(std::ptr::from_ref(chosen)));
        #[cfg(feature = "aws-lc-rs")]
        assert!(std::ptr::eq(
            chosen,
            &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER
        ));
        #[cfg(not(feature = "aws-lc-rs"))]
        assert!(std::ptr::eq(
            chosen,
            &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER
        ));
    }
}
