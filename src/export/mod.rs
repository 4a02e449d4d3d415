//! Export: paging through list endpoints into CSV and XLSX writers.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ExportError {
    #[error("{0}")]
    Other(String),
}
