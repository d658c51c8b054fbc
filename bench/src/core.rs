//! What no broker is needed for: the latency the guard adds per message, token-endpoint calls
//! for a burst of one expired token, key-set fetches during an unknown-`kid` storm, and resident
//! memory while a million distinct tokens pass the verified-token cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jwt_relay::consume::{MessageInfo, Outcome};
use jwt_relay::exchange::ExchangeCache;
use jwt_relay::testing::{DevSts, DevStsConfig, Mode};
use jwt_relay::verify::{RemoteOptions, now_unix};
use jwt_relay::{Acceptance, Algorithm, ErrorKind, Exchange, Guard, Headers, Issuer, Verifier};
use serde_json::{Value, json};

use crate::measure::quantile;
use crate::tokens::{AUDIENCE, ISSUER, Keys};
use crate::{AUTHORIZATION, Failure, bearer, concurrently};

fn headers_with(token: &str) -> Headers {
    let mut headers = Headers::new();
    headers.append(AUTHORIZATION, bearer(token));
    headers
}

/// A guard over the default verifier, and the headers of a message carrying scenario (a)'s
/// shared RS256 token.
fn shared_token(keys: &Keys) -> Result<(Guard, Headers), Failure> {
    let headers = headers_with(&keys.token(Algorithm::RS256, "alice")?);
    Ok((Guard::new(keys.verifier.clone()), headers))
}

/// p50 and p99 of the guard's check of a message whose token it has seen (scenario a): all
/// that jwt-relay adds on the consuming side, whatever the broker.
pub(crate) async fn added_latency(keys: &Keys, samples: usize) -> Result<Value, Failure> {
    let (guard, headers) = shared_token(keys)?;
    let info = MessageInfo::new("bench");
    let mut times = Vec::with_capacity(samples);
    for n in 0..samples + 1000 {
        let started = Instant::now();
        let outcome = guard.check(&headers, &info).await;
        let elapsed = started.elapsed();
        if !matches!(outcome, Outcome::Accept(_)) {
            return Err(format!("the shared token was not accepted: {outcome:?}").into());
        }
        // The first thousand warm the cache and the allocator.
        if n >= 1000 {
            times.push(elapsed);
        }
    }
    times.sort();
    let micros = |d: Duration| (d.as_secs_f64() * 1e7).round() / 10.0;
    Ok(json!({
        "measurement": "added_latency",
        "scenario": "a: one token",
        "samples": samples,
        "p50_us": micros(quantile(&times, 0.50)),
        "p99_us": micros(quantile(&times, 0.99)),
        "max_us": micros(quantile(&times, 1.0)),
    }))
}

/// `checks` checks of one shared token through the guard, with nothing else timed or counted
/// in between: the loop `--cached-checks` runs under callgrind.
pub(crate) async fn cached_checks(keys: &Keys, checks: usize) -> Result<Value, Failure> {
    let (guard, headers) = shared_token(keys)?;
    let info = MessageInfo::new("bench");
    let mut accepted = 0;
    let started = Instant::now();
    for _ in 0..checks {
        if let Outcome::Accept(_) = guard.check(&headers, &info).await {
            accepted += 1;
        }
    }
    if accepted != checks {
        return Err(format!("{accepted} of {checks} checks accepted the shared token").into());
    }
    let per_check = started.elapsed().as_secs_f64() * 1e9 / checks.max(1) as f64;
    Ok(json!({ "measurement": "cached_checks", "checks": checks, "ns_per_check": per_check.round() }))
}

/// `messages` messages carrying one expired token, checked 512 at a time under `Exchange`
/// (through an `ExchangeCache`), against a token service in `mode`: how many calls its token
/// endpoint received. `Normal` issues a fresh token (every message accepted, exchanged),
/// `RejectAll` refuses it (every message rejected), `Unavailable` is down (every message
/// retried).
pub(crate) async fn exchange_burst(messages: usize, mode: Mode) -> Result<Value, Failure> {
    let sts = DevSts::start(DevStsConfig::default()).await?;
    sts.set_mode(mode);
    let verifier = Verifier::builder()
        .issuer(
            Issuer::new(sts.issuer())
                .audience(AUDIENCE)
                .jwks_url(sts.jwks_url()),
        )
        .build()?;
    let client = sts.client().build()?;
    let guard = Guard::builder(verifier)
        .policy(Exchange::new(Arc::new(ExchangeCache::new(client))).audience(AUDIENCE))
        .build();
    let now = now_unix();
    let expired = sts.mint_claims(json!({
        "iss": sts.issuer(), "aud": AUDIENCE, "sub": "alice", "iat": now - 600, "exp": now - 60,
    }));
    let headers = headers_with(&expired);
    let info = MessageInfo::new("bench");
    let started = Instant::now();
    concurrently(messages, 512, |_| {
        let (guard, headers, info) = (&guard, &headers, &info);
        async move {
            match (mode, guard.check(headers, info).await) {
                (Mode::Normal, Outcome::Accept(context)) if context.acceptance() == Acceptance::Exchanged => {
                    Ok(())
                }
                (Mode::RejectAll, Outcome::Reject(e)) if e.kind() == ErrorKind::ExchangeDenied => Ok(()),
                (Mode::Unavailable { .. }, Outcome::Retry(e, _))
                    if e.kind() == ErrorKind::ExchangeUnavailable =>
                {
                    Ok(())
                }
                (_, other) => Err(format!("token service {mode:?}, but: {other:?}").into()),
            }
        }
    })
    .await?;
    let elapsed = started.elapsed();
    let calls = sts.stats().token_requests;
    sts.shutdown().await;
    Ok(json!({
        "measurement": "exchange_burst",
        "token_service": format!("{mode:?}"),
        "messages": messages,
        "token_endpoint_calls": calls,
        "seconds": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
    }))
}

