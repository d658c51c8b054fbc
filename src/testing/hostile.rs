//! Hostile inputs for broker tests: every class of bad token and token header the verifier
//! refuses, each with the error kind it must be refused with, built against a running
//! [`DevSts`] so that the ones meant to fail late carry a genuine signature. The adapters'
//! tests publish them raw through each broker and check that each lands in the dead-letter
//! destination with its kind, while good messages around them flow.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::DevSts;
use crate::error::ErrorKind;
use crate::verify::verifier::now_unix;

/// One hostile message: the token header entries it carries, exactly as they travel, and the
/// kind of error it must be refused with.
#[derive(Clone)]
pub struct Hostile {
    /// What it tries, for test messages (`"unsigned (alg none)"`).
    pub name: &'static str,
    /// The token header entries (name, raw value bytes): one for most, two for a duplicated
    /// header; the value may be binary.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The error kind every transport must refuse it with.
    pub kind: ErrorKind,
}

impl std::fmt::Debug for Hostile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The values are tokens, even if hostile ones: never printed.
        f.debug_struct("Hostile")
            .field("name", &self.name)
            .field("headers", &self.headers.len())
            .field("kind", &self.kind)
            .finish()
    }
}

impl Hostile {
    /// The first header value as text (lossy), for clients that only take text.
    pub fn text(&self) -> String {
        self.headers
            .first()
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }

