//! Actions as fields (issue 12): in `upsert`/`update` mode a matched record's changed fields are
//! split into plain fields (sent with `ENTITY/update`, see `change`) and fields the CRM only
//! changes through an action of its own (NOTES §11, §13):
//!
//! - deal `step` → `deal/change.step {did, step}` (the step's title, checked against `steplist`
//!   per row by `template::dictionaries`: an unknown title would clear the step);
//! - deal `status_close` (or `close = "yes"`) with `kol_fact`, `des_fact`, `datum_close` →
//!   `deal/close` once, only while the CRM's deal is open (a second close is refused by the
//!   server; a closed deal whose close fields differ is reported "already closed", never closed
//!   again). A close needs a status: without one the server closes with no status;
//! - deal `user` (login) → `deal/change.user`; person and client owners go as the numeric
//!   `iduser` in the update (person/update ignores `user`, NOTES §5); a task's owner cannot be
//!   changed (task/update gives every task it touches to the API user);
//! - task `active = "no"` → `task/doit`, only while the CRM's task is open.
//!
//! Actions are not all idempotent (doit adds a history row per call, a second close is refused,
//! the same step again is 302), so each one is journaled (`actions` table, state `sent`) before
//! it is sent; after a lost answer — in this run or an earlier one — the record is read back
//! (`info`) to see whether the action took effect before it is sent again.
//!
//! A payment (`upload::payment`) is the same kind of action: `invoice/do` on the invoice row it
//! pays, journaled here like the others and read back (`invoice/info`: paid flag) after a lost
//! answer, never resent blindly.

use super::journal::{State, Update};
use super::{change, Ctx, UploadError};
use crate::crm::{v1, ContractApi, CrmError, Entity, RetryClass};
use crate::values::{value_text, CrmDateTime};
use rusqlite::{params, OptionalExtension};
use serde_json::{Map, Value};
use std::collections::HashMap;

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS actions (
        entity TEXT NOT NULL,
        key    TEXT NOT NULL,
        action TEXT NOT NULL,
        crm_id INTEGER NOT NULL,
        state  TEXT NOT NULL,
        body   TEXT NOT NULL,
        error  TEXT,
        PRIMARY KEY (entity, key, action)
    );";

/// Deal fields written by `deal/close` only.
const CLOSE_FIELDS: [&str; 5] = [
    "close",
    "status_close",
    "kol_fact",
    "des_fact",
    "datum_close",
];

/// One action of the CRM a changed field asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ChangeUser,
    ChangeStep,
    Close,
    Doit,
    /// `invoice/do`: pay an invoice row (a payment record).
    Pay,
}

impl Kind {
    /// The API action (`ENTITY/ACTION`).
    pub fn action(self) -> &'static str {
        match self {
            Kind::ChangeUser => "change.user",
            Kind::ChangeStep => "change.step",
            Kind::Close => "close",
            Kind::Doit => "doit",
            Kind::Pay => "do",
        }
    }
}

/// An action to send: its body (id included) and what the CRM shows once it took effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub kind: Kind,
    pub body: Map<String, Value>,
    /// `info` field (a `.`-path) and the text it holds once the action took effect.
    effect: (&'static str, String),
    /// What the v1 form of the action needs beyond `body` (see `crm::v1::action`): for a
    /// payment the invoice `number`, `full`, the payment `date` and the row's deal `did`.
    /// Not journaled: a resumed payment is decided afresh.
    pub v1: Map<String, Value>,
}

impl Action {
    /// Pay `summa` on the unpaid invoice row `crid`; once done the row reads paid (`do` = on).
    pub fn pay(crid: i64, summa: crate::values::Money) -> Action {
        let mut body = Map::new();
        body.insert("id".into(), Value::from(crid));
        // Plain, two decimals: the server reads "2 000,00" as 2.00 (NOTES §12).
        body.insert("summa".into(), Value::from(summa.fixed2(false)));
        Action {
            kind: Kind::Pay,
            body,
            effect: ("do", "on".into()),
            v1: Map::new(),
        }
    }

