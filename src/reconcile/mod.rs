//! Reconcile: matching source records with CRM records by key; differences.

pub mod fields;
pub mod matcher;
pub mod report;
pub mod run;

pub use fields::{Fields, Names};
pub use matcher::{
    reconcile, CrmRecord, Duplicate, EntityInput, EntitySummary, FieldDiff, Missing,
    Reconciliation, Rows, SourceRecord,
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("reconcile needs a template with at least one entity")]
    NothingToCompare,
}
