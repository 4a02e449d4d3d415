//! What an import run did, as the terminal summary, `--json` and `reconcile --fix` see it.

use crate::crm::Entity;
use crate::report::import::Outcome;
use crate::report::summary::SummaryTable;
use crate::upload::EntityCounts;
use serde::Serialize;
use std::collections::BTreeMap;

/// One entity's counts, as the summary table and `--json` show them. Rows: `read` = `valid` +
/// `invalid` (rows holding a record of this entity — the figures `validate` prints). Records
/// (distinct keys of the valid rows): `records` = created + existing + earlier + failed +
/// unresolved + not_sent.
#[derive(Debug, Default)]
pub struct EntitySummary {
    pub valid: u64,
    pub invalid: u64,
    pub counts: EntityCounts,
}

impl EntitySummary {
    /// Rows holding a record of this entity: valid and invalid ones.
    pub fn read(&self) -> u64 {
        self.valid + self.invalid
    }
}

/// `--json` shows `read` too, though it is derived.
impl Serialize for EntitySummary {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            read: u64,
            valid: u64,
            invalid: u64,
            #[serde(flatten)]
            counts: &'a EntityCounts,
        }
        Shown {
            read: self.read(),
            valid: self.valid,
            invalid: self.invalid,
            counts: &self.counts,
        }
        .serialize(s)
    }
}

/// A whole run, as the terminal summary and `--json` show it.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub file: String,
    pub target: String,
    /// Nothing was sent: the counts say what a run would do.
    pub dry_run: bool,
    pub rows: u64,
    pub rows_by_outcome: BTreeMap<&'static str, u64>,
    pub entities: BTreeMap<Entity, EntitySummary>,
    pub report: Option<String>,
    pub csv_report: Option<String>,
    pub journal: Option<String>,
    pub interrupted: bool,
    /// Why the run stopped early (a fatal error), if it did.
    pub stopped: Option<String>,
    pub seconds: f64,
    /// `delete`: the backup written before the first delete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSummary>,
}

/// The backup of a delete: the XLSX, the template that restores it, records per entity.
#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    pub file: String,
    pub template: String,
    pub records: BTreeMap<Entity, u64>,
}

impl Summary {
    /// Every row is all there (or, in a dry run, would be sent whole).
    pub fn is_clean(&self) -> bool {
        self.rows_by_outcome.keys().all(|o| Outcome::is_success(o))
    }

    /// Every row has exactly one outcome and every entity's figures add up; otherwise the run
    /// is an internal error, never a success.
    pub fn check_adds_up(&self) -> Result<(), crate::Error> {
        let outcomes: u64 = self.rows_by_outcome.values().sum();
        if outcomes != self.rows {
            return Err(crate::Error::Internal(format!(
                "{} rows read but {outcomes} row outcomes counted",
                self.rows
            )));
        }
        for (e, c) in &self.entities {
            if !c.counts.adds_up() {
                return Err(crate::Error::Internal(format!(
                    "the {e} figures do not add up: {c:?}"
                )));
            }
        }
        Ok(())
    }
}

pub fn summary_table(entities: &BTreeMap<Entity, EntitySummary>) -> SummaryTable {
    SummaryTable {
        chart_title: "Import by entity".into(),
        columns: [
            "entity",
            "rows",
            "invalid rows",
            "records",
            "created",
            "existing",
            "earlier run",
            "failed",
            "unresolved",
            "not sent",
            "updated",
            "unchanged",
            "not found",
            "ambiguous",
            "ambiguous resolved",
        ]
        .map(String::from)
        .to_vec(),
        rows: entities
            .iter()
            .map(|(e, s)| {
                let c = &s.counts;
                (
                    e.to_string(),
                    vec![
                        s.read(),
                        s.invalid,
                        c.records,
                        c.created,
                        c.existing,
                        c.earlier,
                        c.failed,
                        c.unresolved,
                        c.not_sent,
                        c.updated,
                        c.unchanged,
                        c.not_found,
                        c.ambiguous,
                        c.ambiguous_resolved,
                    ],
                )
            })
            .collect(),
        charted: vec![3, 4, 5, 6, 7, 9],
    }
}
