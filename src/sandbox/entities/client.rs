//! client/*: companies and people as clients (NOTES §3, §4, §6, §11, §15).

use super::{
    add_each, add_one, count, done, exists, history, info, like, list_envelope, picked_rows,
    row_where, rows, with_extras, Ctx, Params, Table, R,
};
use crate::crm::Entity;
use crate::sandbox::api::error;
use crate::sandbox::fields::FieldSet;
use crate::sandbox::text::{
    clean_field, datetime_error, normalize_title, now, parse_datetime, utf8mb3_error, value_str,
};
use crate::sandbox::users::Users;
use rusqlite::types::Value as Sql;
use rusqlite::Connection;
use serde_json::{json, Map, Value};

actions! {
    /// client/* actions; an unknown one is answered as recorded in v3-error-unknown-action-client.
    ClientAction, unknown = error(402, "Неизвестный метод");
    Fields = "fields", List = "list", Info = "info", Add = "add", AddList = "add.list",
    Update = "update", Delete = "delete",
}

const TABLE: Table = Table {
    name: "client",
    id: "clid",
    alias: "c",
    select: "SELECT c.* FROM client c",
    params: &["clid"],
    missing: "Отсутствуют параметры - clid клиента",
    not_found: "Клиент не найден",
};

/// info of a client out of the API user's reach (or of none).
const NOT_VISIBLE: &str = "Клиент не найден в пределах аккаунта указанного пользователя.";

const CLIENT_LIST: [&str; 12] = [
    "clid",
    "uid",
    "type",
    "date_create",
    "date_edit",
    "title",
    "iduser",
    "address",
    "phone",
    "fax",
    "site_url",
    "mail_url",
];

/// The columns client/update writes when the key is present.
const UPDATE_COLUMNS: [&str; 13] = [
    "title",
    "iduser",
    "uid",
    "type",
    "phone",
    "fax",
    "mail_url",
    "site_url",
    "address",
    "des",
    "territory",
    "clientpath",
    "tip_cmr",
];

pub(super) fn handle(ctx: &mut Ctx, a: ClientAction) -> R {
    match a {
        ClientAction::Fields => Ok(ctx.fields.answer(Entity::Client)),
        ClientAction::List => list(ctx),
        ClientAction::Info => client_info(ctx),
        ClientAction::Add => add_one(ctx, insert),
        ClientAction::AddList => add_each(ctx, "client", insert),
        ClientAction::Update => update(ctx),
        ClientAction::Delete => delete(ctx),
    }
}

/// A `recv` that is not an object kills client/add (line 170) and client/add.list (line 182)
/// with a PHP TypeError before anything is stored (NOTES §15).
pub(super) fn recv_fatal(rows: &[&Value], single: bool) -> Option<String> {
    let not_object = |r: &&Value| {
        r.get("recv")
            .is_some_and(|v| !v.is_object() && !v.is_null() && !v.is_array())
    };
    rows.iter()
        .any(not_object)
        .then(|| crate::sandbox::faults::recv_type_error(if single { 170 } else { 182 }))
}

fn client_info(ctx: &mut Ctx) -> R {
    let clid = ctx.int("clid").unwrap_or(0);
    let (contacts, bank, uids) = (ctx.flag("contacts"), ctx.flag("bankinfo"), ctx.flag("uids"));
    match info_obj(ctx.conn, ctx.login, clid, contacts, bank, uids)? {
        // A client whose name was blanked reads as not found (v3-client-info-after-empty-title).
        Some(Value::Object(d)) if d["title"] == "" => Ok(info(json!({"person": null}))),
        // Owned by nobody (an unknown `user` login on add): out of the API user's reach.
        Some(Value::Object(d)) if ctx.users.get(&d["iduser"]).is_none() => {
            Ok(error(403, NOT_VISIBLE))
        }
        Some(Value::Object(mut d)) => {
            with_extras(ctx, Entity::Client, clid, &mut d)?;
            Ok(info(d))
        }
        Some(d) => Ok(info(d)),
        None => Ok(error(403, NOT_VISIBLE)),
    }
}

