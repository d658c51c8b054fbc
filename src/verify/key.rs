//! A verification key, pinned to one algorithm, from PEM, a secret or a JWK.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Result, quote};
use crate::verify::crypto::crypto_provider;

/// RSA keys shorter than this are refused (RFC 8725 §3.5, NIST SP 800-131A).
pub(crate) const MIN_RSA_BITS: usize = 2048;
/// RSA keys longer than this are refused: neither crypto backend verifies with them
/// (aws-lc-rs and the `rsa` crate both stop at 8192 bits).
pub(crate) const MAX_RSA_BITS: usize = 8192;
/// The largest RSA public exponent accepted: 2^32 − 1. Real keys use 65537 (or 3); both
/// backends refuse exponents above 2^33 − 1, and a huge `e` only slows every check down.
pub(crate) const MAX_RSA_EXPONENT: u64 = u32::MAX as u64;
/// HMAC secrets shorter than the hash are refused (RFC 7518 §3.2): 32 bytes
/// for HS256, 48 for HS384, 64 for HS512.
fn min_hmac_bytes(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

/// A key that verifies signatures of exactly one algorithm. The algorithm
/// comes from the key (its JWK `alg`, or what it was configured with),
/// never from a token.
#[derive(Clone)]
pub struct Key {
    kid: Option<String>,
    alg: Algorithm,
    kty: &'static str,
    decoding: DecodingKey,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kty", &self.kty)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl Key {
    /// A public key in PEM (RSA PKCS#1 or SPKI, EC SPKI, Ed25519 SPKI), for
    /// `alg`. The key's type and size must fit the algorithm, and it must be
    /// able to verify at all (see [`Key::from_jwk`] for the rules).
    pub fn from_pem(pem: &[u8], alg: Algorithm) -> Result<Key> {
        let bad = |e: jsonwebtoken::errors::Error| {
            Error::new(
                ErrorKind::InvalidKey,
                format!("the PEM key is not a {} public key", alg_name(alg)),
            )
            .with_source(e)
        };
        let (kty, decoding) = match alg.family() {
            AlgorithmFamily::Rsa => {
                let key = DecodingKey::from_rsa_pem(pem).map_err(bad)?;
                let der = key.try_get_as_bytes().map_err(bad)?;
                let (n, e) =
                    (crypto_provider().key_utils.rsa_pub_components_from_public_key)(der).map_err(bad)?;
                check_rsa(&n, &e, "the PEM key").map_err(|why| Error::new(ErrorKind::InvalidKey, why))?;
                ("RSA", DecodingKey::from_rsa_raw_components(&n, &e))
            }
            AlgorithmFamily::Ec => {
                let key = DecodingKey::from_ec_pem(pem).map_err(bad)?;
                let point = key.try_get_as_bytes().map_err(bad)?;
                let want = if alg == Algorithm::ES256 { 65 } else { 97 };
                if point.len() != want {
                    return Err(Error::new(
                        ErrorKind::InvalidKey,
                        format!("the PEM key's curve does not fit {}", alg_name(alg)),
                    ));
                }
                check_ec_point(alg, point).map_err(|why| Error::new(ErrorKind::InvalidKey, why))?;
                ("EC", key)
            }
            AlgorithmFamily::Ed => {
                let key = DecodingKey::from_ed_pem(pem).map_err(bad)?;
                check_ed25519(key.try_get_as_bytes().map_err(bad)?)
                    .map_err(|why| Error::new(ErrorKind::InvalidKey, format!("the PEM key: {why}")))?;
                ("OKP", key)
            }
            AlgorithmFamily::Hmac => {
                return Err(Error::new(
                    ErrorKind::InvalidKey,
                    "HMAC keys are secrets, not PEM: use Key::from_secret",
                ));
            }
        };
        Ok(Key {
            kid: None,
            alg,
            kty,
            decoding,
        })
    }

    /// An HMAC secret of at least 32 bytes, for `HS256`, `HS384` or `HS512`.
    pub fn from_secret(secret: &[u8], alg: Algorithm) -> Result<Key> {
        if alg.family() != AlgorithmFamily::Hmac {
            return Err(Error::new(
                ErrorKind::InvalidKey,
                format!("a secret can only verify HMAC algorithms, not {}", alg_name(alg)),
            ));
        }
        Ok(Key {
            kid: None,
            alg,
            kty: "oct",
            decoding: hmac_key(secret, alg, "the secret")?,
        })
    }

    /// One JWK (RFC 7517), as JSON text. Private members are ignored; an
    /// `oct` (HMAC) key is accepted here because it comes from our own
    /// configuration, never from a remote set.
    ///
    /// A key that could never verify a signature, or only a forged one, is
    /// refused with the reason: an RSA modulus outside 2048 to 8192 bits or
    /// even, an RSA exponent that is even, below 3 or above 2^32 − 1; an EC
    /// point that is not on its named curve; an Ed25519 key that is not 32
    /// bytes, not a point of the curve, or of small order.
    pub fn from_jwk(json: &str) -> Result<Key> {
        let value: Value = serde_json::from_str(json)
            .map_err(|e| Error::new(ErrorKind::InvalidKey, "the JWK is not valid JSON").with_source(e))?;
        match parse_jwk(&value, KeyOrigin::Local) {
            Ok(Parsed::Key(key)) => Ok(key),
            Ok(Parsed::Skipped(reason)) | Err(reason) => Err(Error::new(ErrorKind::InvalidKey, reason)),
        }
    }

    /// Names the key: tokens select it by this `kid`.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Key {
        self.kid = Some(kid.into());
        self
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The JWK key type: `RSA`, `EC`, `OKP` or `oct`.
    pub fn key_type(&self) -> &'static str {
        self.kty
    }

    /// Whether `signature` (base64url) signs `signing_input` under this key.
    pub(crate) fn verify(&self, signing_input: &str, signature: &str) -> Result<bool> {
        // jsonwebtoken checks with its process-wide provider: ours, once this returns.
        crypto_provider();
        jsonwebtoken::crypto::verify(signature, signing_input.as_bytes(), &self.decoding, self.alg).map_err(
            |e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::Base64(_) => Error::new(
                        ErrorKind::Malformed,
                        "the token's signature is not canonical base64url",
                    ),
                    _ => Error::new(
                        ErrorKind::InvalidKey,
                        format!("key {} cannot verify {}", self.describe(), alg_name(self.alg)),
                    ),
                }
                .with_source(e)
            },
        )
    }

    pub(crate) fn describe(&self) -> String {
        self.kid
            .as_deref()
            .map_or_else(|| "without kid".to_owned(), quote)
    }
}

