//! task/*: reminders ("Todo" on the real server; NOTES §6, §11, §14).

use super::{
    data_or_empty, date_window, dict, done, first_int, info, like, link_filters, person_link,
    row_where, Action, Ctx, Params, Table, R,
};
use crate::crm::Entity;
use crate::sandbox::api::error;
use crate::sandbox::dicts;
use crate::sandbox::text::{clean_field, datetime_error, parse_date, value_str};
use crate::sandbox::users::Users;
use rusqlite::types::Value as Sql;
use serde_json::{json, Value};

actions! {
    /// task/* actions; an unknown one is answered as recorded in v3-error-unknown-action-task.
    TaskAction, unknown = error(404, "Неизвестный метод");
    Fields = "fields", Tips = "tips", List = "list", Info = "info", Add = "add",
    Update = "update", Doit = "doit", Delete = "delete",
}

/// update, doit and delete take the id as `id` or `tid`; info as `id` only.
const TABLE: Table = Table {
    name: "task",
    id: "tid",
    alias: "t",
    select: TASK_SELECT,
    params: &["id", "tid"],
    missing: "Отсутствуют параметры - id напоминания",
    not_found: "Напоминание не найдено",
};

/// What task/add answers for an owner login the CRM does not have.
const TASK_UNKNOWN_OWNER_FATAL: &str = "<br />\n<b>Fatal error</b>:  Uncaught TypeError: Cannot access offset of type string on null in <b>/var/www/salesman/inc/class/Todo.php</b>:<b>412</b>\nStack trace:\n#0 /var/www/salesman/developer/v3/task.php(188): Salesman\\Todo-&gt;add()\n#1 {main}\n  thrown in <b>/var/www/salesman/inc/class/Todo.php</b> on line <b>412</b><br />\n";

/// task/add notifies the task's owner; an unknown `user` login makes the real server die with a
/// PHP fatal error on every attempt (issue 15; the exact page was not recorded).
pub(super) fn unknown_owner(users: &Users, action: Action, p: &Params) -> Option<String> {
    if action != Action::Task(TaskAction::Add) {
        return None;
    }
    let login = value_str(p.get("user"), "").filter(|u| !u.is_empty())?;
    users
        .id_of(&login)
        .is_none()
        .then(|| TASK_UNKNOWN_OWNER_FATAL.to_string())
}

pub(super) fn handle(ctx: &mut Ctx, a: TaskAction) -> R {
    match a {
        TaskAction::Fields => Ok(ctx.fields.answer(Entity::Task)),
        TaskAction::Tips => Ok(dict(dicts::TASK_TIPS)),
        TaskAction::List => list(ctx),
        TaskAction::Info => task_info(ctx),
        TaskAction::Add => add(ctx),
        TaskAction::Update => update(ctx, false),
        TaskAction::Doit => update(ctx, true),
        TaskAction::Delete => TABLE.delete(ctx, done),
    }
}

const TASK_SELECT: &str =
    "SELECT t.*, COALESCE(c.title, '') AS client, COALESCE(d.title, '') AS dogovor,
    p.person AS pname FROM task t LEFT JOIN client c ON c.clid = t.clid
    LEFT JOIN deal d ON d.did = t.did LEFT JOIN person p ON p.pid = t.pid";

fn row(ctx: &Ctx, r: &Params) -> Value {
    let s = |k: &str| json!(r[k].to_string().trim_matches('"'));
    json!({
        "tid": s("tid"), "datum": r["datum"], "totime": r["totime"], "title": r["title"],
        "des": r["des"], "tip": r["tip"], "active": r["active"], "priority": s("priority"),
        "speed": s("speed"), "iduser": r["iduser"], "user": ctx.user_name(&r["iduser"]),
        "autor": r["autor"], "autorlogin": "", "clid": r["clid"], "client": r["client"],
        "did": r["did"], "dogovor": r["dogovor"], "readonly": r["readonly"], "day": r["day"],
        "status": s("status")
    })
}

