//! `smbatch delete`: matched records deleted after a backup, journaled, resumable; what the
//! server refuses is reported; the backup puts everything back through `smbatch import`.

use crate::common::{counts, json_of, say, Case};
use serde_json::{json, Value};
use smbatch::crm::Entity;
use std::process::Output;

fn import_rows(c: &Case) {
    let out = c.run("import", &c.path("rows.csv"), "import", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
}

fn delete(c: &Case, run: &str, extra: &[&str]) -> Output {
    c.run("delete", &c.path("rows.csv"), run, extra)
}

/// The clid of ООО «Ромашка» as the CRM stores its title.
fn romashka(c: &Case) -> Value {
    let clients = c.list(Entity::Client, json!({"order": "clid"}));
    clients
        .iter()
        .find(|r| r["title"] == "Ромашка, ООО")
        .unwrap_or_else(|| panic!("{clients:?}"))["clid"]
        .clone()
}

fn history(c: &Case) -> Vec<Value> {
    c.list(Entity::History, json!({"order": "cid", "first": "old"}))
}

#[test]
fn delete_backs_up_first_and_a_second_run_deletes_nothing() {
    let c = Case::contacts();
    import_rows(&c);
    let out = delete(&c, "del", &["--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let v = json_of(&out);
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
    let out = delete(&c, "del", &["--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let v = json_of(&out);
    assert_eq!(counts(&v, "person")["deleted"], 0, "{v}");
    assert_eq!(counts(&v, "person")["earlier"], 3, "{v}");
    assert_eq!(std::fs::read(&backup).unwrap(), before);

    // A fresh journal: the CRM says they are gone (not found: rows not done, exit 1).
    let out = delete(&c, "fresh", &["--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    let v = json_of(&out);
    assert_eq!(counts(&v, "person")["not_found"], 3, "{v}");
    assert_eq!(counts(&v, "client")["not_found"], 2, "{v}");
    assert!(
        !c.path("fresh.backup.xlsx").exists(),
        "nothing deleted, no backup"
    );
}

#[test]
fn a_client_with_deals_is_reported_refused_not_deleted() {
    let c = Case::contacts();
    import_rows(&c);
    c.call(
        Entity::Deal,
        "add",
        json!({"title": "Поставка", "clid": romashka(&c)}),
    );
    let out = delete(&c, "del", &["--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    let v = json_of(&out);
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
    let c = Case::contacts();
    import_rows(&c);
    // Not a terminal and no --yes: a dry run needs neither.
    let out = delete(&c, "dry", &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let v = json_of(&out);
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
    let c = Case::contacts();
    import_rows(&c);
    let out = delete(&c, "del", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", say(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(c.sb.count(Entity::Person), 3);
    assert!(!c.path("del.backup.xlsx").exists());
}

#[test]
fn the_backup_puts_everything_back_through_import() {
    let c = Case::contacts();
    import_rows(&c);
    let old_romashka = romashka(&c);
    // History the server deletes along with the client.
    c.call(
        Entity::History,
        "add",
        json!({"clid": old_romashka, "content": "Звонок: договорились о встрече", "tip": "Звонок", "datum": "2026-11-20 10:00:00"}),
    );
    c.call(
        Entity::Task,
        "add",
        json!({"clid": old_romashka, "title": "Перезвонить в пятницу", "datum": "2026-12-04", "totime": "11:00"}),
    );
    let out = delete(&c, "del", &["--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(c.sb.count(Entity::Person), 0);
    assert_eq!(
        c.sb.count(Entity::Task),
        0,
        "the client's task went with it"
    );
    assert!(
        !history(&c)
            .iter()
            .any(|h| h["content"] == "Звонок: договорились о встрече"),
        "the client's history went with it"
    );

    let backup = c.path("del.backup.xlsx");
    let template = c.path("del.backup.toml");
    let out = c.run_with("import", &backup, &template, "restore", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));

    let clients = c.list(Entity::Client, json!({"order": "clid"}));
    assert_eq!(clients.len(), 2, "{clients:?}");
    let new_romashka = romashka(&c);
    let persons = c.list(Entity::Person, json!({"order": "pid", "first": "old"}));
    assert_eq!(persons.len(), 3, "{persons:?}");
    let ivanov = persons
        .iter()
        .find(|p| p["person"] == "Иванов Иван")
        .unwrap();
    assert_eq!(ivanov["ptitle"], "Директор");
    assert_eq!(ivanov["mail"], "ivanov@example.ru");
    assert_eq!(ivanov["clid"].to_string(), new_romashka.to_string());
    let call = history(&c)
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
    let c = Case::contacts();
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
    let before = no_deal(&history(&c));
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
    let out = c.run_with(
        "delete",
        &c.path("deals.csv"),
        &c.path("deal.toml"),
        "del",
        &["--yes"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let v = json_of(&out);
    assert_eq!(counts(&v, "deal")["deleted"], 1, "{v}");
    assert_eq!(c.sb.count(Entity::Deal), 0);
    assert_eq!(no_deal(&history(&c)), before, "history of no deal is kept");
}
