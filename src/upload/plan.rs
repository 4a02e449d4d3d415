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

/// Why a source row sends nothing: its first error, and all its error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct RowProblem {
    pub entity: Option<Entity>,
    /// The CRM field, or else the source column.
    pub field: Option<String>,
    pub value: String,
    pub message: String,
}

/// One source row as a run sees it: where it is, why it is invalid (if it is), and the plan
/// records it holds.
#[derive(Debug, Clone)]
pub struct PlannedRow {
    pub pos: SourcePos,
    pub invalid: Option<RowProblem>,
    pub records: Vec<usize>,
}

/// What a source promises the CRM: the plan, every row, and how many records each entity lost to
/// invalid rows.
#[derive(Debug, Default)]
pub struct SourcePlan {
    pub plan: Plan,
    pub rows: Vec<PlannedRow>,
    pub invalid_by_entity: BTreeMap<Entity, u64>,
}

impl SourcePlan {
    /// Plan mapped rows. An invalid row sends nothing (its valid records neither: half a row in
    /// the CRM is harder to repair than a row the report lists); blank rows are skipped; `only`
    /// keeps just those row numbers (`--only-failed`).
    pub fn from_rows(
        rows: impl Iterator<Item = Result<MappedRow, SourceError>>,
        only: Option<&HashSet<u64>>,
    ) -> Result<SourcePlan, SourceError> {
        let mut out = SourcePlan::default();
        for m in rows {
            let m = m?;
            if m.blank || only.is_some_and(|o| !o.contains(&m.pos.row)) {
                continue;
            }
            let mut row = PlannedRow {
                pos: m.pos.clone(),
                invalid: None,
                records: Vec::new(),
            };
            if !m.is_valid() {
                for e in &m.rejected {
                    *out.invalid_by_entity.entry(*e).or_default() += 1;
                }
                let errors = || m.problems.iter().filter(|p| p.severity == Severity::Error);
                let first = errors().next().or(m.problems.first());
                row.invalid = Some(RowProblem {
                    entity: first.and_then(|p| p.entity),
                    field: first.and_then(|p| p.field.clone().or(p.column.clone())),
                    value: first.map(|p| p.value.clone()).unwrap_or_default(),
                    message: match first {
                        Some(_) => errors()
                            .map(|p| p.message.as_str())
                            .collect::<Vec<_>>()
                            .join("; "),
                        None => "invalid row".into(),
                    },
                });
            } else {
                for rec in m.records {
                    let i = out
                        .plan
                        .add(m.pos.row, rec.entity, rec.key, rec.fields, rec.refs);
                    row.records.push(i);
                }
            }
            out.rows.push(row);
        }
        Ok(out)
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
