//! Remote key sets: a JWKS URL or OIDC discovery, refreshed with care.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::Algorithm;
use serde_json::Value;
use tracing::Instrument as _;

use crate::error::{Error, ErrorKind, Result, quote};
use crate::http::{self, read_capped};
use crate::observe;
use crate::verify::issuer::PLAIN_HTTP_OPT_IN;
use crate::verify::key::{Key, KeyOrigin};
use crate::verify::key_set::{KeySet, parse_jwks};
use crate::verify::verifier::unix_seconds;

/// The wait before fetching again after a failed fetch; it doubles with each failure in a
/// row, up to the cooldown.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// How a remote key set is fetched and refreshed.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    timeout: Duration,
    max_body: usize,
    max_age: Duration,
    cooldown: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            timeout: Duration::from_secs(5),
            max_body: 1 << 20,
            max_age: Duration::from_secs(600),
            cooldown: Duration::from_secs(30),
        }
    }
}

impl RemoteOptions {
    /// How long one fetch may take (5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest document accepted (1 MiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// After this age the set is fetched again (10 min).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// At most one fetch per this interval for unknown key ids (30 s). A
    /// failed fetch is tried again sooner: after 1 s, then 2 s, 4 s, …, up to
    /// this interval, so a short outage of the key-set endpoint costs about
    /// its own length.
    ///
    /// While the cooldown holds a fetch back, a token whose `kid` the set
    /// lacks is refused as [`ErrorKind::UnknownKeyId`] (permanent) if the set
    /// was fetched after the token was issued, and as
    /// [`ErrorKind::KeySetUnavailable`] (transient, with
    /// [`Error::retry_after`] the rest of the cooldown) if the token's `iat`
    /// is later than the second the fetch started: its key may have been
    /// rotated in since, and the next fetch decides.
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }
}

/// Where the keys are.
#[derive(Debug, Clone)]
pub(crate) enum Location {
    /// A JWKS URL.
    Jwks(String),
    /// `{issuer}/.well-known/openid-configuration`, then its `jwks_uri`.
    Discovery(String),
}

impl Location {
    /// The first URL fetched, and what it is called in errors.
    pub(crate) fn url(&self) -> (String, &'static str) {
        match self {
            Location::Jwks(url) => (url.clone(), "the key set URL"),
            Location::Discovery(issuer) => (discovery_url(issuer), "the discovery URL"),
        }
    }
}

/// `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery §4).
fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// A key set fetched over HTTP. Lookups share one fetch at a time
/// (single-flight); while the endpoint is down the last good set serves.
#[derive(Debug)]
pub(crate) struct RemoteKeySet {
    location: Location,
    options: RemoteOptions,
    allow_plain_http: bool,
    client: reqwest::Client,
    state: RwLock<State>,
    fetching: tokio::sync::Mutex<()>,
    background: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    /// When the fetch of the set in use started, for its age and to compare with tokens' `iat`.
    fetched_at: Option<(Instant, SystemTime)>,
    /// No fetch starts before this: the cooldown after a fetch, less after a failure.
    next_fetch: Option<Instant>,
    /// Failed fetches in a row.
    failures: u32,
    /// Why the newest attempt failed, if it did.
    failure: Option<(ErrorKind, String)>,
    generation: u64,
    jwks_uri: Option<String>,
}

/// The wait after `failures` failed fetches in a row: [`FIRST_RETRY`], doubling, at most
/// `cooldown`.
fn retry_delay(failures: u32, cooldown: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    FIRST_RETRY.saturating_mul(1 << doublings).min(cooldown)
}

/// What a lookup saw before deciding to fetch.
struct Snapshot {
    generation: u64,
    keys: Option<Arc<KeySet>>,
    stale: bool,
    /// Since the set in use was fetched.
    age: Option<Duration>,
}

