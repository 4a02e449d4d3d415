//! Reports and spreadsheet output: per-row outcomes, summaries, the progress display, and the
//! table sinks (XLSX/CSV) every writer shares.

pub mod import;
pub mod progress;
pub mod summary;
pub mod table;

pub use progress::Progress;
pub use table::{Cell, CsvEncoding, CsvOptions, CsvTable, SheetId, XlsxBook};

use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write CSV {path}: {message}")]
    Csv { path: PathBuf, message: String },
    #[error("cannot write XLSX {path}: {message}")]
    Xlsx { path: PathBuf, message: String },
    #[error("cannot read the report {path}: {message}")]
    Read { path: PathBuf, message: String },
}

impl ReportError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ReportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub fn csv(path: &Path, e: csv::Error) -> Self {
        ReportError::Csv {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
    pub fn xlsx(path: &Path, e: rust_xlsxwriter::XlsxError) -> Self {
        ReportError::Xlsx {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}
