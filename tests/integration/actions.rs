//! Actions as fields: in upsert/update mode a deal's step, close and owner and a task's "done"
//! go through the CRM's own actions (deal/change.step, deal/close, deal/change.user, task/doit),
//! never twice, and values the CRM does not know are refused before anything is sent.

use crate::common::{say, Case};
use calamine::{open_workbook, Data, Reader, Xlsx};
use serde_json::{json, Value};
use smbatch::crm::Entity;
use smbatch::sandbox::{SandboxConfig, UserSpec};
use std::path::{Path, PathBuf};

const MANAGER: &str = "manager2@firm.ru";

const TEMPLATE: &str = r#"
name = "Deals"
[[entity]]
type = "client"
key = "{ИНН}"
[entity.fields]
title = { column = "Компания", required = true }

[[entity]]
type = "deal"
key = "{Сделка}"
[entity.fields]
title        = { column = "Название", required = true }
clid         = { ref = "client" }
step         = { column = "Этап" }
status_close = { column = "Итог" }
kol_fact     = { column = "Факт" }
des_fact     = { column = "Комментарий" }
datum_close  = { column = "Закрыта" }
user         = { column = "Ответственный" }

[[entity]]
type = "task"
key = "{Задача}"
[entity.fields]
title  = { column = "Задача", required = true }
datum  = { column = "Дата" }
clid   = { ref = "client" }
active = { column = "Выполнена", map = { "да" = "no", "нет" = "yes" } }
"#;

const HEADER: &str =
    "ИНН;Компания;Сделка;Название;Этап;Итог;Факт;Комментарий;Закрыта;Ответственный;Задача;Дата;Выполнена\n";

/// One row: the deal's step, close status, actual sum, comment, close date and owner, and
/// whether the task is done.
fn row(step: &str, status: &str, fact: &str, day: &str, owner: &str, done: &str) -> String {
    format!(
        "{HEADER}5902123456;ООО «Ромашка»;D-1;Поставка труб;{step};{status};{fact};{comment};{day};{owner};Позвонить Ромашке;01.12.2026;{done}\n",
        comment = if status.is_empty() { "" } else { "Подписали" },
    )
}