/// Tokens naming unknown key ids (`kids` different ones, cycled), checked 512 at a time for
/// `seconds` against a remote key set with a 500 ms refetch cooldown: how many key-set fetches
/// the storm caused, against one per cooldown.
pub(crate) async fn unknown_kid_storm(keys: &Keys, seconds: u64, kids: usize) -> Result<Value, Failure> {
    let cooldown = Duration::from_millis(500);
    let sts = DevSts::start(DevStsConfig::default()).await?;
    let verifier = Verifier::builder()
        .issuer(
            Issuer::new(sts.issuer())
                .audience(AUDIENCE)
                .jwks_url_with(sts.jwks_url(), RemoteOptions::default().cooldown(cooldown)),
        )
        .build()?;
    // The key set is loaded once by a genuine token, as in a running consumer.
    verifier
        .verify(&sts.mint("alice", AUDIENCE, Duration::from_secs(600)))
        .await?;
    let before = sts.stats().jwks_requests;
    let now = now_unix();
    let rogue: Vec<Headers> = (0..kids.max(1))
        .map(|n| {
            let claims = json!({
                "iss": sts.issuer(), "aud": AUDIENCE, "sub": "mallory", "iat": now, "exp": now + 600,
            });
            keys.sign(Algorithm::RS256, Some(&format!("rogue-{n}")), claims)
                .map(|token| headers_with(&token))
        })
        .collect::<Result<_, _>>()?;
    let guard = Guard::new(verifier);
    let info = MessageInfo::new("bench");
    let started = Instant::now();
    let mut messages = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        concurrently(rogue.len(), 512, |i| {
            let (guard, info, headers) = (&guard, &info, &rogue[i]);
            async move {
                match guard.check(headers, info).await {
                    Outcome::Accept(_) => Err("a token signed with an unknown key was accepted".into()),
                    _ => Ok(()),
                }
            }
        })
        .await?;
        messages += rogue.len();
    }
    let elapsed = started.elapsed();
    let fetches = sts.stats().jwks_requests - before;
    sts.shutdown().await;
    Ok(json!({
        "measurement": "unknown_kid_storm",
        "messages_rejected": messages,
        "distinct_kids": kids,
        "seconds": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        "cooldown_ms": cooldown.as_millis() as u64,
        "jwks_fetches": fetches,
        "at_most_one_per_cooldown": (elapsed.as_secs_f64() / cooldown.as_secs_f64()).ceil(),
    }))
}

/// Resident memory (from `/proc/self/status`), in KiB.
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident memory while `tokens` distinct HS256 tokens pass the default verifier (its cache
/// holds 10 000): sampled at each tenth.
pub(crate) async fn memory_under_distinct_tokens(keys: &Keys, tokens: usize) -> Result<Value, Failure> {
    let verifier = keys.verifier_with_cache(10_000)?;
    let now = now_unix();
    let mut samples = Vec::new();
    let step = (tokens / 10).max(1);
    for n in 0..tokens {
        let token = keys.token_with(
            Algorithm::HS256,
            json!({"iss": ISSUER, "aud": AUDIENCE, "sub": format!("user-{n}"), "iat": now, "exp": now + 3600}),
        )?;
        verifier.verify(&token).await?;
        if (n + 1) % step == 0 {
            samples.push(json!([n + 1, resident_kib()]));
        }
    }
    let kib = |index: usize| samples.get(index).and_then(|s| s[1].as_u64()).unwrap_or_default();
    // From the moment the cache is full (10 000 entries, within the first tenth at 100 000+).
    let growth =
        kib(samples.len().saturating_sub(1)) as i64 - kib(1.min(samples.len().saturating_sub(1))) as i64;
    Ok(json!({
        "measurement": "memory_distinct_tokens",
        "tokens": tokens,
        "cache_capacity": 10_000,
        "rss_kib_at": samples,
        "growth_after_second_tenth_kib": growth,
    }))
}
