//! `smbatch reconcile`: the arguments become a [`ReconcileJob`] (whose `--fix` runs an import
//! job); its outcome is printed.

use super::args::{check_output, CrmArgs, OutputMode, SourceArgs};
use crate::job::reconcile::ReconcileEvent;
use crate::job::{names, ReconcileJob, ReconcileOutcome};
use crate::reconcile::report::{summary_json, summary_text};
use crate::{Exit, Result};
use clap::Args;
use std::path::PathBuf;

pub const EXAMPLES: &str = "\
Examples:
  smbatch reconcile samples/migration-cp1251.csv -t templates/migration-flat.toml --sandbox -o out/reconcile.xlsx
  smbatch reconcile customer.xlsx -t templates/customer.toml --profile prod --journal out/customer.journal.sqlite --fix
  smbatch reconcile customer.xlsx -t templates/customer.toml --sandbox --json -o out/reconcile.xlsx";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ReconcileArgs {
    /// The source file the CRM should reflect (.csv, .xlsx, .xls)
    pub file: PathBuf,
    /// The template the file was (or will be) imported with
    #[arg(long, short = 't')]
    pub template: PathBuf,
    /// Where to write the report (XLSX)
    #[arg(long, short = 'o', default_value = names::RECONCILE_REPORT, value_name = "XLSX")]
    pub output: PathBuf,
    /// The import's journal: its key → CRM id map is used for matching (and updated by --fix)
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Re-send the records missing in the CRM through the import path, then check again
    #[arg(long)]
    pub fix: bool,
    #[command(flatten)]
    pub source: SourceArgs,
    /// Pages fetched at once while exporting the CRM side
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    #[command(flatten)]
    pub mode: OutputMode,
    /// With --fix: send even if the template writes fields the CRM does not list
    #[arg(long)]
    pub allow_unknown_fields: bool,
    #[command(flatten)]
    pub crm: CrmArgs,
}

impl ReconcileArgs {
    /// The job these arguments describe.
    pub fn job(&self) -> Result<ReconcileJob> {
        check_output("--output", &self.output, &["xlsx"])?;
        Ok(ReconcileJob {
            file: self.file.clone(),
            template: self.template.clone(),
            source: self.source.overrides(),
            output: self.output.clone(),
            journal: self.journal.clone(),
            fix: self.fix,
            target: self.crm.target(),
            concurrency: self.concurrency,
            progress: self.mode.chatty(),
            allow_unknown_fields: self.allow_unknown_fields,
        })
    }
}

/// What `--fix` says while it runs: how many it sends, then what it sent per entity (what this
/// run created, failed or left unsent — never the records an earlier run already stored).
/// `--json` keeps stdout one JSON line: the counts go into it instead.
fn print_event(event: ReconcileEvent, json: bool) {
    match event {
        ReconcileEvent::Sending(missing) if !json => {
            println!("--fix: sending {missing} missing records through the import path")
        }
        ReconcileEvent::Sending(_) => {}
        // The import runs silently but for its warnings and a stop.
        ReconcileEvent::Import(e) => super::import::print_event(e, false),
        ReconcileEvent::Fixed(summary) if !json => {
            let sent: Vec<String> = summary
                .entities
                .iter()
                .filter(|(_, c)| c.counts.created + c.counts.failed + c.counts.unresolved > 0)
                .map(|(e, c)| {
                    let mut parts = vec![format!("{} created", c.counts.created)];
                    if c.counts.failed > 0 {
                        parts.push(format!("{} failed", c.counts.failed));
                    }
                    if c.counts.unresolved > 0 {
                        parts.push(format!("{} unresolved", c.counts.unresolved));
                    }
                    format!("{e} {}", parts.join(", "))
                })
                .collect();
            println!(
                "--fix: {} (report: {})",
                if sent.is_empty() {
                    "nothing was sent".to_string()
                } else {
                    sent.join("; ")
                },
                summary.report.as_deref().unwrap_or("")
            );
        }
        ReconcileEvent::Fixed(_) => {}
    }
}

fn print(args: &ReconcileArgs, outcome: &ReconcileOutcome) {
    let result = &outcome.result;
    if args.mode.json {
        let mut j = summary_json(result);
        j["report"] = args.output.display().to_string().into();
        j["invalid_source_rows"] = outcome.invalid_source_rows.into();
        j["fixed"] = args.fix.into();
        if let Some(f) = &outcome.fixed {
            // What --fix sent this time, per entity (created / failed / unresolved / ...).
            j["fix"] = f
                .entities
                .iter()
                .map(|(e, c)| {
                    (
                        e.to_string(),
                        serde_json::to_value(&c.counts).unwrap_or_default(),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        println!("{j}");
        return;
    }
    print!("{}", summary_text(result));
    if outcome.invalid_source_rows > 0 {
        println!(
            "{} source rows are invalid and were not expected in the CRM (see `smbatch validate`)",
            outcome.invalid_source_rows
        );
    }
    println!("Report: {}", args.output.display());
}

pub fn run(args: ReconcileArgs) -> Result<Exit> {
    let outcome = args.job()?.run(&mut |e| print_event(e, args.mode.json))?;
    print(&args, &outcome);
    Ok(outcome.exit())
}
