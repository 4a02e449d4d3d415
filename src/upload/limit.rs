//! Adaptive concurrency on top of one tokio semaphore shared by every request of a run.
//!
//! A server's throughput against requests in flight rises, saturates and then sags (throughput.md,
//! second install: 224 / 424 / 557 / 513 rows/s at 1 / 2 / 4 / 8 in flight); where it peaks
//! depends on the server (a big one at 8–16, shared hosting at 1–2). So the limiter climbs: it
//! measures the rows answered per second at each limit over a window of whole rounds of answers
//! and doubles the limit while that gains at least [`GAIN`], then settles on the best limit seen.
//! The rate is taken on the clock, not from latencies (Little's law), because what the client
//! does between answers (journaling, building the next chunk) is part of a run's speed too, and
//! more requests in flight hide it: on the emulated big server latencies said 8 was the peak
//! while the import ran faster at 10–16. Settled, it probes now and then up by half the limit (the
//! curve is flat past its peak, so overshooting costs little) and down by a quarter (below the
//! peak throughput falls in step with the limit, so a small step is the cheaper test) and moves
//! if up gains or down costs almost nothing (fewer requests in flight for the same rows/s is
//! kinder to the server); so it follows a server that gets faster or slower. A failed request
//! (overload) halves the limit. `sandbox --emulate` and [`crate::sandbox::emulate::simulate`]
//! give servers of each shape to tune this against (benches/concurrency_curve.rs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
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
    /// The current window at `limit`: answers and rows since `since` (seconds on the
    /// limiter's clock).
    n: usize,
    rows: f64,
    since: f64,
    /// Best (limit, rows/s) of the current climb.
    best: Option<(usize, f64)>,
    settled_windows: usize,
    probe_up_next: bool,
}

impl Auto {
    /// Answers to measure a limit by: whole rounds of `limit` answers (requests sent together
    /// come back together, so a part of a round would measure a burst), at least 4 answers.
    fn window(&self) -> usize {
        self.limit * 4usize.div_ceil(self.limit)
    }
}

