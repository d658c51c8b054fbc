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
use jwt_relay::jsonwebtoken::{AlgorithmFamily, EncodingKey};
use jwt_relay::{Algorithm, alg_name};
use p256::elliptic_curve::Generate as _;
use p256::elliptic_curve::sec1::ToSec1Point as _;
use p256::pkcs8::EncodePrivateKey as _;
use rsa::PrivateKey as RsaKey;
use rsa::pkcs1::der::{Decode as _, Encode as _};
use rsa::pkcs1::{DecodeRsaPrivateKey as _, EncodeRsaPrivateKey as _, RsaPrivateKeyRef, UintRef};
use serde_json::{Map, Value, json};

use crate::Failure;

/// The size of generated RSA keys.
const RSA_BITS: usize = 2048;

/// The RSA members of a private JWK, in PKCS#1 order.
const RSA_MEMBERS: [&str; 8] = ["n", "e", "d", "p", "q", "dp", "dq", "qi"];

/// A private key of one of the types a JWK can hold. `Debug` shows only the type.
pub(crate) enum PrivateKey {
    /// An RSA key, for `RS*` and `PS*`.
    Rsa(Box<RsaKey>),
    /// A P-256 key, for `ES256`.
    P256(p256::SecretKey),
    /// A P-384 key, for `ES384`.
    P384(p384::SecretKey),
    /// An Ed25519 key, for `EdDSA`.
    Ed25519(SigningKey),
    /// An HMAC secret (an `oct` JWK), for `HS*`.
    Secret(Vec<u8>),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, [redacted])", self.describe())
    }
}

