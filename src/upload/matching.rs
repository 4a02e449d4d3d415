//! Match before create: before an entity's records are sent, the CRM's records of that entity are
//! read through `list` pages (never one `info` per record) and each planned record is matched by
//! the template's probes (`template::matching`). What a match means depends on the mode: `insert`
//! reports it `existing`; `upsert`/`update` compare the mapped fields and either leave the record
//! `unchanged` or queue an update with the CRM's current values kept for the read-modify-write;
//! two or more candidates make the record `ambiguous_match`, never written. The journal is a cache
//! of this: losing it never creates a duplicate.
//!
//! Memory: the planned records' probe hashes (8 bytes each, plus the plan id) and the hits; the
//! CRM side is streamed page by page and only matched rows are kept (in the journal).

use super::journal::{State, Update};
use super::planstore::StoredRecord;
use super::{change, Ctx, Mode, UploadError};
use crate::crm::{ContractApi, Entity};
use crate::export::{self, Filters};
use crate::report::Progress;
use crate::template::matching::{probe_values, Probe};
use crate::values::{value_id, value_text, CrmDateTime};
use chrono::NaiveDate;
use rusqlite::params;
use serde_json::{Map, Value};
use std::collections::HashMap;

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS matches (
        entity  TEXT NOT NULL,
        key     TEXT NOT NULL,
        crm_id  INTEGER NOT NULL,
        current TEXT,
        PRIMARY KEY (entity, key)
    );
    CREATE TABLE IF NOT EXISTS changes (
        seq    INTEGER PRIMARY KEY,
        entity TEXT NOT NULL,
        key    TEXT NOT NULL,
        crm_id INTEGER NOT NULL,
        field  TEXT NOT NULL,
        before TEXT NOT NULL,
        after  TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS changes_by_record ON changes (entity, key);
    CREATE TABLE IF NOT EXISTS match_rows (
        entity  TEXT NOT NULL,
        crm_id  INTEGER NOT NULL,
        current TEXT NOT NULL,
        PRIMARY KEY (entity, crm_id)
    );";

/// Matched CRM rows written to the journal at a time while the CRM is read.
const ROWS_PER_WRITE: usize = 500;

/// Write matched CRM rows (id, JSON) into `match_rows`: they wait there for the decision, so
/// memory holds a batch of them, not every match.
fn keep_rows(ctx: &Ctx, entity: Entity, rows: &mut Vec<(i64, String)>) -> Result<(), UploadError> {
    if rows.is_empty() {
        return Ok(());
    }
    ctx.journal_lock().write_with(|tx| {
        let mut put = tx.prepare_cached(
            "INSERT OR REPLACE INTO match_rows (entity, crm_id, current) VALUES (?1, ?2, ?3)",
        )?;
        for (id, row) in rows.iter() {
            put.execute(params![entity.as_str(), id, row])?;
        }
        Ok(())
    })?;
    rows.clear();
    Ok(())
}

/// Probe index of the CRM id the journal already holds for a record: it beats every probe.
const BY_ID: u8 = 0;

/// What the CRM holds for one planned record.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    One(i64),
    Many { probe: String, ids: Vec<i64> },
}

impl Found {
    /// Why a record that matched several CRM records is not written (None for one match).
    fn ambiguity(&self, entity: Entity) -> Option<String> {
        let Found::Many { probe, ids } = self else {
            return None;
        };
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        Some(format!(
            "matches {} {entity} records in the CRM by {probe} (ids {}): not written; make the match unique (another `match` probe, or fix the duplicates in the CRM)",
            ids.len(),
            list.join(", ")
        ))
    }
}

/// A record's field as text, as probes read it: references resolved to CRM ids, CRM rows read
/// the way the server shows them (history's linked person, requisites' leaves).
fn crm_text(entity: Entity, row: &Map<String, Value>, field: &str) -> Option<String> {
    if let Some((parent, leaf)) = field.split_once('.') {
        return row.get(parent)?.get(leaf).map(value_text);
    }
    if entity == Entity::History && field == "pid" && row.get("pid").is_none() {
        // history/list shows the linked person as `person: [{pid, person}]`.
        let pid = row
            .get("person")?
            .as_array()?
            .iter()
            .find_map(|p| value_id(p.get("pid")))?;
        return Some(pid.to_string());
    }
    let listed = entity.listed_field(field);
    row.get(listed).or_else(|| row.get(field)).map(value_text)
}

