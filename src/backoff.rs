//! Jittered exponential backoff, shared by retries of every kind.

use std::hash::BuildHasher;
use std::time::Duration;

/// Exponential backoff with full jitter: attempt `n` waits a random time
/// between half and all of `min(max, base * 2^n)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

impl Default for Backoff {
    /// 1 s doubling to 1 min.
    fn default() -> Self {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

impl Backoff {
    /// Starts at `base` and never exceeds `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
        }
    }

    /// The delay before retry number `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.base.saturating_mul(1u32 << attempt.min(20)).min(self.max);
        // Full jitter in [ceiling/2, ceiling], from the std's per-process random keys.
        let random = std::collections::hash_map::RandomState::new().hash_one(attempt);
        let half = ceiling / 2;
        half + half.mul_f64((random % 1_000) as f64 / 1_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_stays_bounded() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for attempt in 0..40 {
            let d = b.delay(attempt);
            let ceiling = Duration::from_millis(100 * (1u64 << attempt.min(20))).min(Duration::from_secs(1));
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
        }
    }
}
