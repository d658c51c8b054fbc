//! `jwt-relay mint`: one signed token, for tests and development.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_relay::Algorithm;
use jwt_relay::jsonwebtoken::{AlgorithmFamily, EncodingKey, Header};
use jwt_relay::testing::PrivateKey;
use jwt_relay::verify::{alg_name, now_unix};
use serde_json::{Map, Value};

// `pub(crate)`: guard_args.rs reads `grace:<duration>` with it too.
pub(crate) use crate::duration::parse_ttl;
use crate::keygen::key_failure;
use crate::{Failure, parse_alg, print_line};

/// Options of `jwt-relay mint`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The signing key file: a private JWK, or a PKCS#8 PEM private key (needs --alg).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The algorithm (default: the JWK's `alg`, else the key type's usual one).
    #[arg(long, value_parser = parse_alg)]
    alg: Option<Algorithm>,
    /// The `kid` header (default: the JWK's `kid`).
    #[arg(long)]
    kid: Option<String>,
    /// The `iss` claim.
    #[arg(long)]
    iss: String,
    /// The `aud` claim; repeat for an array.
    #[arg(long = "aud", required = true)]
    aud: Vec<String>,
    /// The `sub` claim.
    #[arg(long)]
    sub: String,
    /// Lifetime: `30s`, `5m`, `1h` or plain seconds; negative (`-10m`) for an expired token.
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl, allow_hyphen_values = true)]
    ttl: i64,
    /// An extra claim `name=value`, repeatable. The value is JSON if it parses, else a string.
    /// It replaces a claim of the same name set above.
    #[arg(long = "claim", value_name = "NAME=VALUE", value_parser = parse_claim)]
    claims: Vec<(String, Value)>,
}

/// Signs the claims and prints the token.
pub(crate) fn run(args: &Args) -> Result<(), Failure> {
    // jsonwebtoken signs with its process-wide provider: jwt-relay's, once this returns.
    jwt_relay::verify::crypto_provider();
    let (key, alg, kid) = load_key(args)?;
    let now = now_unix();
    let exp = now
        .checked_add(args.ttl)
        .ok_or_else(|| Failure::new("--ttl is out of range"))?;
    let mut claims = Map::new();
    claims.insert("iss".to_owned(), Value::from(args.iss.as_str()));
    let aud = match args.aud.as_slice() {
        [one] => Value::from(one.as_str()),
        many => Value::from(many.to_vec()),
    };
    claims.insert("aud".to_owned(), aud);
    claims.insert("sub".to_owned(), Value::from(args.sub.as_str()));
    claims.insert("iat".to_owned(), Value::from(now));
    claims.insert("exp".to_owned(), Value::from(exp));
    claims.insert("jti".to_owned(), Value::from(token_id()?));
    for (name, value) in &args.claims {
        claims.insert(name.clone(), value.clone());
    }
    let mut header = Header::new(alg);
    header.kid = kid;
    let token = jwt_relay::jsonwebtoken::encode(&header, &Value::Object(claims), &key)
        .map_err(|e| Failure::new(format!("cannot sign with {}: {e}", alg_name(alg))))?;
    print_line(token)
}

/// The signing key, its algorithm and its `kid`, from a JWK or a PEM file.
fn load_key(args: &Args) -> Result<(EncodingKey, Algorithm, Option<String>), Failure> {
    let path = args.key.display();
    let bytes = std::fs::read(&args.key).map_err(|e| Failure::new(format!("cannot read {path}: {e}")))?;
    if let Ok(jwk) = serde_json::from_slice::<Value>(&bytes) {
        let key = PrivateKey::from_jwk(&jwk)
            .map_err(|e| Failure::new(format!("the JWK in {path}: {}", e.message())))?;
        let alg = match (args.alg, jwk.get("alg").and_then(Value::as_str)) {
            (Some(alg), _) => alg,
            (None, Some(name)) => parse_alg(name).map_err(Failure::new)?,
            (None, None) => key.default_algorithm(),
        };
        if !key.fits(alg) {
            return Err(Failure::new(format!(
                "the key in {path} cannot sign {}",
                alg_name(alg)
            )));
        }
        let kid = args
            .kid
            .clone()
            .or_else(|| jwk.get("kid").and_then(Value::as_str).map(str::to_owned));
        return Ok((key.encoding_key().map_err(key_failure)?, alg, kid));
    }
    let Some(alg) = args.alg else {
        return Err(Failure::new(format!(
            "{path} is not a JWK, so it is read as PEM, and a PEM key needs --alg"
        )));
    };
    let not_pem = |e| {
        Failure::new(format!(
            "{path} is neither a private JWK nor a PKCS#8 PEM private key for {}: {e}",
            alg_name(alg)
        ))
    };
    let key = match alg.family() {
        AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(&bytes).map_err(not_pem)?,
        AlgorithmFamily::Ec => EncodingKey::from_ec_pem(&bytes).map_err(not_pem)?,
        AlgorithmFamily::Ed => EncodingKey::from_ed_pem(&bytes).map_err(not_pem)?,
        AlgorithmFamily::Hmac => {
            return Err(Failure::new(
                "an HMAC secret is not a PEM key: give it as an `oct` JWK",
            ));
        }
    };
    Ok((key, alg, args.kid.clone()))
}

/// 16 random bytes, base64url.
fn token_id() -> Result<String, Failure> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id)
        .map_err(|e| Failure::new(format!("the system random number generator failed: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(id))
}

/// `name=value`: the value as JSON if it parses, else as a string.
fn parse_claim(text: &str) -> Result<(String, Value), String> {
    let Some((name, value)) = text.split_once('=') else {
        return Err(format!("`{text}` is not name=value"));
    };
    if name.is_empty() {
        return Err(format!("`{text}` has an empty claim name"));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
    Ok((name.to_owned(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_values_are_json_or_strings() {
        assert_eq!(parse_claim("n=7"), Ok(("n".to_owned(), Value::from(7))));
        assert_eq!(
            parse_claim("roles=[\"a\"]"),
            Ok(("roles".to_owned(), serde_json::json!(["a"])))
        );
        assert_eq!(
            parse_claim("tenant=acme"),
            Ok(("tenant".to_owned(), Value::from("acme")))
        );
        assert_eq!(parse_claim("eq=a=b"), Ok(("eq".to_owned(), Value::from("a=b"))));
        assert!(parse_claim("novalue").is_err());
        assert!(parse_claim("=x").is_err());
    }
}
