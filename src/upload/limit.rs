//! Adaptive concurrency on top of one tokio semaphore shared by every request of a run.
//!
//! A server's throughput against requests in flight rises, saturates and then sags (throughput.md,
//! second install: 224 / 424 / 557 / 513 rows/s at 1 / 2 / 4 / 8 in flight); where it peaks
//! depends on the server (a big one at 8–16, shared hosting at 1–2). So the limiter climbs: it
//! measures throughput at each limit over a window of answers (Little's law: limit × rows /
//! latency, so it needs no clock) and doubles the limit while that gains at least [`GAIN`], then
//! settles on the best limit seen. Settled, it probes now and then one step up (move if it gains)
//! and one step down (move if it costs almost nothing: fewer requests in flight for the same
//! rows/s is kinder to the server), so it follows a server that gets faster or slower. A failed
//! request (overload) halves the limit. `sandbox --emulate` and [`crate::sandbox::emulate::simulate`]
//! give servers of each shape to tune this against (benches/concurrency_curve.rs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub const AUTO_START: usize = 4;
pub const AUTO_MAX: usize = 16;
/// A higher limit must bring this much more throughput to be kept.
const GAIN: f64 = 0.05;
/// A lower limit is taken if it keeps this share of the throughput.
const KEEP: f64 = 0.97;
/// Settled windows between probes.
const PROBE_AFTER: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Doubling while it pays.
    Climb,
    Settled,
    /// Trying a neighbour of `base`, whose throughput was `base_x`.
    Probe {
        base: usize,
        base_x: f64,
    },
}

#[derive(Debug)]
struct Auto {
    limit: usize,
    min: usize,
    max: usize,
    mode: Mode,
    /// Answers still to ignore: sent under the previous limit.
    skip: usize,
    /// The current window at `limit`: answers, rows, seconds of latency.
    n: usize,
    rows: f64,
    secs: f64,
    /// Best (limit, rows/s) of the current climb.
    best: Option<(usize, f64)>,
    settled_windows: usize,
    probe_up_next: bool,
}

impl Auto {
    /// Answers to measure a limit by. Climbing, half a round is enough (the gains looked for
    /// are large, and every round at a low limit costs); settled, a full one.
    fn window(&self) -> usize {
        match self.mode {
            Mode::Climb => (self.limit / 2).max(2),
            _ => self.limit.max(3),
        }
    }
}

