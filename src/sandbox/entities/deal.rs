//! deal/*: deals and the deal dictionaries (NOTES §6, §11, Deals).

use super::{
    client, dict, done, exists, info, like, list_envelope, row_where, with_extras, Ctx, Params,
    Table, R,
};
use crate::crm::Entity;
use crate::sandbox::api::{error, Reply};
use crate::sandbox::dicts;
use crate::sandbox::text::{clean_field, datetime_error, parse_date, today, value_str};
use rusqlite::types::Value as Sql;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::SeqCst;

actions! {
    /// deal/* actions; an unknown one is answered as recorded in v3-error-unknown-action-deal.
    DealAction, unknown = error(402, "Неизвестный метод");
    Fields = "fields", Steplist = "steplist", Statusclose = "statusclose", Type = "type",
    Direction = "direction", List = "list", Info = "info", Add = "add", Update = "update",
    ChangeStep = "change.step", Close = "close", ChangeUser = "change.user",
    ChangeFreeze = "change.freeze", Delete = "delete",
}

pub(super) const TABLE: Table = Table {
    name: "deal",
    id: "did",
    alias: "d",
    select: DEAL_SELECT,
    params: &["did"],
    missing: "Отсутствуют параметры - did сделки",
    not_found: "Сделка не найдена",
};

/// The default install's deal stages: (stage id, percent, title).
const STEPS: [(i64, i64, &str); 7] = [
    (10, 0, "Проявлен/Выявлен интерес"),
    (2, 20, "Подтвержден интерес"),
    (11, 40, "Отправлено КП"),
    (5, 60, "Обсуждение деталей - продукты, услуги, оплата"),
    (6, 80, "Согласован договор, Выставлен счет"),
    (7, 90, "Получена предоплата, Выполнение договора"),
    (8, 100, "Закрытие сделки, Подписание документов"),
];

/// A step by its title (the percent): `(idcategory, title, content)`. The stored `step` is the
/// title, or [`NO_STEP`].
pub(super) fn step_of(percent: i64) -> Option<(i64, i64, &'static str)> {
    STEPS.iter().copied().find(|s| s.1 == percent)
}

/// A deal without a step (idcategory 0): none given, or one that is not a step's title —
/// the step id (11) or an unknown title (NOTES §11, v3-deal-add-step-as-idcategory).
pub(super) const NO_STEP: i64 = -1;

/// The stored step of a `step` parameter: the title as a string or number.
pub(super) fn step_param(v: Option<&Value>) -> i64 {
    value_str(v, "")
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(step_of)
        .map_or(NO_STEP, |s| s.1)
}

/// A stored direction id as lists and info name it: the default install has only "Основное"
/// (1); deal/update can store a nonexistent one (10), shown as null.
fn direction_name(id: &Value) -> Value {
    if id.as_i64() == Some(1) {
        json!("Основное")
    } else {
        Value::Null
    }
}

const DEAL_SELECT: &str = "SELECT d.*, COALESCE(c.title, '') AS client_title,
    COALESCE(pc.title, '') AS payer_title FROM deal d LEFT JOIN client c ON c.clid = d.clid
    LEFT JOIN client pc ON pc.clid = d.payer";

const DEAL_ORDER: [&str; 6] = ["did", "datum", "title", "kol", "datum_plan", "clid"];

/// An array `kol` kills deal/add with a PHP TypeError before anything is stored (NOTES, Deals).
pub(super) fn kol_fatal(rows: &[&Value]) -> Option<String> {
    rows.iter()
        .any(|r| r.get("kol").is_some_and(Value::is_array))
        .then(|| crate::sandbox::faults::KOL_ARRAY_FATAL.to_string())
}

/// A deal action's answer: JSON, or for some changes without a did the PHP fatal page.
pub(super) fn handle(ctx: &mut Ctx, a: DealAction) -> rusqlite::Result<Reply> {
    use DealAction::*;
    match a {
        Update | ChangeStep | Close | ChangeUser | ChangeFreeze | Delete => {
            super::deal_change::handle(ctx, a)
        }
        _ => answer(ctx, a).map(Reply::Json),
    }
}

fn answer(ctx: &mut Ctx, a: DealAction) -> R {
    match a {
        DealAction::Fields => Ok(ctx.fields.answer(Entity::Deal)),
        DealAction::Steplist => Ok(dict(dicts::DEAL_STEPLIST)),
        DealAction::Statusclose => {
            // `filter` ("win"/"lose") keeps the statuses of that result.
            let mut all = dict(dicts::DEAL_STATUSCLOSE);
            if let (Some(f), Some(Value::Array(rows))) = (ctx.str("filter"), all.get_mut("data")) {
                rows.retain(|r| r["result"] == f.as_str());
            }
            Ok(all)
        }
        DealAction::Type => Ok(dict(dicts::DEAL_TYPES)),
        DealAction::Direction => Ok(dict(dicts::DEAL_DIRECTIONS)),
        DealAction::List => list(ctx),
        DealAction::Info => deal_info(ctx),
        DealAction::Add => add(ctx),
        _ => Ok(json!([])),
    }
}

