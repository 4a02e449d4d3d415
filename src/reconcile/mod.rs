//! Reconcile: matching source records with CRM records by key.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("{0}")]
    Other(String),
}
