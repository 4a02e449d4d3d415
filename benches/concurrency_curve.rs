//! Throughput against requests in flight on emulated servers, and how close the default
//! (adaptive) concurrency gets to the best fixed one:
//! `cargo bench --bench concurrency_curve` (PRESETS=real-2core,big to choose servers; ROWS=… rows
//! per run, default about 10 s at the server's best: 6,000 on real-2core as in throughput.md,
//! 24,000 on big, 2,000 on shared-hosting. Finding the peak takes a few rounds of requests, so
//! on much shorter imports auto falls further behind the best fixed limit.)
//!
//! For each preset of `sandbox --emulate` and each of 1 / 2 / 4 / 8 / 16 requests in flight and
//! the default, a fresh in-process sandbox emulating that server takes an import of ROWS persons
//! in chunks of 100 by a child `smbatch import` (the real CLI); the line gives rows/s, and the
//! last one auto / best fixed.

use smbatch::crm::Entity;
use smbatch::sandbox::{EmulateConfig, Sandbox, SandboxConfig};
use std::path::Path;
use std::time::Instant;

mod common;
use common::{smbatch_cli, write_persons, PERSONS_TEMPLATE};

/// Rows/s of one import into a fresh emulated server.
fn run(dir: &Path, preset: &str, concurrency: Option<usize>, rows: usize) -> f64 {
    let db = dir.join(format!("{preset}-{concurrency:?}.sqlite"));
    let input = dir.join(format!("persons-{rows}.csv"));
    if !input.exists() {
        write_persons(&input, rows);
    }
    let sb = Sandbox::start(SandboxConfig {
        db: db.display().to_string(),
        emulate: Some(preset.parse::<EmulateConfig>().unwrap()),
        ..SandboxConfig::default()
    })
    .unwrap();
    let conn = sb.connection();
    let mut cmd = smbatch_cli(&conn, &["import"]);
    cmd.arg(&input)
        .arg("--template")
        .arg(dir.join("persons.toml"))
        .arg("--report")
        .arg(dir.join(format!("{preset}-{concurrency:?}.xlsx")))
        .arg("--journal")
        .arg(dir.join(format!("{preset}-{concurrency:?}.journal")));
    if let Some(n) = concurrency {
        cmd.arg("--concurrency").arg(n.to_string());
    }
    let started = Instant::now();
    let status = cmd.stdout(std::process::Stdio::null()).status().unwrap();
    let wall = started.elapsed().as_secs_f64();
    assert!(status.success(), "import failed: {status}");
    assert_eq!(
        sb.count(Entity::Person),
        rows as u64,
        "every row stored once"
    );
    sb.stop();
    rows as f64 / wall
}

fn main() {
    let rows: Option<usize> = std::env::var("ROWS").ok().and_then(|s| s.parse().ok());
    let presets =
        std::env::var("PRESETS").unwrap_or_else(|_| smbatch::sandbox::emulate::PRESETS.join(","));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("persons.toml"), PERSONS_TEMPLATE).unwrap();
    println!("concurrency_curve: persons in chunks of 100, a fresh emulated server per run");
    for preset in presets.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let rows = rows.unwrap_or(match preset {
            "big" => 24_000,
            "shared-hosting" => 2_000,
            _ => 6_000,
        });
        let mut best = (0, 0.0f64);
        let mut line = format!("  {preset:<15}{rows:>6} rows ");
        for n in [1, 2, 4, 8, 16] {
            let x = run(dir.path(), preset, Some(n), rows);
            if x > best.1 {
                best = (n, x);
            }
            line.push_str(&format!(" {n}: {x:>5.0}"));
        }
        let auto = run(dir.path(), preset, None, rows);
        println!(
            "{line}  auto: {auto:>5.0} rows/s  auto/best = {:.2} (best at {})",
            auto / best.1,
            best.0
        );
    }
}
