//! `smbatch template init`: a starter template from a file's columns.

use super::args::{check_output, CrmArgs, SourceArgs};
use crate::crm::Entity;
use crate::crm::{CrmClient, RetryPolicy};
use crate::source;
use crate::template::fields::{known_fields, live_fields};
use crate::template::init::starter_template;
use crate::{Error, Exit, Result};
use clap::Subcommand;
use std::path::PathBuf;

pub const EXAMPLES: &str = "\
Examples:
  smbatch template init person --from customer.xlsx -o templates/customer.toml
  smbatch template init client --from clients.csv --encoding windows-1251 --delimiter ';'
  smbatch template init deal --from deals.xlsx --sandbox    # titles as the sandbox CRM has them";

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Write a starter template for an entity from a file's columns
    // There is no template yet: the reading flags are the only say over how the file is read.
    #[command(after_help = EXAMPLES)]
    #[command(mut_arg("encoding", |a| a.help("CSV encoding: auto, utf-8, windows-1251, utf-16 [default: auto]")))]
    #[command(mut_arg("delimiter", |a| a.help("CSV delimiter: one character, or tab [default: detected]")))]
    #[command(mut_arg("sheet", |a| a.help("Sheet name or 1-based number [default: the first sheet]")))]
    Init {
        /// client, person, deal, task or history
        entity: Entity,
        /// A sample of the file the template is for (its header row is what matters)
        #[arg(long)]
        from: PathBuf,
        /// Where to write the template, a .toml file (default: print it)
        #[arg(long, short = 'o', value_name = "TOML")]
        output: Option<PathBuf>,
        /// Overwrite the output file if it exists
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        source: SourceArgs,
        /// Quiet: do not say where the template was written
        #[arg(long, short = 'q')]
        quiet: bool,
        /// With --url (or a profile) or --sandbox: match against the field titles that CRM's
        /// `fields` action returns, and leave out fields it has disabled
        #[command(flatten)]
        crm: CrmArgs,
    },
}

pub fn run(cmd: TemplateCommand) -> Result<Exit> {
    match cmd {
        TemplateCommand::Init {
            entity,
            from,
            output,
            force,
            source: source_args,
            quiet,
            crm,
        } => {
            if let Some(path) = &output {
                check_output("--output", path, &["toml"])?;
            }
            let opts = source_args.options(None)?;
            let src = source::open(&from, &opts)?;
            let file = from
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let table = if crm.names_a_crm() {
                let (_sandbox, conn) = crm.connect()?;
                let rt = crate::job::runtime(None)?;
                let client = CrmClient::new(&conn)?;
                let policy = RetryPolicy {
                    max_attempts: 3,
                    ..RetryPolicy::default()
                };
                let live = rt.block_on(client.fields(entity, &policy))?;
                live_fields(entity, &live)
            } else {
                known_fields(entity).to_vec()
            };
            let text = starter_template(entity, src.headers(), &file, &table);
            match output {
                None => print!("{text}"),
                Some(path) => {
                    if path.exists() && !force {
                        return Err(Error::Usage(format!(
                            "{} exists; use --force to overwrite it",
                            path.display()
                        )));
                    }
                    std::fs::write(&path, text).map_err(|e| {
                        Error::Usage(format!("{}: cannot write: {e}", path.display()))
                    })?;
                    if !quiet {
                        eprintln!("wrote {}", path.display());
                    }
                }
            }
            Ok(Exit::Clean)
        }
    }
}
