//! `smbatch export` end to end: the real CLI against the in-process sandbox, files read back.

use crate::fixtures::{call, start, APIKEY, LOGIN};
use assert_cmd::Command;
use calamine::{open_workbook, Data, Reader, Xlsx};
use serde_json::{json, Value};
use smbatch::sandbox::{FaultConfig, Sandbox};
use std::collections::HashSet;
use std::path::Path;

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) fn api(sb: &Sandbox, path: &str, body: Value) -> Value {
    rt().block_on(async {
        let c = reqwest::Client::new();
        call(&c, &sb.url(), path, body).await
    })
}

/// `n` persons named `Сотрудник NNNN` (Cyrillic), added through `add.list` in chunks.
fn seed_persons(sb: &Sandbox, from: usize, n: usize) {
    for start in (from..from + n).step_by(200) {
        let end = (start + 200).min(from + n);
        let rows: Vec<Value> = (start..end)
            .map(|i| json!({"person": format!("Сотрудник {i:04}"), "tel": "+7 (342) 200-00-00", "mail": format!("s{i}@пример.рф")}))
            .collect();
        let r = api(
            sb,
            "/developer/v3/person/add.list",
            json!({ "persons": rows }),
        );
        assert_eq!(r.as_array().unwrap().len(), end - start, "{r}");
    }
}

pub(crate) fn smbatch(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    Command::cargo_bin("smbatch")
        .unwrap()
        .env("SMBATCH_APIKEY", APIKEY)
        .env("SMBATCH_CONFIG", "/nonexistent/smbatch.toml")
        .env("SMBATCH_DATA_DIR", crate::common::data_dir())
        .arg("export")
        .args(args)
        .args(["--url", &sb.url(), "--login", LOGIN, "--quiet"])
        .output()
        .unwrap()
}

pub(crate) fn sheet(path: &Path, name: &str) -> calamine::Range<Data> {
    let mut wb: Xlsx<_> = open_workbook(path).unwrap();
    wb.worksheet_range(name).unwrap()
}

pub(crate) fn col(range: &calamine::Range<Data>, name: &str) -> usize {
    (0..range.width())
        .find(|&c| range.get((0, c)) == Some(&Data::String(name.into())))
        .unwrap_or_else(|| panic!("no column {name}"))
}

