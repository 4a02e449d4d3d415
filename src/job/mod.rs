//! Jobs: what each command does, as library types with plain inputs (paths, a resolved
//! [`Target`], options) and typed outcomes. No clap here: `cmd/` turns arguments into a job and
//! the job's outcome into output and an exit code; a library user or a test runs a job directly.
//!
//! - [`ValidateJob`]: source → template checks (→ the CRM's fields and dictionaries, read-only)
//!   → the validation report.
//! - [`ImportJob`]: source → template → plan → upload (journaled) → the import report.
//! - [`ExportJob`] (owned by `export`): CRM → XLSX/CSV.
//! - [`ReconcileJob`]: source and CRM compared → the reconcile report; `fix` runs an
//!   [`ImportJob`] for what is missing.

pub mod import;
pub mod names;
pub mod reconcile;
pub mod template;
pub mod validate;

pub use crate::export::ExportJob;
pub use import::{ImportEvent, ImportJob, ImportOutcome, OnlyFailed};
pub use reconcile::{ReconcileJob, ReconcileOutcome};
pub use template::TemplateInitJob;
pub use validate::{ValidateEvent, ValidateJob, ValidateOutcome};

use crate::config::{Connection, ConnectionOverrides};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::Result;
use std::path::PathBuf;

/// The CRM a job talks to.
#[derive(Debug, Clone)]
pub enum Target {
    /// The embedded sandbox on this SQLite file, started for the job and stopped after it.
    Sandbox(PathBuf),
    /// A CRM at a resolved connection.
    Crm(Connection),
    /// The CRM these overrides (with the environment and profile) name, resolved when the job
    /// first needs it: a dry run never does, and a bad template is said before a missing URL.
    Configured(ConnectionOverrides),
}

impl Target {
    /// The same target with its connection resolved (`config::resolve`).
    pub fn resolve(&self) -> Result<Target> {
        Ok(match self {
            Target::Configured(o) => Target::Crm(crate::config::resolve(o)?),
            other => other.clone(),
        })
    }

    /// Start the sandbox (if it is one) and say where to connect; the sandbox runs while the
    /// returned handle lives.
    pub fn connect(&self) -> Result<(Option<Sandbox>, Connection)> {
        match self {
            Target::Sandbox(db) => {
                let s = Sandbox::start(SandboxConfig {
                    db: db.display().to_string(),
                    ..SandboxConfig::default()
                })?;
                let c = s.connection();
                Ok((Some(s), c))
            }
            Target::Crm(c) => Ok((None, c.clone())),
            Target::Configured(o) => Ok((None, crate::config::resolve(o)?)),
        }
    }

    /// What identifies the CRM across runs and working directories (a sandbox by its file's
    /// absolute path): part of a default journal's name.
    pub fn identity(&self) -> Result<String> {
        Ok(match self {
            Target::Sandbox(db) => format!(
                "sandbox {}",
                std::path::absolute(db)
                    .unwrap_or_else(|_| db.clone())
                    .display()
            ),
            other => other.name()?,
        })
    }

    /// What a journal records as the run's target. The sandbox listens on a new port each run:
    /// its database file is what identifies it.
    pub fn name(&self) -> Result<String> {
        Ok(match self {
            Target::Sandbox(db) => format!("sandbox {}", db.display()),
            Target::Crm(c) => format!("{} as {}", c.url, c.login),
            Target::Configured(o) => Target::Crm(crate::config::resolve(o)?).name()?,
        })
    }
}

/// The async runtime a job does its HTTP on: `workers` threads (two suit the 2-core machines
/// this runs on, shared with the server), or the calling thread alone for a few calls.
pub fn runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime> {
    let mut builder = match workers {
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_current_thread(),
    };
    builder.enable_all().build().map_err(crate::Error::Runtime)
}
