//! The verifier: a header value in, a verified identity or a precise error out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::carrier::Extractor;
use crate::carrier::token_header::TokenHeader;
use crate::error::{Error, ErrorKind, Result, quote};
use crate::observe;
use crate::verify::ahead::{Ahead, Waited};
use crate::verify::claims::Claims;
use crate::verify::context::{AuthContext, Verified};
use crate::verify::issuer::{Issuer, KeySource};
use crate::verify::jose;
use crate::verify::key::{Key, alg_name};
use crate::verify::key_set::KeySet;
use crate::verify::remote::RemoteKeySet;
use crate::verify::verified_cache::VerifiedCache;

// The metric keys of every verification, fixed at compile time: nothing is built per message.
static VERIFY_SECONDS: metrics::Key = metrics::Key::from_static_name(observe::VERIFY_SECONDS);
static HIT: [metrics::Label; 1] = [metrics::Label::from_static_parts("hit", "true")];
static MISS: [metrics::Label; 1] = [metrics::Label::from_static_parts("hit", "false")];
static CACHE_HITS: metrics::Key = metrics::Key::from_static_parts(observe::VERIFY_CACHE_TOTAL, &HIT);
static CACHE_MISSES: metrics::Key = metrics::Key::from_static_parts(observe::VERIFY_CACHE_TOTAL, &MISS);

/// Verifies tokens against a set of trusted issuers. Cheap to clone; clones
/// share keys and the verified-token cache.
///
/// Checks run in this order: size, structure and header hygiene, issuer,
/// key and pinned algorithm, signature, audience and `typ`, then time. So
/// [`ErrorKind::Expired`] is only reported for a token whose signature,
/// issuer and audience passed, and it carries the verified context.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuers: HashMap<String, IssuerKeys>,
    header: TokenHeader,
    max_size: usize,
    cache: Option<VerifiedCache>,
    /// Tokens being verified ahead of their message's turn.
    ahead: Arc<Ahead>,
}

/// Where [`Verifier::verify_headers_at`] stands before anything waits.
enum Start {
    /// The token was missing or malformed, or the cache held it.
    Decided(Result<AuthContext>),
    /// A token to verify, copied out of the headers.
    Verify(String),
}

struct IssuerKeys {
    config: Arc<Issuer>,
    keys: Keys,
}

