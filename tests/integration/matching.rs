//! Match before create: insert, upsert and update against what the CRM already holds, with a
//! fresh journal each time (the journal is a cache; the CRM decides what exists).

use crate::common::{
    against, counts, json_of, offline, say, Case, CONTACTS_ROWS as ROWS,
    CONTACTS_TEMPLATE as TEMPLATE,
};
use serde_json::{json, Value};
use smbatch::crm::Entity;
use smbatch::sandbox::SandboxConfig;

fn persons(c: &Case) -> Vec<Value> {
    let v = c.call(
        Entity::Person,
        "list",
        json!({"order": "pid", "first": "old"}),
    );
    v["data"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_second_import_with_a_fresh_journal_creates_nothing() {
    let c = Case::contacts();
    let file = c.path("rows.csv");
    let (out, v) = c.import(&file, "first", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(counts(&v, "person")["created"], 3);
    // Another report name and a new journal: the CRM, not the journal, says what exists.
    let (out, v) = c.import(&file, "second", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(counts(&v, "person")["created"], 0, "{v}");
    assert_eq!(counts(&v, "person")["existing"], 3, "{v}");
    assert_eq!(counts(&v, "client")["existing"], 2, "{v}");
    assert_eq!(c.sb.count(Entity::Person), 3);
    assert_eq!(c.sb.count(Entity::Client), 2);
}

#[test]
fn records_typed_into_the_crm_by_people_are_matched_not_duplicated() {
    let c = Case::contacts();
    // Already in the CRM, entered by hand: another spelling of the phone, upper-case e-mail.
    c.call(
        Entity::Person,
        "add",
        json!({"person": "Иванов И.", "tel": "+7 342 2000001", "mail": "X@EXAMPLE.RU"}),
    );
    c.call(
        Entity::Person,
        "add",
        json!({"person": "Петрова", "mail": "PETROVA@example.ru"}),
    );
    let (out, v) = c.import(&c.path("rows.csv"), "run", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let p = counts(&v, "person");
    assert_eq!(
        (p["created"].clone(), p["existing"].clone()),
        (json!(1), json!(2)),
        "{v}"
    );
    assert_eq!(c.sb.count(Entity::Person), 3);
}

#[test]
fn upsert_changes_only_what_differs_and_blanks_nothing() {
    let c = Case::contacts();
    let (out, _) = c.import(&c.path("rows.csv"), "first", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let before = persons(&c)[0].clone();
    let pid = before["pid"].as_i64().unwrap();
    // Row 1: a new position; row 2: the phone cell left empty (changes nothing).
    let changed = ROWS
        .replace("Директор", "Генеральный директор")
        .replace("8 (342) 200-00-02;", ";");
    let file = c.write("changed.csv", &changed);
    let (out, v) = c.import(&file, "dry", &["--mode", "upsert", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(v["dry_run"], true);
    assert_eq!(counts(&v, "person")["updated"], 1, "{v}");
    assert_eq!(
        persons(&c)[0]["ptitle"],
        "Директор",
        "a dry run writes nothing"
    );

    let (out, v) = c.import(&file, "upsert", &["--mode", "upsert"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let p = counts(&v, "person");
    assert_eq!(
        (p["updated"].clone(), p["unchanged"].clone()),
        (json!(1), json!(2)),
        "{v}"
    );
    assert_eq!(counts(&v, "client")["unchanged"], 2, "{v}");
    let after = persons(&c);
    let ivanov = after.iter().find(|p| p["pid"] == pid).unwrap();
    assert_eq!(ivanov["ptitle"], "Генеральный директор");
    // person/update replaces the whole record: everything else must have been sent back.
    for f in ["person", "tel", "mail", "clid", "iduser"] {
        // A field the list does not show would compare Null with Null.
        assert!(!before[f].is_null() && before[f] != "", "{f} in {before}");
        assert_eq!(ivanov[f], before[f], "{f} kept");
    }
    let petrova = after
        .iter()
        .find(|p| p["mail"] == "petrova@example.ru")
        .unwrap();
    assert_eq!(
        petrova["tel"], "+7 (342) 200-00-02",
        "an empty cell changes nothing"
    );
    // The report says what changed.
    let book = std::fs::read(c.path("upsert.xlsx")).unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(book)).unwrap();
    let mut wb = String::new();
    std::io::Read::read_to_string(&mut z.by_name("xl/workbook.xml").unwrap(), &mut wb).unwrap();
    assert!(wb.contains("name=\"Changes\""), "{wb}");
    // A second upsert finds nothing to change.
    let (_, v) = c.import(&file, "again", &["--mode", "upsert"]);
    assert_eq!(counts(&v, "person")["unchanged"], 3, "{v}");
}

#[test]
fn empty_clear_clears_and_update_reports_what_it_cannot_find() {
    let c = Case::contacts();
    c.import(&c.path("rows.csv"), "first", &[]);
    let t = TEMPLATE.replace(
        "ptitle = { column = \"Должность\" }",
        "ptitle = { column = \"Должность\", empty = \"clear\" }",
    );
    std::fs::write(c.path("t.toml"), t).unwrap();
    let changed = ROWS.replace("Директор;", ";")
        + "5904000017;АО Лютик;4;Новиков Олег;Инженер;8 (342) 200-00-04;novikov@example.ru\n";
    let file = c.write("changed.csv", &changed);
    let (out, v) = c.import(&file, "update", &["--mode", "update"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "not found is a row to look at: {}",
        say(&out)
    );
    let p = counts(&v, "person");
    assert_eq!(
        (p["updated"].clone(), p["not_found"].clone()),
        (json!(1), json!(1)),
        "{v}"
    );
    assert_eq!(v["rows_by_outcome"]["not_found"], 1, "{v}");
    assert_eq!(c.sb.count(Entity::Person), 3, "update creates nothing");
    let ivanov = persons(&c)
        .into_iter()
        .find(|p| p["mail"] == "ivanov@example.ru")
        .unwrap();
    assert_eq!(ivanov["ptitle"], "", "empty = \"clear\" clears");
}

#[test]
fn a_record_matching_two_crm_records_is_ambiguous_and_not_written() {
    let c = Case::contacts();
    for name in ["Иванов И.", "Иванов Иван (дубль)"] {
        c.call(
            Entity::Person,
            "add",
            json!({"person": name, "mail": "ivanov@example.ru"}),
        );
    }
    let (out, v) = c.import(&c.path("rows.csv"), "run", &["--mode", "upsert"]);
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    let p = counts(&v, "person");
    assert_eq!(
        (p["ambiguous"].clone(), p["created"].clone()),
        (json!(1), json!(2)),
        "{v}"
    );
    assert_eq!(v["rows_by_outcome"]["ambiguous"], 1, "{v}");
    assert_eq!(
        c.sb.count(Entity::Person),
        4,
        "nothing written for the ambiguous one"
    );
    // Neither candidate was updated (upsert would have given one of them the file's name).
    let names: Vec<String> = persons(&c)
        .iter()
        .map(|p| p["person"].as_str().unwrap_or("").to_string())
        .collect();
    for kept in ["Иванов И.", "Иванов Иван (дубль)"] {
        assert!(names.iter().any(|n| n == kept), "{kept} changed: {names:?}");
    }
    assert!(!names.iter().any(|n| n == "Иванов Иван"), "{names:?}");
}

#[test]
fn the_default_journal_follows_the_input_not_the_report_name() {
    let c = Case::contacts();
    let t = c.path("t.toml");
    let file = c.path("rows.csv");
    let run = |report: &str| {
        let report = c.path(report);
        let out = against(
            &c.sb,
            &[
                "import",
                file.to_str().unwrap(),
                "-t",
                t.to_str().unwrap(),
                "-o",
                report.to_str().unwrap(),
                "--json",
            ],
        )
        .output()
        .unwrap();
        json_of(&out)
    };
    let first = run("a.xlsx");
    let second = run("b.xlsx");
    assert_eq!(first["journal"], second["journal"], "one run, one journal");
    let journal = first["journal"].as_str().unwrap();
    assert!(
        journal.starts_with(crate::common::data_dir().to_str().unwrap()),
        "{journal}"
    );
    assert_eq!(counts(&second, "person")["earlier"], 3, "{second}");
    assert_eq!(c.sb.count(Entity::Person), 3);
}

#[test]
fn a_journal_whose_records_the_crm_no_longer_has_does_not_stop_them_being_sent() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.toml"), TEMPLATE).unwrap();
    std::fs::write(dir.path().join("rows.csv"), ROWS).unwrap();
    let db = dir.path().join("rehearsal.sqlite");
    let run = || {
        let out = offline(
            dir.path(),
            &[
                "import",
                "rows.csv",
                "-t",
                "t.toml",
                "-o",
                "r.xlsx",
                "--json",
                "--sandbox",
            ],
        )
        .arg(&db)
        .env("SMBATCH_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
        json_of(&out)
    };
    assert_eq!(counts(&run(), "person")["created"], 3);
    // A fresh rehearsal database: the journal remembers three persons the CRM does not have.
    std::fs::remove_file(&db).unwrap();
    let again = run();
    assert_eq!(counts(&again, "person")["created"], 3, "{again}");
    assert_eq!(counts(&again, "person")["earlier"], 0, "{again}");
}

const DEALS: &str = r#"
[[entity]]
type = "client"
key = "{ИНН}"
[entity.fields]
title = { column = "Компания", required = true }

[[entity]]
type = "person"
key = "{ФИО}"
[entity.fields]
person = { column = "ФИО", required = true }
clid   = { ref = "client" }

[[entity]]
type = "deal"
key = "{Сделка}"
[entity.fields]
title = { column = "Название", required = true }
kol   = { column = "Сумма" }
clid  = { ref = "client" }
"#;

#[test]
fn a_deal_update_never_clears_its_contact_or_margin() {
    let c = Case::new(
        SandboxConfig::default(),
        &format!("{DEALS}pid = {{ ref = \"person\" }}\n"),
    );
    let rows = |sum: &str| {
        format!("ИНН;Компания;ФИО;Сделка;Название;Сумма\n5902123456;ООО Ромашка;Иванов Иван;D-1;Поставка;{sum}\n")
    };
    let (out, _) = c.import_rows(&rows("100000"), "first", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let deal = || c.call(Entity::Deal, "info", json!({"uid": "D-1"}))["data"].clone();
    let before = deal();
    // The margin as a manager set it in the CRM.
    let did = c.list(Entity::Deal, json!({"active": "yes"}))[0]["did"].clone();
    let r = c.call(
        Entity::Deal,
        "update",
        json!({"did": did, "title": before["title"], "kol": 100000, "marga": 30000.25,
               "pid": 1}),
    );
    assert_eq!(r["result"], "Готово", "{r}");
    let (out, v) = c.import_rows(&rows("120 000,50"), "upsert", &["--mode", "upsert"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(counts(&v, "deal")["updated"], 1, "{v}");
    let after = deal();
    assert_eq!(
        after["kol"], 120000.5,
        "kol is written (sent with the title)"
    );
    assert_eq!(after["marga"], 30000.25, "marga kept");
    assert_eq!(after["title"], before["title"], "the СДn prefix kept");

    // A template without the deal's contact cannot update deals: reported, nothing sent.
    std::fs::write(c.path("t.toml"), DEALS).unwrap();
    let (out, v) = c.import_rows(&rows("130000"), "nopid", &["--mode", "upsert"]);
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    assert_eq!(counts(&v, "deal")["failed"], 1, "{v}");
    assert_eq!(deal()["kol"], 120000.5, "nothing sent");
}

const TASKS: &str = r#"
[[entity]]
type = "client"
key = "{ИНН}"
[entity.fields]
title = { column = "Компания", required = true }

[[entity]]
type = "task"
key = "{Задача}"
[entity.fields]
title = { column = "Задача", required = true }
datum = { column = "Дата", date = ["%d.%m.%Y"] }
des   = { column = "Описание" }
clid  = { ref = "client" }
"#;

#[test]
fn a_task_update_keeps_what_the_file_does_not_say_and_never_reopens_a_done_task() {
    let c = Case::new(SandboxConfig::default(), TASKS);
    let rows = |des: &str| {
        format!("ИНН;Компания;Задача;Дата;Описание\n5902123456;ООО Ромашка;Позвонить;01.12.2026;{des}\n")
    };
    let (out, _) = c.import_rows(&rows("первый звонок"), "first", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let task = || {
        ["yes", "no"]
            .iter()
            .find_map(|a| {
                c.list(Entity::Task, json!({"active": a}))
                    .into_iter()
                    .next()
            })
            .expect("the task")
    };
    let t = task();
    // A field the template does not map, set in the CRM: task/update is a full replace.
    let r = c.call(
        Entity::Task,
        "update",
        json!({"id": t["tid"], "title": t["title"], "datum": t["datum"], "totime": t["totime"],
               "des": t["des"], "clid": t["clid"], "priority": 2, "speed": 1}),
    );
    assert_eq!(r["result"], "Успешно", "{r}");
    let (out, v) = c.import_rows(
        &rows("перезвонить в пятницу"),
        "upsert",
        &["--mode", "upsert"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(counts(&v, "task")["updated"], 1, "{v}");
    let t = task();
    assert_eq!(t["des"], "перезвонить в пятницу");
    assert_eq!(
        (t["priority"].clone(), t["speed"].clone()),
        (json!("2"), json!("1")),
        "kept"
    );
    assert_eq!(t["active"], "yes");

    // Done in the CRM: an update would re-open it, so it is reported and not sent.
    let r = c.call(Entity::Task, "doit", json!({"id": t["tid"]}));
    assert_eq!(r["result"], "Успешно", "{r}");
    let (out, v) = c.import_rows(&rows("ещё раз"), "done", &["--mode", "upsert"]);
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    assert_eq!(counts(&v, "task")["failed"], 1, "{v}");
    let t = task();
    assert_eq!(
        (t["active"].clone(), t["des"].clone()),
        (json!("no"), json!("перезвонить в пятницу"))
    );
}