/// The algorithm's name as JOSE writes it (`RS256`, `EdDSA`).
pub fn alg_name(alg: Algorithm) -> String {
    format!("{alg:?}")
}

/// An RSA public key that both backends can verify with and that is not weak: a modulus of
/// [`MIN_RSA_BITS`] to [`MAX_RSA_BITS`] bits, odd; an exponent odd, at least 3 and at most
/// [`MAX_RSA_EXPONENT`]. `Err` says which rule the key breaks.
fn check_rsa(n: &[u8], e: &[u8], what: &str) -> Result<(), String> {
    let bits = bit_length(n);
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "{what} is an RSA key of {bits} bits; at least {MIN_RSA_BITS} are required"
        ));
    }
    if bits > MAX_RSA_BITS {
        return Err(format!(
            "{what} is an RSA key of {bits} bits; no crypto backend verifies with more than {MAX_RSA_BITS}"
        ));
    }
    if n.last().is_some_and(|low| low % 2 == 0) {
        return Err(format!("{what} has an even RSA modulus, which no RSA key has"));
    }
    let exponent = e
        .iter()
        .skip_while(|b| **b == 0)
        .try_fold(0u64, |acc, b| acc.checked_mul(256).map(|acc| acc + u64::from(*b)))
        .filter(|e| *e <= MAX_RSA_EXPONENT);
    match exponent {
        None => Err(format!(
            "{what} has an RSA exponent larger than {MAX_RSA_EXPONENT} (2^32 − 1)"
        )),
        Some(e) if e < 3 || e % 2 == 0 => Err(format!(
            "{what} has the RSA exponent {e}; it must be odd and at least 3"
        )),
        Some(_) => Ok(()),
    }
}

/// The number of significant bits of a big-endian unsigned integer.
fn bit_length(be: &[u8]) -> usize {
    let significant = be.iter().skip_while(|b| **b == 0).count();
    let top_bits = be
        .iter()
        .find(|b| **b != 0)
        .map_or(0, |b| 8 - b.leading_zeros() as usize);
    (significant * 8).saturating_sub(8) + top_bits
}

