//! How a source row is planned: its outcome-relevant facts (invalid parts, skips, per-entity row
//! counts) and how payloads are chunked. The records themselves live in the journal
//! ([`super::planstore`]), so memory does not grow with the file.

use crate::crm::Entity;
use crate::source::SourcePos;
use crate::template::{MappedRow, Severity};
use std::collections::{BTreeMap, HashSet};

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
    fn chunks_respect_rows_and_bytes() {
        let c = chunk_by_size((0..10).collect(), |_| 10, 4, 1000);
        assert_eq!(c.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
        let c = chunk_by_size((0..10).collect(), |_| 10, 100, 35);
        assert_eq!(c.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
        let c = chunk_by_size(vec![1], |_| 10_000, 100, 35);
        assert_eq!(c.len(), 1);
    }
}
