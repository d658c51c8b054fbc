//! The tokens each scenario sends, signed with keys made for the run, and the verifier that
//! trusts them.

use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use jwt_relay::testing::PrivateKey;
use jwt_relay::verify::now_unix;
use jwt_relay::{Algorithm, AuthContext, Issuer, Key, KeySet, Verifier};
use serde_json::json;

use crate::Failure;

pub(crate) const ISSUER: &str = "https://id.bench.example";
pub(crate) const AUDIENCE: &str = "bench";
/// The HS256 key of the memory measurement (a benchmark's, not a secret).
const HS256_SECRET: &[u8] = b"jwt-relay benchmark HS256 key, 32+ bytes long";

/// Which tokens the messages carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// (a) One token shared by every message: the verified-token cache's case.
    Shared,
    /// (b) A new token every 1 000 messages.
    EveryThousand,
    /// (c) Every message a distinct token, signed with this algorithm.
    Distinct(Algorithm),
}

impl Scenario {
    pub(crate) fn label(self) -> String {
        match self {
            Scenario::Shared => "a: one token".to_owned(),
            Scenario::EveryThousand => "b: new token per 1000".to_owned(),
            Scenario::Distinct(alg) => format!("c: distinct {alg:?}"),
        }
    }

    /// `a`, `b` or `c`.
    pub(crate) fn letter(self) -> char {
        match self {
            Scenario::Shared => 'a',
            Scenario::EveryThousand => 'b',
            Scenario::Distinct(_) => 'c',
        }
    }

    fn algorithm(self) -> Algorithm {
        match self {
            Scenario::Distinct(alg) => alg,
            _ => Algorithm::RS256,
        }
    }
}

/// Signing keys (RS256, ES256, HS256) and the verifier trusting them all.
pub(crate) struct Keys {
    signers: Vec<(Algorithm, String, EncodingKey)>,
    /// The verification keys.
    public: Vec<Key>,
    /// With the default verified-token cache.
    pub(crate) verifier: Verifier,
}

impl Keys {
    pub(crate) fn generate() -> Result<Keys, Failure> {
        let mut signers = Vec::new();
        let mut public = Vec::new();
        for alg in [Algorithm::RS256, Algorithm::ES256] {
            let kid = format!("bench-{alg:?}");
            let key = PrivateKey::generate(alg)?;
            public.push(Key::from_jwk(&key.public_jwk(&kid, alg)?.to_string())?);
            signers.push((alg, kid, key.encoding_key()?));
        }
        let kid = "bench-HS256".to_owned();
        public.push(Key::from_secret(HS256_SECRET, Algorithm::HS256)?.with_kid(&kid));
        signers.push((Algorithm::HS256, kid, EncodingKey::from_secret(HS256_SECRET)?));
        let verifier = verifier_for(&public, 10_000)?;
        Ok(Keys {
            signers,
            public,
            verifier,
        })
    }

    /// A verifier trusting these keys, remembering up to `cache` verified tokens (0: none).
    pub(crate) fn verifier_with_cache(&self, cache: u64) -> Result<Verifier, Failure> {
        verifier_for(&self.public, cache)
    }

    /// A token for `subject` signed with `alg`, valid for an hour.
    pub(crate) fn token(&self, alg: Algorithm, subject: &str) -> Result<String, Failure> {
        let now = now_unix();
        self.token_with(
            alg,
            json!({
                "iss": ISSUER, "aud": AUDIENCE, "sub": subject, "iat": now, "exp": now + 3600,
            }),
        )
    }

    /// A token with exactly these claims, signed with `alg`.
    pub(crate) fn token_with(&self, alg: Algorithm, claims: serde_json::Value) -> Result<String, Failure> {
        self.sign(alg, None, claims)
    }

    /// A token with exactly these claims, signed with `alg`, its header naming `kid` (else the
    /// key's own id).
    pub(crate) fn sign(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
        claims: serde_json::Value,
    ) -> Result<String, Failure> {
        let (_, own, key) = self
            .signers
            .iter()
            .find(|(a, ..)| *a == alg)
            .ok_or("no key for this algorithm")?;
        let mut header = Header::new(alg);
        header.kid = Some(kid.unwrap_or(own).to_owned());
        header.typ = Some("JWT".to_owned());
        Ok(jsonwebtoken::encode(&header, &claims, key)?)
    }

    /// The tokens of `messages` messages in `scenario`: message `i` carries `tokens[i]`.
    pub(crate) fn for_scenario(&self, scenario: Scenario, messages: usize) -> Result<Vec<String>, Failure> {
        let distinct = match scenario {
            Scenario::Shared => 1,
            Scenario::EveryThousand => messages.div_ceil(1000),
            Scenario::Distinct(_) => messages,
        };
        let unique: Vec<String> = (0..distinct)
            .map(|n| self.token(scenario.algorithm(), &format!("user-{n}")))
            .collect::<Result<_, _>>()?;
        Ok((0..messages)
            .map(|i| unique[i * distinct / messages.max(1)].clone())
            .collect())
    }

    /// The verified identity of each token, for publishing with an explicit context (one per
    /// distinct token).
    pub(crate) async fn contexts(&self, tokens: &[String]) -> Result<Vec<AuthContext>, Failure> {
        let mut contexts: Vec<AuthContext> = Vec::with_capacity(tokens.len());
        for token in tokens {
            match contexts.last() {
                Some(last) if last.token() == token => contexts.push(last.clone()),
                _ => contexts.push(self.verifier.verify(token).await?),
            }
        }
        Ok(contexts)
    }
}

fn verifier_for(public: &[Key], cache: u64) -> Result<Verifier, Failure> {
    let issuer = Issuer::new(ISSUER)
        .audience(AUDIENCE)
        .keys(KeySet::new(public.iter().cloned())?);
    Ok(Verifier::builder().issuer(issuer).cache_capacity(cache).build()?)
}

/// How many of `tokens` a fresh verifier remembering `cache` tokens (0: none) checks per second,
/// one at a time.
pub(crate) async fn verification_rate(keys: &Keys, tokens: &[String], cache: u64) -> Result<f64, Failure> {
    let verifier = keys.verifier_with_cache(cache)?;
    let started = std::time::Instant::now();
    for token in tokens {
        verifier.verify(token).await?;
    }
    Ok(crate::measure::rate(tokens.len(), started.elapsed()))
}

/// How long a consumer may take before the harness gives up on it.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);
