//! Memory at size: the tool's own peak RSS stays under a ceiling that a plan held in memory
//! (≈ 2 KB a row) would break, so a regression to "everything in RAM" fails here, at a size the
//! debug test build runs in seconds.
//!
//! The peak is the child's own `VmHWM`, sampled from /proc while it runs. `wait4`'s `ru_maxrss`
//! would not do here: std spawns with vfork, so it counts the test process's memory at spawn time
//! (other tests running in the same process can push that past the ceiling).

use crate::common::{against, run_with_peak_rss, write_persons, PERSONS_TEMPLATE};
use smbatch::crm::Entity;
use smbatch::sandbox::{Sandbox, SandboxConfig};

const ROWS: usize = 50_000;

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

/// Reconcile keeps both sides in scratch stores on disk and only one entity's CRM ids and probe
/// hashes in memory: 100,000 persons a side stay under a ceiling that both sides held in memory
/// (≈ 1 KB a record a side) would break.
#[test]
fn reconciling_a_hundred_thousand_rows_a_side_stays_under_seventy_megabytes() {
    const ROWS: usize = 100_000;
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
    let (input, template) = (input.to_str().unwrap(), template.to_str().unwrap());
    let report = dir.path().join("import.xlsx");
    let report = report.to_str().unwrap();
    let (code, _, stderr) = run_with_peak_rss(&mut against(
        &sb,
        &[
            "import",
            input,
            "--template",
            template,
            "--report",
            report,
            "--quiet",
        ],
    ));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(sb.count(Entity::Person), ROWS as u64);
    let out = dir.path().join("reconcile.xlsx");
    let (code, peak, stderr) = run_with_peak_rss(&mut against(
        &sb,
        &[
            "reconcile",
            input,
            "--template",
            template,
            "-o",
            out.to_str().unwrap(),
            "--quiet",
        ],
    ));
    // Everything is there and the same: exit 0.
    assert_eq!(code, 0, "{stderr}");
    eprintln!("reconcile of {ROWS} rows a side: peak RSS {peak:.1} MB");
    assert!(
        peak < RECONCILE_CEILING_MB,
        "reconcile of {ROWS} rows a side peaked at {peak:.1} MB (ceiling {RECONCILE_CEILING_MB} MB)"
    );
    sb.stop();
}

/// Measured in the debug build at 100,000 rows a side: 52 MB with the scratch stores. Both sides
/// in memory cost ≈ 1 KB a record a side (the release bench: 205 MB at 200,000 a side), ≈ 105 MB
/// here.
const RECONCILE_CEILING_MB: f64 = 70.0;

/// `validate` streams: per row it keeps only a 16-byte slot per distinct key (to find keys whose
/// rows disagree), never the rows. 300,000 rows stay under a ceiling that keeping each row's
/// mapping (≈ 1 KB) would break several times over.
#[test]
fn validating_three_hundred_thousand_rows_stays_under_forty_five_megabytes() {
    const ROWS: usize = 300_000;
    const CEILING_MB: f64 = 45.0; // measured in the debug build: 26 MB
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("persons.csv");
    write_persons(&input, ROWS);
    let template = dir.path().join("persons.toml");
    std::fs::write(&template, PERSONS_TEMPLATE).unwrap();
    let (code, peak, stderr) = run_with_peak_rss(&mut crate::common::offline(
        dir.path(),
        &[
            "validate",
            input.to_str().unwrap(),
            "--template",
            template.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(code, 0, "{stderr}");
    eprintln!("validate of {ROWS} rows: peak RSS {peak:.1} MB");
    assert!(
        peak < CEILING_MB,
        "validate of {ROWS} rows peaked at {peak:.1} MB (ceiling {CEILING_MB} MB)"
    );
}