impl PrivateKey {
    /// A new random key for `alg`: RSA 2048, P-256, P-384 or Ed25519.
    pub(crate) fn generate(alg: Algorithm) -> Result<PrivateKey, Failure> {
        let no_randomness =
            |e: getrandom::Error| Failure::new(format!("the system random number generator failed: {e}"));
        let mut rng = getrandom::SysRng;
        Ok(match alg {
            Algorithm::ES256 => {
                PrivateKey::P256(p256::SecretKey::try_generate_from_rng(&mut rng).map_err(no_randomness)?)
            }
            Algorithm::ES384 => {
                PrivateKey::P384(p384::SecretKey::try_generate_from_rng(&mut rng).map_err(no_randomness)?)
            }
            Algorithm::EdDSA => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(no_randomness)?;
                PrivateKey::Ed25519(SigningKey::from_bytes(&seed))
            }
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                return Err(Failure::new(format!(
                    "{} uses a shared secret, not a key pair: keygen makes no secrets \
                     (use at least 32 random bytes, e.g. `openssl rand -base64 48`)",
                    alg_name(alg)
                )));
            }
            _ if alg.family() == AlgorithmFamily::Rsa => PrivateKey::Rsa(Box::new(
                RsaKey::new(&mut rng, RSA_BITS)
                    .map_err(|e| Failure::new(format!("RSA key generation failed: {e}")))?,
            )),
            _ => {
                return Err(Failure::new(format!(
                    "keygen does not make {} keys",
                    alg_name(alg)
                )));
            }
        })
    }

    /// The private key of a JWK (its `d`, or `k` for `oct`). The public
    /// members, when present, must match it.
    pub(crate) fn from_jwk(jwk: &Value) -> Result<PrivateKey, Failure> {
        let kty = str_member(jwk, "kty")?;
        let has = |name: &str| jwk.get(name).is_some();
        if kty != "oct" && !has("d") {
            return Err(Failure::new(
                "the JWK has no private member `d`: a public key cannot sign",
            ));
        }
        let key = match kty {
            "RSA" => {
                let m = RSA_MEMBERS
                    .iter()
                    .map(|name| b64_member(jwk, name))
                    .collect::<Result<Vec<_>, _>>()?;
                let uint = |i: usize| {
                    UintRef::new(&m[i])
                        .map_err(|_| Failure::new(format!("`{}` is not an integer", RSA_MEMBERS[i])))
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
                .map_err(|_| Failure::new("the RSA JWK cannot be encoded"))?;
                let key = RsaKey::from_pkcs1_der(&der)
                    .map_err(|e| Failure::new(format!("the RSA JWK is not a valid key: {e}")))?;
                PrivateKey::Rsa(Box::new(key))
            }
            "EC" => {
                let d = b64_member(jwk, "d")?;
                let bad = |_| Failure::new("`d` is not a private key on the JWK's curve");
                match str_member(jwk, "crv")? {
                    "P-256" => PrivateKey::P256(p256::SecretKey::from_slice(&d).map_err(bad)?),
                    "P-384" => PrivateKey::P384(p384::SecretKey::from_slice(&d).map_err(bad)?),
                    other => {
                        return Err(Failure::new(format!("curve `{other}` is not supported")));
                    }
                }
            }
            "OKP" => {
                if str_member(jwk, "crv")? != "Ed25519" {
                    return Err(Failure::new("only the Ed25519 OKP curve can sign"));
                }
                let d: [u8; 32] = b64_member(jwk, "d")?
                    .try_into()
                    .map_err(|_| Failure::new("the Ed25519 `d` must be 32 bytes"))?;
                PrivateKey::Ed25519(SigningKey::from_bytes(&d))
            }
            "oct" => PrivateKey::Secret(b64_member(jwk, "k")?),
            other => return Err(Failure::new(format!("key type `{other}` is not supported"))),
        };
        for (name, value) in key.public_members()? {
            if has(name) && b64_member(jwk, name)? != value {
                return Err(Failure::new(format!(
                    "the JWK's `{name}` does not belong to its private key"
                )));
            }
        }
        Ok(key)
    }

    /// The algorithm used when neither the JWK nor the command names one.
    pub(crate) fn default_algorithm(&self) -> Algorithm {
        match self {
            PrivateKey::Rsa(_) => Algorithm::RS256,
            PrivateKey::P256(_) => Algorithm::ES256,
            PrivateKey::P384(_) => Algorithm::ES384,
            PrivateKey::Ed25519(_) => Algorithm::EdDSA,
            PrivateKey::Secret(_) => Algorithm::HS256,
        }
    }

    /// Whether this key can sign with `alg`.
    pub(crate) fn fits(&self, alg: Algorithm) -> bool {
        match self {
            PrivateKey::Rsa(_) => alg.family() == AlgorithmFamily::Rsa,
            PrivateKey::Secret(_) => alg.family() == AlgorithmFamily::Hmac,
            _ => alg == self.default_algorithm(),
        }
    }

    /// The key as jsonwebtoken signs with it.
    pub(crate) fn encoding_key(&self) -> Result<EncodingKey, Failure> {
        let unencodable = || Failure::new(format!("the {} key cannot be encoded", self.describe()));
        Ok(match self {
            PrivateKey::Rsa(key) => {
                EncodingKey::from_rsa_der(key.to_pkcs1_der().map_err(|_| unencodable())?.as_bytes())
            }
            PrivateKey::P256(key) => {
                EncodingKey::from_ec_der(key.to_pkcs8_der().map_err(|_| unencodable())?.as_bytes())
            }
            PrivateKey::P384(key) => {
                EncodingKey::from_ec_der(key.to_pkcs8_der().map_err(|_| unencodable())?.as_bytes())
            }
            PrivateKey::Ed25519(key) => {
                EncodingKey::from_ed_der(key.to_pkcs8_der().map_err(|_| unencodable())?.as_bytes())
            }
            PrivateKey::Secret(k) => {
                EncodingKey::from_secret(k).map_err(|_| Failure::new("the secret `k` is empty"))?
            }
        })
    }

    /// The public JWK: `kty`, `crv`, the public members, `kid`, `alg`, `use: sig`.
    pub(crate) fn public_jwk(&self, kid: &str, alg: Algorithm) -> Result<Value, Failure> {
        let mut jwk = self.header(kid, alg);
        for (name, value) in self.public_members()? {
            jwk.insert(name.to_owned(), Value::String(URL_SAFE_NO_PAD.encode(value)));
        }
        Ok(Value::Object(jwk))
    }

    /// The private JWK: the public one plus the RFC 7518 private members
    /// (`d`, and `p`, `q`, `dp`, `dq`, `qi` for RSA; `k` for a secret).
    pub(crate) fn private_jwk(&self, kid: &str, alg: Algorithm) -> Result<Value, Failure> {
        let mut jwk = self.header(kid, alg);
        for (name, value) in self.members()? {
            jwk.insert(name.to_owned(), Value::String(URL_SAFE_NO_PAD.encode(value)));
        }
        Ok(Value::Object(jwk))
    }

    /// `kty`, `crv`, `kid`, `alg` and `use`.
    fn header(&self, kid: &str, alg: Algorithm) -> Map<String, Value> {
        let (kty, crv) = match self {
            PrivateKey::Rsa(_) => ("RSA", None),
            PrivateKey::P256(_) => ("EC", Some("P-256")),
            PrivateKey::P384(_) => ("EC", Some("P-384")),
            PrivateKey::Ed25519(_) => ("OKP", Some("Ed25519")),
            PrivateKey::Secret(_) => ("oct", None),
        };
        let mut jwk = Map::new();
        jwk.insert("kty".to_owned(), json!(kty));
        if let Some(crv) = crv {
            jwk.insert("crv".to_owned(), json!(crv));
        }
        jwk.insert("kid".to_owned(), json!(kid));
        jwk.insert("alg".to_owned(), json!(alg_name(alg)));
        jwk.insert("use".to_owned(), json!("sig"));
        jwk
    }

    /// Every key member, public first, as raw bytes.
    fn members(&self) -> Result<Vec<(&'static str, Vec<u8>)>, Failure> {
        let mut members = self.public_members()?;
        match self {
            PrivateKey::Rsa(key) => {
                let der = key
                    .to_pkcs1_der()
                    .map_err(|_| Failure::new("the RSA key cannot be encoded"))?;
                let parts = RsaPrivateKeyRef::from_der(der.as_bytes())
                    .map_err(|_| Failure::new("the RSA key cannot be decoded"))?;
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
            PrivateKey::P256(key) => members.push(("d", key.to_bytes().to_vec())),
            PrivateKey::P384(key) => members.push(("d", key.to_bytes().to_vec())),
            PrivateKey::Ed25519(key) => members.push(("d", key.to_bytes().to_vec())),
            PrivateKey::Secret(k) => members.push(("k", k.clone())),
        }
        Ok(members)
    }

    /// The public members: `n` and `e` (RSA), `x` and `y` (EC), `x` (OKP).
    fn public_members(&self) -> Result<Vec<(&'static str, Vec<u8>)>, Failure> {
        let point = |p: Option<&[u8]>| {
            p.map(<[u8]>::to_vec)
                .ok_or_else(|| Failure::new("the EC public key has no coordinates"))
        };
        Ok(match self {
            PrivateKey::Rsa(key) => {
                use rsa::traits::PublicKeyParts as _;
                vec![("n", key.n_bytes().to_vec()), ("e", key.e_bytes().to_vec())]
            }
            PrivateKey::P256(key) => {
                let p = key.public_key().to_sec1_point(false);
                vec![
                    ("x", point(p.x().map(|x| x.as_slice()))?),
                    ("y", point(p.y().map(|y| y.as_slice()))?),
                ]
            }
            PrivateKey::P384(key) => {
                let p = key.public_key().to_sec1_point(false);
                vec![
                    ("x", point(p.x().map(|x| x.as_slice()))?),
                    ("y", point(p.y().map(|y| y.as_slice()))?),
                ]
            }
            PrivateKey::Ed25519(key) => vec![("x", key.verifying_key().to_bytes().to_vec())],
            PrivateKey::Secret(_) => Vec::new(),
        })
    }

    /// The key's type, for messages.
    fn describe(&self) -> &'static str {
        match self {
            PrivateKey::Rsa(_) => "RSA",
            PrivateKey::P256(_) => "P-256",
            PrivateKey::P384(_) => "P-384",
            PrivateKey::Ed25519(_) => "Ed25519",
            PrivateKey::Secret(_) => "secret",
        }
    }
}

fn str_member<'a>(jwk: &'a Value, name: &str) -> Result<&'a str, Failure> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::new(format!("the JWK's `{name}` is missing or not a string")))
}

fn b64_member(jwk: &Value, name: &str) -> Result<Vec<u8>, Failure> {
    URL_SAFE_NO_PAD
        .decode(str_member(jwk, name)?)
        .map_err(|_| Failure::new(format!("the JWK's `{name}` is not base64url")))
}
