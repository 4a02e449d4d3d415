//! Reconcile, end to end: the source read through its template, the CRM's records of the same
//! entities exported, both matched. Nothing here trusts the import's own log unless a journal is
//! given, and then only for which CRM id belongs to which key.

use super::{reconcile, CrmRecord, EntityInput, Fields, Names, Reconciliation, Rows, SourceRecord};
use crate::crm::{CrmClient, Entity, RetryPolicy};
use crate::export::{self, Filters};
use crate::report::Progress;
use crate::source::{self, SourceOptions, SourcePos};
use crate::template::{map_file, MapOptions, Template};
use crate::values::{value_id, CrmDateTime};
use chrono::NaiveDate;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// The source side: the records the import would send (an invalid row sends nothing), records
/// of one key merged as the import merges them (the first row's fields win).
#[derive(Debug, Default)]
pub struct SourceSide {
    pub records: BTreeMap<Entity, Vec<SourceRecord>>,
    pub rows_read: u64,
    /// Rows with at least one invalid record: none of their records is expected in the CRM.
    pub invalid_rows: u64,
}

/// Read the source through its template, one row at a time: each record is made compact as it
/// is mapped, and nothing per row is kept (no plan, no row list), so the source side costs only
/// its compact records.
pub fn read_source(
    file: &Path,
    template: &Template,
    opts: &SourceOptions,
) -> crate::Result<SourceSide> {
    let src = source::open(file, opts)?;
    let mapper = Arc::new(template.bind(src.headers(), &file.display().to_string())?);
    let mut side = SourceSide::default();
    let mut names = Names::default();
    // Where the rows are (file, sheet), shared by every record's rows.
    let mut at: Option<Arc<SourcePos>> = None;
    // (entity, key) → the record's index, by a 64-bit hash of the key (no second copy of every
    // key); keys whose hash another key already has go to `collided`.
    let mut seen: HashMap<(Entity, u64), usize> = HashMap::new();
    let mut collided: HashMap<(Entity, String), usize> = HashMap::new();
    for item in map_file(src, mapper, MapOptions::default()) {
        let (_, m) = item?;
        side.rows_read += 1;
        if m.blank {
            continue;
        }
        if !m.is_valid() {
            side.invalid_rows += 1;
        }
        let row = m.pos.row;
        let at = at.get_or_insert_with(|| Arc::new(m.pos.clone()));
        for rec in m.records {
            let records = side.records.entry(rec.entity).or_default();
            let h = crate::hash::fast_one(&rec.key);
            let known = match seen.get(&(rec.entity, h)) {
                Some(&i) if records[i].key == rec.key => Some(i),
                Some(_) => collided.get(&(rec.entity, rec.key.clone())).copied(),
                None => None,
            };
            if let Some(i) = known {
                records[i].rows.push(row);
                continue;
            }
            let i = records.len();
            match seen.entry((rec.entity, h)) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(i);
                }
                std::collections::hash_map::Entry::Occupied(_) => {
                    collided.insert((rec.entity, rec.key.clone()), i);
                }
            }
            records.push(SourceRecord {
                entity: rec.entity,
                fields: Fields::from_map(&rec.fields, &mut names),
                key: rec.key,
                refs: rec.refs,
                rows: Rows::new(at.clone(), vec![row]),
            });
        }
    }
    Ok(side)
}

/// What the CRM side is filtered to: history lists only what falls in the source's date range
/// (the API cannot list history without dates anyway).
fn filters_for(entity: Entity, records: &[SourceRecord]) -> Filters {
    let mut filters = Filters::default();
    if entity == Entity::History || entity == Entity::Task {
        let dates: Vec<NaiveDate> = records
            .iter()
            .filter_map(|r| r.fields.get("datum"))
            .filter_map(|d| CrmDateTime::parse(d)?.date())
            .collect();
        filters.from = dates.iter().min().copied();
        filters.to = dates.iter().max().copied();
    }
    filters
}

