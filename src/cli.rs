//! Command-line definitions: the top level. Each subcommand's own arguments live next to its
//! code in `cmd/`, the groups several commands share in `cmd/args.rs`. Shell completions and the
//! man pages (`cmd/docs.rs`) are generated from these same definitions.

use crate::cmd::*;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "smbatch",
    version,
    about = "Bulk data in and out of SalesMan CRM",
    after_help = "Every command that talks to a CRM takes --url/--login/--profile (key from \
SMBATCH_APIKEY or the profile) or --sandbox [DB] (default smbatch-sandbox.sqlite, the file \
`smbatch sandbox` serves). Entities: client, person, deal, task, history."
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
    Sandbox(sandbox::SandboxArgs),
    /// Read a file through a template and report every problem (dry run)
    Validate(validate::ValidateArgs),
    /// Upload a file into the CRM through a template, journaled and resumable
    Import(import::ImportArgs),
    /// Delete the records a file names, after a backup `import` can restore; journaled
    Delete(delete::DeleteArgs),
    /// Export CRM records to XLSX or CSV
    Export(export::ExportArgs),
    /// Compare a source file with what the CRM holds
    Reconcile(reconcile::ReconcileArgs),
    /// Work with templates (`template init`)
    #[command(subcommand, after_help = template::EXAMPLES)]
    Template(template::TemplateCommand),
    /// List the fields an entity has on the CRM
    Fields(fields::FieldsArgs),
    /// Print the completion script for a shell (bash, zsh, fish, powershell, elvish)
    Completions(docs::CompletionsArgs),
    /// Print the man page, or write every page into a directory
    Man(docs::ManArgs),
}

impl Cli {
    /// Run the command the arguments name; each command only turns its arguments into a job and
    /// the job's outcome into output and an exit code.
    pub fn run(self) -> crate::Result<crate::Exit> {
        match self.command {
            Command::Sandbox(args) => sandbox::run(args),
            Command::Validate(args) => validate::run(args),
            Command::Import(args) => import::run(args),
            Command::Delete(args) => delete::run(args),
            Command::Export(args) => export::run(args),
            Command::Reconcile(args) => reconcile::run(args),
            Command::Template(cmd) => template::run(cmd),
            Command::Fields(args) => fields::run(args),
            Command::Completions(args) => docs::completions(args),
            Command::Man(args) => docs::man(args),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_definitions_are_consistent() {
        // clap's own checks: no two arguments share a name or short flag, every mut_arg names an
        // argument that exists (a mistake here would panic at the user's first run).
        Cli::command().debug_assert();
    }

    #[test]
    fn a_bare_sandbox_flag_names_the_file_smbatch_sandbox_serves() {
        let served = match Cli::parse_from(["smbatch", "sandbox"]).command {
            Command::Sandbox(a) => a.db,
            other => panic!("{other:?}"),
        };
        for args in [
            &["smbatch", "import", "f.csv", "-t", "t.toml", "--sandbox"][..],
            &["smbatch", "delete", "f.csv", "-t", "t.toml", "--sandbox"],
            &["smbatch", "export", "person", "--sandbox"],
            &["smbatch", "fields", "person", "--sandbox"],
            &["smbatch", "validate", "f.csv", "-t", "t.toml", "--sandbox"],
            &["smbatch", "reconcile", "f.csv", "-t", "t.toml", "--sandbox"],
            &[
                "smbatch",
                "template",
                "init",
                "person",
                "--from",
                "f.csv",
                "--sandbox",
            ],
        ] {
            let crm = match Cli::parse_from(args).command {
                Command::Import(a) => a.crm,
                Command::Delete(a) => a.crm,
                Command::Export(a) => a.crm,
                Command::Fields(a) => a.crm,
                Command::Validate(a) => a.crm,
                Command::Reconcile(a) => a.crm,
                Command::Template(template::TemplateCommand::Init { crm, .. }) => crm,
                other => panic!("{other:?}"),
            };
            assert_eq!(crm.sandbox, Some(served.clone().into()), "{args:?}");
        }
    }
}
