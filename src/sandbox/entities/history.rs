//! history/*: activity records (NOTES §2, §6, §7, §14).

use super::{
    batch_rows, data_or_empty, date_window, dict, done, first_int, info, like, link_filters,
    person_link, row_where, Ctx, Params, Table, R,
};
use crate::crm::Entity;
use crate::sandbox::api::error;
use crate::sandbox::dicts;
use crate::sandbox::fields::FieldSet;
use crate::sandbox::text::{
    clean_content, datetime_error, in_timestamp_range, now, parse_datetime, utf8mb3_error,
    value_str,
};
use crate::sandbox::users::Users;
use rusqlite::types::Value as Sql;
use rusqlite::Connection;
use serde_json::{json, Map, Value};

actions! {
    /// history/* actions; an unknown one is answered as recorded in v3-error-unknown-action-history.
    HistoryAction, unknown = error(404, "Не понимаю чЁ происходит. Может в следующий раз?");
    Fields = "fields", Tips = "tips", List = "list", Info = "info", Add = "add",
    AddList = "add.list", Update = "update", Delete = "delete",
}

const TABLE: Table = Table {
    name: "history",
    id: "cid",
    alias: "h",
    select: HISTORY_SELECT,
    params: &["cid"],
    missing: "Отсутствуют параметры - cid записи",
    not_found: "Запись не найдена.",
};

pub(super) fn handle(ctx: &mut Ctx, a: HistoryAction) -> R {
    match a {
        HistoryAction::Fields => Ok(ctx.fields.answer(Entity::History)),
        HistoryAction::Tips => Ok(dict(dicts::HISTORY_TIPS)),
        HistoryAction::List => list(ctx),
        HistoryAction::Info => history_info(ctx),
        HistoryAction::Add => add(ctx),
        HistoryAction::AddList => add_list(ctx),
        HistoryAction::Update => update(ctx),
        HistoryAction::Delete => TABLE.delete(ctx, |_| json!({"result": "Успешно"})),
    }
}

fn history_info(ctx: &mut Ctx) -> R {
    let cid = or_answer!(TABLE.id(ctx));
    let Some(r) = row_where(ctx.conn, HISTORY_SELECT, "h.cid = ?", Sql::Integer(cid))? else {
        // The code is a string on this answer.
        return Ok(error(
            "403",
            "Не найдено в пределах аккаунта указанного пользователя.",
        ));
    };
    let mut d = row(ctx, &r, false);
    if let Value::Object(m) = &mut d {
        let did = m.shift_remove("did").unwrap_or(json!(0));
        let dog = m.shift_remove("dogovor").unwrap_or(json!(""));
        m.insert("person".into(), person_link(&r["pid"], &r));
        m.insert("did".into(), did);
        m.insert("dogovor".into(), dog);
    }
    Ok(info(d))
}

fn add(ctx: &mut Ctx) -> R {
    if ctx.str("content").is_none() {
        return Ok(error(405, "Отсутствуют параметры"));
    }
    if ["clid", "pid", "did"]
        .iter()
        .all(|k| ctx.int(k).unwrap_or(0) == 0)
    {
        return Ok(error(405, "Отсутствуют параметры"));
    }
    let tx = ctx.conn.transaction()?;
    let r = match insert(&tx, ctx.users, ctx.p, Some("Событие"), ctx.fields)? {
        Ok(cid) => done(cid),
        Err(e) => json!({"result": "Error", "error": e}),
    };
    tx.commit()?;
    Ok(r)
}

fn add_list(ctx: &mut Ctx) -> R {
    let rows_in = batch_rows(ctx.p, "list");
    let tx = ctx.conn.transaction()?;
    let mut out = Vec::with_capacity(rows_in.len());
    // The real server reuses one response array across rows, so `data` and `error`
    // leak into later rows (NOTES §2). Clients judge rows by `result` only.
    let mut leak = Map::new();
    for r in &rows_in {
        let row = r.as_object().cloned().unwrap_or_default();
        let res = if value_str(row.get("content"), "").is_none_or(|c| c.trim().is_empty()) {
            Err(json!({"code": 405, "text": "Отсутствуют параметры - Заголовок"}))
        } else {
            insert(&tx, ctx.users, &row, None, ctx.fields)?
        };
        match res {
            Ok(cid) => {
                leak.insert("result".into(), json!("Успешно"));
                leak.insert("data".into(), json!(cid));
            }
            Err(e) => {
                leak.insert("result".into(), json!("Error"));
                leak.insert("error".into(), e);
            }
        }
        out.push(Value::Object(leak.clone()));
    }
    tx.commit()?;
    Ok(Value::Array(out))
}

