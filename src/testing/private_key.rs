//! A private signing key: generated, read from or written as a JWK (RFC 7517,
//! RFC 7518 §6, RFC 8037), and handed to jsonwebtoken for signing.
//!
//! jsonwebtoken signs with RSA keys in PKCS#1 DER and with EC and Ed25519
//! keys in PKCS#8 DER (both of its backends), so that is what
//! [`PrivateKey::encoding_key`] produces.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey};
use p256::elliptic_curve::Generate as _;
use p256::elliptic_curve::sec1::ToSec1Point as _;
use p256::pkcs8::EncodePrivateKey as _;
use rsa::PrivateKey as RsaKey;
use rsa::pkcs1::der::{Decode as _, Encode as _};
use rsa::pkcs1::{DecodeRsaPrivateKey as _, EncodeRsaPrivateKey as _, RsaPrivateKeyRef, UintRef};
use serde_json::{Map, Value, json};

use crate::error::{Error, ErrorKind, Result};
use crate::verify::key::alg_name;

/// The size of generated RSA keys.
const RSA_BITS: usize = 2048;

/// The RSA members of a private JWK, in PKCS#1 order.
const RSA_MEMBERS: [&str; 8] = ["n", "e", "d", "p", "q", "dp", "dq", "qi"];

/// A private key of one of the types a JWK can hold: RSA (`RS*`, `PS*`),
/// P-256 (`ES256`), P-384 (`ES384`), Ed25519 (`EdDSA`), or an HMAC secret
/// (`oct`, `HS*`). For tests and development keys (`jwt-relay keygen` and
/// `mint`, the [`DevSts`](super::DevSts) signing key). `Debug` shows only
/// the key type.
///
/// ```
/// use jwt_relay::Algorithm;
/// use jwt_relay::testing::PrivateKey;
///
/// # fn main() -> Result<(), jwt_relay::Error> {
/// let key = PrivateKey::generate(Algorithm::ES256)?;
/// let private_jwk = key.private_jwk("dev1", Algorithm::ES256)?;
/// let again = PrivateKey::from_jwk(&private_jwk)?;
/// assert_eq!(
///     again.public_jwk("dev1", Algorithm::ES256)?,
///     key.public_jwk("dev1", Algorithm::ES256)?
/// );
/// # Ok(())
/// # }
/// ```
pub struct PrivateKey(Material);

enum Material {
    Rsa(Box<RsaKey>),
    P256(p256::SecretKey),
    P384(p384::SecretKey),
    Ed25519(SigningKey),
    Secret(Vec<u8>),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, [redacted])", self.describe())
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidKey, message)
}

fn configuration(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Configuration, message)
}

