//! The sandbox: a SalesMan-compatible API served from SQLite, with fault injection.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("{0}")]
    Other(String),
}
