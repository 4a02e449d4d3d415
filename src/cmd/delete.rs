//! `smbatch delete`: the records a file names (matched as an import matches them) are deleted,
//! after a backup that `smbatch import` can put back. Same engine and journal as import
//! ([`ImportJob`] with `Mode::Delete`).

use super::args::{check_output, check_reports, print_json, CrmArgs, OutputMode, SourceArgs};
use super::import::{print_event, print_summary};
use crate::job::import::DeletePlan;
use crate::job::{names, ImportJob};
use crate::upload::{Concurrency, Mode};
use crate::{Error, Exit, Result};
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

pub const EXAMPLES: &str = "\
Examples:
  smbatch delete old-contacts.csv -t templates/person.toml --sandbox --dry-run   # what would go
  smbatch delete old-contacts.csv -t templates/person.toml --profile prod -o out/del.xlsx
  smbatch delete old-contacts.csv -t templates/person.toml --profile prod -o out/del.xlsx --yes   # scripts
  smbatch import out/del.backup.xlsx -t out/del.backup.toml --profile prod   # put them back";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct DeleteArgs {
    /// The file naming the records to delete (.csv, .txt, .xlsx, .xls)
    pub file: PathBuf,
    /// The template (TOML) that maps its columns and says how records are matched
    #[arg(long, short = 't')]
    pub template: PathBuf,
    #[command(flatten)]
    pub crm: CrmArgs,
    /// Backup of every deleted record (XLSX, with a template to restore it next to it);
    /// default: next to the report, REPORT-STEM.backup.xlsx
    #[arg(long, value_name = "XLSX")]
    pub backup: Option<PathBuf>,
    /// Delete without asking (scripts; required when stdin is not a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Match only (reads the CRM): report what would be deleted, not found or ambiguous;
    /// writes nothing but the report (exit 0)
    #[arg(long)]
    pub dry_run: bool,
    /// Journal file (SQLite); default: one per input content, template and CRM under the data
    /// directory (SMBATCH_DATA_DIR), so the same command continues the same run
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// XLSX report of every row; default: FILE-STEM.delete-report.xlsx in the current directory
    #[arg(long, short = 'o', alias = "report", value_name = "XLSX")]
    pub output: Option<PathBuf>,
    /// Also write the report as CSV
    #[arg(long, value_name = "CSV")]
    pub csv_report: Option<PathBuf>,
    #[command(flatten)]
    pub source: SourceArgs,
    /// How long to keep retrying a CRM that does not answer before stopping (exit 2), in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = crate::crm::DEFAULT_RETRY_FOR.as_secs())]
    pub retry_for: u64,
    #[command(flatten)]
    pub mode: OutputMode,
    /// How many invalid rows to print (the report has them all)
    #[arg(long, value_name = "N", default_value_t = crate::job::import::INVALID_ROWS_SHOWN)]
    pub show: usize,
}

impl DeleteArgs {
    pub fn job(&self) -> Result<ImportJob> {
        check_reports(self.output.as_deref(), self.csv_report.as_deref())?;
        if let Some(b) = &self.backup {
            check_output("--backup", b, &["xlsx"])?;
        }
        let report = self
            .output
            .clone()
            .unwrap_or_else(|| names::delete_report(&self.file));
        Ok(ImportJob {
            file: self.file.clone(),
            template: self.template.clone(),
            source: self.source.overrides(),
            target: self.crm.target(),
            journal: self.journal.clone(),
            resume: false,
            report: Some(report),
            csv_report: self.csv_report.clone(),
            chunk: 1,
            concurrency: Concurrency::Fixed(1),
            retry_for: std::time::Duration::from_secs(self.retry_for.max(1)),
            mode: Mode::Delete,
            dry_run: self.dry_run,
            allow_unknown_fields: true,
            only_failed: None,
            progress: self.mode.chatty(),
            show_invalid: self.show,
            backup: self.backup.clone(),
        })
    }
}

/// "1 client, 2 person"
fn per_entity(plan: &DeletePlan) -> String {
    plan.per_entity
        .iter()
        .map(|(e, n)| format!("{n} {e}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Ask on the terminal; only `yes` goes on.
fn ask(plan: &DeletePlan) -> bool {
    eprint!(
        "About to delete {} records ({}) from {}. Type yes to go on: ",
        plan.total,
        per_entity(plan),
        plan.target
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    line.trim() == "yes"
}

pub fn run(args: DeleteArgs) -> Result<Exit> {
    let interactive = std::io::stdin().is_terminal();
    if !args.yes && !args.dry_run && !interactive {
        return Err(Error::Usage(
            "delete asks for confirmation, and stdin is not a terminal: add --yes to delete without asking (or --dry-run to see what would be deleted)".into(),
        ));
    }
    let job = args.job()?;
    let show_rows = args.mode.chatty();
    let yes = args.yes;
    let outcome = job.run_confirmed(&mut |event| print_event(event, show_rows), &mut |plan| {
        yes || ask(plan)
    })?;
    let summary = &outcome.summary;
    if args.mode.json {
        print_json(summary)?;
    } else {
        print_summary(summary);
        if let Some(b) = &summary.backup {
            println!(
                "backup: {} (put the records back with: smbatch import {} -t {})",
                b.file, b.file, b.template
            );
        }
    }
    outcome.exit()
}