fn probe_hash(index: u8, value: &str) -> u64 {
    crate::hash::fast_one((index, value))
}

/// CRM ids of referenced records, as the journal knows them: many records reference few
/// (persons their client), so each is looked up once per pass.
#[derive(Default)]
pub(super) struct RefIds(HashMap<(Entity, String), Option<i64>>);

/// Referenced records remembered at most (then the cache starts again).
const REF_CACHE: usize = 100_000;

impl RefIds {
    /// The record's fields with its references as CRM ids (those the journal knows).
    pub(super) fn resolve(
        &mut self,
        ctx: &Ctx,
        rec: &StoredRecord,
    ) -> Result<Map<String, Value>, UploadError> {
        let mut fields = rec.fields.clone();
        for r in &rec.refs {
            let k = (r.entity, r.key.clone());
            let id = match self.0.get(&k) {
                Some(id) => *id,
                None => {
                    // A record done, or matched and about to be updated (a dry run stops
                    // there): its CRM id is known either way.
                    let id = ctx
                        .journal_lock()
                        .entry(r.entity, &r.key)?
                        .filter(|e| e.state.is_done() || e.state == State::Pending)
                        .and_then(|e| e.crm_id);
                    if self.0.len() >= REF_CACHE {
                        self.0.clear();
                    }
                    self.0.insert(k, id);
                    id
                }
            };
            if let Some(id) = id {
                fields.insert(r.field.clone(), Value::from(id));
            }
        }
        Ok(fields)
    }
}

/// Dates of the planned history/task records, to read only those days from the CRM.
#[derive(Default)]
struct DateRange {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
}

impl DateRange {
    fn add(&mut self, text: Option<&Value>) {
        let Some(d) = text.and_then(|v| CrmDateTime::parse(&value_text(v))?.date()) else {
            return;
        };
        self.from = Some(self.from.map_or(d, |f| f.min(d)));
        self.to = Some(self.to.map_or(d, |t| t.max(d)));
    }
}