impl PrivateKey {
    /// A new random key for `alg`: RSA 2048 (`RS*`, `PS*`), P-256
    /// (`ES256`), P-384 (`ES384`) or Ed25519 (`EdDSA`). HMAC algorithms use
    /// a shared secret, not a key pair, and are refused
    /// ([`ErrorKind::Configuration`]), as is a failing system random number
    /// generator.
    pub fn generate(alg: Algorithm) -> Result<PrivateKey> {
        let no_randomness =
            |e: getrandom::Error| configuration(format!("the system random number generator failed: {e}"));
        let mut rng = getrandom::SysRng;
        let material = match alg {
            Algorithm::ES256 => {
                Material::P256(p256::SecretKey::try_generate_from_rng(&mut rng).map_err(no_randomness)?)
            }
            Algorithm::ES384 => {
                Material::P384(p384::SecretKey::try_generate_from_rng(&mut rng).map_err(no_randomness)?)
            }
            Algorithm::EdDSA => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(no_randomness)?;
                Material::Ed25519(SigningKey::from_bytes(&seed))
            }
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                return Err(configuration(format!(
                    "{} uses a shared secret, not a key pair: no key is generated for it \
                     (use at least 32 random bytes, e.g. `openssl rand -base64 48`)",
                    alg_name(alg)
                )));
            }
            _ if alg.family() == AlgorithmFamily::Rsa => Material::Rsa(Box::new(
                RsaKey::new(&mut rng, RSA_BITS)
                    .map_err(|e| configuration(format!("RSA key generation failed: {e}")))?,
            )),
            _ => {
                return Err(configuration(format!(
                    "no {} key can be generated",
                    alg_name(alg)
                )));
            }
        };
        Ok(PrivateKey(material))
    }

    /// The private key of a JWK (its `d`, or `k` for `oct`). The public
    /// members, when present, must match it. Anything else is
    /// [`ErrorKind::InvalidKey`]; messages never hold key material.
    pub fn from_jwk(jwk: &Value) -> Result<PrivateKey> {
        let kty = str_member(jwk, "kty")?;
        let has = |name: &str| jwk.get(name).is_some();
        if kty != "oct" && !has("d") {
            return Err(invalid(
                "the JWK has no private member `d`: a public key cannot sign",
            ));
        }
        let material = match kty {
            "RSA" => {
                let m = RSA_MEMBERS
                    .iter()
                    .map(|name| b64_member(jwk, name))
                    .collect::<Result<Vec<_>>>()?;
                let uint = |i: usize| {
                    UintRef::new(&m[i])
                        .map_err(|_| invalid(format!("`{}` is not an integer", RSA_MEMBERS[i])))
                };
                let der = RsaPrivateKeyRef {
                    modulus: uint(0)?,
                    public_exponent: uint(1)?,
                    private_exponent: uint(2)?,
                    prime1: uint(3)?,
                    prime2: uint(4)?,
                    exponent1: uint(5)?,
                    exponent2: uint(6)?,
                    coefficient: uint(7)?,
                    other_prime_infos: None,
                }
                .to_der()
                .map_err(|_| invalid("the RSA JWK cannot be encoded"))?;
                let key = RsaKey::from_pkcs1_der(&der)
                    .map_err(|e| invalid(format!("the RSA JWK is not a valid key: {e}")))?;
                Material::Rsa(Box::new(key))
            }
            "EC" => {
                let d = b64_member(jwk, "d")?;
                let bad = |_| invalid("`d` is not a private key on the JWK's curve");
                match str_member(jwk, "crv")? {
                    "P-256" => Material::P256(p256::SecretKey::from_slice(&d).map_err(bad)?),
                    "P-384" => Material::P384(p384::SecretKey::from_slice(&d).map_err(bad)?),
                    other => return Err(invalid(format!("curve `{other}` is not supported"))),
                }
            }
            "OKP" => {
                if str_member(jwk, "crv")? != "Ed25519" {
                    return Err(invalid("only the Ed25519 OKP curve can sign"));
                }
                let d: [u8; 32] = b64_member(jwk, "d")?
                    .try_into()
                    .map_err(|_| invalid("the Ed25519 `d` must be 32 bytes"))?;
                Material::Ed25519(SigningKey::from_bytes(&d))
            }
            "oct" => Material::Secret(b64_member(jwk, "k")?),
            other => return Err(invalid(format!("key type `{other}` is not supported"))),
        };
        let key = PrivateKey(material);
        for (name, value) in key.public_members()? {
            if has(name) && b64_member(jwk, name)? != value {
                return Err(invalid(format!(
                    "the JWK's `{name}` does not belong to its private key"
                )));
            }
        }
        Ok(key)
    }

    /// The algorithm used when none is named: `RS256`, `ES256`, `ES384`,
    /// `EdDSA` or `HS256`.
    pub fn default_algorithm(&self) -> Algorithm {
        match &self.0 {
            Material::Rsa(_) => Algorithm::RS256,
            Material::P256(_) => Algorithm::ES256,
            Material::P384(_) => Algorithm::ES384,
            Material::Ed25519(_) => Algorithm::EdDSA,
            Material::Secret(_) => Algorithm::HS256,
        }
    }

    /// Whether this key can sign with `alg`.
    pub fn fits(&self, alg: Algorithm) -> bool {
        match &self.0 {
            Material::Rsa(_) => alg.family() == AlgorithmFamily::Rsa,
            Material::Secret(_) => alg.family() == AlgorithmFamily::Hmac,
            _ => alg == self.default_algorithm(),
        }
    }

    /// The key as jsonwebtoken signs with it.
    pub fn encoding_key(&self) -> Result<EncodingKey> {
        let unencodable = || invalid(format!("the {} key cannot be encoded", self.describe()));
        Ok(match &self.0 {
            Material::Rsa(key) => {
                EncodingKey::from_rsa_der(key.to_pkcs1_der().map_err(|_| unencodable())?.as_bytes())
            }
            Material::P256(key) => {
                EncodingKey::from_ec_der(key.to_pkcs8_der().map_err(|_| unencodable())?.as_bytes())
            }
            Material::P384(key) => {
                EncodingKey::from_ec_der(key.to_pkcs8_der().map_err(|_| unencodable())?.as_bytes())
            }
            Material::Ed25519(key) => {
                EncodingKey::from_ed_der(key.to_pkcs8_der().map_err(|_| unencodable())?.as_bytes())
            }
            Material::Secret(k) => {
                EncodingKey::from_secret(k).map_err(|_| invalid("the secret `k` is empty"))?
            }
        })
    }

    /// The public JWK: `kty`, `crv`, the public members, `kid`, `alg`, `use: sig`.
    pub fn public_jwk(&self, kid: &str, alg: Algorithm) -> Result<Value> {
        Ok(self.jwk(kid, alg, self.public_members()?))
    }

    /// The private JWK: the public one plus the RFC 7518 private members
    /// (`d`, and `p`, `q`, `dp`, `dq`, `qi` for RSA; `k` for a secret).
    pub fn private_jwk(&self, kid: &str, alg: Algorithm) -> Result<Value> {
        Ok(self.jwk(kid, alg, self.members()?))
    }

    /// `kty`, `crv`, `kid`, `alg`, `use` and these members, base64url.
    fn jwk(&self, kid: &str, alg: Algorithm, members: Vec<(&'static str, Vec<u8>)>) -> Value {
        let (kty, crv) = match &self.0 {
            Material::Rsa(_) => ("RSA", None),
            Material::P256(_) => ("EC", Some("P-256")),
            Material::P384(_) => ("EC", Some("P-384")),
            Material::Ed25519(_) => ("OKP", Some("Ed25519")),
            Material::Secret(_) => ("oct", None),
        };
        let mut jwk = Map::new();
        jwk.insert("kty".to_owned(), json!(kty));
        if let Some(crv) = crv {
            jwk.insert("crv".to_owned(), json!(crv));
        }
        jwk.insert("kid".to_owned(), json!(kid));
        jwk.insert("alg".to_owned(), json!(alg_name(alg)));
        jwk.insert("use".to_owned(), json!("sig"));
        for (name, value) in members {
            jwk.insert(name.to_owned(), Value::String(URL_SAFE_NO_PAD.encode(value)));
        }
        Value::Object(jwk)
    }

    /// Every key member, public first, as raw bytes.
    fn members(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let mut members = self.public_members()?;
        match &self.0 {
            Material::Rsa(key) => {
                let der = key
                    .to_pkcs1_der()
                    .map_err(|_| invalid("the RSA key cannot be encoded"))?;
                let parts = RsaPrivateKeyRef::from_der(der.as_bytes())
                    .map_err(|_| invalid("the RSA key cannot be encoded"))?;
                members.extend(
                    RSA_MEMBERS[2..]
                        .iter()
                        .zip([
                            parts.private_exponent,
                            parts.prime1,
                            parts.prime2,
                            parts.exponent1,
                            parts.exponent2,
                            parts.coefficient,
                        ])
                        .map(|(name, value)| (*name, value.as_bytes().to_vec())),
                );
            }
            Material::P256(key) => members.push(("d", key.to_bytes().to_vec())),
            Material::P384(key) => members.push(("d", key.to_bytes().to_vec())),
            Material::Ed25519(key) => members.push(("d", key.to_bytes().to_vec())),
            Material::Secret(k) => members.push(("k", k.clone())),
        }
        Ok(members)
    }

    /// The public members: `n` and `e` (RSA), `x` and `y` (EC), `x` (OKP).
    fn public_members(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let point = |p: Option<&[u8]>| {
            p.map(<[u8]>::to_vec)
                .ok_or_else(|| invalid("the EC public key has no coordinates"))
        };
        Ok(match &self.0 {
            Material::Rsa(key) => {
                use rsa::traits::PublicKeyParts as _;
                vec![("n", key.n_bytes().to_vec()), ("e", key.e_bytes().to_vec())]
            }
            Material::P256(key) => {
                let p = key.public_key().to_sec1_point(false);
                vec![
                    ("x", point(p.x().map(|x| x.as_slice()))?),
                    ("y", point(p.y().map(|y| y.as_slice()))?),
                ]
            }
            Material::P384(key) => {
                let p = key.public_key().to_sec1_point(false);
                vec![
                    ("x", point(p.x().map(|x| x.as_slice()))?),
                    ("y", point(p.y().map(|y| y.as_slice()))?),
                ]
            }
            Material::Ed25519(key) => vec![("x", key.verifying_key().to_bytes().to_vec())],
            Material::Secret(_) => Vec::new(),
        })
    }

    /// The key's type, for messages.
    fn describe(&self) -> &'static str {
        match &self.0 {
            Material::Rsa(_) => "RSA",
            Material::P256(_) => "P-256",
            Material::P384(_) => "P-384",
            Material::Ed25519(_) => "Ed25519",
            Material::Secret(_) => "secret",
        }
    }
}

