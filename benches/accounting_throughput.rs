//! Invoice export and payments (issue 14): `cargo bench --bench accounting_throughput`.
//!
//! 1. INVOICES invoices (default 600, two per deal; deals with a specification, of 20 clients)
//!    are added through the API of a sandbox that is not emulated; then the same database is
//!    served by a sandbox emulating a real server (EMULATE, default `real-2core`).
//! 2. Invoice export. A plain client pages invoice/list (page 30, offset 1, 2, … until an empty
//!    page) with 1 / 2 / 4 pages in flight: rows/s, and the best. Then the real CLI:
//!    `smbatch export invoice -o x.csv --fields crid,invoice,summa,paid` (no VAT column: VAT is
//!    only in invoice/info, one read per invoice) and the default export (deal and client joins,
//!    one deal/info per deal and client/info per client, and VAT): rows/s each and the ratio to
//!    the best plain rate (target >= 0.95).
//! 3. Payments. A bank CSV pays every invoice in full. A plain client sends invoice/do of each
//!    invoice with 1 / 2 / 4 / 8 in flight, each level on a fresh copy of the seeded database:
//!    calls/s, and the best. Then `smbatch import bank.csv -t templates/payments.toml` on another
//!    fresh copy: payments/s and the ratio. smbatch reads the invoice (invoice/list by number)
//!    before every payment, the price of "never paid twice": a `--dry-run` of the same file
//!    (reads and decides, pays nothing) gives that read pass alone, printed as its share.
//!
//! Every smbatch run is the real CLI as a child process, timed from start to exit.

use serde_json::{json, Map, Value};
use smbatch::config::Connection;
use smbatch::crm::{CrmClient, Entity, RetryPolicy};
use smbatch::sandbox::{EmulateConfig, Sandbox, SandboxConfig};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

mod common;
use common::{env_num, runtime};

/// Every deal's specification total; its two invoices are 60 % and 40 % of it.
const DEAL_SUM: i64 = 100_000;
const CLIENTS: usize = 20;

