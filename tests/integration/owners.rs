//! Owners and deal dictionaries are checked against the CRM before the first write (issue 15):
//! a constant or mapped owner the CRM does not have refuses the run; an unknown owner or step
//! read from the file makes that row's record invalid; a step given by its name is sent as its
//! title. The sandbox has users like the recorded server. Deal sums are sent the one way the
//! server reads them right.

use crate::common::{against, offline, root, say};
use serde_json::{json, Map, Value};
use smbatch::crm::{CrmClient, Entity, RetryPolicy};
use smbatch::sandbox::{Sandbox, SandboxConfig, UserSpec};
use smbatch::values::Money;
use std::path::{Path, PathBuf};
use std::process::Output;

const MANAGER: &str = "manager2@firm.ru";
const FIRED: &str = "fired@firm.ru";

/// A sandbox with the API user (id 1), an active manager (id 2) and one who left (id 3).
fn start() -> Sandbox {
    Sandbox::start(SandboxConfig {
        users: vec![
            UserSpec::new(MANAGER, "Менеджер Второй", true),
            UserSpec::new(FIRED, "Уволенный Сотрудник", false),
        ],
        ..SandboxConfig::default()
    })
    .unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn smbatch(sb: &Sandbox, dir: &Path, args: &[&str]) -> Output {
    against(sb, args).current_dir(dir).output().unwrap()
}

/// The report (and so the journal) is named after the template: another template, another run.
fn import(sb: &Sandbox, dir: &Path, file: &Path, template: &Path) -> Output {
    let stem = template.file_stem().unwrap().to_string_lossy();
    let report = dir.join(format!("{stem}.report.xlsx"));
    smbatch(
        sb,
        dir,
        &[
            "import",
            &file.display().to_string(),
            "--template",
            &template.display().to_string(),
            "--report",
            &report.display().to_string(),
            "--concurrency",
            "1",
        ],
    )
}

/// Rows of an entity's `list` as the API user sees them.
fn list(sb: &Sandbox, entity: Entity, extra: Value) -> Vec<Map<String, Value>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = CrmClient::new(&sb.connection()).unwrap();
    let mut params = extra.as_object().cloned().unwrap_or_default();
    params.insert("order".into(), json!(entity.id_field()));
    rt.block_on(client.list_page(entity, &params, 0, &RetryPolicy::immediate(1)))
        .unwrap()
        .rows
}

const PERSONS: &str = "ФИО;E-mail;Менеджер\n\
    Иванов Иван;ivanov@firm.ru;admin@example.ru\n\
    Петрова Анна;petrova@firm.ru;manager2@firm.ru\n\
    Сидоров Олег;sidorov@firm.ru;ghost@firm.ru\n";

fn person_template(dir: &Path, owner: &str) -> PathBuf {
    named_person_template(dir, "persons.toml", owner)
}

fn named_person_template(dir: &Path, name: &str, owner: &str) -> PathBuf {
    write(
        dir,
        name,
        &format!(
            "[[entity]]\ntype = \"person\"\nkey = \"{{E-mail}}\"\n[entity.fields]\n\
             person = {{ column = \"ФИО\", required = true }}\n\
             mail = {{ column = \"E-mail\" }}\n\
             user = {owner}\n"
        ),
    )
}

#[test]
fn a_constant_owner_the_crm_does_not_have_stops_the_import_before_anything_is_sent() {
    let sb = start();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "persons.csv", PERSONS);
    let t = person_template(dir.path(), "{ value = \"ghost@firm.ru\" }");
    let out = import(&sb, dir.path(), &file, &t);
    assert_eq!(out.status.code(), Some(2), "{}", say(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    // Named with the template line (line 7: `user = …`) and the login as written.
    assert!(
        err.contains(&format!("{}:7: person field 'user'", t.display()))
            && err.contains("'ghost@firm.ru'")
            && err.contains("not a user of this CRM"),
        "{}",
        say(&out)
    );
    assert_eq!(sb.count(Entity::Person), 0, "nothing was sent");

    // An owner who has left is still an owner: a warning, and the records are theirs.
    let t = person_template(dir.path(), &format!("{{ value = \"{FIRED}\" }}"));
    let out = import(&sb, dir.path(), &file, &t);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("warning:"),
        "{}",
        say(&out)
    );
    let rows = list(&sb, Entity::Person, json!({}));
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|r| r["iduser"] == 3), "{rows:?}");
}

