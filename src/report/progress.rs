//! Progress for long operations: an indicatif bar on a terminal; when stderr is not a terminal
//! (CI, cron, a pipe), a plain line every few seconds instead, so logs stay readable.

use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const LINE_EVERY: Duration = Duration::from_secs(10);

/// A rate as the user reads it: whole rows a second, thousands grouped ("8,970 rows/s"; the
/// bar's own `{per_sec}` shows "8,970.3439/s").
pub fn rate(per_sec: f64) -> String {
    // `as` saturates: NaN and negatives (no time passed yet) read as 0.
    format!("{} rows/s", HumanCount(per_sec.round() as u64))
}

pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: Option<u64>,
    plain: Option<Mutex<PlainLog>>,
}

struct PlainLog {
    done: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// A progress display for `label` (e.g. "person"); `total` when known. `quiet` shows nothing.
    pub fn new(label: &str, total: Option<u64>, quiet: bool) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let bar = (terminal && !quiet).then(|| {
            let bar = match total {
                Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let template = if total.is_some() {
                "{prefix:>9} [{bar:30}] {pos}/{len} rows  {rate}  ETA {eta}  {msg}"
            } else {
                "{prefix:>9} {spinner} {pos} rows  {rate}  {msg}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                let style =
                    style.with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&rate(s.per_sec()));
                    });
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let plain = (!terminal && !quiet).then(|| {
            Mutex::new(PlainLog {
                done: 0,
                started: Instant::now(),
                last_line: Instant::now(),
            })
        });
        Progress {
            bar,
            label: label.to_string(),
            total,
            plain,
        }
    }

    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
        if let Some(plain) = &self.plain {
            let mut p = plain.lock().unwrap_or_else(|e| e.into_inner());
            p.done += n;
            if p.last_line.elapsed() >= LINE_EVERY {
                p.last_line = Instant::now();
                eprintln!("{}", self.line(&p));
            }
        }
    }

    /// A line for the user (a problem found, say), printed above the bar when there is one.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn set_message(&self, msg: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg);
        }
    }

    fn line(&self, p: &PlainLog) -> String {
        let secs = p.started.elapsed().as_secs_f64().max(0.001);
        let rate = rate(p.done as f64 / secs);
        match self.total {
            Some(t) => format!("{}: {}/{} rows ({rate})", self.label, p.done, t),
            None => format!("{}: {} rows ({rate})", self.label, p.done),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_whole_rows_a_second() {
        assert_eq!(rate(8970.3439), "8,970 rows/s");
        assert_eq!(rate(0.6), "1 rows/s");
        assert_eq!(rate(12.49), "12 rows/s");
        assert_eq!(rate(f64::NAN), "0 rows/s");
    }
}
