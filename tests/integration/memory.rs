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

/// A persons file of `rows` rows and its template, in a scratch directory.
struct Persons {
    dir: tempfile::TempDir,
    input: String,
    template: String,
}

fn persons(rows: usize) -> Persons {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("persons.csv");
    write_persons(&input, rows);
    let template = dir.path().join("persons.toml");
    std::fs::write(&template, PERSONS_TEMPLATE).unwrap();
    Persons {
        input: input.display().to_string(),
        template: template.display().to_string(),
        dir,
    }
}

impl Persons {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn sandbox(&self) -> Sandbox {
        Sandbox::start(SandboxConfig {
            db: self.path("sandbox.sqlite"),
            ..SandboxConfig::default()
        })
        .unwrap()
    }

    /// `smbatch import` of the file into `sb`: (exit code, peak RSS in MB, stderr).
    fn import(&self, sb: &Sandbox) -> (i32, f64, String) {
        let report = self.path("import.xlsx");
        run_with_peak_rss(&mut against(
            sb,
            &[
                "import",
                &self.input,
                "--template",
                &self.template,
                "--report",
                &report,
                "--quiet",
            ],
        ))
    }
}

/// The peak stays under the ceiling (and is shown, for whoever tunes the ceiling).
fn assert_peak_under(what: &str, peak: f64, ceiling: f64) {
    eprintln!("{what}: peak RSS {peak:.1} MB");
    assert!(
        peak < ceiling,
        "{what} peaked at {peak:.1} MB (ceiling {ceiling} MB)"
    );
}

#[test]
fn importing_fifty_thousand_rows_stays_under_eighty_megabytes() {
    let p = persons(ROWS);
    let sb = p.sandbox();
    let (code, peak, stderr) = p.import(&sb);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(sb.count(Entity::Person), ROWS as u64);
    assert_peak_under(&format!("import of {ROWS} rows"), peak, CEILING_MB);
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
    let p = persons(ROWS);
    let sb = p.sandbox();
    let (code, _, stderr) = p.import(&sb);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(sb.count(Entity::Person), ROWS as u64);
    let out = p.path("reconcile.xlsx");
    let (code, peak, stderr) = run_with_peak_rss(&mut against(
        &sb,
        &[
            "reconcile",
            &p.input,
            "--template",
            &p.template,
            "-o",
            &out,
            "--quiet",
        ],
    ));
    // Everything is there and the same: exit 0.
    assert_eq!(code, 0, "{stderr}");
    assert_peak_under(
        &format!("reconcile of {ROWS} rows a side"),
        peak,
        RECONCILE_CEILING_MB,
    );
    sb.stop();
}

/// Measured in the debug build at 100,000 rows a side: 52 MB with the scratch stores. Both sides
/// in memory cost ≈ 1 KB a record a side (the release bench: 205 MB at 200,000 a side), ≈ 105 MB
/// here.
const RECONCILE_CEILING_MB: f64 = 70.0;

/// `validate` streams: per row it keeps only a 16-byte slot per distinct key (to find keys whose
/// rows disagree), never the rows: the text of these 300,000 rows alone (35 MB) would take it
/// past the ceiling.
#[test]
fn validating_three_hundred_thousand_rows_stays_under_forty_five_megabytes() {
    const ROWS: usize = 300_000;
    const CEILING_MB: f64 = 45.0; // measured in the debug build: 26 MB
    let p = persons(ROWS);
    let (code, peak, stderr) = run_with_peak_rss(&mut crate::common::offline(
        p.dir.path(),
        &["validate", &p.input, "--template", &p.template, "--json"],
    ));
    assert_eq!(code, 0, "{stderr}");
    assert_peak_under(&format!("validate of {ROWS} rows"), peak, CEILING_MB);
}