/// Match the planned records of `entity` against the CRM and settle what the mode says.
pub(super) async fn match_entity(ctx: &Ctx, entity: Entity) -> Result<(), UploadError> {
    let mode = ctx.opts.mode;
    let probes: Vec<Probe> = ctx.opts.probes.get(&entity).cloned().unwrap_or_default();
    // An older server has no invoice/list: its invoices are read with v1 contract list.
    let v1_rows = v1_invoices(ctx, entity).await?;
    // An empty CRM (a first migration) holds nothing to match: one read says so, and the
    // planned records are not even looked at.
    let empty = match &v1_rows {
        Some(rows) => rows.is_empty(),
        None => crm_is_empty(ctx, entity).await?,
    };
    if empty {
        // Records an earlier run stored are not there any more (a new sandbox, a CRM restored
        // from a backup): the CRM is the truth, the journal only a cache of it.
        ctx.journal_lock().forget_stored(entity)?;
        if mode == Mode::Insert {
            return Ok(());
        }
        return settle(ctx, entity, &HashMap::new()).await;
    }
    // 1. The planned side: probe hashes → plan ids, sorted for binary search.
    let mut index: Vec<(u64, i64)> = Vec::new();
    let mut dates = DateRange::default();
    let mut refs = RefIds::default();
    for page in ctx.plan_pages(entity) {
        let page = page?;
        for rec in page {
            if !needs_match(mode, &rec) {
                continue;
            }
            if let Some(id) = rec.crm_id {
                index.push((probe_hash(BY_ID, &id.to_string()), rec.id));
            }
            let mut fields = refs.resolve(ctx, &rec)?;
            if matches!(entity, Entity::Client | Entity::Deal) && !fields.contains_key("uid") {
                // The import writes the record key into `uid` when the template maps none.
                fields.insert("uid".into(), Value::from(rec.key.clone()));
            }
            dates.add(fields.get("datum"));
            let get = |f: &str| fields.get(f).map(value_text).filter(|t| !t.is_empty());
            for (i, probe) in probes.iter().enumerate() {
                for v in probe_values(entity, probe, false, &get) {
                    index.push((probe_hash(i as u8 + 1, &v), rec.id));
                }
            }
        }
    }
    if index.is_empty() {
        return settle(ctx, entity, &HashMap::new()).await;
    }
    index.sort_unstable();
    index.dedup();

    // 2. The CRM side, page by page: only rows that hit a planned probe are kept.
    let mut hits: Vec<(i64, u8, i64)> = Vec::new();
    let mut kept: Vec<(i64, String)> = Vec::new();
    let mut kept_err: Option<UploadError> = None;
    if mode.rematches() {
        ctx.journal_lock().write_with(|tx| {
            tx.execute(
                "DELETE FROM match_rows WHERE entity = ?1",
                [entity.as_str()],
            )
        })?;
    }
    let mut filters = Filters::default();
    if matches!(entity, Entity::History | Entity::Task) {
        filters.from = dates.from;
        filters.to = dates.to;
    }
    let fields = list_fields(ctx, entity, &probes);
    let progress = Progress::new(&format!("{entity} (matching)"), None, ctx.opts.quiet);
    let id_field = entity.id_field();
    let keep_matched = mode.rematches();
    let on_row = |row: Map<String, Value>| {
        let Some(crm_id) = value_id(row.get(id_field)) else {
            return;
        };
        let mut hit = false;
        let mut look = |i: u8, v: &str| {
            let h = probe_hash(i, v);
            let from = index.partition_point(|(x, _)| *x < h);
            for (_, plan_id) in index[from..].iter().take_while(|(x, _)| *x == h) {
                hits.push((*plan_id, i, crm_id));
                hit = true;
            }
        };
        look(BY_ID, &crm_id.to_string());
        let get = |f: &str| crm_text(entity, &row, f).filter(|t| !t.is_empty());
        for (i, probe) in probes.iter().enumerate() {
            for v in probe_values(entity, probe, true, &get) {
                look(i as u8 + 1, &v);
            }
        }
        if hit && keep_matched {
            kept.push((crm_id, Value::Object(row).to_string()));
            if kept.len() >= ROWS_PER_WRITE && kept_err.is_none() {
                if let Err(e) = keep_rows(ctx, entity, &mut kept) {
                    kept_err = Some(e);
                }
            }
        }
    };
    let read = match v1_rows {
        Some(rows) => {
            rows.into_iter().for_each(on_row);
            Ok(())
        }
        None => {
            export::fetch_all(
                &ctx.client,
                entity,
                &filters,
                fields.as_deref(),
                4,
                &ctx.opts.lookup_retry,
                &progress,
                on_row,
            )
            .await
        }
    };
    progress.finish();
    read.map_err(|source| UploadError::MatchRead { entity, source })?;
    drop(index);

    // 3. Per planned record, the first probe that found anything decides.
    hits.sort_unstable();
    let mut found: HashMap<i64, Found> = HashMap::new();
    let mut i = 0;
    while i < hits.len() {
        let (plan_id, probe_index, _) = hits[i];
        let mut ids: Vec<i64> = hits[i..]
            .iter()
            .take_while(|(p, x, _)| *p == plan_id && *x == probe_index)
            .map(|(_, _, id)| *id)
            .collect();
        while i < hits.len() && hits[i].0 == plan_id {
            i += 1;
        }
        ids.dedup();
        let f = if ids.len() == 1 {
            Found::One(ids[0])
        } else {
            let probe = match probe_index {
                BY_ID => "the id of an earlier run".to_string(),
                n => probes[n as usize - 1].label(),
            };
            Found::Many { probe, ids }
        };
        found.insert(plan_id, f);
    }
    if keep_matched {
        if let Some(e) = kept_err {
            return Err(e);
        }
        keep_rows(ctx, entity, &mut kept)?;
        store_current(ctx, entity, &found)?;
    }
    settle(ctx, entity, &found).await
}

/// The CRM's invoices when it is an older server (no v3 invoice/list; `CrmClient::
/// contract_api`), read with v1 contract list; `None` for any other entity or server.
async fn v1_invoices(
    ctx: &Ctx,
    entity: Entity,
) -> Result<Option<Vec<Map<String, Value>>>, UploadError> {
    if entity != Entity::Invoice {
        return Ok(None);
    }
    let failed = |e| UploadError::MatchRead {
        entity,
        source: export::ExportError::PageFailed {
            entity,
            page: 0,
            source: e,
        },
    };
    let policy = &ctx.opts.lookup_retry;
    if ctx.client.contract_api(policy).await.map_err(failed)? != ContractApi::V1 {
        return Ok(None);
    }
    let rows = ctx.client.v1_all_invoices(policy, |_| true).await;
    rows.map(Some).map_err(failed)
}