    /// The same payment as an older server takes it (v1 `addpaiment` / `addpaimentpart`).
    pub fn for_v1(mut self, number: &str, full: bool, date: &str, did: i64) -> Action {
        self.v1.insert("number".into(), Value::from(number));
        self.v1.insert("full".into(), Value::Bool(full));
        if !date.is_empty() {
            self.v1.insert("date".into(), Value::from(date));
        }
        if did > 0 {
            self.v1.insert("did".into(), Value::from(did));
        }
        self
    }
}

/// Whether the server takes this action in its v1 form (an older server: no v3 invoice
/// actions, no deal change.step/close; `CrmClient::contract_api` probes once per run).
async fn via_v1(ctx: &Ctx, kind: Kind) -> Result<bool, CrmError> {
    if !matches!(kind, Kind::ChangeStep | Kind::Close | Kind::Pay) {
        return Ok(false);
    }
    Ok(ctx.client.contract_api(&ctx.opts.lookup_retry).await? == ContractApi::V1)
}

/// Send an action once, v3 or (on an older server) its v1 form.
async fn send_once(ctx: &Ctx, entity: Entity, a: &Action) -> Result<Value, CrmError> {
    if via_v1(ctx, a.kind).await? {
        let Some((name, params)) = v1::action(a.kind.action(), &a.body, &a.v1) else {
            return Err(CrmError::Setup(format!(
                "{} has no v1 form",
                a.kind.action()
            )));
        };
        return ctx.client.call_v1("contract", name, &params).await;
    }
    ctx.client
        .call(
            entity.api_entity(),
            a.kind.action(),
            &Value::Object(a.body.clone()),
        )
        .await
}

/// Create an invoice: v3 `invoice/add`, or v1 `addinvoice` on an older server (its error
/// answers are the record's failure, as invoice/add's are).
pub(super) async fn add_invoice(
    ctx: &Ctx,
    payload: &Map<String, Value>,
) -> Result<crate::crm::ItemOutcome, CrmError> {
    if ctx.client.contract_api(&ctx.opts.lookup_retry).await? == ContractApi::V3 {
        return ctx.client.add(Entity::Invoice, payload).await;
    }
    match ctx
        .client
        .call_v1("contract", "addinvoice", &v1::add_invoice(payload))
        .await
    {
        Ok(answer) => Ok(v1::added_invoice(&answer)),
        Err(CrmError::Api { code, text, .. }) => Ok(crate::crm::ItemOutcome::Failed {
            code: Some(code),
            text,
        }),
        Err(e) => Err(e),
    }
}

/// What a matched record needs: the update of its plain fields (if any differ), then actions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub update: Option<Map<String, Value>>,
    pub actions: Vec<Action>,
}

/// A field's trimmed text, `None` when absent or blank.
pub(super) fn text(fields: &Map<String, Value>, field: &str) -> Option<String> {
    fields
        .get(field)
        .map(value_text)
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

fn is_closed(current: &Map<String, Value>) -> bool {
    current.get("close").map(value_text).as_deref() == Some("yes")
}

/// `yes`/`no` of a flag field, or the message naming the value the user wrote.
fn flag(entity: Entity, field: &str, value: &str, meaning: &str) -> Result<bool, change::Unsafe> {
    match value.to_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(change::Unsafe(format!(
            "{entity} field '{field}' is '{value}': it takes \"yes\" or \"no\" ({meaning}); map the file's words to them, e.g. map = {{ \"Да\" = \"yes\", \"Нет\" = \"no\" }}"
        ))),
    }
}

/// Does this record ask for the deal to be closed?
fn wants_close(fields: &Map<String, Value>) -> Result<bool, change::Unsafe> {
    match text(fields, "close") {
        Some(c) => flag(Entity::Deal, "close", &c, "\"yes\" closes the deal"),
        None => Ok(text(fields, "status_close").is_some()),
    }
}

