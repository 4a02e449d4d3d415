//! v1 `contract` (deal) actions of older servers: `GET /developer/v1/contract?login=…&apikey=…
//! &action=…` (api/contract-v1.txt, NOTES §10 and §12), on the same store as v3.
//!
//! As recorded: every value a string; errors of the invoice actions come without `result`
//! (`{"error":{"code":"403",…}}`), those of changestep/close with `"result":"Error"`;
//! addinvoice stores clid 0 and tip "" (datum 0000-00-00 without `date`); addpaiment marks the
//! row paid with `invoice_date` = `date_do` (default today) and can be repeated;
//! addpaimentpart splits like invoice/do but refuses a sum above the row; changestep with an
//! unknown step clears the step; close needs an exact status title, defaults `kol_fact` to
//! `kol` and does not move the step. v1 payments do not touch the bank balance.

use super::deal::{step_of, step_param, NO_STEP, TABLE};
use super::invoice::{date_of, next_number, php_sum, ru};
use super::{dict, history, rows, Ctx, Params, PAGE};
use crate::sandbox::api::Reply;
use crate::sandbox::dicts;
use crate::sandbox::text::{today, value_str};
use rusqlite::types::Value as Sql;
use serde_json::{json, Value};

const DEAL_NOT_FOUND: &str =
    "Сделка с указанным did не найдена в пределах аккаунта указанного пользователя";
const INVOICE_NOT_FOUND: &str = "Счет по номеру не найден";
const NO_DID: &str = "Отсутствуют параметры - did сделки";

/// `{"error":{…}}` without `result` (the invoice actions).
fn bare_error(code: &str, text: &str) -> Value {
    json!({"error": {"code": code, "text": text}})
}

/// `{"result":"Error","error":{…}}` with a string code (changestep, close, info).
fn error(code: &str, text: &str) -> Value {
    json!({"result": "Error", "error": {"code": code, "text": text}})
}

/// Answer one v1 contract action.
pub(super) fn handle(ctx: &mut Ctx, action: &str) -> rusqlite::Result<Value> {
    match action {
        "addinvoice" => add_invoice(ctx),
        "addpaiment" => pay(ctx, false),
        "addpaimentpart" => pay(ctx, true),
        "changestep" => change_step(ctx),
        "close" => close(ctx),
        "info" => info(ctx),
        "list" => list(ctx),
        _ => Ok(error("402", "Неизвестный метод")),
    }
}

/// The deal of `did` or `uid`.
fn deal(ctx: &Ctx) -> rusqlite::Result<Option<Params>> {
    let (cond, arg) = match (ctx.id("did"), ctx.str("uid")) {
        (Some(did), _) => ("did = ?1", Sql::Integer(did)),
        (None, Some(uid)) => ("uid = ?1", Sql::Text(uid)),
        (None, None) => return Ok(None),
    };
    Ok(rows(
        ctx.conn,
        &format!("SELECT * FROM deal WHERE {cond} ORDER BY did LIMIT 1"),
        &[arg],
    )?
    .into_iter()
    .next())
}

fn text(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::String(_) => v.clone(),
        other => Value::String(other.to_string()),
    }
}

/// A sum as v1 prints it: "60000.00".
fn money(v: &Value) -> Value {
    json!(format!("{:.2}", v.as_f64().unwrap_or(0.0)))
}

