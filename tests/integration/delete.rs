//! `smbatch delete`: matched records deleted after a backup, journaled, resumable; what the
//! server refuses is reported; the backup puts everything back through `smbatch import`.

use crate::common::{against, say};
use serde_json::{json, Value};
use smbatch::crm::{CrmClient, Entity};
use smbatch::sandbox::{Sandbox, SandboxConfig};
use std::path::{Path, PathBuf};
use std::process::Output;

const TEMPLATE: &str = r#"
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

const ROWS: &str = "ИНН;Компания;ID;ФИО;Должность;Телефон;E-mail
5902123456;ООО «Ромашка»;1;Иванов Иван;Директор;8 (342) 200-00-01;ivanov@example.ru
5902123456;ООО «Ромашка»;2;Петрова Анна;Бухгалтер;8 (342) 200-00-02;petrova@example.ru
5904000017;АО Лютик;3;Сидоров Пётр;Менеджер;8 (342) 200-00-03;sidorov@example.ru
";

struct Case {
    dir: tempfile::TempDir,
    sb: Sandbox,
}

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.toml"), TEMPLATE).unwrap();
        std::fs::write(dir.path().join("rows.csv"), ROWS).unwrap();
        let sb = Sandbox::start(SandboxConfig::default()).unwrap();
        Case { dir, sb }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn json(out: &Output) -> Value {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", say(out)))
    }

    /// `COMMAND FILE -t TEMPLATE` with a report and journal named after `run`, `--json`.
    fn run(
        &self,
        command: &str,
        file: &Path,
        template: &Path,
        run: &str,
        extra: &[&str],
    ) -> Output {
        let report = self.path(&format!("{run}.xlsx"));
        let journal = self.path(&format!("{run}.journal.sqlite"));
        let mut args = vec![
            command,
            file.to_str().unwrap(),
            "-t",
            template.to_str().unwrap(),
            "-o",
            report.to_str().unwrap(),
            "--journal",
            journal.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        against(&self.sb, &args).output().unwrap()
    }

    fn import_rows(&self) {
        let out = self.run(
            "import",
            &self.path("rows.csv"),
            &self.path("t.toml"),
            "import",
            &[],
        );
        assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    }

    fn delete(&self, run: &str, extra: &[&str]) -> Output {
        self.run(
            "delete",
            &self.path("rows.csv"),
            &self.path("t.toml"),
            run,
            extra,
        )
    }

    fn call(&self, entity: Entity, action: &str, body: Value) -> Value {
        let client = CrmClient::new(&self.sb.connection()).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(client.call_raw(entity, action, &body)).unwrap()
    }

    fn list(&self, entity: Entity, mut body: Value) -> Vec<Value> {
        body["dateStart"] = json!("2000-01-01");
        body["dateEnd"] = json!("2037-12-31");
        let v = self.call(entity, "list", body);
        v["data"].as_array().cloned().unwrap_or_default()
    }

    fn history(&self) -> Vec<Value> {
        self.list(Entity::History, json!({"order": "cid", "first": "old"}))
    }
}

fn counts(v: &Value, entity: &str) -> Value {
    v["entities"][entity].clone()
}

