//! Reconcile throughput and memory: `cargo bench --bench reconcile_throughput` runs 200,000 and
//! 1,000,000 rows, each size in a bench process of its own (ROWS=… runs one size in this one).
//!
//! 1. Matching alone, in this process: ROWS source persons against ROWS CRM persons (1 % missing,
//!    1 % edited, 1 % duplicated, 1 % only in the CRM) — rows/s of `reconcile()` and peak RSS.
//! 2. End to end: ROWS persons imported into an in-process sandbox, then `smbatch reconcile` run
//!    as a child process — its wall time (export + matching) and its own peak RSS (its VmHWM
//!    sampled from /proc while it runs), to show where the time goes.

use serde_json::{json, Map, Value};
use smbatch::crm::Entity;
use smbatch::reconcile::{reconcile, CrmRecord, EntityInput, Fields, Names, Rows, SourceRecord};
use smbatch::sandbox::{Sandbox, SandboxConfig};
use smbatch::source::SourcePos;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

mod common;
use common::{run_with_peak_rss, write_persons, PERSONS_TEMPLATE};

fn vm_hwm_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn person(i: usize) -> Map<String, Value> {
    json!({
        "person": format!("Сотрудник {i:06} Петрович"),
        "ptitle": "Менеджер по закупкам",
        "tel": format!("+7 (342) 2{i:06}"),
        "mail": format!("p{i}@example.com"),
    })
    .as_object()
    .cloned()
    .unwrap_or_default()
}

fn matching(rows: usize) {
    let mut names = Names::default();
    let at = Arc::new(SourcePos {
        file: "persons.csv".into(),
        sheet: None,
        row: 0,
    });
    let source: Vec<SourceRecord> = (0..rows)
        .map(|i| SourceRecord {
            entity: Entity::Person,
            key: format!("p{i}@example.com"),
            fields: Fields::from_map(&person(i), &mut names),
            refs: vec![],
            rows: Rows::new(at.clone(), vec![i as u64 + 2]),
        })
        .collect();
    let mut crm: Vec<CrmRecord> = Vec::with_capacity(rows + rows / 50);
    for i in 0..rows {
        if i % 100 == 1 {
            continue; // missing
        }
        let mut f = person(i);
        if i % 100 == 2 {
            f.insert("ptitle".into(), json!("Уволен")); // edited
        }
        f.insert("pid".into(), json!(i + 1));
        crm.push(CrmRecord {
            id: i as i64 + 1,
            fields: Fields::from_map(&f, &mut names),
        });
        if i % 100 == 3 {
            crm.push(CrmRecord {
                id: (rows + i) as i64 + 1,
                fields: Fields::from_map(&f, &mut names),
            }); // duplicate
        }
        if i % 100 == 4 {
            let mut other = person(rows + i);
            other.insert("pid".into(), json!(2 * rows + i + 1));
            crm.push(CrmRecord {
                id: (2 * rows + i) as i64 + 1,
                fields: Fields::from_map(&other, &mut names),
            }); // only in CRM
        }
    }
    let started = Instant::now();
    let r = reconcile(&[EntityInput {
        entity: Entity::Person,
        source: &source,
        crm: &crm,
        journal: None,
    }])
    .unwrap();
    let secs = started.elapsed().as_secs_f64();
    let s = &r.summaries[0].1;
    assert_eq!(s.missing as usize, rows / 100);
    assert_eq!(s.different as usize, rows / 100);
    assert_eq!(s.duplicated as usize, rows / 100);
    assert_eq!(s.only_in_crm as usize, rows / 100);
    println!(
        "matching: {rows} source vs {} CRM records in {secs:.2} s = {:.0} source rows/s; peak RSS {:.0} MB (inputs included)",
        crm.len(),
        rows as f64 / secs,
        vm_hwm_mb()
    );
}

fn end_to_end(rows: usize) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("persons.csv");
    // person(i) as CSV rows.
    write_persons(&input, rows);
    let template = dir.path().join("persons.toml");
    std::fs::write(&template, PERSONS_TEMPLATE).unwrap();
    let sb = Sandbox::start(SandboxConfig {
        db: dir.path().join("sandbox.sqlite").display().to_string(),
        ..SandboxConfig::default()
    })
    .unwrap();
    let conn = sb.connection();
    let run = |args: &[&str]| {
        let started = Instant::now();
        let (code, rss, stderr) = run_with_peak_rss(
            common::smbatch_cli(&conn, args)
                .arg(&input)
                .arg("--template")
                .arg(&template),
        );
        assert!((0..2).contains(&code), "exit code {code}: {stderr}");
        (started.elapsed().as_secs_f64(), rss)
    };
    let report = dir.path().join("import.xlsx");
    let (imported, import_rss) = run(&["import", "--report", report.to_str().unwrap_or_default()]);
    assert_eq!(sb.count(Entity::Person) as usize, rows);
    let out = dir.path().join("reconcile.xlsx");
    let (secs, rss) = run(&["reconcile", "-o", out.to_str().unwrap_or_default()]);
    println!(
        "end to end: import {rows} persons {imported:.1} s (peak RSS {import_rss:.0} MB); reconcile (read + export + match + report) {secs:.1} s = {:.0} rows/s, peak RSS {rss:.0} MB",
        rows as f64 / secs,
    );
}

fn main() {
    let Some(rows) = std::env::var("ROWS").ok().and_then(|s| s.parse().ok()) else {
        // Each size in a process of its own: the in-process matching figure is this process's
        // VmHWM, which an earlier, larger size would otherwise set.
        for n in [200_000usize, 1_000_000] {
            let status = Command::new(std::env::current_exe().unwrap())
                .env("ROWS", n.to_string())
                .status()
                .unwrap();
            assert!(status.success(), "{n} rows: {status}");
        }
        return;
    };
    // End to end first (the children's figures are their own VmHWM, so the order no longer
    // matters for them; it keeps the bench's own matching figure last).
    end_to_end(rows);
    matching(rows);
}
