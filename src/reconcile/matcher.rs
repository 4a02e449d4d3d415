//! Matching source records with CRM records, entity by entity in reference order, so a person's
//! `clid` can be compared with the CRM id its client matched.
//!
//! Memory does not grow with the values of either side: an entity's CRM records go into the
//! scratch store as they arrive and only their ids and probe hashes stay in memory
//! ([`CrmIndex`], ≈ 60 B a record); the source side streams out of its own store in batches;
//! matches and findings go to the store as they are made.

use super::fields::Fields;
use super::store::{Findings, BATCH};
use super::ReconcileError;
use crate::crm::Entity;
use crate::source::SourcePos;
use crate::template::matching::norm_part;
use crate::template::Reference;
use crate::values::{norm_field, norm_title, strip_deal_number};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

/// The source rows a record came from: row numbers in one file (and sheet), turned into labels
/// ("file row N") only for the records a report shows — a label kept per record cost more than
/// the record's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    /// Where the rows are (its `row` is not used).
    at: Arc<SourcePos>,
    numbers: Vec<u64>,
}

impl Rows {
    pub fn new(at: Arc<SourcePos>, numbers: Vec<u64>) -> Rows {
        Rows { at, numbers }
    }

    /// Add a row, unless it is the last one already.
    pub fn push(&mut self, row: u64) {
        if self.numbers.last() != Some(&row) {
            self.numbers.push(row);
        }
    }

    /// Every row as messages label it: file [sheet] row N.
    pub fn labels(&self) -> Vec<String> {
        self.numbers
            .iter()
            .map(|&row| {
                SourcePos {
                    row,
                    ..(*self.at).clone()
                }
                .to_string()
            })
            .collect()
    }
}

/// One record the source says should exist (records of one key merged across rows).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    pub entity: Entity,
    pub key: String,
    pub fields: Fields,
    /// Fields that hold another record's CRM id, e.g. `clid` of client "ООО Ромашка".
    pub refs: Vec<Reference>,
    /// Where it came from.
    pub rows: Rows,
}

