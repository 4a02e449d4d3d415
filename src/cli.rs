//! Command-line definitions. Each subcommand's own arguments live next to its code in `cmd/`;
//! this file holds the top level and the options several commands share.

use clap::{Args, Parser, Subcommand};

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

/// Where the CRM is and who we are there. The API key is never a flag (it would land in shell
/// history and process lists): it comes from `SMBATCH_APIKEY` or the config file's profile.
#[derive(Debug, Clone, Default, Args)]
pub struct ConnectionArgs {
    /// Base URL of the CRM, e.g. https://crm.example.ru
    #[arg(long, env = "SMBATCH_URL", global = true)]
    pub url: Option<String>,
    /// CRM user login (e-mail) the API key belongs to
    #[arg(long, env = "SMBATCH_LOGIN", global = true)]
    pub login: Option<String>,
    /// Profile in ~/.config/smbatch/config.toml (or SMBATCH_CONFIG)
    #[arg(long, env = "SMBATCH_PROFILE", global = true)]
    pub profile: Option<String>,
}

/// How to read the input file: overrides of what is sniffed and of the template's `[source]`.
#[derive(Debug, Clone, Default, Args)]
pub struct SourceArgs {
    /// CSV encoding: auto, utf-8, windows-1251, utf-16 (overrides the template)
    #[arg(long)]
    pub encoding: Option<String>,
    /// CSV delimiter: one character, or tab (overrides the template)
    #[arg(long)]
    pub delimiter: Option<String>,
    /// Sheet name or 1-based number (overrides the template)
    #[arg(long)]
    pub sheet: Option<String>,
}

impl SourceArgs {
    /// The reader options: these flags first, then the template's `[source]` (if any), then
    /// detection. An explicit `--encoding auto` wins over the template's encoding.
    pub fn options(
        &self,
        template: Option<&crate::template::Template>,
    ) -> crate::Result<crate::source::SourceOptions> {
        use crate::source::{parse_delimiter, Encoding, SourceOptions};
        let mut opts = SourceOptions::default();
        match self.encoding.as_deref() {
            Some("auto") => {}
            Some(e) => opts.encoding = Some(e.parse::<Encoding>()?),
            None => opts.encoding = template.and_then(|t| t.source.encoding),
        }
        opts.delimiter = self.delimiter.as_deref().map(parse_delimiter).transpose()?;
        opts.sheet = self.sheet.clone();
        Ok(match template {
            Some(t) => opts.or(&t.source),
            None => opts,
        })
    }
}