fn add_invoice(ctx: &mut Ctx) -> rusqlite::Result<Value> {
    let Some(d) = deal(ctx)? else {
        return Ok(bare_error("403", DEAL_NOT_FOUND));
    };
    let did = d["did"].as_i64().unwrap_or(0);
    let summa = php_sum(ctx.p.get("summa"))
        .filter(|&s| s > 0.0)
        .unwrap_or_else(|| d["kol"].as_f64().unwrap_or(0.0));
    let nds = php_sum(ctx.p.get("nds")).unwrap_or(0.0);
    let datum = match date_of(ctx.p.get("date")) {
        Some(day) => format!(
            "{} {}:00",
            day.format("%Y-%m-%d"),
            &crate::sandbox::text::now()[11..16]
        ),
        None => "0000-00-00 00:00:00".to_string(),
    };
    let plan = date_of(ctx.p.get("date_plan"))
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(today);
    let number = match ctx.str("invoice") {
        Some(n) => n,
        None => next_number(ctx)?.to_string(),
    };
    let paid = ctx.str("do").as_deref() == Some("yes");
    let paid_day = paid.then(|| {
        date_of(ctx.p.get("date_do"))
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_else(today)
    });
    let (contract, rs) = (
        ctx.str("contract").unwrap_or_default(),
        ctx.int("rs").unwrap_or(1),
    );
    let tx = ctx.conn.transaction()?;
    tx.execute(
        "INSERT INTO invoice (did, clid, datum, datum_credit, summa_credit, nds_credit, iduser,
            do, invoice, invoice_chek, invoice_date, rs, tip)
         VALUES (?1, 0, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8, ?9, ?10, '')",
        rusqlite::params![
            did,
            datum,
            plan,
            summa,
            nds,
            if paid { "on" } else { "no" },
            number,
            contract,
            paid_day,
            rs,
        ],
    )?;
    let crid = tx.last_insert_rowid();
    history::write_auto(&tx, "СобытиеCRM", "Счет добавлен в платежи", (0, 0, did))?;
    tx.commit()?;
    let result = if paid {
        "Счет добавлен в платежи, Счет отмечен оплаченным"
    } else {
        "Счет добавлен в платежи"
    };
    Ok(json!({"result": result, "data": {"id": crid, "invoice": number}}))
}

/// The invoice row of `id`, else the first row of the number `invoice`.
fn invoice_row(ctx: &Ctx) -> rusqlite::Result<Option<Params>> {
    let (cond, arg) = match (ctx.id("id"), ctx.str("invoice")) {
        (Some(id), _) => ("crid = ?1", Sql::Integer(id)),
        (None, Some(n)) => ("invoice = ?1", Sql::Text(n)),
        (None, None) => return Ok(None),
    };
    Ok(rows(
        ctx.conn,
        &format!("SELECT * FROM invoice WHERE {cond} ORDER BY crid LIMIT 1"),
        &[arg],
    )?
    .into_iter()
    .next())
}

/// addpaiment (the whole row, repeatable) and addpaimentpart (`summa` ≤ the row; a smaller
/// sum splits off an unpaid remainder row).
fn pay(ctx: &mut Ctx, part: bool) -> rusqlite::Result<Value> {
    let Some(r) = invoice_row(ctx)? else {
        return Ok(bare_error("403", INVOICE_NOT_FOUND));
    };
    let crid = r["crid"].as_i64().unwrap_or(0);
    let summa = r["summa_credit"].as_f64().unwrap_or(0.0);
    let day = date_of(ctx.p.get("date_do"))
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(today);
    if !part {
        ctx.conn.execute(
            "UPDATE invoice SET do = 'on', invoice_date = ?1 WHERE crid = ?2",
            rusqlite::params![day, crid],
        )?;
        return Ok(json!({"result": "Успешно.", "data": "Счет отмечен оплаченным"}));
    }
    let paid = php_sum(ctx.p.get("summa"))
        .filter(|&s| s > 0.0)
        .unwrap_or(summa);
    if paid > summa + 0.005 {
        return Ok(bare_error("405", "Сумма превышает сумму счета"));
    }
    let tx = ctx.conn.transaction()?;
    tx.execute(
        "UPDATE invoice SET do = 'on', summa_credit = ?1, invoice_date = ?2 WHERE crid = ?3",
        rusqlite::params![paid, day, crid],
    )?;
    let mut text = format!(
        "Внесена оплата по графику {} р., На р/с Основной расчетный счет внесена оплата в размере {} р.",
        ru(paid),
        ru(paid)
    );
    if paid < summa {
        let rest = ((summa - paid) * 100.0).round() / 100.0;
        tx.execute(
            "INSERT INTO invoice (did, clid, pid, datum, datum_credit, summa_credit, nds_credit,
                iduser, do, invoice, invoice_chek, rs, tip)
             SELECT did, clid, pid, datum, datum_credit, ?1, 0, iduser, 'no', invoice, '',
                rs, NULL FROM invoice WHERE crid = ?2",
            rusqlite::params![rest, crid],
        )?;
        text.push_str(&format!(
            ", Поступившая оплата отличается от планируемой. Добавлен дополнительный платеж {} р.",
            ru(rest)
        ));
    }
    tx.commit()?;
    Ok(json!({"result": "Успешно.", "data": text}))
}

