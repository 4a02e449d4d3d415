//! Reconcile: matching source records with CRM records by key; differences.

pub mod fields;
pub mod matcher;
pub mod report;
pub mod run;
pub mod store;

pub use fields::{Fields, Names};
pub use matcher::{
    reconcile, CrmIndex, CrmRecord, CrmSide, Duplicate, EntityInput, EntityMatch, EntitySummary,
    FieldDiff, Missing, Reconciliation, Rows, SourceRecord,
};
pub use store::{Findings, SourceStore};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("reconcile needs a template with at least one entity")]
    NothingToCompare,
    /// The scratch store (a SQLite file in the temporary directory) failed: usually a full disk.
    #[error("reconcile's scratch store in the temporary directory ($TMPDIR): {0}")]
    Store(#[from] rusqlite::Error),
    /// The import journal given with `--journal` could not be read.
    #[error(transparent)]
    Journal(#[from] crate::upload::UploadError),
}
