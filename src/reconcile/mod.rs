//! Reconcile: matching source records with CRM records by key; differences.

pub mod matcher;
pub mod normalize;

pub use matcher::{
    reconcile, CrmRecord, Duplicate, EntityInput, EntitySummary, FieldDiff, Missing,
    Reconciliation, SourceRecord,
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("{0}")]
    Other(String),
}