pub struct Limiter {
    sem: Arc<Semaphore>,
    /// Permits to swallow instead of returning (the limit was cut while they were out).
    debt: AtomicUsize,
    /// The adaptive limit's clock starts when the first permit is taken (not when the run
    /// starts reading its input).
    epoch: OnceLock<Instant>,
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
            epoch: OnceLock::new(),
            state: None,
        })
    }

    /// Adaptive between `min` and `max`, starting at `start`.
    pub fn adaptive(start: usize, min: usize, max: usize) -> Arc<Limiter> {
        let start = start.clamp(min.max(1), max.max(1));
        Arc::new(Limiter {
            sem: Arc::new(Semaphore::new(start)),
            debt: AtomicUsize::new(0),
            epoch: OnceLock::new(),
            state: Some(Mutex::new(Auto {
                limit: start,
                min: min.max(1),
                max: max.max(1),
                mode: Mode::Climb,
                skip: 0,
                n: 0,
                rows: 0.0,
                since: 0.0,
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
        self.epoch.get_or_init(Instant::now);
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

    /// Feed one finished request: the rows it carried, and whether it failed in a way that
    /// suggests an overloaded server (transport error, 5xx, timeout, HTML fatal).
    pub fn observe(&self, rows: usize, failed: bool) {
        if self.state.is_some() {
            let at = self.epoch.get_or_init(Instant::now).elapsed();
            self.observe_at(at, rows, failed);
        }
    }

    /// [`Limiter::observe`] on a given clock: `at` is the time since the first permit was
    /// taken (a simulated clock in tests).
    pub(crate) fn observe_at(&self, at: Duration, rows: usize, failed: bool) {
        let Some(state) = &self.state else { return };
        let at = at.as_secs_f64();
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        if failed {
            let next = (s.limit / 2).max(s.min);
            s.mode = Mode::Settled;
            s.best = None;
            s.settled_windows = 0;
            self.set_limit(&mut s, next, at);
            return;
        }
        if s.skip > 0 {
            s.skip -= 1;
            s.since = at;
            return;
        }
        s.n += 1;
        s.rows += rows.max(1) as f64;
        if s.n < s.window() {
            return;
        }
        // Rows answered per second of the clock: this counts whatever the client spends
        // between answers (journaling, building the next request) as well as the server's
        // time, so a limit that hides the client's own work behind more requests in flight
        // shows its gain.
        let x = s.rows / (at - s.since).max(1e-6);
        let l = s.limit;
        s.n = 0;
        s.rows = 0.0;
        s.since = at;
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
                    // Up by half, down by a quarter: see the module's comment.
                    let to = if up {
                        (l + (l / 2).max(1)).min(s.max)
                    } else {
                        l.saturating_sub((l / 4).max(1)).max(s.min)
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
            self.set_limit(&mut s, next, at);
        }
    }

    /// Stop climbing at the best limit seen. The last doubling did not pay, but the peak may
    /// lie between the two limits (a window is noisy too), so the first probe, after one
    /// settled window, is half a step up.
    fn settle(&self, s: &mut Auto) -> usize {
        s.mode = Mode::Settled;
        s.settled_windows = PROBE_AFTER - 1;
        s.probe_up_next = true;
        s.best.map_or(s.limit, |(l, _)| l)
    }

    fn set_limit(&self, s: &mut Auto, next: usize, at: f64) {
        s.skip = s.limit;
        s.n = 0;
        s.rows = 0.0;
        s.since = at;
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

    /// Rows/s of a simulated import of `rows` on an emulated server, at a fixed limit or auto,
    /// and the limit after each answer.
    fn import(server: &EmulateConfig, rows: usize, fixed: Option<usize>) -> (f64, Vec<usize>) {
        let l = match fixed {
            Some(n) => return (simulate(server, rows, 100, |_| n), Vec::new()),
            None => Limiter::adaptive(AUTO_START, 1, AUTO_MAX),
        };
        let mut limits = Vec::new();
        let x = simulate(server, rows, 100, |answer| {
            if let Some(a) = answer {
                l.observe_at(Duration::from_secs_f64(a.at_ms / 1000.0), a.rows, false);
                limits.push(l.limit());
            }
            l.limit()
        });
        (x, limits)
    }

    /// The default (auto) reaches 0.95 of the best fixed concurrency (1 / 2 / 4 / 8 / 16, as
    /// the bench) on a server like the recorded one, a bigger one and a shared hosting one, in
    /// an import of about 10 s at the best fixed concurrency (the bench's default ROWS).
    #[test]
    fn auto_reaches_095_of_the_best_fixed_limit_on_each_emulated_server() {
        for (name, server, rows) in [
            ("real-2core", EmulateConfig::real_2core(), 6000),
            ("big", EmulateConfig::big(), 24000),
            ("shared-hosting", EmulateConfig::shared_hosting(), 2000),
        ] {
            let best = [1, 2, 4, 8, 16]
                .map(|n| import(&server, rows, Some(n)).0)
                .into_iter()
                .fold(0.0, f64::max);
            let (auto, limits) = import(&server, rows, None);
            eprintln!("{name}: auto {auto:.0} rows/s, best fixed {best:.0}");
            assert!(
                auto >= 0.95 * best,
                "{name}: auto {auto:.0} rows/s, best fixed {best:.0}, limits {limits:?}"
            );
        }
    }

    /// On a long import the limit stays near each server's peak (real-2core: 4–5 in flight;
    /// shared hosting: 1–2, where more only queue at its two workers and wait longer), probing
    /// a neighbour now and then.
    #[test]
    fn stays_near_the_peak_on_the_recorded_server_and_low_on_shared_hosting() {
        for (name, server, around) in [
            ("real-2core", EmulateConfig::real_2core(), 3..=6),
            ("shared-hosting", EmulateConfig::shared_hosting(), 1..=4),
        ] {
            let (_, limits) = import(&server, 60_000, None);
            let tail = &limits[limits.len() / 4..];
            assert!(
                tail.iter().all(|c| around.contains(c)),
                "{name}: limits after the climb {tail:?}"
            );
        }
    }

    #[test]
    fn climbs_to_the_maximum_on_a_fast_server_and_halves_on_errors() {
        let ample: EmulateConfig = "workers=64,cores=64,contention=0".parse().unwrap();
        let (_, limits) = import(&ample, 10_000, None);
        let first = limits.iter().position(|&c| c == AUTO_MAX);
        assert!(
            first.is_some_and(|i| i < 30),
            "limits on a server with room for all: {limits:?}"
        );
        let l = Limiter::adaptive(AUTO_MAX, 1, AUTO_MAX);
        l.observe(100, true);
        assert_eq!(l.limit(), AUTO_MAX / 2);
    }

    #[tokio::test]
    async fn cutting_the_limit_while_permits_are_out_takes_effect_on_return() {
        let l = Limiter::adaptive(4, 1, 8);
        let held: Vec<_> = futures_lite(&l, 4).await;
        l.observe(1, true); // 4 → 2 while all 4 are out
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
