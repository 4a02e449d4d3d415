//! Import throughput: 100,000 persons into the in-process sandbox with default settings, the
//! import running as a child `smbatch` process so its own CPU time and peak RSS can be measured
//! apart from the server's (getrusage of the children).
//!
//! `cargo bench --bench import_throughput` (ROWS=… to change the size).

use smbatch::crm::Entity;
use smbatch::sandbox::{Sandbox, SandboxConfig};
use std::process::Command;
use std::time::Instant;

const TEMPLATE: &str = r#"
[source]
encoding = "utf-8"
delimiter = ";"

[[entity]]
type = "person"
key = "{mail}"
[entity.fields]
person = { column = "name", required = true }
ptitle = { column = "title" }
tel    = { column = "tel" }
mail   = { column = "mail" }
"#;

fn main() {
    let rows: usize = std::env::var("ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("persons.csv");
    let mut csv = String::from("name;title;tel;mail\n");
    for i in 0..rows {
        csv.push_str(&format!(
            "Сотрудник {i:06} Петрович;Менеджер по закупкам;+7 (342) 2{i:06};p{i}@example.com\n"
        ));
    }
    std::fs::write(&input, csv).unwrap();
    let template = dir.path().join("persons.toml");
    std::fs::write(&template, TEMPLATE).unwrap();
    let db = dir.path().join("sandbox.sqlite");
    let sb = Sandbox::start(SandboxConfig {
        db: db.display().to_string(),
        ..SandboxConfig::default()
    })
    .unwrap();
    let conn = sb.connection();
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_smbatch"))
        .arg("import")
        .arg(&input)
        .arg("--template")
        .arg(&template)
        .arg("--report")
        .arg(dir.path().join("report.xlsx"))
        .arg("--url")
        .arg(&conn.url)
        .arg("--login")
        .arg(&conn.login)
        .arg("--quiet")
        .env("SMBATCH_APIKEY", conn.apikey.expose())
        .env("SMBATCH_CONFIG", "/nonexistent/smbatch.toml")
        .status()
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    // SAFETY: getrusage only writes into the struct we pass.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u
    };
    let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let user = cpu(usage.ru_utime);
    let sys = cpu(usage.ru_stime);
    let stored = sb.count(Entity::Person);
    assert!(status.success(), "import failed: {status}");
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
    println!(
        "  client peak RSS {:.1} MB",
        usage.ru_maxrss as f64 / 1024.0
    );
    sb.stop();
}
