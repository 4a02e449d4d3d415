//! Every source row accounted for: `validate`, `import --dry-run`, `import` and `reconcile` give
//! the same per-entity figures for the same file and template; every row has exactly one outcome
//! and every summary adds up.

use crate::common::root;
use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;
use smbatch::crm::Entity;
use smbatch::sandbox::{Sandbox, SandboxConfig};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn run(sub: &str, file: &Path, args: &[&str], sb: Option<&Sandbox>) -> Output {
    let mut c = Command::cargo_bin("smbatch").unwrap();
    c.arg(sub)
        .arg(file)
        .arg("--template")
        .arg(root().join("templates/migration-flat.toml"))
        .args(args)
        .arg("--json")
        .env("SMBATCH_CONFIG", "/nonexistent/smbatch.toml")
        .env("SMBATCH_DATA_DIR", crate::common::data_dir())
        .env_remove("SMBATCH_URL")
        .stdin(Stdio::null());
    if let Some(sb) = sb {
        c.arg("--url")
            .arg(sb.url())
            .arg("--login")
            .arg(sb.connection().login)
            .env("SMBATCH_APIKEY", sb.connection().apikey.expose());
    }
    c.output().unwrap()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// Rows: Σ outcomes = rows. Per entity: read = valid + invalid, records = Σ record outcomes.
fn assert_adds_up(s: &Value) {
    let rows = s["rows"].as_u64().unwrap();
    let outcomes: u64 = s["rows_by_outcome"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(rows, outcomes, "{s}");
    for (e, c) in s["entities"].as_object().unwrap() {
        let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("{e}.{k} in {c}"));
        assert_eq!(n("read"), n("valid") + n("invalid"), "{e}: {c}");
        let settled = n("created")
            + n("existing")
            + n("earlier")
            + n("failed")
            + n("unresolved")
            + n("not_sent");
        assert_eq!(n("records"), settled, "{e}: {c}");
    }
}

fn same_figures_everywhere(file: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let report = |n: &str| dir.path().join(n).to_str().unwrap().to_string();

    let validated = json(&run("validate", file, &[], None));
    let dry = run(
        "import",
        file,
        &["--dry-run", "--report", &report("dry.xlsx")],
        None,
    );
    assert_eq!(dry.status.code(), Some(0), "a dry run exits 0");
    let dry = json(&dry);
    assert_eq!(dry["dry_run"], true);
    assert_adds_up(&dry);

    let sb = Sandbox::start(SandboxConfig::default()).unwrap();
    let imported = json(&run(
        "import",
        file,
        &["--report", &report("import.xlsx")],
        Some(&sb),
    ));
    assert_adds_up(&imported);
    let reconciled = json(&run(
        "reconcile",
        file,
        &["-o", &report("reconcile.xlsx"), "-q"],
        Some(&sb),
    ));

    assert_eq!(dry["rows"], validated["rows_read"]);
    assert_eq!(imported["rows"], validated["rows_read"]);
    for e in ["client", "person", "history"] {
        let v = &validated["entities"][e];
        for s in [&dry, &imported] {
            let c = &s["entities"][e];
            assert_eq!(c["valid"], v["valid"], "{e}: validate {v} vs import {c}");
            assert_eq!(
                c["invalid"], v["invalid"],
                "{e}: validate {v} vs import {c}"
            );
            assert_eq!(c["records"], v["distinct_keys"], "{e}: validate {v} vs {c}");
        }
        // What the dry run would create is what the import created, and what reconcile expects.
        assert_eq!(
            imported["entities"][e]["created"], dry["entities"][e]["created"],
            "{e}"
        );
        assert_eq!(
            reconciled["entities"][e]["in_source"], v["distinct_keys"],
            "{e}: {reconciled}"
        );
        assert_eq!(
            reconciled["entities"][e]["matched"], v["distinct_keys"],
            "{e}: {reconciled}"
        );
    }
    let entity = |name: &str| match name {
        "client" => Entity::Client,
        "person" => Entity::Person,
        _ => Entity::History,
    };
    for e in ["client", "person", "history"] {
        assert_eq!(
            sb.count(entity(e)),
            validated["entities"][e]["distinct_keys"].as_u64().unwrap(),
            "{e} stored"
        );
    }
    // The dry run left no journal behind and sent nothing anywhere.
    assert!(!dir.path().join("dry.journal.sqlite").exists());
}

#[test]
fn validate_dry_run_import_and_reconcile_agree_on_the_cp1251_sample() {
    same_figures_everywhere(&root().join("samples/migration-cp1251.csv"));
}

#[test]
fn validate_dry_run_import_and_reconcile_agree_on_the_xlsx_sample() {
    same_figures_everywhere(&root().join("samples/migration.xlsx"));
}

/// Blank rows in the middle and at the end are rows of the file too: they are counted, reported
/// as `blank`, and do not make the run fail.
#[test]
fn blank_rows_are_counted_and_reported_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.csv");
    let text = "Внешний ID;Компания;ИНН;Контактное лицо;Должность;Телефон;E-mail;Дата последней активности;Тип активности;Текст активности\n\
        E-1;ООО Ромашка;7701234567;Иванов Иван;;;ivanov@firm.ru;;;\n\
        ;;;;;;;;;\n\
        E-2;ООО Ромашка;7701234567;Петров Пётр;;;petrov@firm.ru;;;\n\
        ;;;;;;;;;\n";
    std::fs::write(&file, text).unwrap();
    let csv = dir.path().join("r.csv");
    let out = run(
        "import",
        &file,
        &[
            "--dry-run",
            "--csv-report",
            csv.to_str().unwrap(),
            "--report",
            dir.path().join("r.xlsx").to_str().unwrap(),
        ],
        None,
    );
    let s = json(&out);
    assert_eq!(s["rows"], 4, "{s}");
    assert_eq!(s["rows_by_outcome"]["blank"], 2, "{s}");
    assert_eq!(s["rows_by_outcome"]["created"], 2, "{s}");
    let lines = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(lines.lines().count(), 5, "header + 4 rows: {lines}");
    assert_eq!(lines.lines().filter(|l| l.contains(";blank;")).count(), 2);
}
