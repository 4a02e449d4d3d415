//! Reconcile, end to end: the source read through its template, the CRM's records of the same
//! entities exported, both matched. Nothing here trusts the import's own log unless a journal is
//! given, and then only for which CRM id belongs to which key.

use super::matcher::JournalLookup;
use super::{
    CrmRecord, CrmSide, EntityMatch, Fields, Names, ReconcileError, Reconciliation, SourceStore,
};
use crate::crm::{CrmClient, Entity, RetryPolicy};
use crate::export::{self, Filters};
use crate::report::Progress;
use crate::source::{self, SourceOptions};
use crate::template::{map_file, MapOptions, Template};
use crate::values::{value_id, CrmDateTime};
use chrono::NaiveDate;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// The source side: the records the import would send (an invalid row sends nothing), records
/// of one key merged as the import merges them (the first row's fields win). The records are in
/// a scratch store on disk; what the CRM side is fetched with is kept here.
#[derive(Debug)]
pub struct SourceSide {
    pub store: SourceStore,
    pub entities: BTreeMap<Entity, SourceEntity>,
    pub rows_read: u64,
    /// Rows with at least one invalid record: none of their records is expected in the CRM.
    pub invalid_rows: u64,
}

/// What the source says about one entity besides its records.
#[derive(Debug, Default, Clone)]
pub struct SourceEntity {
    /// Distinct records.
    pub records: u64,
    /// Every field (and reference field) a record sets, in first-seen order.
    pub fields: Vec<String>,
    /// The earliest and latest `datum` (history, tasks).
    pub dates: Option<(NaiveDate, NaiveDate)>,
}

impl SourceEntity {
    fn saw(&mut self, entity: Entity, fields: &Fields, refs: &[crate::template::Reference]) {
        self.records += 1;
        for f in fields
            .iter()
            .map(|(f, _)| f)
            .chain(refs.iter().map(|r| r.field.as_str()))
        {
            if !self.fields.iter().any(|k| k == f) {
                self.fields.push(f.to_string());
            }
        }
        if entity == Entity::History || entity == Entity::Task {
            if let Some(d) = fields
                .get("datum")
                .and_then(CrmDateTime::parse)
                .and_then(|d| d.date())
            {
                self.dates = Some(match self.dates {
                    Some((from, to)) => (from.min(d), to.max(d)),
                    None => (d, d),
                });
            }
        }
    }
}

/// Read the source through its template, one row at a time: each record goes into the scratch
/// store as it is mapped (a key seen before only gains the row), so memory does not grow with
/// the file.
pub fn read_source(
    file: &Path,
    template: &Template,
    opts: &SourceOptions,
) -> crate::Result<SourceSide> {
    let src = source::open(file, opts)?;
    let mapper = Arc::new(template.bind(src.headers(), &file.display().to_string())?);
    let mut side = SourceSide {
        store: SourceStore::new()?,
        entities: BTreeMap::new(),
        rows_read: 0,
        invalid_rows: 0,
    };
    let mut names = Names::default();
    for item in map_file(src, mapper, MapOptions::default()) {
        let (_, m) = item?;
        side.rows_read += 1;
        if m.blank {
            continue;
        }
        if !m.is_valid() {
            side.invalid_rows += 1;
        }
        for rec in m.records {
            let fields = Fields::from_map(&rec.fields, &mut names);
            if side
                .store
                .add(rec.entity, &rec.key, &fields, &rec.refs, &m.pos)?
            {
                side.entities
                    .entry(rec.entity)
                    .or_default()
                    .saw(rec.entity, &fields, &rec.refs);
            }
        }
    }
    side.store.finish()?;
    Ok(side)
}

/// What the CRM side is filtered to: history lists only what falls in the source's date range
/// (the API cannot list history without dates anyway).
fn filters_for(entity: Entity, source: &SourceEntity) -> Filters {
    let mut filters = Filters::default();
    if entity == Entity::History || entity == Entity::Task {
        filters.from = source.dates.map(|(from, _)| from);
        filters.to = source.dates.map(|(_, to)| to);
    }
    filters
}

