//! Rates, alternating runs and their medians, and how a measurement is printed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Side;
use crate::tokens::Scenario;

/// Every message's payload: 1 KiB.
pub(crate) fn payload() -> Vec<u8> {
    vec![b'x'; 1024]
}

/// Message `number`'s payload where each must be told apart (`--instances`): 1 KiB like
/// [`payload`], starting with the number (8 bytes, big-endian).
pub(crate) fn numbered_payload(number: usize) -> Vec<u8> {
    let mut body = payload();
    body[..8].copy_from_slice(&(number as u64).to_be_bytes());
    body
}

/// The number a [`numbered_payload`] starts with.
pub(crate) fn payload_number(body: &[u8]) -> Option<usize> {
    let bytes: [u8; 8] = body.get(..8)?.try_into().ok()?;
    usize::try_from(u64::from_be_bytes(bytes)).ok()
}

/// Messages per second: `messages` in `elapsed`.
pub(crate) fn rate(messages: usize, elapsed: Duration) -> f64 {
    messages as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// The median of `values` (their mean for an even count).
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[mid],
        _ => (values[mid - 1] + values[mid]) / 2.0,
    }
}

/// The `q` quantile (0..=1) of sorted `values`.
pub(crate) fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// When the first and the latest of a consumer's messages were settled: the consume rate is
/// taken between them, so joining a group or opening a channel is not counted.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    inner: Mutex<(Option<Instant>, Option<Instant>, usize)>,
}

impl Progress {
    /// One more message settled; the count so far.
    pub(crate) fn tick(&self) -> usize {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        inner.0.get_or_insert(now);
        inner.1 = Some(now);
        inner.2 += 1;
        inner.2
    }

    /// The first and the latest, and the count; `None` before the first.
    pub(crate) fn span(&self) -> Option<(Instant, Instant, usize)> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Some((inner.0?, inner.1?, inner.2))
    }

    /// Messages per second between the first and the latest.
    pub(crate) fn rate(&self) -> f64 {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match (inner.0, inner.1) {
            (Some(first), Some(last)) if inner.2 > 1 => rate(inner.2 - 1, last - first),
            _ => 0.0,
        }
    }
}

/// One comparison of raw and wrapped rates.
#[derive(Debug, Clone)]
pub(crate) struct Comparison {
    pub(crate) broker: String,
    pub(crate) scenario: String,
    pub(crate) operation: &'static str,
    pub(crate) messages: usize,
    pub(crate) raw: Vec<f64>,
    pub(crate) wrapped: Vec<f64>,
    /// Consume: the raw client with the token checked by hand. RabbitMQ publish: the raw
    /// client publishing `mandatory`, as jwt-relay's publisher does by default.
    pub(crate) by_hand: Vec<f64>,
    /// For distinct tokens: the pure verification rate of the same tokens, in the same run.
    pub(crate) verify: Option<f64>,
}

impl Comparison {
    pub(crate) fn new(broker: &str, scenario: Scenario, operation: &'static str, messages: usize) -> Self {
        Comparison {
            broker: broker.to_owned(),
            scenario: scenario.label(),
            operation,
            messages,
            raw: Vec::new(),
            wrapped: Vec::new(),
            by_hand: Vec::new(),
            verify: None,
        }
    }

    /// One run's rate.
    pub(crate) fn push(&mut self, side: Side, rate: f64) {
        match side {
            Side::Raw => self.raw.push(rate),
            Side::ByHand => self.by_hand.push(rate),
            Side::JwtRelay => self.wrapped.push(rate),
        }
    }

    /// jwt-relay over the raw client doing by hand what it does ([`Comparison::by_hand`]).
    pub(crate) fn ratio_to_by_hand(&self) -> Option<f64> {
        Some(self.wrapped_median() / self.by_hand_median()?.max(1e-9))
    }

    /// The median of the runs by hand (none where there are none).
    pub(crate) fn by_hand_median(&self) -> Option<f64> {
        (!self.by_hand.is_empty()).then(|| median(&mut self.by_hand.clone()))
    }

    pub(crate) fn raw_median(&self) -> f64 {
        median(&mut self.raw.clone())
    }

    pub(crate) fn wrapped_median(&self) -> f64 {
        median(&mut self.wrapped.clone())
    }

