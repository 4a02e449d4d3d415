//! One CLI: the flags every command shares (`--sandbox [DB]` with one default file, `-o`,
//! `-q`, `--json`), output extensions refused up front, completions, man pages and the examples
//! at the end of each `--help`.

use crate::common::{offline, root, say};
use assert_cmd::Command;
use std::path::Path;
use std::process::Output;

fn sample() -> String {
    root()
        .join("samples/migration-cp1251.csv")
        .display()
        .to_string()
}

fn template() -> String {
    root()
        .join("templates/migration-flat.toml")
        .display()
        .to_string()
}

/// The CLI run in `dir`, with no CRM configured by the environment.
fn smbatch(dir: &Path, args: &[&str]) -> Output {
    offline(dir, args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}\n{}", say(o)))
}

#[test]
fn unknown_subcommand_is_a_usage_error_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = smbatch(dir.path(), &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("frobnicate"));
}

#[test]
fn every_crm_command_reads_what_the_readme_import_wrote_into_the_default_sandbox_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sample, template) = (sample(), template());
    // The README's first command (5 bad rows in the sample: exit 1).
    let out = smbatch(
        d,
        &[
            "import",
            &sample,
            "--template",
            &template,
            "--sandbox",
            "-o",
            "out/import-report.xlsx",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    assert!(d.join("out/import-report.xlsx").is_file(), "{}", say(&out));
    assert!(d.join("smbatch-sandbox.sqlite").is_file(), "{}", say(&out));

    // export, fields, reconcile, validate and template init all find it with a bare --sandbox.
    let out = smbatch(
        d,
        &["export", "person", "-o", "p.csv", "--json", "--sandbox"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(json(&out)["entities"][0]["rows"], 27, "{}", say(&out));

    let out = smbatch(d, &["fields", "person", "-q", "--sandbox"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let names: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert!(names.contains(&"pid".to_string()), "{}", say(&out));
    assert!(names.iter().all(|n| !n.contains(' ')), "{}", say(&out));

    let out = smbatch(
        d,
        &[
            "reconcile",
            &sample,
            "-t",
            &template,
            "-o",
            "rec.xlsx",
            "--json",
            "--sandbox",
        ],
    );
    let j = json(&out);
    assert_eq!(j["entities"]["person"]["missing"], 0, "{}", say(&out));
    assert_eq!(j["entities"]["person"]["matched"], 27, "{}", say(&out));

    let out = smbatch(d, &["validate", &sample, "-t", &template, "--sandbox"]);
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    assert!(
        stdout(&out).contains("Checked against sandbox smbatch-sandbox.sqlite"),
        "{}",
        say(&out)
    );

    let out = smbatch(
        d,
        &["template", "init", "person", "--from", &sample, "--sandbox"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert!(stdout(&out).contains("type = \"person\""), "{}", say(&out));
}

#[test]
fn the_old_report_flag_and_the_new_output_flag_both_write_the_import_report() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sample, template) = (sample(), template());
    for (flag, file) in [
        ("--report", "old.xlsx"),
        ("-o", "new.xlsx"),
        ("--output", "long.xlsx"),
    ] {
        let out = smbatch(
            d,
            &["import", &sample, "-t", &template, "--dry-run", flag, file],
        );
        assert_eq!(out.status.code(), Some(0), "{flag}: {}", say(&out));
        assert!(d.join(file).is_file(), "{flag}: {}", say(&out));
    }
    let out = smbatch(
        d,
        &["validate", &sample, "-t", &template, "--report", "v.xlsx"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    assert!(d.join("v.xlsx").is_file(), "{}", say(&out));
}

#[test]
fn import_show_limits_the_invalid_rows_printed() {
    let dir = tempfile::tempdir().unwrap();
    let (sample, template) = (sample(), template());
    let out = smbatch(
        dir.path(),
        &[
            "import",
            &sample,
            "-t",
            &template,
            "--dry-run",
            "--show",
            "2",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let err = stderr(&out);
    let rows: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("migration-cp1251.csv"))
        .collect();
    assert_eq!(rows.len(), 2, "{}", say(&out));
    assert!(err.contains("… and 3 more invalid rows"), "{}", say(&out));
}

#[test]
fn an_output_extension_the_command_cannot_write_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sample, template) = (sample(), template());
    let out = smbatch(
        d,
        &["export", "person", "--sandbox", "db.sqlite", "-o", "p.pdf"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", say(&out));
    assert!(stderr(&out).contains("p.pdf"), "{}", say(&out));
    assert!(stderr(&out).contains(".xlsx or .csv"), "{}", say(&out));
    assert!(!d.join("p.pdf").exists());

    let out = smbatch(
        d,
        &[
            "import",
            &sample,
            "-t",
            &template,
            "--dry-run",
            "-o",
            "r.pdf",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", say(&out));
    assert!(stderr(&out).contains("writes .xlsx files"), "{}", say(&out));

    let out = smbatch(
        d,
        &[
            "reconcile",
            &sample,
            "-t",
            &template,
            "--sandbox",
            "-o",
            "rec.csv",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", say(&out));
    assert!(stderr(&out).contains("rec.csv"), "{}", say(&out));
    assert!(!d.join("smbatch-sandbox.sqlite").exists(), "{}", say(&out));
}

#[test]
fn validate_quiet_prints_the_summary_and_no_problem_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (sample, template) = (sample(), template());
    let loud = smbatch(dir.path(), &["validate", &sample, "-t", &template]);
    let quiet = smbatch(dir.path(), &["validate", &sample, "-t", &template, "-q"]);
    assert_eq!(loud.status.code(), Some(1), "{}", say(&loud));
    assert_eq!(quiet.status.code(), Some(1), "{}", say(&quiet));
    assert!(
        stderr(&loud).contains("migration-cp1251.csv"),
        "{}",
        say(&loud)
    );
    assert!(
        !stderr(&quiet).contains("migration-cp1251.csv"),
        "{}",
        say(&quiet)
    );
    assert_eq!(stdout(&loud), stdout(&quiet));
}

#[test]
fn completions_and_man_pages_come_from_the_same_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let out = smbatch(dir.path(), &["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let script = stdout(&out);
    for word in [
        "import",
        "export",
        "reconcile",
        "validate",
        "fields",
        "--sandbox",
    ] {
        assert!(
            script.contains(word),
            "{word} missing from the bash completions"
        );
    }

    let out = smbatch(dir.path(), &["man", "-o", "man1"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let page = std::fs::read_to_string(dir.path().join("man1/smbatch.1")).unwrap();
    assert!(page.contains(".TH smbatch"), "{page}");
    let import = std::fs::read_to_string(dir.path().join("man1/smbatch-import.1")).unwrap();
    assert!(import.contains("\\-\\-sandbox"), "{import}");

    let out = smbatch(dir.path(), &["man"]);
    assert_eq!(stdout(&out), page);
}

#[test]
fn every_command_help_ends_with_real_examples() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        &["sandbox"][..],
        &["validate"],
        &["import"],
        &["export"],
        &["reconcile"],
        &["template", "init"],
        &["fields"],
        &["completions"],
        &["man"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = smbatch(dir.path(), &args);
        assert_eq!(out.status.code(), Some(0), "{}", say(&out));
        let help = stdout(&out);
        let examples = help
            .split("Examples:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{cmd:?} --help has no examples:\n{help}"));
        let lines: Vec<&str> = examples.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!((2..=3).contains(&lines.len()), "{cmd:?}:\n{examples}");
        let invocation = format!("smbatch {}", cmd.join(" "));
        assert!(
            lines.iter().all(|l| l.contains(&invocation)),
            "{cmd:?}:\n{examples}"
        );
    }
    let out = smbatch(dir.path(), &["template", "init", "--help"]);
    assert!(
        !stdout(&out).contains("overrides the template"),
        "{}",
        say(&out)
    );
}

#[test]
fn sandbox_json_says_how_to_connect_and_serves_the_default_file() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut server = std::process::Command::new(assert_cmd::cargo::cargo_bin("smbatch"))
        .args(["sandbox", "--listen", "127.0.0.1:0", "--json"])
        .current_dir(dir.path())
        .env_remove("SMBATCH_APIKEY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let j: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let fields = Command::cargo_bin("smbatch")
        .unwrap()
        .args(["fields", "client", "-q", "--url"])
        .arg(j["url"].as_str().unwrap())
        .arg("--login")
        .arg(j["login"].as_str().unwrap())
        .env("SMBATCH_APIKEY", j["apikey"].as_str().unwrap())
        .env("SMBATCH_CONFIG", "/nonexistent/smbatch.toml")
        .env("SMBATCH_DATA_DIR", crate::common::data_dir())
        .env_remove("SMBATCH_PROFILE")
        .output()
        .unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(j["database"], "smbatch-sandbox.sqlite", "{line}");
    assert!(dir.path().join("smbatch-sandbox.sqlite").is_file());
    assert_eq!(fields.status.code(), Some(0), "{}", say(&fields));
    assert!(
        stdout(&fields).lines().any(|l| l == "clid"),
        "{}",
        say(&fields)
    );
}