fn update(ctx: &mut Ctx) -> R {
    let cid = or_answer!(TABLE.existing(ctx)?);
    if let Some(c) = ctx.str("content") {
        TABLE.set(ctx.conn, cid, "des", clean_content(&c))?;
    }
    if let Some(t) = ctx.str("tip") {
        TABLE.set(ctx.conn, cid, "tip", t)?;
    }
    if ctx.p.contains_key("datum") {
        match parse_datetime(ctx.p.get("datum")) {
            Ok(d) if in_timestamp_range(&d) => TABLE.set(ctx.conn, cid, "datum", d)?,
            Ok(d) | Err(d) => {
                return Ok(error(
                    500,
                    &format!(
                        "{} в строке 1292",
                        datetime_error(&d, "app_history", "datum")
                    ),
                ))
            }
        }
    }
    Ok(done(cid))
}

/// Inner `Ok(Err(error_object))`: the row is rejected the way MySQL strict mode rejects it.
fn insert(
    conn: &Connection,
    users: &Users,
    row: &Params,
    default_tip: Option<&str>,
    set: &FieldSet,
) -> rusqlite::Result<Result<i64, Value>> {
    let content = clean_content(&value_str(row.get("content"), ", ").unwrap_or_default());
    if let Some(e) = utf8mb3_error(&content, "app_history", "des") {
        return Ok(Err(
            json!({"code": 500, "text": format!("{e} в строке 1292")}),
        ));
    }
    let datum = match parse_datetime(row.get("datum")) {
        Ok(d) if in_timestamp_range(&d) => d,
        Ok(_) | Err(_) => {
            let raw = value_str(row.get("datum"), "").unwrap_or_default();
            return Ok(Err(json!({"code": 500, "text": format!(
                "{} в строке 1292",
                datetime_error(&raw, "app_history", "datum")
            )})));
        }
    };
    let tip = value_str(row.get("tip"), "")
        .filter(|t| !t.is_empty())
        .or(default_tip.map(str::to_string));
    let owner = users.owner(row);
    conn.prepare_cached(
        "INSERT INTO history (datum, des, tip, iduser, clid, pid, did) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(rusqlite::params![
        datum,
        content,
        tip,
        owner,
        first_int(row.get("clid")),
        first_int(row.get("pid")),
        first_int(row.get("did"))
    ])?;
    let cid = conn.last_insert_rowid();
    set.store(conn, Entity::History, cid, row, false)?;
    Ok(Ok(cid))
}

/// A row the CRM writes by itself (NOTES §14): by the API user, now, with these links.
pub(super) fn write_auto(
    conn: &Connection,
    tip: &str,
    des: &str,
    (clid, pid, did): (i64, i64, i64),
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO history (datum, des, tip, iduser, clid, pid, did) VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6)",
    )?
    .execute(rusqlite::params![now(), des, tip, clid, pid, did])?;
    Ok(conn.last_insert_rowid())
}

/// The "ЛогCRM" row an update writes (client, person, deal): each change as
/// `field - <b>new</b> (было - old)`, an empty old value as "Нет" [v3-history-info-auto-logcrm].
pub(super) fn log_changes(
    conn: &Connection,
    changes: &[(String, String, String)],
    links: (i64, i64, i64),
) -> rusqlite::Result<i64> {
    let lines: Vec<String> = changes
        .iter()
        .map(|(field, old, new)| {
            let old = if old.is_empty() {
                "Нет"
            } else {
                old.as_str()
            };
            format!("{field} - <b>{new}</b> (было - {old})")
        })
        .collect();
    let des = format!(
        "Изменены параметры записи:\n============================\n {}",
        lines.join("\n")
    );
    write_auto(conn, "ЛогCRM", &des, links)
}

const HISTORY_SELECT: &str = "SELECT h.cid, h.datum, h.des, h.tip, h.iduser, h.clid, h.pid, h.did,
    COALESCE(c.title, '') AS client, COALESCE(d.title, '') AS dogovor, p.person AS pname
    FROM history h LEFT JOIN client c ON c.clid = h.clid LEFT JOIN deal d ON d.did = h.did
    LEFT JOIN person p ON p.pid = h.pid";

fn row(ctx: &Ctx, r: &Params, list: bool) -> Value {
    let content = r["des"].as_str().unwrap_or("");
    let content = if list {
        // history/list passes content through nl2br; info returns it raw.
        content.replace('\n', "<br />\n")
    } else {
        content.to_string()
    };
    let mut row = json!({
        "cid": r["cid"], "datum": r["datum"], "content": content, "tip": r["tip"],
        "iduser": r["iduser"], "user": ctx.user_name(&r["iduser"]), "clid": r["clid"],
        "client": r["client"], "did": r["did"], "dogovor": r["dogovor"]
    });
    // The real list adds `person` (between client and did) only to rows linked to a contact
    // (NOTES §6, v3-history-list-dates-all), so rows of one page differ in their keys.
    let pid = r["pid"].as_i64().unwrap_or(0);
    if list && pid > 0 {
        if let Value::Object(m) = row {
            let mut out = Map::new();
            for (k, v) in m {
                if k == "did" {
                    out.insert("person".into(), person_link(&json!(pid), r));
                }
                out.insert(k, v);
            }
            row = Value::Object(out);
        }
    }
    row
}

