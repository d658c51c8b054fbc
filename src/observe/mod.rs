//! What jwt-relay tells operators: the metrics it records through the
//! [`metrics`] facade, and the `tracing` span of each consumed message.
//!
//! | metric | type | labels | what it counts |
//! |---|---|---|---|
//! | `jwt_relay_messages_total` | counter | `broker`, `destination`, `outcome`, `kind` | consumed messages by what became of them: `outcome` is `accepted`, `dead_lettered`, `rejected` (no dead-letter destination), `retry`, `handler_failed` or `halted`; `kind` is the error kind (`Expired`, `BadSignature`, …), or for `accepted` how the token was accepted (`Verified`, `Grace`, `Exchanged`) |
//! | `jwt_relay_exchanges_total` | counter | `result` | token exchanges: `issued`, `cached` (served by the exchange cache), `denied`, `unauthorized`, `unavailable`, `error` |
//! | `jwt_relay_exchange_seconds` | histogram | | time of each call to the token endpoint |
//! | `jwt_relay_jwks_fetches_total` | counter | `result` | key-set fetches: `ok` or `error` |
//! | `jwt_relay_key_set_age_seconds` | gauge | `location` | age of the key set in use, set when it is consulted |
//! | `jwt_relay_verify_cache_total` | counter | `hit` | verified-token cache lookups: `true` or `false` |
//! | `jwt_relay_verify_seconds` | histogram | | time of each verification (cached or not) |
//! | `jwt_relay_signature_checks_total` | counter | `ahead` | signatures checked (what the cache did not save): `true` for those checked ahead of their message's turn ([`Verifier::verify_ahead`](crate::Verifier::verify_ahead)) |
//!
//! Label values are bounded: broker names, configured destinations, error
//! kinds, key-set locations. No token, no user subject.
//!
//! Each adapter runs the guard and the handler of a message inside a
//! `jwt_relay.consume` span ([`consume_span`]) whose fields are filled in as
//! they become known: `broker`, `destination`, `issuer`, `kid`,
//! `token_age_s`, `policy` (what the expiry policy did), `outcome`,
//! `error_kind`, `error_class`, and `subject` only when
//! [`GuardBuilder::record_subject`](crate::consume::GuardBuilder::record_subject) is
//! on. Publishes run in `jwt_relay.publish` spans, key-set fetches in
//! `jwt_relay.jwks_fetch` and token exchanges in `jwt_relay.exchange`.

pub(crate) mod trace_context;

use std::cell::RefCell;

use metrics::{Key, Label, Level, Metadata};
use tracing::Span;
use tracing::field::Empty;

use crate::carrier::Extractor;
use crate::error::{Error, ErrorKind};

/// Consumed messages, by broker, destination, outcome and kind.
pub const MESSAGES_TOTAL: &str = "jwt_relay_messages_total";
/// Token exchanges, by result.
pub const EXCHANGES_TOTAL: &str = "jwt_relay_exchanges_total";
/// Time of each call to the token endpoint, in seconds.
pub const EXCHANGE_SECONDS: &str = "jwt_relay_exchange_seconds";
/// Key-set fetches, by result.
pub const JWKS_FETCHES_TOTAL: &str = "jwt_relay_jwks_fetches_total";
/// Age of the key set in use, in seconds, by location.
pub const KEY_SET_AGE_SECONDS: &str = "jwt_relay_key_set_age_seconds";
/// Verified-token cache lookups, by hit.
pub const VERIFY_CACHE_TOTAL: &str = "jwt_relay_verify_cache_total";
/// Time of each verification, in seconds.
pub const VERIFY_SECONDS: &str = "jwt_relay_verify_seconds";
/// Signatures checked, by whether ahead of their message's turn.
pub const SIGNATURE_CHECKS_TOTAL: &str = "jwt_relay_signature_checks_total";

/// Describes every metric (unit and help text) to the installed recorder:
/// call it once after installing one, for exporters that show descriptions.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        MESSAGES_TOTAL,
        Unit::Count,
        "Consumed messages, by broker, destination, outcome and kind."
    );
    describe_counter!(
        EXCHANGES_TOTAL,
        Unit::Count,
        "Token exchanges (RFC 8693), by result."
    );
    describe_histogram!(
        EXCHANGE_SECONDS,
        Unit::Seconds,
        "Time of each call to the token endpoint."
    );
    describe_counter!(JWKS_FETCHES_TOTAL, Unit::Count, "Key-set fetches, by result.");
    describe_gauge!(
        KEY_SET_AGE_SECONDS,
        Unit::Seconds,
        "Age of the key set in use, by location."
    );
    describe_counter!(
        VERIFY_CACHE_TOTAL,
        Unit::Count,
        "Verified-token cache lookups, by hit."
    );
    describe_histogram!(VERIFY_SECONDS, Unit::Seconds, "Time of each token verification.");
    describe_counter!(
        SIGNATURE_CHECKS_TOTAL,
        Unit::Count,
        "Signatures checked, by whether ahead of their message's turn."
    );
}

/// The span a broker adapter runs one consumed message in (the guard, then
/// the handler): `jwt_relay.consume`, with `broker` and `destination` set
/// and the other fields filled in as they become known. With the
/// `opentelemetry` feature it continues the trace whose `traceparent` the
/// message's `headers` carry.
pub fn consume_span(broker: &'static str, destination: &str, headers: &dyn Extractor) -> Span {
    let span = tracing::info_span!(
        "jwt_relay.consume",
        broker,
        destination,
        issuer = Empty,
        kid = Empty,
        subject = Empty,
        token_age_s = Empty,
        policy = Empty,
        outcome = Empty,
        error_kind = Empty,
        error_class = Empty,
    );
    crate::observe::trace_context::continue_trace(&span, headers);
    span
}