#[test]
fn delete_backs_up_first_and_a_second_run_deletes_nothing() {
    let c = Case::new();
    c.import_rows();
    let out = c.delete("del", &["--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let v = Case::json(&out);
    assert_eq!(counts(&v, "person")["deleted"], 3, "{v}");
    assert_eq!(counts(&v, "client")["deleted"], 2, "{v}");
    assert_eq!(c.sb.count(Entity::Person), 0);
    assert_eq!(c.sb.count(Entity::Client), 0);
    // The backup was written next to the report, with the template that restores it.
    let backup = c.path("del.backup.xlsx");
    assert!(backup.exists(), "{v}");
    assert!(c.path("del.backup.toml").exists());
    assert_eq!(v["backup"]["records"]["person"], 3, "{v}");
    let before = std::fs::read(&backup).unwrap();

    // The same journal again: nothing left to delete, nothing sent, the backup kept as it was.
    let out = c.delete("del", &["--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let v = Case::json(&out);
    assert_eq!(counts(&v, "person")["deleted"], 0, "{v}");
    assert_eq!(counts(&v, "person")["earlier"], 3, "{v}");
    assert_eq!(std::fs::read(&backup).unwrap(), before);

    // A fresh journal: the CRM says they are gone (not found: rows not done, exit 1).
    let out = c.delete("fresh", &["--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    let v = Case::json(&out);
    assert_eq!(counts(&v, "person")["not_found"], 3, "{v}");
    assert_eq!(counts(&v, "client")["not_found"], 2, "{v}");
    assert!(
        !c.path("fresh.backup.xlsx").exists(),
        "nothing deleted, no backup"
    );
}

#[test]
fn a_client_with_deals_is_reported_refused_not_deleted() {
    let c = Case::new();
    c.import_rows();
    let clients = c.list(Entity::Client, json!({"order": "clid"}));
    let romashka = clients
        .iter()
        .find(|r| r["title"] == "Ромашка, ООО")
        .unwrap_or_else(|| panic!("{clients:?}"));
    c.call(
        Entity::Deal,
        "add",
        json!({"title": "Поставка", "clid": romashka["clid"]}),
    );
    let out = c.delete("del", &["--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    let v = Case::json(&out);
    let client = counts(&v, "client");
    assert_eq!(
        (client["deleted"].clone(), client["failed"].clone()),
        (json!(1), json!(1)),
        "{v}"
    );
    assert_eq!(c.sb.count(Entity::Client), 1);
    // The report says why, in the server's words.
    let rows = crate::export::sheet(&c.path("del.xlsx"), "Rows");
    let text = format!("{rows:?}");
    assert!(text.contains("Сделки"), "{text}");
}

#[test]
fn a_dry_run_reads_only_and_says_what_would_happen() {
    let c = Case::new();
    c.import_rows();
    // Not a terminal and no --yes: a dry run needs neither.
    let out = c.delete("dry", &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let v = Case::json(&out);
    assert_eq!(v["dry_run"], true);
    assert_eq!(counts(&v, "person")["deleted"], 3, "{v}");
    assert_eq!(counts(&v, "client")["deleted"], 2, "{v}");
    assert_eq!(c.sb.count(Entity::Person), 3);
    assert_eq!(c.sb.count(Entity::Client), 2);
    assert!(!c.path("dry.backup.xlsx").exists());
    assert!(!c.path("dry.journal.sqlite").exists());
}

#[test]
fn without_a_terminal_delete_needs_yes() {
    let c = Case::new();
    c.import_rows();
    let out = c.delete("del", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", say(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(c.sb.count(Entity::Person), 3);
    assert!(!c.path("del.backup.xlsx").exists());
}

#[test]
fn the_backup_puts_everything_back_through_import() {
    let c = Case::new();
    c.import_rows();
    let clients = c.list(Entity::Client, json!({"order": "clid"}));
    let romashka = clients
        .iter()
        .find(|r| r["title"] == "Ромашка, ООО")
        .unwrap()["clid"]
        .clone();
    // History the server deletes along with the client.
    c.call(
        Entity::History,
        "add",
        json!({"clid": romashka, "content": "Звонок: договорились о встрече", "tip": "Звонок", "datum": "2026-11-20 10:00:00"}),
    );
    c.call(
        Entity::Task,
        "add",
        json!({"clid": romashka, "title": "Перезвонить в пятницу", "datum": "2026-12-04", "totime": "11:00"}),
    );
    let out = c.delete("del", &["--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(c.sb.count(Entity::Person), 0);
    assert_eq!(
        c.sb.count(Entity::Task),
        0,
        "the client's task went with it"
    );
    assert!(
        !c.history()
            .iter()
            .any(|h| h["content"] == "Звонок: договорились о встрече"),
        "the client's history went with it"
    );

    let backup = c.path("del.backup.xlsx");
    let template = c.path("del.backup.toml");
    let out = c.run("import", &backup, &template, "restore", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));

    let clients = c.list(Entity::Client, json!({"order": "clid"}));
    assert_eq!(clients.len(), 2, "{clients:?}");
    let new_romashka = clients
        .iter()
        .find(|r| r["title"] == "Ромашка, ООО")
        .unwrap()["clid"]
        .clone();
    let persons = c.list(Entity::Person, json!({"order": "pid", "first": "old"}));
    assert_eq!(persons.len(), 3, "{persons:?}");
    let ivanov = persons
        .iter()
        .find(|p| p["person"] == "Иванов Иван")
        .unwrap();
    assert_eq!(ivanov["ptitle"], "Директор");
    assert_eq!(ivanov["mail"], "ivanov@example.ru");
    assert_eq!(ivanov["clid"].to_string(), new_romashka.to_string());
    let call = c
        .history()
        .into_iter()
        .find(|h| h["content"] == "Звонок: договорились о встрече")
        .expect("the client's history is back");
    assert_eq!(call["clid"].to_string(), new_romashka.to_string());
    assert_eq!(call["datum"], "2026-11-20 10:00:00");
    let tasks = c.list(Entity::Task, json!({"active": "yes"}));
    let task = tasks
        .iter()
        .find(|t| t["title"] == "Перезвонить в пятницу")
        .unwrap_or_else(|| panic!("the client's task is back: {tasks:?}"));
    assert_eq!(task["clid"].to_string(), new_romashka.to_string());
    assert_eq!(task["datum"], "2026-12-04");
}

#[test]
fn a_deal_is_deleted_by_its_id_and_history_of_no_deal_survives() {
    let c = Case::new();
    let client = c.call(Entity::Client, "add", json!({"title": "ООО Сделочная"}));
    let clid = client["data"].clone();
    c.call(
        Entity::Deal,
        "add",
        json!({"title": "Поставка труб", "clid": clid, "uid": "DEAL-7"}),
    );
    // History tied to no deal (did=0): what deal/delete with only a uid would wipe.
    c.call(
        Entity::History,
        "add",
        json!({"clid": clid, "content": "Ручная запись", "tip": "Встреча"}),
    );
    let no_deal = |h: &Vec<Value>| {
        h.iter()
            .filter(|r| r["did"].as_i64().unwrap_or(0) == 0)
            .count()
    };
    let before = no_deal(&c.history());
    assert!(before >= 1);
    std::fs::write(
        c.path("deal.toml"),
        r#"
[[entity]]
type = "deal"
key = "{UID}"
[entity.fields]
uid = { column = "UID" }
title = { column = "Сделка" }
"#,
    )
    .unwrap();
    std::fs::write(c.path("deals.csv"), "UID;Сделка\nDEAL-7;Поставка труб\n").unwrap();
    let out = c.run(
        "delete",
        &c.path("deals.csv"),
        &c.path("deal.toml"),
        "del",
        &["--yes"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let v = Case::json(&out);
    assert_eq!(counts(&v, "deal")["deleted"], 1, "{v}");
    assert_eq!(c.sb.count(Entity::Deal), 0);
    assert_eq!(no_deal(&c.history()), before, "history of no deal is kept");
}