#[test]
fn an_unknown_owner_in_the_file_holds_back_only_its_record() {
    let sb = start();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "persons.csv", PERSONS);
    let t = person_template(dir.path(), "{ column = \"Менеджер\" }");
    let out = import(&sb, dir.path(), &file, &t);
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    // File, row, column and value of the bad owner.
    assert!(
        err.contains("persons.csv row 4")
            && err.contains("person user 'ghost@firm.ru'")
            && err.contains("the record would be invisible")
            && err.contains("column 'Менеджер'"),
        "{}",
        say(&out)
    );
    // The others are created, each owned by its user; the bad one was never sent.
    assert_eq!(sb.count(Entity::Person), 2);
    let rows = list(&sb, Entity::Person, json!({}));
    let owner = |mail: &str| {
        rows.iter()
            .find(|r| r["mail"] == mail)
            .map(|r| r["iduser"].clone())
    };
    assert_eq!(owner("ivanov@firm.ru"), Some(json!(1)), "{rows:?}");
    assert_eq!(owner("petrova@firm.ru"), Some(json!(2)), "{rows:?}");
    let mine = list(&sb, Entity::Person, json!({ "user": MANAGER }));
    assert_eq!(mine.len(), 1, "{mine:?}");
}

#[test]
fn an_owner_map_is_checked_on_the_logins_it_maps_to() {
    let sb = start();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "persons.csv",
        "ФИО;E-mail;Менеджер\nИванов Иван;ivanov@firm.ru;Админ\nПетрова Анна;petrova@firm.ru;Петров\n",
    );
    // The file's names are no logins, but every login they map to exists.
    let t = person_template(
        dir.path(),
        &format!("{{ column = \"Менеджер\", map = {{ \"Админ\" = \"admin@example.ru\", \"Петров\" = \"{MANAGER}\" }} }}"),
    );
    let out = import(&sb, dir.path(), &file, &t);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let rows = list(&sb, Entity::Person, json!({ "user": MANAGER }));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["mail"], "petrova@firm.ru");

    // A mapped login the CRM does not have refuses the run, even if no row uses it yet.
    let t = named_person_template(
        dir.path(),
        "persons2.toml",
        "{ column = \"Менеджер\", map = { \"Админ\" = \"admin@example.ru\", \"Петров\" = \"petrov@firm.ru\" } }",
    );
    let before = sb.count(Entity::Person);
    let out = import(&sb, dir.path(), &file, &t);
    assert_eq!(out.status.code(), Some(2), "{}", say(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'petrov@firm.ru'") && !err.contains("'Петров'"),
        "the mapped login is named, not the file's value: {}",
        say(&out)
    );
    assert_eq!(sb.count(Entity::Person), before);
}

const DEALS: &str = "Номер;Сделка;Компания;ИНН;Дата план;Сумма;Этап\n\
    D-1;Поставка станков;ООО Ромашка;7701234567;31.12.2027;150000;Отправлено КП\n\
    D-2;Сервис;ООО Ромашка;7701234567;31.12.2027;20000;60\n\
    D-3;Аренда;ООО Ромашка;7701234567;31.12.2027;5000;Переговоры\n";

#[test]
fn a_deal_step_given_by_its_name_is_sent_as_its_title() {
    let sb = start();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "deals.csv", DEALS);
    let t = root().join("templates/deal.toml");
    let out = import(&sb, dir.path(), &file, &t);
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("deals.csv row 4")
            && err.contains("deal step 'Переговоры'")
            && err.contains("not a step of this CRM"),
        "{}",
        say(&out)
    );
    let deals = list(&sb, Entity::Deal, json!({ "active": "yes" }));
    let step = |uid: &str| {
        deals
            .iter()
            .find(|d| d["uid"] == uid)
            .map(|d| d["step"].clone())
    };
    assert_eq!(step("D-1"), Some(json!(40)), "{deals:?}");
    assert_eq!(step("D-2"), Some(json!(60)), "{deals:?}");
    assert_eq!(step("D-3"), None, "the unknown step's deal is not sent");
}

#[test]
fn deal_sums_arrive_as_written_and_an_ambiguous_one_is_held_back() {
    let sb = start();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "deals.csv",
        "Номер;Сделка;Компания;ИНН;Дата план;Сумма;Этап\n\
         D-1;Поставка;ООО Ромашка;7701234567;31.12.2027;1 500,75;60\n\
         D-2;Сервис;ООО Ромашка;7701234567;31.12.2027;1,500.75;60\n\
         D-3;Аренда;ООО Ромашка;7701234567;31.12.2027;12,500;60\n\
         D-4;Монтаж;ООО Ромашка;7701234567;31.12.2027;30\u{a0}000,00;60\n",
    );
    let out = import(&sb, dir.path(), &file, &root().join("templates/deal.toml"));
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("deals.csv row 4")
            && err.contains("deal kol '12,500'")
            && err.contains("write 12500 or 12,50"),
        "{}",
        say(&out)
    );
    let deals = list(&sb, Entity::Deal, json!({ "active": "yes" }));
    let kol = |uid: &str| {
        deals
            .iter()
            .find(|d| d["uid"] == uid)
            .and_then(|d| Money::from_json(&d["kol"]))
    };
    // The server reads "1,500.75" as 1.50 (v3-deal-add-kol-thousands-comma): never sent so.
    assert_eq!(kol("D-1"), Money::parse("1500.75").ok(), "{deals:?}");
    assert_eq!(kol("D-2"), Money::parse("1500.75").ok(), "{deals:?}");
    assert_eq!(kol("D-3"), None, "the ambiguous sum's deal is not sent");
    assert_eq!(kol("D-4"), Some(Money::from_units(30_000)), "{deals:?}");
}

