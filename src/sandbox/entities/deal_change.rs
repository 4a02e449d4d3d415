//! deal/update, change.step, close, change.user, change.freeze and delete: changing deals the
//! way the real server does, its hazards included (NOTES §11, Deals): update zeroes `pid` and
//! `marga` unless sent, an unknown step clears the step, a deal closed with an unknown status
//! can be closed again, an unknown login leaves the deal to nobody, and delete by `uid` alone
//! wipes every history row that is not tied to a deal.

use super::deal::{step_of, step_param, DealAction, NO_STEP, TABLE};
use super::{count, dict, history, row_where, Ctx, Params};
use crate::crm::Entity;
use crate::sandbox::api::{error, Reply};
use crate::sandbox::dicts;
use crate::sandbox::faults::{deal_no_did_fatal, FREEZE_FATAL, FREEZE_NO_DATE_FATAL};
use crate::sandbox::text::{clean_field, datetime_error, parse_date, today, value_str};
use rusqlite::types::Value as Sql;
use serde_json::{json, Value};

/// The answer for a did the API user cannot see (none, or owned by nobody).
const NOT_IN_ACCOUNT: &str =
    "Сделка с указанным did не найдена в пределах аккаунта указанного пользователя.";

const NO_DID: &str = "Отсутствуют параметры - did сделки";

/// The deal row of a did, as stored.
fn deal_row(ctx: &Ctx, did: i64) -> rusqlite::Result<Option<Params>> {
    row_where(
        ctx.conn,
        "SELECT * FROM deal d",
        "d.did = ?",
        Sql::Integer(did),
    )
}

pub(super) fn handle(ctx: &mut Ctx, a: DealAction) -> rusqlite::Result<Reply> {
    let json = |v: rusqlite::Result<Value>| v.map(Reply::Json);
    match a {
        DealAction::Update => json(update(ctx)),
        DealAction::ChangeStep => change_step(ctx),
        DealAction::Close => json(close(ctx)),
        DealAction::ChangeUser => change_user(ctx),
        // A default install has no freeze date field: the real server dies on every call.
        DealAction::ChangeFreeze => Ok(Reply::Fatal(
            if ctx.p.contains_key("date") {
                FREEZE_FATAL
            } else {
                FREEZE_NO_DATE_FATAL
            }
            .to_string(),
        )),
        DealAction::Delete => delete(ctx),
        _ => Ok(Reply::Json(json!([]))),
    }
}

/// The page the real server dies with when the did is missing from its SQL (`near` with the
/// users' ids in place of `{ids}`).
fn no_did_fatal(ctx: &Ctx, near: &str, line: u32) -> Reply {
    Reply::Fatal(deal_no_did_fatal(
        &near.replace("{ids}", &ctx.users.ids_csv()),
        line,
    ))
}

/// A request number as PHP reads it (see [`super::invoice::php_sum`]).
fn sum(ctx: &Ctx, k: &str) -> Option<f64> {
    super::invoice::php_sum(ctx.p.get(k))
}

/// One column deal/update would write: its old value and the new one.
struct Change {
    col: &'static str,
    old: Value,
    new: Sql,
}

impl Change {
    fn same(&self) -> bool {
        match (&self.new, &self.old) {
            (Sql::Real(n), o) => o.as_f64().is_some_and(|o| (o - n).abs() < 0.005),
            (Sql::Integer(n), o) => o.as_i64() == Some(*n),
            (Sql::Text(n), Value::String(o)) => n == o,
            (Sql::Text(n), Value::Null) => n.is_empty(),
            (Sql::Text(n), o) => value_str(Some(o), "").as_deref() == Some(n.as_str()),
            _ => false,
        }
    }
    fn shown(v: &Sql) -> String {
        match v {
            Sql::Real(f) => f.to_string(),
            Sql::Integer(i) => i.to_string(),
            Sql::Text(t) => t.clone(),
            _ => String::new(),
        }
    }
}

