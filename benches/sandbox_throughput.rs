//! Sandbox throughput: 100,000 person rows in through `add.list` (chunks of 100, 4 concurrent)
//! and out through `list` (pages of 200). Prints rows/s for each and peak RSS.
//! Run: `cargo bench --bench sandbox_throughput`. Targets: ≥ 20,000 rows/s in, ≥ 10,000 out.

use serde_json::{json, Value};
use smbatch::crm::Entity;
use smbatch::sandbox::{Sandbox, SandboxConfig};
use std::time::Instant;

const ROWS: usize = 100_000;
const CHUNK: usize = 100;
const CONCURRENT: usize = 4;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn post(c: &reqwest::Client, sb: &str, path: &str, body: String) -> Value {
    c.post(format!("{sb}{path}"))
        .header("Content-Type", "application/json")
        .header("login", "admin@example.ru")
        .header("apikey", "sandbox-key")
        .body(body)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir
        .path()
        .join("bench.sqlite")
        .to_string_lossy()
        .into_owned();
    let sb = Sandbox::start(SandboxConfig {
        db: db.clone(),
        ..SandboxConfig::default()
    })
    .expect("sandbox");
    let url = sb.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (imported, import_s) = rt.block_on(async {
        let t = Instant::now();
        let mut workers = Vec::new();
        for w in 0..CONCURRENT {
            let url = url.clone();
            workers.push(tokio::spawn(async move {
                let c = reqwest::Client::new();
                let mut ok = 0usize;
                let mut chunk = w;
                while chunk * CHUNK < ROWS {
                    let rows: Vec<Value> = (chunk * CHUNK..(chunk + 1) * CHUNK)
                        .map(|i| {
                            json!({"person": format!("Иванов Пётр {i}"), "ptitle": "Менеджер",
                            "tel": "+7(342)250-50-50", "mob": "+7(922)250-50-50",
                            "mail": format!("p{i}@example.com"), "clid": 1})
                        })
                        .collect();
                    let r = post(
                        &c,
                        &url,
                        "/developer/v3/person/add.list",
                        json!({"persons": rows}).to_string(),
                    )
                    .await;
                    ok += r.as_array().map_or(0, |a| {
                        a.iter()
                            .filter(|x| x["result"] == "Контакт добавлен")
                            .count()
                    });
                    chunk += CONCURRENT;
                }
                ok
            }));
        }
        let mut ok = 0;
        for w in workers {
            ok += w.await.expect("worker");
        }
        (ok, t.elapsed().as_secs_f64())
    });
    assert_eq!(imported, ROWS);
    assert_eq!(sb.count(Entity::Person), ROWS as u64);
    let (exported, export_s) = rt.block_on(async {
        let c = reqwest::Client::new();
        let t = Instant::now();
        let mut n = 0;
        for page in 0.. {
            let r = post(
                &c,
                &url,
                "/developer/v3/person/list",
                json!({"order": "pid", "first": "old", "offset": page}).to_string(),
            )
            .await;
            match r.get("data").and_then(Value::as_array) {
                Some(d) => n += d.len(),
                None => break,
            }
        }
        (n, t.elapsed().as_secs_f64())
    });
    assert_eq!(exported, ROWS);
    println!("sandbox_throughput: {ROWS} person rows, add.list chunks of {CHUNK}, {CONCURRENT} concurrent");
    println!(
        "  import add.list: {:>8.0} rows/s ({import_s:.2} s)",
        imported as f64 / import_s
    );
    println!(
        "  export list:     {:>8.0} rows/s ({export_s:.2} s, pages of 200)",
        exported as f64 / export_s
    );
    println!("  peak RSS:        {:>8.1} MB", peak_rss_mb());
    sb.stop();
}