enum Keys {
    Static(KeySet),
    Remote(Arc<RemoteKeySet>),
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut issuers: Vec<_> = self.inner.issuers.keys().collect();
        issuers.sort();
        f.debug_struct("Verifier")
            .field("issuers", &issuers)
            .field("header", &self.inner.header)
            .field("max_size", &self.inner.max_size)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Verifier`].
#[derive(Debug)]
pub struct VerifierBuilder {
    issuers: Vec<Issuer>,
    header: TokenHeader,
    max_size: usize,
    cache_capacity: u64,
    cache_ttl: Duration,
}

impl Verifier {
    /// Starts a verifier: add at least one [`Issuer`].
    pub fn builder() -> VerifierBuilder {
        VerifierBuilder {
            issuers: Vec::new(),
            header: TokenHeader::default(),
            max_size: 8 * 1024,
            cache_capacity: 10_000,
            cache_ttl: Duration::from_secs(600),
        }
    }

    /// The header that carries the token.
    pub fn token_header(&self) -> &TokenHeader {
        &self.inner.header
    }

    /// Extracts the token from the headers and verifies it. A token the cache holds is
    /// decided before anything waits, without copying it; any other is copied out first, so
    /// the future is `Send` whatever the carrier.
    pub fn verify_headers(
        &self,
        headers: &dyn Extractor,
    ) -> impl Future<Output = Result<AuthContext>> + Send + '_ {
        self.verify_headers_at(headers, SystemTime::now())
    }

    /// [`verify_headers`](Self::verify_headers) as if the time were `now`.
    pub(crate) fn verify_headers_at(
        &self,
        headers: &dyn Extractor,
        now: SystemTime,
    ) -> impl Future<Output = Result<AuthContext>> + Send + '_ {
        let start = match self.inner.header.extract(headers, self.inner.max_size) {
            Err(e) => Start::Decided(Err(e)),
            Ok(token) => match self.verify_cached(token, now) {
                Some(verdict) => Start::Decided(verdict),
                None => Start::Verify(token.to_owned()),
            },
        };
        async move {
            match start {
                Start::Decided(verdict) => verdict,
                Start::Verify(token) => self.verify_fresh(&token, now).await,
            }
        }
    }

    /// Extracts the token from the headers, without verifying it.
    pub fn extract(&self, headers: &dyn Extractor) -> Result<String> {
        Ok(self
            .inner
            .header
            .extract(headers, self.inner.max_size)?
            .to_owned())
    }

    /// Starts verifying the token in `headers` on a task of its own, ahead of its message's
    /// turn, unless the verified-token cache holds it already; `true` if it started.
    ///
    /// For consumers that read messages before they handle them, through
    /// [`ReadAhead`](crate::verify::ReadAhead) (which calls this less often while it finds the tokens
    /// cached): while one message is handled, the signatures of those waiting are checked on
    /// the runtime's other threads. The check in turn ([`verify_headers`](Self::verify_headers),
    /// or a [`Guard`](crate::Guard)'s) finds the token cached, or waits for that verification
    /// instead of repeating it. It still decides everything that depends on the time. A token
    /// that failed ahead for a reason of its own (a bad signature, a foreign issuer) gets the
    /// same error in turn without a second check; one that failed for a reason that can change
    /// by its turn (the key set unreachable, an unknown key id) is checked again.
    ///
    /// Does nothing outside a Tokio runtime, without a cache, for a token already cached or
    /// being verified ahead, or for headers without a readable token (their check in turn
    /// says what is wrong).
    ///
    /// ```
    /// # use jwt_relay::{Headers, Verifier};
    /// # async fn read_ahead(verifier: &Verifier, waiting: &[Headers]) -> jwt_relay::Result<()> {
    /// // Messages read but not yet handled: their tokens are verified meanwhile.
    /// for headers in &waiting[1..] {
    ///     verifier.verify_ahead(headers);
    /// }
    /// for headers in waiting {
    ///     let _context = verifier.verify_headers(headers).await?;
    ///     // ... handle the message in order
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn verify_ahead(&self, headers: &dyn Extractor) -> bool {
        let inner = &self.inner;
        let Some(cache) = &inner.cache else {
            return false;
        };
        let Ok(token) = inner.header.extract(headers, inner.max_size) else {
            return false;
        };
        if check_size(token, inner.max_size).is_err() || cache.get(token, Instant::now()).is_some() {
            return false;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let Some(running) = inner.ahead.start(token) else {
            return false;
        };
        let verifier = self.clone();
        runtime.spawn(async move {
            let token = running.token();
            match verifier.verify_signed(token, true, Audience::Ours).await {
                Ok(verified) => {
                    if let Some(cache) = &verifier.inner.cache {
                        cache.insert(&AuthContext::new(token, Arc::new(verified)));
                    }
                }
                Err(e) => running.failed(&e),
            }
            // Cached (or failed) first, then its waiters woken.
            drop(running);
        });
        true
    }

    /// Verifies a token against the current time.
    pub async fn verify(&self, token: &str) -> Result<AuthContext> {
        self.verify_at(token, SystemTime::now()).await
    }

    /// Verifies a token as if the time were `now`.
    pub async fn verify_at(&self, token: &str, now: SystemTime) -> Result<AuthContext> {
        match self.verify_cached(token, now) {
            Some(verdict) => verdict,
            None => self.verify_fresh(token, now).await,
        }
    }

    /// Verifies a token meant for another service, as if the time were `now`: everything as
    /// for any token, except that it must name one of `audiences` (any audience, when empty)
    /// instead of this service's. Never cached, as the cache vouches for tokens meant here.
    pub(crate) async fn verify_for(
        &self,
        token: &str,
        audiences: &[String],
        now: SystemTime,
    ) -> Result<AuthContext> {
        check_size(token, self.inner.max_size)?;
        let verified = self
            .verify_signed(token, false, Audience::These(audiences))
            .await?;
        check_time(AuthContext::new(token, Arc::new(verified)), unix_seconds(now))
    }

    /// The verdict on a token the cache holds, its time checked against `now`; `None` when
    /// the cache does not hold it (or there is none). Refuses an oversized token first. Never
    /// waits.
    fn verify_cached(&self, token: &str, now: SystemTime) -> Option<Result<AuthContext>> {
        let started = Instant::now();
        let verdict = match check_size(token, self.inner.max_size) {
            Err(e) => Err(e),
            Ok(()) => self.lookup(token, now, started)?,
        };
        observe::record(&VERIFY_SECONDS, started.elapsed().as_secs_f64());
        Some(verdict)
    }

    /// Verifies a token that [`verify_cached`](Self::verify_cached) did not find (so its size
    /// is checked), and caches it if its signature, issuer and audience hold.
    async fn verify_fresh(&self, token: &str, now: SystemTime) -> Result<AuthContext> {
        let started = Instant::now();
        let verified = self.verified_context(token).await;
        observe::record(&VERIFY_SECONDS, started.elapsed().as_secs_f64());
        check_time(verified?, unix_seconds(now))
    }

    /// The token's verified context, the clock aside: what a verification ahead of its turn
    /// left (in the cache, or its failure), or else verified now and cached.
    async fn verified_context(&self, token: &str) -> Result<AuthContext> {
        let cache = self.inner.cache.as_ref();
        match self.inner.ahead.wait_for(token).await {
            Waited::Nothing => {}
            Waited::Failed(e) => return Err(e),
            Waited::Ended => {
                if let Some(cached) = cache.and_then(|c| c.get(token, Instant::now())) {
                    return Ok(cached);
                }
            }
        }
        let verified = self.verify_signed(token, false, Audience::Ours).await?;
        let context = AuthContext::new(token, Arc::new(verified));
        if let Some(cache) = cache {
            cache.insert(&context);
        }
        Ok(context)
    }

    /// The cached verdict on `token`, its time checked against `now`; `read_at` is the
    /// monotonic clock's reading, for the cache's time to live.
    fn lookup(&self, token: &str, now: SystemTime, read_at: Instant) -> Option<Result<AuthContext>> {
        let cache = self.inner.cache.as_ref()?;
        let cached = cache.get(token, read_at);
        observe::increment(if cached.is_some() {
            &CACHE_HITS
        } else {
            &CACHE_MISSES
        });
        Some(check_time(cached?, unix_seconds(now)))
    }

    /// Everything that does not depend on the clock: what the cache keeps. `ahead` says
    /// whether this runs ahead of the message's turn (for the signature-check count).
    async fn verify_signed(&self, token: &str, ahead: bool, audience: Audience<'_>) -> Result<Verified> {
        let compact = jose::split(token)?;
        let header = jose::parse_header(compact.header)?;
        let payload = jose::parse_object(&jose::decode_part(compact.payload, "payload")?, "payload")?;
        let claims = Claims::parse(payload)?;
        let Some(issuer) = self.inner.issuers.get(claims.issuer()) else {
            return Err(Error::new(
                ErrorKind::InvalidIssuer,
                format!("issuer {} is not trusted here", quote(claims.issuer())),
            ));
        };
        let config = &issuer.config;
        if config
            .algorithms
            .as_ref()
            .is_some_and(|a| !a.contains(&header.alg))
        {
            return Err(Error::new(
                ErrorKind::UnsupportedAlgorithm,
                format!(
                    "algorithm {} is not allowed for issuer `{}`",
                    alg_name(header.alg),
                    config.issuer
                ),
            ));
        }
        let key = issuer
            .find(header.kid.as_deref(), header.alg, claims.issued_at())
            .await?;
        if key.algorithm() != header.alg {
            return Err(Error::new(
                ErrorKind::AlgorithmMismatch,
                format!(
                    "the token says {} but key {} of issuer `{}` is pinned to {}",
                    alg_name(header.alg),
                    key.describe(),
                    config.issuer,
                    alg_name(key.algorithm())
                ),
            ));
        }
        // Literal labels make static metric keys: nothing is built per check.
        if ahead {
            metrics::counter!(observe::SIGNATURE_CHECKS_TOTAL, "ahead" => "true").increment(1);
        } else {
            metrics::counter!(observe::SIGNATURE_CHECKS_TOTAL, "ahead" => "false").increment(1);
        }
        if !key.verify(compact.signing_input, compact.signature)? {
            return Err(Error::new(
                ErrorKind::BadSignature,
                format!(
                    "the signature does not verify under key {} of issuer `{}`",
                    key.describe(),
                    config.issuer
                ),
            ));
        }
        check_audience(config, &claims, audience)?;
        check_typ(config, header.typ.as_deref())?;
        check_lifetime(config, &claims)?;
        Ok(Verified {
            claims,
            kid: header.kid,
            alg: header.alg,
            issuer: config.clone(),
        })
    }
}

impl IssuerKeys {
    /// The key for a token naming `kid` and `alg`, issued at `issued_at` (its unverified `iat`,
    /// which decides whether a `kid` a remote set lacks may be newer than the set).
    async fn find(
        &self,
        kid: Option<&str>,
        alg: jsonwebtoken::Algorithm,
        issued_at: Option<i64>,
    ) -> Result<Arc<Key>> {
        match &self.keys {
            Keys::Remote(remote) => remote.find(kid, alg, issued_at, self.config.leeway).await,
            Keys::Static(set) => set.find(kid, alg).ok_or_else(|| {
                let which = kid.map_or_else(
                    || "a token without kid".to_owned(),
                    |k| format!("key id {}", quote(k)),
                );
                Error::new(
                    ErrorKind::UnknownKeyId,
                    format!("{which} matches no key of issuer `{}`", self.config.issuer),
                )
            }),
        }
    }
}

impl VerifierBuilder {
    /// Trusts this issuer.
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// The header that carries the token (`Authorization: Bearer` by default).
    pub fn token_header(mut self, header: TokenHeader) -> Self {
        self.header = header;
        self
    }

