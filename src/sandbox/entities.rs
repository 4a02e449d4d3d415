//! Per-entity actions, answering with the exact shapes the real server uses (see the fixtures).

use super::api::{error, AppState, Call, Reply};
use super::dicts;
use super::fields::FieldSet;
use super::store::{data_version, IdCache};
use super::text::{
    clean_content, clean_field, datetime_error, filter_date, in_timestamp_range, normalize_title,
    now, parse_date, parse_datetime, today, utf8mb3_error, value_int, value_str,
};
use super::users::{self, Users};
use crate::crm::Entity;
use rusqlite::types::Value as Sql;
use rusqlite::Connection;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};

type Params = Map<String, Value>;

/// Fixed page size of every list (NOTES §6); `offset` is a page number.
pub const PAGE: i64 = 200;

/// One request: the API user (id 1, the configured login) and the CRM's users.
struct Ctx<'a> {
    conn: &'a mut Connection,
    login: &'a str,
    users: &'a Users,
    p: &'a Params,
    ids: &'a Mutex<IdCache>,
    /// The entity's field settings (which fields exist beyond a fresh install's).
    fields: &'a FieldSet,
    /// The deal counter and, for deal/add, the value read before the request waited.
    deal_counter: &'a std::sync::atomic::AtomicI64,
    deal_number: Option<i64>,
}

impl Ctx<'_> {
    fn user_name(&self, iduser: &Value) -> Value {
        self.users.login_of(iduser)
    }
    /// Owner id from a row's `user` login: absent → the caller, unknown login → 0 (invisible).
    fn owner(&self, row: &Params) -> i64 {
        self.users.owner(row)
    }
    fn str(&self, k: &str) -> Option<String> {
        value_str(self.p.get(k), ",").filter(|s| !s.is_empty())
    }
    fn int(&self, k: &str) -> Option<i64> {
        value_int(self.p.get(k))
    }
    fn page_offset(&self) -> i64 {
        self.int("offset").unwrap_or(0).max(0).saturating_mul(PAGE)
    }
    fn user_filter(&self) -> Option<i64> {
        self.str("user").map(|u| self.users.filter_id(&u))
    }
}

pub fn dispatch(state: &AppState, call: Call) -> Reply {
    if call.login.as_deref() != Some(state.login.as_str())
        || call.apikey.as_deref() != Some(state.apikey.as_str())
    {
        return Reply::Json(error(401, "Неизвестный пользователь"));
    }
    if let Some(page) = fatal(state, &call) {
        return Reply::Fatal(page);
    }
    let mut conn = state.store.lock();
    let a = call.action.as_str();
    let users = match Users::load(&conn) {
        Ok(u) => u,
        Err(e) => return Reply::Json(error(500, &format!("Ошибка базы данных sandbox: {e}"))),
    };
    if call.entity == "user" {
        return match users::action(&conn, a, &call.params) {
            Ok(v) => Reply::Json(v),
            Err(e) => Reply::Json(error(500, &format!("Ошибка базы данных sandbox: {e}"))),
        };
    }
    let entity: Entity = call.entity.parse().unwrap_or(Entity::Deal);
    let fields = match FieldSet::load(&conn, entity) {
        Ok(f) => f,
        Err(e) => return Reply::Json(error(500, &format!("Ошибка базы данных sandbox: {e}"))),
    };
    // Disabled fields are dropped from every write, as the real server drops them (NOTES §4).
    let params = if matches!(a, "add" | "add.list" | "update" | "doit") {
        without_disabled(&call.params, &fields, entity.batch_key())
    } else {
        Cow::Borrowed(&call.params)
    };
    // task/add notifies the task's owner; an unknown `user` login makes the real server die
    // with a PHP fatal error on every attempt (issue 15; the exact page was not recorded).
    if call.version == 3 && call.entity == "task" && a == "add" {
        if let Some(u) = value_str(params.get("user"), "").filter(|u| !u.is_empty()) {
            if users.id_of(&u).is_none() {
                return Reply::Fatal(TASK_UNKNOWN_OWNER_FATAL.to_string());
            }
        }
    }
    let mut ctx = Ctx {
        conn: &mut conn,
        login: &state.login,
        users: &users,
        p: &params,
        ids: &state.store.ids,
        fields: &fields,
        deal_counter: &state.deal_number,
        deal_number: call.deal_number,
    };
    let result = if call.version == 2 {
        match (call.entity.as_str(), a) {
            ("person", "list") => person_list(&mut ctx),
            ("person", "add.list") => person_add_list(&mut ctx),
            _ => Ok(json!({"error": {"code": 402, "text": "Неизвестный метод"}})),
        }
    } else {
        match call.entity.as_str() {
            "person" => person(&mut ctx, a),
            "client" => client(&mut ctx, a),
            "history" => history(&mut ctx, a),
            "task" => task(&mut ctx, a),
            _ => deal(&mut ctx, a),
        }
    };
    match result {
        Ok(v) => Reply::Json(v),
        // Store failures are our bugs or a broken disk; answer like the real server's DB errors.
        Err(e) => Reply::Json(error(500, &format!("Ошибка базы данных sandbox: {e}"))),
    }
}

type R = rusqlite::Result<Value>;

/// Writes the real server dies on with a PHP fatal (HTML page, HTTP 200) before storing
/// anything of the request: a `recv` that is not an object (for add.list the whole batch is
/// lost, NOTES §15), an array deal `kol` (NOTES, Deals), and the `set_fatal_on` test value.
fn fatal(state: &AppState, call: &Call) -> Option<String> {
    if call.version != 3 || !matches!(call.action.as_str(), "add" | "add.list" | "update") {
        return None;
    }
    let rows: Vec<&Value> = match (call.entity.as_str(), call.action.as_str()) {
        (e, "add.list") => {
            let key = e.parse::<Entity>().ok().and_then(|e| e.batch_key())?;
            match call.params.get(key) {
                Some(Value::Array(a)) => a.iter().collect(),
                _ => vec![],
            }
        }
        _ => vec![],
    };
    let single = Value::Object(call.params.clone());
    let rows = if call.action == "add.list" {
        rows
    } else {
        vec![&single]
    };
    let fatal_on = state
        .fatal_on
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some(bad) = fatal_on {
        fn holds(v: &Value, bad: &str) -> bool {
            match v {
                Value::String(s) => s == bad,
                Value::Array(a) => a.iter().any(|x| holds(x, bad)),
                Value::Object(o) => o.values().any(|x| holds(x, bad)),
                _ => false,
            }
        }
        if rows.iter().any(|r| holds(r, &bad)) {
            let class = match call.entity.as_str() {
                "client" => "Client",
                "person" => "Person",
                "history" => "History",
                "task" => "Todo",
                _ => "Deal",
            };
            return Some(super::faults::value_type_error(class));
        }
    }
    match (call.entity.as_str(), call.action.as_str()) {
        ("client", "add" | "add.list") => {
            let not_object = |r: &&Value| {
                r.get("recv")
                    .is_some_and(|v| !v.is_object() && !v.is_null() && !v.is_array())
            };
            rows.iter().any(not_object).then(|| {
                super::faults::recv_type_error(if call.action == "add" { 170 } else { 182 })
            })
        }
        ("deal", "add") => rows
            .iter()
            .any(|r| r.get("kol").is_some_and(Value::is_array))
            .then(|| super::faults::KOL_ARRAY_FATAL.to_string()),
        _ => None,
    }
}