fn update(ctx: &mut Ctx) -> R {
    // Looked up by clid, else by uid; unknown, missing and non-numeric clids get one answer.
    let found = match (ctx.id("clid"), ctx.str("uid")) {
        (Some(clid), _) => row_where(ctx.conn, TABLE.select, "c.clid = ?", Sql::Integer(clid))?,
        (None, Some(uid)) => row_where(
            ctx.conn,
            TABLE.select,
            "c.uid = ? ORDER BY c.clid",
            Sql::Text(uid),
        )?,
        (None, None) => None,
    };
    let Some(old) = found else {
        return Ok(error(
            403,
            "Клиент с указанным clid не найден в пределах аккаунта",
        ));
    };
    let clid = old["clid"].as_i64().unwrap_or(0);
    // Partial: every key sent is written, an empty or null one too (NOTES §11); `iduser` is
    // not checked ("x" is stored and hides the client).
    let mut changes = Vec::new();
    for f in UPDATE_COLUMNS {
        let Some(v) = ctx.p.get(f) else { continue };
        let raw = value_str(Some(v), ",").unwrap_or_default();
        let new = match f {
            "title" => normalize_title(&raw),
            "iduser" => raw,
            _ => clean_field(&raw),
        };
        let was = value_str(old.get(f), ",").unwrap_or_default();
        if new != was {
            changes.push((f.to_string(), was, new));
        }
    }
    if changes.is_empty() {
        return Ok(json!({"data": clid, "result": "Данные корректны, но идентичны имеющимся."}));
    }
    let tx = ctx.conn.transaction()?;
    for (f, _, new) in &changes {
        TABLE.set(&tx, clid, f, new)?;
    }
    TABLE.set(&tx, clid, "date_edit", now())?;
    ctx.fields.store(&tx, Entity::Client, clid, ctx.p, false)?;
    let hid = history::log_changes(&tx, &changes, (clid, 0, 0))?;
    tx.commit()?;
    Ok(json!({"data": clid, "hid": hid, "result": "Успешно"}))
}

/// client/delete: refused while the client has a deal; otherwise its history goes (manual rows
/// too), its tasks without a contact go, those with one and its contacts are unlinked, its
/// invoices go (NOTES §11, v3-client-delete-ok). Anything but an existing clid: 403.
fn delete(ctx: &mut Ctx) -> R {
    let gone = || error(403, "Не найдена запись");
    let Some(clid) = ctx.id("clid") else {
        return Ok(gone());
    };
    if !exists(ctx.conn, "client", "clid", clid)? {
        return Ok(gone());
    }
    if count(
        ctx.conn,
        "SELECT COUNT(*) FROM deal WHERE clid = ?",
        &[Sql::Integer(clid)],
    )? > 0
    {
        return Ok(error(408, "Клиент не удален. Внимание: К сожалению Удаление записи не возможно. Причина - Имеются связанные записи - Сделки."));
    }
    let tx = ctx.conn.transaction()?;
    let h = tx.execute("DELETE FROM history WHERE clid = ?1", [clid])?;
    let p = tx.execute("UPDATE person SET clid = 0 WHERE clid = ?1", [clid])?;
    let t = tx.execute("DELETE FROM task WHERE clid = ?1 AND pid = 0", [clid])?
        + tx.execute("UPDATE task SET clid = 0 WHERE clid = ?1", [clid])?;
    tx.execute("DELETE FROM invoice WHERE clid = ?1", [clid])?;
    tx.execute("DELETE FROM client WHERE clid = ?1", [clid])?;
    tx.commit()?;
    Ok(json!({
        "message": format!("Успешно: Клиент удален.<br>Также удалено {h} записи истории активностей. Снята привязка к Клиенту у {p} Контактов. Удалено {t} записей напоминаний. Удалено 0 файлов."),
        "result": "Клиент удален",
        "data": clid
    }))
}