fn change_step(ctx: &mut Ctx) -> rusqlite::Result<Value> {
    if ctx.id("did").is_none() && ctx.str("uid").is_none() {
        return Ok(error("406", NO_DID));
    }
    let Some(d) = deal(ctx)? else {
        return Ok(error("403", &format!("{DEAL_NOT_FOUND}.")));
    };
    let Some(_) = value_str(ctx.p.get("step"), "").filter(|s| !s.is_empty()) else {
        return Ok(error("405", "Отсутствуют параметры - Новый этап"));
    };
    let did = d["did"].as_i64().unwrap_or(0);
    // An unknown step is taken, and clears the step.
    let new = step_param(ctx.p.get("step"));
    if d["step"].as_i64() == Some(new) {
        return Ok(
            json!({"result": "Данные корректны, но идентичны имеющимся", "data": did.to_string()}),
        );
    }
    let reason = ctx.str("reason");
    let tx = ctx.conn.transaction()?;
    TABLE.set(&tx, did, "step", new)?;
    TABLE.set(&tx, did, "datum_izm", today())?;
    let mut des = format!(
        "Этап сделки изменен на {}%.",
        step_of(new).map(|s| s.1.to_string()).unwrap_or_default()
    );
    if let Some(reason) = reason {
        des.push(' ');
        des.push_str(&reason);
    }
    history::write_auto(&tx, "СобытиеCRM", &des, (0, 0, did))?;
    tx.commit()?;
    Ok(json!({"result": "Успешно.", "data": did.to_string()}))
}

fn close(ctx: &mut Ctx) -> rusqlite::Result<Value> {
    if ctx.id("did").is_none() && ctx.str("uid").is_none() {
        return Ok(error("406", NO_DID));
    }
    let Some(d) = deal(ctx)? else {
        return Ok(error("403", &format!("{DEAL_NOT_FOUND}.")));
    };
    if d["close"] == "yes" {
        return Ok(error("407", "Сделка уже закрыта."));
    }
    let statuses = dict(dicts::DEAL_STATUSCLOSE);
    let wanted = ctx.str("status_close").unwrap_or_default();
    let Some(status) = statuses["data"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["title"] == wanted.as_str()))
        .cloned()
    else {
        return Ok(error(
            "405",
            "Отсутствуют или не корректны параметры - Статус закрытия сделки",
        ));
    };
    let did = d["did"].as_i64().unwrap_or(0);
    let kol_fact =
        php_sum(ctx.p.get("kol_fact")).unwrap_or_else(|| d["kol"].as_f64().unwrap_or(0.0));
    let marga = php_sum(ctx.p.get("marga")).unwrap_or_else(|| d["marga"].as_f64().unwrap_or(0.0));
    let des_fact = ctx.str("des_fact");
    let tx = ctx.conn.transaction()?;
    tx.execute(
        "UPDATE deal SET close = 'yes', datum_close = ?1, sid = ?2, status_close = ?3,
         des_fact = ?4, kol_fact = ?5, marga = ?6 WHERE did = ?7",
        rusqlite::params![
            today(),
            status["sid"].as_i64().unwrap_or(0),
            wanted,
            des_fact,
            kol_fact,
            marga,
            did
        ],
    )?;
    history::write_auto(
        &tx,
        "СобытиеCRM",
        &format!("Сделка закрыта со статусом {wanted}"),
        (0, 0, did),
    )?;
    tx.commit()?;
    Ok(json!({"result": "Успешно.", "data": did.to_string()}))
}

