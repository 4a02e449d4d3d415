//! Updates and matching (issue 12): `cargo bench --bench update_throughput`.
//!
//! 1. ROWS persons (default 2,000) are imported by smbatch into a fresh sandbox (not emulated),
//!    then the same database is served by a sandbox emulating a real server (EMULATE, default
//!    `real-2core`; any `smbatch sandbox --emulate` spec).
//! 2. A plain client sends a blind `person/update` (full body) of every pid with 1 / 2 / 4 / 8 / 16
//!    requests in flight (LEVELS=1,2,4,8 to choose): rows/s each, and the best.
//! 3. `smbatch import --mode upsert` of a file changing `ptitle` of every person (the safe
//!    read-modify-write: match through list pages, then one update per changed record): rows/s
//!    and its ratio to the best plain rate (target ≥ 0.9). A `--dry-run` of the same file first
//!    gives the match pass alone, printed as its share of the upsert's time.
//! 4. Matching against exporting, on a sandbox that is not emulated holding MATCH_ROWS persons
//!    (default 200,000; the target is 1M, both scale with the CRM's size):
//!    `import --mode insert --dry-run` of a file whose every row matches (nothing sent) against
//!    `export person -o persons.csv`. SKIP_MATCH=1 skips this part.
//!
//! Every smbatch run is the real CLI as a child process, timed from start to exit.

use serde_json::{json, Map, Value};
use smbatch::config::Connection;
use smbatch::crm::{CrmClient, Entity, RetryPolicy};
use smbatch::sandbox::{EmulateConfig, Sandbox, SandboxConfig};
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

mod common;
use common::{env_num, runtime};
use common::{write_persons, PERSONS_TEMPLATE};

/// The title [`write_persons`] gives everyone, and the one the upsert file changes it to.
const TITLE: &str = "Менеджер по закупкам";
const NEW_TITLE: &str = "Руководитель отдела закупок";