fn list(ctx: &mut Ctx) -> R {
    // Without active=yes the real server lists closed deals only.
    let close = if ctx.str("active").as_deref() == Some("yes") {
        "no"
    } else {
        "yes"
    };
    let mut wh = vec!["d.close = ?".to_string()];
    let mut args = vec![Sql::Text(close.into())];
    if let Some(w) = ctx.str("word") {
        wh.push("(d.title LIKE ? OR d.uid = ?)".into());
        args.extend([like(&w), Sql::Text(w.clone())]);
    }
    if let Some(v) = ctx.id("clid") {
        wh.push(format!("d.clid = {v}"));
    }
    if let Some(u) = ctx.user_filter() {
        wh.push(format!("d.iduser = {u}"));
    }
    let order = ctx.order(&DEAL_ORDER).unwrap_or_else(|| "datum".into());
    // Unlike client/list, deal/list honours `first=old` (tuda ASC in
    // v3-deal-list-active-yes-order-did-old).
    let dir = ctx.dir();
    let (total, found) = TABLE.page(ctx, &wh, &args, &format!("d.{order} {dir}, d.did {dir}"))?;
    let data = found
        .iter()
        .map(|r| {
            let (sid, pct, stitle) = match step_of(r["step"].as_i64().unwrap_or(NO_STEP)) {
                Some((sid, pct, content)) => (sid, pct, json!(content)),
                None => (0, 0, Value::Null),
            };
            json!({
                "did": r["did"], "uid": r["uid"], "datum": r["datum"], "datum_izm": r["datum_izm"],
                "clid": r["clid"], "clientTitle": r["client_title"], "title": r["title"], "mcid": 0,
                "iduser": r["iduser"], "user": ctx.user_name(&r["iduser"]),
                "userTitle": ctx.users.title_of(&r["iduser"]), "datum_plan": r["datum_plan"],
                "step": pct, "stepID": sid, "stepTitle": stitle, "contractID": 0,
                "contractTitle": null, "contractNumber": null, "contractDate": null,
                "tipID": 6, "tip": "Продажа быстрая", "directionID": r["direction"],
                "direction": direction_name(&r["direction"]),
                "payer": r["payer"], "payerTitle": r["payer_title"], "kol": r["kol"],
                "marga": r["marga"], "datum_start": r["datum_start"], "datum_end": r["datum_end"],
                "close": r["close"], "datum_close": r["datum_close"],
                "status_close": r["status_close"].as_str().map(|s| json!(s)).unwrap_or(json!(false)),
                "des_fact": r["des_fact"], "kol_fact": r["kol_fact"]
            })
        })
        .collect();
    Ok(list_envelope(data, ctx, &order, dir, total))
}

