//! `sandbox --emulate`: the sandbox answering as slowly as a real server, in the shape of the
//! recorded curve (more requests in flight help up to the server's peak).

use crate::common::{say, write_persons, PERSONS_TEMPLATE};
use crate::import::{import, p};
use assert_cmd::cargo::CommandCargoExt;
use smbatch::crm::Entity;
use smbatch::sandbox::{EmulateConfig, Sandbox, SandboxConfig};
use std::process::Command;
use std::time::Instant;

/// Seconds an import of `rows` persons at `concurrency` takes against a fresh emulated
/// real-2core server; checks that every row arrived.
fn import_seconds(dir: &std::path::Path, rows: usize, concurrency: &str) -> f64 {
    let input = dir.join(format!("persons-{concurrency}.csv"));
    write_persons(&input, rows);
    let template = dir.join("persons.toml");
    std::fs::write(&template, PERSONS_TEMPLATE).unwrap();
    let sb = Sandbox::start(SandboxConfig {
        emulate: Some("real-2core".parse::<EmulateConfig>().unwrap()),
        ..SandboxConfig::default()
    })
    .unwrap();
    let report = dir.join(format!("report-{concurrency}.xlsx"));
    let started = Instant::now();
    let out = import(
        &sb,
        &[
            p(&input),
            "--template",
            p(&template),
            "--report",
            p(&report),
            "--concurrency",
            concurrency,
            "--quiet",
        ],
    );
    let secs = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", say(&out));
    assert_eq!(sb.count(Entity::Person), rows as u64);
    secs
}

/// The recorded server gives 224 rows/s with one request in flight and 557 with four; the
/// emulation must show that gain through the real client (a loose ratio, not a timing).
#[test]
fn emulated_real_server_imports_faster_with_four_requests_in_flight_than_one() {
    let dir = tempfile::tempdir().unwrap();
    let one = import_seconds(dir.path(), 800, "1");
    let four = import_seconds(dir.path(), 800, "4");
    assert!(
        one / four >= 1.6,
        "1 in flight {one:.2} s, 4 in flight {four:.2} s: the emulated server does not gain from concurrency"
    );
}

#[test]
fn a_bad_emulate_setting_is_refused_naming_the_value() {
    let out = Command::cargo_bin("smbatch")
        .unwrap()
        .env("SMBATCH_DATA_DIR", crate::common::data_dir())
        .args([
            "sandbox",
            "--db",
            ":memory:",
            "--listen",
            "127.0.0.1:0",
            "--emulate",
            "real-2core,workers=много",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("workers must be a number, got 'много'"),
        "{err}"
    );
}