    /// The largest token accepted, checked before anything is decoded (8 KiB).
    pub fn max_token_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes;
        self
    }

    /// How many verified tokens are remembered (10 000; 0 turns the cache off). Each entry
    /// holds the token and its claims.
    pub fn cache_capacity(mut self, entries: u64) -> Self {
        self.cache_capacity = entries;
        self
    }

    /// How long a verified token is remembered at most (10 min), so a key
    /// removed from its set stops vouching for cached tokens in time.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Checks the configuration and builds the verifier.
    pub fn build(self) -> Result<Verifier> {
        if self.issuers.is_empty() {
            return Err(Error::new(
                ErrorKind::Configuration,
                "a verifier needs at least one issuer",
            ));
        }
        let mut issuers = HashMap::new();
        for issuer in self.issuers {
            issuer.validate()?;
            let keys = match &issuer.keys {
                KeySource::Static(set) => Keys::Static(set.clone()),
                KeySource::Remote(location, options) => Keys::Remote(Arc::new(RemoteKeySet::new(
                    location.clone(),
                    options.clone(),
                    issuer.allow_plain_http,
                )?)),
                KeySource::None => {
                    return Err(Error::new(ErrorKind::Configuration, "an issuer has no keys"));
                }
            };
            let name = issuer.issuer.clone();
            let entry = IssuerKeys {
                config: Arc::new(issuer),
                keys,
            };
            if issuers.insert(name.clone(), entry).is_some() {
                return Err(Error::new(
                    ErrorKind::Configuration,
                    format!("issuer `{name}` is configured twice"),
                ));
            }
        }
        let cache =
            (self.cache_capacity > 0).then(|| VerifiedCache::new(self.cache_capacity, self.cache_ttl));
        Ok(Verifier {
            inner: Arc::new(Inner {
                issuers,
                header: self.header,
                max_size: self.max_size,
                cache,
                ahead: Arc::default(),
            }),
        })
    }
}

