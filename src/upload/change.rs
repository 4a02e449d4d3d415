//! Updates that blank nothing. The server's `update` actions differ (NOTES §5, §11): person and
//! task updates are full replaces (every field not sent is blanked, a done task re-opened), a
//! deal update zeroes `pid` and `marga` unless they are sent and ignores `kol` without `title`,
//! a client update writes exactly the keys it gets ("" included). So every update is a
//! read-modify-write from the CRM row the match pass read: the CRM's value for every field the
//! template does not map, the template's for the rest, and only for records whose mapped fields
//! differ. An empty cell is not in the record at all (it changes nothing) unless the template
//! says `empty = "clear"`, which sends "".

use super::journal::{State, Update};
use super::{Ctx, UploadError};
use crate::crm::{CrmError, Entity, RetryClass};
use crate::values::{norm_field, strip_deal_number, value_text};
use serde_json::{Map, Value};

/// One field an update changes, for the report's "Changes" sheet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub key: String,
    pub crm_id: i64,
    pub field: String,
    pub before: String,
    pub after: String,
}

/// Fields a record carries that are not the template's to compare (the id fields).
fn is_id_field(entity: Entity, field: &str) -> bool {
    field == entity.id_field()
}

fn compared(entity: Entity, field: &str, text: &str) -> String {
    if field == "title" && entity == Entity::Deal {
        return norm_field(field, strip_deal_number(text));
    }
    if matches!(field, "clid" | "pid" | "did" | "iduser") {
        let t = text.trim();
        return if t == "0" {
            String::new()
        } else {
            t.to_string()
        };
    }
    norm_field(field, text)
}

/// Leaves of an object field (`recv`), as `recv.castInn`, with their text.
fn leaves(name: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                leaves(&format!("{name}.{k}"), x, out);
            }
        }
        other => out.push((name.to_string(), value_text(other))),
    }
}

fn current_text(current: &Map<String, Value>, entity: Entity, field: &str) -> Option<String> {
    if let Some((parent, leaf)) = field.split_once('.') {
        return current.get(parent)?.get(leaf).map(value_text);
    }
    current
        .get(entity.listed_field(field))
        .or_else(|| current.get(field))
        // deal/list shows "no close status" as `false`.
        .map(|v| match v {
            Value::Bool(false) => String::new(),
            v => value_text(v),
        })
}

/// The mapped fields whose value differs from the CRM's: (field, CRM value, new value). A field
/// the CRM row does not show cannot be compared and is left out (it is still sent with an update
/// that happens for another field).
pub fn diff(
    entity: Entity,
    fields: &Map<String, Value>,
    current: Option<&Map<String, Value>>,
) -> Vec<(String, String, String)> {
    let Some(current) = current else {
        return Vec::new();
    };
    let mut flat = Vec::new();
    for (name, v) in fields {
        if !is_id_field(entity, name) {
            leaves(name, v, &mut flat);
        }
    }
    let mut out = Vec::new();
    for (field, after) in flat {
        if !super::actions::compares(entity, &field, fields, current) {
            continue;
        }
        let Some(before) = current_text(current, entity, &field) else {
            continue;
        };
        if compared(entity, &field, &before) != compared(entity, &field, &after) {
            out.push((field, before, after));
        }
    }
    out
}

/// Fields the server fills itself or shows for reading only: never sent back.
pub(crate) const READ_ONLY: &[&str] = &[
    "date_create",
    "date_edit",
    "datum_izm",
    "client",
    "clientTitle",
    "user",
    "userTitle",
    "payerTitle",
    "stepID",
    "stepTitle",
    "tipID",
    "directionID",
    "contractID",
    "contractTitle",
    "contractNumber",
    "contractDate",
    "autorlogin",
    "dogovor",
    "readonly",
    "day",
    "pname",
];

/// Why an update cannot be sent safely (reported as the record's failure, nothing sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsafe(pub String);