/// Run the smbatch CLI against `conn`; (wall seconds, exit code). Panics on a fatal exit (2).
fn smbatch(conn: &Connection, args: &[&str]) -> (f64, i32) {
    let started = Instant::now();
    let out = common::smbatch_cli(conn, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0,
        "smbatch {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (wall, code)
}

fn call(
    rt: &tokio::runtime::Runtime,
    client: &CrmClient,
    e: Entity,
    a: &str,
    body: Value,
) -> Value {
    rt.block_on(client.call(e, a, &body))
        .unwrap_or_else(|err| panic!("{e}/{a} {body}: {err}"))
}

/// The invoice number of invoice `i` (1-based).
fn number(i: usize) -> String {
    format!("СЧ-{i:05}")
}

/// What [`seed`] added: (crid, number, sum) of each invoice, the deals' and the clients' ids.
struct Seeded {
    invoices: Vec<(i64, String, i64)>,
    dids: Vec<i64>,
    clids: Vec<i64>,
}

/// Seed `invoices` invoices (two per deal) into the sandbox database `db`.
fn seed(db: &str, invoices: usize) -> Seeded {
    let sb = Sandbox::start(SandboxConfig {
        db: db.into(),
        ..SandboxConfig::default()
    })
    .unwrap();
    let client = CrmClient::new(&sb.connection()).unwrap();
    let rt = runtime();
    let clids: Vec<i64> = (0..CLIENTS)
        .map(|c| {
            let r = call(
                &rt,
                &client,
                Entity::Client,
                "add",
                json!({"title": format!("ООО «Поставщик {c:02}»"), "type": "client"}),
            );
            r["data"]
                .as_i64()
                .unwrap_or_else(|| panic!("client/add: {r}"))
        })
        .collect();
    let mut out = Vec::with_capacity(invoices);
    let mut dids = Vec::new();
    for d in 0..invoices.div_ceil(2) {
        let r = call(
            &rt,
            &client,
            Entity::Deal,
            "add",
            json!({"title": format!("Поставка труб №{d}"), "clid": clids[d % CLIENTS],
                   "uid": format!("D-{d}"),
                   "speka": [{"title": "Трубы стальные", "price": DEAL_SUM, "kol": 1, "nds": 20}]}),
        );
        let did = r["data"]
            .as_i64()
            .unwrap_or_else(|| panic!("deal/add: {r}"));
        dids.push(did);
        for (k, sum) in [(1, DEAL_SUM * 6 / 10), (2, DEAL_SUM * 4 / 10)] {
            let i = 2 * d + k;
            if i > invoices {
                break;
            }
            let r = call(
                &rt,
                &client,
                Entity::Invoice,
                "add",
                json!({"did": did, "summa": sum, "invoice": number(i)}),
            );
            let crid = r["data"]["id"]
                .as_i64()
                .unwrap_or_else(|| panic!("invoice/add: {r}"));
            out.push((crid, number(i), sum));
        }
    }
    assert_eq!(sb.count(Entity::Invoice), invoices as u64);
    sb.stop();
    Seeded {
        invoices: out,
        dids,
        clids,
    }
}

/// A fresh copy of the seeded database (with its WAL, if one is left) at `to`.
fn copy_db(from: &str, to: &str) {
    for suffix in ["", "-wal"] {
        let src = format!("{from}{suffix}");
        let dst = format!("{to}{suffix}");
        let _ = std::fs::remove_file(&dst);
        if Path::new(&src).exists() {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
    let _ = std::fs::remove_file(format!("{to}-shm"));
}

fn serve(db: &str, emulate: &EmulateConfig) -> Sandbox {
    Sandbox::start(SandboxConfig {
        db: db.into(),
        emulate: Some(emulate.clone()),
        ..SandboxConfig::default()
    })
    .unwrap()
}

/// A plain client paging invoice/list (offset 1, 2, …) with `in_flight` pages asked at a time,
/// until a page comes back empty; (rows, rows/s).
fn plain_pages(rt: &tokio::runtime::Runtime, client: &CrmClient, in_flight: usize) -> (u64, f64) {
    let next = Arc::new(AtomicU64::new(1));
    let done = Arc::new(AtomicBool::new(false));
    let rows = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..in_flight {
            let (client, next, done, rows) =
                (client.clone(), next.clone(), done.clone(), rows.clone());
            tasks.push(tokio::spawn(async move {
                let mut params = Map::new();
                params.insert("order".into(), json!("datum"));
                params.insert("first".into(), json!("old"));
                while !done.load(Ordering::Relaxed) {
                    let page = next.fetch_add(1, Ordering::Relaxed);
                    let p = client
                        .list_page(Entity::Invoice, &params, page, &RetryPolicy::default())
                        .await
                        .unwrap_or_else(|e| panic!("invoice/list page {page}: {e}"));
                    if p.rows.is_empty() {
                        done.store(true, Ordering::Relaxed);
                    }
                    rows.fetch_add(p.rows.len(), Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let n = rows.load(Ordering::Relaxed) as u64;
    (n, n as f64 / started.elapsed().as_secs_f64())
}

/// A plain client reading `info` of every id (`entity`, `extra` fields) with `in_flight` reads
/// at a time; seconds.
fn plain_infos(
    rt: &tokio::runtime::Runtime,
    client: &CrmClient,
    reads: &[(Entity, i64)],
    in_flight: usize,
) -> f64 {
    let reads: Arc<Vec<(Entity, i64)>> = Arc::new(reads.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..in_flight {
            let (client, reads, next) = (client.clone(), reads.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(entity, id)) = reads.get(i) else {
                        break;
                    };
                    let extra: &[(&str, Value)] = if entity == Entity::Client {
                        &[("bankinfo", Value::Bool(true))]
                    } else {
                        &[]
                    };
                    client
                        .info(entity, id, extra, &RetryPolicy::default())
                        .await
                        .unwrap_or_else(|e| panic!("{entity}/info {id}: {e}"));
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    started.elapsed().as_secs_f64()
}

/// invoice/do of every invoice (full sum) with `in_flight` calls at a time; calls/s.
fn plain_payments(
    rt: &tokio::runtime::Runtime,
    client: &CrmClient,
    invoices: &[(i64, String, i64)],
    in_flight: usize,
) -> f64 {
    let bodies = invoices
        .iter()
        .map(|(crid, _, sum)| json!({"id": crid, "summa": format!("{sum}.00")}))
        .collect();
    common::blind_calls(rt, client, Entity::Invoice, "do", bodies, in_flight)
}

/// How many invoice rows the CRM holds paid.
fn paid_rows(rt: &tokio::runtime::Runtime, client: &CrmClient) -> usize {
    rt.block_on(async {
        let mut params = Map::new();
        params.insert("pay1".into(), json!("yes"));
        let mut n = 0;
        for page in 1.. {
            let p = client
                .list_page(Entity::Invoice, &params, page, &RetryPolicy::default())
                .await
                .unwrap();
            if p.rows.is_empty() {
                break;
            }
            n += p.rows.iter().filter(|r| r["do"] == json!(true)).count();
        }
        n
    })
}

fn export(dir: &Path, db: &str, emulate: &EmulateConfig, seeded: &Seeded) {
    let invoices = seeded.invoices.len();
    let sb = serve(db, emulate);
    let conn = sb.connection();
    let client = CrmClient::new(&conn).unwrap();
    let rt = runtime();
    let mut best = (0, 0.0f64);
    let mut line =
        String::from("  plain invoice/list paging (page 30), rows/s by pages in flight:");
    for n in [1, 2, 4] {
        let (rows, x) = plain_pages(&rt, &client, n);
        assert_eq!(rows, invoices as u64, "the plain client read every invoice");
        if x > best.1 {
            best = (n, x);
        }
        line.push_str(&format!(" {n}: {x:.0}"));
    }
    println!("{line}  (best {:.0} at {})", best.1, best.0);
    for (what, extra) in [
        (
            "export invoice --fields crid,invoice,summa,paid (no VAT)",
            &["--fields", "crid,invoice,summa,paid"][..],
        ),
        (
            "export invoice (default: deal and client joins, VAT)",
            &[][..],
        ),
    ] {
        let out = dir.join("x.csv").display().to_string();
        let mut args = vec!["export", "invoice", "-o", out.as_str()];
        args.extend_from_slice(extra);
        let (wall, _) = smbatch(&conn, &args);
        let lines = std::fs::read_to_string(&out).unwrap().lines().count();
        assert_eq!(lines, invoices + 1, "{what}: every invoice and a header");
        let rate = invoices as f64 / wall;
        println!(
            "  smbatch {what}: {wall:.2} s, {rate:.0} rows/s = {:.2} x the best plain rate (target >= 0.95)",
            rate / best.1
        );
    }
    // Where the time goes: the reads the export's join makes, by a plain client with as many in
    // flight as the join has (8): deal/info of every deal and client/info of every client (made
    // whatever --fields names), and invoice/info of every invoice (VAT, default export only).
    let joins: Vec<(Entity, i64)> = (seeded.dids.iter().map(|&d| (Entity::Deal, d)))
        .chain(seeded.clids.iter().map(|&c| (Entity::Client, c)))
        .collect();
    let vats: Vec<(Entity, i64)> = seeded
        .invoices
        .iter()
        .map(|&(crid, _, _)| (Entity::Invoice, crid))
        .collect();
    // The fixed cost of a run: the CLI's start, deal/steplist and one empty page (nothing paid).
    let empty = dir.join("paid.csv").display().to_string();
    let (fixed, _) = smbatch(
        &conn,
        &["export", "invoice", "--paid", "yes", "-o", empty.as_str()],
    );
    let j = plain_infos(&rt, &client, &joins, 8);
    let v = plain_infos(&rt, &client, &vats, 8);
    println!(
        "  where the time goes (plain client, 8 in flight): {} deal/info + {} client/info {j:.2} s; {} invoice/info (VAT) {v:.2} s; all {invoices} rows paged {:.2} s; a run exporting nothing (--paid yes) {fixed:.2} s",
        seeded.dids.len(),
        seeded.clids.len(),
        vats.len(),
        invoices as f64 / best.1
    );
    sb.stop();
}

fn payments(dir: &Path, db: &str, emulate: &EmulateConfig, seeded: &Seeded) {
    let invoices = &seeded.invoices[..];
    let rt = runtime();
    let copy = dir.join("pay.sqlite").display().to_string();
    let mut best = (0, 0.0f64);
    let mut line = String::from("  plain invoice/do (full sum), calls/s by requests in flight:");
    for n in [1, 2, 4, 8] {
        copy_db(db, &copy);
        let sb = serve(&copy, emulate);
        let client = CrmClient::new(&sb.connection()).unwrap();
        let x = plain_payments(&rt, &client, invoices, n);
        assert_eq!(
            paid_rows(&rt, &client),
            invoices.len(),
            "every invoice paid"
        );
        sb.stop();
        if x > best.1 {
            best = (n, x);
        }
        line.push_str(&format!(" {n}: {x:.1}"));
    }
    println!("{line}  (best {:.1} at {})", best.1, best.0);

    let bank = dir.join("bank.csv");
    let mut csv = std::io::BufWriter::new(std::fs::File::create(&bank).unwrap());
    writeln!(csv, "Номер счета;Дата оплаты;Сумма;Плательщик").unwrap();
    for (i, (_, number, sum)) in invoices.iter().enumerate() {
        let payer = format!("ООО «Поставщик {:02}»", (i / 2) % CLIENTS);
        writeln!(csv, "{number};05.11.2026;{sum},00;{payer}").unwrap();
    }
    csv.flush().unwrap();
    drop(csv);
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/payments.toml");
    let (bank, template) = (bank.display().to_string(), template.display().to_string());
    let import = |conn: &Connection, extra: &[&str], journal: &str| {
        let journal = dir.join(journal).display().to_string();
        let mut args = vec!["import", bank.as_str(), "-t", template.as_str()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--journal", journal.as_str()]);
        smbatch(conn, &args).0
    };
    copy_db(db, &copy);
    let sb = serve(&copy, emulate);
    let conn = sb.connection();
    let client = CrmClient::new(&conn).unwrap();
    let read = import(&conn, &["--dry-run"], "dry.journal");
    assert_eq!(paid_rows(&rt, &client), 0, "a dry run pays nothing");
    let wall = import(&conn, &[], "pay.journal");
    assert_eq!(
        paid_rows(&rt, &client),
        invoices.len(),
        "every invoice paid once"
    );
    sb.stop();
    let rate = invoices.len() as f64 / wall;
    println!(
        "  smbatch import bank.csv -t templates/payments.toml: {wall:.2} s, {rate:.1} payments/s = {:.2} x the best plain rate; reading the invoices before paying (--dry-run alone) {read:.2} s = {:.0} % of the import",
        rate / best.1,
        100.0 * read / wall
    );
}

fn main() {
    let invoices = env_num("INVOICES", 600);
    let spec = std::env::var("EMULATE").unwrap_or_else(|_| "real-2core".into());
    let emulate: EmulateConfig = spec.parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("seeded.sqlite").display().to_string();
    let started = Instant::now();
    let seeded = seed(&db, invoices);
    println!(
        "accounting_throughput: {invoices} invoices on {} deals of {CLIENTS} clients (seeded in {:.1} s), server emulating '{spec}'",
        invoices.div_ceil(2),
        started.elapsed().as_secs_f64()
    );
    export(dir.path(), &db, &emulate, &seeded);
    payments(dir.path(), &db, &emulate, &seeded);
}