/// The audiences a token must name one of.
#[derive(Clone, Copy)]
enum Audience<'a> {
    /// Its issuer's, the ones this service accepts (none, when the issuer's check is off).
    Ours,
    /// One of these (any, when empty): a token meant for another service.
    These(&'a [String]),
}

fn check_audience(config: &Issuer, claims: &Claims, audience: Audience<'_>) -> Result<()> {
    let wanted = match audience {
        Audience::Ours if config.check_audience => config.audiences.as_slice(),
        Audience::Ours | Audience::These([]) => return Ok(()),
        Audience::These(these) => these,
    };
    let aud = claims.audience();
    if aud.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidAudience,
            "the token has no `aud` claim",
        ));
    }
    if aud.iter().any(|a| wanted.contains(a)) {
        return Ok(());
    }
    let list = |auds: &[String]| {
        auds.iter()
            .take(5)
            .map(|a| quote(a))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(Error::new(
        ErrorKind::InvalidAudience,
        format!(
            "the token is for {}, not for {} (issuer `{}`)",
            list(aud),
            list(wanted),
            config.issuer
        ),
    ))
}

fn check_typ(config: &Issuer, typ: Option<&str>) -> Result<()> {
    let Some(want) = &config.typ else {
        return Ok(());
    };
    let normal = |t: &str| {
        let t = t.trim();
        match t.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => t[12..].to_ascii_lowercase(),
            _ => t.to_ascii_lowercase(),
        }
    };
    match typ {
        Some(typ) if normal(typ) == normal(want) => Ok(()),
        Some(typ) => Err(Error::new(
            ErrorKind::InvalidType,
            format!("the token's typ is {}, not `{want}`", quote(typ)),
        )),
        None => Err(Error::new(
            ErrorKind::InvalidType,
            format!("the token has no typ; `{want}` is required"),
        )),
    }
}

