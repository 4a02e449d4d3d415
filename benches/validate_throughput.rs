//! Validation throughput and memory: `cargo bench --bench validate_throughput`.
//!
//! Generates Windows-1251 CSVs (100k and 1M rows, 10 columns) and a 100k-row XLSX in a temp dir,
//! then runs each measurement in a **child process** (this binary re-executed with `--child`), so
//! every peak RSS (VmHWM) belongs to one run only. A child runs the validate job itself
//! (`ValidateJob`, what `smbatch validate FILE --template T` runs: read + decode, map and check on
//! rayon, fingerprint, tally "same key, different values", summary) without a report file (the
//! CLI writes one only with `--report`/`--csv-report`). The CSV child then does a plain csv-crate
//! read of the same file (after VmHWM is taken) for the ratio. Each line also gives the child's
//! CPU time: on a loaded machine, rows per CPU-second says more than wall-clock rows/s. Each
//! figure is the best of three runs (validate and xsv alike).

use smbatch::job::ValidateJob;
use smbatch::source::SourceOverrides;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

const TEMPLATE: &str = r#"
[[entity]]
type = "client"
key = "{ИНН}"
[entity.fields]
title = { column = "Компания", transform = ["collapse_spaces"], required = true }
uid = { column = "ИНН", transform = ["digits"], regex = "[0-9]{10}|[0-9]{12}" }

[[entity]]
type = "person"
key = "{ID}"
[entity.fields]
person = { column = "ФИО", required = true }
ptitle = { column = "Должность" }
tel = { column = "Телефон", transform = ["phone"], check = "phone" }
mail = { column = "E-mail", transform = ["trim", "lower"], check = "email" }
clid = { ref = "client" }

[[entity]]
type = "history"
key = "{ID}"
[entity.fields]
datum = { column = "Дата", date = ["%d.%m.%Y %H:%M"] }
tip = { column = "Тип" }
des = { column = "Текст" }
clid = { ref = "client" }
pid = { ref = "person" }
"#;

const HEAD: [&str; 10] = [
    "ID",
    "Компания",
    "ИНН",
    "ФИО",
    "Должность",
    "Телефон",
    "E-mail",
    "Дата",
    "Тип",
    "Текст",
];

fn row(i: u64) -> [String; 10] {
    [
        format!("EXT-{i}"),
        format!("ООО «Компания {}»", i % 5000),
        format!("59{:08}", i % 5000),
        format!("Иванов Иван {i}"),
        "Менеджер по закупкам".into(),
        format!(
            "8 (342) {:03}-{:02}-{:02}",
            i % 1000,
            i % 100,
            (i / 7) % 100
        ),
        if i % 1000 == 7 {
            "bad-mail".into()
        } else {
            format!("user{i}@example.ru")
        },
        format!("{:02}.{:02}.2024 10:{:02}", 1 + i % 28, 1 + i % 12, i % 60),
        "Звонок".into(),
        "Обсудили поставку, перезвонить в понедельник".into(),
    ]
}

fn gen_csv(path: &Path, rows: u64) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = std::io::BufWriter::new(f);
    let mut line = String::new();
    let enc = |s: &str| encoding_rs::WINDOWS_1251.encode(s).0.into_owned();
    w.write_all(&enc(&(HEAD.join(";") + "\r\n"))).unwrap();
    for i in 0..rows {
        line.clear();
        line.push_str(&row(i).join(";"));
        line.push_str("\r\n");
        w.write_all(&enc(&line)).unwrap();
    }
    // On disk before it is read: the kernel writing it back while the child validates took
    // CPU from the child (a fifth of its speed on a 2-core machine).
    w.into_inner().unwrap().sync_all().unwrap();
}

fn gen_xlsx(path: &Path, rows: u64) {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet_with_constant_memory();
    for (j, h) in HEAD.iter().enumerate() {
        ws.write_string(0, j as u16, *h).unwrap();
    }
    for i in 0..rows {
        for (j, v) in row(i).iter().enumerate() {
            ws.write_string(i as u32 + 1, j as u16, v).unwrap();
        }
    }
    wb.save(path).unwrap();
}

fn proc_status(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|k| k / 1024.0)
        .unwrap_or(0.0)
}

