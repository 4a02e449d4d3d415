//! Validation throughput and memory: `cargo bench --bench validate_throughput`.
//! Generates Windows-1251 CSVs (100k and 1M rows, 10 columns) and a 100k-row XLSX in a temp dir,
//! validates them through the library (source → template → map_file on rayon → tally), and
//! compares with a plain csv-crate read of the same file. Peak RSS is VmHWM of this process,
//! which only grows: the runs go small to big, so a flat figure means memory does not grow.

use smbatch::report::validation::Tally;
use smbatch::source::{self, SourceOptions};
use smbatch::template::{map_file, MapOptions, Template};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
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
        "Обсудили поставку; перезвонить в понедельник".into(),
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

fn peak_rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|k| k / 1024.0)
        .unwrap_or(0.0)
}

fn validate(path: &Path, template: &Template) -> (u64, u64, f64) {
    let t0 = Instant::now();
    let src = source::open(path, &SourceOptions::default()).unwrap();
    let mapper = Arc::new(template.bind(src.headers(), "bench").unwrap());
    let mut tally = Tally::new(
        "bench",
        "bench",
        &src.describe(),
        &mapper.entities(),
        vec![],
    );
    for item in map_file(src, mapper, MapOptions::default()) {
        let (_row, mut m) = item.unwrap();
        tally.add(&mut m);
    }
    let s = tally.finish(5);
    (s.rows_read, s.invalid_rows, t0.elapsed().as_secs_f64())
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

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let template = Template::parse(Path::new("bench.toml"), TEMPLATE).unwrap();
    println!("threads: {}", rayon::current_num_threads());
    for rows in [100_000u64, 1_000_000] {
        let p = dir.path().join(format!("bench-{rows}.csv"));
        gen_csv(&p, rows);
        let mb = std::fs::metadata(&p).unwrap().len() as f64 / 1e6;
        let (n, bad, secs) = validate(&p, &template);
        let (n2, secs2) = plain_csv_read(&p);
        assert_eq!(n, n2);
        println!(
            "CSV  {rows:>9} rows ({mb:.0} MB cp1251): validate {:>9.0} rows/s ({secs:.2} s, {bad} invalid) | plain csv read {:>9.0} rows/s | ratio {:.1}x | peak RSS {:.1} MB",
            n as f64 / secs,
            n2 as f64 / secs2,
            secs / secs2,
            peak_rss_mb()
        );
        std::fs::remove_file(&p).ok();
    }
    let p = dir.path().join("bench.xlsx");
    gen_xlsx(&p, 100_000);
    let (n, _, secs) = validate(&p, &template);
    println!(
        "XLSX {n:>9} rows: validate {:>9.0} rows/s ({secs:.2} s) | peak RSS {:.1} MB",
        n as f64 / secs,
        peak_rss_mb()
    );
}