/// An uncompressed SEC 1 point (`04 || x || y`) that lies on the curve of `alg` (P-256 for
/// ES256, P-384 for ES384) and is not the point at infinity: a point off the curve can never
/// verify a signature, and invalid-curve points are a known attack on careless verifiers.
fn check_ec_point(alg: Algorithm, point: &[u8]) -> Result<(), String> {
    let (on_curve, curve) = match alg {
        Algorithm::ES256 => (p256::PublicKey::from_sec1_bytes(point).is_ok(), "P-256"),
        Algorithm::ES384 => (p384::PublicKey::from_sec1_bytes(point).is_ok(), "P-384"),
        other => return Err(format!("{} is not an ECDSA algorithm", alg_name(other))),
    };
    if on_curve {
        Ok(())
    } else {
        Err(format!("the point (x, y) is not on the curve {curve}"))
    }
}

/// A 32-byte Ed25519 public key that decodes to a point of the curve and is not of small
/// order (a small-order key accepts signatures forged without any secret).
fn check_ed25519(x: &[u8]) -> Result<(), String> {
    let Ok(bytes) = <&[u8; 32]>::try_from(x) else {
        return Err("the Ed25519 key must be 32 bytes".to_owned());
    };
    match ed25519_dalek::VerifyingKey::from_bytes(bytes) {
        Err(_) => Err("the Ed25519 key is not a point of the curve".to_owned()),
        Ok(key) if key.is_weak() => {
            Err("the Ed25519 key is a small-order point, which verifies forged signatures".to_owned())
        }
        Ok(_) => Ok(()),
    }
}

fn hmac_key(secret: &[u8], alg: Algorithm, what: &str) -> Result<DecodingKey> {
    let min = min_hmac_bytes(alg);
    if secret.len() < min {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            format!(
                "{what} is {} bytes; {} secrets need at least {min}",
                secret.len(),
                alg_name(alg)
            ),
        ));
    }
    DecodingKey::from_secret(secret)
        .map_err(|e| Error::new(ErrorKind::InvalidKey, format!("{what} is unusable")).with_source(e))
}

/// Where a JWK comes from: remote sets may not hold secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyOrigin {
    Local,
    Remote,
}

/// A JWK after the hygiene checks: a key, or a key that is not for
/// signatures (an unknown `kty`, `use: enc`) and is skipped with a warning.
pub(crate) enum Parsed {
    Key(Key),
    Skipped(String),
}