/// What task/add answers for an owner login the CRM does not have.
pub const TASK_UNKNOWN_OWNER_FATAL: &str = "<br />\n<b>Fatal error</b>:  Uncaught TypeError: Cannot access offset of type string on null in <b>/var/www/salesman/inc/class/Todo.php</b>:<b>412</b>\nStack trace:\n#0 /var/www/salesman/developer/v3/task.php(188): Salesman\\Todo-&gt;add()\n#1 {main}\n  thrown in <b>/var/www/salesman/inc/class/Todo.php</b> on line <b>412</b><br />\n";

/// A write's parameters without the fields the settings switch off, in the record itself and in
/// each row of a batch.
fn without_disabled<'p>(p: &'p Params, set: &FieldSet, batch: Option<&str>) -> Cow<'p, Params> {
    if set.disabled.is_empty() {
        return Cow::Borrowed(p);
    }
    let mut out = set.accept(p).into_owned();
    if let Some(rows) = batch.and_then(|k| out.get_mut(k)) {
        let each: Vec<&mut Value> = match rows {
            Value::Array(a) => a.iter_mut().collect(),
            Value::Object(o) => o.values_mut().collect(),
            _ => Vec::new(),
        };
        for row in each {
            if let Value::Object(r) = row {
                *r = set.accept(r).into_owned();
            }
        }
    }
    Cow::Owned(out)
}

/// Add the record's extra field values (enabled fields the table has no column for) to a row
/// read from the store.
fn with_extras(ctx: &Ctx, entity: Entity, id: i64, row: &mut Params) -> rusqlite::Result<()> {
    for (k, v) in ctx.fields.values(ctx.conn, entity, id)? {
        row.insert(k, v);
    }
    Ok(())
}

/// The fields a list or info answers by default: the fixed ones, then the extra ones.
fn known_with_extras<'k>(known: &[&'k str], ctx: &'k Ctx) -> Vec<&'k str> {
    known
        .iter()
        .copied()
        .chain(ctx.fields.extra.iter().map(String::as_str))
        .collect()
}

fn dict(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

/// Query rows as JSON objects (column name → value); reals that are whole become integers.
fn rows(conn: &Connection, sql: &str, args: &[Sql]) -> rusqlite::Result<Vec<Params>> {
    let mut st = conn.prepare_cached(sql)?;
    let names: Vec<String> = st.column_names().iter().map(|s| s.to_string()).collect();
    let mut q = st.query(rusqlite::params_from_iter(args.iter()))?;
    let mut out = Vec::new();
    while let Some(r) = q.next()? {
        out.push(row_map(r, &names)?);
    }
    Ok(out)
}

fn row_map(r: &rusqlite::Row, names: &[String]) -> rusqlite::Result<Params> {
    let mut m = Map::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        let v = match r.get::<_, Sql>(i)? {
            Sql::Null => Value::Null,
            Sql::Integer(x) => json!(x),
            Sql::Real(f) if f.fract() == 0.0 && f.abs() < 1e15 => json!(f as i64),
            Sql::Real(f) => json!(f),
            Sql::Text(t) => Value::String(t),
            Sql::Blob(_) => Value::Null,
        };
        m.insert(n.clone(), v);
    }
    Ok(m)
}

/// Every id `ids_sql` selects (one integer column, in list order) for `args`, cached for the
/// current state of the data (see [`IdCache`]): a paging client pays for the full query once,
/// not once a page.
fn ordered_ids(ctx: &Ctx, ids_sql: &str, args: &[Sql]) -> rusqlite::Result<Arc<Vec<i64>>> {
    let version = data_version(ctx.conn)?;
    let key = format!("{ids_sql}\u{0}{args:?}");
    let mut cache = ctx.ids.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(ids) = cache.get(&key, version) {
        return Ok(ids);
    }
    let mut st = ctx.conn.prepare_cached(ids_sql)?;
    let ids = st
        .query_map(rusqlite::params_from_iter(args.iter()), |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    let ids = Arc::new(ids);
    cache.put(key, version, ids.clone());
    Ok(ids)
}

/// The ids of the page `offset` asks for: what `LIMIT 200 OFFSET offset*200` would select.
fn page_of<'i>(ctx: &Ctx, ids: &'i [i64]) -> &'i [i64] {
    let start = usize::try_from(ctx.page_offset())
        .unwrap_or(usize::MAX)
        .min(ids.len());
    &ids[start..start.saturating_add(PAGE as usize).min(ids.len())]
}

/// Rows by id, in the order given: `select` is a query without `WHERE`, `id` its id column
/// (`p.pid`) and `key` that column's name in the result (`pid`). One statement for the whole
/// page (ids passed as a JSON array), not one lookup per row.
fn rows_by_id(
    conn: &Connection,
    select: &str,
    id: &str,
    key: &str,
    ids: &[i64],
) -> rusqlite::Result<Vec<Params>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
    let found = rows(
        conn,
        &format!("{select} WHERE {id} IN (SELECT value FROM json_each(?1))"),
        &[Sql::Text(list)],
    )?;
    let at: std::collections::HashMap<i64, usize> =
        ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let mut slots: Vec<Option<Params>> = vec![None; ids.len()];
    for row in found {
        if let Some(&i) = row
            .get(key)
            .and_then(Value::as_i64)
            .and_then(|v| at.get(&v))
        {
            slots[i] = Some(row);
        }
    }
    Ok(slots.into_iter().flatten().collect())
}

fn count(conn: &Connection, sql: &str, args: &[Sql]) -> rusqlite::Result<i64> {
    conn.prepare_cached(sql)?
        .query_row(rusqlite::params_from_iter(args.iter()), |r| r.get(0))
}

/// Does the row with this id exist? (`table` and `id_col` are ours, never request data.)
fn exists(conn: &Connection, table: &str, id_col: &str, id: i64) -> rusqlite::Result<bool> {
    count(
        conn,
        &format!("SELECT COUNT(*) FROM {table} WHERE {id_col} = ?"),
        &[Sql::Integer(id)],
    )
    .map(|n| n > 0)
}

/// Set one column of one row (`table`, `id_col` and `col` are ours, never request data).
fn set_column(
    conn: &Connection,
    table: &str,
    id_col: &str,
    id: i64,
    col: &str,
    value: impl rusqlite::ToSql,
) -> rusqlite::Result<()> {
    conn.execute(
        &format!("UPDATE {table} SET {col} = ?1 WHERE {id_col} = ?2"),
        rusqlite::params![value, id],
    )
    .map(|_| ())
}

