//! Export throughput and memory: the in-process sandbox seeded with N persons, exported to XLSX
//! through the library. Each size runs in its own process so peak RSS (VmHWM) is per size; the
//! peak is reset after seeding (`/proc/self/clear_refs` = 5) so it measures the export.
//!
//! `cargo bench --bench export_throughput` (sizes 20000 and 100000; or `-- 5000 50000`).

use serde_json::{json, Value};
use smbatch::crm::{CrmClient, Entity, RetryPolicy};
use smbatch::export::{self, ExportJob, Filters, Format, HeaderStyle};
use smbatch::sandbox::{Sandbox, SandboxConfig};
use std::time::Instant;

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn one(rows: usize) {
    let sb = Sandbox::start(SandboxConfig::default()).expect("sandbox");
    let conn = sb.connection();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let seed_start = Instant::now();
    rt.block_on(async {
        let http = reqwest::Client::new();
        for start in (0..rows).step_by(500) {
            let batch: Vec<Value> = (start..(start + 500).min(rows))
                .map(|i| {
                    json!({"person": format!("Сотрудник Тестовый {i:06}"), "ptitle": "Менеджер по продажам",
                    "tel": "+7 (342) 200-00-00", "mob": "+7 (922) 000-00-00", "mail": format!("s{i}@example.ru")})
                })
                .collect();
            let r = http
                .post(format!("{}/developer/v3/person/add.list", conn.url))
                .header("Content-Type", "application/json")
                .header("login", &conn.login)
                .header("apikey", conn.apikey.expose())
                .body(json!({ "persons": batch }).to_string())
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
    });
    let seeded = seed_start.elapsed();
    assert_eq!(sb.count(Entity::Person), rows as u64);
    let rss_before = status_kb("VmRSS:");
    // Reset the peak so it measures the export, not the seeding.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let dir = std::env::temp_dir().join(format!("smbatch-bench-{}", std::process::id()));
    let out = dir.join("persons.xlsx");
    let job = ExportJob {
        entities: vec![Entity::Person],
        output: out.clone(),
        format: Format::Xlsx,
        filters: Filters::default(),
        fields: None,
        headers: HeaderStyle::Names,
        concurrency: 4,
        policy: RetryPolicy::default(),
        quiet: true,
        state: None,
    };
    let client = CrmClient::new(&conn).unwrap();
    let t = Instant::now();
    let summary = rt.block_on(export::export(&client, &job)).expect("export");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(summary.rows(), rows as u64);
    assert!(summary.counts_match());
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    println!(
        "export {rows} persons -> XLSX: {secs:.2} s, {:.0} rows/s; peak RSS during export {} MB (RSS before {} MB); file {:.1} MB; seeding took {:.1} s",
        rows as f64 / secs,
        status_kb("VmHWM:") / 1024,
        rss_before / 1024,
        size as f64 / 1e6,
        seeded.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if let Some(n) = std::env::var("SMBATCH_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        one(n);
        return;
    }
    let sizes: Vec<usize> = if args.is_empty() {
        vec![20_000, 100_000]
    } else {
        args.iter().filter_map(|a| a.parse().ok()).collect()
    };
    let exe = std::env::current_exe().unwrap();
    for n in sizes {
        let status = std::process::Command::new(&exe)
            .env("SMBATCH_BENCH_ROWS", n.to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}
