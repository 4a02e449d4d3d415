//! Per-entity actions, answering with the exact shapes the real server uses (see the fixtures).
//!
//! A request's (entity, action) is parsed once into a typed [`Action`]; an action the entity
//! does not have gets that entity's recorded answer. Each entity lives in its own file; what
//! they share (paging, the list and info answer shapes, SQL rows as JSON, id checks and deletes)
//! is written once here.

use super::api::{error, AppState, Call, Reply};
use super::fields::FieldSet;
use super::store::{data_version, IdCache};
use super::text::{filter_date, today, value_int, value_str};
use super::users::Users;
use crate::crm::Entity;
use rusqlite::types::Value as Sql;
use rusqlite::Connection;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::sync::{Arc, Mutex};

/// Define an entity's action enum: its variants with the action names the API uses, and the
/// answer (an expression) the real server gives for an action the entity does not have.
macro_rules! actions {
    ($(#[$doc:meta])* $name:ident, unknown = $unknown:expr; $($variant:ident = $text:literal),+ $(,)?) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(super) enum $name { $($variant),+ }
        impl $name {
            /// The action a request names (path segment or `action` parameter), or the answer
            /// for an action this entity does not have.
            pub(super) fn parse(action: &str) -> Result<Self, Value> {
                match action {
                    $($text => Ok(Self::$variant),)+
                    _ => Err($unknown),
                }
            }
        }
    };
}

/// The value of a `Result<T, Value>`, or return its error as the action's answer.
macro_rules! or_answer {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(answer) => return Ok(answer),
        }
    };
}

mod client;
mod contract_v1;
mod deal;
mod deal_change;
mod history;
mod invoice;
mod person;
mod task;
mod user;

use client::ClientAction;
use deal::DealAction;
use history::HistoryAction;
use invoice::InvoiceAction;
use person::PersonAction;
use task::TaskAction;
use user::UserAction;

pub(super) type Params = Map<String, Value>;

/// Fixed page size of every list (NOTES §6); `offset` is a page number.
pub const PAGE: i64 = 200;

/// One request: the API user (id 1, the configured login) and the CRM's users.
pub(super) struct Ctx<'a> {
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
    /// A positive id under `k`.
    fn id(&self, k: &str) -> Option<i64> {
        self.int(k).filter(|&v| v > 0)
    }
    /// A yes/no option of info (`true`, "yes" or "1").
    fn flag(&self, k: &str) -> bool {
        matches!(self.p.get(k), Some(Value::Bool(true)))
            || self
                .str(k)
                .as_deref()
                .is_some_and(|v| v == "yes" || v == "1")
    }
    /// The `order` column of a list, when it is one of `allowed` (ours, safe in SQL).
    fn order(&self, allowed: &[&str]) -> Option<String> {
        self.str("order").filter(|o| allowed.contains(&o.as_str()))
    }
    /// Sort direction of lists that honour `first=old`.
    fn dir(&self) -> &'static str {
        if self.str("first").as_deref() == Some("old") {
            "ASC"
        } else {
            "DESC"
        }
    }
    fn page_offset(&self) -> i64 {
        self.int("offset").unwrap_or(0).max(0).saturating_mul(PAGE)
    }
    fn user_filter(&self) -> Option<i64> {
        self.str("user").map(|u| self.users.filter_id(&u))
    }
}

type R = rusqlite::Result<Value>;

// ---------------------------------------------------------------- dispatch

/// What a request asks of which entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Person(PersonAction),
    Client(ClientAction),
    History(HistoryAction),
    Task(TaskAction),
    Deal(DealAction),
    Invoice(InvoiceAction),
    User(UserAction),
}