    /// Wrapped over raw, medians of the alternating runs.
    pub(crate) fn ratio(&self) -> f64 {
        self.wrapped_median() / self.raw_median().max(1e-9)
    }

    /// For distinct tokens: wrapped over the lower of the raw rate (what the broker delivers)
    /// and the pure verification rate (what one core verifies), whichever limits the run.
    pub(crate) fn ratio_to_limit(&self) -> Option<f64> {
        let limit = self.verify?.min(self.raw_median());
        Some(self.wrapped_median() / limit.max(1e-9))
    }

    pub(crate) fn json(&self) -> Value {
        let mut line = json!({
            "measurement": "throughput",
            "broker": self.broker,
            "scenario": self.scenario,
            "operation": self.operation,
            "messages": self.messages,
            "runs": self.raw.len(),
            "raw_per_s": self.raw_median().round(),
            "wrapped_per_s": self.wrapped_median().round(),
            "ratio": (self.ratio() * 1000.0).round() / 1000.0,
        });
        if let (Some(by_hand), Some(ratio)) = (self.by_hand_median(), self.ratio_to_by_hand()) {
            line["by_hand_per_s"] = json!(by_hand.round());
            line["ratio_to_by_hand"] = json!((ratio * 1000.0).round() / 1000.0);
        }
        if let Some(verify) = self.verify {
            line["verify_per_s"] = json!(verify.round());
            line["ratio_to_verify"] = json!((self.wrapped_median() / verify * 1000.0).round() / 1000.0);
        }
        if let Some(ratio) = self.ratio_to_limit() {
            line["ratio_to_limit"] = json!((ratio * 1000.0).round() / 1000.0);
        }
        line
    }

    pub(crate) fn markdown(&self) -> String {
        let against_verify = self
            .verify
            .map(|v| format!("{:.0}/s verify; {:.2}", v, self.wrapped_median() / v.max(1e-9)))
            .unwrap_or_default();
        let against_limit = self
            .ratio_to_limit()
            .map(|ratio| format!("{ratio:.2}"))
            .unwrap_or_default();
        let by_hand = self
            .by_hand_median()
            .map(|rate| format!("{rate:.0}"))
            .unwrap_or_default();
        let against_by_hand = self
            .ratio_to_by_hand()
            .map(|ratio| format!("{ratio:.3}"))
            .unwrap_or_default();
        format!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.3} | {} | {} | {} | {} |",
            self.broker,
            self.scenario,
            self.operation,
            self.raw_median(),
            self.wrapped_median(),
            self.ratio(),
            by_hand,
            against_by_hand,
            against_verify,
            against_limit
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::Scenario;

    #[test]
    fn a_numbered_payload_is_a_payload_that_says_its_number() {
        for number in [0, 1, 255, 19_999, usize::from(u16::MAX) + 1] {
            let body = numbered_payload(number);
            assert_eq!(body.len(), payload().len());
            assert_eq!(payload_number(&body), Some(number));
        }
        assert_eq!(payload_number(b"short"), None);
    }

    #[test]
    fn each_reader_has_its_own_median_and_jwt_relay_is_compared_with_the_check_by_hand() {
        let mut comparison = Comparison::new("kafka", Scenario::Shared, "consume", 10);
        for (raw, by_hand, wrapped) in [(100.0, 50.0, 40.0), (300.0, 70.0, 60.0), (200.0, 60.0, 30.0)] {
            comparison.push(Side::Raw, raw);
            comparison.push(Side::ByHand, by_hand);
            comparison.push(Side::JwtRelay, wrapped);
        }
        assert_eq!(comparison.raw_median(), 200.0);
        assert_eq!(comparison.wrapped_median(), 40.0);
        assert_eq!(comparison.ratio_to_by_hand(), Some(40.0 / 60.0));
        let line = comparison.json();
        assert_eq!(line["by_hand_per_s"], 60.0);
        assert!(comparison.markdown().contains("| 60 | 0.667 |"));

        let publish = Comparison::new("kafka", Scenario::Shared, "publish", 10);
        assert_eq!(
            publish.ratio_to_by_hand(),
            None,
            "publishing has no check by hand"
        );
    }
}