/// Run the smbatch CLI against `conn`; wall seconds. Panics unless it exits 0.
fn smbatch(conn: &Connection, args: &[&str]) -> f64 {
    let started = Instant::now();
    let out = common::smbatch_cli(conn, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "smbatch {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    wall
}

/// Every person the CRM lists, as the list shows it.
fn list_persons(rt: &tokio::runtime::Runtime, client: &CrmClient) -> Vec<Map<String, Value>> {
    rt.block_on(async {
        let mut all = Vec::new();
        let mut params = Map::new();
        params.insert("order".into(), json!("pid"));
        params.insert("first".into(), json!("old"));
        for page in 0.. {
            let p = client
                .list_page(Entity::Person, &params, page, &RetryPolicy::default())
                .await
                .unwrap();
            if p.rows.is_empty() {
                break;
            }
            all.extend(p.rows);
        }
        all
    })
}

/// Blind full-body updates of every person with `in_flight` requests at a time; rows/s.
fn plain_updates(
    rt: &tokio::runtime::Runtime,
    client: &CrmClient,
    persons: &[Map<String, Value>],
    in_flight: usize,
) -> f64 {
    let bodies = persons
        .iter()
        .map(|p| {
            json!({
                "pid": p["pid"], "person": p["person"], "tel": p["tel"], "mail": p["mail"],
                "ptitle": format!("{TITLE} {in_flight}"), "iduser": 1,
            })
        })
        .collect();
    common::blind_calls(rt, client, Entity::Person, "update", bodies, in_flight)
}

fn updates(dir: &Path) {
    let rows = env_num("ROWS", 2_000);
    let spec = std::env::var("EMULATE").unwrap_or_else(|_| "real-2core".into());
    let emulate: EmulateConfig = spec.parse().unwrap();
    let levels: Vec<usize> = std::env::var("LEVELS")
        .unwrap_or_else(|_| "1,2,4,8,16".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let db = dir.join("updates.sqlite").display().to_string();
    let input = dir.join("persons.csv");
    write_persons(&input, rows);
    let changed = dir.join("persons-changed.csv");
    let text = std::fs::read_to_string(&input).unwrap();
    std::fs::write(
        &changed,
        text.replace(&format!(";{TITLE};"), &format!(";{NEW_TITLE};")),
    )
    .unwrap();
    let template = dir.join("persons.toml").display().to_string();
    let journal = |name: &str| dir.join(name).display().to_string();

    // 1. Seed through smbatch on a sandbox answering at full speed.
    let sb = Sandbox::start(SandboxConfig {
        db: db.clone(),
        ..SandboxConfig::default()
    })
    .unwrap();
    let seed = smbatch(
        &sb.connection(),
        &[
            "import",
            &input.display().to_string(),
            "-t",
            &template,
            "--journal",
            &journal("seed.journal"),
        ],
    );
    assert_eq!(sb.count(Entity::Person), rows as u64);
    sb.stop();

    let sb = Sandbox::start(SandboxConfig {
        db,
        emulate: Some(emulate),
        ..SandboxConfig::default()
    })
    .unwrap();
    let conn = sb.connection();
    let client = CrmClient::new(&conn).unwrap();
    let rt = runtime();
    let persons = list_persons(&rt, &client);
    assert_eq!(persons.len(), rows);
    println!(
        "update_throughput: {rows} persons (seeded by smbatch in {seed:.1} s), server emulating '{spec}'"
    );

    // 2. The plain client.
    let mut best = (0, 0.0f64);
    let mut line = String::from("  plain blind person/update, rows/s by requests in flight:");
    for &n in &levels {
        let x = plain_updates(&rt, &client, &persons, n);
        if x > best.1 {
            best = (n, x);
        }
        line.push_str(&format!(" {n}: {x:.1}"));
    }
    println!("{line}  (best {:.1} at {})", best.1, best.0);

    // 3. smbatch: the match pass alone, then the whole upsert.
    let changed = changed.display().to_string();
    let upsert = |extra: &[&str], j: &str| {
        let mut args = vec![
            "import",
            changed.as_str(),
            "-t",
            &template,
            "--mode",
            "upsert",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--journal", j]);
        smbatch(&conn, &args)
    };
    let matched = upsert(&["--dry-run"], &journal("dry.journal"));
    let wall = upsert(&[], &journal("upsert.journal"));
    let after = list_persons(&rt, &client);
    assert!(
        after.iter().all(|p| p["ptitle"] == NEW_TITLE),
        "the upsert changed every title"
    );
    let rate = rows as f64 / wall;
    println!(
        "  smbatch import --mode upsert: {wall:.1} s, {rate:.1} rows/s = {:.2} x the best plain rate (target >= 0.90); match pass alone (--dry-run) {matched:.2} s = {:.0} % of the upsert",
        rate / best.1,
        100.0 * matched / wall
    );
    sb.stop();
}

fn matching(dir: &Path) {
    let rows = env_num("MATCH_ROWS", 200_000);
    let db = dir.join("match.sqlite").display().to_string();
    let sb = Sandbox::start(SandboxConfig {
        db,
        ..SandboxConfig::default()
    })
    .unwrap();
    let conn = sb.connection();
    let input = dir.join(format!("persons-{rows}.csv"));
    write_persons(&input, rows);
    // Seed the same persons straight through add.list (an import would take longer).
    let seed = Instant::now();
    let rt = runtime();
    let client = CrmClient::new(&conn).unwrap();
    let text = std::fs::read_to_string(&input).unwrap();
    let all: Vec<Value> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(';').collect();
            json!({"person": f[0], "ptitle": f[1], "tel": f[2], "mail": f[3]})
        })
        .collect();
    rt.block_on(async {
        for batch in all.chunks(500) {
            client
                .call(Entity::Person, "add.list", &json!({ "persons": batch }))
                .await
                .unwrap();
        }
    });
    assert_eq!(sb.count(Entity::Person), rows as u64);
    let seed = seed.elapsed().as_secs_f64();
    let template = dir.join("persons.toml").display().to_string();
    let matched = smbatch(
        &conn,
        &[
            "import",
            &input.display().to_string(),
            "-t",
            &template,
            "--mode",
            "insert",
            "--dry-run",
            "--journal",
            &dir.join("match.journal").display().to_string(),
        ],
    );
    assert_eq!(
        sb.count(Entity::Person),
        rows as u64,
        "a dry run sends nothing"
    );
    let out = dir.join("persons-export.csv");
    let exported = smbatch(
        &conn,
        &["export", "person", "-o", &out.display().to_string()],
    );
    let lines = std::fs::read_to_string(&out).unwrap().lines().count();
    assert!(lines > rows, "every person exported ({lines} lines)");
    println!(
        "  matching {rows} CRM persons (import --mode insert --dry-run, all match): {matched:.1} s; export person -o csv: {exported:.1} s; match / export = {:.2} (target <= 1.00; seeding {seed:.1} s)",
        matched / exported
    );
    sb.stop();
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("persons.toml"), PERSONS_TEMPLATE).unwrap();
    updates(dir.path());
    if std::env::var("SKIP_MATCH").map_or(true, |v| v != "1") {
        matching(dir.path());
    }
}
