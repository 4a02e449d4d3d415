//! When to try again. Like vector's `RetryLogic`: every failure is classified as worth retrying
//! (transport trouble, 5xx, an HTML fatal page) or final (bad key, the server's own error answer),
//! and retries wait with exponential backoff and full jitter so concurrent workers do not stampede.

use super::CrmError;
use rand::Rng;
use std::future::Future;
use std::time::{Duration, Instant};

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

impl RetryPolicy {
    /// The attempts of one operation under this policy.
    pub fn tries(&self) -> Tries<'_> {
        Tries {
            policy: self,
            attempt: 0,
            first_failure: None,
            since: Duration::ZERO,
        }
    }

    /// Runs `op` until it succeeds, fails in a way retrying cannot help
    /// ([`RetryClass::Stop`]), or the attempts or the time budget run out (then its last error).
    pub async fn run<T, F, Fut>(&self, mut op: F) -> Result<T, CrmError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CrmError>>,
    {
        let mut tries = self.tries();
        loop {
            tries.begin();
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.retry_class() == RetryClass::Retry => {
                    tries.failed(Instant::now());
                    if tries.exhausted() {
                        return Err(e);
                    }
                    tries.back_off().await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Attempt counting and timing for one operation: what every retry loop shares. A caller that
/// does more between attempts than [`RetryPolicy::run`] (the upload looks records up and splits
/// chunks) drives it itself: [`begin`](Tries::begin) each attempt, [`failed`](Tries::failed)
/// after one fails, then [`exhausted`](Tries::exhausted) or [`back_off`](Tries::back_off).
#[derive(Debug)]
pub struct Tries<'a> {
    policy: &'a RetryPolicy,
    attempt: u32,
    first_failure: Option<Instant>,
    since: Duration,
}

impl Tries<'_> {
    /// Starts the next attempt; its number, counting from 1.
    pub fn begin(&mut self) -> u32 {
        self.attempt += 1;
        self.attempt
    }

    /// Attempts started so far.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The current attempt failed; the budget runs from `at` on the first failure. How long
    /// ago the first failure was.
    pub fn failed(&mut self, at: Instant) -> Duration {
        self.since = self.first_failure.get_or_insert(at).elapsed();
        self.since
    }

    /// No attempt left, or the time budget is spent?
    pub fn exhausted(&self) -> bool {
        self.policy.exhausted(self.attempt, self.since)
    }

    /// Waits before the next attempt (never past the time budget).
    pub async fn back_off(&self) {
        tokio::time::sleep(self.policy.backoff_within(self.attempt, self.since)).await;
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

    fn transport() -> CrmError {
        CrmError::Transport {
            url: "http://crm".into(),
            message: "reset".into(),
        }
    }

    #[tokio::test]
    async fn run_retries_passing_faults_up_to_the_attempts_and_stops_at_a_final_answer() {
        let p = RetryPolicy::immediate(3);
        let mut calls = 0;
        let r: Result<(), _> = p
            .run(|| {
                calls += 1;
                async { Err(transport()) }
            })
            .await;
        assert!(matches!(r, Err(CrmError::Transport { .. })));
        assert_eq!(calls, 3);

        let mut calls = 0;
        let r = p
            .run(|| {
                calls += 1;
                let n = calls;
                async move {
                    if n < 3 {
                        Err(transport())
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(r.unwrap(), 3);

        let mut calls = 0;
        let r: Result<(), _> = p
            .run(|| {
                calls += 1;
                async {
                    Err(CrmError::Api {
                        url: "http://crm".into(),
                        code: "403".into(),
                        text: "нет доступа".into(),
                    })
                }
            })
            .await;
        assert!(matches!(r, Err(CrmError::Api { .. })));
        assert_eq!(calls, 1, "a final answer is not retried");
    }

    #[test]
    fn tries_count_attempts_against_the_budget() {
        let p = RetryPolicy::immediate(2);
        let mut t = p.tries();
        assert_eq!(t.begin(), 1);
        t.failed(Instant::now());
        assert!(!t.exhausted());
        assert_eq!(t.begin(), 2);
        t.failed(Instant::now());
        assert!(t.exhausted());
        let budget = RetryPolicy {
            max_elapsed: Duration::from_secs(30),
            ..RetryPolicy::immediate(100)
        };
        let mut t = budget.tries();
        t.begin();
        let long_ago = Instant::now() - Duration::from_secs(31);
        assert!(t.failed(long_ago) >= Duration::from_secs(31));
        assert!(t.exhausted(), "the first failure starts the time budget");
    }
}