/// Person lists honour `fields`: ask only for what is compared or matched on, which makes the
/// export 3–4× faster on the real server (throughput.md) and keeps memory small.
fn list_fields(entity: Entity, records: &[SourceRecord]) -> Option<String> {
    if entity != Entity::Person {
        return None;
    }
    let mut names: Vec<&str> = vec!["pid", "person", "mail", "tel", "mob", "clid"];
    for r in records {
        for f in r
            .fields
            .iter()
            .map(|(f, _)| f)
            .chain(r.refs.iter().map(|r| r.field.as_str()))
        {
            if !names.contains(&f) {
                names.push(f);
            }
        }
    }
    Some(names.join(","))
}

fn crm_record(
    entity: Entity,
    row: &serde_json::Map<String, Value>,
    names: &mut Names,
) -> Option<CrmRecord> {
    let id = value_id(row.get(entity.id_field()))?;
    let mut fields = Fields::from_map(row, names);
    // history/list shows linked persons only as `person: [{pid, person}]`, and no key at all
    // when the link is gone (person deleted): make that an empty `pid`, comparable with the
    // person the source links to.
    if entity == Entity::History && row.get("pid").is_none() {
        let pids: Vec<String> = row
            .get("person")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| value_id(p.get("pid")))
            .map(|id| id.to_string())
            .collect();
        fields.set("pid", pids.join(";"));
    }
    Some(CrmRecord { id, fields })
}

