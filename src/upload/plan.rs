//! The upload plan: the distinct records of a run, each once however many rows hold it, with the
//! rows it came from and the references it needs resolved before it can be sent.

use crate::crm::Entity;
use crate::source::{SourceError, SourcePos};
use crate::template::{MappedRow, Reference, Severity};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Clone, PartialEq)]
pub struct PlanRecord {
    pub entity: Entity,
    pub key: String,
    /// The fields as compact JSON text: a run holds every record until the report is written,
    /// and text takes a fraction of a JSON map's memory. [`PlanRecord::fields`] parses it.
    pub fields_json: Box<str>,
    pub refs: Vec<Reference>,
    /// Source rows (1-based, as the report shows them) holding this record.
    pub rows: Vec<u64>,
}

impl PlanRecord {
    /// The fields to send (references not yet resolved).
    pub fn fields(&self) -> Map<String, Value> {
        // Written by `Plan::add` from a map, so it parses back into one.
        serde_json::from_str(&self.fields_json).unwrap_or_default()
    }

    /// Rows as the journal stores them ("2,5,9"), shortened for records shared by many rows.
    pub fn rows_text(&self) -> String {
        let mut s: Vec<String> = self.rows.iter().take(20).map(u64::to_string).collect();
        if self.rows.len() > 20 {
            s.push(format!("… ({} rows)", self.rows.len()));
        }
        s.join(",")
    }
}

#[derive(Debug, Default)]
pub struct Plan {
    records: Vec<PlanRecord>,
    index: HashMap<(Entity, String), usize>,
}

impl Plan {
    pub fn new() -> Plan {
        Plan::default()
    }

    /// Add one row's record; a key seen before only gains the row (the first row's fields win,
    /// as the CRM would keep the first one created).
    pub fn add(
        &mut self,
        row: u64,
        entity: Entity,
        key: String,
        fields: Map<String, Value>,
        refs: Vec<Reference>,
    ) -> usize {
        if let Some(&i) = self.index.get(&(entity, key.clone())) {
            let r = &mut self.records[i];
            if r.rows.last() != Some(&row) {
                r.rows.push(row);
            }
            return i;
        }
        let i = self.records.len();
        self.index.insert((entity, key.clone()), i);
        self.records.push(PlanRecord {
            entity,
            key,
            fields_json: serde_json::to_string(&fields)
                .unwrap_or_else(|_| "{}".into())
                .into_boxed_str(),
            refs,
            rows: vec![row],
        });
        i
    }

    /// The records, by value (for a caller that turns them into something else as it goes).
    pub fn into_records(self) -> Vec<PlanRecord> {
        self.records
    }

    pub fn records(&self) -> &[PlanRecord] {
        &self.records
    }

    pub fn get(&self, i: usize) -> &PlanRecord {
        &self.records[i]
    }

    pub fn find(&self, entity: Entity, key: &str) -> Option<usize> {
        self.index.get(&(entity, key.to_string())).copied()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Record indices of one entity, in first-seen order.
    pub fn of(&self, entity: Entity) -> Vec<usize> {
        (0..self.records.len())
            .filter(|&i| self.records[i].entity == entity)
            .collect()
    }
}

/// Why some or all of a source row's records are not sent: its first error, and every error
/// of the row, each stated once.
#[derive(Debug, Clone, PartialEq)]
pub struct RowProblem {
    pub entity: Option<Entity>,
    /// The CRM field, or else the source column.
    pub field: Option<String>,
    pub value: String,
    /// Every error of the row, each once, each naming its entity, field and value.
    pub message: String,
}

/// Why a row has no records to send although it is not invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowSkip {
    /// Nothing in the row.
    Blank,
    /// Left out by `--only-failed` (it made it in an earlier run).
    NotSelected,
}

/// One source row as a run sees it: where it is, what of it is invalid (if anything), and the
/// plan records it holds (its valid records: a record is held back only for its own reasons).
#[derive(Debug, Clone)]
pub struct PlannedRow {
    pub pos: SourcePos,
    pub invalid: Option<RowProblem>,
    /// Entities whose record in this row is invalid (not in `records`).
    pub rejected: Vec<Entity>,
    pub records: Vec<usize>,
    pub skip: Option<RowSkip>,
}