/// A deal as v1 list/info shows it (every value a string), with its invoices unless
/// `invoice=no` (api/contract-v1.txt, "info").
fn deal_v1(ctx: &Ctx, d: &Params) -> rusqlite::Result<Value> {
    let client = |clid: &Value| -> rusqlite::Result<Value> {
        Ok(rows(
            ctx.conn,
            "SELECT title FROM client WHERE clid = ?1",
            &[Sql::Integer(clid.as_i64().unwrap_or(0))],
        )?
        .first()
        .map_or(Value::Null, |r| r["title"].clone()))
    };
    let closed = d["close"] == "yes";
    let step = d["step"].as_i64().unwrap_or(NO_STEP);
    let mut out = json!({
        "did": text(&d["did"]), "uid": d["uid"], "datum": d["datum"].as_str().map(|s| s.chars().take(10).collect::<String>()),
        "datum_izm": d["datum_izm"], "clid": text(&d["clid"]), "clientname": client(&d["clid"])?,
        "title": d["title"], "mcid": "0", "iduser": ctx.user_name(&d["iduser"]),
        "datum_plan": d["datum_plan"],
        "step": step_of(step).map_or(Value::Null, |s| json!(s.1.to_string())),
        "dog_num": null, "tip": "Продажа быстрая", "direction": "Основное",
        "payer": text(&d["payer"]), "payername": client(&d["payer"])?,
        "kol": money(&d["kol"]), "marga": money(&d["marga"]),
        "datum_start": d["datum_start"], "datum_end": d["datum_end"],
        "close": if closed { "yes" } else { "no" }, "datum_close": d["datum_close"],
        "status_close": if closed { d["status_close"].clone() } else { json!(false) },
        "des_fact": d["des_fact"], "kol_fact": money(&d["kol_fact"])
    });
    if ctx.str("invoice").as_deref() != Some("no") {
        let invoices = rows(
            ctx.conn,
            "SELECT * FROM invoice WHERE did = ?1 ORDER BY crid",
            &[Sql::Integer(d["did"].as_i64().unwrap_or(0))],
        )?;
        if !invoices.is_empty() {
            out["invoice"] = invoices
                .iter()
                .map(|i| {
                    json!({"id": text(&i["crid"]), "invoice": i["invoice"],
                        "date": i["datum"].as_str().map(|s| s.chars().take(10).collect::<String>()),
                        "summa": money(&i["summa_credit"]), "nds": money(&i["nds_credit"]),
                        "do": i["do"], "date_do": i["invoice_date"], "contract": i["invoice_chek"],
                        "rs": text(&i["rs"]), "tip": i["tip"]})
                })
                .collect();
        }
    }
    Ok(out)
}

fn info(ctx: &mut Ctx) -> rusqlite::Result<Value> {
    if ctx.id("did").is_none() && ctx.str("uid").is_none() {
        return Ok(error("405", NO_DID));
    }
    match deal(ctx)? {
        None => Ok(error("403", DEAL_NOT_FOUND)),
        Some(d) => Ok(json!({"data": deal_v1(ctx, &d)?})),
    }
}

/// Open deals (`active=no`: closed ones), 200 a page, newest first.
fn list(ctx: &mut Ctx) -> rusqlite::Result<Value> {
    let close = if ctx.str("active").as_deref() == Some("no") {
        "yes"
    } else {
        "no"
    };
    let all = rows(
        ctx.conn,
        "SELECT * FROM deal WHERE close = ?1 ORDER BY datum DESC, did DESC",
        &[Sql::Text(close.into())],
    )?;
    let from = ctx.page_offset().max(0) as usize;
    let data = all
        .iter()
        .skip(from)
        .take(PAGE as usize)
        .map(|d| deal_v1(ctx, d))
        .collect::<rusqlite::Result<Vec<Value>>>()?;
    Ok(json!({"data": data, "count": all.len().to_string()}))
}

