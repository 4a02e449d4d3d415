//! Reports: XLSX/CSV/JSON outcomes per source row, and the terminal summary.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("{0}")]
    Other(String),
}