fn insert(conn: &Connection, users: &Users, row: &Params, set: &FieldSet) -> R {
    let title = value_str(row.get("title"), ",")
        .map(|t| normalize_title(&t))
        .unwrap_or_default();
    if title.is_empty() {
        return Ok(error(402, "Отсутствуют параметры - Название клиента"));
    }
    let text = |k: &str| value_str(row.get(k), ",").map(|s| clean_field(&s));
    let phone = text("phone").filter(|s| !s.is_empty());
    let mail = text("mail_url").filter(|s| !s.is_empty());
    for (col, v) in [("title", Some(&title)), ("phone", phone.as_ref())] {
        if let Some(e) = v.and_then(|s| utf8mb3_error(s, "app_clientcat", col)) {
            return Ok(error(500, &e));
        }
    }
    // Duplicate: same normalised title, and phone / e-mail (when given) matching (NOTES §3).
    let mut sql = "SELECT clid FROM client WHERE title = ?".to_string();
    let mut args = vec![Sql::Text(title.clone())];
    if let Some(p) = &phone {
        sql.push_str(" AND phone LIKE ?");
        args.push(like(p));
    }
    if let Some(m) = &mail {
        sql.push_str(" AND mail_url LIKE ?");
        args.push(like(m));
    }
    sql.push_str(" ORDER BY clid LIMIT 1");
    if let Some(r) = rows(conn, &sql, &args)?.first() {
        let clid = r["clid"].clone();
        return Ok(json!({
            "result": "Error",
            "exists": clid,
            "error": {"code": 304, "text": format!("Найден существующий клиент - {title} (clid = {clid}). Запрос отклонен.")}
        }));
    }
    let date_create = match row.get("date_create") {
        None => now(),
        v => match parse_datetime(v) {
            Ok(d) => d,
            Err(raw) => {
                return Ok(error(
                    500,
                    &datetime_error(&raw, "app_clientcat", "date_create"),
                ))
            }
        },
    };
    let recv = match row.get("recv") {
        Some(Value::Object(o)) => Some(
            Value::Object(
                o.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            json!(value_str(Some(v), ",")
                                .map(|s| clean_field(&s))
                                .unwrap_or_default()),
                        )
                    })
                    .collect(),
            )
            .to_string(),
        ),
        _ => None,
    };
    let owner = users.owner(row);
    conn.prepare_cached(
        "INSERT INTO client (uid, type, date_create, title, iduser, address, phone, fax, site_url,
         mail_url, des, territory, clientpath, tip_cmr, recv)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(rusqlite::params![
        text("uid").filter(|s| !s.is_empty()),
        text("type")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "client".into()),
        date_create,
        title,
        owner,
        text("address"),
        phone,
        text("fax"),
        text("site_url"),
        mail,
        text("des"),
        text("territory"),
        text("clientpath"),
        text("tip_cmr"),
        recv
    ])?;
    let clid = conn.last_insert_rowid();
    set.store(conn, Entity::Client, clid, row, false)?;
    Ok(done(clid))
}

fn list(ctx: &mut Ctx) -> R {
    // The real server dies with an HTML fatal error without a valid `order` (its default sort
    // column does not exist); we answer a JSON error instead (README, "The sandbox").
    let Some(order) = ctx.order(&CLIENT_LIST) else {
        return Ok(error(
            400,
            "client/list: укажите order (например date_create или clid); реальный сервер без него отвечает HTML fatal error",
        ));
    };
    // Clients owned by nobody (unknown `user` on add) are not listed (NOTES §4).
    let mut wh = vec![ctx.users.visible("iduser")];
    let mut args = Vec::new();
    if let Some(w) = ctx.str("word") {
        wh.push("(title LIKE ? OR uid = ? OR phone LIKE ? OR mail_url LIKE ?)".into());
        args.extend([like(&w), Sql::Text(w.clone()), like(&w), like(&w)]);
    }
    if let Some(u) = ctx.str("uid") {
        wh.push("uid = ?".into());
        args.push(Sql::Text(u));
    }
    if let Some(u) = ctx.user_filter() {
        wh.push(format!("iduser = {u}"));
    }
    // The real server sorts DESC whatever `first` says.
    let (total, found) = TABLE.page(ctx, &wh, &args, &format!("c.{order} DESC, c.clid ASC"))?;
    let data = picked_rows(ctx, Entity::Client, &CLIENT_LIST, "clid", found, |r| {
        let mut extra = Map::new();
        extra.insert("user".into(), ctx.user_name(&r["iduser"]));
        extra
    })?;
    Ok(list_envelope(data, ctx, &order, "DESC", total))
}