/// v1's answer for a wrong key or login: HTTP 500 with the error envelope (v1-error-wrong-apikey).
pub(super) fn auth_error(key_ok: bool) -> Reply {
    let (code, text) = if key_ok {
        ("401", "Неизвестный пользователь")
    } else {
        ("400", "Не верный API key")
    };
    Reply::Status(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        error(code, text),
    )
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Crm;
    use crate::sandbox::api::Reply;
    use serde_json::json;

    fn deal(crm: &Crm, kol: i64) -> i64 {
        let clid = crm.add("client", json!({"title": "Клиент v1"}));
        crm.add(
            "deal",
            json!({"title": "Сделка v1", "clid": clid, "kol": kol, "marga": 700, "step": 20}),
        )
    }

    #[test]
    fn v1_payments_are_repeatable_and_a_part_never_exceeds_the_row() {
        let crm = Crm::new();
        let did = deal(&crm, 60000);
        let r = crm.v1(
            "addinvoice",
            json!({"did": did, "summa": "30000", "invoice": "V-1"}),
        );
        assert_eq!(r["result"], "Счет добавлен в платежи");
        let crid = r["data"]["id"].as_i64().unwrap();
        assert_eq!(
            crm.sql_value(&format!(
                "SELECT clid || '/' || tip || '/' || datum FROM invoice WHERE crid = {crid}"
            )),
            json!("0//0000-00-00 00:00:00"),
            "clid 0, tip empty, no date"
        );
        let over = crm.v1("addpaimentpart", json!({"invoice": "V-1", "summa": 50000}));
        assert_eq!(
            over,
            json!({"error": {"code": "405", "text": "Сумма превышает сумму счета"}})
        );
        let part = crm.v1(
            "addpaimentpart",
            json!({"invoice": "V-1", "summa": "12000,50", "date_do": "2026-11-26"}),
        );
        assert_eq!(part["result"], "Успешно.");
        assert!(
            part["data"].as_str().unwrap().contains("17 999,50"),
            "{part}"
        );
        let rest = crm.sql_value("SELECT summa_credit FROM invoice WHERE do = 'no'");
        assert_eq!(rest, json!(17999.5));
        for day in ["2026-11-27", "2026-11-28"] {
            let r = crm.v1("addpaiment", json!({"id": crid, "date_do": day}));
            assert_eq!(r["data"], "Счет отмечен оплаченным", "repeatable");
        }
        assert_eq!(
            crm.sql_value(&format!(
                "SELECT invoice_date FROM invoice WHERE crid = {crid}"
            )),
            json!("2026-11-28"),
            "the date is overwritten"
        );
        let missing = crm.v1("addpaiment", json!({"invoice": "NO-SUCH"}));
        assert_eq!(missing["error"]["code"], "403");
        assert!(missing.get("result").is_none());
        let info = crm.v1("info", json!({ "did": did }));
        assert_eq!(
            info["data"]["invoice"].as_array().unwrap().len(),
            2,
            "{info}"
        );
    }

    #[test]
    fn v1_step_and_close_as_recorded_and_an_old_server_has_no_v3_invoices() {
        let crm = Crm::new().old_server();
        let did = deal(&crm, 7000);
        assert!(matches!(
            crm.reply(3, "invoice", "list", json!({})),
            Reply::Empty
        ));
        let r = crm.call("deal", "change.step", json!({"did": did, "step": 60}));
        assert_eq!(r["error"]["code"], 402);
        let r = crm.v1("changestep", json!({"did": did, "step": 55}));
        assert_eq!(r, json!({"result": "Успешно.", "data": did.to_string()}));
        assert_eq!(
            crm.v1("info", json!({ "did": did }))["data"]["step"],
            json!(null),
            "cleared"
        );
        crm.v1("changestep", json!({"did": did, "step": 60}));
        let bad = crm.v1("close", json!({"did": did, "status_close": "Нет такого"}));
        assert_eq!(bad["error"]["code"], "405");
        let ok = crm.v1(
            "close",
            json!({"did": did, "status_close": "Победа полная"}),
        );
        assert_eq!(ok["result"], "Успешно.");
        let d = crm.v1("info", json!({ "did": did }))["data"].clone();
        assert_eq!(
            (&d["close"], &d["kol_fact"], &d["step"]),
            (&json!("yes"), &json!("7000.00"), &json!("60")),
            "kol_fact defaults to kol, the step stays"
        );
        let again = crm.v1(
            "close",
            json!({"did": did, "status_close": "Победа полная"}),
        );
        assert_eq!(again["error"]["code"], "407");
    }
}
