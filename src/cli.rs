//! Command-line definitions: the top level. Each subcommand's own arguments live next to its
//! code in `cmd/`, the groups several commands share in `cmd/args.rs`.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "smbatch",
    version,
    about = "Bulk data in and out of SalesMan CRM"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per run: the size of the biggest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a SalesMan-compatible API from SQLite (rehearsals, tests, demos)
    Sandbox(crate::cmd::sandbox::SandboxArgs),
    /// Read a file through a template and report every problem (dry run)
    Validate(crate::cmd::validate::ValidateArgs),
    /// Upload a file into the CRM through a template, journaled and resumable
    Import(crate::cmd::import::ImportArgs),
    /// Export CRM records to XLSX or CSV
    Export(crate::cmd::export::ExportArgs),
    /// Compare a source file with what the CRM holds
    Reconcile(crate::cmd::reconcile::ReconcileArgs),
    /// Work with templates (`template init`)
    #[command(subcommand)]
    Template(crate::cmd::template::TemplateCommand),
    /// List the fields an entity has on the CRM
    Fields(crate::cmd::fields::FieldsArgs),
}

impl Cli {
    /// Run the command the arguments name; each command only turns its arguments into a job and
    /// the job's outcome into output and an exit code.
    pub fn run(self) -> crate::Result<crate::Exit> {
        use crate::cmd::*;
        match self.command {
            Command::Sandbox(args) => sandbox::run(args),
            Command::Validate(args) => validate::run(args),
            Command::Import(args) => import::run(args),
            Command::Export(args) => export::run(args),
            Command::Reconcile(args) => reconcile::run(args),
            Command::Template(cmd) => template::run(cmd),
            Command::Fields(args) => fields::run(args),
        }
    }
}