impl RemoteKeySet {
    /// A key set at `location`; `allow_plain_http` lets a discovered `jwks_uri` be plain `http`
    /// to a host that is not loopback (the issuer's own URL is checked when it is configured).
    pub(crate) fn new(
        location: Location,
        options: RemoteOptions,
        allow_plain_http: bool,
    ) -> Result<RemoteKeySet> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(options.timeout)
            .build()
            .map_err(|e| {
                Error::new(ErrorKind::Configuration, "cannot build the HTTP client").with_source(e)
            })?;
        Ok(RemoteKeySet {
            location,
            options,
            allow_plain_http,
            client,
            state: RwLock::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
            background: AtomicBool::new(false),
        })
    }

    /// The key for a token, fetching the set when it is missing, stale, or
    /// lacks the `kid` (at most once per cooldown).
    ///
    /// A stale set that holds the key answers at once and is refreshed in
    /// the background, so a hanging endpoint never holds up known keys.
    ///
    /// `issued_at` is the token's `iat` (not verified yet) and `leeway` its
    /// issuer's: a token issued after the set was fetched may carry a key
    /// rotated in since, so while the cooldown holds the next fetch back its
    /// unknown `kid` is transient (see [`RemoteOptions::cooldown`]).
    pub(crate) async fn find(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: Algorithm,
        issued_at: Option<i64>,
        leeway: Duration,
    ) -> Result<Arc<Key>> {
        let snapshot = self.snapshot();
        if let Some(age) = snapshot.age {
            metrics::gauge!(observe::KEY_SET_AGE_SECONDS, "location" => self.describe())
                .set(age.as_secs_f64());
        }
        if let Some(keys) = &snapshot.keys
            && let Some(key) = keys.find(kid, alg)
        {
            if snapshot.stale {
                self.refresh_in_background(snapshot.generation);
            }
            return Ok(key);
        }
        self.refresh(snapshot.generation).await;
        let state = self.read();
        if let Some(key) = state.keys.as_ref().and_then(|k| k.find(kid, alg)) {
            return Ok(key);
        }
        let which = kid.map_or_else(
            || "token without kid".to_owned(),
            |k| format!("key id {}", quote(k)),
        );
        if let Some((kind, why)) = &state.failure {
            return Err(Error::new(
                *kind,
                format!("{which} is not known and the key set is unavailable: {why}"),
            ));
        }
        if let Some(wait) = self.newer_than_the_set(&state, issued_at, leeway) {
            return Err(Error::new(
                ErrorKind::KeySetUnavailable,
                format!(
                    "{which} is not in the key set at {}, fetched before the token was issued: \
                     its key may have been rotated in since; the set is fetched again in {} s",
                    self.describe(),
                    wait.as_secs_f64().ceil()
                ),
            )
            .with_retry_after(wait));
        }
        Err(Error::new(
            ErrorKind::UnknownKeyId,
            format!("{which} is not in the key set at {}", self.describe()),
        ))
    }

    /// For a token whose key the set lacks: how long until the next fetch, if the token was
    /// issued after the set was fetched, so that the next fetch may bring its key.
    ///
    /// The token's `iat` must be later than the (Unix) second in which that fetch started, and
    /// at most `leeway` in the future (a later one is refused anyway, as issued in the future).
    /// A token without `iat` cannot show it is newer.
    ///
    /// `iat` is when the signature was made, so the issuer published the key by then; a set
    /// fetched later holds it, or never will. `iat` is not verified yet, but a forged one buys
    /// a forged token only retries, never a fetch (the cooldown holds) nor acceptance: the
    /// next fetch starts when the cooldown ends, and once a fetch started after its `iat`
    /// the unknown `kid` is permanent. So a message is retried at most for the issuer's leeway
    /// plus one cooldown after it was first seen (an `iat` in the past: one cooldown).
    fn newer_than_the_set(
        &self,
        state: &State,
        issued_at: Option<i64>,
        leeway: Duration,
    ) -> Option<Duration> {
        let (_, fetched) = state.fetched_at?;
        let issued_at = issued_at?;
        let now = SystemTime::now();
        let latest = unix_seconds(now).saturating_add(i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX));
        if issued_at <= unix_seconds(fetched) || issued_at > latest {
            return None;
        }
        let wait = state
            .next_fetch
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(Instant::now()));
        Some(wait)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn snapshot(&self) -> Snapshot {
        let state = self.read();
        Snapshot {
            generation: state.generation,
            keys: state.keys.clone(),
            stale: state
                .fetched_at
                .is_none_or(|(at, _)| at.elapsed() >= self.options.max_age),
            age: state.fetched_at.map(|(at, _)| at.elapsed()),
        }
    }

    /// Starts one background refresh unless one is already under way.
    fn refresh_in_background(self: &Arc<Self>, seen: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime to run it on: the next unknown kid refreshes
        };
        if self.background.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        runtime.spawn(async move {
            this.refresh(seen).await;
            this.background.store(false, Ordering::Release);
        });
    }

    async fn refresh(&self, seen: u64) {
        let _one_at_a_time = self.fetching.lock().await;
        let jwks_uri = {
            let state = self.read();
            if state.generation != seen {
                return; // another lookup fetched while this one waited
            }
            if state.next_fetch.is_some_and(|at| Instant::now() < at) {
                return;
            }
            state.jwks_uri.clone()
        };
        let location = self.describe();
        let span =
            tracing::info_span!("jwt_relay.jwks_fetch", location = %location, result = tracing::field::Empty);
        let started = (Instant::now(), SystemTime::now());
        let result = self.fetch(jwks_uri).instrument(span.clone()).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        span.record("result", outcome);
        metrics::counter!(observe::JWKS_FETCHES_TOTAL, "result" => outcome).increment(1);
        let mut state = self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.generation += 1;
        match result {
            Ok((keys, uri)) => {
                tracing::debug!(location = %self.describe(), keys = keys.len(), "fetched key set");
                state.keys = Some(Arc::new(keys));
                state.fetched_at = Some(started);
                state.next_fetch = Some(Instant::now() + self.options.cooldown);
                state.failures = 0;
                state.jwks_uri = Some(uri);
                state.failure = None;
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                let wait = retry_delay(state.failures, self.options.cooldown);
                tracing::warn!(
                    location = %self.describe(),
                    error = %e,
                    retry_in_ms = wait.as_millis() as u64,
                    "key set fetch failed; the last good set keeps serving"
                );
                state.next_fetch = Some(Instant::now() + wait);
                state.failure = Some((e.kind(), e.message().to_owned()));
            }
        }
    }

    async fn fetch(&self, jwks_uri: Option<String>) -> Result<(KeySet, String)> {
        let uri = match (jwks_uri, &self.location) {
            (Some(uri), _) => uri,
            (None, Location::Jwks(uri)) => uri.clone(),
            (None, Location::Discovery(issuer)) => self.discover(issuer).await?,
        };
        let body = self.get(&uri).await?;
        let keys = parse_jwks(&body, KeyOrigin::Remote, false).map_err(|e| {
            Error::new(
                ErrorKind::KeySetUnavailable,
                format!("the key set at {uri} is unusable: {}", e.message()),
            )
        })?;
        Ok((keys, uri))
    }

    async fn discover(&self, issuer: &str) -> Result<String> {
        let url = discovery_url(issuer);
        let doc: Value = serde_json::from_slice(&self.get(&url).await?).map_err(|e| {
            Error::new(ErrorKind::KeySetUnavailable, format!("{url} is not JSON")).with_source(e)
        })?;
        // OpenID Connect Discovery §4.3: the document must name the issuer we asked for.
        if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(Error::new(
                ErrorKind::Configuration,
                format!("{url} names another issuer than {}", quote(issuer)),
            ));
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::new(ErrorKind::KeySetUnavailable, format!("{url} has no `jwks_uri`")))?;
        let what = format!("the `jwks_uri` of {url}");
        let parsed = http::parse_url(jwks_uri, &what, PLAIN_HTTP_OPT_IN, self.allow_plain_http)?;
        Ok(parsed.into())
    }

    /// A GET that accepts only 200, follows no redirect, and reads at most
    /// `max_body` bytes.
    async fn get(&self, url: &str) -> Result<Vec<u8>> {
        let unavailable = |what: String| Error::new(ErrorKind::KeySetUnavailable, what);
        let mut response = self
            .client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| unavailable(format!("GET {url} failed")).with_source(e))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            let what = if status.is_redirection() {
                " (redirects are not followed)"
            } else {
                ""
            };
            return Err(unavailable(format!("GET {url} answered {status}{what}")));
        }
        read_capped(&mut response, self.options.max_body)
            .await
            .map_err(|e| unavailable(format!("GET {url}: {e}")).with_source(e))
    }

    fn describe(&self) -> String {
        match &self.location {
            Location::Jwks(uri) => uri.clone(),
            Location::Discovery(issuer) => format!("the discovery document of {issuer}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_fetch_is_retried_after_one_second_doubling_up_to_the_cooldown() {
        let cooldown = Duration::from_secs(30);
        let waits: Vec<u64> = (1..=7).map(|n| retry_delay(n, cooldown).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(retry_delay(u32::MAX, cooldown), cooldown);
        // A cooldown shorter than a second bounds the first retry too.
        let short = Duration::from_millis(100);
        assert_eq!(retry_delay(1, short), short);
        assert_eq!(retry_delay(1, Duration::ZERO), Duration::ZERO);
    }
}