fn requested_fields(p: &Params) -> Option<Vec<String>> {
    let list: Vec<String> = match p.get("fields")? {
        Value::String(s) => s.split(',').map(|f| f.trim().to_string()).collect(),
        Value::Array(a) => a.iter().filter_map(|v| value_str(Some(v), "")).collect(),
        _ => return None,
    };
    let list: Vec<String> = list.into_iter().filter(|f| !f.is_empty()).collect();
    (!list.is_empty()).then_some(list)
}

/// Pick `fields` (known ones only) in order; `clid` brings `client` after it, `iduser` brings
/// `user` before it, as the real server does.
fn pick(row: &Params, fields: &[String], known: &[&str], extra: &Params) -> Value {
    pick_from(&mut row.clone(), fields, known, extra, false)
}

/// Whether no field is named twice (then [`pick_from`] may move values out of the row).
fn distinct(fields: &[String]) -> bool {
    fields
        .iter()
        .enumerate()
        .all(|(i, f)| !fields[..i].contains(f))
}

/// [`pick`] on a row that is not needed afterwards: with `take` (fields [`distinct`]) values
/// are moved out of `row` instead of copied.
fn pick_from(
    row: &mut Params,
    fields: &[String],
    known: &[&str],
    extra: &Params,
    take: bool,
) -> Value {
    let mut m = Map::with_capacity(fields.len() + 2);
    for f in fields {
        if !known.contains(&f.as_str()) {
            continue;
        }
        if f == "iduser" {
            if let Some(u) = extra.get("user") {
                m.insert("user".into(), u.clone());
            }
        }
        let v = match row.get_mut(f) {
            Some(v) if take => v.take(),
            Some(v) => v.clone(),
            None => Value::Null,
        };
        m.insert(f.clone(), v);
        if f == "clid" {
            if let Some(c) = extra.get("client") {
                m.insert("client".into(), c.clone());
            }
        }
    }
    Value::Object(m)
}

fn like(s: &str) -> Sql {
    Sql::Text(format!("%{s}%"))
}

fn unknown(code: i64, text: &str) -> R {
    Ok(error(code, text))
}

// ---------------------------------------------------------------- person

const PERSON_TEXT: [&str; 7] = ["person", "ptitle", "tel", "fax", "mob", "mail", "input7"];
const PERSON_KNOWN: [&str; 12] = [
    "pid",
    "date_create",
    "date_edit",
    "clid",
    "ptitle",
    "person",
    "tel",
    "fax",
    "mob",
    "mail",
    "iduser",
    "input7",
];

fn person(ctx: &mut Ctx, a: &str) -> R {
    match a {
        "fields" => Ok(ctx.fields.answer(Entity::Person)),
        "list" => person_list(ctx),
        "info" => person_info(ctx),
        "add" => {
            let row = ctx.p.clone();
            let tx = ctx.conn.transaction()?;
            let r = person_insert(&tx, ctx.users, &row, ctx.fields)?;
            tx.commit()?;
            Ok(r)
        }
        "add.list" => person_add_list(ctx),
        "update" => person_update(ctx),
        "delete" => person_delete(ctx),
        _ => unknown(404, "Неизвестный метод"),
    }
}

fn person_fail(msg: &str, line: u32) -> Value {
    json!({"result": "", "data": 0, "error": format!("Ошибка{msg} в строке {line}")})
}

/// Cleaned person text fields, or the MySQL strict-mode error the row would fail with.
fn person_values(row: &Params) -> Result<Vec<Option<String>>, Value> {
    let mut vals = Vec::with_capacity(PERSON_TEXT.len());
    for f in PERSON_TEXT {
        let v = value_str(row.get(f), ", ").map(|s| clean_field(&s));
        if let Some(s) = &v {
            if let Some(e) = utf8mb3_error(s, "app_personcat", f) {
                return Err(person_fail(&e, 1366));
            }
            if s.chars().count() > 250 {
                return Err(person_fail(
                    &format!("Data too long for column '{f}' at row 1"),
                    1406,
                ));
            }
        }
        vals.push(v);
    }
    Ok(vals)
}

fn person_insert(conn: &Connection, users: &Users, row: &Params, set: &FieldSet) -> R {
    let name = value_str(row.get("person"), ", ")
        .map(|s| clean_field(&s))
        .unwrap_or_default();
    if name.is_empty() {
        return Ok(json!({"result": "", "data": 0, "error": ""}));
    }
    let vals = match person_values(row) {
        Ok(v) => v,
        Err(e) => return Ok(e),
    };
    let owner = users.owner(row);
    let clid = value_int(row.get("clid")).unwrap_or(0);
    let mut st = conn.prepare_cached(
        "INSERT INTO person (date_create, clid, person, ptitle, tel, fax, mob, mail, input7, iduser)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    st.execute(rusqlite::params![
        now(),
        clid,
        vals[0],
        vals[1],
        vals[2],
        vals[3],
        vals[4],
        vals[5],
        vals[6],
        owner
    ])?;
    let pid = conn.last_insert_rowid();
    set.store(conn, Entity::Person, pid, row, false)?;
    Ok(json!({"result": "Контакт добавлен", "data": pid, "error": ""}))
}

/// Batch rows from an array or (PHP form) an object of rows; anything else = no rows.
fn batch_rows(p: &Params, key: &str) -> Vec<Value> {
    match p.get(key) {
        Some(Value::Array(a)) => a.clone(),
        Some(Value::Object(o)) => o.values().cloned().collect(),
        _ => Vec::new(),
    }
}

fn person_add_list(ctx: &mut Ctx) -> R {
    let rows_in = batch_rows(ctx.p, "persons");
    // One transaction per request: fast, and a crash mid-batch leaves no half batch.
    let tx = ctx.conn.transaction()?;
    let mut out = Vec::with_capacity(rows_in.len());
    for r in &rows_in {
        let row = r.as_object().cloned().unwrap_or_default();
        out.push(person_insert(&tx, ctx.users, &row, ctx.fields)?);
    }
    tx.commit()?;
    Ok(Value::Array(out))
}

const PERSON_SELECT: &str = "SELECT p.pid, p.date_create, p.date_edit, p.clid,
    CASE WHEN p.clid = 0 OR p.clid IS NULL THEN '' ELSE COALESCE(c.title, '--не найден--') END AS client,
    p.ptitle, p.person, p.tel, p.fax, p.mob, p.mail, p.iduser, p.input7
    FROM person p LEFT JOIN client c ON c.clid = p.clid";