fn list(ctx: &mut Ctx) -> R {
    let (start, end) = date_window(ctx);
    let mut wh = vec!["substr(h.datum, 1, 10) BETWEEN ? AND ?".to_string()];
    let mut args = vec![Sql::Text(start), Sql::Text(end)];
    if let Some(w) = ctx.str("word") {
        wh.push("h.des LIKE ?".into());
        args.push(like(&w));
    }
    link_filters(ctx, "h", &mut wh, &mut args);
    let order = ctx
        .order(&["cid", "datum", "tip", "clid", "pid", "did"])
        .unwrap_or_else(|| "datum".into());
    let dir = ctx.dir();
    let (_, found) = TABLE.page(ctx, &wh, &args, &format!("h.{order} {dir}, h.cid ASC"))?;
    Ok(data_or_empty(
        found.iter().map(|r| row(ctx, r, true)).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Crm;
    use serde_json::json;

    #[test]
    fn add_needs_content_and_a_link_and_defaults_the_tip() {
        let crm = Crm::new();
        let r = crm.call("history", "add", json!({"content": "Звонок"}));
        assert_eq!(r["error"]["code"], 405, "no clid/pid/did");
        let r = crm.call("history", "add", json!({"clid": 1}));
        assert_eq!(r["error"]["code"], 405, "no content");
        let cid = crm.add(
            "history",
            json!({"content": "Звонок \"важный\"", "clid": 1}),
        );
        let d = &crm.call("history", "info", json!({ "cid": cid }))["data"];
        assert_eq!(d["content"], "Звонок важный", "quotes removed");
        assert_eq!(d["tip"], "Событие");
        let keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(&keys[keys.len() - 3..], ["person", "did", "dogovor"]);
    }

    #[test]
    fn add_list_leaks_data_and_error_into_later_rows() {
        let crm = Crm::new();
        let r = crm.call(
            "history",
            "add.list",
            json!({"list": [
                {"content": "первая", "clid": 1},
                {"content": ""},
                {"content": "третья", "clid": 1}
            ]}),
        );
        assert_eq!(r[0]["result"], "Успешно");
        assert_eq!(r[1]["result"], "Error");
        assert_eq!(r[1]["data"], r[0]["data"], "the previous row's data leaks");
        assert_eq!(r[2]["result"], "Успешно");
        assert_eq!(r[2]["error"]["code"], 405, "the previous row's error leaks");
        assert_ne!(r[2]["data"], r[0]["data"]);
    }

    #[test]
    fn a_datum_mysql_rejects_fails_the_row_with_its_error() {
        let crm = Crm::new();
        let r = crm.call(
            "history",
            "add",
            json!({"content": "x", "clid": 1, "datum": "1960-01-01 10:00:00"}),
        );
        assert_eq!(r["result"], "Error");
        assert!(r["error"]["text"]
            .as_str()
            .unwrap()
            .contains("'1960-01-01 10:00:00' for column `salesman`.`app_history`.`datum`"));
        assert_eq!(crm.sql_value("SELECT COUNT(*) FROM history"), json!(0));
    }

    #[test]
    fn list_shows_today_by_default_with_nl2br_and_person_only_on_linked_rows() {
        let crm = Crm::new();
        assert_eq!(crm.call("history", "list", json!({})), json!([]));
        let pid = crm.add("person", json!({"person": "Лена"}));
        crm.add("history", json!({"content": "a\nb", "clid": 1}));
        crm.add("history", json!({"content": "c", "pid": pid}));
        crm.sql(
            "INSERT INTO history (datum, des, clid) VALUES ('2020-05-05 10:00:00', 'старая', 1)",
        );
        let r = crm.call("history", "list", json!({"first": "old"}));
        let data = r["data"].as_array().unwrap();
        assert_eq!(data.len(), 2, "only today's rows: {r}");
        assert_eq!(data[0]["content"], "a<br />\nb");
        assert!(data[0].get("person").is_none());
        assert_eq!(data[1]["person"], json!([{"pid": pid, "person": "Лена"}]));
        let old = crm.call("history", "list", json!({"dateStart": "2020-05-01"}));
        assert_eq!(
            old["data"].as_array().unwrap().len(),
            3,
            "2020-05-01..today"
        );
    }

    #[test]
    fn update_and_delete_answer_403_for_a_missing_record() {
        let crm = Crm::new();
        let cid = crm.add("history", json!({"content": "до", "clid": 1}));
        let r = crm.call("history", "update", json!({"cid": cid, "content": "после"}));
        assert_eq!(r, json!({"result": "Успешно", "data": cid}));
        assert_eq!(
            crm.call("history", "info", json!({ "cid": cid }))["data"]["content"],
            "после"
        );
        assert_eq!(
            crm.call("history", "delete", json!({ "cid": cid })),
            json!({"result": "Успешно"})
        );
        let again = crm.call("history", "delete", json!({ "cid": cid }));
        assert_eq!(again["error"]["text"], "Запись не найдена.");
        let info = crm.call("history", "info", json!({ "cid": cid }));
        assert_eq!(info["error"]["code"], "403", "a string code on info");
    }
}
