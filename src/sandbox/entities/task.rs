//! task/*: reminders ("Todo" on the real server; NOTES §6, §11, §14).

use super::{
    data_or_empty, date_window, dict, done, first_int, history, info, like, link_filters,
    person_link, row_where, Action, Ctx, Params, Table, R,
};
use crate::crm::Entity;
use crate::sandbox::api::error;
use crate::sandbox::dicts;
use crate::sandbox::text::{clean_content, clean_field, datetime_error, parse_date, value_str};
use crate::sandbox::users::Users;
use rusqlite::types::Value as Sql;
use serde_json::{json, Value};

actions! {
    /// task/* actions; an unknown one is answered as recorded in v3-error-unknown-action-task.
    TaskAction, unknown = error(404, "Неизвестный метод");
    Fields = "fields", Tips = "tips", List = "list", Info = "info", Add = "add",
    Update = "update", Doit = "doit", Delete = "delete",
}

/// update, doit and delete take the id as `id` or `tid`; info as `id` only, with its own texts.
const TABLE: Table = Table {
    name: "task",
    id: "tid",
    alias: "t",
    select: TASK_SELECT,
    params: &["id", "tid"],
    missing: "Отсутствуют параметры - tid напоминания",
    not_found: "Напоминание не найдено.",
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
        TaskAction::Update => update(ctx),
        TaskAction::Doit => doit(ctx),
        TaskAction::Delete => TABLE.delete(
            ctx,
            |tid| json!({"result": "Успешно", "data": tid, "message": "Запись удалена"}),
        ),
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
        return Ok(error(405, "Отсутствуют параметры - id напоминания"));
    };
    let Some(r) = row_where(ctx.conn, TASK_SELECT, "t.tid = ?", Sql::Integer(id))? else {
        return Ok(error(
            403,
            "Напоминание с указанным id не найдено в пределах аккаунта указанного пользователя.",
        ));
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

/// task/update is a full replace (NOTES §11): what is not sent is blanked (des "", tip
/// "Звонок", priority, speed, pid 0), the task is active again (a done one re-opens) and
/// belongs to the API user whatever `user` says; title, date, time, client and deal stay
/// unless sent.
fn update(ctx: &mut Ctx) -> R {
    let id = or_answer!(TABLE.existing(ctx)?);
    let datum = match ctx.p.get("datum") {
        None => None,
        v => match parse_date(v) {
            Ok(d) => Some(d),
            Err(raw) => return Ok(error(500, &datetime_error(&raw, "app_tasks", "datum"))),
        },
    };
    let text = |k: &str| ctx.str(k).map(|v| clean_field(&v));
    let autor = i64::from(ctx.p.contains_key("user"));
    ctx.conn.execute(
        "UPDATE task SET title = COALESCE(?1, title), des = ?2, tip = ?3, priority = ?4,
         speed = ?5, pid = ?6, clid = COALESCE(?7, clid), did = COALESCE(?8, did),
         datum = COALESCE(?9, datum), totime = COALESCE(?10, totime), active = 'yes',
         iduser = 1, autor = ?11, day = '' WHERE tid = ?12",
        rusqlite::params![
            text("title"),
            text("des").unwrap_or_default(),
            text("tip").unwrap_or_else(|| "Звонок".into()),
            ctx.int("priority").unwrap_or(0),
            ctx.int("speed").unwrap_or(0),
            first_int(ctx.p.get("pid")),
            ctx.p.get("clid").map(|v| first_int(Some(v))),
            ctx.p.get("did").map(|v| first_int(Some(v))),
            datum,
            ctx.str("totime"),
            autor,
            id
        ],
    )?;
    Ok(done(id))
}

/// task/doit marks the task done and writes a history row with the task's links, on every
/// call: it is not idempotent (v3-task-doit-twice).
fn doit(ctx: &mut Ctx) -> R {
    let id = or_answer!(TABLE.existing(ctx)?);
    let Some(task) = row_where(ctx.conn, TASK_SELECT, "t.tid = ?", Sql::Integer(id))? else {
        return Ok(TABLE.not_found());
    };
    let link = |k: &str| task[k].as_i64().unwrap_or(0);
    let tip = ctx
        .str("tip")
        .or_else(|| task["tip"].as_str().map(str::to_string))
        .unwrap_or_default();
    let des = ctx
        .str("description")
        .map(|d| clean_content(&d))
        .unwrap_or_else(|| "Выполнено напоминание".into());
    let status = ctx.int("status").unwrap_or(1);
    let tx = ctx.conn.transaction()?;
    let cid = history::write_auto(&tx, &tip, &des, (link("clid"), link("pid"), link("did")))?;
    tx.execute(
        "UPDATE task SET active = 'no', status = ?1 WHERE tid = ?2",
        rusqlite::params![status, id],
    )?;
    tx.commit()?;
    Ok(
        json!({"result": "Успешно", "data": id, "message": "Добавлена Активность", "historyID": cid}),
    )
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
            "Напоминание с указанным id не найдено в пределах аккаунта указанного пользователя."
        );
    }

    #[test]
    fn doit_is_not_idempotent_each_call_writes_another_history_row() {
        let crm = Crm::new();
        let clid = crm.add("client", json!({"title": "Клиент задачи"}));
        let tid = crm.add(
            "task",
            json!({"title": "Сделать", "clid": clid, "tip": "исх.Звонок"}),
        );
        let before = crm.sql_value("SELECT COUNT(*) FROM history");
        let first = crm.call("task", "doit", json!({ "tid": tid }));
        assert_eq!(first["message"], "Добавлена Активность");
        let second = crm.call(
            "task",
            "doit",
            json!({"id": tid, "description": "Второй раз", "status": 2}),
        );
        assert_eq!(second["result"], "Успешно");
        assert_ne!(first["historyID"], second["historyID"]);
        let added = crm
            .sql_value("SELECT COUNT(*) FROM history")
            .as_i64()
            .unwrap()
            - before.as_i64().unwrap();
        assert_eq!(added, 2, "two calls, two history rows");
        let rows = crm.sql_value(&format!(
            "SELECT group_concat(des || '|' || tip || '|' || clid, ';') FROM history WHERE clid = {clid}"
        ));
        assert_eq!(
            rows,
            json!("Выполнено напоминание|исх.Звонок|1;Второй раз|исх.Звонок|1")
        );
        let d = &crm.call("task", "info", json!({ "id": tid }))["data"];
        assert_eq!(
            (d["active"].as_str(), d["status"].as_str()),
            (Some("no"), Some("2"))
        );
    }

    #[test]
    fn update_is_a_full_replace_that_reopens_a_done_task_and_takes_it_from_its_owner() {
        let crm = Crm::new();
        let clid = crm.add("client", json!({"title": "Клиент задачи"}));
        let pid = crm.add("person", json!({"person": "Контакт"}));
        let tid = crm.add(
            "task",
            json!({"title": "Позвонить", "des": "Агенда", "priority": 2, "speed": 1,
                   "clid": clid, "pid": pid, "user": "manager2@test.ru", "datum": "2026-12-01"}),
        );
        crm.call("task", "doit", json!({ "id": tid }));
        let r = crm.call(
            "task",
            "update",
            json!({"id": tid, "title": "Позвонить (изм)", "user": "manager2@test.ru"}),
        );
        assert_eq!(r, json!({"result": "Успешно", "data": tid}));
        let d = &crm.call("task", "info", json!({ "id": tid }))["data"];
        assert_eq!(d["title"], "Позвонить (изм)");
        assert_eq!(d["active"], "yes", "a done task is open again");
        assert_eq!(d["des"], "", "omitted agenda blanked");
        assert_eq!(
            (d["priority"].as_str(), d["speed"].as_str()),
            (Some("0"), Some("0"))
        );
        assert_eq!(d["person"][0]["pid"], 0, "omitted contact unlinked");
        assert_eq!(
            d["iduser"], 1,
            "owner is the API user even with `user` sent"
        );
        assert_eq!(
            (d["clid"].as_i64(), d["datum"].as_str()),
            (Some(clid), Some("2026-12-01"))
        );
    }

    #[test]
    fn update_doit_and_delete_answer_as_recorded_for_missing_and_unknown_ids() {
        let crm = Crm::new();
        let tid = crm.add("task", json!({"title": "Сделать"}));
        for action in ["update", "doit", "delete"] {
            let r = crm.call("task", action, json!({"id": 999, "title": "x"}));
            assert_eq!(
                r["error"],
                json!({"code": 403, "text": "Напоминание не найдено."})
            );
            let r = crm.call("task", action, json!({"id": "abc"}));
            assert_eq!(
                r["error"],
                json!({"code": 405, "text": "Отсутствуют параметры - tid напоминания"})
            );
        }
        assert_eq!(
            crm.call("task", "delete", json!({ "tid": tid })),
            json!({"result": "Успешно", "data": tid, "message": "Запись удалена"})
        );
        assert_eq!(
            crm.call("task", "delete", json!({ "tid": tid }))["error"]["code"],
            403
        );
    }
}
