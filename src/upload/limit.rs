//! Adaptive concurrency on top of one tokio semaphore shared by every request of a run.
//!
//! The real server saturates its two cores at 2 concurrent requests; beyond that each request
//! just takes longer (throughput.md: 133 → 255 → 577 ms for 100-row chunks at 2/4/8). So the
//! signal is latency per row against the best ("no load") latency seen: the limit follows
//! `limit × best/current + 1` (a gradient rule: when requests only queue, latency grows in step
//! with the limit and the target stays put), and is halved on a failed request. Against a fast
//! server (the sandbox) latency does not climb and the limit rises to the maximum.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub const AUTO_START: usize = 2;
pub const AUTO_MAX: usize = 8;
/// Requests allowed beyond what the latency gradient says the server is working on.
const QUEUE: f64 = 1.0;

#[derive(Debug)]
struct Aimd {
    limit: usize,
    /// The limit before rounding, smoothed.
    target: f64,
    min: usize,
    max: usize,
    /// Smoothed seconds per row.
    ewma: Option<f64>,
    /// Best smoothed latency seen: the server without queueing.
    best: f64,
    since_change: usize,
}

pub struct Limiter {
    sem: Arc<Semaphore>,
    /// Permits to swallow instead of returning (the limit was cut while they were out).
    debt: AtomicUsize,
    state: Option<Mutex<Aimd>>,
}

/// Permission to have one request in flight.
pub struct Permit {
    permit: Option<OwnedSemaphorePermit>,
    limiter: Arc<Limiter>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(p) = self.permit.take() {
            let debt = &self.limiter.debt;
            if debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
                .is_ok()
            {
                p.forget();
            }
        }
    }
}

impl Limiter {
    /// A fixed limit of `n` concurrent requests.
    pub fn fixed(n: usize) -> Arc<Limiter> {
        Arc::new(Limiter {
            sem: Arc::new(Semaphore::new(n.max(1))),
            debt: AtomicUsize::new(0),
            state: None,
        })
    }

    /// Adaptive between `min` and `max`, starting at `start`.
    pub fn adaptive(start: usize, min: usize, max: usize) -> Arc<Limiter> {
        let start = start.clamp(min.max(1), max.max(1));
        Arc::new(Limiter {
            sem: Arc::new(Semaphore::new(start)),
            debt: AtomicUsize::new(0),
            state: Some(Mutex::new(Aimd {
                limit: start,
                min: min.max(1),
                max: max.max(1),
                target: start as f64,
                ewma: None,
                best: f64::INFINITY,
                since_change: 0,
            })),
        })
    }

    pub async fn acquire(self: &Arc<Self>) -> Permit {
        let permit = self
            .sem
            .clone()
            .acquire_owned()
            .await
            .expect("the limiter's semaphore is never closed");
        Permit {
            permit: Some(permit),
            limiter: self.clone(),
        }
    }

    /// The current limit (fixed or adaptive).
    pub fn limit(&self) -> usize {
        match &self.state {
            Some(s) => s.lock().unwrap_or_else(|e| e.into_inner()).limit,
            None => self.sem.available_permits(),
        }
    }

    /// Feed one finished request: its latency, the rows it carried, and whether it failed in a
    /// way that suggests an overloaded server (transport error, 5xx, timeout, HTML fatal).
    pub fn observe(&self, latency: Duration, rows: usize, failed: bool) {
        let Some(state) = &self.state else { return };
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.since_change += 1;
        if failed {
            let next = (s.limit / 2).max(s.min);
            s.target = next as f64;
            self.set_limit(&mut s, next);
            return;
        }
        let per_row = latency.as_secs_f64().max(1e-6) / rows.max(1) as f64;
        let ewma = match s.ewma {
            Some(e) => e * 0.8 + per_row * 0.2,
            None => per_row,
        };
        s.ewma = Some(ewma);
        // At the lowest limit nothing queues: if even that is slow, the server itself got slower
        // and the old best would hold the limit down for ever.
        if ewma < s.best || (s.limit == s.min && ewma > s.best * 2.0) {
            s.best = ewma;
        }
        // Act at most once per "round" of requests at the current limit, so one change is seen
        // in the latency before the next.
        if s.since_change < s.limit {
            return;
        }
        let gradient = (s.best / ewma).clamp(0.5, 1.0);
        let want = s.limit as f64 * gradient + QUEUE;
        s.target = (s.target * 0.7 + want * 0.3).clamp(s.min as f64, s.max as f64);
        let next = (s.target.round() as usize).clamp(s.min, s.max);
        if next != s.limit {
            self.set_limit(&mut s, next);
        } else {
            s.since_change = 0;
        }
    }

    fn set_limit(&self, s: &mut Aimd, next: usize) {
        s.since_change = 0;
        if next > s.limit {
            self.sem.add_permits(next - s.limit);
        } else {
            for _ in next..s.limit {
                match self.sem.try_acquire() {
                    Ok(p) => p.forget(),
                    Err(_) => {
                        self.debt.fetch_add(1, Ordering::AcqRel);
                    }
                }
            }
        }
        s.limit = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server like the real one: two cores, so up to 2 requests run at full speed and more
    /// only queue (latency grows linearly with concurrency beyond 2).
    fn latency_at(c: usize) -> Duration {
        let base = 130.0;
        Duration::from_millis((base * (c as f64 / 2.0).max(1.0)) as u64)
    }

    #[test]
    fn settles_where_a_two_core_server_peaks() {
        let l = Limiter::adaptive(AUTO_START, 1, AUTO_MAX);
        let mut history = Vec::new();
        for _ in 0..2000 {
            let c = l.limit();
            l.observe(latency_at(c), 100, false);
            history.push(l.limit());
        }
        let tail = &history[1000..];
        let avg = tail.iter().sum::<usize>() as f64 / tail.len() as f64;
        assert!((2.0..=4.5).contains(&avg), "average limit {avg}");
        assert!(tail.iter().all(|&c| (1..=5).contains(&c)), "{tail:?}");
    }

    #[test]
    fn climbs_to_the_maximum_on_a_fast_server_and_halves_on_errors() {
        let l = Limiter::adaptive(AUTO_START, 1, AUTO_MAX);
        for _ in 0..500 {
            l.observe(Duration::from_millis(5), 100, false);
        }
        assert_eq!(l.limit(), AUTO_MAX);
        l.observe(Duration::from_millis(5), 100, true);
        assert_eq!(l.limit(), AUTO_MAX / 2);
    }

    #[tokio::test]
    async fn cutting_the_limit_while_permits_are_out_takes_effect_on_return() {
        let l = Limiter::adaptive(4, 1, 8);
        let held: Vec<_> = futures_lite(&l, 4).await;
        l.observe(Duration::from_millis(1), 1, true); // 4 → 2 while all 4 are out
        drop(held);
        assert_eq!(l.sem.available_permits(), 2);
    }

    async fn futures_lite(l: &Arc<Limiter>, n: usize) -> Vec<Permit> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(l.acquire().await);
        }
        v
    }
}