/// For every "missing" record the journal knows as created, ask `info` whether it is still
/// there: a record the API user cannot list (owner 0, another owner) is not missing and must
/// not be sent again. One read per such record (they are few). `info` answers differ per
/// entity (NOTES §5, §11): person/info gives an object of nulls for an unknown pid; client,
/// deal and history answer error 403 both for "gone" and for "not yours" — then the record
/// stays missing, since nothing proves it is there. Returns (entity, id) → owner.
pub async fn find_invisible(
    client: &CrmClient,
    result: &Reconciliation,
    policy: &RetryPolicy,
) -> crate::Result<HashMap<(Entity, i64), String>> {
    let mut found = HashMap::new();
    for m in &result.missing {
        let Some(id) = m.journal_id else { continue };
        let entity = m.entity;
        let answer = match client.info(entity, id, &[], policy).await {
            Ok(v) => v,
            Err(crate::crm::CrmError::Api { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        if let Some(owner) = info_owner(entity, id, &answer) {
            found.insert((entity, id), owner);
        }
    }
    Ok(found)
}

/// The owner `info` reports when its answer is the record `id`, else None.
pub(crate) fn info_owner(entity: Entity, id: i64, answer: &Value) -> Option<String> {
    let data = answer
        .get("data")
        .filter(|d| d.is_object())
        .unwrap_or(answer);
    let shown = value_id(data.get(entity.id_field()))
        .or_else(|| value_id(data.get("id")))
        .or_else(|| value_id(data.get("tid")));
    if shown != Some(id) {
        return None;
    }
    let owner = ["iduser", "user"]
        .iter()
        .filter_map(|k| data.get(*k))
        .map(crate::values::value_text)
        .find(|v| !v.is_empty() && v != "0")
        .unwrap_or_default();
    Some(owner)
}

/// Export the CRM's records of every entity the source has.
pub async fn fetch_crm(
    client: &CrmClient,
    side: &SourceSide,
    concurrency: usize,
    policy: &RetryPolicy,
    quiet: bool,
) -> crate::Result<BTreeMap<Entity, Vec<CrmRecord>>> {
    let mut out = BTreeMap::new();
    for (&entity, records) in &side.records {
        let progress = Progress::new(&format!("{entity} (CRM)"), None, quiet);
        let filters = filters_for(entity, records);
        let fields = list_fields(entity, records);
        // Each row is made compact as it arrives: the JSON maps never pile up.
        let mut records = Vec::new();
        let mut names = Names::default();
        export::fetch_all(
            client,
            entity,
            &filters,
            fields.as_deref(),
            concurrency,
            policy,
            &progress,
            |row| records.extend(crm_record(entity, &row, &mut names)),
        )
        .await?;
        progress.finish();
        out.insert(entity, records);
    }
    Ok(out)
}

/// Match both sides in reference order. `journal` maps (entity, key) to the CRM id an import
/// recorded.
pub fn compare(
    side: &SourceSide,
    crm: &BTreeMap<Entity, Vec<CrmRecord>>,
    journal: Option<&HashMap<Entity, HashMap<String, i64>>>,
) -> Reconciliation {
    let empty = Vec::new();
    let inputs: Vec<EntityInput<'_>> = Entity::ALL
        .into_iter()
        .filter_map(|entity| {
            let source = side.records.get(&entity)?;
            Some(EntityInput {
                entity,
                source,
                crm: crm.get(&entity).unwrap_or(&empty),
                journal: journal.and_then(|j| j.get(&entity)),
            })
        })
        .collect();
    reconcile(&inputs)
}

/// key → CRM id per entity, for the records an import journal says are stored.
pub fn journal_ids(
    journal: &crate::upload::Journal,
) -> crate::Result<HashMap<Entity, HashMap<String, i64>>> {
    let mut out: HashMap<Entity, HashMap<String, i64>> = HashMap::new();
    for ((entity, key), entry) in journal.load()? {
        if let (true, Some(id)) = (entry.state.is_done(), entry.crm_id) {
            out.entry(entity).or_default().insert(key, id);
        }
    }
    Ok(out)
}

/// Make a journal agree with what the CRM holds, so the import path sends exactly the missing
/// records: matched records become stored with the id they matched (a lost answer, a record made
/// by another tool), missing ones pending again (deleted since). Returns how many are missing.
pub fn prepare_fix(
    journal: &mut crate::upload::Journal,
    side: &SourceSide,
    result: &Reconciliation,
) -> crate::Result<u64> {
    use crate::upload::journal::{State, Update};
    let known = journal.load()?;
    journal.register(
        side.records
            .values()
            .flatten()
            .map(|r| (r.entity, r.key.as_str(), r.rows.labels().join(", "))),
    )?;
    let mut updates = Vec::new();
    for ((entity, key), id) in &result.matched {
        let entry = known.get(&(*entity, key.clone()));
        if entry.is_some_and(|e| e.state.is_done() && e.crm_id == Some(*id)) {
            continue;
        }
        updates.push(Update {
            entity: *entity,
            key: key.clone(),
            state: entry
                .filter(|e| e.state == State::Existing)
                .map_or(State::Created, |e| e.state),
            crm_id: Some(*id),
            error: None,
            resolved: true,
        });
    }
    for m in &result.missing {
        updates.push(Update {
            entity: m.entity,
            key: m.key.clone(),
            state: State::Pending,
            crm_id: None,
            error: None,
            resolved: false,
        });
    }
    journal.record(&updates)?;
    Ok(result.missing.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn info_answers_say_whether_the_record_is_there() {
        // person/info of a deleted pid: all nulls (NOTES §5) → not there.
        let nulls = json!({"data": {"pid": null, "person": null, "iduser": ""}});
        assert_eq!(info_owner(Entity::Person, 4, &nulls), None);
        // Owner 0: the record, with no owner login.
        let owner0 = json!({"data": {"pid": 7, "person": "Тест 923", "iduser": ""}});
        assert_eq!(info_owner(Entity::Person, 7, &owner0), Some(String::new()));
        let other =
            json!({"data": {"pid": 7, "person": "Тест", "iduser": "manager2@salesman.local"}});
        assert_eq!(
            info_owner(Entity::Person, 7, &other).as_deref(),
            Some("manager2@salesman.local")
        );
        // Another record's answer is not this one.
        assert_eq!(info_owner(Entity::Person, 8, &owner0), None);
    }

    #[test]
    fn history_links_come_from_the_person_list() {
        let mut names = Names::default();
        let linked = json!({"cid": 72, "clid": 8, "person": [{"pid": 9, "person": "Историев"}, {"pid": 11, "person": "Б"}]});
        let r = crm_record(Entity::History, linked.as_object().unwrap(), &mut names).unwrap();
        assert_eq!(r.fields.get("pid"), Some("9;11"));
        let unlinked = json!({"cid": 70, "clid": 8, "did": 0});
        let r = crm_record(Entity::History, unlinked.as_object().unwrap(), &mut names).unwrap();
        assert_eq!(r.fields.get("pid"), Some(""));
    }
}