fn person_list(ctx: &mut Ctx) -> R {
    let mut wh = vec![ctx.users.visible("p.iduser")];
    if let Some(u) = ctx.user_filter() {
        wh.push(format!("p.iduser = {u}"));
    }
    let mut args: Vec<Sql> = Vec::new();
    if let Some(w) = ctx.str("word") {
        wh.push("(p.person LIKE ? OR p.tel LIKE ? OR p.mob LIKE ? OR p.mail LIKE ?)".into());
        for _ in 0..4 {
            args.push(like(&w));
        }
    }
    if let Some(Value::Object(f)) = ctx.p.get("filter") {
        for (k, v) in f {
            if PERSON_KNOWN.contains(&k.as_str()) {
                wh.push(format!("p.{k} = ?"));
                args.push(match v {
                    Value::Number(_) => Sql::Integer(value_int(Some(v)).unwrap_or(0)),
                    _ => Sql::Text(value_str(Some(v), ",").unwrap_or_default()),
                });
            }
        }
    }
    // Raw string BETWEEN on date_create, as the real server does (NOTES §6).
    match (ctx.str("dateStart"), ctx.str("dateEnd")) {
        (Some(s), Some(e)) => {
            wh.push("p.date_create BETWEEN ? AND ?".into());
            args.extend([Sql::Text(s), Sql::Text(e)]);
        }
        (Some(s), None) => {
            wh.push("p.date_create > ?".into());
            args.push(Sql::Text(s));
        }
        (None, Some(e)) => {
            wh.push("p.date_create < ?".into());
            args.push(Sql::Text(e));
        }
        (None, None) => {}
    }
    let order = ctx
        .str("order")
        .filter(|o| PERSON_KNOWN.contains(&o.as_str()))
        .unwrap_or_else(|| "date_create".into());
    let dir = if ctx.str("first").as_deref() == Some("old") {
        "ASC"
    } else {
        "DESC"
    };
    let where_sql = wh.join(" AND ");
    // Ids in order once per query and data version, then the page's rows by id (client
    // titles joined for those 200 rows only).
    let ids = ordered_ids(
        ctx,
        &format!(
            "SELECT p.pid FROM person p WHERE {where_sql} ORDER BY p.{order} {dir}, p.pid {dir}"
        ),
        &args,
    )?;
    let total = ids.len() as i64;
    let mut found = rows_by_id(ctx.conn, PERSON_SELECT, "p.pid", "pid", page_of(ctx, &ids))?;
    let known = known_with_extras(&PERSON_KNOWN, ctx);
    let fields =
        requested_fields(ctx.p).unwrap_or_else(|| known.iter().map(|s| s.to_string()).collect());
    let take = distinct(&fields);
    for r in &mut found {
        let pid = r["pid"].as_i64().unwrap_or(0);
        with_extras(ctx, Entity::Person, pid, r)?;
    }
    let data: Vec<Value> = found
        .into_iter()
        .map(|mut r| {
            let mut extra = Map::new();
            extra.insert("client".into(), r["client"].take());
            extra.insert("user".into(), ctx.user_name(&r["iduser"]));
            pick_from(&mut r, &fields, &known, &extra, take)
        })
        .collect();
    let mut out = Map::new();
    if !data.is_empty() {
        out.insert("data".into(), Value::Array(data));
    }
    out.insert("count".into(), json!(total));
    Ok(Value::Object(out))
}

fn person_info(ctx: &mut Ctx) -> R {
    let pid = ctx.int("pid").unwrap_or(0);
    let found = rows(
        ctx.conn,
        &format!("{PERSON_SELECT} WHERE p.pid = ?"),
        &[Sql::Integer(pid)],
    )?;
    // A record with an empty name counts as not found: an object of nulls, not an error.
    let row = found
        .into_iter()
        .find(|r| r["person"].as_str().is_some_and(|s| !s.is_empty()));
    let mut row = row;
    if let Some(r) = &mut row {
        let pid = r["pid"].as_i64().unwrap_or(0);
        with_extras(ctx, Entity::Person, pid, r)?;
    }
    let known = known_with_extras(&PERSON_KNOWN, ctx);
    let mut full = Map::new();
    for f in known.iter().copied() {
        let v = match &row {
            Some(r) if f == "iduser" => ctx.user_name(&r["iduser"]),
            Some(r) => r[f].clone(),
            None if f == "iduser" => json!(""),
            None => Value::Null,
        };
        full.insert(f.to_string(), v);
    }
    let mut extra = Map::new();
    extra.insert(
        "client".into(),
        row.as_ref()
            .map(|r| r["client"].clone())
            .unwrap_or(json!("")),
    );
    let fields =
        requested_fields(ctx.p).unwrap_or_else(|| known.iter().map(|s| s.to_string()).collect());
    let mut data = pick(&full, &fields, &known, &extra);
    // info reports the owner as a login under `iduser` and has no separate `user` key.
    if let Value::Object(m) = &mut data {
        m.shift_remove("user");
        if ctx.str("socinfo").as_deref() == Some("yes") {
            let socials: Map<String, Value> = [
                "blog", "mysite", "twitter", "icq", "skype", "google", "yandex", "mykrug",
            ]
            .iter()
            .map(|k| (k.to_string(), Value::Null))
            .collect();
            m.insert("socials".into(), Value::Object(socials));
        }
    }
    Ok(json!({ "data": data }))
}

fn person_update(ctx: &mut Ctx) -> R {
    let Some(pid) = ctx.int("pid").filter(|&p| p > 0) else {
        return Ok(error(405, "Отсутствуют параметры - pid контакта"));
    };
    // A FULL replace: omitted fields are blanked and the owner is reset unless `iduser` is
    // numeric (NOTES §5). This is the real server's data-loss hazard, kept on purpose.
    let mut vals = match person_values(ctx.p) {
        Ok(v) => v,
        Err(e) => return Ok(e),
    };
    for v in &mut vals {
        if v.is_none() {
            *v = Some(String::new());
        }
    }
    let iduser = match ctx.p.get("iduser") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    let clid = ctx.int("clid");
    ctx.conn.execute(
        "UPDATE person SET person = ?1, ptitle = ?2, tel = ?3, fax = ?4, mob = ?5, mail = ?6,
         input7 = ?7, iduser = ?8, clid = COALESCE(?9, clid), date_edit = ?10 WHERE pid = ?11",
        rusqlite::params![
            vals[0],
            vals[1],
            vals[2],
            vals[3],
            vals[4],
            vals[5],
            vals[6],
            iduser,
            clid,
            now(),
            pid
        ],
    )?;
    ctx.fields
        .store(ctx.conn, Entity::Person, pid, ctx.p, true)?;
    Ok(json!({"result": "Данные контакта обновлены", "data": pid, "error": ""}))
}