/// Records what became of a consumed message: counts it in
/// [`MESSAGES_TOTAL`] and writes `outcome`, `error_kind` and `error_class`
/// into the current span. `outcome` is one of `accepted`, `dead_lettered`,
/// `rejected`, `retry`, `handler_failed`, `halted`; `acceptance` says how an
/// accepted identity was accepted ([`Acceptance::as_str`](crate::Acceptance::as_str)),
/// `error` is the reason otherwise. Both become the `kind` label.
pub fn record_message(
    broker: &'static str,
    destination: &str,
    outcome: &'static str,
    acceptance: Option<&'static str>,
    error: Option<&Error>,
) {
    let kind = match (error, acceptance) {
        (Some(error), _) => error.kind().as_str(),
        (None, Some(acceptance)) => acceptance,
        (None, None) => "",
    };
    count_message(broker, destination, outcome, kind);
    let span = Span::current();
    span.record("outcome", outcome);
    if let Some(error) = error {
        span.record("error_kind", error.kind().as_str());
        span.record("error_class", error.class().as_str());
    }
}

/// Where `record_message`'s counts are registered, as `metrics::counter!` would say.
static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Adds one to the counter of `key`, a key built (and hashed) once, not for every message:
/// what `metrics::counter!` does with the current recorder.
pub(crate) fn increment(key: &Key) {
    metrics::with_recorder(|r| r.register_counter(key, &METADATA)).increment(1);
}

/// Records `value` in the histogram of `key`, a key built once.
pub(crate) fn record(key: &Key, value: f64) {
    metrics::with_recorder(|r| r.register_histogram(key, &METADATA)).record(value);
}

/// The labels of the [`MESSAGES_TOTAL`] series counted last on a thread, and its key.
struct LastSeries {
    destination: String,
    /// Broker, outcome and kind.
    labels: (&'static str, &'static str, &'static str),
    key: Key,
}

thread_local! {
    /// A consumer counts the same series message after message: its key, labels and all, is
    /// built once per thread, not once per message. Only the key is kept, never the counter,
    /// so a recorder installed later gets every count.
    static LAST_SERIES: RefCell<Option<LastSeries>> = const { RefCell::new(None) };
}

/// Adds one to the [`MESSAGES_TOTAL`] series of these labels.
fn count_message(broker: &'static str, destination: &str, outcome: &'static str, kind: &'static str) {
    let key = || {
        let labels = vec![
            Label::new("broker", broker),
            Label::new("destination", destination.to_owned()),
            Label::new("outcome", outcome),
            Label::new("kind", kind),
        ];
        Key::from_parts(MESSAGES_TOTAL, labels)
    };
    let counted = LAST_SERIES.try_with(|last| {
        // Taken already only if the recorder itself counts a message: it gets its own key.
        let Ok(mut last) = last.try_borrow_mut() else {
            return false;
        };
        let series = match &mut *last {
            Some(series) if series.destination == destination && series.labels == (broker, outcome, kind) => {
                series
            }
            slot => slot.insert(LastSeries {
                destination: destination.to_owned(),
                labels: (broker, outcome, kind),
                key: key(),
            }),
        };
        increment(&series.key);
        true
    });
    // Or a thread being torn down, whose cache is gone.
    if counted != Ok(true) {
        increment(&key());
    }
}

/// The `result` label of [`EXCHANGES_TOTAL`] for one call to a token endpoint.
pub(crate) fn exchange_result<T>(result: &Result<T, Error>) -> &'static str {
    match result {
        Ok(_) => "issued",
        Err(e) => match e.kind() {
            ErrorKind::ExchangeDenied => "denied",
            ErrorKind::ExchangeUnauthorized => "unauthorized",
            ErrorKind::ExchangeUnavailable => "unavailable",
            _ => "error",
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    /// (destination, outcome, kind) → count, from the recorder's snapshot.
    fn counts(recorder: &DebuggingRecorder) -> Vec<(String, String, String, u64)> {
        let mut counts: Vec<_> = recorder
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let label = |name: &str| {
                    let key = key.key();
                    let found = key.labels().find(|l| l.key() == name);
                    found.map(|l| l.value().to_owned()).unwrap_or_default()
                };
                let DebugValue::Counter(n) = value else {
                    panic!("not a counter: {value:?}")
                };
                (label("destination"), label("outcome"), label("kind"), n)
            })
            .collect();
        counts.sort();
        counts
    }

    #[test]
    fn each_series_counts_its_own_messages_whatever_the_order() {
        let recorder = DebuggingRecorder::new();
        let rejected = Error::new(ErrorKind::Expired, "expired");
        // Counted before the recorder is installed: lost, but the series is not.
        record_message("kafka", "orders", "rejected", None, Some(&rejected));
        metrics::with_local_recorder(&recorder, || {
            for destination in ["orders", "orders", "payments", "orders"] {
                record_message("kafka", destination, "rejected", None, Some(&rejected));
            }
            record_message("kafka", "orders", "retry", None, Some(&rejected));
            record_message("kafka", "orders", "rejected", None, Some(&rejected));
        });
        let count = |d: &str, o: &str, n: u64| (d.to_owned(), o.to_owned(), "Expired".to_owned(), n);
        assert_eq!(
            counts(&recorder),
            vec![
                count("orders", "rejected", 4),
                count("orders", "retry", 1),
                count("payments", "rejected", 1)
            ]
        );
    }
}
