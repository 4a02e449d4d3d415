//! Memory at size: the tool's own peak RSS stays under a ceiling that a plan held in memory
//! (≈ 2 KB a row) would break, so a regression to "everything in RAM" fails here, at a size the
//! debug test build runs in seconds.
//!
//! The peak is the child's own `VmHWM`, sampled from /proc while it runs. `wait4`'s `ru_maxrss`
//! would not do here: std spawns with vfork, so it counts the test process's memory at spawn time
//! (other tests running in the same process can push that past the ceiling).

use crate::common::{against, write_persons, PERSONS_TEMPLATE};
use smbatch::crm::Entity;
use smbatch::sandbox::{Sandbox, SandboxConfig};
use std::process::{Command, Stdio};
use std::time::Duration;

const ROWS: usize = 50_000;

/// `VmHWM` of a running process in MB (None once it has exited).
fn hwm_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Run `c` to its end; (exit code, its own peak RSS in MB, its stderr).
fn run_with_peak_rss(c: &mut Command) -> (i32, f64, String) {
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let mut peak = 0.0f64;
    let status = loop {
        if let Some(mb) = hwm_mb(child.id()) {
            peak = peak.max(mb);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code().unwrap_or(-1), peak, reader.join().unwrap())
}

#[test]
fn importing_fifty_thousand_rows_stays_under_eighty_megabytes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("persons.csv");
    write_persons(&input, ROWS);
    let template = dir.path().join("persons.toml");
    std::fs::write(&template, PERSONS_TEMPLATE).unwrap();
    let sb = Sandbox::start(SandboxConfig {
        db: dir.path().join("sandbox.sqlite").display().to_string(),
        ..SandboxConfig::default()
    })
    .unwrap();
    let report = dir.path().join("report.xlsx");
    let (code, peak, stderr) = run_with_peak_rss(&mut against(
        &sb,
        &[
            "import",
            input.to_str().unwrap(),
            "--template",
            template.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
            "--quiet",
        ],
    ));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(sb.count(Entity::Person), ROWS as u64);
    eprintln!("import of {ROWS} rows: peak RSS {peak:.1} MB");
    assert!(
        peak < CEILING_MB,
        "import of {ROWS} rows peaked at {peak:.1} MB (ceiling {CEILING_MB} MB)"
    );
    sb.stop();
}

/// Measured in the debug build at 50,000 rows: 52 MB now, 133 MB with the plan held in memory.
const CEILING_MB: f64 = 80.0;