pub struct Limiter {
    sem: Arc<Semaphore>,
    /// Permits to swallow instead of returning (the limit was cut while they were out).
    debt: AtomicUsize,
    state: Option<Mutex<Auto>>,
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
            state: Some(Mutex::new(Auto {
                limit: start,
                min: min.max(1),
                max: max.max(1),
                mode: Mode::Climb,
                skip: 0,
                n: 0,
                rows: 0.0,
                secs: 0.0,
                best: None,
                settled_windows: 0,
                probe_up_next: true,
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
        if failed {
            let next = (s.limit / 2).max(s.min);
            s.mode = Mode::Settled;
            s.best = None;
            s.settled_windows = 0;
            self.set_limit(&mut s, next);
            return;
        }
        if s.skip > 0 {
            s.skip -= 1;
            return;
        }
        s.n += 1;
        s.rows += rows.max(1) as f64;
        s.secs += latency.as_secs_f64().max(1e-6);
        if s.n < s.window() {
            return;
        }
        // Little's law: `limit` requests always in flight.
        let x = s.limit as f64 * s.rows / s.secs;
        let l = s.limit;
        s.n = 0;
        s.rows = 0.0;
        s.secs = 0.0;
        let next = match s.mode {
            Mode::Climb => match s.best {
                Some((_, bx)) if x <= bx * (1.0 + GAIN) => self.settle(&mut s),
                before => {
                    s.best = Some((l, x));
                    // Throughput grew in step with the limit: far from the peak, take a bigger step.
                    let linear =
                        before.is_some_and(|(bl, bx)| x / bx >= 0.9 * l as f64 / bl as f64);
                    if l < s.max {
                        (l * if linear { 4 } else { 2 }).min(s.max)
                    } else {
                        self.settle(&mut s)
                    }
                }
            },
            Mode::Settled => {
                s.best = Some((l, x));
                s.settled_windows += 1;
                if s.settled_windows < PROBE_AFTER {
                    l
                } else {
                    s.settled_windows = 0;
                    let up = s.probe_up_next;
                    s.probe_up_next = !up;
                    let step = (l / 2).max(1);
                    let to = if up {
                        (l + step).min(s.max)
                    } else {
                        l.saturating_sub(step).max(s.min)
                    };
                    if to != l {
                        s.mode = Mode::Probe { base: l, base_x: x };
                    }
                    to
                }
            }
            Mode::Probe { base, base_x } => {
                if l > base && x > base_x * (1.0 + GAIN) {
                    // Faster than it was: climb on from here.
                    s.best = Some((l, x));
                    s.mode = Mode::Climb;
                    (l * 2).min(s.max)
                } else if l < base && x >= base_x * KEEP {
                    s.best = Some((l, x));
                    s.mode = Mode::Settled;
                    l
                } else {
                    s.mode = Mode::Settled;
                    base
                }
            }
        };
        if next != l {
            self.set_limit(&mut s, next);
        }
    }

    /// Stop climbing at the best limit seen.
    fn settle(&self, s: &mut Auto) -> usize {
        s.mode = Mode::Settled;
        s.settled_windows = 0;
        s.best.map_or(s.limit, |(l, _)| l)
    }

    fn set_limit(&self, s: &mut Auto, next: usize) {
        s.skip = s.limit;
        s.n = 0;
        s.rows = 0.0;
        s.secs = 0.0;
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
    use crate::sandbox::emulate::{simulate, EmulateConfig};

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
        let mut n = 0;
        while l.limit() < AUTO_MAX {
            l.observe(Duration::from_millis(5), 100, false);
            n += 1;
            assert!(n < 200, "still at {} after {n} answers", l.limit());
        }
        l.observe(Duration::from_millis(5), 100, true);
        assert_eq!(l.limit(), AUTO_MAX / 2);
    }

    /// Rows/s of a simulated import of `rows` on an emulated server, at a fixed limit or auto.
    fn import(server: &EmulateConfig, rows: usize, fixed: Option<usize>) -> f64 {
        let l = match fixed {
            Some(n) => return simulate(server, rows, 100, |_| n),
            None => Limiter::adaptive(AUTO_START, 1, AUTO_MAX),
        };
        simulate(server, rows, 100, |answer| {
            if let Some(a) = answer {
                l.observe(
                    Duration::from_secs_f64(a.latency_ms / 1000.0),
                    a.rows,
                    false,
                );
            }
            l.limit()
        })
    }

    /// The default (auto) reaches 0.9 of the best fixed concurrency on a server like the
    /// recorded one, a bigger one and a shared hosting one, in an import of about 10 s at the
    /// best fixed concurrency (finding the peak takes a few rounds of requests).
    #[test]
    fn auto_reaches_the_peak_of_each_emulated_server() {
        for (name, server, rows) in [
            ("real-2core", EmulateConfig::real_2core(), 6000),
            ("big", EmulateConfig::big(), 24000),
            ("shared-hosting", EmulateConfig::shared_hosting(), 2000),
        ] {
            let best = [1, 2, 4, 8, 16]
                .map(|n| import(&server, rows, Some(n)))
                .into_iter()
                .fold(0.0, f64::max);
            let auto = import(&server, rows, None);
            eprintln!("{name}: auto {auto:.0} rows/s, best fixed {best:.0}");
            assert!(
                auto >= 0.9 * best,
                "{name}: auto {auto:.0} rows/s, best fixed {best:.0}"
            );
        }
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
