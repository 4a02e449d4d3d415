//! What the test modules share: the repository root, the CLI started against a sandbox, the
//! text of an Output for a failing assertion, and (from the benches' common module) the persons
//! input at size and a child's own peak RSS.

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;
use smbatch::crm::{CrmClient, Entity};
use smbatch::sandbox::Sandbox;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[path = "../../benches/common/mod.rs"]
mod bulk;
pub use bulk::{run_with_peak_rss, write_persons, PERSONS_TEMPLATE};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `smbatch args` against `sb` (its URL, login and key), no config file or profile from the
/// environment, stdin closed.
pub fn against(sb: &Sandbox, args: &[&str]) -> Command {
    let conn = sb.connection();
    let mut c = Command::cargo_bin("smbatch").unwrap();
    c.args(args)
        .arg("--url")
        .arg(&conn.url)
        .arg("--login")
        .arg(&conn.login)
        .env("SMBATCH_APIKEY", conn.apikey.expose())
        .env("SMBATCH_CONFIG", "/nonexistent/smbatch.toml")
        .env("SMBATCH_DATA_DIR", data_dir())
        .env_remove("SMBATCH_PROFILE")
        .stdin(Stdio::null());
    c
}

/// `smbatch args` run in `dir` with no CRM configured by the environment (no config file,
/// profile, URL, login or key), stdin closed: offline commands and `--sandbox` rehearsals.
pub fn offline(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::cargo_bin("smbatch").unwrap();
    c.current_dir(dir)
        .args(args)
        .env("SMBATCH_CONFIG", "/nonexistent/smbatch.toml")
        .env("SMBATCH_DATA_DIR", data_dir())
        .env_remove("SMBATCH_URL")
        .env_remove("SMBATCH_LOGIN")
        .env_remove("SMBATCH_PROFILE")
        .env_remove("SMBATCH_APIKEY")
        .stdin(Stdio::null());
    c
}

/// Where the CLI keeps its journals in tests (never the user's data directory): one directory
/// for this test process; journals there are named by input, template and sandbox URL, and
/// every test's sandbox has a port of its own.
pub fn data_dir() -> PathBuf {
    std::env::temp_dir().join(format!("smbatch-tests-{}", std::process::id()))
}

/// Exit code, stdout and stderr of a finished command, for an assertion's message.
pub fn say(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A contacts template (clients by INN, persons linked to them) and rows for it: what the
/// matching and delete tests change and remove.
pub const CONTACTS_TEMPLATE: &str = r#"
name = "Contacts"
[[entity]]
type = "client"
key = "{ИНН}"
[entity.fields]
title = { column = "Компания", required = true }

[[entity]]
type = "person"
key = "{ID}"
[entity.fields]
person = { column = "ФИО", required = true }
ptitle = { column = "Должность" }
tel    = { column = "Телефон", transform = ["phone"] }
mail   = { column = "E-mail", transform = ["trim", "lower"] }
clid   = { ref = "client" }
"#;

pub const CONTACTS_ROWS: &str = "ИНН;Компания;ID;ФИО;Должность;Телефон;E-mail
5902123456;ООО «Ромашка»;1;Иванов Иван;Директор;8 (342) 200-00-01;ivanov@example.ru
5902123456;ООО «Ромашка»;2;Петрова Анна;Бухгалтер;8 (342) 200-00-02;petrova@example.ru
5904000017;АО Лютик;3;Сидоров Пётр;Менеджер;8 (342) 200-00-03;sidorov@example.ru
";

/// A sandbox and a scratch directory: files are written there, the CLI runs against the
/// sandbox with a report and journal named after each run, and the API is called directly.
pub struct Case {
    pub dir: tempfile::TempDir,
    pub sb: Sandbox,
}

impl Case {
    /// A fresh sandbox (`config`) and a directory holding `t.toml` = `template`.
    pub fn new(config: smbatch::sandbox::SandboxConfig, template: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.toml"), template).unwrap();
        let sb = Sandbox::start(config).unwrap();
        Case { dir, sb }
    }

    /// A fresh sandbox with the contacts template ([`CONTACTS_TEMPLATE`]) and its rows
    /// ([`CONTACTS_ROWS`]) in `rows.csv`.
    pub fn contacts() -> Case {
        let c = Case::new(
            smbatch::sandbox::SandboxConfig::default(),
            CONTACTS_TEMPLATE,
        );
        c.write("rows.csv", CONTACTS_ROWS);
        c
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `COMMAND FILE -t t.toml -o RUN.xlsx --journal RUN.journal.sqlite --json EXTRA…`.
    pub fn run(&self, command: &str, file: &Path, run: &str, extra: &[&str]) -> Output {
        self.run_with(command, file, &self.path("t.toml"), run, extra)
    }

    /// [`Case::run`] with another template.
    pub fn run_with(
        &self,
        command: &str,
        file: &Path,
        t: &Path,
        run: &str,
        extra: &[&str],
    ) -> Output {
        self.command(command, file, t, run, run, extra)
            .output()
            .unwrap()
    }

    /// `COMMAND FILE -t T -o RUN.xlsx --journal JOURNAL.journal.sqlite --json EXTRA…`, not yet
    /// started: runs that share a journal, or a run to kill.
    pub fn command(
        &self,
        command: &str,
        file: &Path,
        t: &Path,
        run: &str,
        journal: &str,
        extra: &[&str],
    ) -> Command {
        let report = self.path(&format!("{run}.xlsx"));
        let journal = self.path(&format!("{journal}.journal.sqlite"));
        let mut args = vec![
            command,
            file.to_str().unwrap(),
            "-t",
            t.to_str().unwrap(),
            "-o",
            report.to_str().unwrap(),
            "--journal",
            journal.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        against(&self.sb, &args)
    }

    /// [`Case::run`] of `import`, with its `--json` summary.
    pub fn import(&self, file: &Path, run: &str, extra: &[&str]) -> (Output, Value) {
        let out = self.run("import", file, run, extra);
        let v = json_of(&out);
        (out, v)
    }

    /// [`Case::import`] of `rows`, written to `RUN.csv` first.
    pub fn import_rows(&self, rows: &str, run: &str, extra: &[&str]) -> (Output, Value) {
        self.import_rows_with(rows, &self.path("t.toml"), run, extra)
    }

    /// [`Case::import_rows`] with another template.
    pub fn import_rows_with(
        &self,
        rows: &str,
        t: &Path,
        run: &str,
        extra: &[&str],
    ) -> (Output, Value) {
        let file = self.write(&format!("{run}.csv"), rows);
        let out = self.run_with("import", &file, t, run, extra);
        let v = json_of(&out);
        (out, v)
    }

    /// One API call's answer (errors included), straight to the sandbox.
    pub fn call(&self, entity: Entity, action: &str, body: Value) -> Value {
        let client = CrmClient::new(&self.sb.connection()).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(client.call_raw(entity, action, &body)).unwrap()
    }

    /// The first page of `entity`'s list (history and tasks of every day).
    pub fn list(&self, entity: Entity, mut body: Value) -> Vec<Value> {
        body["dateStart"] = Value::from("2000-01-01");
        body["dateEnd"] = Value::from("2037-12-31");
        let v = self.call(entity, "list", body);
        v["data"].as_array().cloned().unwrap_or_default()
    }
}

/// The `--json` summary a command printed.
pub fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", say(out)))
}

/// One entity's counts in a `--json` summary.
pub fn counts(v: &Value, entity: &str) -> Value {
    v["entities"][entity].clone()
}
