//! Import throughput and memory: persons into the in-process sandbox with default settings, the
//! import running as a child `smbatch` process so its own CPU time and peak RSS can be measured
//! apart from the server's (wait4 of that one child).
//!
//! `cargo bench --bench import_throughput`: 200,000 and 1,000,000 rows, each size in a bench
//! process of its own (IMPORT_3M=1 adds 3,000,000). ROWS=… runs one size in this process;
//! SMBATCH_BIN=… measures another build of smbatch.

use smbatch::crm::Entity;
use smbatch::sandbox::{Sandbox, SandboxConfig};
use std::process::Command;
use std::time::Instant;

mod common;
use common::{peak_mb, smbatch_cli_of, wait_with_usage, write_persons, PERSONS_TEMPLATE};

fn main() {
    let Some(rows) = std::env::var("ROWS").ok().and_then(|s| s.parse().ok()) else {
        // Each size in a process of its own, so no size's allocations shape another's figures.
        let mut sizes = vec![200_000usize, 1_000_000];
        if std::env::var_os("IMPORT_3M").is_some() {
            sizes.push(3_000_000);
        }
        for n in sizes {
            let status = Command::new(std::env::current_exe().unwrap())
                .env("ROWS", n.to_string())
                .status()
                .unwrap();
            assert!(status.success(), "{n} rows: {status}");
        }
        return;
    };
    bench(rows);
}

fn bench(rows: usize) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("persons.csv");
    write_persons(&input, rows);
    let template = dir.path().join("persons.toml");
    std::fs::write(&template, PERSONS_TEMPLATE).unwrap();
    let db = dir.path().join("sandbox.sqlite");
    let sb = Sandbox::start(SandboxConfig {
        db: db.display().to_string(),
        ..SandboxConfig::default()
    })
    .unwrap();
    let conn = sb.connection();
    let started = Instant::now();
    // SMBATCH_BIN: another build to compare with (e.g. the one before a change).
    let bin = std::env::var_os("SMBATCH_BIN").unwrap_or(env!("CARGO_BIN_EXE_smbatch").into());
    let child = smbatch_cli_of(bin, &conn, &["import"])
        .arg(&input)
        .arg("--template")
        .arg(&template)
        .arg("--report")
        .arg(dir.path().join("report.xlsx"))
        .arg("--journal")
        .arg(dir.path().join("report.journal.sqlite"))
        .spawn()
        .unwrap();
    let (status, usage) = wait_with_usage(child);
    let wall = started.elapsed().as_secs_f64();
    let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let user = cpu(usage.ru_utime);
    let sys = cpu(usage.ru_stime);
    let stored = sb.count(Entity::Person);
    assert_eq!(status, 0, "import failed: exit {status}");
    assert_eq!(stored, rows as u64, "every row stored exactly once");
    println!("import_throughput: {rows} persons into the in-process sandbox, default settings");
    println!("  wall            {wall:.2} s");
    println!("  rows/s          {:.0}", rows as f64 / wall);
    println!(
        "  client CPU      {:.2} s user + {:.2} s sys = {:.3} s per 10,000 rows",
        user,
        sys,
        (user + sys) / rows as f64 * 10_000.0
    );
    println!("  client peak RSS {:.1} MB", peak_mb(&usage));
    let journal = dir.path().join("report.journal.sqlite");
    if let Ok(m) = std::fs::metadata(&journal) {
        println!(
            "  journal         {:.1} MB",
            m.len() as f64 / 1024.0 / 1024.0
        );
    }
    sb.stop();
}