/// Parses one JWK. `Err` is a signature key we refuse, with the reason.
pub(crate) fn parse_jwk(value: &Value, origin: KeyOrigin) -> Result<Parsed, String> {
    let Value::Object(jwk) = value else {
        return Err("a JWK must be a JSON object".to_owned());
    };
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err("`kid` is not a string".to_owned()),
    };
    let kty = match jwk.get("kty") {
        Some(Value::String(kty)) => kty.as_str(),
        _ => return Err("`kty` is missing or not a string".to_owned()),
    };
    match jwk.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(u) => return Ok(Parsed::Skipped(format!("`use` is {u}, not \"sig\""))),
    }
    if let Some(ops) = jwk.get("key_ops") {
        let allows_verify = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o == "verify"));
        if !allows_verify {
            return Ok(Parsed::Skipped("`key_ops` does not allow \"verify\"".to_owned()));
        }
    }
    let alg = match jwk.get("alg") {
        None => None,
        Some(Value::String(alg)) => Some(
            alg.parse::<Algorithm>()
                .map_err(|_| format!("algorithm {} is not supported for signatures", quote(alg)))?,
        ),
        Some(_) => return Err("`alg` is not a string".to_owned()),
    };
    let (kty, alg, decoding) = match kty {
        "RSA" => {
            let alg = alg.unwrap_or(Algorithm::RS256);
            fits(alg, AlgorithmFamily::Rsa, "RSA")?;
            let n = b64_member(jwk, "n")?;
            let e = b64_member(jwk, "e")?;
            check_rsa(&n, &e, "the JWK")?;
            ("RSA", alg, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        "EC" => {
            let crv = str_member(jwk, "crv")?;
            let (curve_alg, size) = match crv {
                "P-256" => (Algorithm::ES256, 32),
                "P-384" => (Algorithm::ES384, 48),
                other => return Err(format!("curve {} is not supported", quote(other))),
            };
            let alg = alg.unwrap_or(curve_alg);
            if alg != curve_alg {
                return Err(format!("curve {crv} does not fit {}", alg_name(alg)));
            }
            let (x, y) = (b64_member(jwk, "x")?, b64_member(jwk, "y")?);
            if x.len() != size || y.len() != size {
                return Err(format!("the {crv} coordinates must be {size} bytes each"));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            check_ec_point(alg, &point)?;
            ("EC", alg, DecodingKey::from_ec_der(&point))
        }
        "OKP" => {
            let crv = str_member(jwk, "crv")?;
            if crv != "Ed25519" {
                return Err(format!("curve {} is not supported for signatures", quote(crv)));
            }
            let alg = alg.unwrap_or(Algorithm::EdDSA);
            if alg != Algorithm::EdDSA {
                return Err(format!("curve Ed25519 does not fit {}", alg_name(alg)));
            }
            let x = b64_member(jwk, "x")?;
            check_ed25519(&x)?;
            ("OKP", alg, DecodingKey::from_ed_der(&x))
        }
        "oct" => {
            if origin == KeyOrigin::Remote {
                return Err("a remote key set must not hold secret (`oct`) keys".to_owned());
            }
            let alg = alg.unwrap_or(Algorithm::HS256);
            fits(alg, AlgorithmFamily::Hmac, "oct")?;
            let k = b64_member(jwk, "k")?;
            (
                "oct",
                alg,
                hmac_key(&k, alg, "the secret").map_err(|e| e.message().to_owned())?,
            )
        }
        other => {
            return Ok(Parsed::Skipped(format!("key type {} is not known", quote(other))));
        }
    };
    Ok(Parsed::Key(Key {
        kid,
        alg,
        kty,
        decoding,
    }))
}

fn fits(alg: Algorithm, family: AlgorithmFamily, kty: &str) -> Result<(), String> {
    if alg.family() == family {
        Ok(())
    } else {
        Err(format!("a {kty} key cannot be used with {}", alg_name(alg)))
    }
}

fn str_member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{name}` is missing or not a string"))
}

fn b64_member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(str_member(jwk, name)?)
        .map_err(|_| format!("`{name}` is not base64url"))?;
    if bytes.is_empty() {
        return Err(format!("`{name}` is empty"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reason(v: Value) -> String {
        match parse_jwk(&v, KeyOrigin::Remote) {
            Err(reason) => reason,
            Ok(Parsed::Skipped(reason)) => format!("skipped: {reason}"),
            Ok(Parsed::Key(k)) => panic!("accepted {k:?}"),
        }
    }

    const X32: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    #[test]
    fn jwk_hygiene() {
        let weak_n = URL_SAFE_NO_PAD.encode([0xffu8; 128]);
        assert!(reason(json!({"kty":"RSA","n":weak_n,"e":"AQAB"})).contains("1024 bits"));
        let n = URL_SAFE_NO_PAD.encode([0xffu8; 256]);
        assert!(reason(json!({"kty":"RSA","n":n,"e":"AQAB","alg":"ES256"})).contains("cannot be used"));
        assert!(reason(json!({"kty":"RSA","n":n,"e":"AQAB","use":"enc"})).starts_with("skipped"));
        assert!(reason(json!({"kty":"RSA","n":n,"e":"AQAB","key_ops":["encrypt"]})).starts_with("skipped"));
        assert!(
            reason(json!({"kty":"EC","crv":"P-256","alg":"ES384","x":X32,"y":X32})).contains("does not fit")
        );
        assert!(reason(json!({"kty":"EC","crv":"P-521","x":X32,"y":X32})).contains("not supported"));
        assert!(reason(json!({"kty":"OKP","crv":"X25519","x":X32})).contains("not supported"));
        assert!(reason(json!({"kty":"oct","k":X32})).contains("secret"));
        assert!(reason(json!({"kty":"PQC","x":"1"})).starts_with("skipped"));
        assert!(reason(json!({"kty":"RSA","n":n,"e":"AQAB","alg":"none"})).contains("not supported"));
        match parse_jwk(
            &json!({"kty":"RSA","n":n,"e":"AQAB","kid":"k"}),
            KeyOrigin::Remote,
        ) {
            Ok(Parsed::Key(k)) => {
                assert_eq!((k.kid(), k.algorithm()), (Some("k"), Algorithm::RS256))
            }
            _ => panic!("a 2048-bit RSA JWK is accepted"),
        }
    }

    fn rsa(n: &[u8], e: &[u8]) -> Value {
        json!({"kty":"RSA","n":URL_SAFE_NO_PAD.encode(n),"e":URL_SAFE_NO_PAD.encode(e)})
    }

    #[test]
    fn rsa_keys_that_cannot_verify_are_refused() {
        let n = [0xffu8; 256];
        for (e, why) in [
            (&[1u8][..], "exponent 1;"),
            (&[2], "exponent 2;"),
            (&[0, 0, 1], "exponent 1;"),
            (&[1, 0, 0], "exponent 65536;"),
            (&[1, 0, 0, 0, 1], "larger than 4294967295"),
            (&[0xff; 40], "larger than"),
        ] {
            let reason = reason(rsa(&n, e));
            assert!(reason.contains(why), "e = {e:?}: {reason}");
        }
        for e in [&[3u8][..], &[1, 0, 1], &[0xff, 0xff, 0xff, 0xff], &[0, 1, 0, 1]] {
            assert!(
                matches!(parse_jwk(&rsa(&n, e), KeyOrigin::Remote), Ok(Parsed::Key(_))),
                "e = {e:?}"
            );
        }
        let mut even = n;
        even[255] = 0xfe;
        assert!(reason(rsa(&even, &[1, 0, 1])).contains("even RSA modulus"));
        assert!(reason(rsa(&[0xff; 1025], &[1, 0, 1])).contains("8200 bits"));
        assert!(matches!(
            parse_jwk(&rsa(&[0xff; 1024], &[1, 0, 1]), KeyOrigin::Remote),
            Ok(Parsed::Key(_))
        ));
    }

    #[test]
    fn ec_points_must_lie_on_their_curve() {
        let (x, y) = (
            "xAc3AprSCY4E_4sC-Kj8I5gWP0WpoULJ-cEyNzP5NKI",
            "dIbMQfQ6kvqJiFfwZxeP_SM2Cs5-i0c2rdhmdwGEAqQ",
        );
        assert!(matches!(
            parse_jwk(&json!({"kty":"EC","crv":"P-256","x":x,"y":y}), KeyOrigin::Remote),
            Ok(Parsed::Key(_))
        ));
        // One bit of y flipped: off the curve.
        let bad_y = "dIbMQfQ6kvqJiFfwZxeP_SM2Cs5-i0c2rdhmdwGEAqU";
        assert!(reason(json!({"kty":"EC","crv":"P-256","x":x,"y":bad_y})).contains("not on the curve P-256"));
        assert!(reason(json!({"kty":"EC","crv":"P-256","x":X32,"y":X32})).contains("not on the curve"));
        let x48 = URL_SAFE_NO_PAD.encode([1u8; 48]);
        assert!(reason(json!({"kty":"EC","crv":"P-384","x":x48,"y":x48})).contains("not on the curve P-384"));
    }

    #[test]
    fn ed25519_keys_must_be_points_of_full_order() {
        let good = json!({"kty":"OKP","crv":"Ed25519","x":"umjiozaFEu2omctSHZ_wuzWMi9JfI3xFObPkUcPwsuM"});
        assert!(matches!(parse_jwk(&good, KeyOrigin::Remote), Ok(Parsed::Key(_))));
        // y = 0 is a point of order 4; y = 2 is no point at all.
        assert!(reason(json!({"kty":"OKP","crv":"Ed25519","x":X32})).contains("small-order"));
        let y2 = "AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(reason(json!({"kty":"OKP","crv":"Ed25519","x":y2})).contains("not a point"));
        assert!(reason(json!({"kty":"OKP","crv":"Ed25519","x":"AAAA"})).contains("32 bytes"));
    }

    #[test]
    fn secrets_must_be_long_enough() {
        assert!(Key::from_secret(&[7; 31], Algorithm::HS256).is_err());
        assert!(Key::from_secret(&[7; 32], Algorithm::HS256).is_ok());
        assert!(Key::from_secret(&[7; 32], Algorithm::RS256).is_err());
    }

    #[test]
    fn debug_redacts_key_material() {
        let key = Key::from_secret(b"0123456789abcdef0123456789abcdef", Algorithm::HS256).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("[redacted]"));
        assert!(!shown.contains("0123456789"));
    }
}