fn check_lifetime(config: &Issuer, claims: &Claims) -> Result<()> {
    if config.require_exp && claims.expires_at().is_none() {
        return Err(Error::new(
            ErrorKind::InvalidClaim,
            "the token has no `exp` claim",
        ));
    }
    let Some(max) = config.max_lifetime else {
        return Ok(());
    };
    let (Some(iat), Some(exp)) = (claims.issued_at(), claims.expires_at()) else {
        return Err(Error::new(
            ErrorKind::InvalidClaim,
            "a maximum lifetime is set, so `iat` and `exp` are required",
        ));
    };
    let lifetime = exp.saturating_sub(iat);
    if lifetime > i64::try_from(max.as_secs()).unwrap_or(i64::MAX) {
        return Err(Error::new(
            ErrorKind::InvalidClaim,
            format!(
                "the token lives {lifetime} s, more than the {} s allowed",
                max.as_secs()
            ),
        ));
    }
    Ok(())
}

/// A token longer than `max` bytes is refused before anything reads it.
fn check_size(token: &str, max: usize) -> Result<()> {
    if token.len() > max {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!("the token is {} bytes, more than the {max} allowed", token.len()),
        ));
    }
    Ok(())
}

/// `nbf`, `iat` and `exp` against the clock, with the issuer's leeway. Runs
/// on every verification, cached or not, so a cached token expires on time.
fn check_time(context: AuthContext, now: i64) -> Result<AuthContext> {
    let claims = context.claims();
    let leeway = context.issuer_config().leeway.as_secs() as i64;
    if let Some(nbf) = claims.not_before()
        && nbf > now.saturating_add(leeway)
    {
        return Err(Error::new(
            ErrorKind::NotYetValid,
            format!(
                "the token is not valid before {nbf}, {} s from now",
                nbf.saturating_sub(now)
            ),
        ));
    }
    if let Some(iat) = claims.issued_at()
        && iat > now.saturating_add(leeway)
    {
        return Err(Error::new(
            ErrorKind::IssuedInFuture,
            format!(
                "the token claims to be issued at {iat}, {} s in the future",
                iat.saturating_sub(now)
            ),
        ));
    }
    if let Some(exp) = claims.expires_at()
        && now >= exp.saturating_add(leeway)
    {
        let message = format!(
            "the token of issuer `{}` expired at {exp}, {} s ago",
            claims.issuer(),
            now.saturating_sub(exp)
        );
        return Err(Error::expired(context, message));
    }
    Ok(context)
}

pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The current time in Unix seconds.
pub fn now_unix() -> i64 {
    unix_seconds(SystemTime::now())
}
