//! One file per subcommand: clap arguments in, a job (`crate::job`) run, its outcome printed
//! and turned into an exit code. No command calls another's `run`.

pub mod args;
pub mod delete;
pub mod docs;
pub mod export;
pub mod fields;
pub mod import;
pub mod reconcile;
pub mod sandbox;
pub mod template;
pub mod validate;
