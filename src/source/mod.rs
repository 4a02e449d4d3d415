//! Reading rows from CSV, XLSX and XLS files.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("{0}")]
    Other(String),
}
