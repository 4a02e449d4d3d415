//! The library's error type: every stage has its own typed error, and this enum carries whichever
//! one stopped a command. Anything that reaches `main` is fatal (exit code 2); row-level problems
//! never become an `Error`, they go to the report.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    #[error(transparent)]
    TemplateCheck(#[from] crate::template::server::UnknownFields),
    #[error(transparent)]
    TemplateValues(#[from] crate::template::dictionaries::UnknownValues),
    #[error(transparent)]
    Crm(#[from] crate::crm::CrmError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error(transparent)]
    Upload(#[from] crate::upload::UploadError),
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
    #[error(transparent)]
    Reconcile(#[from] crate::reconcile::ReconcileError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("interrupted")]
    Interrupted,
    /// A pipeline invariant broke (a bug): the run must not pass for a success.
    #[error("internal error: {0}")]
    Internal(String),
    /// Fatal, and already said on the console (first, before the summary): exit 2, print nothing more.
    #[error("stopped (see above)")]
    AlreadyReported,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