impl PlannedRow {
    /// One mapped row as a run plans it: blank, left out by `only`, or its problems stated once
    /// each; answers the row (without record indices) and its valid records, to be added to a
    /// plan in order. `counts` gains the row's valid and invalid records per entity.
    pub fn of(
        m: MappedRow,
        only: Option<&HashSet<u64>>,
        counts: &mut BTreeMap<Entity, RowCounts>,
    ) -> (PlannedRow, Vec<crate::template::Record>) {
        let mut row = PlannedRow {
            pos: m.pos.clone(),
            invalid: None,
            rejected: Vec::new(),
            records: Vec::new(),
            skip: None,
        };
        if m.blank {
            row.skip = Some(RowSkip::Blank);
            return (row, Vec::new());
        }
        if only.is_some_and(|o| !o.contains(&m.pos.row)) {
            row.skip = Some(RowSkip::NotSelected);
            return (row, Vec::new());
        }
        if !m.is_valid() {
            for e in &m.rejected {
                counts.entry(*e).or_default().invalid += 1;
            }
            let errors: Vec<&crate::template::Problem> = m
                .problems
                .iter()
                .filter(|p| p.severity == Severity::Error)
                .collect();
            let first = errors.first().copied().or(m.problems.first());
            let mut said: Vec<String> = Vec::new();
            for p in &errors {
                let d = describe_problem(p);
                if !said.contains(&d) {
                    said.push(d);
                }
            }
            row.rejected = m.rejected.clone();
            row.invalid = Some(RowProblem {
                entity: first.and_then(|p| p.entity),
                field: first.and_then(|p| p.field.clone().or(p.column.clone())),
                value: first.map(|p| p.value.clone()).unwrap_or_default(),
                message: if said.is_empty() {
                    "invalid row".into()
                } else {
                    said.join("; ")
                },
            });
        }
        for rec in &m.records {
            counts.entry(rec.entity).or_default().valid += 1;
        }
        (row, m.records)
    }
}

/// Per entity, how many rows hold a valid or an invalid record of it — the figures `validate`
/// prints for the same file and template.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RowCounts {
    pub valid: u64,
    pub invalid: u64,
}

/// What a source promises the CRM: the plan, every row, and per entity how many rows hold a
/// valid or an invalid record of it.
#[derive(Debug, Default)]
pub struct SourcePlan {
    pub plan: Plan,
    pub rows: Vec<PlannedRow>,
    pub by_entity: BTreeMap<Entity, RowCounts>,
}

/// "person mail 'x@': is not a valid e-mail address" — a problem said with what it is about.
pub fn describe_problem(p: &crate::template::Problem) -> String {
    let mut what: Vec<String> = Vec::new();
    if let Some(e) = p.entity {
        what.push(e.to_string());
    }
    if let Some(f) = p.field.clone().or_else(|| p.column.clone()) {
        what.push(f);
    }
    let value = if p.value.is_empty() {
        String::new()
    } else {
        format!(" '{}'", p.value)
    };
    if what.is_empty() {
        format!("{}{value}", p.message)
    } else {
        format!("{}{value}: {}", what.join(" "), p.message)
    }
}

impl SourcePlan {
    /// Plan mapped rows. Every row is kept (blank ones and those `only` leaves out too, so the
    /// report accounts for every row of the file); a row's valid records go into the plan even
    /// when another record of the same row is invalid — a record is held back only when it is
    /// invalid itself or references an invalid record (the mapper rejects those). `only` keeps
    /// just those row numbers (`--only-failed`).
    pub fn from_rows(
        rows: impl Iterator<Item = Result<MappedRow, SourceError>>,
        only: Option<&HashSet<u64>>,
    ) -> Result<SourcePlan, SourceError> {
        let mut out = SourcePlan::default();
        for m in rows {
            let (mut row, records) = PlannedRow::of(m?, only, &mut out.by_entity);
            for rec in records {
                let i = out
                    .plan
                    .add(row.pos.row, rec.entity, rec.key, rec.fields, rec.refs);
                row.records.push(i);
            }
            out.rows.push(row);
        }
        Ok(out)
    }

    /// Rows with at least one invalid record.
    pub fn invalid_rows(&self) -> u64 {
        self.rows.iter().filter(|r| r.invalid.is_some()).count() as u64
    }
}

/// Split payloads into chunks of at most `max_rows` rows and about `max_bytes` of JSON, so no
/// request comes near the server's 8 MB body / 30 s execution limits (NOTES.md §9) whatever the
/// row width. A single row larger than `max_bytes` still goes, alone.
pub fn chunk_by_size<T>(
    items: Vec<T>,
    size_of: impl Fn(&T) -> usize,
    max_rows: usize,
    max_bytes: usize,
) -> Vec<Vec<T>> {
    let max_rows = max_rows.max(1);
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0usize;
    for item in items {
        let n = size_of(&item);
        if !cur.is_empty() && (cur.len() >= max_rows || bytes + n > max_bytes) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += n;
        cur.push(item);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_with_the_same_key_are_planned_once() {
        let mut p = Plan::new();
        let a = p.add(2, Entity::Client, "Ромашка".into(), Map::new(), vec![]);
        let b = p.add(3, Entity::Client, "Ромашка".into(), Map::new(), vec![]);
        p.add(3, Entity::Person, "a@x".into(), Map::new(), vec![]);
        assert_eq!(a, b);
        assert_eq!(p.len(), 2);
        assert_eq!(p.get(a).rows, vec![2, 3]);
        assert_eq!(p.of(Entity::Person), vec![1]);
    }

    #[test]
    fn chunks_respect_rows_and_bytes() {
        let c = chunk_by_size((0..10).collect(), |_| 10, 4, 1000);
        assert_eq!(c.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
        let c = chunk_by_size((0..10).collect(), |_| 10, 100, 35);
        assert_eq!(c.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
        let c = chunk_by_size(vec![1], |_| 10_000, 100, 35);
        assert_eq!(c.len(), 1);
    }
}