fn deal_info(ctx: &mut Ctx) -> R {
    let (cond, arg) = match (ctx.id("did"), ctx.str("uid")) {
        (Some(did), _) => ("d.did = ?", Sql::Integer(did)),
        (None, Some(uid)) => ("d.uid = ?", Sql::Text(uid)),
        (None, None) => return Ok(error(405, TABLE.missing)),
    };
    let Some(r) = row_where(ctx.conn, DEAL_SELECT, cond, arg)? else {
        return Ok(TABLE.not_found());
    };
    // deal/list still shows a deal owned by nobody; deal/info does not (NOTES §11).
    if ctx.users.get(&r["iduser"]).is_none() {
        return Ok(error(
            403,
            "Сделка не найдена в пределах аккаунта указанного пользователя.",
        ));
    }
    let (sid, pct, _) = step_of(r["step"].as_i64().unwrap_or(NO_STEP)).unwrap_or((0, 0, ""));
    // uid, datum and clid come back null from deal/info on the real server (NOTES §6).
    let mut m: Params = [
        ("did", r["did"].clone()),
        ("uid", Value::Null),
        ("datum", Value::Null),
        ("datum_izm", Value::Null),
        ("clid", Value::Null),
        ("title", r["title"].clone()),
        ("mcid", json!(0)),
        ("iduser", r["iduser"].clone()),
        ("user", ctx.user_name(&r["iduser"])),
        ("userUID", ctx.users.uid_of(&r["iduser"])),
        ("datum_plan", r["datum_plan"].clone()),
        ("step", json!(sid)),
        ("stepID", json!(sid)),
        ("stepTitle", json!(pct)),
        ("tipID", json!(6)),
        ("tip", json!("Продажа быстрая")),
        ("directionID", r["direction"].clone()),
        ("direction", direction_name(&r["direction"])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    embed_client(ctx, &mut m, "payer", &r["payer"])?;
    m.extend(
        [
            ("kol", r["kol"].clone()),
            ("marga", r["marga"].clone()),
            ("datum_start", r["datum_start"].clone()),
            ("datum_end", r["datum_end"].clone()),
            (
                "close",
                json!({"close": r["close"], "date": r["datum_close"], "summa": r["kol_fact"],
                       "status": r["status_close"], "statustext": r["des_fact"]}),
            ),
            ("datum_close", r["datum_close"].clone()),
            ("des_fact", r["des_fact"].clone()),
            ("kol_fact", r["kol_fact"].clone()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    embed_client(ctx, &mut m, "client", &r["clid"])?;
    if ctx.flag("speka") {
        m.insert("speka".into(), json!([]));
    }
    let did = r["did"].as_i64().unwrap_or(0);
    with_extras(ctx, Entity::Deal, did, &mut m)?;
    Ok(info(m))
}

/// With `key` (payer, client) asked for, the client `clid` under `key`, as deal/info embeds it.
fn embed_client(ctx: &Ctx, m: &mut Params, key: &str, clid: &Value) -> rusqlite::Result<()> {
    if ctx.flag(key) {
        let clid = clid.as_i64().unwrap_or(0);
        m.insert(key.into(), client::embedded(ctx.conn, ctx.login, clid)?);
    }
    Ok(())
}

fn add(ctx: &mut Ctx) -> R {
    let clid = ctx.int("clid").unwrap_or(0);
    let payer = ctx.id("payer").unwrap_or(clid);
    let known = (clid > 0 && exists(ctx.conn, "client", "clid", clid)?)
        || (payer > 0 && exists(ctx.conn, "client", "clid", payer)?);
    if !known {
        return Ok(error(407, "Клиент или Плательщик не найден."));
    }
    let Some(title) = ctx.str("title").map(|t| clean_field(&t)) else {
        return Ok(error(405, "Отсутствуют параметры - Название сделки"));
    };
    let datum_plan = match ctx.p.get("datum_plan") {
        None => None,
        v => match parse_date(v) {
            Ok(d) => Some(d),
            Err(raw) => {
                return Ok(error(
                    500,
                    &datetime_error(&raw, "app_dogovor", "datum_plan"),
                ))
            }
        },
    };
    let number = |k: &str| {
        ctx.str(k)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (kol, marga) = (number("kol"), number("marga"));
    let owner = ctx.owner(ctx.p);
    let (uid, content) = (ctx.str("uid"), ctx.str("content"));
    let step = step_param(ctx.p.get("step"));
    let tx = ctx.conn.transaction()?;
    tx.execute(
        "INSERT INTO deal (uid, datum, clid, title, iduser, datum_plan, step, payer, kol, marga, content)
         VALUES (?1, ?2, ?3, '', ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        rusqlite::params![
            uid,
            today(),
            clid,
            owner,
            datum_plan,
            step,
            payer,
            kol,
            marga,
            content
        ],
    )?;
    let did = tx.last_insert_rowid();
    // The CRM prefixes deal titles with its deal number ("СД2: ...", NOTES §6), read
    // before the request waited and written back after: concurrent adds can share one
    // (throughput.md).
    let number = ctx
        .deal_number
        .unwrap_or_else(|| ctx.deal_counter.load(SeqCst));
    TABLE.set(&tx, did, "title", format!("СД{}: {title}", number + 1))?;
    let spec = store_speka(&tx, did, ctx.p)?;
    ctx.fields.store(&tx, Entity::Deal, did, ctx.p, false)?;
    tx.commit()?;
    ctx.deal_counter.store(number + 1, SeqCst);
    Ok(match spec {
        // With a specification the answer says so (v3-deal-add-with-speka).
        Some(n) => json!({"result": "Успешно", "data": did,
            "text": [format!("Добавлены позиции в спецификацию. Ошибок {n}")]}),
        None => done(did),
    })
}

/// deal/add `speka`: the specification rows; the deal's kol becomes Σ price×kol and marga the
/// same (price_in 0). `None` without a spec, else the number of rows refused.
fn store_speka(
    conn: &rusqlite::Connection,
    did: i64,
    p: &Params,
) -> rusqlite::Result<Option<usize>> {
    let Some(Value::Array(items)) = p.get("speka") else {
        return Ok(None);
    };
    let mut bad = 0;
    let mut total = 0.0;
    for it in items {
        let n = |k: &str| super::invoice::php_sum(it.get(k)).unwrap_or(0.0);
        let Some(title) = value_str(it.get("title"), "").filter(|t| !t.is_empty()) else {
            bad += 1;
            continue;
        };
        let (price, kol) = (n("price"), n("kol"));
        conn.execute(
            "INSERT INTO speka (did, title, artikul, price, kol, nds, edizm)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            rusqlite::params![
                did,
                title,
                value_str(it.get("artikul"), ""),
                price,
                kol,
                n("nds"),
                value_str(it.get("edizm"), "")
            ],
        )?;
        total += price * kol;
    }
    if total > 0.0 {
        conn.execute(
            "UPDATE deal SET kol = ?1, marga = ?1 WHERE did = ?2",
            rusqlite::params![total, did],
        )?;
    }
    Ok(Some(bad))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Crm;
    use serde_json::json;

    fn client(crm: &Crm) -> i64 {
        crm.add("client", json!({"title": "Клиент сделок"}))
    }

    #[test]
    fn add_needs_a_known_client_and_numbers_the_title() {
        let crm = Crm::new();
        let r = crm.call("deal", "add", json!({"title": "Без клиента", "clid": 99}));
        assert_eq!(r["error"]["code"], 407);
        let clid = client(&crm);
        let first = crm.add("deal", json!({"title": "Поставка", "clid": clid}));
        let second = crm.add("deal", json!({"title": "Монтаж", "payer": clid}));
        // A fresh store's counter is one past the highest did (0): the first deal is СД2.
        let d = &crm.call("deal", "info", json!({ "did": first }))["data"];
        assert_eq!(d["title"], "СД2: Поставка");
        assert_eq!(d["clid"], json!(null), "info answers clid null");
        let d = &crm.call("deal", "info", json!({ "did": second }))["data"];
        assert_eq!(d["title"], "СД3: Монтаж");
    }

    #[test]
    fn list_without_active_shows_closed_deals_only() {
        let crm = Crm::new();
        let clid = client(&crm);
        let open = crm.add(
            "deal",
            json!({"title": "Открытая", "clid": clid, "step": 40}),
        );
        let closed = crm.add("deal", json!({"title": "Закрытая", "clid": clid}));
        crm.call(
            "deal",
            "close",
            json!({"did": closed, "status_close": "Победа полная"}),
        );
        let r = crm.call("deal", "list", json!({}));
        assert_eq!(r["count"], 1);
        assert_eq!(r["data"][0]["did"], closed);
        assert_eq!(r["data"][0]["status_close"], "Победа полная");
        let r = crm.call("deal", "list", json!({"active": "yes", "first": "old"}));
        assert_eq!(r["data"][0]["did"], open);
        assert_eq!(r["data"][0]["step"], 40);
        assert_eq!(r["data"][0]["stepID"], 11);
        assert_eq!(r["data"][0]["stepTitle"], "Отправлено КП");
        assert_eq!(r["params"]["tuda"], "ASC");
        assert_eq!(r["params"]["ord"], "datum");
    }

    #[test]
    fn info_embeds_client_and_payer_on_request_and_hides_deals_of_nobody() {
        let crm = Crm::new();
        let clid = client(&crm);
        let did = crm.add(
            "deal",
            json!({"title": "С клиентом", "clid": clid, "uid": "D-1"}),
        );
        let d = &crm.call(
            "deal",
            "info",
            json!({"uid": "D-1", "client": "yes", "payer": true}),
        )["data"];
        assert_eq!(d["did"], did);
        assert_eq!(d["client"]["title"], "Клиент сделок");
        assert_eq!(d["client"]["recv"], d["client"]["bankinfo"]);
        assert!(d["client"].get("dostup").is_none());
        assert_eq!(d["payer"]["clid"], clid);
        let keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(keys.iter().position(|k| *k == "payer") < keys.iter().position(|k| *k == "kol"));
        let nobody = crm.add(
            "deal",
            json!({"title": "Ничья", "clid": clid, "user": "ghost@x"}),
        );
        let r = crm.call("deal", "info", json!({ "did": nobody }));
        assert_eq!(r["error"]["code"], 403);
        assert_eq!(crm.call("deal", "info", json!({}))["error"]["code"], 405);
    }

    #[test]
    fn an_array_kol_kills_add_and_dictionaries_answer_as_recorded() {
        let crm = Crm::new();
        let clid = client(&crm);
        let page = crm.fatal(
            "deal",
            "add",
            json!({"title": "x", "clid": clid, "kol": [1]}),
        );
        assert!(page.contains("pre_format()"), "{page}");
        assert_eq!(crm.sql_value("SELECT COUNT(*) FROM deal"), json!(0));
        let win = crm.call("deal", "statusclose", json!({"filter": "win"}));
        let rows = win["data"].as_array().unwrap();
        assert!(!rows.is_empty() && rows.iter().all(|r| r["result"] == "win"));
        assert!(crm.call("deal", "steplist", json!({}))["data"].is_array());
    }
}