/// A CRM holding the client, deal D-1 at step 20 owned by the API user, and an open task.
fn case() -> Case {
    let c = Case::new(
        SandboxConfig {
            users: vec![UserSpec::new(MANAGER, "Менеджер Второй", true)],
            ..SandboxConfig::default()
        },
        TEMPLATE,
    );
    let (out, v) = c.import_rows(
        &row("20", "", "", "", "", "нет"),
        "first",
        &["--mode", "insert"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(v["entities"]["deal"]["created"], 1, "{v}");
    assert_eq!(v["entities"]["task"]["created"], 1, "{v}");
    c
}

fn report(c: &Case, run: &str) -> PathBuf {
    c.path(&format!("{run}.xlsx"))
}

/// The deal as deal/info shows it (by our key, which went into its uid).
fn deal(c: &Case) -> Value {
    c.call(Entity::Deal, "info", json!({"uid": "D-1"}))["data"].clone()
}

/// The task with its `active` flag ("yes" open, "no" done).
fn task(c: &Case) -> (String, i64) {
    for active in ["yes", "no"] {
        let v = c.call(
            Entity::Task,
            "list",
            json!({"active": active, "dateStart": "2026-12-01", "dateEnd": "2026-12-01"}),
        );
        if let Some(t) = v["data"].as_array().and_then(|a| a.first()) {
            return (
                active.to_string(),
                t["tid"].as_str().unwrap().parse().unwrap(),
            );
        }
    }
    panic!("no task")
}

fn history_rows(c: &Case) -> u64 {
    c.sb.count(Entity::History)
}

/// The deal record was invalid (the row's client and task went: a partial row).
fn refused(v: &Value) {
    assert_eq!(v["rows_by_outcome"]["partial"], 1, "{v}");
    assert_eq!(v["entities"]["deal"]["invalid"], 1, "{v}");
}

fn deal_counts(v: &Value) -> (Value, Value, Value) {
    let d = &v["entities"]["deal"];
    (
        d["updated"].clone(),
        d["unchanged"].clone(),
        d["failed"].clone(),
    )
}

/// The rows of the report's "Changes" sheet: (field, before, after).
fn changes(report: &Path) -> Vec<(String, String, String)> {
    let mut wb: Xlsx<_> = open_workbook(report).unwrap();
    let range = wb.worksheet_range("Changes").unwrap();
    let cell = |r: &[Data], i: usize| r.get(i).map(|c| c.to_string()).unwrap_or_default();
    range
        .rows()
        .skip(1)
        .map(|r| (cell(r, 3), cell(r, 4), cell(r, 5)))
        .collect()
}

/// Every cell of the report (the rows, their outcomes and errors), as text.
fn report_text(report: &Path) -> String {
    let mut wb: Xlsx<_> = open_workbook(report).unwrap();
    let mut out = Vec::new();
    for name in wb.sheet_names() {
        let range = wb.worksheet_range(&name).unwrap();
        out.extend(range.rows().flat_map(|r| r.iter().map(|c| c.to_string())));
    }
    out.join("\n")
}

#[test]
fn a_step_change_goes_through_change_step_and_an_unknown_step_never_clears_it() {
    let c = case();
    assert_eq!(deal(&c)["stepTitle"], 20);
    let (out, v) = c.import_rows(
        &row("60", "", "", "", "", "нет"),
        "step",
        &["--mode", "upsert"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(deal_counts(&v).0, 1, "{v}");
    assert_eq!(
        deal(&c)["stepTitle"],
        60,
        "deal/update ignores step: it took change.step"
    );
    assert!(
        changes(&report(&c, "step")).contains(&("step".into(), "20".into(), "60".into())),
        "{:?}",
        changes(&report(&c, "step"))
    );
    // A step this CRM does not have would clear the deal's step: the row is refused, nothing sent.
    let history = history_rows(&c);
    let (out, v) = c.import_rows(
        &row("65", "", "", "", "", "нет"),
        "unknown",
        &["--mode", "update"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    refused(&v);
    assert_eq!(deal(&c)["stepTitle"], 60, "the step is kept");
    assert_eq!(history_rows(&c), history, "no change.step was sent");
}

#[test]
fn a_deal_is_closed_once_with_a_status_the_crm_knows() {
    let c = case();
    let history = history_rows(&c);
    // An unknown status would close the deal with no status (and allow closing it again).
    let (out, v) = c.import_rows(
        &row("20", "Победили", "90000", "28.11.2026", "", "нет"),
        "unknown",
        &["--mode", "upsert"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    refused(&v);
    assert_eq!(deal(&c)["close"]["close"], "no");
    assert_eq!(history_rows(&c), history, "nothing sent");

    let close = row("20", "Победа полная", "90 000,50", "28.11.2026", "", "нет");
    let (out, v) = c.import_rows(&close, "close", &["--mode", "upsert"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(deal_counts(&v).0, 1, "{v}");
    let d = deal(&c);
    assert_eq!(
        (
            d["close"]["close"].clone(),
            d["close"]["status"].clone(),
            d["kol_fact"].clone(),
            d["datum_close"].clone(),
            d["des_fact"].clone()
        ),
        (
            json!("yes"),
            json!("Победа полная"),
            json!(90000.5),
            json!("2026-11-28"),
            json!("Подписали")
        ),
        "the day went as Y-m-d (\"28.11.2026\" would be 0000-00-00)"
    );
    let closed = history_rows(&c);
    assert_eq!(closed, history + 1, "one close");

    // The same file again: the deal is closed as it says, nothing is sent.
    let (out, v) = c.import_rows(&close, "again", &["--mode", "upsert"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(deal_counts(&v), (json!(0), json!(1), json!(0)), "{v}");
    // Another status for a closed deal: reported, never a second close.
    let other = row("20", "Проигрыш по цене", "", "", "", "нет");
    let (out, v) = c.import_rows(&other, "other", &["--mode", "upsert"]);
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    assert_eq!(deal_counts(&v).2, 1, "{v}");
    let said = report_text(&report(&c, "other"));
    assert!(
        said.contains("already closed") && said.contains("Победа полная"),
        "{said}"
    );
    assert_eq!(deal(&c)["close"]["status"], "Победа полная");
    assert_eq!(history_rows(&c), closed, "no second close");
}

#[test]
fn a_task_is_done_exactly_once_across_a_lost_answer_and_a_second_run() {
    let c = case();
    let (active, tid) = task(&c);
    assert_eq!(active, "yes");
    let history = history_rows(&c);
    let done = row("20", "", "", "", "", "да");
    // task/doit is processed, but its answer never arrives: the task is read back, not redone.
    c.sb.lose_answers_of("/task/doit", 1);
    let (out, v) = c.import_rows(&done, "done", &["--mode", "upsert"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(v["entities"]["task"]["updated"], 1, "{v}");
    assert_eq!(task(&c), ("no".to_string(), tid));
    assert_eq!(
        history_rows(&c),
        history + 1,
        "doit adds a history row per call: one call"
    );
    // A second run finds it done: no second doit.
    let (out, v) = c.import_rows(&done, "again", &["--mode", "upsert"]);
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(v["entities"]["task"]["unchanged"], 1, "{v}");
    assert_eq!(history_rows(&c), history + 1, "still one");
}

#[test]
fn the_owner_changes_through_change_user_and_an_unknown_login_is_refused() {
    let c = case();
    let admin = deal(&c)["user"].clone();
    let history = history_rows(&c);
    let (out, v) = c.import_rows(
        &row("20", "", "", "", "ghost@firm.ru", "нет"),
        "ghost",
        &["--mode", "upsert"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    refused(&v);
    assert_eq!(
        deal(&c)["user"],
        admin,
        "the deal still has its owner (not owner 0)"
    );
    assert_eq!(history_rows(&c), history, "nothing sent");

    let (out, v) = c.import_rows(
        &row("20", "", "", "", MANAGER, "нет"),
        "owner",
        &["--mode", "update"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(deal_counts(&v).0, 1, "{v}");
    assert_eq!(deal(&c)["user"], MANAGER);
    assert!(changes(&report(&c, "owner")).contains(&(
        "user".into(),
        admin.as_str().unwrap().into(),
        MANAGER.into()
    )));
}
