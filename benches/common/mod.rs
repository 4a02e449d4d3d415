//! What the benches (and the memory test, by `#[path]`) share: the persons template and input
//! they import, a child's own exit code and rusage by wait4, and a child's own peak RSS sampled
//! from /proc (its VmHWM: wait4's ru_maxrss also counts the parent's memory at spawn, since std
//! spawns with vfork). Each includer uses a part.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Template mapping the persons input of [`write_persons`].
pub const PERSONS_TEMPLATE: &str = r#"
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

/// `smbatch ARGS` (the bench's own build) against `conn`, quiet, with no config file and
/// journals in a scratch data directory; further arguments may follow.
pub fn smbatch_cli<A: AsRef<OsStr>>(conn: &smbatch::config::Connection, args: &[A]) -> Command {
    smbatch_cli_of(env!("CARGO_BIN_EXE_smbatch"), conn, args)
}

/// [`smbatch_cli`] of another build of smbatch (`bin`).
pub fn smbatch_cli_of<A: AsRef<OsStr>>(
    bin: impl AsRef<OsStr>,
    conn: &smbatch::config::Connection,
    args: &[A],
) -> Command {
    let mut c = Command::new(bin);
    c.args(args)
        .arg("--url")
        .arg(&conn.url)
        .arg("--login")
        .arg(&conn.login)
        .arg("--quiet")
        .env("SMBATCH_APIKEY", conn.apikey.expose())
        .env("SMBATCH_CONFIG", "/nonexistent/smbatch.toml")
        .env(
            "SMBATCH_DATA_DIR",
            std::env::temp_dir().join("smbatch-bench-data"),
        );
    c
}

/// The number in environment variable `key`, or `default`.
pub fn env_num(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A two-worker runtime for a bench's plain client (the machine the figures are for).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Write `rows` persons (name;title;tel;mail, distinct mails) to `path`, streamed.
pub fn write_persons(path: &Path, rows: usize) {
    let mut csv = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    csv.write_all("name;title;tel;mail\n".as_bytes()).unwrap();
    for i in 0..rows {
        writeln!(
            csv,
            "Сотрудник {i:06} Петрович;Менеджер по закупкам;+7 (342) 2{i:06};p{i}@example.com"
        )
        .unwrap();
    }
    csv.flush().unwrap();
}

/// Wait for a child and return (exit code, its own rusage): wait4 reports the one child's,
/// where RUSAGE_CHILDREN would mix every child's peak together.
pub fn wait_with_usage(child: std::process::Child) -> (i32, libc::rusage) {
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: plain syscall on a pid we spawned and have not waited for; both out-params are ours.
    unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, usage)
}

/// Peak RSS in MB of a rusage (ru_maxrss is in KB on Linux).
pub fn peak_mb(usage: &libc::rusage) -> f64 {
    usage.ru_maxrss as f64 / 1024.0
}

/// `VmHWM` of a running process in MB (None once it has exited).
fn hwm_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Run `c` to its end; (exit code, its own peak RSS in MB, its stderr).
pub fn run_with_peak_rss(c: &mut Command) -> (i32, f64, String) {
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let mut peak = 0.0f64;
    let status = loop {
        if let Some(mb) = hwm_mb(child.id()) {
            peak = peak.max(mb);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code().unwrap_or(-1), peak, reader.join().unwrap())
}

/// A plain client's blind calls: `ENTITY/ACTION` with each of `bodies`, `in_flight` at a time,
/// every answer required to succeed; calls/s. What smbatch's rates are compared with.
pub fn blind_calls(
    rt: &tokio::runtime::Runtime,
    client: &smbatch::crm::CrmClient,
    entity: smbatch::crm::Entity,
    action: &'static str,
    bodies: Vec<serde_json::Value>,
    in_flight: usize,
) -> f64 {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let n = bodies.len();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let started = std::time::Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..in_flight {
            let (client, bodies, next) = (client.clone(), bodies.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    client
                        .call(entity, action, body)
                        .await
                        .unwrap_or_else(|e| panic!("{entity}/{action} {body}: {e}"));
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    n as f64 / started.elapsed().as_secs_f64()
}