fn list(ctx: &mut Ctx) -> R {
    // Without `active` the real server (PHP 8) returns nothing.
    let active = match ctx.str("active").as_deref() {
        Some("yes") => "yes",
        Some("no") => "no",
        _ => return Ok(json!([])),
    };
    let (start, end) = date_window(ctx);
    let mut wh = vec!["t.active = ?".to_string(), "t.datum BETWEEN ? AND ?".into()];
    let mut args = vec![Sql::Text(active.into()), Sql::Text(start), Sql::Text(end)];
    if let Some(w) = ctx.str("word") {
        wh.push("(t.title LIKE ? OR t.des LIKE ?)".into());
        args.extend([like(&w), like(&w)]);
    }
    link_filters(ctx, "t", &mut wh, &mut args);
    let order = "t.datum DESC, t.totime DESC, t.tid ASC";
    let (_, found) = TABLE.page(ctx, &wh, &args, order)?;
    Ok(data_or_empty(found.iter().map(|r| row(ctx, r)).collect()))
}

fn task_info(ctx: &mut Ctx) -> R {
    let Some(id) = ctx.id("id") else {
        return Ok(error(405, TABLE.missing));
    };
    let Some(r) = row_where(ctx.conn, TASK_SELECT, "t.tid = ?", Sql::Integer(id))? else {
        return Ok(TABLE.not_found());
    };
    let mut d = row(ctx, &r);
    if let Value::Object(m) = &mut d {
        let tail: Vec<(String, Value)> = ["did", "dogovor", "readonly", "day", "status"]
            .iter()
            .filter_map(|k| m.shift_remove(*k).map(|v| (k.to_string(), v)))
            .collect();
        m.insert("person".into(), person_link(&r["pid"], &r));
        m.extend(tail);
    }
    Ok(info(d))
}

fn add(ctx: &mut Ctx) -> R {
    let Some(title) = ctx.str("title").map(|t| clean_field(&t)) else {
        return Ok(error(405, "Отсутствуют параметры - Заголовок"));
    };
    let datum = match parse_date(ctx.p.get("datum")) {
        Ok(d) => d,
        Err(raw) => return Ok(error(500, &datetime_error(&raw, "app_tasks", "datum"))),
    };
    let owner = ctx.owner(ctx.p);
    ctx.conn.execute(
        "INSERT INTO task (datum, totime, title, des, tip, priority, speed, iduser, clid, pid, did, day)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        rusqlite::params![
            datum,
            ctx.str("totime").unwrap_or_else(|| "09:00".into()),
            title,
            ctx.str("des").map(|d| clean_field(&d)),
            ctx.str("tip").unwrap_or_else(|| "Задача".into()),
            ctx.int("priority").unwrap_or(0),
            ctx.int("speed").unwrap_or(0),
            owner,
            first_int(ctx.p.get("clid")),
            first_int(ctx.p.get("pid")),
            first_int(ctx.p.get("did")),
            ctx.str("day")
        ],
    )?;
    let tid = ctx.conn.last_insert_rowid();
    ctx.fields
        .store(ctx.conn, Entity::Task, tid, ctx.p, false)?;
    Ok(done(tid))
}

