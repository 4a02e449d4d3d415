//! Memory at size: the tool's own peak RSS (wait4 of the one child) stays under a ceiling that
//! a plan held in memory (≈ 2 KB a row) would break, so a regression to "everything in RAM"
//! fails here, at a size the debug test build runs in seconds.

use crate::common::{against, peak_mb, wait_with_usage, write_persons, PERSONS_TEMPLATE};
use smbatch::crm::Entity;
use smbatch::sandbox::{Sandbox, SandboxConfig};
use std::process::{Command, Stdio};

const ROWS: usize = 50_000;

/// Run `c` to its end; (exit code, its own peak RSS in MB, its stderr).
fn run_with_peak_rss(c: &mut Command) -> (i32, f64, String) {
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    let mut err = child.stderr.take().unwrap();
    std::io::Read::read_to_string(&mut err, &mut stderr).unwrap();
    let (code, usage) = wait_with_usage(child);
    (code, peak_mb(&usage), stderr)
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