#[test]
fn validate_url_passes_the_shipped_deal_template_and_names_unknown_steps() {
    let sb = start();
    let dir = tempfile::tempdir().unwrap();
    let t = root().join("templates/deal.toml").display().to_string();
    let good = write(
        dir.path(),
        "good.csv",
        &DEALS.replace("Переговоры", "Подтвержден интерес"),
    );
    let out = smbatch(
        &sb,
        dir.path(),
        &["validate", &good.display().to_string(), "--template", &t],
    );
    // deal/fields does not list `title`, but deal/add stores it: no false alarm.
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert!(!say(&out).contains("'title'"), "{}", say(&out));

    let bad = write(dir.path(), "bad.csv", DEALS);
    let out = smbatch(
        &sb,
        dir.path(),
        &["validate", &bad.display().to_string(), "--template", &t],
    );
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    let all = say(&out);
    assert!(
        all.contains("deal field 'step'")
            && all.contains("'Переговоры'")
            && !all.contains("'Отправлено КП':"),
        "{all}"
    );
    assert_eq!(sb.count(Entity::Deal), 0, "validate writes nothing");
}

#[test]
fn sandbox_users_own_records_and_an_unknown_task_owner_is_a_fatal() {
    let sb = start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let conn = sb.connection();
    let http = reqwest::Client::new();
    let call = |path: &str, body: Value| {
        let req = http
            .post(format!("{}/developer/v3/{path}", sb.url()))
            .header("Content-Type", "application/json")
            .header("login", &conn.login)
            .header("apikey", conn.apikey.expose())
            .body(body.to_string());
        rt.block_on(async { req.send().await.unwrap().text().await.unwrap() })
    };
    let users: Value = serde_json::from_str(&call("user/list", json!({}))).unwrap();
    let logins: Vec<&str> = users["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["login"].as_str().unwrap())
        .collect();
    assert_eq!(logins, ["admin@example.ru", MANAGER, FIRED]);
    assert_eq!(users["data"][2]["active"], "no");
    // A task for a user the CRM does not have: PHP dies, the answer is an HTML page.
    let body = call(
        "task/add",
        json!({"title": "Позвонить", "datum": "2030-01-01", "user": "ghost@firm.ru"}),
    );
    assert!(body.contains("<b>Fatal error</b>"), "{body}");
    assert_eq!(sb.count(Entity::Task), 0);
    let ok: Value = serde_json::from_str(&call(
        "task/add",
        json!({"title": "Позвонить", "datum": "2030-01-01", "user": MANAGER}),
    ))
    .unwrap();
    assert_eq!(ok["result"], "Успешно", "{ok}");
    // A deal owned by nobody: deal/list (admin) still lists it, deal/info does not.
    let c: Value =
        serde_json::from_str(&call("client/add", json!({"title": "ООО Альфа"}))).unwrap();
    let d: Value = serde_json::from_str(&call(
        "deal/add",
        json!({"title": "Невидимка", "clid": c["data"], "user": "ghost@firm.ru"}),
    ))
    .unwrap();
    let info: Value = serde_json::from_str(&call("deal/info", json!({"did": d["data"]}))).unwrap();
    assert_eq!(info["error"]["code"], 403, "{info}");
    let deals = list(&sb, Entity::Deal, json!({"active": "yes"}));
    assert_eq!(deals.len(), 1);
    assert_eq!(deals[0]["iduser"], 0);
}

#[test]
fn users_stored_in_a_sandbox_database_are_seen_by_import_with_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sb.sqlite");
    // As `smbatch sandbox --db sb.sqlite --user 'manager2@firm.ru=Менеджер Второй'` leaves it.
    let sb = Sandbox::start(SandboxConfig {
        db: db.display().to_string(),
        users: vec![UserSpec::new(MANAGER, "Менеджер Второй", true)],
        ..SandboxConfig::default()
    })
    .unwrap();
    sb.stop();
    let file = write(
        dir.path(),
        "persons.csv",
        &PERSONS.replace("ghost@firm.ru", MANAGER),
    );
    let t = person_template(dir.path(), "{ column = \"Менеджер\" }");
    let out = offline(dir.path(), &["import"])
        .arg(&file)
        .arg("--template")
        .arg(&t)
        .arg("--sandbox")
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    let sb = Sandbox::start(SandboxConfig {
        db: db.display().to_string(),
        ..SandboxConfig::default()
    })
    .unwrap();
    assert_eq!(
        list(&sb, Entity::Person, json!({ "user": MANAGER })).len(),
        2
    );
}