/// Whether `field` is compared with the CRM's value at all (`change::diff`): a closed deal's
/// step is the close's business (deal/close moves it to the last step), and the close details
/// of a deal that stays open are not written by anything.
pub(super) fn compares(
    entity: Entity,
    field: &str,
    fields: &Map<String, Value>,
    current: &Map<String, Value>,
) -> bool {
    if entity != Entity::Deal {
        return true;
    }
    match field {
        "step" => !is_closed(current),
        "kol_fact" | "des_fact" | "datum_close" => {
            is_closed(current) || wants_close(fields).unwrap_or(true)
        }
        _ => true,
    }
}

/// Split a matched record's payload (references resolved) into the update and the actions the
/// changed fields ask for. `owners` maps logins to CRM user ids (`user/list`).
pub fn plan(
    entity: Entity,
    crm_id: i64,
    mut payload: Map<String, Value>,
    current: Option<&Map<String, Value>>,
    owners: &HashMap<String, i64>,
) -> Result<Plan, change::Unsafe> {
    let empty = Map::new();
    let cur = current.unwrap_or(&empty);
    let changed: Vec<String> = change::diff(entity, &payload, current)
        .into_iter()
        .map(|(f, _, _)| f)
        .collect();
    let is = |f: &str| changed.iter().any(|c| c == f);
    let mut actions = Vec::new();
    let id = Value::from(crm_id);
    match entity {
        Entity::Deal => {
            let owner = payload.remove("user");
            let step = payload.remove("step");
            let close: Map<String, Value> = CLOSE_FIELDS
                .iter()
                .filter_map(|f| payload.remove(*f).map(|v| (f.to_string(), v)))
                .collect();
            if let Some(login) = owner.as_ref().map(value_text).filter(|_| is("user")) {
                let mut body = Map::new();
                body.insert("did".into(), id.clone());
                body.insert("user".into(), Value::from(login.trim()));
                actions.push(Action {
                    kind: Kind::ChangeUser,
                    body,
                    effect: ("user", login.trim().to_string()),
                    v1: Map::new(),
                });
            }
            if let Some(step) = step.as_ref().map(value_text).filter(|_| is("step")) {
                let mut body = Map::new();
                body.insert("did".into(), id.clone());
                body.insert("step".into(), Value::from(step.trim()));
                actions.push(Action {
                    kind: Kind::ChangeStep,
                    body,
                    effect: ("stepTitle", step.trim().to_string()),
                    v1: Map::new(),
                });
            }
            let close_changed = CLOSE_FIELDS.iter().any(|f| is(f));
            let wanted = wants_close(&close)?;
            if is_closed(cur) && close_changed {
                let status = cur.get("status_close").map(value_text).unwrap_or_default();
                let day = cur.get("datum_close").map(value_text).unwrap_or_default();
                if close.get("close").map(value_text).as_deref() == Some("no") {
                    return Err(change::Unsafe(format!(
                        "the deal is closed in the CRM (status '{status}', {day}); the API cannot re-open a deal, so nothing was sent"
                    )));
                }
                return Err(change::Unsafe(format!(
                    "already closed: the CRM closed this deal with status '{status}' on {day}; a deal is closed once, so its close fields were not sent again"
                )));
            }
            if wanted && !is_closed(cur) {
                let Some(status) = text(&close, "status_close") else {
                    return Err(change::Unsafe(
                        "close = \"yes\" without status_close: the CRM would close the deal with no status; map status_close to a status of deal/statusclose".into(),
                    ));
                };
                let mut body = Map::new();
                body.insert("did".into(), id.clone());
                body.insert("status_close".into(), Value::from(status));
                for f in ["kol_fact", "des_fact"] {
                    if let Some(v) = close.get(f).filter(|v| !v.is_null()) {
                        body.insert(f.into(), v.clone());
                    }
                }
                if let Some(d) = text(&close, "datum_close") {
                    // deal/close reads Y-m-d only: "29.11.2026" is stored as 0000-00-00.
                    let Some(day) = CrmDateTime::parse(&d).and_then(CrmDateTime::date) else {
                        return Err(change::Unsafe(format!(
                            "deal field 'datum_close' is '{d}', not a date: deal/close would store 0000-00-00, so the deal was not closed"
                        )));
                    };
                    body.insert(
                        "datum".into(),
                        Value::from(day.format("%Y-%m-%d").to_string()),
                    );
                }
                actions.push(Action {
                    kind: Kind::Close,
                    body,
                    effect: ("close.close", "yes".into()),
                    v1: Map::new(),
                });
            }
        }
        Entity::Task => {
            if let Some(active) = payload.remove("active").map(|v| value_text(&v)) {
                let open = flag(
                    entity,
                    "active",
                    active.trim(),
                    "\"no\" marks the task done",
                )?;
                let crm_open = cur.get("active").map(value_text).as_deref() != Some("no");
                if is("active") && open && !crm_open {
                    return Err(change::Unsafe(
                        "the task is done in the CRM and the API cannot re-open it (active = \"yes\" not sent)".into(),
                    ));
                }
                if is("active") && !open && crm_open {
                    let mut body = Map::new();
                    body.insert("id".into(), id.clone());
                    actions.push(Action {
                        kind: Kind::Doit,
                        body,
                        effect: ("active", "no".into()),
                        v1: Map::new(),
                    });
                }
            }
            if payload.remove("user").is_some() && is("user") {
                return Err(change::Unsafe(
                    "the API cannot change a task's owner (task/update gives every task it touches to the API user, NOTES §11): not sent".into(),
                ));
            }
        }
        Entity::Invoice if !changed.is_empty() => {
            return Err(change::Unsafe(format!(
                "the CRM's invoice differs in {} but the API has no invoice update: not changed (edit it in the CRM)",
                changed.join(", ")
            )));
        }
        Entity::Person | Entity::Client => {
            // person/update ignores a login: the owner goes as its numeric id (NOTES §5).
            if let Some(login) = payload.remove("user").map(|v| value_text(&v)) {
                if is("user") {
                    let Some(uid) = owners.get(login.trim()) else {
                        return Err(change::Unsafe(format!(
                            "owner '{login}' is not a user of this CRM (user/list): not sent"
                        )));
                    };
                    payload.insert("iduser".into(), Value::from(*uid));
                }
            }
        }
        _ => {}
    }
    let plain_changed = changed.iter().any(|f| !is_action_field(entity, f));
    let update = if plain_changed {
        Some(change::update_payload(entity, crm_id, &payload, current)?)
    } else {
        None
    };
    Ok(Plan { update, actions })
}

