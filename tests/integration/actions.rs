//! Actions as fields: in upsert/update mode a deal's step, close and owner and a task's "done"
//! go through the CRM's own actions (deal/change.step, deal/close, deal/change.user, task/doit),
//! never twice, and values the CRM does not know are refused before anything is sent.

use crate::common::{against, say};
use calamine::{open_workbook, Data, Reader, Xlsx};
use serde_json::{json, Value};
use smbatch::crm::{CrmClient, Entity};
use smbatch::sandbox::{Sandbox, SandboxConfig, UserSpec};
use std::path::{Path, PathBuf};
use std::process::Output;

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

struct Case {
    dir: tempfile::TempDir,
    sb: Sandbox,
}

impl Case {
    /// A CRM holding the client, deal D-1 at step 20 owned by the API user, and an open task.
    fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.toml"), TEMPLATE).unwrap();
        let sb = Sandbox::start(SandboxConfig {
            users: vec![UserSpec::new(MANAGER, "Менеджер Второй", true)],
            ..SandboxConfig::default()
        })
        .unwrap();
        let c = Case { dir, sb };
        let (out, v) = c.import(&row("20", "", "", "", "", "нет"), "first", "insert");
        assert_eq!(out.status.code(), Some(0), "{}", say(&out));
        assert_eq!(v["entities"]["deal"]["created"], 1, "{v}");
        assert_eq!(v["entities"]["task"]["created"], 1, "{v}");
        c
    }

    /// `import` of `rows` in `mode`, with a journal and report of its own (`run`), `--json`.
    fn import(&self, rows: &str, run: &str, mode: &str) -> (Output, Value) {
        let file = self.dir.path().join(format!("{run}.csv"));
        std::fs::write(&file, rows).unwrap();
        let t = self.dir.path().join("t.toml");
        let report = self.report(run);
        let journal = self.dir.path().join(format!("{run}.journal.sqlite"));
        let args = [
            "import",
            file.to_str().unwrap(),
            "-t",
            t.to_str().unwrap(),
            "-o",
            report.to_str().unwrap(),
            "--journal",
            journal.to_str().unwrap(),
            "--mode",
            mode,
            "--json",
        ];
        let out = against(&self.sb, &args).output().unwrap();
        let v: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", say(&out)));
        (out, v)
    }

    fn report(&self, run: &str) -> PathBuf {
        self.dir.path().join(format!("{run}.xlsx"))
    }

    fn call(&self, entity: Entity, action: &str, body: Value) -> Value {
        let client = CrmClient::new(&self.sb.connection()).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(client.call_raw(entity, action, &body)).unwrap()
    }

    /// The deal as deal/info shows it (by our key, which went into its uid).
    fn deal(&self) -> Value {
        self.call(Entity::Deal, "info", json!({"uid": "D-1"}))["data"].clone()
    }

    /// The task with its `active` flag ("yes" open, "no" done).
    fn task(&self) -> (String, i64) {
        for active in ["yes", "no"] {
            let v = self.call(
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

    fn history(&self) -> u64 {
        self.sb.count(Entity::History)
    }
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
    let c = Case::new();
    assert_eq!(c.deal()["stepTitle"], 20);
    let (out, v) = c.import(&row("60", "", "", "", "", "нет"), "step", "upsert");
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(deal_counts(&v).0, 1, "{v}");
    assert_eq!(
        c.deal()["stepTitle"],
        60,
        "deal/update ignores step: it took change.step"
    );
    assert!(
        changes(&c.report("step")).contains(&("step".into(), "20".into(), "60".into())),
        "{:?}",
        changes(&c.report("step"))
    );
    // A step this CRM does not have would clear the deal's step: the row is refused, nothing sent.
    let history = c.history();
    let (out, v) = c.import(&row("65", "", "", "", "", "нет"), "unknown", "update");
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    refused(&v);
    assert_eq!(c.deal()["stepTitle"], 60, "the step is kept");
    assert_eq!(c.history(), history, "no change.step was sent");
}

#[test]
fn a_deal_is_closed_once_with_a_status_the_crm_knows() {
    let c = Case::new();
    let history = c.history();
    // An unknown status would close the deal with no status (and allow closing it again).
    let (out, v) = c.import(
        &row("20", "Победили", "90000", "28.11.2026", "", "нет"),
        "unknown",
        "upsert",
    );
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    refused(&v);
    assert_eq!(c.deal()["close"]["close"], "no");
    assert_eq!(c.history(), history, "nothing sent");

    let close = row("20", "Победа полная", "90 000,50", "28.11.2026", "", "нет");
    let (out, v) = c.import(&close, "close", "upsert");
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(deal_counts(&v).0, 1, "{v}");
    let d = c.deal();
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
    let closed = c.history();
    assert_eq!(closed, history + 1, "one close");

    // The same file again: the deal is closed as it says, nothing is sent.
    let (out, v) = c.import(&close, "again", "upsert");
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(deal_counts(&v), (json!(0), json!(1), json!(0)), "{v}");
    // Another status for a closed deal: reported, never a second close.
    let other = row("20", "Проигрыш по цене", "", "", "", "нет");
    let (out, v) = c.import(&other, "other", "upsert");
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    assert_eq!(deal_counts(&v).2, 1, "{v}");
    let said = report_text(&c.report("other"));
    assert!(
        said.contains("already closed") && said.contains("Победа полная"),
        "{said}"
    );
    assert_eq!(c.deal()["close"]["status"], "Победа полная");
    assert_eq!(c.history(), closed, "no second close");
}

#[test]
fn a_task_is_done_exactly_once_across_a_lost_answer_and_a_second_run() {
    let c = Case::new();
    let (active, tid) = c.task();
    assert_eq!(active, "yes");
    let history = c.history();
    let done = row("20", "", "", "", "", "да");
    // task/doit is processed, but its answer never arrives: the task is read back, not redone.
    c.sb.lose_answers_of("/task/doit", 1);
    let (out, v) = c.import(&done, "done", "upsert");
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(v["entities"]["task"]["updated"], 1, "{v}");
    assert_eq!(c.task(), ("no".to_string(), tid));
    assert_eq!(
        c.history(),
        history + 1,
        "doit adds a history row per call: one call"
    );
    // A second run finds it done: no second doit.
    let (out, v) = c.import(&done, "again", "upsert");
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(v["entities"]["task"]["unchanged"], 1, "{v}");
    assert_eq!(c.history(), history + 1, "still one");
}

#[test]
fn the_owner_changes_through_change_user_and_an_unknown_login_is_refused() {
    let c = Case::new();
    let admin = c.deal()["user"].clone();
    let history = c.history();
    let (out, v) = c.import(
        &row("20", "", "", "", "ghost@firm.ru", "нет"),
        "ghost",
        "upsert",
    );
    assert_eq!(out.status.code(), Some(1), "{}", say(&out));
    refused(&v);
    assert_eq!(
        c.deal()["user"],
        admin,
        "the deal still has its owner (not owner 0)"
    );
    assert_eq!(c.history(), history, "nothing sent");

    let (out, v) = c.import(&row("20", "", "", "", MANAGER, "нет"), "owner", "update");
    assert_eq!(out.status.code(), Some(0), "{}", say(&out));
    assert_eq!(deal_counts(&v).0, 1, "{v}");
    assert_eq!(c.deal()["user"], MANAGER);
    assert!(changes(&c.report("owner")).contains(&(
        "user".into(),
        admin.as_str().unwrap().into(),
        MANAGER.into()
    )));
}
