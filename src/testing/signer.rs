//! The service's signing key: generated, or read from a private JWK; its
//! public half as a JWK; and JWT signing.

use std::fmt;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::DEFAULT_KID;
use super::private_key::PrivateKey;
use crate::error::{Error, ErrorKind, Result};
use crate::verify::key::{Key, alg_name};

/// A private key the service signs with. `Debug` shows no key material.
pub(super) struct Signer {
    alg: Algorithm,
    kid: String,
    key: EncodingKey,
    public_jwk: Value,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("key", &"[redacted]")
            .finish()
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidKey, message)
}

impl Signer {
    /// A fresh P-256 key for ES256, with `kid` [`DEFAULT_KID`].
    pub(super) fn generate() -> Result<Signer> {
        Signer::new(&PrivateKey::generate(Algorithm::ES256)?, DEFAULT_KID.to_owned())
    }

    /// The key of a private JWK: EC P-256 or OKP Ed25519, with `d`. The
    /// public members, when present, must belong to it.
    pub(super) fn from_private_jwk(json: &str) -> Result<Signer> {
        let jwk: Value = serde_json::from_str(json)
            .map_err(|e| invalid("the signing key is not valid JSON").with_source(e))?;
        let text = |name: &str| jwk.get(name).and_then(Value::as_str);
        let kid = match jwk.get("kid") {
            None => DEFAULT_KID.to_owned(),
            Some(Value::String(kid)) => kid.clone(),
            Some(_) => return Err(invalid("the signing key's `kid` is not a string")),
        };
        match (text("kty"), text("crv")) {
            (Some("EC"), Some("P-256")) | (Some("OKP"), Some("Ed25519")) => {}
            (kty, crv) => {
                return Err(invalid(format!(
                    "the development token service signs with P-256 (ES256) or Ed25519 (EdDSA) keys, \
                     not kty {:?} crv {:?}",
                    kty.unwrap_or("(none)"),
                    crv.unwrap_or("(none)")
                )));
            }
        }
        let key =
            PrivateKey::from_jwk(&jwk).map_err(|e| invalid(format!("the signing key: {}", e.message())))?;
        let alg = key.default_algorithm();
        if let Some(named) = text("alg")
            && named != alg_name(alg)
        {
            return Err(invalid(format!(
                "the signing key says `alg` {named:?}, but its curve signs {}",
                alg_name(alg)
            )));
        }
        Signer::new(&key, kid)
    }

    /// Signs with `key` in its usual algorithm (ES256 or EdDSA).
    fn new(key: &PrivateKey, kid: String) -> Result<Signer> {
        let alg = key.default_algorithm();
        Ok(Signer {
            alg,
            public_jwk: key.public_jwk(&kid, alg)?,
            key: key.encoding_key()?,
            kid,
        })
    }

    /// The key's id.
    pub(super) fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm it signs with.
    pub(super) fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The public key set: `{"keys": [<public JWK>]}`.
    pub(super) fn jwks(&self) -> Value {
        json!({ "keys": [self.public_jwk] })
    }

    /// The public key, to verify the service's own tokens.
    pub(super) fn verification_key(&self) -> Result<Key> {
        Key::from_jwk(&self.public_jwk.to_string())
    }

    /// The base64url signature of a JWS signing input (`header.payload`), for hostile tokens
    /// whose header or payload no encoder would write.
    pub(super) fn sign_input(&self, input: &str) -> Result<String> {
        crate::verify::crypto_provider();
        jsonwebtoken::crypto::sign(input.as_bytes(), &self.key, self.alg).map_err(|e| {
            Error::new(
                ErrorKind::Configuration,
                format!("cannot sign with {}", alg_name(self.alg)),
            )
            .with_source(e)
        })
    }

    /// Signs `claims` as a JWT with `typ: JWT` and this key's `kid`.
    pub(super) fn sign(&self, claims: &Value) -> Result<String> {
        let mut header = Header::new(self.alg);
        header.typ = Some("JWT".to_owned());
        header.kid = Some(self.kid.clone());
        crate::verify::crypto_provider();
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|e| {
            Error::new(
                ErrorKind::Configuration,
                format!("cannot sign with {}", alg_name(self.alg)),
            )
            .with_source(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ed25519_dalek::SigningKey;

    use super::*;

    #[test]
    fn generated_key_signs_and_hides_its_material() {
        let generated = Signer::generate().unwrap();
        assert_eq!(
            (generated.kid(), generated.algorithm()),
            (DEFAULT_KID, Algorithm::ES256)
        );
        assert!(!format!("{generated:?}").contains(generated.public_jwk["x"].as_str().unwrap()));
        let token = generated.sign(&json!({"iss": "i"})).unwrap();
        assert_eq!(token.split('.').count(), 3);
    }

    #[test]
    fn ed25519_jwk_with_its_kid() {
        let d = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let x = URL_SAFE_NO_PAD.encode(SigningKey::from_bytes(&[7u8; 32]).verifying_key().to_bytes());
        let jwk = json!({"kty":"OKP","crv":"Ed25519","d":d,"x":x,"kid":"mine","alg":"EdDSA"});
        let signer = Signer::from_private_jwk(&jwk.to_string()).unwrap();
        assert_eq!((signer.kid(), signer.algorithm()), ("mine", Algorithm::EdDSA));
        assert!(signer.verification_key().is_ok());
        assert!(signer.sign(&json!({})).is_ok());
    }

    #[test]
    fn refuses_unsupported_or_inconsistent_keys() {
        let message = |jwk: Value| {
            Signer::from_private_jwk(&jwk.to_string())
                .unwrap_err()
                .to_string()
        };
        assert!(message(json!({"kty":"oct","k":"AAAA"})).contains("P-256"));
        assert!(message(json!({"kty":"EC","crv":"P-256"})).contains("`d`"));
        let d = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let other_x = URL_SAFE_NO_PAD.encode([1u8; 32]);
        assert!(message(json!({"kty":"OKP","crv":"Ed25519","d":d,"x":other_x})).contains("does not belong"));
        assert!(message(json!({"kty":"OKP","crv":"Ed25519","d":d,"alg":"ES256"})).contains("alg"));
        assert!(!message(json!({"kty":"OKP","crv":"Ed25519","d":d,"x":other_x})).contains(&d));
    }
}