fn person_delete(ctx: &mut Ctx) -> R {
    let Some(pid) = ctx.int("pid").filter(|&p| p > 0) else {
        return Ok(error(405, "Отсутствуют параметры - pid контакта"));
    };
    let tx = ctx.conn.transaction()?;
    tx.execute("DELETE FROM person WHERE pid = ?1", [pid])?;
    // As the real Person::delete: history and tasks whose only link was this person go; those
    // also linked to a client or deal stay, with the pid cleared (NOTES §14). The message counts
    // both, as the real one does.
    let h = tx.execute(
        "DELETE FROM history WHERE pid = ?1 AND clid < 1 AND did < 1",
        [pid],
    )? + tx.execute("UPDATE history SET pid = 0 WHERE pid = ?1", [pid])?;
    let t = tx.execute(
        "DELETE FROM task WHERE pid = ?1 AND clid < 1 AND did < 1",
        [pid],
    )? + tx.execute("UPDATE task SET pid = 0 WHERE pid = ?1", [pid])?;
    tx.commit()?;
    Ok(json!({
        "message": format!("Успешно: Контакт удален. Также удалено {h} записи истории активностей. Удалено {t} записей напоминаний. Удалено 0 файлов.\n\t\t\t"),
        "result": "Клиент удален",
        "data": pid
    }))
}

// ---------------------------------------------------------------- client

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

fn client(ctx: &mut Ctx, a: &str) -> R {
    match a {
        "fields" => Ok(ctx.fields.answer(Entity::Client)),
        "list" => client_list(ctx),
        "info" => {
            let clid = ctx.int("clid").unwrap_or(0);
            let want = |k: &str| {
                matches!(ctx.p.get(k), Some(Value::Bool(true)))
                    || ctx
                        .str(k)
                        .as_deref()
                        .is_some_and(|v| v == "yes" || v == "1")
            };
            let (contacts, bank, uids) = (want("contacts"), want("bankinfo"), want("uids"));
            match client_info_obj(ctx.conn, ctx.login, clid, contacts, bank, uids)? {
                // Owned by nobody (an unknown `user` login on add): out of the API user's reach.
                Some(Value::Object(d)) if ctx.users.get(&d["iduser"]).is_none() => Ok(error(
                    403,
                    "Клиент не найден в пределах аккаунта указанного пользователя.",
                )),
                Some(Value::Object(mut d)) => {
                    with_extras(ctx, Entity::Client, clid, &mut d)?;
                    Ok(json!({ "data": d }))
                }
                Some(d) => Ok(json!({ "data": d })),
                None => Ok(error(
                    403,
                    "Клиент не найден в пределах аккаунта указанного пользователя.",
                )),
            }
        }
        "add" => {
            let row = ctx.p.clone();
            let tx = ctx.conn.transaction()?;
            let r = client_insert(&tx, ctx.users, &row, ctx.fields)?;
            tx.commit()?;
            Ok(r)
        }
        "add.list" => {
            let rows_in = batch_rows(ctx.p, "client");
            let tx = ctx.conn.transaction()?;
            let mut out = Vec::with_capacity(rows_in.len());
            for r in &rows_in {
                let row = r.as_object().cloned().unwrap_or_default();
                out.push(client_insert(&tx, ctx.users, &row, ctx.fields)?);
            }
            tx.commit()?;
            Ok(Value::Array(out))
        }
        "update" => {
            let Some(clid) = ctx.int("clid").filter(|&c| c > 0) else {
                return Ok(error(405, "Отсутствуют параметры - clid клиента"));
            };
            if !exists(ctx.conn, "client", "clid", clid)? {
                return Ok(error(403, "Клиент не найден"));
            }
            for f in [
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
            ] {
                if let Some(v) = value_str(ctx.p.get(f), ",") {
                    set_column(ctx.conn, "client", "clid", clid, f, clean_field(&v))?;
                }
            }
            if let Some(t) = ctx.str("title") {
                ctx.conn.execute(
                    "UPDATE client SET title = ?1 WHERE clid = ?2",
                    rusqlite::params![normalize_title(&t), clid],
                )?;
            }
            ctx.conn.execute(
                "UPDATE client SET date_edit = ?1 WHERE clid = ?2",
                rusqlite::params![now(), clid],
            )?;
            ctx.fields
                .store(ctx.conn, Entity::Client, clid, ctx.p, false)?;
            Ok(json!({"result": "Успешно", "data": clid}))
        }
        "delete" => {
            let Some(clid) = ctx.int("clid").filter(|&c| c > 0) else {
                return Ok(error(405, "Отсутствуют параметры - clid клиента"));
            };
            if ctx
                .conn
                .execute("DELETE FROM client WHERE clid = ?1", [clid])?
                == 0
            {
                return Ok(error(403, "Клиент не найден"));
            }
            Ok(json!({"result": "Успешно", "data": clid}))
        }
        _ => unknown(402, "Неизвестный метод"),
    }
}

fn client_insert(conn: &Connection, users: &Users, row: &Params, set: &FieldSet) -> R {
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
    Ok(json!({"result": "Успешно", "data": clid}))
}