pub(crate) fn text(d: Option<&Data>) -> String {
    match d {
        Some(Data::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

#[test]
fn persons_to_xlsx_every_row_once_typed_and_formula_text_kept_as_text() {
    let sb = start();
    seed_persons(&sb, 0, 450);
    let r = api(
        &sb,
        "/developer/v3/person/add.list",
        json!({"persons": [{"person": "=SUM(1,2)", "mail": "x@y.z"}]}),
    );
    assert_eq!(r[0]["result"], "Контакт добавлен", "{r}");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("persons.xlsx");
    let o = smbatch(&sb, &["person", "-o", out.to_str().unwrap(), "--json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["entities"][0]["rows"], 451);
    assert_eq!(summary["entities"][0]["server_count"], 451);
    assert!(!dir.path().join("persons.partial.xlsx").exists());
    let range = sheet(&out, "person");
    assert_eq!(range.height(), 452);
    let (pid, person, created) = (
        col(&range, "pid"),
        col(&range, "person"),
        col(&range, "date_create"),
    );
    let mut names = HashSet::new();
    let mut last_pid = 0.0;
    for r in 1..range.height() {
        // Ids are numbers, in order (oldest first), each once.
        let Some(Data::Float(p)) = range.get((r, pid)) else {
            panic!("pid not a number in row {r}")
        };
        assert!(*p > last_pid);
        last_pid = *p;
        assert!(matches!(range.get((r, created)), Some(Data::DateTime(_))));
        names.insert(text(range.get((r, person))));
    }
    let expected: HashSet<String> = (0..450)
        .map(|i| format!("Сотрудник {i:04}"))
        .chain(["=SUM(1,2)".to_string()])
        .collect();
    assert_eq!(names, expected);
}

#[test]
fn csv_in_windows_1251_and_utf8_bom_keeps_cyrillic() {
    let sb = start();
    seed_persons(&sb, 0, 5);
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("p1251.csv");
    let o = smbatch(
        &sb,
        &[
            "person",
            "-o",
            cp.to_str().unwrap(),
            "--encoding",
            "windows-1251",
            "--fields",
            "pid,person,tel",
            "--escape-formulas",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let raw = std::fs::read(&cp).unwrap();
    let (t, _, bad) = encoding_rs::WINDOWS_1251.decode(&raw);
    assert!(!bad);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines[0], "pid;person;tel");
    assert_eq!(lines.len(), 6);
    assert!(
        lines[1].ends_with(";Сотрудник 0000;+7 (342) 200-00-00"),
        "{}",
        lines[1]
    );

    let bom = dir.path().join("pbom.csv");
    let o = smbatch(
        &sb,
        &[
            "person",
            "-o",
            bom.to_str().unwrap(),
            "--headers",
            "titles",
            "--fields",
            "pid,person",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bytes = std::fs::read(&bom).unwrap();
    assert_eq!(&bytes[..3], b"\xEF\xBB\xBF");
    let t = std::str::from_utf8(&bytes[3..]).unwrap();
    assert!(
        t.starts_with("Уникальный идентификатор записи контакта;Ф.И.О.\n"),
        "{t}"
    );
    assert!(t.contains(";Сотрудник 0004\n"));
}

#[test]
fn history_outside_today_is_exported_and_deals_and_clients_typed() {
    let sb = start();
    let r = api(
        &sb,
        "/developer/v3/client/add.list",
        json!({"client": [{"title": "ООО «Ромашка»", "type": "client"}]}),
    );
    let clid = r[0]["data"].as_i64().expect("clid");
    let r = api(
        &sb,
        "/developer/v3/history/add.list",
        json!({"list": [
            {"content": "Старый звонок", "datum": "2015-05-30 10:00:00", "clid": clid, "tip": "Исх. звонок"},
            {"content": "Сегодня", "clid": clid, "tip": "Исх. звонок"}
        ]}),
    );
    assert_eq!(r[1]["result"], "Успешно", "{r}");
    let r = api(
        &sb,
        "/developer/v3/deal/add",
        json!({"clid": clid, "title": "Поставка", "kol": "125000.50"}),
    );
    assert_eq!(r["result"], "Успешно", "{r}");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("all.xlsx");
    let o = smbatch(&sb, &["--all", "-o", out.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let h = sheet(&out, "history");
    let content = col(&h, "content");
    let texts: Vec<String> = (1..h.height()).map(|r| text(h.get((r, content)))).collect();
    assert!(texts.contains(&"Старый звонок".to_string()), "{texts:?}");
    assert!(texts.contains(&"Сегодня".to_string()));

    let d = sheet(&out, "deal");
    assert_eq!(d.height(), 2);
    assert_eq!(d.get((1, col(&d, "kol"))), Some(&Data::Float(125000.5)));
    assert!(text(d.get((1, col(&d, "title")))).ends_with("Поставка"));

    let c = sheet(&out, "client");
    assert_eq!(text(c.get((1, col(&c, "title")))), "Ромашка, ООО");
    assert_eq!(c.get((1, col(&c, "clid"))), Some(&Data::Float(clid as f64)));
    // Every entity has its sheet, even an empty one, invoices included; the deal and invoice
    // sheets are each followed by their totals.
    let wb: Xlsx<_> = open_workbook(&out).unwrap();
    assert_eq!(
        wb.sheet_names(),
        [
            "client",
            "person",
            "deal",
            "deal totals",
            "task",
            "history",
            "invoice",
            "invoice totals"
        ]
    );
}

#[test]
fn unknown_fields_bad_dates_and_entities_are_usage_errors() {
    let sb = start();
    seed_persons(&sb, 0, 3);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.xlsx");
    let o = smbatch(
        &sb,
        &[
            "person",
            "-o",
            out.to_str().unwrap(),
            "--fields",
            "pid,nosuch",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nosuch") && err.contains("person") && err.contains("mail"),
        "{err}"
    );
    assert!(!out.exists() && !dir.path().join("p.partial.xlsx").exists());

    let o = smbatch(&sb, &["person", "--from", "22.11.2026"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("YYYY-MM-DD"));

    let o = smbatch(&sb, &["persons"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("client, person, deal, task, history"));
}

#[test]
fn transient_faults_still_give_a_complete_file() {
    let sb = start();
    seed_persons(&sb, 0, 1000);
    sb.set_faults(FaultConfig {
        error_rate: 0.3,
        html_fatal: 0.1,
        seed: 11,
        ..FaultConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.csv");
    let o = smbatch(
        &sb,
        &[
            "person",
            "-o",
            out.to_str().unwrap(),
            "--fields",
            "pid,person",
            "--attempts",
            "12",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let t = std::fs::read_to_string(&out).unwrap();
    let ids: HashSet<&str> = t
        .lines()
        .skip(1)
        .map(|l| l.split(';').next().unwrap())
        .collect();
    assert_eq!(ids.len(), 1000);
    assert_eq!(t.lines().count(), 1001);
}

#[test]
fn a_server_that_keeps_failing_leaves_a_partial_file_and_exit_2() {
    let sb = start();
    seed_persons(&sb, 0, 10);
    sb.set_faults(FaultConfig {
        error_rate: 1.0,
        ..FaultConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.xlsx");
    let o = smbatch(
        &sb,
        &["person", "-o", out.to_str().unwrap(), "--attempts", "2"],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("p.partial.xlsx") && err.contains("INCOMPLETE"),
        "{err}"
    );
    assert!(dir.path().join("p.partial.xlsx").exists());
    assert!(!out.exists());
}

#[test]
fn state_file_exports_only_what_changed_since_the_last_run() {
    let sb = start();
    seed_persons(&sb, 0, 3);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let run = |name: &str| {
        let out = dir.path().join(name);
        let o = smbatch(
            &sb,
            &[
                "person",
                "-o",
                out.to_str().unwrap(),
                "--state",
                state.to_str().unwrap(),
                "--json",
            ],
        );
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let s: Value = serde_json::from_slice(&o.stdout).unwrap();
        s["entities"][0]["rows"].as_u64().unwrap()
    };
    assert_eq!(run("1.xlsx"), 3);
    // Same second or not, the records already exported are not repeated.
    seed_persons(&sb, 100, 2);
    assert_eq!(run("2.xlsx"), 2);
    assert_eq!(run("3.xlsx"), 0);
    let range = sheet(&dir.path().join("2.xlsx"), "person");
    let person = col(&range, "person");
    assert_eq!(text(range.get((1, person))), "Сотрудник 0100");
}

/// `export ENTITY -o DIR/NAME --json` plus `extra`: the summary of its one entity and stderr;
/// asserts exit 0.
pub(crate) fn export_json(
    sb: &Sandbox,
    entity: &str,
    out: &Path,
    extra: &[&str],
) -> (Value, String) {
    let mut args = vec![entity, "-o", out.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let o = smbatch(sb, &args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(0), "{err}");
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    (s["entities"][0].clone(), err)
}

/// The values of one column of a CSV export (`;`-separated, UTF-8 with BOM, no quoting needed).
pub(crate) fn csv_column(path: &Path, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.trim_start_matches('\u{feff}');
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(b';')
        .from_reader(text.as_bytes());
    let headers = rdr.headers().unwrap().clone();
    let i = headers
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {headers:?}"));
    rdr.records().map(|r| r.unwrap()[i].to_string()).collect()
}

fn add_client(sb: &Sandbox, title: &str) -> i64 {
    let r = api(
        sb,
        "/developer/v3/client/add.list",
        json!({"client": [{"title": title, "type": "client"}]}),
    );
    r[0]["data"].as_i64().unwrap_or_else(|| panic!("{r}"))
}

fn add_history(sb: &Sandbox, rows: Value) {
    let r = api(
        sb,
        "/developer/v3/history/add.list",
        json!({ "list": rows }),
    );
    for row in r.as_array().unwrap() {
        assert_eq!(row["result"], "Успешно", "{r}");
    }
}

#[test]
fn history_state_catches_back_dated_rows_and_rows_entered_after_a_future_dated_one() {
    let sb = start();
    let clid = add_client(&sb, "ООО «Ромашка»");
    add_history(
        &sb,
        json!([
            {"content": "Звонок сегодня", "clid": clid, "tip": "Исх. звонок"},
            {"content": "Встреча в будущем", "datum": "2030-01-15 10:00:00", "clid": clid, "tip": "Встреча"}
        ]),
    );
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let st = ["--state", state.to_str().unwrap()];
    let first = dir.path().join("1.csv");
    let (s, _) = export_json(&sb, "history", &first, &st);
    let contents = csv_column(&first, "content");
    assert!(
        contents.contains(&"Встреча в будущем".to_string()),
        "{contents:?}"
    );
    assert_eq!(s["rows"].as_u64().unwrap() as usize, contents.len());

    // Entered after the first run: one dated years back, one today (before the future row).
    add_history(
        &sb,
        json!([
            {"content": "Задним числом", "datum": "2015-05-30 10:00:00", "clid": clid, "tip": "Исх. звонок"},
            {"content": "Ещё звонок сегодня", "clid": clid, "tip": "Исх. звонок"}
        ]),
    );
    let second = dir.path().join("2.csv");
    let (s, err) = export_json(&sb, "history", &second, &st);
    assert_eq!(
        csv_column(&second, "content"),
        ["Задним числом", "Ещё звонок сегодня"]
    );
    assert_eq!(
        (s["new"].as_u64(), s["changed"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(s["unchanged"].as_u64().unwrap() as usize, contents.len());
    assert_eq!(s["gone"], 0);
    assert!(
        err.contains("history: rows can be entered back-dated"),
        "{err}"
    );

    // Nothing changed: nothing exported, exit 0.
    let third = dir.path().join("3.csv");
    let (s, _) = export_json(&sb, "history", &third, &st);
    assert_eq!(s["rows"], 0);
    assert!(csv_column(&third, "content").is_empty());
}

#[test]
fn deal_state_catches_a_same_day_update_and_changed_since_compares_whole_days() {
    let sb = start();
    let clid = add_client(&sb, "ООО «Василёк»");
    let mut dids = Vec::new();
    for title in ["Поставка", "Монтаж"] {
        let r = api(
            &sb,
            "/developer/v3/deal/add",
            json!({"clid": clid, "title": title, "kol": "1000"}),
        );
        dids.push(r["data"].as_i64().unwrap_or_else(|| panic!("{r}")));
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let st = ["--state", state.to_str().unwrap()];
    let (s, _) = export_json(&sb, "deal", &dir.path().join("1.csv"), &st);
    assert_eq!(s["rows"], 2);

    // Changed later on the same day: datum_izm stays today's date.
    let r = api(
        &sb,
        "/developer/v3/deal/update",
        json!({"did": dids[1], "title": "Монтаж и наладка", "kol": "2500"}),
    );
    assert_eq!(r["data"], dids[1], "{r}");
    let second = dir.path().join("2.csv");
    let (s, err) = export_json(&sb, "deal", &second, &st);
    assert_eq!(csv_column(&second, "did"), [dids[1].to_string()]);
    assert_eq!(csv_column(&second, "title"), ["Монтаж и наладка"]);
    assert_eq!(
        (s["new"].as_u64(), s["changed"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(err.contains("deal: changes are compared"), "{err}");

    // A deleted deal is counted as gone, not exported.
    let r = api(&sb, "/developer/v3/deal/delete", json!({"did": dids[0]}));
    assert_eq!(r["result"], "Сделка удалена", "{r}");
    let third = dir.path().join("3.csv");
    let (s, err) = export_json(&sb, "deal", &third, &st);
    assert_eq!((s["rows"].as_u64(), s["gone"].as_u64()), (Some(0), Some(1)));
    assert!(
        err.contains("1 record(s) exported earlier are no longer listed"),
        "{err}"
    );

    // datum_izm has no time: a moment late today still finds the deal changed today.
    let today = chrono::Local::now().format("%Y-%m-%d").to_string();
    let since = format!("{today} 23:59:00");
    let (s, err) = export_json(
        &sb,
        "deal",
        &dir.path().join("since.csv"),
        &["--changed-since", &since],
    );
    assert_eq!(s["rows"], 1);
    assert!(err.contains("applied to whole days"), "{err}");
    assert!(s["notes"].to_string().contains(&today));
}

#[test]
fn task_state_is_never_silent_and_catches_edits() {
    let sb = start();
    let clid = add_client(&sb, "ИП Лютиков");
    let r = api(
        &sb,
        "/developer/v3/task/add",
        json!({"title": "Позвонить", "datum": "2026-12-01", "clid": clid}),
    );
    let tid = r["data"].as_i64().unwrap_or_else(|| panic!("{r}"));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let out = dir.path().join("t.csv");
    // --quiet (as smbatch() passes) still prints the note.
    let o = smbatch(
        &sb,
        &[
            "task",
            "-o",
            out.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("smbatch: note: task: the API gives no change date"),
        "{err}"
    );
    let st = ["--state", state.to_str().unwrap()];
    let (s, err) = export_json(&sb, "task", &out, &st);
    assert_eq!(s["rows"], 0);
    assert!(s["notes"][0].as_str().unwrap().contains("no change date"));
    assert!(err.contains("task: the API gives no change date"), "{err}");

    let r = api(
        &sb,
        "/developer/v3/task/update",
        json!({"id": tid, "title": "Позвонить ещё раз", "datum": "2026-12-01", "clid": clid}),
    );
    assert_eq!(r["result"], "Успешно", "{r}");
    let (s, _) = export_json(&sb, "task", &out, &st);
    assert_eq!(s["changed"], 1);
    assert_eq!(csv_column(&out, "title"), ["Позвонить ещё раз"]);
}

#[test]
fn client_export_is_newest_first_as_the_server_lists_it() {
    let sb = start();
    let ids: Vec<i64> = ["Альфа", "Бета", "Гамма"]
        .iter()
        .map(|t| add_client(&sb, t))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.csv");
    export_json(&sb, "client", &out, &[]);
    let mut expected: Vec<String> = ids.iter().map(i64::to_string).collect();
    expected.reverse();
    assert_eq!(csv_column(&out, "clid"), expected);
}

#[test]
fn history_columns_are_the_same_whatever_rows_come_first() {
    let headers = |linked_first: bool| {
        let sb = start();
        let clid = add_client(&sb, "ООО «Ромашка»");
        let r = api(
            &sb,
            "/developer/v3/person/add.list",
            json!({"persons": [{"person": "Иванов Иван", "clid": clid}]}),
        );
        let pid = r[0]["data"].as_i64().unwrap_or_else(|| panic!("{r}"));
        let linked = json!({"content": "С контактом", "clid": clid, "pid": pid});
        let plain = json!({"content": "Без контакта", "clid": clid});
        let rows = if linked_first {
            json!([linked, plain])
        } else {
            json!([plain, plain])
        };
        add_history(&sb, rows);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("h.csv");
        export_json(&sb, "history", &out, &[]);
        let text = std::fs::read_to_string(&out).unwrap();
        let header = text.lines().next().unwrap().to_string();
        if linked_first {
            assert!(text.contains("Иванов Иван"), "{text}");
        }
        header
    };
    let a = headers(false);
    assert_eq!(a, headers(true));
    assert!(a.contains(";person;"), "{a}");
}

#[test]
fn an_old_state_file_is_honoured_once_then_fingerprints_take_over() {
    let sb = start();
    seed_persons(&sb, 0, 3);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    // The older format: a change-date mark (here after every record) and no fingerprints.
    std::fs::write(
        &state,
        r#"{"entities":{"person":{"changed_up_to":"2099-01-01 00:00:00","ids_at_mark":[],"exported_at":"2026-11-22 23:00:00","rows":3}}}"#,
    )
    .unwrap();
    let st = ["--state", state.to_str().unwrap()];
    let (s, err) = export_json(&sb, "person", &dir.path().join("1.csv"), &st);
    assert_eq!(
        (s["rows"].as_u64(), s["unchanged"].as_u64()),
        (Some(0), Some(3))
    );
    assert!(err.contains("older format"), "{err}");
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(
        !saved.contains("changed_up_to") && saved.contains("\"records\""),
        "{saved}"
    );

    seed_persons(&sb, 100, 1);
    let out = dir.path().join("2.csv");
    let (s, err) = export_json(&sb, "person", &out, &st);
    assert_eq!(csv_column(&out, "person"), ["Сотрудник 0100"]);
    assert_eq!(
        (s["new"].as_u64(), s["unchanged"].as_u64()),
        (Some(1), Some(3))
    );
    assert!(!err.contains("older format"), "{err}");
}
