//! `smbatch template init`: a starter template from a file's columns.

use super::args::{ConnectionArgs, SourceArgs};
use crate::crm::Entity;
use crate::crm::{CrmClient, RetryPolicy};
use crate::source;
use crate::template::fields::{known_fields, live_fields};
use crate::template::init::starter_template;
use crate::{Error, Exit, Result};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Write a starter template for an entity from a file's columns
    Init {
        /// client, person, history, task or deal
        entity: String,
        /// A sample of the file the template is for (its header row is what matters)
        #[arg(long)]
        from: PathBuf,
        /// Where to write the template (default: print it)
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        /// Overwrite the output file if it exists
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        source: SourceArgs,
        /// With --url (or a profile): match against the field titles that CRM's `fields` action
        /// returns, and leave out fields it has disabled
        #[command(flatten)]
        conn: ConnectionArgs,
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
            conn,
        } => {
            let entity: Entity = entity
                .parse()
                .map_err(|e: crate::crm::UnknownEntity| Error::Usage(e.to_string()))?;
            let opts = source_args.options(None)?;
            let src = source::open(&from, &opts)?;
            let file = from
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let table = if conn.url.is_some() || conn.profile.is_some() {
                let conn = conn.resolve()?;
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
                    eprintln!("wrote {}", path.display());
                }
            }
            Ok(Exit::Clean)
        }
    }
}