/// deal/update: partial, except that `pid` and `marga` are reset to 0 unless sent; `kol` is
/// only written together with `title` (which loses its "СДn: " prefix); `step` is ignored; a
/// `direction` name is looked up among the steps and stored as the nonexistent id 10.
fn update(ctx: &mut Ctx) -> rusqlite::Result<Value> {
    let Some(did) = ctx.id("did") else {
        return Ok(error(402, NO_DID));
    };
    let Some(old) = deal_row(ctx, did)? else {
        return Ok(error(403, NOT_IN_ACCOUNT));
    };
    let mut new: Vec<(&'static str, Sql)> = Vec::new();
    if let Some(title) = ctx.str("title") {
        new.push(("title", Sql::Text(clean_field(&title))));
        if let Some(kol) = sum(ctx, "kol") {
            new.push(("kol", Sql::Real(kol)));
        }
    }
    new.push(("marga", Sql::Real(sum(ctx, "marga").unwrap_or(0.0))));
    new.push(("pid", Sql::Integer(ctx.int("pid").unwrap_or(0))));
    for k in ["datum_plan", "datum_start", "datum_end"] {
        if let Some(v) = ctx.p.get(k) {
            match parse_date(Some(v)) {
                Ok(d) => new.push((k, Sql::Text(d))),
                Err(raw) => return Ok(error(500, &datetime_error(&raw, "app_dogovor", k))),
            }
        }
    }
    if let Some(uid) = ctx.str("uid") {
        new.push(("uid", Sql::Text(clean_field(&uid))));
    }
    // A new client is also the payer (v3-deal-update-clid-change).
    if let Some(clid) = ctx.id("clid") {
        new.push(("clid", Sql::Integer(clid)));
        new.push(("payer", Sql::Integer(clid)));
    } else if let Some(payer) = ctx.id("payer") {
        new.push(("payer", Sql::Integer(payer)));
    }
    if let Some(dir) = value_str(ctx.p.get("direction"), "").filter(|d| !d.is_empty()) {
        new.push(("direction", Sql::Integer(dir.trim().parse().unwrap_or(10))));
    }
    let changes: Vec<Change> = new
        .into_iter()
        .map(|(col, new)| Change {
            col,
            old: old.get(col).cloned().unwrap_or(Value::Null),
            new,
        })
        .filter(|c| !c.same())
        .collect();
    if changes.is_empty() {
        return Ok(
            json!({"result": "Данные корректны, но идентичны имеющимся.", "data": did,
            "error": {"code": 302}}),
        );
    }
    let tx = ctx.conn.transaction()?;
    for c in &changes {
        TABLE.set(&tx, did, c.col, &c.new)?;
    }
    TABLE.set(&tx, did, "datum_izm", today())?;
    ctx.fields.store(&tx, Entity::Deal, did, ctx.p, false)?;
    let log: Vec<(String, String, String)> = changes
        .iter()
        .map(|c| {
            let old = value_str(Some(&c.old), "").unwrap_or_default();
            (c.col.to_string(), old, Change::shown(&c.new))
        })
        .collect();
    let clid = old["clid"].as_i64().unwrap_or(0);
    history::log_changes(&tx, &log, (clid, 0, did))?;
    tx.commit()?;
    Ok(json!({"result": "Готово", "data": did}))
}

/// A stored step as the answers print it: the percent, or nothing for no step.
fn percent(step: i64) -> String {
    step_of(step).map(|s| s.1.to_string()).unwrap_or_default()
}

/// deal/change.step: by the step's title; an unknown title clears the step (and says so with
/// an empty percent), the same step is refused with 302.
fn change_step(ctx: &mut Ctx) -> rusqlite::Result<Reply> {
    let Some(did) = ctx.id("did") else {
        if ctx.p.contains_key("uid") {
            return Ok(Reply::Json(error(406, NO_DID)));
        }
        return Ok(no_did_fatal(
            ctx,
            "and iduser IN ({ids}) and identity = '1'",
            499,
        ));
    };
    let Some(old) = deal_row(ctx, did)? else {
        return Ok(Reply::Json(error(403, NOT_IN_ACCOUNT)));
    };
    let Some(_) = value_str(ctx.p.get("step"), "").filter(|s| !s.is_empty()) else {
        return Ok(Reply::Json(error(
            405,
            "Отсутствуют параметры - Новый этап",
        )));
    };
    let new = step_param(ctx.p.get("step"));
    let was = old["step"].as_i64().unwrap_or(NO_STEP);
    if new == was {
        return Ok(Reply::Json(error(
            302,
            "Данные корректны, но идентичны имеющимся",
        )));
    }
    let text = format!(
        "Этап сделки изменен на {}%. Предыдущий этап {}%.",
        percent(new),
        percent(was)
    );
    let des = match ctx.str("description") {
        Some(d) => format!("{text} {d}"),
        None => text.clone(),
    };
    let tx = ctx.conn.transaction()?;
    TABLE.set(&tx, did, "step", new)?;
    TABLE.set(&tx, did, "datum_izm", today())?;
    history::write_auto(&tx, "СобытиеCRM", &des, (0, 0, did))?;
    tx.commit()?;
    Ok(Reply::Json(json!({"result": text, "data": did})))
}

/// deal/close: the status by exact title (`status_close`) or `sid`; anything else closes with
/// no status (sid 0), and such a deal can be closed again. `kol_fact` defaults to `kol`, a
/// positive one moves the deal to the last step; a lose status zeroes `marga`; `datum` is
/// understood as Y-m-d only, anything else is stored as 0000-00-00.
fn close(ctx: &mut Ctx) -> rusqlite::Result<Value> {
    let Some(did) = ctx.id("did") else {
        return Ok(error("405", NO_DID));
    };
    let Some(old) = deal_row(ctx, did)? else {
        return Ok(json!({"result": "Error", "data": "Сделка не найдена",
            "error": {"code": 403, "text": "Сделка не найдена"}}));
    };
    if old["close"] == "yes" && old["sid"].as_i64().unwrap_or(0) > 0 {
        return Ok(json!({"result": "Error", "data": "Сделка уже закрыта",
            "error": {"code": 407, "text": "Сделка уже закрыта"}}));
    }
    let statuses = dict(dicts::DEAL_STATUSCLOSE);
    let statuses = statuses["data"].as_array().cloned().unwrap_or_default();
    let status = match ctx.str("status_close") {
        Some(t) => statuses.iter().find(|s| s["title"] == t.as_str()),
        None => ctx
            .id("sid")
            .and_then(|sid| statuses.iter().find(|s| s["sid"] == sid)),
    };
    let (sid, title, lose) = match status {
        Some(s) => (
            s["sid"].as_i64().unwrap_or(0),
            s["title"].as_str().unwrap_or("").to_string(),
            s["result"] == "lose",
        ),
        None => (0, String::new(), false),
    };
    let kol_fact = sum(ctx, "kol_fact").unwrap_or_else(|| old["kol"].as_f64().unwrap_or(0.0));
    let datum = match value_str(ctx.p.get("datum"), "") {
        None => today(),
        Some(d) if chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").is_ok() => d,
        Some(_) => "0000-00-00".into(),
    };
    let des_fact = ctx
        .str("des_fact")
        .or_else(|| ctx.str("description"))
        .map(|d| clean_field(&d))
        .unwrap_or_default();
    let marga = if lose {
        0.0
    } else {
        old["marga"].as_f64().unwrap_or(0.0)
    };
    let step = if kol_fact > 0.0 {
        100
    } else {
        old["step"].as_i64().unwrap_or(NO_STEP)
    };
    let text = format!("Сделка закрыта со статусом {title}");
    let tx = ctx.conn.transaction()?;
    tx.execute(
        "UPDATE deal SET close = 'yes', datum_close = ?1, sid = ?2, status_close = ?3,
         des_fact = ?4, kol_fact = ?5, marga = ?6, step = ?7 WHERE did = ?8",
        rusqlite::params![
            datum,
            sid,
            (sid > 0).then_some(&title),
            des_fact,
            kol_fact,
            marga,
            step,
            did
        ],
    )?;
    history::write_auto(&tx, "СобытиеCRM", &text, (0, 0, did))?;
    tx.commit()?;
    Ok(json!({"result": "Ok", "data": text}))
}

/// deal/change.user: the new owner by `user` login or `iduser`; an unknown login leaves the deal
/// to nobody (owner 0: deal/info no longer finds it, deal/list still shows it).
fn change_user(ctx: &mut Ctx) -> rusqlite::Result<Reply> {
    let Some(did) = ctx.id("did") else {
        if ctx.p.contains_key("uid") {
            return Ok(Reply::Json(error("405", NO_DID)));
        }
        return Ok(no_did_fatal(
            ctx,
            "AND iduser IN ({ids}) and identity = '1'",
            563,
        ));
    };
    let Some(old) = deal_row(ctx, did)? else {
        return Ok(Reply::Json(error(403, NOT_IN_ACCOUNT)));
    };
    let owner = match ctx.str("user") {
        Some(login) => ctx.users.id_of(&login).unwrap_or(0),
        None => ctx.int("iduser").unwrap_or(0),
    };
    let name = |id: &Value| ctx.users.title_of(id).as_str().unwrap_or("").to_string();
    let des = format!(
        "Смена Ответственного: {}&rarr;{}. Причина: {}. Изменил: {}",
        name(&old["iduser"]),
        name(&json!(owner)),
        ctx.str("reason").unwrap_or_else(|| "не указано".into()),
        name(&json!(1))
    );
    let tx = ctx.conn.transaction()?;
    TABLE.set(&tx, did, "iduser", owner)?;
    history::write_auto(&tx, "СобытиеCRM", &des, (0, 0, did))?;
    tx.commit()?;
    let mut not_moved = Vec::new();
    if !ctx.flag("client") {
        not_moved.push("Клиент не переведен");
    }
    if !ctx.flag("person") {
        not_moved.push("Контакты не переведены");
    }
    let result = format!("Успешно. {}", not_moved.join("<br>"));
    Ok(Reply::Json(json!({"result": result, "data": did})))
}

/// deal/delete: refused while the deal has invoices; otherwise the deal, its history and
/// specification go and its tasks are unlinked. With `uid` alone the real server answers 406
/// but has already deleted "deal 0": every history row (and specification or invoice row)
/// with did 0 is gone, the deal itself stays [v3-deal-delete-by-uid-only].
fn delete(ctx: &mut Ctx) -> rusqlite::Result<Reply> {
    let Some(did) = ctx.id("did") else {
        let Some(uid) = ctx.str("uid") else {
            return Ok(no_did_fatal(
                ctx,
                "AND iduser IN ({ids}) AND identity = '1'",
                619,
            ));
        };
        if row_where(
            ctx.conn,
            "SELECT did FROM deal d",
            "d.uid = ?",
            Sql::Text(uid),
        )?
        .is_none()
        {
            return Ok(Reply::Json(error(403, NOT_IN_ACCOUNT)));
        }
        let tx = ctx.conn.transaction()?;
        for table in ["history", "speka", "invoice"] {
            tx.execute(&format!("DELETE FROM {table} WHERE did = 0"), [])?;
        }
        tx.commit()?;
        return Ok(Reply::Json(json!({"result": "Error", "data": 0,
            "error": {"code": 406, "text": NO_DID}})));
    };
    if deal_row(ctx, did)?.is_none() {
        return Ok(Reply::Json(error(403, NOT_IN_ACCOUNT)));
    }
    let invoices = count(
        ctx.conn,
        "SELECT COUNT(*) FROM invoice WHERE did = ?",
        &[Sql::Integer(did)],
    )?;
    if invoices > 0 {
        return Ok(Reply::Json(error(
            "407",
            "Не возможно удалить сделку - есть счета",
        )));
    }
    let tx = ctx.conn.transaction()?;
    tx.execute("DELETE FROM history WHERE did = ?1", [did])?;
    tx.execute("DELETE FROM speka WHERE did = ?1", [did])?;
    tx.execute("UPDATE task SET did = 0 WHERE did = ?1", [did])?;
    tx.execute("DELETE FROM deal WHERE did = ?1", [did])?;
    tx.commit()?;
    Ok(Reply::Json(
        json!({"result": "Сделка удалена", "data": did}),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Crm;
    use serde_json::{json, Value};

    /// A client and a deal of it at step 40 with a contact, marga and kol.
    fn deal(crm: &Crm) -> (i64, i64) {
        let clid = crm.add("client", json!({"title": "Клиент сделок"}));
        let did = crm.add(
            "deal",
            json!({"title": "Полная сделка", "clid": clid, "uid": "DEAL-UPD-1", "step": 40,
                   "kol": 150000.5, "marga": 30000.25}),
        );
        crm.sql(&format!("UPDATE deal SET pid = 6 WHERE did = {did}"));
        (clid, did)
    }

    fn col(crm: &Crm, did: i64, col: &str) -> Value {
        crm.sql_value(&format!("SELECT {col} FROM deal WHERE did = {did}"))
    }

    #[test]
    fn update_zeroes_pid_and_marga_unless_sent_and_writes_kol_only_with_title() {
        let crm = Crm::new();
        let (_, did) = deal(&crm);
        let r = crm.call(
            "deal",
            "update",
            json!({"did": did, "datum_plan": "2027-02-01"}),
        );
        assert_eq!(r, json!({"result": "Готово", "data": did}));
        assert_eq!(col(&crm, did, "datum_plan"), "2027-02-01");
        assert_eq!(col(&crm, did, "pid"), 0, "pid reset although not sent");
        assert_eq!(col(&crm, did, "marga"), 0, "marga reset although not sent");
        assert_eq!(col(&crm, did, "kol"), json!(150000.5));
        // kol alone changes nothing and says so.
        let r = crm.call("deal", "update", json!({"did": did, "kol": 200000}));
        assert_eq!(
            r,
            json!({"result": "Данные корректны, но идентичны имеющимся.", "data": did,
                   "error": {"code": 302}})
        );
        assert_eq!(col(&crm, did, "kol"), json!(150000.5));
        // With the title it is written; the title loses its "СДn: " prefix; step is ignored.
        let r = crm.call(
            "deal",
            "update",
            json!({"did": did, "title": "Полная сделка (изм)", "kol": "210000.10",
                   "marga": "40000", "step": 80}),
        );
        assert_eq!(r["result"], "Готово");
        assert_eq!(col(&crm, did, "title"), "Полная сделка (изм)");
        assert_eq!(col(&crm, did, "kol"), json!(210000.1));
        assert_eq!(col(&crm, did, "marga"), 40000);
        assert_eq!(col(&crm, did, "step"), 40);
        // A direction name is looked up among the steps: stored as the nonexistent id 10.
        crm.call(
            "deal",
            "update",
            json!({"did": did, "direction": "Основное", "marga": 40000}),
        );
        let d = &crm.call("deal", "info", json!({ "did": did }))["data"];
        assert_eq!(
            (d["directionID"].clone(), d["direction"].clone()),
            (json!(10), Value::Null)
        );
        for (body, code) in [
            (
                json!({"uid": "DEAL-UPD-1", "datum_plan": "2027-03-01"}),
                402,
            ),
            (json!({"did": "abc"}), 402),
            (json!({"did": 999}), 403),
        ] {
            assert_eq!(crm.call("deal", "update", body)["error"]["code"], code);
        }
    }

    #[test]
    fn change_step_by_title_and_an_unknown_step_clears_it() {
        let crm = Crm::new();
        let (_, did) = deal(&crm);
        let r = crm.call("deal", "change.step", json!({"did": did, "step": "60"}));
        assert_eq!(
            r,
            json!({"result": "Этап сделки изменен на 60%. Предыдущий этап 40%.", "data": did})
        );
        let same = crm.call("deal", "change.step", json!({"did": did, "step": 60}));
        assert_eq!(same["error"]["code"], 302);
        let r = crm.call("deal", "change.step", json!({"did": did, "step": "55"}));
        assert_eq!(
            r["result"],
            "Этап сделки изменен на %. Предыдущий этап 60%."
        );
        let d = &crm.call("deal", "info", json!({ "did": did }))["data"];
        assert_eq!(d["stepID"], 0, "the deal has no step any more");
        // An event row tied to the deal only.
        assert_eq!(
            crm.sql_value(&format!("SELECT COUNT(*) FROM history WHERE did = {did} AND clid = 0 AND tip = 'СобытиеCRM'")),
            json!(2)
        );
        let r = crm.call(
            "deal",
            "change.step",
            json!({"uid": "DEAL-UPD-1", "step": "80"}),
        );
        assert_eq!(r["error"]["code"], 406);
        assert_eq!(
            crm.call("deal", "change.step", json!({ "did": did }))["error"]["code"],
            405
        );
        let page = crm.fatal("deal", "change.step", json!({"step": "60"}));
        assert!(
            page.contains("near 'and iduser IN (1,2) and identity = '1''"),
            "{page}"
        );
    }

    #[test]
    fn close_by_title_or_sid_and_an_unknown_status_can_be_closed_again() {
        let crm = Crm::new();
        let (_, did) = deal(&crm);
        let r = crm.call(
            "deal",
            "close",
            json!({"did": did, "status_close": "Нет такого статуса", "kol_fact": "100,5"}),
        );
        assert_eq!(
            r,
            json!({"result": "Ok", "data": "Сделка закрыта со статусом "})
        );
        assert_eq!(col(&crm, did, "kol_fact"), json!(100.5));
        assert_eq!(
            col(&crm, did, "step"),
            100,
            "a positive kol_fact moves to the last step"
        );
        let r = crm.call(
            "deal",
            "close",
            json!({"did": did, "sid": 3, "datum": "29.11.2026"}),
        );
        assert_eq!(r["data"], "Сделка закрыта со статусом Проигрыш по цене");
        assert_eq!(col(&crm, did, "datum_close"), "0000-00-00");
        assert_eq!(col(&crm, did, "marga"), 0, "a lose status zeroes marga");
        assert_eq!(
            col(&crm, did, "kol_fact"),
            json!(150000.5),
            "kol_fact defaults to kol"
        );
        let again = crm.call(
            "deal",
            "close",
            json!({"did": did, "status_close": "Победа полная"}),
        );
        assert_eq!(again["error"]["code"], 407);
        assert_eq!(
            crm.call("deal", "close", json!({"did": 999}))["error"]["code"],
            403
        );
        assert_eq!(
            crm.call("deal", "close", json!({"did": "abc"}))["error"]["code"],
            "405"
        );
    }

    #[test]
    fn change_user_to_an_unknown_login_leaves_the_deal_to_nobody() {
        let crm = Crm::new();
        let (_, did) = deal(&crm);
        let r = crm.call("deal", "change.user", json!({"did": did, "iduser": 2}));
        assert_eq!(
            r["result"],
            "Успешно. Клиент не переведен<br>Контакты не переведены"
        );
        assert_eq!(col(&crm, did, "iduser"), 2);
        crm.call(
            "deal",
            "change.user",
            json!({"did": did, "user": "nobody@test.ru"}),
        );
        assert_eq!(col(&crm, did, "iduser"), 0);
        assert_eq!(
            crm.call("deal", "info", json!({ "did": did }))["error"]["code"],
            403
        );
        let list = crm.call("deal", "list", json!({"active": "yes"}));
        assert_eq!(list["data"][0]["did"], did, "deal/list still shows it");
        assert!(crm
            .fatal(
                "deal",
                "change.freeze",
                json!({"did": did, "date": "2026-12-31"})
            )
            .contains("changeFreeze"));
    }

    #[test]
    fn delete_by_uid_alone_answers_406_after_wiping_every_history_row_without_a_deal() {
        let crm = Crm::new();
        let (clid, did) = deal(&crm);
        crm.call(
            "history",
            "add.list",
            json!({"list": [
                {"content": "Клиентская", "clid": clid},
                {"content": "По сделке", "clid": clid, "did": did}
            ]}),
        );
        let r = crm.call("deal", "delete", json!({"uid": "DEAL-UPD-1"}));
        assert_eq!(
            r,
            json!({"result": "Error", "data": 0,
                   "error": {"code": 406, "text": "Отсутствуют параметры - did сделки"}})
        );
        assert_eq!(
            crm.sql_value("SELECT group_concat(des) FROM history"),
            json!("По сделке"),
            "every did=0 row is gone"
        );
        assert_eq!(col(&crm, did, "did"), did, "the deal itself stays");
        // By did: the deal and its history go.
        assert_eq!(
            crm.call("deal", "delete", json!({ "did": did })),
            json!({"result": "Сделка удалена", "data": did})
        );
        assert_eq!(crm.sql_value("SELECT COUNT(*) FROM history"), json!(0));
        assert_eq!(
            crm.call("deal", "delete", json!({ "did": did }))["error"]["code"],
            403
        );
        assert!(crm
            .fatal("deal", "delete", json!({}))
            .contains("deal.php(619)"));
    }

    #[test]
    fn delete_is_refused_while_the_deal_has_invoices() {
        let crm = Crm::new();
        let (_, did) = deal(&crm);
        crm.sql(&format!(
            "INSERT INTO invoice (did, summa_credit) VALUES ({did}, 100)"
        ));
        let r = crm.call("deal", "delete", json!({ "did": did }));
        assert_eq!(
            r["error"],
            json!({"code": "407", "text": "Не возможно удалить сделку - есть счета"})
        );
        assert_eq!(col(&crm, did, "did"), did);
    }
}