/// Does the CRM hold no record of `entity` at all (the first page of every pass is empty)?
async fn crm_is_empty(ctx: &Ctx, entity: Entity) -> Result<bool, UploadError> {
    let filters = Filters::default();
    let id = entity.id_field();
    for pass in export::query::passes(entity, &filters, Some(id)) {
        let page = ctx
            .client
            .list_page(
                entity,
                &pass.params,
                entity.first_offset(),
                &ctx.opts.lookup_retry,
            )
            .await
            .map_err(|e| UploadError::MatchRead {
                entity,
                source: export::ExportError::PageFailed {
                    entity,
                    page: 0,
                    source: e,
                },
            })?;
        if !page.rows.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Does this record take part in matching? In `insert` mode records already done (an earlier
/// run) keep their state; `upsert`/`update` compare everything again.
fn needs_match(mode: Mode, rec: &StoredRecord) -> bool {
    match rec.state {
        Some(s) if s.is_done() || s.is_settled() => mode.rematches() && s != State::Deleted,
        _ => true,
    }
}

/// Persons and clients honour `fields`: ask for what probes and the update need only. An update
/// of a person is a full replace (NOTES §5), so then every field the list shows is read.
fn list_fields(ctx: &Ctx, entity: Entity, probes: &[Probe]) -> Option<String> {
    let mut names: Vec<String> = vec![entity.id_field().to_string()];
    match entity {
        Entity::Person if ctx.opts.mode.updates() => return None,
        // A delete backs up the whole row it matched.
        _ if ctx.opts.mode == Mode::Delete => return None,
        Entity::Person => names.extend(["person", "mail", "tel", "mob", "clid"].map(String::from)),
        Entity::Client => {
            names.extend(["uid", "title"].map(String::from));
            names.extend(ctx.opts.mapped.get(&entity).into_iter().flatten().cloned());
        }
        _ => return None,
    }
    for p in probes {
        names.extend(p.fields.iter().cloned());
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| !n.contains('.') && seen.insert(n.clone()));
    Some(names.join(","))
}

/// Keep the matched CRM rows in the journal (the update reads them back for its
/// read-modify-write).
fn store_current(
    ctx: &Ctx,
    entity: Entity,
    found: &HashMap<i64, Found>,
) -> Result<(), UploadError> {
    let mut journal = ctx.journal_lock();
    journal.write_with(|tx| {
        tx.execute("DELETE FROM matches WHERE entity = ?1", [entity.as_str()])?;
        let mut put = tx.prepare(
            "INSERT OR REPLACE INTO matches (entity, key, crm_id, current)
             SELECT p.entity, p.key, ?2,
                    (SELECT current FROM match_rows m WHERE m.entity = p.entity AND m.crm_id = ?2)
             FROM plan p WHERE p.id = ?1",
        )?;
        for (plan_id, f) in found {
            if let Found::One(id) = f {
                put.execute(params![plan_id, id])?;
            }
        }
        tx.execute(
            "DELETE FROM match_rows WHERE entity = ?1",
            [entity.as_str()],
        )?;
        Ok(())
    })
}

/// Settle every planned record of `entity` by what the match found and the mode: the journal
/// then says, for each, whether it is to be created, updated, or left as it is.
async fn settle(ctx: &Ctx, entity: Entity, found: &HashMap<i64, Found>) -> Result<(), UploadError> {
    let mode = ctx.opts.mode;
    if mode == Mode::Insert {
        return settle_insert(ctx, entity, found);
    }
    let mut refs = RefIds::default();
    for page in ctx.plan_pages(entity) {
        let page = page?;
        let mut ups: Vec<Update> = Vec::new();
        let mut changes: Vec<change::FieldChange> = Vec::new();
        for rec in page {
            if !needs_match(mode, &rec) {
                continue;
            }
            let up = |state: State, crm_id: Option<i64>, error: Option<String>| Update {
                entity,
                key: rec.key.clone(),
                state,
                crm_id,
                error,
                resolved: false,
            };
            match found.get(&rec.id) {
                Some(many @ Found::Many { .. }) => {
                    ups.push(up(State::AmbiguousMatch, None, many.ambiguity(entity)));
                }
                Some(Found::One(id)) if mode == Mode::Delete => {
                    // Still in the CRM (also after a lost answer): to be deleted.
                    ups.push(up(State::Pending, Some(*id), None));
                }
                None if mode == Mode::Delete && rec.state.is_some_and(State::maybe_stored) => {
                    // Our delete was sent and the record is gone: it was deleted.
                    ups.push(Update {
                        resolved: true,
                        ..up(State::Deleted, rec.crm_id, None)
                    });
                }
                Some(Found::One(id)) if !mode.updates() => {
                    // A record a lost answer may have stored, found: this run's (or the last
                    // one's) creation.
                    let state = match rec.state {
                        Some(s) if s.maybe_stored() => State::Created,
                        _ => State::Existing,
                    };
                    ups.push(Update {
                        resolved: state == State::Created,
                        ..up(state, Some(*id), None)
                    });
                }
                Some(Found::One(id)) => {
                    let fields = refs.resolve(ctx, &rec)?;
                    let current = ctx.journal_lock().match_current(entity, &rec.key)?;
                    let diff = change::diff(entity, &fields, current.as_ref());
                    if diff.is_empty() {
                        ups.push(up(State::Unchanged, Some(*id), None));
                    } else {
                        changes.extend(diff.into_iter().map(|(field, before, after)| {
                            change::FieldChange {
                                key: rec.key.clone(),
                                crm_id: *id,
                                field,
                                before,
                                after,
                            }
                        }));
                        ups.push(up(State::Pending, Some(*id), None));
                    }
                }
                None if matches!(mode, Mode::Update | Mode::Delete) => ups.push(up(
                    State::NotFound,
                    None,
                    Some(format!(
                        "no {entity} in the CRM matches (by {})",
                        probe_labels(ctx, entity)
                    )),
                )),
                None if mode.updates() => {
                    // Upsert: to be created (a journal id the CRM no longer has is forgotten).
                    ups.push(up(State::Pending, None, None));
                }
                None => {}
            }
        }
        let mut journal = ctx.journal_lock();
        journal.record(&ups)?;
        journal.put_changes(entity, &changes)?;
    }
    Ok(())
}

/// `insert`: every record that matched one CRM record is `existing` (or `created`, when a lost
/// answer of an earlier run had stored it), in one statement rather than record by record; the
/// few that matched several are `ambiguous_match`. Unmatched records stay as they are.
fn settle_insert(
    ctx: &Ctx,
    entity: Entity,
    found: &HashMap<i64, Found>,
) -> Result<(), UploadError> {
    let mut one: Vec<(i64, i64)> = Vec::with_capacity(found.len());
    let mut many: Vec<(i64, String)> = Vec::new();
    for (plan_id, f) in found {
        match f {
            Found::One(id) => one.push((*plan_id, *id)),
            Found::Many { .. } => many.push((*plan_id, f.ambiguity(entity).unwrap_or_default())),
        }
    }
    ctx.journal_lock().settle_matches(entity, &one, &many)
}

fn probe_labels(ctx: &Ctx, entity: Entity) -> String {
    let labels: Vec<String> = ctx
        .opts
        .probes
        .get(&entity)
        .into_iter()
        .flatten()
        .map(Probe::label)
        .collect();
    if labels.is_empty() {
        "nothing: the template maps no field to match on".into()
    } else {
        labels.join(", then ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crm_rows_are_read_as_the_server_shows_them() {
        let row = json!({"cid": 3, "person": [{"pid": 7, "person": "Иван"}], "content": "x",
                         "recv": {"castInn": "7701234567"}})
        .as_object()
        .unwrap()
        .clone();
        assert_eq!(crm_text(Entity::History, &row, "pid").as_deref(), Some("7"));
        assert_eq!(
            crm_text(Entity::Client, &row, "recv.castInn").as_deref(),
            Some("7701234567")
        );
        assert_eq!(
            crm_text(Entity::History, &row, "content").as_deref(),
            Some("x")
        );
    }
}