/// Person lists honour `fields`: ask only for what is compared or matched on, which makes the
/// export 3–4× faster on the real server (throughput.md) and keeps memory small.
fn list_fields(entity: Entity, source: &SourceEntity) -> Option<String> {
    if entity != Entity::Person {
        return None;
    }
    let mut names: Vec<&str> = vec!["pid", "person", "mail", "tel", "mob", "clid"];
    for f in &source.fields {
        if !names.contains(&f.as_str()) {
            names.push(f);
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
    for (entity, id) in result.missing_created()? {
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

/// Export the CRM's records of every entity the source has and match them with the source,
/// entity by entity in reference order (a person's `clid` compares with the CRM id its client
/// matched). `journal` is an import's: the CRM id it recorded for a key is looked up there (not
/// loaded). Only one entity's CRM ids and probe hashes are in memory at a time; everything else
/// is in scratch stores.
pub async fn check(
    client: &CrmClient,
    side: &SourceSide,
    journal: Option<&crate::upload::Journal>,
    concurrency: usize,
    policy: &RetryPolicy,
    quiet: bool,
) -> crate::Result<Reconciliation> {
    let mut out = Reconciliation::new()?;
    for entity in Entity::ALL {
        let Some(source) = side.entities.get(&entity) else {
            continue;
        };
        let findings = out.findings();
        let progress = Progress::new(&format!("{entity} (CRM)"), None, quiet);
        let filters = filters_for(entity, source);
        let fields = list_fields(entity, source);
        // Each row is made compact as it arrives and goes to the store a batch at a time: the
        // JSON maps never pile up.
        let mut crm = CrmSide::new(entity);
        let mut names = Names::default();
        let mut failed: Option<ReconcileError> = None;
        export::fetch_all(
            client,
            entity,
            &filters,
            fields.as_deref(),
            concurrency,
            policy,
            &progress,
            |row| {
                if failed.is_some() {
                    return;
                }
                if let Some(rec) = crm_record(entity, &row, &mut names) {
                    if let Err(e) = crm.push(rec, findings) {
                        failed = Some(e);
                    }
                }
            },
        )
        .await?;
        progress.finish();
        if let Some(e) = failed {
            return Err(e.into());
        }
        let crm = crm.finish(findings)?;
        let lookup = |key: &str| {
            Ok(journal
                .map(|j| j.stored_id(entity, key))
                .transpose()?
                .flatten())
        };
        let mut matching = EntityMatch::new(&crm, journal.map(|_| &lookup as JournalLookup));
        side.store
            .batches(entity, |batch| matching.batch(batch, findings))?;
        let summary = matching.finish(findings)?;
        out.summaries.push((entity, summary));
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
    for &entity in side.entities.keys() {
        side.store.batches(entity, |batch| {
            journal.register(
                batch
                    .iter()
                    .map(|r| (r.entity, r.key.as_str(), r.rows.labels().join(", "))),
            )?;
            Ok::<_, crate::Error>(())
        })?;
    }
    let mut updates = Vec::new();
    result.findings().each_matched(|entity, key, id| {
        let entry = known.get(&(entity, key.clone()));
        if entry.is_some_and(|e| e.state.is_done() && e.crm_id == Some(id)) {
            return;
        }
        updates.push(Update {
            entity,
            state: entry
                .filter(|e| e.state == State::Existing)
                .map_or(State::Created, |e| e.state),
            key,
            crm_id: Some(id),
            error: None,
            resolved: true,
        });
    })?;
    let mut missing = 0u64;
    result.findings().each_missing(|m| {
        missing += 1;
        updates.push(Update {
            entity: m.entity,
            key: m.key,
            state: State::Pending,
            crm_id: None,
            error: None,
            resolved: false,
        });
        Ok::<_, ReconcileError>(())
    })?;
    journal.record(&updates)?;
    Ok(missing)
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