fn info_obj(
    conn: &Connection,
    login: &str,
    clid: i64,
    contacts: bool,
    bank: bool,
    uids: bool,
) -> rusqlite::Result<Option<Value>> {
    let Some(r) = row_where(conn, TABLE.select, "c.clid = ?", Sql::Integer(clid))? else {
        return Ok(None);
    };
    let created = r["date_create"].as_str().unwrap_or("").to_string();
    let short = crate::values::CrmDateTime::parse(&created)
        .and_then(|d| d.moment())
        .map(|d| d.format("%d.%m.%y,  %H:%M").to_string())
        .unwrap_or_default();
    let mut d = json!({
        "clid": r["clid"], "uid": r["uid"], "clientUID": r["uid"], "iduser": r["iduser"],
        "title": r["title"], "des": r["des"], "idcategory": 0, "category": "",
        "phone": r["phone"], "fax": r["fax"], "site_url": r["site_url"], "mail_url": r["mail_url"],
        "address": r["address"], "pid": 0, "fav": "no", "trash": "no", "head_clid": 0, "head": "",
        "scheme": null, "tip_cmr": r["tip_cmr"], "relation": null, "territory": 0,
        "territoryname": r["territory"].as_str().unwrap_or(""), "created": created,
        "creator": if r["iduser"].as_i64() == Some(1) { login } else { "" }, "creatorID": r["iduser"],
        "date_create": short, "edited": r["date_edit"], "editor": "не определено", "editorID": 0,
        "date_edit": "", "dostup": [], "clientpath": r["clientpath"].as_str().unwrap_or(""),
        "clientpath2": 0, "type": r["type"], "priceLevel": "price_1", "person": null
    });
    let Value::Object(m) = &mut d else {
        return Ok(None);
    };
    if bank {
        m.insert("bankinfo".into(), bankinfo(&r));
    }
    if uids {
        m.insert("uids".into(), json!([]));
    }
    if contacts {
        let ps = rows(
            conn,
            "SELECT pid, person, ptitle, tel, mob, mail FROM person WHERE clid = ? ORDER BY pid",
            &[Sql::Integer(clid)],
        )?;
        m.insert("person".into(), Value::Null);
        m.insert(
            "contacts".into(),
            Value::Array(ps.into_iter().map(Value::Object).collect()),
        );
    }
    Ok(Some(d))
}