fn is_action_field(entity: Entity, field: &str) -> bool {
    match entity {
        Entity::Deal => field == "user" || field == "step" || CLOSE_FIELDS.contains(&field),
        Entity::Task => field == "active" || field == "user",
        _ => false,
    }
}

/// Send what a matched record needs: the update, then its actions in order. The record is
/// `updated` when anything changed, `unchanged` when the CRM already held it all, `failed` (with
/// the action and the server's answer) when a step failed — the steps after it are not sent.
pub(super) async fn send(
    ctx: &Ctx,
    entity: Entity,
    key: &str,
    crm_id: i64,
    plan: Plan,
) -> Result<Update, UploadError> {
    let mut up = Update {
        entity,
        key: key.to_string(),
        state: State::Unchanged,
        crm_id: Some(crm_id),
        error: None,
        resolved: false,
    };
    if let Some(body) = plan.update {
        let u = change::send_update(ctx, entity, key, crm_id, body).await?;
        if u.state != State::Unchanged {
            up = u;
        }
        if up.state == State::Failed {
            return Ok(up);
        }
    }
    for a in &plan.actions {
        match run_action(ctx, entity, key, crm_id, a).await? {
            Done::Applied { resolved } => {
                up.state = State::Updated;
                up.resolved |= resolved;
            }
            Done::Already => {}
            Done::Failed(why) => {
                up.state = State::Failed;
                up.error = Some(why);
                return Ok(up);
            }
            Done::Unknown(why) => {
                up.state = State::Ambiguous;
                up.error = Some(why);
                return Ok(up);
            }
        }
    }
    Ok(up)
}

