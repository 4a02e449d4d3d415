//! Export throughput and memory: a sandbox seeded with N persons, exported to XLSX (all fields)
//! through the library, as `smbatch export person -o out.xlsx` does.
//!
//! The sandbox runs as its own process (`smbatch sandbox --db FILE`, as a user would run it), so
//! the peak RSS reported is the exporter's alone; the sandbox's figures are printed beside it.
//! Each size runs in its own process so the peak RSS (VmHWM) is per size; the peak is reset
//! after seeding (`/proc/self/clear_refs` = 5) so it measures the export. CPU seconds (user +
//! system, exporter and sandbox) are printed too: on a shared 2-core machine they vary less
//! with other load than wall time does.
//!
//! `cargo bench --bench export_throughput` (sizes 20000 and 100000; or `-- 5000 50000`).
//! `SMBATCH_BENCH_INPROC=1` runs the sandbox inside the exporter process instead (its store
//! then counts in the exporter's RSS).

use serde_json::{json, Value};
use smbatch::config::{ApiKey, Connection};
use smbatch::crm::{CrmClient, Entity, RetryPolicy};
use smbatch::export::{self, ExportJob, Filters, Format, HeaderStyle};
use smbatch::sandbox::{Sandbox, SandboxConfig};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const LOGIN: &str = "admin@example.ru";
const APIKEY: &str = "sandbox-key";

fn status_kb(pid: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds of a process so far (all its threads).
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// The sandbox as a separate process; killed when dropped.
struct SandboxProcess {
    child: Child,
    url: String,
}

impl SandboxProcess {
    fn start(db: &str) -> SandboxProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_smbatch"))
            .args(["sandbox", "--listen", "127.0.0.1:0", "--db", db])
            .args(["--login", LOGIN, "--apikey", APIKEY])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smbatch sandbox");
        let out = child.stdout.take().expect("sandbox stdout");
        let mut out = std::io::BufReader::new(out);
        let mut first = String::new();
        out.read_line(&mut first).expect("sandbox banner");
        // Keep reading: the sandbox prints more, and a closed pipe would end it.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let url = first
            .trim()
            .rsplit(' ')
            .next()
            .expect("sandbox url")
            .to_string();
        assert!(url.starts_with("http://"), "unexpected banner: {first}");
        SandboxProcess { child, url }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn one(rows: usize) {
    let dir = std::env::temp_dir().join(format!("smbatch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let in_process = std::env::var("SMBATCH_BENCH_INPROC").is_ok_and(|v| v == "1");
    let (_inproc, _child, conn, sandbox_pid) = if in_process {
        let sb = Sandbox::start(SandboxConfig {
            login: LOGIN.into(),
            apikey: APIKEY.into(),
            ..SandboxConfig::default()
        })
        .expect("sandbox");
        let conn = sb.connection();
        (Some(sb), None, conn, None)
    } else {
        let db = dir.join("sandbox.sqlite").to_string_lossy().into_owned();
        let sp = SandboxProcess::start(&db);
        let conn = Connection {
            url: sp.url.clone(),
            login: LOGIN.into(),
            apikey: ApiKey::new(APIKEY),
        };
        let pid = sp.pid();
        (None, Some(sp), conn, Some(pid))
    };
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
    let rss_before = status_kb("self", "VmRSS:");
    // Reset the peak so it measures the export, not the seeding.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
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
    let sandbox_cpu0 = sandbox_pid.as_deref().map_or(0.0, cpu_secs);
    let cpu0 = cpu_secs("self");
    let t = Instant::now();
    let summary = rt.block_on(export::export(&client, &job)).expect("export");
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_secs("self") - cpu0;
    let sandbox_cpu = sandbox_pid.as_deref().map_or(0.0, cpu_secs) - sandbox_cpu0;
    assert_eq!(summary.rows(), rows as u64);
    assert!(summary.counts_match());
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    match &sandbox_pid {
        Some(pid) => println!(
            "export {rows} persons -> XLSX: {secs:.2} s, {:.0} rows/s; exporter peak RSS {} MB (before export {} MB), CPU {cpu:.2} s; sandbox process peak RSS {} MB, CPU {sandbox_cpu:.2} s; file {:.1} MB; seeding {:.1} s; load {}",
            rows as f64 / secs,
            status_kb("self", "VmHWM:") / 1024,
            rss_before / 1024,
            status_kb(pid, "VmHWM:") / 1024,
            size as f64 / 1e6,
            seeded.as_secs_f64(),
            load.join(" ")
        ),
        None => println!(
            "export {rows} persons -> XLSX (sandbox in-process): {secs:.2} s, {:.0} rows/s; peak RSS during export {} MB (RSS before {} MB), CPU {cpu:.2} s; file {:.1} MB; seeding {:.1} s; load {}",
            rows as f64 / secs,
            status_kb("self", "VmHWM:") / 1024,
            rss_before / 1024,
            size as f64 / 1e6,
            seeded.as_secs_f64(),
            load.join(" ")
        ),
    }
    drop(_child);
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