    /// Whether every header value is printable ASCII (what text-only header formats carry).
    pub fn is_text(&self) -> bool {
        self.headers
            .iter()
            .all(|(_, v)| v.iter().all(|b| (0x20..0x7f).contains(b)))
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_json(value: &Value) -> String {
    b64(value.to_string().as_bytes())
}

/// Every hostile class, for consumers that trust `sts` for `audience` through its key set.
///
/// Token classes: unsigned, algorithm confusion (HS256 keyed with the public key), a switched
/// algorithm, an all-zero ECDSA signature, unknown and hostile `kid`s, `jwk`/`jku`/`x5u` header
/// keys, an unknown `crit`, a nested token, expired, not yet valid, issued in the future, wrong
/// issuer and audience, a type-confused claim, a duplicated claim, bad base64url, an oversize
/// token. Header classes: a duplicated token header, binary and non-ASCII values, a value of
/// 1 MiB.
///
/// The tokens are issued now. Build the corpus before the consumer fetches the key set, as the
/// broker tests do: a token issued after the set was fetched may carry a key rotated in since,
/// so while the refetch cooldown runs its unknown `kid` is retried (transient) until the next
/// fetch, and only then refused as `UnknownKeyId`.
pub fn hostile(sts: &DevSts, audience: &str) -> Vec<Hostile> {
    let service = &sts.service;
    let signer = &service.signer;
    let kid = signer.kid().to_owned();
    let alg = crate::verify::key::alg_name(signer.algorithm());
    let now = now_unix();
    let claims = json!({
        "iss": service.issuer, "aud": audience, "sub": "mallory", "iat": now, "exp": now + 600,
    });
    let with = |patch: Value| {
        let mut claims = claims.clone();
        if let (Some(base), Value::Object(patch)) = (claims.as_object_mut(), patch) {
            base.extend(patch);
        }
        claims
    };
    let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
    let header_with = |patch: Value| {
        let mut header = header.clone();
        if let (Some(base), Value::Object(patch)) = (header.as_object_mut(), patch) {
            base.extend(patch);
        }
        header
    };
    // Genuinely signed by the service's key: these fail on what they say, not their signature.
    let signed = |header: &Value, payload: &str| {
        let input = format!("{}.{payload}", b64_json(header));
        let signature = signer.sign_input(&input).unwrap_or_default();
        format!("{input}.{signature}")
    };
    let signed_claims = |header: &Value, claims: &Value| signed(header, &b64_json(claims));
    let genuine = signed_claims(&header, &claims);
    let (genuine_input, _) = genuine.rsplit_once('.').unwrap_or((&genuine, ""));
    let hmac_confused = {
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
        let input = format!("{}.{}", b64_json(&header), b64_json(&claims));
        let public = signer.jwks()["keys"][0].to_string();
        crate::verify::crypto_provider();
        let signature = jsonwebtoken::EncodingKey::from_secret(public.as_bytes())
            .and_then(|key| {
                jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
            })
            .unwrap_or_default();
        format!("{input}.{signature}")
    };
    let bearer = |token: String| format!("Bearer {token}").into_bytes();
    let one = |name: &'static str, token: String, kind: ErrorKind| Hostile {
        name,
        headers: vec![("Authorization".to_owned(), bearer(token))],
        kind,
    };

    vec![
        one(
            "unsigned (alg none, empty signature)",
            format!(
                "{}.{}.",
                b64_json(&json!({"alg": "none", "typ": "JWT"})),
                b64_json(&claims)
            ),
            ErrorKind::Malformed,
        ),
        one(
            "unsigned (alg none, a signature anyway)",
            format!(
                "{}.{}.{}",
                b64_json(&json!({"alg": "none", "typ": "JWT"})),
                b64_json(&claims),
                b64(b"signature")
            ),
            ErrorKind::UnsupportedAlgorithm,
        ),
        one(
            "algorithm confusion (HS256 keyed with the public key)",
            hmac_confused,
            ErrorKind::AlgorithmMismatch,
        ),
        one(
            "switched algorithm (ES384 named, ES256 signature)",
            format!(
                "{}.{}.{}",
                b64_json(&header_with(json!({"alg": "ES384"}))),
                b64_json(&claims),
                genuine.rsplit_once('.').map(|(_, s)| s).unwrap_or_default()
            ),
            ErrorKind::AlgorithmMismatch,
        ),
        one(
            "r = s = 0",
            format!("{genuine_input}.{}", b64(&[0; 64])),
            ErrorKind::BadSignature,
        ),
        one(
            "unknown kid",
            signed_claims(&header_with(json!({"kid": "rotated-away"})), &claims),
            ErrorKind::UnknownKeyId,
        ),
        one(
            "hostile kid (path, control characters, 2 KiB)",
            signed_claims(
                &header_with(json!({"kid": format!("../../etc/passwd\u{0}\n{}", "A".repeat(2048))})),
                &claims,
            ),
            ErrorKind::UnknownKeyId,
        ),
        one(
            "embedded jwk",
            signed_claims(&header_with(json!({"jwk": signer.jwks()["keys"][0]})), &claims),
            ErrorKind::ForbiddenHeader,
        ),
        one(
            "jku",
            signed_claims(
                &header_with(json!({"jku": "https://evil.example/jwks.json"})),
                &claims,
            ),
            ErrorKind::ForbiddenHeader,
        ),
        one(
            "x5u",
            signed_claims(
                &header_with(json!({"x5u": "https://evil.example/cert.pem"})),
                &claims,
            ),
            ErrorKind::ForbiddenHeader,
        ),
        one(
            "unknown crit",
            signed_claims(&header_with(json!({"crit": ["exp-v2"], "exp-v2": 1})), &claims),
            ErrorKind::CriticalHeader,
        ),
        one(
            "nested token (cty JWT)",
            signed_claims(&header_with(json!({"cty": "JWT"})), &claims),
            ErrorKind::NestedToken,
        ),
        one(
            "expired",
            signed_claims(&header, &with(json!({"iat": now - 600, "exp": now - 60}))),
            ErrorKind::Expired,
        ),
        one(
            "not yet valid",
            signed_claims(&header, &with(json!({"nbf": now + 300}))),
            ErrorKind::NotYetValid,
        ),
        one(
            "issued in the future",
            signed_claims(&header, &with(json!({"iat": now + 300}))),
            ErrorKind::IssuedInFuture,
        ),
        one(
            "wrong issuer",
            signed_claims(&header, &with(json!({"iss": "https://evil.example"}))),
            ErrorKind::InvalidIssuer,
        ),
        one(
            "wrong audience",
            signed_claims(&header, &with(json!({"aud": "payroll"}))),
            ErrorKind::InvalidAudience,
        ),
        one(
            "type-confused claim (exp as text)",
            signed_claims(&header, &with(json!({"exp": "tomorrow"}))),
            ErrorKind::InvalidClaim,
        ),
        one(
            "duplicated claim (two exp)",
            signed(
                &header,
                &b64(format!(
                    r#"{{"iss":{},"aud":{},"sub":"mallory","iat":{now},"exp":{},"exp":{}}}"#,
                    json!(service.issuer),
                    json!(audience),
                    now + 600,
                    now + 86_400 * 365
                )
                .as_bytes()),
            ),
            ErrorKind::Malformed,
        ),
        one(
            "bad base64url (padding and '+')",
            format!(
                "{}==.{}",
                b64_json(&header),
                b64_json(&claims).replacen('-', "+", 1)
            ),
            ErrorKind::Malformed,
        ),
        one(
            "oversize token (16 KiB)",
            signed_claims(&header, &with(json!({"pad": "A".repeat(16 * 1024)}))),
            ErrorKind::TooLarge,
        ),
        Hostile {
            name: "duplicated token header (two casings)",
            headers: vec![
                ("Authorization".to_owned(), bearer(genuine.clone())),
                ("authorization".to_owned(), bearer(genuine.clone())),
            ],
            kind: ErrorKind::DuplicateHeader,
        },
        Hostile {
            name: "binary header value",
            headers: vec![("Authorization".to_owned(), vec![0xff, 0xfe, 0x00, 0x80, b'B'])],
            kind: ErrorKind::NonAscii,
        },
        Hostile {
            name: "non-ASCII header value",
            headers: vec![("Authorization".to_owned(), "Bearer tökén".as_bytes().to_vec())],
            kind: ErrorKind::NonAscii,
        },
        Hostile {
            name: "header value of 1 MiB",
            headers: vec![("Authorization".to_owned(), bearer("A".repeat(1024 * 1024)))],
            kind: ErrorKind::TooLarge,
        },
    ]
}