impl Action {
    /// The action of a request, or the answer the real server gives when the entity has no such
    /// action. v2 knows person/list and person/add.list only.
    fn parse(version: u8, entity: &str, action: &str) -> Result<Action, Value> {
        if entity == "user" {
            return UserAction::parse(action).map(Action::User);
        }
        if version == 2 {
            return match (entity, PersonAction::parse(action)) {
                ("person", Ok(a @ (PersonAction::List | PersonAction::AddList))) => {
                    Ok(Action::Person(a))
                }
                _ => Err(json!({"error": {"code": 402, "text": "Неизвестный метод"}})),
            };
        }
        match entity {
            "person" => PersonAction::parse(action).map(Action::Person),
            "client" => ClientAction::parse(action).map(Action::Client),
            "history" => HistoryAction::parse(action).map(Action::History),
            "task" => TaskAction::parse(action).map(Action::Task),
            "invoice" => InvoiceAction::parse(action).map(Action::Invoice),
            _ => DealAction::parse(action).map(Action::Deal),
        }
    }

    fn entity(self) -> Option<Entity> {
        Some(match self {
            Action::Person(_) => Entity::Person,
            Action::Client(_) => Entity::Client,
            Action::History(_) => Entity::History,
            Action::Task(_) => Entity::Task,
            Action::Deal(_) => Entity::Deal,
            Action::Invoice(_) => Entity::Invoice,
            Action::User(_) => return None,
        })
    }