/// The requisites (`recv`) of a client row as info shows them under `bankinfo`.
fn bankinfo(r: &Params) -> Value {
    let recv: Map<String, Value> = r["recv"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let mut b = Map::new();
    b.insert("clid".into(), r["clid"].clone());
    for k in [
        "castUrName",
        "castUrNameShort",
        "castName",
        "castInn",
        "castKpp",
        "castBank",
        "castBankKs",
        "castBankRs",
        "castBankBik",
        "castOkpo",
        "castOgrn",
        "castDirName",
        "castDirSignature",
        "castDirStatus",
        "castDirStatusSig",
        "castDirOsnovanie",
        "castUrAddr",
    ] {
        let v = match k {
            "castName" => r["title"].clone(),
            _ => recv.get(k).cloned().unwrap_or(json!("")),
        };
        b.insert(k.into(), v);
    }
    b.insert("castFacAddr".into(), Value::Null);
    b.insert("castType".into(), r["type"].clone());
    Value::Object(b)
}

/// A client inside deal/info: the info object without `dostup`, with `bankinfo` and the same
/// requisites again under `recv`.
pub(super) fn embedded(conn: &Connection, login: &str, clid: i64) -> R {
    let Some(mut v) = info_obj(conn, login, clid, false, true, false)? else {
        return Ok(Value::Null);
    };
    if let Value::Object(m) = &mut v {
        m.shift_remove("dostup");
        m.shift_remove("person");
        let bank = m.get("bankinfo").cloned().unwrap_or(Value::Null);
        m.insert("recv".into(), bank);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Crm, LOGIN};
    use serde_json::json;

    #[test]
    fn add_normalises_the_title_and_a_duplicate_is_refused_with_304_and_the_clid() {
        let crm = Crm::new();
        let clid = crm.add(
            "client",
            json!({"title": "ООО «Ромашка»", "phone": "+7 495 1"}),
        );
        let d = &crm.call("client", "info", json!({ "clid": clid }))["data"];
        assert_eq!(d["title"], "Ромашка, ООО");
        assert_eq!(d["creator"], LOGIN);
        let r = crm.call(
            "client",
            "add",
            json!({"title": "ООО \"Ромашка\"", "phone": "+7 495 1"}),
        );
        assert_eq!(r["error"]["code"], 304);
        assert_eq!(r["exists"], clid);
        assert_eq!(
            r["error"]["text"],
            format!("Найден существующий клиент - Ромашка, ООО (clid = {clid}). Запрос отклонен.")
        );
        // Same title, another phone: not a duplicate.
        crm.add(
            "client",
            json!({"title": "ООО «Ромашка»", "phone": "+7 812 2"}),
        );
    }

    #[test]
    fn add_list_answers_each_row_and_a_string_recv_kills_the_whole_batch() {
        let crm = Crm::new();
        let r = crm.call(
            "client",
            "add.list",
            json!({"client": [{"title": "Альфа"}, {"phone": "1"}]}),
        );
        assert_eq!(r[0]["result"], "Успешно");
        assert_eq!(r[1]["error"]["code"], 402);
        let page = crm.fatal(
            "client",
            "add.list",
            json!({"client": [{"title": "Бета"}, {"title": "Гамма", "recv": "ИНН 1"}]}),
        );
        assert!(page.contains("Uncaught TypeError"), "{page}");
        assert_eq!(crm.sql_value("SELECT COUNT(*) FROM client"), json!(1));
    }

    #[test]
    fn info_shows_requisites_and_contacts_on_request_and_hides_clients_of_nobody() {
        let crm = Crm::new();
        let clid = crm.add(
            "client",
            json!({"title": "Вега", "recv": {"castInn": "7701", "castKpp": "<b>77</b>"}}),
        );
        crm.add("person", json!({"person": "Контакт", "clid": clid}));
        let d = &crm.call(
            "client",
            "info",
            json!({"clid": clid, "bankinfo": "yes", "contacts": true}),
        )["data"];
        assert_eq!(d["bankinfo"]["castInn"], "7701");
        assert_eq!(d["bankinfo"]["castKpp"], "77");
        assert_eq!(d["bankinfo"]["castName"], "Вега");
        assert_eq!(d["contacts"][0]["person"], "Контакт");
        assert!(d.get("uids").is_none());
        let hidden = crm.add("client", json!({"title": "Ничей", "user": "ghost@x"}));
        let r = crm.call("client", "info", json!({ "clid": hidden }));
        assert_eq!(r["error"]["code"], 403);
        let r = crm.call("client", "info", json!({"clid": 999}));
        assert_eq!(r["error"]["code"], 403);
    }

    #[test]
    fn list_needs_an_order_and_always_sorts_descending() {
        let crm = Crm::new();
        for t in ["А", "Б", "В"] {
            crm.add("client", json!({ "title": t }));
        }
        let r = crm.call("client", "list", json!({}));
        assert_eq!(r["error"]["code"], 400);
        let r = crm.call(
            "client",
            "list",
            json!({"order": "clid", "first": "old", "fields": "title"}),
        );
        assert_eq!(
            r["data"],
            json!([{"title": "В"}, {"title": "Б"}, {"title": "А"}])
        );
        assert_eq!(r["params"]["tuda"], "DESC");
        assert_eq!(r["params"]["pageall"], 1);
        assert_eq!(r["count"], 3);
    }

    #[test]
    fn update_writes_only_the_keys_sent_even_empty_ones_and_logs_the_change() {
        let crm = Crm::new();
        let clid = crm.add(
            "client",
            json!({"title": "Омега", "uid": "CL-O", "phone": "1", "address": "Москва"}),
        );
        let r = crm.call("client", "update", json!({"clid": clid, "phone": "2"}));
        assert_eq!(r["result"], "Успешно");
        assert_eq!(r["data"], clid);
        let hid = r["hid"].as_i64().expect("hid of the ЛогCRM row");
        let log = crm.sql_value(&format!(
            "SELECT tip || ':' || clid || ':' || des FROM history WHERE cid = {hid}"
        ));
        assert_eq!(
            log,
            json!(format!("ЛогCRM:{clid}:Изменены параметры записи:\n============================\n phone - <b>2</b> (было - 1)"))
        );
        let d = &crm.call("client", "info", json!({ "clid": clid }))["data"];
        assert_eq!(
            (d["phone"].as_str(), d["address"].as_str()),
            (Some("2"), Some("Москва"))
        );
        // Same data again: no change, no log row.
        let same = crm.call("client", "update", json!({"clid": clid, "phone": "2"}));
        assert_eq!(
            same,
            json!({"data": clid, "result": "Данные корректны, но идентичны имеющимся."})
        );
        // By uid; null and an array phone are written ("" and joined with ",").
        let r = crm.call(
            "client",
            "update",
            json!({"uid": "CL-O", "address": null, "phone": ["+7 111", "+7 222"]}),
        );
        assert_eq!(r["data"], clid);
        let d = &crm.call("client", "info", json!({ "clid": clid }))["data"];
        assert_eq!(
            (d["phone"].as_str(), d["address"].as_str()),
            (Some("+7 111,+7 222"), Some(""))
        );
        // An empty title is written too: the client then reads as not found.
        crm.call("client", "update", json!({"clid": clid, "title": ""}));
        assert_eq!(
            crm.call("client", "info", json!({ "clid": clid })),
            json!({"data": {"person": null}})
        );
        for body in [
            json!({"clid": 999}),
            json!({"phone": "1"}),
            json!({"clid": "abc"}),
        ] {
            let r = crm.call("client", "update", body);
            assert_eq!(
                r["error"],
                json!({"code": 403, "text": "Клиент с указанным clid не найден в пределах аккаунта"})
            );
        }
    }

    #[test]
    fn delete_is_refused_while_the_client_has_a_deal() {
        let crm = Crm::new();
        let clid = crm.add("client", json!({"title": "Со сделкой"}));
        let did = crm.add("deal", json!({"title": "Сделка", "clid": clid}));
        let r = crm.call("client", "delete", json!({ "clid": clid }));
        assert_eq!(r["error"]["code"], 408);
        assert_eq!(crm.sql_value("SELECT COUNT(*) FROM client"), json!(1));
        crm.call("deal", "delete", json!({ "did": did }));
        let r = crm.call("client", "delete", json!({ "clid": clid }));
        assert_eq!(r["result"], "Клиент удален");
    }

    #[test]
    fn delete_cascades_to_history_tasks_contacts_and_invoices() {
        let crm = Crm::new();
        let clid = crm.add("client", json!({"title": "Удаляемый"}));
        let other = crm.add("client", json!({"title": "Остающийся"}));
        let p1 = crm.add("person", json!({"person": "Один", "clid": clid}));
        crm.add("person", json!({"person": "Два", "clid": clid}));
        crm.call(
            "history",
            "add.list",
            json!({"list": [
                {"content": "Звонок", "clid": clid, "pid": p1, "tip": "исх.Звонок"},
                {"content": "Ручная", "clid": clid},
                {"content": "Чужая", "clid": other}
            ]}),
        );
        let no_pid = crm.add("task", json!({"title": "Без контакта", "clid": clid}));
        let with_pid = crm.add(
            "task",
            json!({"title": "С контактом", "clid": clid, "pid": p1}),
        );
        crm.sql(&format!(
            "INSERT INTO invoice (did, clid, summa_credit) VALUES (0, {clid}, 100)"
        ));
        let r = crm.call("client", "delete", json!({ "clid": clid }));
        assert_eq!(
            r,
            json!({
                "message": "Успешно: Клиент удален.<br>Также удалено 2 записи истории активностей. Снята привязка к Клиенту у 2 Контактов. Удалено 2 записей напоминаний. Удалено 0 файлов.",
                "result": "Клиент удален",
                "data": clid
            })
        );
        assert_eq!(
            crm.sql_value("SELECT group_concat(des) FROM history"),
            json!("Чужая")
        );
        assert_eq!(
            crm.sql_value(&format!("SELECT COUNT(*) FROM task WHERE tid = {no_pid}")),
            json!(0)
        );
        assert_eq!(
            crm.sql_value(&format!(
                "SELECT clid || ':' || pid FROM task WHERE tid = {with_pid}"
            )),
            json!(format!("0:{p1}"))
        );
        assert_eq!(
            crm.sql_value("SELECT group_concat(clid) FROM person"),
            json!("0,0")
        );
        assert_eq!(crm.sql_value("SELECT COUNT(*) FROM invoice"), json!(0));
        for body in [
            json!({ "clid": clid }),
            json!({}),
            json!({"clid": "abc"}),
            json!({"clid": 999}),
        ] {
            assert_eq!(
                crm.call("client", "delete", body)["error"],
                json!({"code": 403, "text": "Не найдена запись"})
            );
        }
    }
}