fn client_list(ctx: &mut Ctx) -> R {
    // The real server dies with an HTML fatal error without a valid `order` (its default sort
    // column does not exist); we answer a JSON error instead (README, "The sandbox").
    let Some(order) = ctx
        .str("order")
        .filter(|o| CLIENT_LIST.contains(&o.as_str()))
    else {
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
    let where_sql = wh.join(" AND ");
    // The real server sorts DESC whatever `first` says.
    let ids = ordered_ids(
        ctx,
        &format!("SELECT clid FROM client WHERE {where_sql} ORDER BY {order} DESC, clid ASC"),
        &args,
    )?;
    let total = ids.len() as i64;
    let mut found = rows_by_id(
        ctx.conn,
        "SELECT * FROM client",
        "clid",
        "clid",
        page_of(ctx, &ids),
    )?;
    let known = known_with_extras(&CLIENT_LIST, ctx);
    let fields =
        requested_fields(ctx.p).unwrap_or_else(|| known.iter().map(|s| s.to_string()).collect());
    let take = distinct(&fields);
    for r in &mut found {
        let clid = r["clid"].as_i64().unwrap_or(0);
        with_extras(ctx, Entity::Client, clid, r)?;
    }
    let data: Vec<Value> = found
        .into_iter()
        .map(|mut r| {
            let mut extra = Map::new();
            extra.insert("user".into(), ctx.user_name(&r["iduser"]));
            pick_from(&mut r, &fields, &known, &extra, take)
        })
        .collect();
    Ok(list_envelope(data, ctx, &order, "DESC", total))
}

fn list_envelope(data: Vec<Value>, ctx: &Ctx, ord: &str, tuda: &str, total: i64) -> Value {
    json!({
        "data": data,
        "params": {
            "page": ctx.int("offset").unwrap_or(0).max(0) + 1,
            "pageall": (total + PAGE - 1) / PAGE,
            "ord": ord,
            "tuda": tuda,
            "count": total
        },
        "count": total
    })
}

fn client_info_obj(
    conn: &Connection,
    login: &str,
    clid: i64,
    contacts: bool,
    bank: bool,
    uids: bool,
) -> rusqlite::Result<Option<Value>> {
    let Some(r) = rows(
        conn,
        "SELECT * FROM client WHERE clid = ?",
        &[Sql::Integer(clid)],
    )?
    .into_iter()
    .next() else {
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
        m.insert("bankinfo".into(), Value::Object(b));
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

/// A client inside deal/info: the info object without `dostup`, with `bankinfo` and the same
/// requisites again under `recv`.
fn embedded_client(conn: &Connection, login: &str, clid: i64) -> R {
    let Some(mut v) = client_info_obj(conn, login, clid, false, true, false)? else {
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

// ---------------------------------------------------------------- history

fn history(ctx: &mut Ctx, a: &str) -> R {
    match a {
        "fields" => Ok(ctx.fields.answer(Entity::History)),
        "tips" => Ok(dict(dicts::HISTORY_TIPS)),
        "list" => history_list(ctx),
        "info" => {
            let Some(cid) = ctx.int("cid").filter(|&c| c > 0) else {
                return Ok(error(405, "Отсутствуют параметры - cid записи"));
            };
            let found = rows(
                ctx.conn,
                &format!("{HISTORY_SELECT} WHERE h.cid = ?"),
                &[Sql::Integer(cid)],
            )?;
            let Some(r) = found.into_iter().next() else {
                return Ok(error(
                    "403",
                    "Не найдено в пределах аккаунта указанного пользователя.",
                ));
            };
            let mut d = history_row(ctx, &r, false);
            if let Value::Object(m) = &mut d {
                let did = m.shift_remove("did").unwrap_or(json!(0));
                let dog = m.shift_remove("dogovor").unwrap_or(json!(""));
                m.insert(
                    "person".into(),
                    json!([{"pid": r["pid"], "person": r["pname"]}]),
                );
                m.insert("did".into(), did);
                m.insert("dogovor".into(), dog);
            }
            Ok(json!({ "data": d }))
        }
        "add" => {
            if ctx.str("content").is_none() {
                return Ok(error(405, "Отсутствуют параметры"));
            }
            if ["clid", "pid", "did"]
                .iter()
                .all(|k| ctx.int(k).unwrap_or(0) == 0)
            {
                return Ok(error(405, "Отсутствуют параметры"));
            }
            let row = ctx.p.clone();
            let tx = ctx.conn.transaction()?;
            let r = match history_insert(&tx, ctx.users, &row, Some("Событие"), ctx.fields)?
            {
                Ok(cid) => json!({"result": "Успешно", "data": cid}),
                Err(e) => json!({"result": "Error", "error": e}),
            };
            tx.commit()?;
            Ok(r)
        }
        "add.list" => {
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
                    history_insert(&tx, ctx.users, &row, None, ctx.fields)?
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
        "update" => {
            let Some(cid) = ctx.int("cid").filter(|&c| c > 0) else {
                return Ok(error(405, "Отсутствуют параметры - cid записи"));
            };
            if !exists(ctx.conn, "history", "cid", cid)? {
                return Ok(error(403, "Запись не найдена."));
            }
            if let Some(c) = ctx.str("content") {
                ctx.conn.execute(
                    "UPDATE history SET des = ?1 WHERE cid = ?2",
                    rusqlite::params![clean_content(&c), cid],
                )?;
            }
            if let Some(t) = ctx.str("tip") {
                ctx.conn.execute(
                    "UPDATE history SET tip = ?1 WHERE cid = ?2",
                    rusqlite::params![t, cid],
                )?;
            }
            if ctx.p.contains_key("datum") {
                match parse_datetime(ctx.p.get("datum")) {
                    Ok(d) if in_timestamp_range(&d) => {
                        ctx.conn.execute(
                            "UPDATE history SET datum = ?1 WHERE cid = ?2",
                            rusqlite::params![d, cid],
                        )?;
                    }
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
            Ok(json!({"result": "Успешно", "data": cid}))
        }
        "delete" => {
            let Some(cid) = ctx.int("cid").filter(|&c| c > 0) else {
                return Ok(error(405, "Отсутствуют параметры - cid записи"));
            };
            if ctx
                .conn
                .execute("DELETE FROM history WHERE cid = ?1", [cid])?
                == 0
            {
                return Ok(error(403, "Запись не найдена."));
            }
            Ok(json!({"result": "Успешно"}))
        }
        _ => unknown(404, "Не понимаю чЁ происходит. Может в следующий раз?"),
    }
}

/// pid may come as a number, a numeric string or an array of them ("ID контакта (массив)").
fn first_int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Array(a)) => value_int(a.first()).unwrap_or(0),
        other => value_int(other).unwrap_or(0),
    }
}

/// Inner `Ok(Err(error_object))`: the row is rejected the way MySQL strict mode rejects it.
fn history_insert(
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

const HISTORY_SELECT: &str = "SELECT h.cid, h.datum, h.des, h.tip, h.iduser, h.clid, h.pid, h.did,
    COALESCE(c.title, '') AS client, COALESCE(d.title, '') AS dogovor, p.person AS pname
    FROM history h LEFT JOIN client c ON c.clid = h.clid LEFT JOIN deal d ON d.did = h.did
    LEFT JOIN person p ON p.pid = h.pid";

fn history_row(ctx: &Ctx, r: &Params, list: bool) -> Value {
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
                    out.insert("person".into(), json!([{"pid": pid, "person": r["pname"]}]));
                }
                out.insert(k, v);
            }
            row = Value::Object(out);
        }
    }
    row
}

/// Date window for history/task lists: no dates = today only, start only = start..today.
fn date_window(ctx: &Ctx) -> (String, String) {
    let start = filter_date(ctx.p.get("dateStart"));
    let end = filter_date(ctx.p.get("dateEnd"));
    (start.unwrap_or_else(today), end.unwrap_or_else(today))
}

fn history_list(ctx: &mut Ctx) -> R {
    let (start, end) = date_window(ctx);
    let mut wh = vec!["substr(h.datum, 1, 10) BETWEEN ? AND ?".to_string()];
    let mut args = vec![Sql::Text(start), Sql::Text(end)];
    if let Some(w) = ctx.str("word") {
        wh.push("h.des LIKE ?".into());
        args.push(like(&w));
    }
    if let Some(t) = ctx.str("tip") {
        wh.push("h.tip = ?".into());
        args.push(Sql::Text(t));
    }
    for k in ["clid", "pid", "did"] {
        if let Some(v) = ctx.int(k).filter(|&v| v > 0) {
            wh.push(format!("h.{k} = {v}"));
        }
    }
    if let Some(u) = ctx.user_filter() {
        wh.push(format!("h.iduser = {u}"));
    }
    let order = ctx
        .str("order")
        .filter(|o| ["cid", "datum", "tip", "clid", "pid", "did"].contains(&o.as_str()))
        .unwrap_or_else(|| "datum".into());
    let dir = if ctx.str("first").as_deref() == Some("old") {
        "ASC"
    } else {
        "DESC"
    };
    let ids = ordered_ids(
        ctx,
        &format!(
            "SELECT h.cid FROM history h WHERE {} ORDER BY h.{order} {dir}, h.cid ASC",
            wh.join(" AND ")
        ),
        &args,
    )?;
    let found = rows_by_id(ctx.conn, HISTORY_SELECT, "h.cid", "cid", page_of(ctx, &ids))?;
    if found.is_empty() {
        return Ok(json!([]));
    }
    let data: Vec<Value> = found.iter().map(|r| history_row(ctx, r, true)).collect();
    Ok(json!({ "data": data }))
}

// ---------------------------------------------------------------- task

const TASK_SELECT: &str =
    "SELECT t.*, COALESCE(c.title, '') AS client, COALESCE(d.title, '') AS dogovor,
    p.person AS pname FROM task t LEFT JOIN client c ON c.clid = t.clid
    LEFT JOIN deal d ON d.did = t.did LEFT JOIN person p ON p.pid = t.pid";

fn task_row(ctx: &Ctx, r: &Params) -> Value {
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

fn task(ctx: &mut Ctx, a: &str) -> R {
    match a {
        "fields" => Ok(ctx.fields.answer(Entity::Task)),
        "tips" => Ok(dict(dicts::TASK_TIPS)),
        "list" => {
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
            if let Some(t) = ctx.str("tip") {
                wh.push("t.tip = ?".into());
                args.push(Sql::Text(t));
            }
            for k in ["clid", "pid", "did"] {
                if let Some(v) = ctx.int(k).filter(|&v| v > 0) {
                    wh.push(format!("t.{k} = {v}"));
                }
            }
            if let Some(u) = ctx.user_filter() {
                wh.push(format!("t.iduser = {u}"));
            }
            let ids = ordered_ids(
                ctx,
                &format!(
                    "SELECT t.tid FROM task t WHERE {} ORDER BY t.datum DESC, t.totime DESC, t.tid ASC",
                    wh.join(" AND ")
                ),
                &args,
            )?;
            let found = rows_by_id(ctx.conn, TASK_SELECT, "t.tid", "tid", page_of(ctx, &ids))?;
            if found.is_empty() {
                return Ok(json!([]));
            }
            let data: Vec<Value> = found.iter().map(|r| task_row(ctx, r)).collect();
            Ok(json!({ "data": data }))
        }
        "info" => {
            let Some(id) = ctx.int("id").filter(|&i| i > 0) else {
                return Ok(error(405, "Отсутствуют параметры - id напоминания"));
            };
            let Some(r) = rows(
                ctx.conn,
                &format!("{TASK_SELECT} WHERE t.tid = ?"),
                &[Sql::Integer(id)],
            )?
            .into_iter()
            .next() else {
                return Ok(error(403, "Напоминание не найдено"));
            };
            let mut d = task_row(ctx, &r);
            if let Value::Object(m) = &mut d {
                let tail: Vec<(String, Value)> = ["did", "dogovor", "readonly", "day", "status"]
                    .iter()
                    .filter_map(|k| m.shift_remove(*k).map(|v| (k.to_string(), v)))
                    .collect();
                m.insert(
                    "person".into(),
                    json!([{"pid": r["pid"], "person": r["pname"]}]),
                );
                m.extend(tail);
            }
            Ok(json!({ "data": d }))
        }
        "add" => {
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
            Ok(json!({"result": "Успешно", "data": tid}))
        }
        "update" | "doit" => {
            let Some(id) = ctx.int("id").or(ctx.int("tid")).filter(|&i| i > 0) else {
                return Ok(error(405, "Отсутствуют параметры - id напоминания"));
            };
            if !exists(ctx.conn, "task", "tid", id)? {
                return Ok(error(403, "Напоминание не найдено"));
            }
            if a == "doit" {
                ctx.conn.execute(
                    "UPDATE task SET active = 'no', status = 1 WHERE tid = ?1",
                    [id],
                )?;
            }
            for f in ["title", "des", "tip", "totime", "active"] {
                if let Some(v) = ctx.str(f) {
                    set_column(ctx.conn, "task", "tid", id, f, clean_field(&v))?;
                }
            }
            for f in ["priority", "speed", "status", "clid", "pid", "did"] {
                if let Some(v) = ctx.int(f) {
                    set_column(ctx.conn, "task", "tid", id, f, v)?;
                }
            }
            if ctx.p.contains_key("datum") {
                match parse_date(ctx.p.get("datum")) {
                    Ok(d) => {
                        ctx.conn.execute(
                            "UPDATE task SET datum = ?1 WHERE tid = ?2",
                            rusqlite::params![d, id],
                        )?;
                    }
                    Err(raw) => return Ok(error(500, &datetime_error(&raw, "app_tasks", "datum"))),
                }
            }
            Ok(json!({"result": "Успешно", "data": id}))
        }
        "delete" => {
            let Some(id) = ctx.int("id").or(ctx.int("tid")).filter(|&i| i > 0) else {
                return Ok(error(405, "Отсутствуют параметры - id напоминания"));
            };
            if ctx.conn.execute("DELETE FROM task WHERE tid = ?1", [id])? == 0 {
                return Ok(error(403, "Напоминание не найдено"));
            }
            Ok(json!({"result": "Успешно", "data": id}))
        }
        _ => unknown(404, "Неизвестный метод"),
    }
}

// ---------------------------------------------------------------- deal

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
fn step_of(percent: i64) -> Option<(i64, i64, &'static str)> {
    STEPS.iter().copied().find(|s| s.1 == percent)
}

/// A deal without a step (idcategory 0): none given, or one that is not a step's title —
/// the step id (11) or an unknown title (NOTES §11, v3-deal-add-step-as-idcategory).
const NO_STEP: i64 = -1;

/// The stored step of a `step` parameter: the title as a string or number.
fn step_param(v: Option<&Value>) -> i64 {
    value_str(v, "")
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(step_of)
        .map_or(NO_STEP, |s| s.1)
}

const DEAL_SELECT: &str = "SELECT d.*, COALESCE(c.title, '') AS client_title,
    COALESCE(pc.title, '') AS payer_title FROM deal d LEFT JOIN client c ON c.clid = d.clid
    LEFT JOIN client pc ON pc.clid = d.payer";

const DEAL_ORDER: [&str; 6] = ["did", "datum", "title", "kol", "datum_plan", "clid"];

fn deal(ctx: &mut Ctx, a: &str) -> R {
    match a {
        "fields" => Ok(ctx.fields.answer(Entity::Deal)),
        "steplist" => Ok(dict(dicts::DEAL_STEPLIST)),
        "statusclose" => {
            // `filter` ("win"/"lose") keeps the statuses of that result.
            let mut all = dict(dicts::DEAL_STATUSCLOSE);
            if let (Some(f), Some(Value::Array(rows))) = (ctx.str("filter"), all.get_mut("data")) {
                rows.retain(|r| r["result"] == f.as_str());
            }
            Ok(all)
        }
        "type" => Ok(dict(dicts::DEAL_TYPES)),
        "direction" => Ok(dict(dicts::DEAL_DIRECTIONS)),
        "list" => {
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
            if let Some(v) = ctx.int("clid").filter(|&v| v > 0) {
                wh.push(format!("d.clid = {v}"));
            }
            if let Some(u) = ctx.user_filter() {
                wh.push(format!("d.iduser = {u}"));
            }
            let order = ctx
                .str("order")
                .filter(|o| DEAL_ORDER.contains(&o.as_str()))
                .unwrap_or_else(|| "datum".into());
            // Unlike client/list, deal/list honours `first=old` (tuda ASC in
            // v3-deal-list-active-yes-order-did-old).
            let dir = if ctx.str("first").as_deref() == Some("old") {
                "ASC"
            } else {
                "DESC"
            };
            let where_sql = wh.join(" AND ");
            let ids = ordered_ids(
                ctx,
                &format!(
                    "SELECT d.did FROM deal d WHERE {where_sql} ORDER BY d.{order} {dir}, d.did {dir}"
                ),
                &args,
            )?;
            let total = ids.len() as i64;
            let found = rows_by_id(ctx.conn, DEAL_SELECT, "d.did", "did", page_of(ctx, &ids))?;
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
                        "tipID": 6, "tip": "Продажа быстрая", "directionID": 1, "direction": "Основное",
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
        "info" => {
            let (sql, arg) = match (ctx.int("did").filter(|&d| d > 0), ctx.str("uid")) {
                (Some(did), _) => ("d.did = ?", Sql::Integer(did)),
                (None, Some(uid)) => ("d.uid = ?", Sql::Text(uid)),
                (None, None) => return Ok(error(405, "Отсутствуют параметры - did сделки")),
            };
            let Some(r) = rows(ctx.conn, &format!("{DEAL_SELECT} WHERE {sql}"), &[arg])?
                .into_iter()
                .next()
            else {
                return Ok(error(403, "Сделка не найдена"));
            };
            // deal/list still shows a deal owned by nobody; deal/info does not (NOTES §11).
            if ctx.users.get(&r["iduser"]).is_none() {
                return Ok(error(
                    403,
                    "Сделка не найдена в пределах аккаунта указанного пользователя.",
                ));
            }
            let (sid, pct, _) =
                step_of(r["step"].as_i64().unwrap_or(NO_STEP)).unwrap_or((0, 0, ""));
            let want = |k: &str| {
                matches!(ctx.p.get(k), Some(Value::Bool(true)))
                    || ctx
                        .str(k)
                        .as_deref()
                        .is_some_and(|v| v == "yes" || v == "1")
            };
            // uid, datum and clid come back null from deal/info on the real server (NOTES §6).
            let mut m = Map::new();
            for (k, v) in [
                ("did", r["did"].clone()),
                ("uid", Value::Null),
                ("datum", Value::Null),
                ("datum_izm", Value::Null),
                ("clid", Value::Null),
                ("title", r["title"].clone()),
                ("mcid", json!(0)),
                ("iduser", r["iduser"].clone()),
                ("user", ctx.user_name(&r["iduser"])),
                ("userUID", ctx.users.uid_of(ctx.conn, &r["iduser"])),
                ("datum_plan", r["datum_plan"].clone()),
                ("step", json!(sid)),
                ("stepID", json!(sid)),
                ("stepTitle", json!(pct)),
                ("tipID", json!(6)),
                ("tip", json!("Продажа быстрая")),
                ("directionID", json!(1)),
                ("direction", json!("Основное")),
            ] {
                m.insert(k.into(), v);
            }
            if want("payer") {
                let payer = r["payer"].as_i64().unwrap_or(0);
                let obj = embedded_client(ctx.conn, ctx.login, payer)?;
                m.insert("payer".into(), obj);
            }
            for (k, v) in [
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
            ] {
                m.insert(k.into(), v);
            }
            if want("client") {
                let clid = r["clid"].as_i64().unwrap_or(0);
                let obj = embedded_client(ctx.conn, ctx.login, clid)?;
                m.insert("client".into(), obj);
            }
            if want("speka") {
                m.insert("speka".into(), json!([]));
            }
            let did = r["did"].as_i64().unwrap_or(0);
            with_extras(ctx, Entity::Deal, did, &mut m)?;
            Ok(json!({ "data": m }))
        }
        "add" => {
            let clid = ctx.int("clid").unwrap_or(0);
            let payer = ctx.int("payer").filter(|&p| p > 0).unwrap_or(clid);
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
            let kol = ctx
                .str("kol")
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0);
            let marga = ctx
                .str("marga")
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0);
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
            tx.execute(
                "UPDATE deal SET title = ?1 WHERE did = ?2",
                rusqlite::params![format!("СД{}: {title}", number + 1), did],
            )?;
            ctx.fields.store(&tx, Entity::Deal, did, ctx.p, false)?;
            tx.commit()?;
            ctx.deal_counter.store(number + 1, SeqCst);
            Ok(json!({"result": "Успешно", "data": did}))
        }
        "update" => {
            let Some(did) = ctx.int("did").filter(|&d| d > 0) else {
                return Ok(error(405, "Отсутствуют параметры - did сделки"));
            };
            if !exists(ctx.conn, "deal", "did", did)? {
                return Ok(error(403, "Сделка не найдена"));
            }
            for f in [
                "title",
                "uid",
                "content",
                "close",
                "des_fact",
                "status_close",
            ] {
                if let Some(v) = ctx.str(f) {
                    set_column(ctx.conn, "deal", "did", did, f, clean_field(&v))?;
                }
            }
            for f in ["kol", "marga", "kol_fact"] {
                if let Some(v) = ctx.str(f).and_then(|s| s.parse::<f64>().ok()) {
                    set_column(ctx.conn, "deal", "did", did, f, v)?;
                }
            }
            if ctx.p.contains_key("step") {
                ctx.conn.execute(
                    "UPDATE deal SET step = ?1 WHERE did = ?2",
                    rusqlite::params![step_param(ctx.p.get("step")), did],
                )?;
            }
            ctx.conn.execute(
                "UPDATE deal SET datum_izm = ?1 WHERE did = ?2",
                rusqlite::params![today(), did],
            )?;
            ctx.fields
                .store(ctx.conn, Entity::Deal, did, ctx.p, false)?;
            Ok(json!({"result": "Успешно", "data": did}))
        }
        "delete" => {
            let Some(did) = ctx.int("did").filter(|&d| d > 0) else {
                return Ok(error(405, "Отсутствуют параметры - did сделки"));
            };
            if ctx.conn.execute("DELETE FROM deal WHERE did = ?1", [did])? == 0 {
                return Ok(error(403, "Сделка не найдена"));
            }
            Ok(json!({"result": "Успешно", "data": did}))
        }
        _ => unknown(402, "Неизвестный метод"),
    }
}