/// The body of `ENTITY/update` for a matched record: see the module comment.
pub fn update_payload(
    entity: Entity,
    crm_id: i64,
    fields: &Map<String, Value>,
    current: Option<&Map<String, Value>>,
) -> Result<Map<String, Value>, Unsafe> {
    let empty = Map::new();
    let current = current.unwrap_or(&empty);
    let mut body = Map::new();
    let full_replace = matches!(entity, Entity::Person | Entity::Task);
    if full_replace {
        if current.is_empty() {
            return Err(Unsafe(format!(
                "the CRM's current {entity} could not be read: a {entity} update replaces every field, so it is not sent"
            )));
        }
        for (k, v) in current {
            if !READ_ONLY.contains(&k.as_str()) && !v.is_null() {
                body.insert(k.clone(), v.clone());
            }
        }
    }
    match entity {
        Entity::Person => {
            // Without a numeric owner the server sets it to NULL (NOTES §5).
            match current.get("iduser").and_then(|v| crate::values::value_id(Some(v))) {
                Some(id) => {
                    body.insert("iduser".into(), Value::from(id));
                }
                None => {
                    return Err(Unsafe(
                        "the CRM shows no numeric owner (iduser) for this person: person/update would clear it, so it is not sent".into(),
                    ))
                }
            }
        }
        Entity::Task if current.get("active").and_then(Value::as_str) == Some("no") => {
            return Err(Unsafe(
                "the task is done in the CRM; task/update would re-open it, so it is not sent"
                    .into(),
            ));
        }
        Entity::Deal => {
            // Zeroed unless sent (NOTES §11). Neither deal/list nor deal/info shows the deal's
            // contact (`pid`), so an update that does not send one would clear it unseen.
            if !fields.contains_key("pid") && current.get("pid").is_none_or(Value::is_null) {
                return Err(Unsafe(
                    "deal/update clears the deal's contact person (pid) unless it is sent, and the API does not show it, so the update is not sent: map `pid` in the template (e.g. pid = { ref = \"person\" }) to update deals; step, close and owner changes do not need it".into(),
                ));
            }
            for k in ["pid", "marga"] {
                if let Some(v) = current.get(k).filter(|v| !v.is_null()) {
                    body.insert(k.into(), v.clone());
                }
            }
        }
        _ => {}
    }
    for (k, v) in fields {
        // A value the CRM already holds (after normalisation) goes back as the CRM has it:
        // a deal's title keeps its "СДn: " number.
        let same = current
            .get(entity.listed_field(k))
            .filter(|cur| !cur.is_null() && !v.is_object())
            .filter(|cur| {
                compared(entity, k, &value_text(cur)) == compared(entity, k, &value_text(v))
            });
        body.insert(k.clone(), same.unwrap_or(v).clone());
    }
    if entity == Entity::Deal {
        // deal/update ignores `step` (a step change is deal/change.step) and writes `kol` only
        // together with `title`: the CRM's own title, prefix and all, keeps it as it is.
        body.remove("step");
        if body.contains_key("kol") && !fields.contains_key("title") {
            if let Some(t) = current.get("title").filter(|t| !t.is_null()) {
                body.insert("title".into(), t.clone());
            }
        }
    }
    let id_key = if entity == Entity::Task {
        "id"
    } else {
        entity.id_field()
    };
    body.remove(entity.id_field());
    body.insert(id_key.into(), Value::from(crm_id));
    Ok(body)
}

/// task/update gives every task it touches to the API user, whoever owned it (NOTES §11): a
/// plain update of another user's task is refused (its actions, e.g. `task/doit`, are fine).
pub fn keeps_owner(
    entity: Entity,
    plan: &super::actions::Plan,
    current: Option<&Map<String, Value>>,
    api_login: &str,
) -> Result<(), Unsafe> {
    if entity != Entity::Task || plan.update.is_none() {
        return Ok(());
    }
    let owner = current
        .and_then(|c| c.get("user"))
        .map(value_text)
        .unwrap_or_default();
    if owner.trim().is_empty() || owner.trim().eq_ignore_ascii_case(api_login.trim()) {
        return Ok(());
    }
    Err(Unsafe(format!(
        "the task belongs to {owner}; task/update would give it to the API user ({api_login}), so it is not sent"
    )))
}

/// "Данные корректны, но идентичны имеющимся." (code 302): the record already holds this.
fn is_identical(e: &CrmError) -> bool {
    matches!(e, CrmError::Api { code, text, .. } if code == "302" || text.contains("идентичны"))
}

