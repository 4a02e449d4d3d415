//! Reports: XLSX/CSV/JSON outcomes per source row, and the terminal summary.

pub mod validation;

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("{path}: cannot write the report: {message}")]
    Write { path: PathBuf, message: String },
}