fn str_member<'a>(jwk: &'a Value, name: &str) -> Result<&'a str> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("the JWK's `{name}` is missing or not a string")))
}

fn b64_member(jwk: &Value, name: &str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(str_member(jwk, name)?)
        .map_err(|_| invalid(format!("the JWK's `{name}` is not base64url")))
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Header, Validation};

    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/private/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("fixture");
        serde_json::from_str(&text).expect("JSON")
    }

    /// Signs with the private key and verifies with its public JWK.
    fn signs_and_verifies(key: &PrivateKey, alg: Algorithm) {
        crate::verify::crypto_provider();
        let public: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(key.public_jwk("k", alg).expect("public JWK")).expect("a JWK");
        let token = jsonwebtoken::encode(
            &Header::new(alg),
            &json!({"sub": "alice"}),
            &key.encoding_key().expect("encoding key"),
        )
        .expect("signs");
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let decoding = DecodingKey::from_jwk(&public).expect("decoding key");
        let claims = jsonwebtoken::decode::<Value>(&token, &decoding, &validation)
            .expect("verifies")
            .claims;
        assert_eq!(claims["sub"], "alice");
    }

    #[test]
    fn generated_keys_round_trip_through_their_jwks() {
        for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
            let key = PrivateKey::generate(alg).expect("generated");
            assert_eq!(key.default_algorithm(), alg);
            let private = key.private_jwk("k", alg).expect("private JWK");
            assert_eq!(
                (private["kid"].as_str(), private["use"].as_str()),
                (Some("k"), Some("sig"))
            );
            let again = PrivateKey::from_jwk(&private).expect("read back");
            assert_eq!(again.private_jwk("k", alg).expect("private JWK"), private);
            let public = key.public_jwk("k", alg).expect("public JWK");
            assert!(public.get("d").is_none(), "{alg:?}");
            signs_and_verifies(&again, alg);
        }
    }

    #[test]
    fn fixture_keys_sign_with_every_fitting_algorithm() {
        for (name, algs) in [
            ("rsa-a.jwk.json", &[Algorithm::RS256, Algorithm::PS384][..]),
            ("ec256.jwk.json", &[Algorithm::ES256][..]),
            ("ec384.jwk.json", &[Algorithm::ES384][..]),
            ("ed25519.jwk.json", &[Algorithm::EdDSA][..]),
        ] {
            let jwk = fixture(name);
            let key = PrivateKey::from_jwk(&jwk).expect(name);
            for &alg in algs {
                assert!(key.fits(alg), "{name} {alg:?}");
                signs_and_verifies(&key, alg);
            }
            assert!(!key.fits(Algorithm::HS256), "{name}");
            // Writing the key back gives the members it was read from.
            let written = key
                .private_jwk("k", key.default_algorithm())
                .expect("private JWK");
            for (member, value) in jwk.as_object().expect("object") {
                if !["kid", "alg", "use"].contains(&member.as_str()) {
                    assert_eq!(&written[member], value, "{name}: `{member}`");
                }
            }
        }
        let secret = json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode([7u8; 32])});
        let key = PrivateKey::from_jwk(&secret).expect("secret");
        assert!(key.fits(Algorithm::HS512) && !key.fits(Algorithm::ES256));
        assert_eq!(key.default_algorithm(), Algorithm::HS256);
    }

    #[test]
    fn refuses_secrets_public_keys_and_mismatched_members() {
        let error = PrivateKey::generate(Algorithm::HS256).expect_err("no secrets");
        assert_eq!(error.kind(), ErrorKind::Configuration);
        assert!(error.message().contains("shared secret"), "{error}");

        let message = |jwk: Value| {
            let error = PrivateKey::from_jwk(&jwk).expect_err("refused");
            assert_eq!(error.kind(), ErrorKind::InvalidKey, "{error}");
            error.message().to_owned()
        };
        let mut public = fixture("ec256.jwk.json");
        let d = public["d"].as_str().expect("d").to_owned();
        public.as_object_mut().expect("object").remove("d");
        assert!(message(public).contains("`d`"));
        let mut other_x = fixture("ec256.jwk.json");
        other_x["x"] = fixture("ec384.jwk.json")["x"].clone();
        let refused = message(other_x);
        assert!(refused.contains("`x` does not belong"), "{refused}");
        assert!(!refused.contains(&d), "{refused}");
        assert!(message(json!({"kty": "EC", "crv": "P-521", "d": d})).contains("P-521"));
        assert!(message(json!({"kty": "OKP", "crv": "X25519", "d": d})).contains("Ed25519"));
        assert!(message(json!({"kty": "OKP", "crv": "Ed25519", "d": "!"})).contains("base64url"));
        assert!(message(json!({"kty": "XYZ", "d": d})).contains("`XYZ`"));
        assert!(message(json!({"d": d})).contains("`kty`"));
    }

    #[test]
    fn debug_shows_only_the_key_type() {
        let jwk = fixture("ed25519.jwk.json");
        let key = PrivateKey::from_jwk(&jwk).expect("key");
        let debug = format!("{key:?}");
        assert_eq!(debug, "PrivateKey(Ed25519, [redacted])");
    }
}