/// One record as the CRM's `list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CrmRecord {
    pub id: i64,
    pub fields: Fields,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntitySummary {
    pub in_source: u64,
    pub matched: u64,
    pub missing: u64,
    pub only_in_crm: u64,
    /// Matched records with at least one differing field.
    pub different: u64,
    /// Source keys with more than one CRM record.
    pub duplicated: u64,
    pub in_crm: u64,
    /// Created (the journal has its id) and still there by `info`, but not in `list`: the API
    /// user cannot see it (owner 0, another owner). Not missing, never re-sent.
    pub invisible: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Missing {
    pub entity: Entity,
    pub key: String,
    pub rows: Vec<String>,
    pub fields: Fields,
    /// The id the journal recorded, when the record was created once and is gone now.
    pub journal_id: Option<i64>,
}

/// A record the journal knows as created that `list` does not show but `info` still finds.
#[derive(Debug, Clone, PartialEq)]
pub struct Invisible {
    pub entity: Entity,
    pub key: String,
    pub rows: Vec<String>,
    pub id: i64,
    /// The owner as `info` reports it (a login, an id, or empty for owner 0).
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldDiff {
    pub entity: Entity,
    pub key: String,
    pub id: i64,
    pub rows: Vec<String>,
    pub field: String,
    pub source: String,
    pub crm: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Duplicate {
    pub entity: Entity,
    pub key: String,
    pub rows: Vec<String>,
    pub ids: Vec<i64>,
}

/// What a reconciliation found: counts per entity in memory, the findings themselves (any
/// number of them) in a scratch store on disk, read back a row at a time.
pub struct Reconciliation {
    pub summaries: Vec<(Entity, EntitySummary)>,
    pub invisible: Vec<Invisible>,
    findings: Findings,
}

impl std::fmt::Debug for Reconciliation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciliation")
            .field("summaries", &self.summaries)
            .field("missing", &self.missing())
            .field("different", &self.different())
            .field("duplicates", &self.duplicates())
            .field("only_in_crm", &self.only_in_crm())
            .field("invisible", &self.invisible)
            .finish()
    }
}

impl Reconciliation {
    /// An empty reconciliation with a fresh store.
    pub fn new() -> Result<Reconciliation, ReconcileError> {
        Ok(Reconciliation {
            summaries: Vec::new(),
            invisible: Vec::new(),
            findings: Findings::new()?,
        })
    }

    /// The findings, to stream (the report, `--fix`) or add to (matching, tests).
    pub fn findings(&self) -> &Findings {
        &self.findings
    }

    pub fn is_clean(&self) -> bool {
        self.summaries.iter().all(|(_, s)| {
            s.missing == 0
                && s.different == 0
                && s.duplicated == 0
                && s.only_in_crm == 0
                && s.invisible == 0
        }) && self.invisible.is_empty()
    }

    /// How many records are missing in the CRM.
    pub fn missing_count(&self) -> u64 {
        self.summaries.iter().map(|(_, s)| s.missing).sum()
    }

    /// Records missing in the CRM, all at once (tests, small runs; the report streams them).
    pub fn missing(&self) -> Result<Vec<Missing>, ReconcileError> {
        collect(|push| self.findings.each_missing(push))
    }

    pub fn different(&self) -> Result<Vec<FieldDiff>, ReconcileError> {
        collect(|push| self.findings.each_different(push))
    }

    pub fn duplicates(&self) -> Result<Vec<Duplicate>, ReconcileError> {
        collect(|push| self.findings.each_duplicate(push))
    }

    pub fn only_in_crm(&self) -> Result<Vec<(Entity, CrmRecord)>, ReconcileError> {
        collect(|push| self.findings.each_only_in_crm(|e, r| push((e, r))))
    }

    /// The CRM id the source record `key` of `entity` matched.
    pub fn matched_id(&self, entity: Entity, key: &str) -> Result<Option<i64>, ReconcileError> {
        self.findings.matched_id(entity, key)
    }

    /// Missing records the journal knows as created: (entity, its id then).
    pub fn missing_created(&self) -> Result<Vec<(Entity, i64)>, ReconcileError> {
        let mut out = Vec::new();
        self.findings.each_missing(|m| {
            out.extend(m.journal_id.map(|id| (m.entity, id)));
            Ok::<_, ReconcileError>(())
        })?;
        Ok(out)
    }

    /// Records that looked missing but `info` found (id → owner): they move from `missing` to
    /// `invisible`, so `--fix` never sends them again.
    pub fn mark_invisible(
        &mut self,
        found: &HashMap<(Entity, i64), String>,
    ) -> Result<(), ReconcileError> {
        if found.is_empty() {
            return Ok(());
        }
        let mut gone = Vec::new();
        self.findings.each_missing(|m| {
            if m.journal_id
                .is_some_and(|id| found.contains_key(&(m.entity, id)))
            {
                gone.push(m);
            }
            Ok::<_, ReconcileError>(())
        })?;
        self.findings.remove_missing(
            &gone
                .iter()
                .map(|m| (m.entity, m.journal_id.unwrap_or_default()))
                .collect::<Vec<_>>(),
        )?;
        for m in gone {
            let id = m.journal_id.unwrap_or_default();
            if let Some((_, s)) = self.summaries.iter_mut().find(|(e, _)| *e == m.entity) {
                s.missing -= 1;
                s.invisible += 1;
            }
            self.invisible.push(Invisible {
                owner: found.get(&(m.entity, id)).cloned().unwrap_or_default(),
                entity: m.entity,
                key: m.key,
                rows: m.rows,
                id,
            });
        }
        Ok(())
    }
}

/// Everything one of the store's finding streams yields, in a vector.
fn collect<T>(
    each: impl FnOnce(&mut dyn FnMut(T) -> Result<(), ReconcileError>) -> Result<(), ReconcileError>,
) -> Result<Vec<T>, ReconcileError> {
    let mut out = Vec::new();
    each(&mut |x| {
        out.push(x);
        Ok(())
    })?;
    Ok(out)
}

/// Ways to recognise a record without an id, most specific first. Source and CRM records go
/// through the same function, so both sides produce the same strings.
fn probes(entity: Entity, key: Option<&str>, f: &Fields) -> Vec<u64> {
    let get = |name: &str| f.get(name).unwrap_or_default();
    // A value as the import's match probes normalise it.
    let part = |name: &str| norm_part(entity, name, get(name));
    let id_of = |name: &str| {
        f.get(name)
            .filter(|s| !s.is_empty() && *s != "0")
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    // Probes are hashed as (kind, parts...) directly: no string is built for them.
    let mut push = |kind: &str, parts: &[&str]| {
        if parts.first().is_some_and(|p| !p.is_empty()) {
            out.push(hash_probe(kind, parts));
        }
    };
    match entity {
        Entity::Client | Entity::Deal => {
            // The import writes the record key into `uid` when the template sets none.
            let uid = get("uid");
            push(
                "uid",
                &[if uid.is_empty() {
                    key.unwrap_or("")
                } else {
                    uid
                }],
            );
            push("title", &[&part("title"), id_of("clid")]);
        }
        Entity::Person => {
            push("mail", &[&part("mail")]);
            push("tel", &[&part("tel")]);
            push("mob", &[&part("mob")]);
            push("name", &[&part("person"), id_of("clid")]);
        }
        Entity::History => {
            let datum = norm_field("datum", get("datum"));
            push("hist", &[&part("content"), id_of("clid"), &datum]);
        }
        Entity::Task => {
            push(
                "task",
                &[&part("title"), id_of("clid"), get("datum").trim()],
            );
        }
        Entity::Invoice => push("invoice", &[get("invoice").trim(), id_of("did")]),
        Entity::Payment => push("payment", &[get("invoice").trim(), get("summa").trim()]),
    }
    out
}

/// A title as compared: a deal's without the number prefix the real server gives it ("СД2: ").
fn norm_title_of(entity: Entity, title: &str) -> String {
    if entity == Entity::Deal {
        norm_title(strip_deal_number(title))
    } else {
        norm_title(title)
    }
}

/// Inputs of one entity's matching, both sides in memory (tests and the matching bench; the
/// `reconcile` command streams them in, see `run`).
pub struct EntityInput<'a> {
    pub entity: Entity,
    pub source: &'a [SourceRecord],
    pub crm: &'a [CrmRecord],
    /// key → CRM id from an import journal, when one is given.
    pub journal: Option<&'a HashMap<String, i64>>,
}

/// Match every entity; `inputs` must come in reference order (clients first). The same path as
/// the command's: CRM records into the store and the probe index, the source in batches.
pub fn reconcile(inputs: &[EntityInput<'_>]) -> Result<Reconciliation, ReconcileError> {
    let mut out = Reconciliation::new()?;
    for input in inputs {
        let findings = out.findings();
        let mut crm = CrmSide::new(input.entity);
        for r in input.crm {
            crm.push(r.clone(), findings)?;
        }
        let crm = crm.finish(findings)?;
        let lookup = |key: &str| Ok(input.journal.and_then(|j| j.get(key).copied()));
        let mut matching = EntityMatch::new(&crm, input.journal.map(|_| &lookup as JournalLookup));
        for batch in input.source.chunks(BATCH) {
            matching.batch(batch.to_vec(), findings)?;
        }
        let summary = matching.finish(findings)?;
        out.summaries.push((input.entity, summary));
    }
    Ok(out)
}

/// A probe as a 64-bit hash: 400,000 probes of 100,000 records take a few MB this way instead
/// of a string map. A collision can only make two different values look alike, which the field
/// comparison then shows as a difference.
fn hash_probe(kind: &str, parts: &[&str]) -> u64 {
    crate::hash::fast_one((kind, parts))
}

/// One entity's CRM side as it arrives: values go to the store as they come (a batch at a
/// time), only the ids and the probe hashes stay in memory (≈ 60 B a record).
pub struct CrmSide {
    entity: Entity,
    ids: Vec<i64>,
    probes: Vec<(u64, u32)>,
    pending: Vec<CrmRecord>,
}

impl CrmSide {
    /// A fresh side: the store's CRM records of the previous entity are dropped.
    pub fn new(entity: Entity) -> CrmSide {
        CrmSide {
            entity,
            ids: Vec::new(),
            probes: Vec::new(),
            pending: Vec::new(),
        }
    }

    pub fn push(&mut self, rec: CrmRecord, findings: &Findings) -> Result<(), ReconcileError> {
        if self.ids.is_empty() && self.pending.is_empty() {
            findings.clear_crm()?;
        }
        self.pending.push(rec);
        if self.pending.len() >= BATCH {
            self.flush(findings)?;
        }
        Ok(())
    }

    fn flush(&mut self, findings: &Findings) -> Result<(), ReconcileError> {
        let entity = self.entity;
        let pending = std::mem::take(&mut self.pending);
        let hashes: Vec<Vec<u64>> = pending
            .par_iter()
            .map(|r| probes(entity, None, &r.fields))
            .collect();
        findings.in_transaction(|| {
            for (rec, hs) in pending.iter().zip(hashes) {
                let idx = self.ids.len() as u32;
                findings.add_crm(idx, rec)?;
                self.ids.push(rec.id);
                self.probes.extend(hs.into_iter().map(|h| (h, idx)));
            }
            Ok(())
        })
    }

    /// Every record is in: the probe index is sorted.
    pub fn finish(mut self, findings: &Findings) -> Result<CrmIndex, ReconcileError> {
        if self.ids.is_empty() && self.pending.is_empty() {
            findings.clear_crm()?;
        }
        self.flush(findings)?;
        self.probes.par_sort_unstable();
        self.probes.shrink_to_fit();
        Ok(CrmIndex {
            entity: self.entity,
            ids: self.ids,
            probes: self.probes,
        })
    }
}

/// An entity's CRM records by probe hash (a sorted vector, searched by range), and their ids by
/// position; their values are in the store under the same position.
pub struct CrmIndex {
    entity: Entity,
    ids: Vec<i64>,
    probes: Vec<(u64, u32)>,
}

impl CrmIndex {
    fn get(&self, h: u64) -> impl Iterator<Item = u32> + '_ {
        let from = self.probes.partition_point(|(x, _)| *x < h);
        self.probes[from..]
            .iter()
            .take_while(move |(x, _)| *x == h)
            .map(|(_, i)| *i)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The CRM id an import journal recorded for a key (of the entity being matched), if any.
pub type JournalLookup<'a> = &'a dyn Fn(&str) -> Result<Option<i64>, ReconcileError>;

/// One entity's matching, fed the source side in batches in source order: the first source
/// record to reach a CRM record gets it, so the order is what the import's would be.
pub struct EntityMatch<'a> {
    crm: &'a CrmIndex,
    journal: Option<JournalLookup<'a>>,
    /// CRM id → position, only when a journal's ids are to be found.
    by_id: Vec<(i64, u32)>,
    claimed: Vec<u64>,
    summary: EntitySummary,
    names: super::fields::Names,
}

impl<'a> EntityMatch<'a> {
    pub fn new(crm: &'a CrmIndex, journal: Option<JournalLookup<'a>>) -> EntityMatch<'a> {
        let mut by_id: Vec<(i64, u32)> = Vec::new();
        if journal.is_some() {
            by_id = crm
                .ids
                .iter()
                .enumerate()
                .map(|(i, id)| (*id, i as u32))
                .collect();
            // Of two records with one id the later one counts (as it did in a map built in
            // order); the export never gives an id twice anyway.
            by_id.sort_by_key(|(id, i)| (*id, std::cmp::Reverse(*i)));
            by_id.dedup_by_key(|(id, _)| *id);
        }
        EntityMatch {
            crm,
            journal,
            by_id,
            claimed: vec![0; crm.len().div_ceil(64)],
            summary: EntitySummary {
                in_crm: crm.len() as u64,
                ..Default::default()
            },
            names: Default::default(),
        }
    }

    fn is_claimed(&self, i: u32) -> bool {
        self.claimed[i as usize / 64] & (1 << (i % 64)) != 0
    }

    fn claim(&mut self, i: u32) {
        self.claimed[i as usize / 64] |= 1 << (i % 64);
    }

    fn position(&self, id: i64) -> Option<u32> {
        let at = self.by_id.binary_search_by_key(&id, |(x, _)| *x).ok()?;
        Some(self.by_id[at].1)
    }

    /// Match the next source records.
    pub fn batch(
        &mut self,
        records: Vec<SourceRecord>,
        findings: &Findings,
    ) -> Result<(), ReconcileError> {
        let entity = self.crm.entity;
        self.summary.in_source += records.len() as u64;
        // References resolve to the CRM ids their records matched (earlier entities are done;
        // a reference within the entity stays unresolved, as it always did).
        let mut resolved: Vec<Fields> = Vec::with_capacity(records.len());
        for rec in &records {
            let mut fields = rec.fields.clone();
            for r in rec.refs.iter().filter(|r| r.entity != entity) {
                if let Some(id) = findings.matched_id(r.entity, &r.key)? {
                    fields.set(&r.field, id.to_string());
                }
            }
            resolved.push(fields);
        }
        let probed: Vec<Vec<u64>> = records
            .par_iter()
            .zip(&resolved)
            .map(|(rec, fields)| probes(entity, Some(&rec.key), fields))
            .collect();

        findings.in_transaction(|| {
            // Claiming is sequential: the first source record to reach a CRM record gets it.
            let mut pairs: Vec<(usize, CrmRecord)> = Vec::new();
            for (si, rec) in records.iter().enumerate() {
                let journal_id = match self.journal {
                    Some(lookup) => lookup(&rec.key)?,
                    None => None,
                };
                // The journal's id is the strongest evidence; otherwise the first probe that hits.
                let mut hit: Option<u32> = journal_id.and_then(|id| self.position(id));
                let mut candidates: Vec<u32> = Vec::new();
                for &p in &probed[si] {
                    let free: Vec<u32> = self.crm.get(p).filter(|i| !self.is_claimed(*i)).collect();
                    if free.is_empty() {
                        continue;
                    }
                    if hit.is_none_or(|h| free.contains(&h)) {
                        candidates = free;
                        break;
                    }
                }
                if journal_id.is_none() {
                    hit = candidates
                        .iter()
                        .copied()
                        .min_by_key(|i| self.crm.ids[*i as usize]);
                }
                let Some(found) = hit else {
                    self.summary.missing += 1;
                    findings.add_missing(&Missing {
                        entity,
                        key: rec.key.clone(),
                        rows: rec.rows.labels(),
                        fields: resolved[si].clone(),
                        journal_id,
                    })?;
                    continue;
                };
                self.summary.matched += 1;
                self.claim(found);
                let id = self.crm.ids[found as usize];
                findings.add_matched(entity, &rec.key, id)?;
                pairs.push((si, findings.crm(found, &mut self.names)?));

                candidates.retain(|i| *i != found);
                if !candidates.is_empty() {
                    let mut dup_ids: Vec<i64> = vec![id];
                    for &i in &candidates {
                        self.claim(i);
                        dup_ids.push(self.crm.ids[i as usize]);
                    }
                    dup_ids.sort_unstable();
                    self.summary.duplicated += 1;
                    findings.add_duplicate(&Duplicate {
                        entity,
                        key: rec.key.clone(),
                        rows: rec.rows.labels(),
                        ids: dup_ids,
                    })?;
                }
            }

            let found_diffs: Vec<Vec<FieldDiff>> = pairs
                .par_iter()
                .map(|(si, crm)| diffs(entity, &records[*si], &resolved[*si], crm))
                .collect();
            for d in found_diffs {
                if !d.is_empty() {
                    self.summary.different += 1;
                    for d in &d {
                        findings.add_different(d)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// The source side is done: the CRM records no one claimed are only in the CRM.
    pub fn finish(mut self, findings: &Findings) -> Result<EntitySummary, ReconcileError> {
        let entity = self.crm.entity;
        findings.in_transaction(|| {
            for i in 0..self.crm.len() as u32 {
                if !self.is_claimed(i) {
                    self.summary.only_in_crm += 1;
                    findings.add_only_in_crm(entity, i)?;
                }
            }
            Ok(())
        })?;
        Ok(self.summary)
    }
}

/// Field-level differences between a source record and the CRM record it matched.
fn diffs(entity: Entity, rec: &SourceRecord, fields: &Fields, crm: &CrmRecord) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    for (field, want) in fields.iter() {
        // Only what the list shows can be compared.
        let Some(have) = crm.fields.get(field) else {
            continue;
        };
        let reference = rec.refs.iter().find(|r| r.field == field);
        let same = if want == have {
            true
        } else if reference.is_some() {
            // A link compares as the CRM id its record matched; history may link several
            // persons ("3;7"). An empty or 0 link is no link.
            want.parse::<i64>().is_ok() && have.split([';', ',']).any(|id| id.trim() == want)
        } else if field == "title" {
            norm_title_of(entity, want) == norm_title_of(entity, have)
        } else {
            norm_field(field, want) == norm_field(field, have)
        };
        if !same {
            out.push(FieldDiff {
                entity,
                key: rec.key.clone(),
                id: crm.id,
                rows: rec.rows.labels(),
                field: field.to_string(),
                // A link says which record it should point at, not only its id.
                source: match reference {
                    Some(r) => format!("{want} ({} {})", r.entity, r.key),
                    None => want.to_string(),
                },
                crm: have.to_string(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::Names;
    use serde_json::{json, Value};

    fn src(entity: Entity, key: &str, fields: Value) -> SourceRecord {
        let at = SourcePos {
            file: "in.csv".into(),
            sheet: None,
            row: 0,
        };
        SourceRecord {
            entity,
            key: key.into(),
            fields: Fields::from_map(fields.as_object().unwrap(), &mut Names::default()),
            refs: vec![],
            rows: Rows::new(Arc::new(at), vec![2]),
        }
    }
    fn crm(id: i64, fields: Value) -> CrmRecord {
        CrmRecord {
            id,
            fields: Fields::from_map(fields.as_object().unwrap(), &mut Names::default()),
        }
    }

    #[test]
    fn finds_missing_different_duplicates_and_extras() {
        let clients = vec![src(Entity::Client, "C1", json!({"title": "ООО «Ромашка»"}))];
        let crm_clients = vec![crm(
            1,
            json!({"clid": 1, "uid": "C1", "title": "Ромашка, ООО"}),
        )];
        let mut p1 = src(
            Entity::Person,
            "P1",
            json!({"person": "Иван Петров", "mail": "ivan@x.ru"}),
        );
        p1.refs.push(Reference {
            field: "clid".into(),
            entity: Entity::Client,
            key: "C1".into(),
        });
        let p2 = src(
            Entity::Person,
            "P2",
            json!({"person": "Анна", "tel": "8 (342) 200-00-00"}),
        );
        let p3 = src(
            Entity::Person,
            "P3",
            json!({"person": "Нет Такого", "mail": "no@x.ru"}),
        );
        let persons = vec![p1, p2, p3];
        let crm_persons = vec![
            crm(
                10,
                json!({"pid": 10, "person": "Иван Петров", "mail": "IVAN@x.ru", "clid": 1}),
            ),
            crm(
                11,
                json!({"pid": 11, "person": "Анна", "tel": "+7(342)200-00-00", "clid": 0}),
            ),
            crm(
                12,
                json!({"pid": 12, "person": "Анна Изменённая", "tel": "+7 342 200 00 00"}),
            ),
            crm(
                13,
                json!({"pid": 13, "person": "Чужой", "mail": "other@x.ru"}),
            ),
        ];
        let r = reconcile(&[
            EntityInput {
                entity: Entity::Client,
                source: &clients,
                crm: &crm_clients,
                journal: None,
            },
            EntityInput {
                entity: Entity::Person,
                source: &persons,
                crm: &crm_persons,
                journal: None,
            },
        ])
        .unwrap();
        assert_eq!(r.summaries[0].1.matched, 1);
        assert!(r.summaries[0].1.missing == 0 && r.summaries[0].1.only_in_crm == 0);
        let p = &r.summaries[1].1;
        assert_eq!(
            (p.matched, p.missing, p.only_in_crm, p.duplicated),
            (2, 1, 1, 1)
        );
        assert_eq!(r.missing().unwrap()[0].key, "P3");
        assert_eq!(r.duplicates().unwrap()[0].ids, vec![11, 12]);
        assert_eq!(r.only_in_crm().unwrap()[0].1.id, 13);
        assert!(r.different().unwrap().is_empty(), "{r:?}");
    }

    #[test]
    fn journal_ids_win_and_deleted_records_are_missing() {
        let persons = vec![
            src(
                Entity::Person,
                "P1",
                json!({"person": "Иван", "ptitle": "Директор"}),
            ),
            src(Entity::Person, "P2", json!({"person": "Пётр"})),
        ];
        let crm_persons = vec![crm(
            5,
            json!({"pid": 5, "person": "Иван", "ptitle": "Бухгалтер"}),
        )];
        let journal: HashMap<String, i64> = [("P1".to_string(), 5), ("P2".to_string(), 6)].into();
        let r = reconcile(&[EntityInput {
            entity: Entity::Person,
            source: &persons,
            crm: &crm_persons,
            journal: Some(&journal),
        }])
        .unwrap();
        assert_eq!(r.missing().unwrap().len(), 1);
        assert_eq!(r.missing().unwrap()[0].journal_id, Some(6));
        assert_eq!(r.different().unwrap().len(), 1);
        assert_eq!(
            (
                r.different().unwrap()[0].field.as_str(),
                r.different().unwrap()[0].source.as_str(),
                r.different().unwrap()[0].crm.as_str()
            ),
            ("ptitle", "Директор", "Бухгалтер")
        );
    }

    #[test]
    fn deal_prefix_and_history_line_breaks_are_not_differences() {
        let deals = vec![src(Entity::Deal, "D1", json!({"title": "Поставка"}))];
        let crm_deals = vec![crm(
            1,
            json!({"did": 1, "uid": "D1", "title": "СД2: Поставка"}),
        )];
        let hist = vec![src(
            Entity::History,
            "H1",
            json!({"content": "Звонок\n\"Договорились\"", "datum": "2024-06-25 14:25"}),
        )];
        let crm_hist = vec![crm(
            7,
            json!({"cid": 7, "content": "Звонок<br />\nДоговорились", "datum": "2024-06-25 14:25:00", "clid": 0}),
        )];
        let r = reconcile(&[
            EntityInput {
                entity: Entity::Deal,
                source: &deals,
                crm: &crm_deals,
                journal: None,
            },
            EntityInput {
                entity: Entity::History,
                source: &hist,
                crm: &crm_hist,
                journal: None,
            },
        ])
        .unwrap();
        assert!(r.is_clean(), "{r:?}");
    }

    #[test]
    fn unlinked_history_differs_on_pid_and_invisible_records_are_not_missing() {
        let persons = vec![src(
            Entity::Person,
            "EXT-1001",
            json!({"person": "Петрова"}),
        )];
        let crm_persons = vec![crm(30, json!({"pid": 30, "person": "Петрова"}))];
        let link = |key: &str| Reference {
            field: "pid".into(),
            entity: Entity::Person,
            key: key.into(),
        };
        let mut h1 = src(
            Entity::History,
            "EXT-1001/1",
            json!({"content": "Встреча", "datum": "2024-02-04 10:07:00"}),
        );
        h1.refs.push(link("EXT-1001"));
        let mut h2 = src(
            Entity::History,
            "EXT-1001/2",
            json!({"content": "Звонок", "datum": "2024-02-05 10:07:00"}),
        );
        h2.refs.push(link("EXT-1001"));
        let hist = vec![h1, h2];
        // The person was deleted (pid cleared on its history) and re-created as pid 30.
        let crm_hist = vec![
            crm(
                1,
                json!({"cid": 1, "content": "Встреча", "datum": "2024-02-04 10:07:00", "pid": ""}),
            ),
            crm(
                2,
                json!({"cid": 2, "content": "Звонок", "datum": "2024-02-05 10:07:00", "pid": "12;30"}),
            ),
        ];
        let journal: HashMap<String, i64> = [("EXT-1002".to_string(), 31)].into();
        let mut persons2 = persons.clone();
        persons2.push(src(
            Entity::Person,
            "EXT-1002",
            json!({"person": "Скрытый"}),
        ));
        let mut r = reconcile(&[
            EntityInput {
                entity: Entity::Person,
                source: &persons2,
                crm: &crm_persons,
                journal: Some(&journal),
            },
            EntityInput {
                entity: Entity::History,
                source: &hist,
                crm: &crm_hist,
                journal: None,
            },
        ])
        .unwrap();
        assert_eq!(r.different().unwrap().len(), 1, "{r:?}");
        let diffs = r.different().unwrap();
        let d = &diffs[0];
        assert_eq!(
            (
                d.key.as_str(),
                d.field.as_str(),
                d.source.as_str(),
                d.crm.as_str()
            ),
            ("EXT-1001/1", "pid", "30 (person EXT-1001)", "")
        );
        assert_eq!(r.summaries[1].1.different, 1);
        // EXT-1002 looked missing; info found it with owner 0.
        assert_eq!(r.missing().unwrap().len(), 1);
        r.mark_invisible(&[((Entity::Person, 31), String::new())].into())
            .unwrap();
        assert!(r.missing().unwrap().is_empty());
        assert_eq!(r.invisible[0].key, "EXT-1002");
        assert_eq!(
            (r.summaries[0].1.missing, r.summaries[0].1.invisible),
            (0, 1)
        );
        assert!(!r.is_clean());
    }
}