/// Send one update, retried on passing faults (an update sends the whole wanted state, so a
/// repeat after a lost answer writes the same again). Returns the journal update.
pub(super) async fn send_update(
    ctx: &Ctx,
    entity: Entity,
    key: &str,
    crm_id: i64,
    body: Map<String, Value>,
) -> Result<Update, UploadError> {
    let mut up = Update {
        entity,
        key: key.to_string(),
        state: State::Updated,
        crm_id: Some(crm_id),
        error: None,
        resolved: false,
    };
    let body = Value::Object(body);
    let mut tries = ctx.opts.retry.tries();
    loop {
        tries.begin();
        let started = std::time::Instant::now();
        let result = ctx.observed(ctx.client.call(entity, "update", &body)).await;
        match result {
            Ok(_) => return Ok(up),
            Err(e) if is_identical(&e) => {
                up.state = State::Unchanged;
                return Ok(up);
            }
            Err(e) if e.is_fatal() => return Err(UploadError::Fatal(e)),
            Err(e) if e.retry_class() == RetryClass::Stop => {
                up.state = State::Failed;
                up.error = Some(e.to_string());
                return Ok(up);
            }
            Err(e) => {
                let since = tries.failed(started);
                if tries.exhausted() {
                    if e.is_server_trouble() {
                        return Err(UploadError::Unreachable {
                            seconds: since.as_secs().max(1),
                            source: e,
                        });
                    }
                    up.state = State::Failed;
                    up.error = Some(format!("gave up after {} attempts: {e}", tries.attempt()));
                    return Ok(up);
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

    #[test]
    fn only_fields_that_differ_after_normalisation_are_changes() {
        let crm = map(
            json!({"pid": 4, "person": "Пётр Иванов", "tel": "+7(342)250-50-50",
                             "mail": "p@x.ru", "clid": 1}),
        );
        let same = map(json!({"person": "петр  иванов", "tel": "8 342 250 50 50", "clid": 1}));
        assert!(diff(Entity::Person, &same, Some(&crm)).is_empty());
        let other = map(json!({"person": "Пётр Иванов", "mail": "new@x.ru"}));
        assert_eq!(
            diff(Entity::Person, &other, Some(&crm)),
            [(
                "mail".to_string(),
                "p@x.ru".to_string(),
                "new@x.ru".to_string()
            )]
        );
        // "" (empty = "clear") is a change of a field that has a value.
        let clear = map(json!({"mail": ""}));
        assert_eq!(diff(Entity::Person, &clear, Some(&crm)).len(), 1);
        // The deal number prefix is not a difference.
        let deal = map(json!({"did": 2, "title": "СД2: Поставка", "kol": 100000}));
        let same_deal = map(json!({"title": "Поставка", "kol": "100000.00"}));
        assert!(diff(Entity::Deal, &same_deal, Some(&deal)).is_empty());
    }

    #[test]
    fn a_person_update_keeps_every_field_the_template_does_not_map() {
        let crm = map(
            json!({"pid": 4, "person": "Пётр", "tel": "111", "mail": "p@x.ru",
                             "ptitle": "Директор", "iduser": 3, "user": "m@x", "clid": 1,
                             "date_create": "2026-01-01 10:00:00", "input7": null}),
        );
        let body = update_payload(
            Entity::Person,
            4,
            &map(json!({"mail": "n@x.ru"})),
            Some(&crm),
        )
        .unwrap();
        assert_eq!(body["mail"], "n@x.ru");
        assert_eq!(body["tel"], "111");
        assert_eq!(body["ptitle"], "Директор");
        assert_eq!(body["iduser"], 3);
        assert_eq!(body["pid"], 4);
        assert!(!body.contains_key("date_create") && !body.contains_key("user"));
        // Without the CRM's current record a full replace would blank it: refused.
        assert!(update_payload(Entity::Person, 4, &map(json!({"mail": "n@x.ru"})), None).is_err());
    }

    #[test]
    fn another_users_task_is_not_updated() {
        let plan = |update: bool| super::super::actions::Plan {
            update: update.then(Map::new),
            actions: Vec::new(),
        };
        let theirs = map(json!({"tid": "5", "user": "manager2@x.ru"}));
        let e = keeps_owner(Entity::Task, &plan(true), Some(&theirs), "admin@x.ru");
        assert!(e.unwrap_err().0.contains("manager2@x.ru"));
        assert!(keeps_owner(Entity::Task, &plan(false), Some(&theirs), "admin@x.ru").is_ok());
        let ours = map(json!({"tid": "5", "user": "admin@x.ru"}));
        assert!(keeps_owner(Entity::Task, &plan(true), Some(&ours), "admin@x.ru").is_ok());
        assert!(keeps_owner(Entity::Deal, &plan(true), Some(&theirs), "admin@x.ru").is_ok());
    }

    #[test]
    fn deal_and_task_updates_avoid_the_recorded_hazards() {
        let deal = map(
            json!({"did": 2, "title": "СД2: Поставка", "kol": 100, "pid": 6,
                              "marga": 30000.25, "step": 20}),
        );
        let body = update_payload(
            Entity::Deal,
            2,
            &map(json!({"kol": 200, "step": 40})),
            Some(&deal),
        )
        .unwrap();
        assert_eq!(body["pid"], 6);
        assert_eq!(body["marga"], 30000.25);
        assert_eq!(
            body["title"], "СД2: Поставка",
            "kol is written only with a title"
        );
        assert!(!body.contains_key("step"));
        // The API never shows a deal's contact: without the template's pid it would be cleared.
        let listed = map(json!({"did": 2, "title": "СД2: Поставка", "kol": 100, "marga": 5}));
        let e = update_payload(Entity::Deal, 2, &map(json!({"kol": 200})), Some(&listed));
        assert!(e.unwrap_err().0.contains("pid"));
        let body = update_payload(
            Entity::Deal,
            2,
            &map(json!({"kol": 200, "pid": 7})),
            Some(&listed),
        )
        .unwrap();
        assert_eq!(
            (body["pid"].clone(), body["marga"].clone()),
            (json!(7), json!(5))
        );
        let done = map(json!({"tid": "5", "title": "Позвонить", "active": "no"}));
        let e = update_payload(Entity::Task, 5, &map(json!({"title": "x"})), Some(&done));
        assert!(e.unwrap_err().0.contains("re-open"));
        let open = map(json!({"tid": "5", "title": "Позвонить", "active": "yes", "des": "d"}));
        let body =
            update_payload(Entity::Task, 5, &map(json!({"title": "x"})), Some(&open)).unwrap();
        assert_eq!(
            (body["id"].clone(), body["des"].clone()),
            (json!(5), json!("d"))
        );
    }
}