/// update, and doit (which first marks the task done).
fn update(ctx: &mut Ctx, doit: bool) -> R {
    let id = or_answer!(TABLE.existing(ctx)?);
    if doit {
        ctx.conn.execute(
            "UPDATE task SET active = 'no', status = 1 WHERE tid = ?1",
            [id],
        )?;
    }
    for f in ["title", "des", "tip", "totime", "active"] {
        if let Some(v) = ctx.str(f) {
            TABLE.set(ctx.conn, id, f, clean_field(&v))?;
        }
    }
    for f in ["priority", "speed", "status", "clid", "pid", "did"] {
        if let Some(v) = ctx.int(f) {
            TABLE.set(ctx.conn, id, f, v)?;
        }
    }
    if ctx.p.contains_key("datum") {
        match parse_date(ctx.p.get("datum")) {
            Ok(d) => TABLE.set(ctx.conn, id, "datum", d)?,
            Err(raw) => return Ok(error(500, &datetime_error(&raw, "app_tasks", "datum"))),
        }
    }
    Ok(done(id))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Crm;
    use serde_json::json;

    #[test]
    fn list_without_active_answers_an_empty_array() {
        let crm = Crm::new();
        crm.add("task", json!({"title": "Позвонить"}));
        assert_eq!(crm.call("task", "list", json!({})), json!([]));
        assert_eq!(
            crm.call("task", "list", json!({"active": "maybe"})),
            json!([])
        );
        let r = crm.call("task", "list", json!({"active": "yes"}));
        assert_eq!(r["data"][0]["title"], "Позвонить");
        assert!(r["data"][0]["tid"].is_string(), "tid is a string: {r}");
        assert_eq!(r["data"][0]["user"], "admin@test.ru");
        assert_eq!(crm.call("task", "list", json!({"active": "no"})), json!([]));
    }

    #[test]
    fn add_needs_a_title_and_an_unknown_owner_kills_the_request() {
        let crm = Crm::new();
        let r = crm.call("task", "add", json!({"datum": "2024-03-01"}));
        assert_eq!(r["error"]["text"], "Отсутствуют параметры - Заголовок");
        let page = crm.fatal("task", "add", json!({"title": "x", "user": "ghost@x"}));
        assert!(page.contains("Todo.php"), "{page}");
        assert_eq!(crm.sql_value("SELECT COUNT(*) FROM task"), json!(0));
        let tid = crm.add(
            "task",
            json!({"title": "Встреча", "user": "manager2@test.ru"}),
        );
        let d = &crm.call("task", "info", json!({ "id": tid }))["data"];
        assert_eq!(d["iduser"], 2);
        assert_eq!(d["tip"], "Задача");
        assert_eq!(d["totime"], "09:00");
    }

    #[test]
    fn info_takes_id_only_and_places_person_before_did() {
        let crm = Crm::new();
        let pid = crm.add("person", json!({"person": "Гена"}));
        let tid = crm.add("task", json!({"title": "Т", "pid": [pid]}));
        assert_eq!(
            crm.call("task", "info", json!({ "tid": tid }))["error"]["code"],
            405
        );
        let d = &crm.call("task", "info", json!({ "id": tid }))["data"];
        assert_eq!(d["person"], json!([{"pid": pid, "person": "Гена"}]));
        let keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        let at = |k: &str| keys.iter().position(|x| *x == k).unwrap();
        assert_eq!(at("person") + 1, at("did"));
        assert_eq!(*keys.last().unwrap(), "status");
        assert_eq!(
            crm.call("task", "info", json!({"id": 999}))["error"]["text"],
            "Напоминание не найдено"
        );
    }

    #[test]
    fn doit_closes_the_task_and_delete_takes_tid_too() {
        let crm = Crm::new();
        let tid = crm.add("task", json!({"title": "Сделать"}));
        let r = crm.call("task", "doit", json!({ "tid": tid }));
        assert_eq!(r, json!({"result": "Успешно", "data": tid}));
        let d = &crm.call("task", "info", json!({ "id": tid }))["data"];
        assert_eq!(
            (d["active"].as_str(), d["status"].as_str()),
            (Some("no"), Some("1"))
        );
        assert_eq!(
            crm.call("task", "update", json!({"id": 999}))["error"]["code"],
            403
        );
        assert_eq!(
            crm.call("task", "delete", json!({ "tid": tid })),
            json!({"result": "Успешно", "data": tid})
        );
        assert_eq!(
            crm.call("task", "delete", json!({ "tid": tid }))["error"]["code"],
            403
        );
    }
}
