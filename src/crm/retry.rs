//! When to try again. Like vector's `RetryLogic`: every failure is classified as worth retrying
//! (transport trouble, 5xx, an HTML fatal page) or final (bad key, the server's own error answer),
//! and retries wait with exponential backoff and full jitter so concurrent workers do not stampede.

use rand::Rng;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Stop retrying once this long has passed since the first failure, whatever the attempts
    /// left: a server that is down is said so within a bounded time.
    pub max_elapsed: Duration,
}

/// How long a run keeps retrying a server that does not answer, unless told otherwise.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(30);

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_elapsed: DEFAULT_RETRY_FOR,
        }
    }
}

impl RetryPolicy {
    /// No waiting between attempts: for tests against a local sandbox.
    pub fn immediate(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            max_elapsed: DEFAULT_RETRY_FOR,
        }
    }

    /// After `attempt` failed attempts, the first failure `since` ago: try no more?
    pub fn exhausted(&self, attempt: u32, since: Duration) -> bool {
        attempt >= self.max_attempts || since >= self.max_elapsed
    }

    /// The delay before the next attempt, cut so it does not run past `max_elapsed`.
    pub fn backoff_within(&self, attempt: u32, since: Duration) -> Duration {
        self.backoff(attempt)
            .min(self.max_elapsed.saturating_sub(since))
    }

    /// Delay before attempt `attempt + 1` (attempt counts from 1): uniform in
    /// `0..=min(max, base * 2^(attempt-1))` ("full jitter").
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let cap = exp.min(self.max_delay);
        if cap.is_zero() {
            return cap;
        }
        let ms = rand::rng().random_range(0..=cap.as_millis() as u64);
        Duration::from_millis(ms)
    }
}

/// What to do after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// A passing fault: the same request may succeed later.
    Retry,
    /// Retrying cannot help (bad key, the server rejected the request itself).
    Stop,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_but_never_exceeds_the_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1500),
            max_elapsed: Duration::from_secs(30),
        };
        for attempt in 1..10 {
            let cap = (100u64 << (attempt - 1)).min(1500);
            for _ in 0..50 {
                assert!(p.backoff(attempt).as_millis() as u64 <= cap);
            }
        }
        assert_eq!(RetryPolicy::immediate(3).backoff(5), Duration::ZERO);
    }

    #[test]
    fn retrying_stops_at_the_attempts_or_the_time_budget_whichever_comes_first() {
        let p = RetryPolicy {
            max_attempts: 100,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(30),
        };
        assert!(!p.exhausted(3, Duration::from_secs(29)));
        assert!(p.exhausted(3, Duration::from_secs(30)));
        assert!(p.exhausted(100, Duration::ZERO));
        // The last wait never runs past the budget.
        for _ in 0..50 {
            assert!(p.backoff_within(20, Duration::from_secs(29)) <= Duration::from_secs(1));
        }
    }
}
