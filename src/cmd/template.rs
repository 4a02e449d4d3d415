//! `smbatch template init`: a starter template from a file's columns.

use super::args::{check_output, CrmArgs, SourceArgs};
use crate::crm::Entity;
use crate::job::TemplateInitJob;
use crate::template::init::presets::Preset;
use crate::{Error, Exit, Result};
use clap::Subcommand;
use std::path::{Path, PathBuf};

pub const EXAMPLES: &str = "\
Examples:
  smbatch template init --from export.xlsx -o migration.toml --url https://crm.example.ru --login admin@example.ru
  smbatch template init --preset bitrix24 --from contacts.csv -o bitrix.toml --sandbox crm.db
  smbatch template init person --from customer.xlsx -o templates/customer.toml";

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Propose a template from a file: without an entity, a linked template (client, person,
    /// deal, task, history) with keys from the data and owners mapped to CRM users; with one,
    /// a starter template for that entity from the file's columns
    // There is no template yet: the reading flags are the only say over how the file is read.
    #[command(after_help = EXAMPLES)]
    #[command(mut_arg("encoding", |a| a.help("CSV encoding: auto, utf-8, windows-1251, utf-16 [default: auto]")))]
    #[command(mut_arg("delimiter", |a| a.help("CSV delimiter: one character, or tab [default: detected]")))]
    #[command(mut_arg("sheet", |a| a.help("Sheet name or 1-based number [default: the first sheet]")))]
    Init {
        /// client, person, deal, task or history (default: every entity the file describes,
        /// linked)
        entity: Option<Entity>,
        /// The file is a standard export of this CRM (its column titles, dates, multi-value
        /// cells)
        #[arg(long, value_parser = ["amocrm", "bitrix24"])]
        preset: Option<String>,
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
            preset,
            from,
            output,
            force,
            source,
            quiet,
            crm,
        } => {
            if let Some(path) = &output {
                check_output("--output", path, &["toml"])?;
                if path.exists() && !force {
                    return Err(Error::Usage(format!(
                        "{} exists; use --force to overwrite it",
                        path.display()
                    )));
                }
            }
            let job = TemplateInitJob {
                file: from,
                source: source.overrides(),
                target: crm.names_a_crm().then(|| crm.target()),
            };
            let Some(entity) = entity else {
                let preset = preset
                    .map(|p| p.parse::<Preset>().map_err(Error::Usage))
                    .transpose()?;
                return linked(&job, preset, output, quiet);
            };
            if preset.is_some() {
                return Err(Error::Usage(
                    "--preset proposes a whole linked template: give it without an entity".into(),
                ));
            }
            let text = job.starter(entity)?;
            match &output {
                None => print!("{text}"),
                Some(path) => write(path, &text, quiet)?,
            }
            Ok(Exit::Clean)
        }
    }
}

fn write(path: &Path, text: &str, quiet: bool) -> Result<()> {
    std::fs::write(path, text)
        .map_err(|e| Error::Usage(format!("{}: cannot write: {e}", path.display())))?;
    if !quiet {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// `template init --from FILE` without an entity: propose a linked template, write it, and run
/// it over the file as `validate` does.
fn linked(
    job: &TemplateInitJob,
    preset: Option<Preset>,
    output: Option<PathBuf>,
    quiet: bool,
) -> Result<Exit> {
    let proposal = job.linked(preset)?;
    for line in &proposal.report {
        eprintln!("{line}");
    }
    // The template proves itself on the file: where it is written, or a scratch copy.
    let scratch = output
        .is_none()
        .then(|| std::env::temp_dir().join(format!("smbatch-init-{}.toml", std::process::id())));
    let path = output.clone().or(scratch.clone()).unwrap_or_default();
    write(&path, &proposal.text, true)?;
    if output.is_none() {
        print!("{}", proposal.text);
    } else if !quiet {
        eprintln!("wrote {}", path.display());
    }
    let validate = crate::job::ValidateJob {
        file: job.file.clone(),
        template: path.clone(),
        source: job.source.clone(),
        report: None,
        csv_report: None,
        server: job.target.clone(),
        show: Some(10),
    };
    let shown = path.display().to_string();
    let outcome = validate.run(&mut |event| match event {
        crate::job::ValidateEvent::Finding(f) => eprintln!("{}", f.render(&shown)),
        crate::job::ValidateEvent::Warning(f) => eprintln!("warning: {}", f.render(&shown)),
        crate::job::ValidateEvent::Hidden(n) => eprintln!("… and {n} more problems"),
    });
    if let Some(s) = &scratch {
        let _ = std::fs::remove_file(s);
    }
    let outcome = outcome?;
    eprintln!("The proposed template over the file (as `smbatch validate` runs it):");
    eprint!("{}", outcome.summary.render());
    if proposal.unmatched_owners > 0 {
        eprintln!(
            "{} owner(s) have no CRM login yet: fill them in [users], or their rows are not imported",
            proposal.unmatched_owners
        );
    }
    Ok(outcome.exit())
}