/// User + system CPU seconds of this process so far (all threads).
fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime) of /proc/PID/stat are 11 and 12 after the ')'.
    (t(11) + t(12)) / 100.0
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `smbatch validate FILE --template T` without a report, as the CLI runs it (the job itself):
/// returns (rows, invalid, wall s, cpu s).
fn validate(path: &Path, template: &Path) -> (u64, u64, f64, f64) {
    let c0 = cpu_secs();
    let t0 = Instant::now();
    let job = ValidateJob {
        file: path.to_path_buf(),
        template: template.to_path_buf(),
        source: SourceOverrides::default(),
        report: None,
        csv_report: None,
        server: None,
        show: None,
    };
    let s = job.run(&mut |_| {}).unwrap().summary;
    (
        s.rows_read,
        s.invalid_rows,
        t0.elapsed().as_secs_f64(),
        cpu_secs() - c0,
    )
}

fn plain_csv_read(path: &Path) -> (u64, f64) {
    let t0 = Instant::now();
    let mut r = csv::ReaderBuilder::new()
        .delimiter(b';')
        .from_path(path)
        .unwrap();
    let mut rec = csv::ByteRecord::new();
    let mut n = 0;
    while r.read_byte_record(&mut rec).unwrap() {
        n += 1;
    }
    (n, t0.elapsed().as_secs_f64())
}

/// Seconds `xsv select -d ';' 1-10 FILE > /dev/null` takes (`cargo install xsv`), if xsv is on PATH
/// (the best of [`RUNS`]).
fn xsv_select(path: &Path) -> Option<f64> {
    let once = || {
        let t0 = Instant::now();
        let st = std::process::Command::new("xsv")
            .args(["select", "-d", ";", "1-10"])
            .arg(path)
            .stdout(std::process::Stdio::null())
            .status()
            .ok()?;
        st.success().then(|| t0.elapsed().as_secs_f64())
    };
    (0..RUNS)
        .map(|_| once())
        .min_by(|a, b| a.unwrap_or(f64::MAX).total_cmp(&b.unwrap_or(f64::MAX)))?
}

/// Runs of each measurement; the best is shown.
const RUNS: usize = 3;

fn child(kind: &str, path: &Path) {
    let template = path.with_extension("toml");
    std::fs::write(&template, TEMPLATE).unwrap();
    let load0 = load();
    // The best of RUNS (wall time; its CPU time with it): on a shared virtual machine a single
    // run can be a third slower than the next. Memory does not add up across runs (VmHWM is
    // the highest any one reached).
    let (n, bad, secs, cpu) = (0..RUNS)
        .map(|_| validate(path, &template))
        .min_by(|a, b| a.2.total_cmp(&b.2))
        .expect("RUNS > 0");
    let peak = proc_status("VmHWM:");
    let mb = std::fs::metadata(path).unwrap().len() as f64 / 1e6;
    if kind == "csv" {
        let (n2, secs2) = plain_csv_read(path);
        assert_eq!(n, n2);
        println!(
            "CSV  {n:>9} rows ({mb:.0} MB cp1251): validate {:>7.0} rows/s ({secs:.2} s wall, {cpu:.2} s CPU = {:.0} rows/CPU-s, {bad} invalid) | plain csv read {:>7.0} rows/s, ratio {:.1}x | peak RSS {peak:.1} MB | load {load0}",
            n as f64 / secs,
            n as f64 / cpu.max(0.01),
            n2 as f64 / secs2,
            secs / secs2,
        );
        match xsv_select(path) {
            Some(x) => println!(
                "     xsv select 1-10: {x:.2} s wall | validate speed / xsv select speed = {:.2} (target >= 0.5)",
                x / secs
            ),
            None => println!("     (xsv not on PATH: `cargo install xsv` to compare with xsv select)"),
        }
    } else {
        println!(
            "XLSX {n:>9} rows ({mb:.0} MB): validate {:>7.0} rows/s ({secs:.2} s wall, {cpu:.2} s CPU, {bad} invalid) | peak RSS {peak:.1} MB | load {load0}",
            n as f64 / secs,
        );
    }
}

fn run_child(kind: &str, path: &Path) {
    let exe = std::env::current_exe().unwrap();
    let st = std::process::Command::new(exe)
        .args(["--child", kind])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success(), "child {kind} {} failed", path.display());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], Path::new(&args[i + 2]));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    println!(
        "threads: {} | each line is a separate child process (its own VmHWM)",
        rayon::current_num_threads()
    );
    for rows in [100_000u64, 1_000_000] {
        let p = dir.path().join(format!("bench-{rows}.csv"));
        gen_csv(&p, rows);
        run_child("csv", &p);
        std::fs::remove_file(&p).ok();
    }
    let p = dir.path().join("bench.xlsx");
    gen_xlsx(&p, 100_000);
    run_child("xlsx", &p);
}