    /// The kind of write, for the records the request carries.
    fn write(self) -> Option<Write> {
        use Write::*;
        match self {
            Action::Person(PersonAction::Add)
            | Action::Client(ClientAction::Add)
            | Action::History(HistoryAction::Add)
            | Action::Task(TaskAction::Add)
            | Action::Deal(DealAction::Add) => Some(Add),
            Action::Person(PersonAction::AddList)
            | Action::Client(ClientAction::AddList)
            | Action::History(HistoryAction::AddList) => Some(AddList),
            Action::Person(PersonAction::Update)
            | Action::Client(ClientAction::Update)
            | Action::History(HistoryAction::Update)
            | Action::Task(TaskAction::Update)
            | Action::Deal(DealAction::Update) => Some(Update),
            Action::Task(TaskAction::Doit) => Some(Doit),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Write {
    Add,
    AddList,
    Update,
    Doit,
}

fn db_error(e: rusqlite::Error) -> Reply {
    // Store failures are our bugs or a broken disk; answer like the real server's DB errors.
    Reply::Json(error(500, &format!("Ошибка базы данных sandbox: {e}")))
}

pub fn dispatch(state: &AppState, call: Call) -> Reply {
    if call.version == 1 {
        return dispatch_v1(state, call);
    }
    if state.no_v3_invoices && call.version == 3 {
        // An older server: no invoice methods (the include fails: an empty answer, like
        // v3-error-unknown-method) and no deal change.step/close (v3-error-unknown-action-deal).
        if call.entity == "invoice" {
            return Reply::Empty;
        }
        if call.entity == "deal" && matches!(call.action.as_str(), "change.step" | "close") {
            return Reply::Json(error(402, "Неизвестный метод"));
        }
    }
    if call.login.as_deref() != Some(state.login.as_str())
        || call.apikey.as_deref() != Some(state.apikey.as_str())
    {
        return Reply::Json(error(401, "Неизвестный пользователь"));
    }
    let action = Action::parse(call.version, &call.entity, &call.action);
    if let Some(page) = action.as_ref().ok().and_then(|&a| fatal(state, &call, a)) {
        return Reply::Fatal(page);
    }
    let mut conn = state.store.lock();
    let users = match Users::load(&conn) {
        Ok(u) => u,
        Err(e) => return db_error(e),
    };
    let action = match action {
        Ok(Action::User(a)) => {
            return user::handle(&conn, a, &call.params).map_or_else(db_error, Reply::Json)
        }
        Ok(a) => a,
        Err(answer) => return Reply::Json(answer),
    };
    let Some(entity) = action.entity() else {
        return Reply::Json(json!([]));
    };
    let fields = match FieldSet::load(&conn, entity) {
        Ok(f) => f,
        Err(e) => return db_error(e),
    };
    // Disabled fields are dropped from every write, as the real server drops them (NOTES §4).
    let params = if action.write().is_some() {
        without_disabled(&call.params, &fields, entity.batch_key())
    } else {
        Cow::Borrowed(&call.params)
    };
    if let Some(page) = task::unknown_owner(&users, action, &params) {
        return Reply::Fatal(page);
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
    let result = match action {
        Action::Person(a) => person::handle(&mut ctx, a),
        Action::Client(a) => client::handle(&mut ctx, a),
        Action::History(a) => history::handle(&mut ctx, a),
        Action::Task(a) => task::handle(&mut ctx, a),
        // Deal changes without a did can answer a PHP fatal page.
        Action::Deal(a) => return deal::handle(&mut ctx, a).unwrap_or_else(db_error),
        // Invoices can answer a PHP fatal page that depends on the data (no specification).
        Action::Invoice(a) => return invoice::handle(&mut ctx, a).unwrap_or_else(db_error),
        Action::User(_) => Ok(json!([])),
    };
    result.map_or_else(db_error, Reply::Json)
}

/// `GET /developer/v1/contract?…`: the v1 contract actions ([`contract_v1`]).
fn dispatch_v1(state: &AppState, call: Call) -> Reply {
    let key_ok = call.apikey.as_deref() == Some(state.apikey.as_str());
    if !key_ok || call.login.as_deref() != Some(state.login.as_str()) {
        return contract_v1::auth_error(key_ok);
    }
    let mut conn = state.store.lock();
    let users = match Users::load(&conn) {
        Ok(u) => u,
        Err(e) => return db_error(e),
    };
    let fields = match FieldSet::load(&conn, Entity::Deal) {
        Ok(f) => f,
        Err(e) => return db_error(e),
    };
    let mut ctx = Ctx {
        conn: &mut conn,
        login: &state.login,
        users: &users,
        p: &call.params,
        ids: &state.store.ids,
        fields: &fields,
        deal_counter: &state.deal_number,
        deal_number: None,
    };
    contract_v1::handle(&mut ctx, &call.action).map_or_else(db_error, Reply::Json)
}

/// Writes the real server dies on with a PHP fatal (HTML page, HTTP 200) before storing
/// anything of the request: a `recv` that is not an object (for add.list the whole batch is
/// lost, NOTES §15), an array deal `kol` (NOTES, Deals), and the `set_fatal_on` test value.
fn fatal(state: &AppState, call: &Call, action: Action) -> Option<String> {
    let write = action.write().filter(|&w| w != Write::Doit)?;
    let entity = action.entity()?;
    if call.version != 3 {
        return None;
    }
    let single = Value::Object(call.params.clone());
    let rows: Vec<&Value> = match write {
        Write::AddList => match entity.batch_key().and_then(|k| call.params.get(k)) {
            Some(Value::Array(a)) => a.iter().collect(),
            _ => vec![],
        },
        _ => vec![&single],
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
            let class = match entity {
                Entity::Client => "Client",
                Entity::Person => "Person",
                Entity::History => "History",
                Entity::Task => "Todo",
                Entity::Deal => "Deal",
                Entity::Invoice | Entity::Payment => "Invoice",
            };
            return Some(super::faults::value_type_error(class));
        }
    }
    match action {
        Action::Client(ClientAction::Add | ClientAction::AddList) => {
            client::recv_fatal(&rows, write == Write::Add)
        }
        Action::Deal(DealAction::Add) => deal::kol_fatal(&rows),
        _ => None,
    }
}

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

// ---------------------------------------------------------------- answer shapes

/// What most writes answer: `{"result": "Успешно", "data": id}`.
fn done(id: i64) -> Value {
    json!({"result": "Успешно", "data": id})
}

/// An info answer: the record under `data`.
fn info(d: impl Into<Value>) -> Value {
    json!({ "data": d.into() })
}

/// history/list and task/list: the page's rows under `data`, or `[]` when there are none.
fn data_or_empty(data: Vec<Value>) -> Value {
    if data.is_empty() {
        json!([])
    } else {
        info(data)
    }
}

/// client/list and deal/list: the page's rows, the paging parameters and the total.
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

/// The contact a history or task row is linked to, as info (and history/list) show it.
fn person_link(pid: &Value, r: &Params) -> Value {
    json!([{"pid": pid, "person": r["pname"]}])
}

fn dict(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

// ---------------------------------------------------------------- rows by id

/// An entity's table as update, delete and info address it: where its rows live and what the
/// API answers for a missing or unknown id.
struct Table {
    name: &'static str,
    /// The id column.
    id: &'static str,
    /// The table's alias in `select` and in list conditions (`p` for person: `p.pid`).
    alias: &'static str,
    /// What lists and info read: the columns (and joined titles) of rows, without `WHERE`.
    select: &'static str,
    /// The request keys that carry the id, the first given one wins.
    params: &'static [&'static str],
    /// The 405 text without an id.
    missing: &'static str,
    /// The 403 text for an id without a row.
    not_found: &'static str,
}

impl Table {
    /// The request's id, or the 405 answer.
    fn id(&self, ctx: &Ctx) -> Result<i64, Value> {
        self.params
            .iter()
            .find_map(|k| ctx.int(k))
            .filter(|&i| i > 0)
            .ok_or_else(|| error(405, self.missing))
    }

    /// The request's id of a row that exists, or the 405 / 403 answer.
    fn existing(&self, ctx: &Ctx) -> rusqlite::Result<Result<i64, Value>> {
        let id = match self.id(ctx) {
            Ok(id) => id,
            Err(e) => return Ok(Err(e)),
        };
        Ok(if exists(ctx.conn, self.name, self.id, id)? {
            Ok(id)
        } else {
            Err(self.not_found())
        })
    }

    fn not_found(&self) -> Value {
        error(403, self.not_found)
    }

    /// Delete the request's row: `answer(id)` when it was there, 405 / 403 otherwise.
    fn delete(&self, ctx: &mut Ctx, answer: impl FnOnce(i64) -> Value) -> R {
        let id = or_answer!(self.id(ctx));
        let sql = format!("DELETE FROM {} WHERE {} = ?1", self.name, self.id);
        Ok(if ctx.conn.execute(&sql, [id])? == 0 {
            self.not_found()
        } else {
            answer(id)
        })
    }

    /// One page of a list: the number of rows matching the conditions `wh` (with `args`; on
    /// the table alias) and the rows of the page `offset` asks for, in `order`. The ids in
    /// order are computed once per query and data version (see [`ordered_ids`]), then the
    /// page's rows are read by id (titles joined for those 200 rows only).
    fn page(
        &self,
        ctx: &Ctx,
        wh: &[String],
        args: &[Sql],
        order: &str,
    ) -> rusqlite::Result<(i64, Vec<Params>)> {
        let (name, id, a) = (self.name, self.id, self.alias);
        let ids_sql = format!(
            "SELECT {a}.{id} FROM {name} {a} WHERE {} ORDER BY {order}",
            wh.join(" AND ")
        );
        let ids = ordered_ids(ctx, &ids_sql, args)?;
        let id_col = format!("{a}.{id}");
        let found = rows_by_id(ctx.conn, self.select, &id_col, id, page_of(ctx, &ids))?;
        Ok((ids.len() as i64, found))
    }

    /// Set one column of one row (`col` is ours, never request data).
    fn set(
        &self,
        conn: &Connection,
        id: i64,
        col: &str,
        value: impl rusqlite::ToSql,
    ) -> rusqlite::Result<()> {
        conn.execute(
            &format!("UPDATE {} SET {col} = ?1 WHERE {} = ?2", self.name, self.id),
            rusqlite::params![value, id],
        )
        .map(|_| ())
    }
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

fn count(conn: &Connection, sql: &str, args: &[Sql]) -> rusqlite::Result<i64> {
    conn.prepare_cached(sql)?
        .query_row(rusqlite::params_from_iter(args.iter()), |r| r.get(0))
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

/// The first row `select … WHERE cond` gives for one argument.
fn row_where(
    conn: &Connection,
    select: &str,
    cond: &str,
    arg: Sql,
) -> rusqlite::Result<Option<Params>> {
    Ok(rows(conn, &format!("{select} WHERE {cond}"), &[arg])?
        .into_iter()
        .next())
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

// ---------------------------------------------------------------- paging

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

/// The filters history/list and task/list share: `tip`, the links (`clid`, `pid`, `did`) and
/// the owner, on the table alias `t`.
fn link_filters(ctx: &Ctx, t: &str, wh: &mut Vec<String>, args: &mut Vec<Sql>) {
    if let Some(tip) = ctx.str("tip") {
        wh.push(format!("{t}.tip = ?"));
        args.push(Sql::Text(tip));
    }
    for k in ["clid", "pid", "did"] {
        if let Some(v) = ctx.id(k) {
            wh.push(format!("{t}.{k} = {v}"));
        }
    }
    if let Some(u) = ctx.user_filter() {
        wh.push(format!("{t}.iduser = {u}"));
    }
}

/// Date window for history/task lists: no dates = today only, start only = start..today.
fn date_window(ctx: &Ctx) -> (String, String) {
    let start = filter_date(ctx.p.get("dateStart"));
    let end = filter_date(ctx.p.get("dateEnd"));
    (start.unwrap_or_else(today), end.unwrap_or_else(today))
}

fn like(s: &str) -> Sql {
    Sql::Text(format!("%{s}%"))
}

// ---------------------------------------------------------------- fields of lists and info

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

/// The fields the request names in `fields`, else every field of `known`.
fn wanted_fields(ctx: &Ctx, known: &[&str]) -> Vec<String> {
    requested_fields(ctx.p).unwrap_or_else(|| known.iter().map(|s| s.to_string()).collect())
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

/// The rows of a person or client list page as the request asks for them: each row with its
/// extra field values, then the fields wanted (the known ones and the extra ones by default)
/// picked with `names(row)` (client title, owner login) in their places, see [`pick_from`].
fn picked_rows(
    ctx: &Ctx,
    entity: Entity,
    known: &[&str],
    key: &str,
    mut found: Vec<Params>,
    names: impl Fn(&mut Params) -> Params,
) -> rusqlite::Result<Vec<Value>> {
    let known = known_with_extras(known, ctx);
    let fields = wanted_fields(ctx, &known);
    let take = distinct(&fields);
    for r in &mut found {
        let id = r[key].as_i64().unwrap_or(0);
        with_extras(ctx, entity, id, r)?;
    }
    Ok(found
        .into_iter()
        .map(|mut r| {
            let extra = names(&mut r);
            pick_from(&mut r, &fields, &known, &extra, take)
        })
        .collect())
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

// ---------------------------------------------------------------- writes

/// Batch rows from an array or (PHP form) an object of rows; anything else = no rows.
fn batch_rows(p: &Params, key: &str) -> Vec<Value> {
    match p.get(key) {
        Some(Value::Array(a)) => a.clone(),
        Some(Value::Object(o)) => o.values().cloned().collect(),
        _ => Vec::new(),
    }
}

/// How person and client store one record and what they answer for it.
type Insert = fn(&Connection, &Users, &Params, &FieldSet) -> R;

/// add: the request's record, in a transaction.
fn add_one(ctx: &mut Ctx, insert: Insert) -> R {
    let tx = ctx.conn.transaction()?;
    let r = insert(&tx, ctx.users, ctx.p, ctx.fields)?;
    tx.commit()?;
    Ok(r)
}

/// add.list: each row of the batch under `key`, answered row by row. One transaction per
/// request: fast, and a crash mid-batch leaves no half batch.
fn add_each(ctx: &mut Ctx, key: &str, insert: Insert) -> R {
    let rows_in = batch_rows(ctx.p, key);
    let tx = ctx.conn.transaction()?;
    let mut out = Vec::with_capacity(rows_in.len());
    for r in &rows_in {
        let row = r.as_object().cloned().unwrap_or_default();
        out.push(insert(&tx, ctx.users, &row, ctx.fields)?);
    }
    tx.commit()?;
    Ok(Value::Array(out))
}

/// pid may come as a number, a numeric string or an array of them ("ID контакта (массив)").
fn first_int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Array(a)) => value_int(a.first()).unwrap_or(0),
        other => value_int(other).unwrap_or(0),
    }
}

#[cfg(test)]
mod testkit;

#[cfg(test)]
mod tests {
    use super::testkit::Crm;
    use super::*;
    use serde_json::json;

    #[test]
    fn actions_parse_into_the_entity_enums_and_unknown_ones_get_the_recorded_answer() {
        assert_eq!(
            Action::parse(3, "person", "add.list"),
            Ok(Action::Person(PersonAction::AddList))
        );
        assert_eq!(
            Action::parse(3, "task", "doit"),
            Ok(Action::Task(TaskAction::Doit))
        );
        assert_eq!(
            Action::parse(3, "deal", "steplist"),
            Ok(Action::Deal(DealAction::Steplist))
        );
        // The recorded unknown-action answers differ per entity (v3-error-unknown-action-*).
        let code = |e: &str| Action::parse(3, e, "nope").unwrap_err()["error"]["code"].clone();
        assert_eq!(code("person"), json!(404));
        assert_eq!(code("client"), json!(402));
        assert_eq!(code("history"), json!(404));
        assert_eq!(code("task"), json!(404));
        assert_eq!(code("deal"), json!(402));
        assert_eq!(
            Action::parse(3, "history", "nope").unwrap_err()["error"]["text"],
            "Не понимаю чЁ происходит. Может в следующий раз?"
        );
        assert_eq!(Action::parse(3, "user", "nosuch"), Err(json!([])));
        // Actions of one entity are unknown to another: person has no steplist.
        assert!(Action::parse(3, "person", "steplist").is_err());
        // v2 knows person/list and person/add.list only, and answers without `result`.
        assert_eq!(
            Action::parse(2, "person", "list"),
            Ok(Action::Person(PersonAction::List))
        );
        assert_eq!(
            Action::parse(2, "person", "add"),
            Err(json!({"error": {"code": 402, "text": "Неизвестный метод"}}))
        );
        assert!(Action::parse(2, "client", "list").is_err());
    }

    #[test]
    fn a_wrong_key_is_refused_before_any_action() {
        let crm = Crm::new();
        let r = crm.with_key("wrong").call("person", "list", json!({}));
        assert_eq!(r["error"]["code"], 401);
        assert_eq!(r["error"]["text"], "Неизвестный пользователь");
    }

    #[test]
    fn lists_page_by_200_and_offset_counts_pages() {
        let crm = Crm::new();
        for i in 0..201 {
            crm.sql(&format!(
                "INSERT INTO person (date_create, person, iduser) VALUES ('2024-01-01 00:00:{:02}', 'П{i}', 1)",
                i % 60
            ));
        }
        let first = crm.call("person", "list", json!({}));
        assert_eq!(first["count"], 201);
        assert_eq!(first["data"].as_array().unwrap().len(), 200);
        let second = crm.call("person", "list", json!({"offset": 1}));
        assert_eq!(second["data"].as_array().unwrap().len(), 1);
        let past = crm.call("person", "list", json!({"offset": 5}));
        assert_eq!(past, json!({"count": 201}), "an empty page has no data key");
    }

    #[test]
    fn disabled_fields_are_dropped_from_writes() {
        let crm = Crm::new();
        crm.fields(&[super::super::FieldSpec {
            entity: Entity::Person,
            name: "mail".into(),
            title: "Почта".into(),
            enabled: false,
        }]);
        let pid = crm.call("person", "add", json!({"person": "Иван", "mail": "i@x.ru"}))["data"]
            .as_i64()
            .unwrap();
        let mail = crm.sql_value(&format!("SELECT mail FROM person WHERE pid = {pid}"));
        assert_eq!(mail, Value::Null);
    }
}
