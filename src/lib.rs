//! smbatch: bulk data in and out of SalesMan CRM.
//!
//! The library is a pipeline (see `DESIGN.md`): `source` reads rows, `template` maps and validates
//! them into records, `crm` speaks HTTP, `upload`/`export`/`reconcile` orchestrate, `report` writes,
//! `sandbox` serves the same API from SQLite; `values` (dates, phones, money, text) and `hash` are
//! the layer under all of them. `cmd` wires stages together, one file per subcommand.

pub mod cli;
pub mod cmd;
pub mod config;
pub mod crm;
pub mod error;
pub mod export;
pub mod hash;
pub mod reconcile;
pub mod report;
pub mod sandbox;
pub mod source;
pub mod template;
pub mod upload;
pub mod values;

pub use error::{Error, Result};

/// How a command ended, for the process exit code scripts rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything went through (exit code 0).
    Clean,
    /// The run finished but some rows failed or differ; the report says which (exit code 1).
    RowsFailed,
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Clean => 0,
            Exit::RowsFailed => 1,
        }
    }
}