/// How one action ended.
pub(super) enum Done {
    /// Took effect (`resolved`: its answer was lost and the read-back found it done).
    Applied {
        resolved: bool,
    },
    /// The CRM already held it (the same step again: 302).
    Already,
    Failed(String),
    /// The answer was lost and reading the record back failed: checked again next run.
    Unknown(String),
}

fn put_state(
    ctx: &Ctx,
    entity: Entity,
    key: &str,
    a: &Action,
    crm_id: i64,
    state: &str,
    error: Option<&str>,
) -> Result<(), UploadError> {
    let body = Value::Object(a.body.clone()).to_string();
    ctx.journal_lock().write_with(|tx| {
        tx.execute(
            "INSERT OR REPLACE INTO actions (entity, key, action, crm_id, state, body, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                entity.as_str(),
                key,
                a.kind.action(),
                crm_id,
                state,
                body,
                error
            ],
        )
        .map(|_| ())
    })
}

/// The journaled action of this record of `kind`, whatever record of the CRM it went to: its
/// CRM id and state (a payment's row is chosen anew each run, so the id is not known before).
pub(super) fn journaled_any(
    ctx: &Ctx,
    entity: Entity,
    key: &str,
    kind: Kind,
) -> Result<Option<(i64, String)>, UploadError> {
    let journal = ctx.journal_lock();
    journal
        .conn
        .query_row(
            "SELECT crm_id, state FROM actions WHERE entity = ?1 AND key = ?2 AND action = ?3",
            params![entity.as_str(), key, kind.action()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(|e| UploadError::journal(journal.path(), e))
}

/// CRM ids that `kind` actions of `entity` were sent to or took effect on (any record).
pub(super) fn acted_on(
    ctx: &Ctx,
    entity: Entity,
    kind: Kind,
) -> Result<Vec<(String, i64)>, UploadError> {
    let journal = ctx.journal_lock();
    let read = || -> rusqlite::Result<Vec<(String, i64)>> {
        let mut st = journal.conn.prepare(
            "SELECT key, crm_id FROM actions WHERE entity = ?1 AND action = ?2 AND state IN ('sent', 'done')",
        )?;
        let rows = st.query_map(params![entity.as_str(), kind.action()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        rows.collect()
    };
    read().map_err(|e| UploadError::journal(journal.path(), e))
}

/// The journaled state of an action of this record, if one was journaled.
fn journaled(
    ctx: &Ctx,
    entity: Entity,
    key: &str,
    a: &Action,
    crm_id: i64,
) -> Result<Option<String>, UploadError> {
    let journal = ctx.journal_lock();
    journal
        .conn
        .query_row(
            "SELECT state FROM actions WHERE entity = ?1 AND key = ?2 AND action = ?3 AND crm_id = ?4",
            params![entity.as_str(), key, a.kind.action(), crm_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| UploadError::journal(journal.path(), e))
}

/// Read the record back: has the action taken effect? `Err` when it cannot be read.
pub(super) async fn took_effect(
    ctx: &Ctx,
    entity: Entity,
    crm_id: i64,
    a: &Action,
) -> Result<bool, CrmError> {
    if a.kind == Kind::Pay && via_v1(ctx, a.kind).await? {
        // No invoice/info on an older server: the row among its deal's invoices (v1 info), or
        // among all invoices when the deal is not known (an earlier run's payment).
        let rows = match a.v1.get("did").and_then(Value::as_i64) {
            Some(did) => {
                ctx.client
                    .v1_deal_invoices(did, &ctx.opts.lookup_retry)
                    .await?
            }
            None => {
                ctx.client
                    .v1_all_invoices(&ctx.opts.lookup_retry, |r| {
                        r.get("crid").and_then(Value::as_i64) == Some(crm_id)
                    })
                    .await?
            }
        };
        return Ok(rows.iter().any(|r| {
            r.get("crid").and_then(Value::as_i64) == Some(crm_id)
                && r.get("do") == Some(&Value::Bool(true))
        }));
    }
    let info = ctx
        .client
        .info(entity.api_entity(), crm_id, &[], &ctx.opts.lookup_retry)
        .await?;
    let data = info.get("data").unwrap_or(&info);
    let (path, want) = &a.effect;
    let got = path
        .split('.')
        .try_fold(data, |v, k| v.get(k))
        .map(value_text)
        .unwrap_or_default();
    Ok(got.trim() == want)
}

/// Send one action, journaled before it goes; after a lost answer the record is read back
/// before anything is sent again.
pub(super) async fn run_action(
    ctx: &Ctx,
    entity: Entity,
    key: &str,
    crm_id: i64,
    a: &Action,
) -> Result<Done, UploadError> {
    let action = format!("{}/{}", entity.api_entity(), a.kind.action());
    // An earlier run sent it and never heard back: look first.
    let mut look_first = journaled(ctx, entity, key, a, crm_id)?.as_deref() == Some("sent");
    let mut tries = ctx.opts.retry.tries();
    loop {
        if look_first {
            match took_effect(ctx, entity, crm_id, a).await {
                Ok(true) => {
                    put_state(ctx, entity, key, a, crm_id, "done", None)?;
                    return Ok(Done::Applied { resolved: true });
                }
                Ok(false) => {}
                Err(e) if e.is_fatal() => return Err(UploadError::Fatal(e)),
                Err(e) => {
                    return Ok(Done::Unknown(format!(
                        "{action}: the answer was lost and reading the {entity} back failed ({e}); run again: it is checked before it is sent again"
                    )))
                }
            }
        }
        tries.begin();
        put_state(ctx, entity, key, a, crm_id, "sent", None)?;
        let started = std::time::Instant::now();
        let result = ctx.observed(send_once(ctx, entity, a)).await;
        match result {
            Ok(_) => {
                put_state(ctx, entity, key, a, crm_id, "done", None)?;
                return Ok(Done::Applied { resolved: false });
            }
            Err(CrmError::Api { code, .. }) if a.kind == Kind::ChangeStep && code == "302" => {
                put_state(ctx, entity, key, a, crm_id, "done", None)?;
                return Ok(Done::Already);
            }
            Err(e) if e.is_fatal() => {
                put_state(ctx, entity, key, a, crm_id, "pending", None)?;
                return Err(UploadError::Fatal(e));
            }
            Err(e) if e.retry_class() == RetryClass::Stop => {
                let why = format!("{action}: {e}");
                put_state(ctx, entity, key, a, crm_id, "failed", Some(&why))?;
                return Ok(Done::Failed(why));
            }
            Err(e) => {
                let since = tries.failed(started);
                look_first = e.may_have_applied();
                if !look_first {
                    put_state(ctx, entity, key, a, crm_id, "pending", None)?;
                }
                if tries.exhausted() {
                    if e.is_server_trouble() {
                        return Err(UploadError::Unreachable {
                            seconds: since.as_secs().max(1),
                            source: e,
                        });
                    }
                    return Ok(Done::Unknown(format!(
                        "{action}: gave up after {} attempts ({e}); run again: it is checked before it is sent again",
                        tries.attempt()
                    )));
                }
                tries.back_off().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn open_deal() -> Map<String, Value> {
        map(
            json!({"did": 7, "title": "СД7: Поставка", "step": 20, "close": "no",
                   "status_close": false, "user": "admin@x", "kol": "100.00", "pid": 3}),
        )
    }

    #[test]
    fn a_deal_step_owner_and_close_become_actions_not_an_update() {
        let owners = HashMap::new();
        let p = plan(
            Entity::Deal,
            7,
            map(json!({"title": "Поставка", "step": "60", "user": "m2@x",
                       "status_close": "Победа полная", "kol_fact": 90.5,
                       "datum_close": "2026-11-28"})),
            Some(&open_deal()),
            &owners,
        )
        .unwrap();
        assert_eq!(p.update, None, "no plain field differs");
        let kinds: Vec<Kind> = p.actions.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [Kind::ChangeUser, Kind::ChangeStep, Kind::Close]);
        assert_eq!(
            Value::Object(p.actions[2].body.clone()),
            json!({"did": 7, "status_close": "Победа полная", "kol_fact": 90.5,
                   "datum": "2026-11-28"})
        );
        assert_eq!(p.actions[1].body["step"], "60");
    }

    #[test]
    fn a_closed_deal_is_never_closed_again_and_a_close_needs_a_status() {
        let owners = HashMap::new();
        let mut closed = open_deal();
        closed.insert("close".into(), json!("yes"));
        closed.insert("status_close".into(), json!("Победа полная"));
        closed.insert("step".into(), json!(100));
        // The same close again, and the step the file had before the close: nothing to do.
        let same = plan(
            Entity::Deal,
            7,
            map(json!({"step": "60", "status_close": "Победа полная"})),
            Some(&closed),
            &owners,
        )
        .unwrap();
        assert!(same.actions.is_empty());
        let other = plan(
            Entity::Deal,
            7,
            map(json!({"status_close": "Проигрыш по цене"})),
            Some(&closed),
            &owners,
        );
        assert!(other.unwrap_err().0.starts_with("already closed"));
        let no_status = plan(
            Entity::Deal,
            7,
            map(json!({"close": "yes"})),
            Some(&open_deal()),
            &owners,
        );
        assert!(no_status.unwrap_err().0.contains("no status"));
        let bad_day = plan(
            Entity::Deal,
            7,
            map(json!({"status_close": "Победа полная", "datum_close": "завтра"})),
            Some(&open_deal()),
            &owners,
        );
        assert!(bad_day.unwrap_err().0.contains("'завтра'"));
    }

    #[test]
    fn task_done_is_doit_once_and_owners_go_where_the_api_takes_them() {
        let owners = HashMap::from([("m2@x".to_string(), 2)]);
        let open =
            map(json!({"tid": "5", "title": "Позвонить", "active": "yes", "user": "admin@x"}));
        let p = plan(
            Entity::Task,
            5,
            map(json!({"active": "no"})),
            Some(&open),
            &owners,
        )
        .unwrap();
        assert_eq!((p.update, p.actions[0].kind), (None, Kind::Doit));
        let mut done = open.clone();
        done.insert("active".into(), json!("no"));
        let again = plan(
            Entity::Task,
            5,
            map(json!({"active": "no"})),
            Some(&done),
            &owners,
        );
        assert!(
            again.unwrap().actions.is_empty(),
            "a done task is not done again"
        );
        let bad = plan(
            Entity::Task,
            5,
            map(json!({"active": "Выполнено"})),
            Some(&open),
            &owners,
        );
        assert!(bad.unwrap_err().0.contains("'Выполнено'"));
        let owner = plan(
            Entity::Task,
            5,
            map(json!({"user": "m2@x"})),
            Some(&open),
            &owners,
        );
        assert!(owner.unwrap_err().0.contains("owner"));
        let person = map(json!({"pid": 4, "person": "Пётр", "iduser": 1, "user": "admin@x"}));
        let p = plan(
            Entity::Person,
            4,
            map(json!({"user": "m2@x"})),
            Some(&person),
            &owners,
        )
        .unwrap();
        let body = p.update.unwrap();
        assert_eq!((body["iduser"].clone(), body.get("user")), (json!(2), None));
    }
}
