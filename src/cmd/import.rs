//! `smbatch import`: the arguments become an [`ImportJob`]; its events and summary are printed.

use super::args::{check_reports, print_json, CrmArgs, OutputMode, SourceArgs};
use crate::job::import::Summary;
use crate::job::{ImportEvent, ImportJob, OnlyFailed};
use crate::upload::Concurrency;
use crate::{Error, Exit, Result};
use clap::Args;
use std::path::PathBuf;

pub const EXAMPLES: &str = "\
Examples:
  smbatch import samples/migration-cp1251.csv -t templates/migration-flat.toml --sandbox -o out/import-report.xlsx
  SMBATCH_APIKEY=... smbatch import customer.xlsx -t templates/customer.toml --url https://crm.example.ru --login admin@example.ru -o out/customer.xlsx
  smbatch import customer.xlsx -t templates/customer.toml -o out/customer.xlsx --only-failed   # re-send what did not make it";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ImportArgs {
    /// The file to import (.csv, .txt, .xlsx, .xls)
    pub file: PathBuf,
    /// The template (TOML) that maps columns to CRM fields
    #[arg(long, short = 't')]
    pub template: PathBuf,
    #[command(flatten)]
    pub crm: CrmArgs,
    /// Rows per add.list request (also capped at ~1 MB of JSON)
    #[arg(long, default_value_t = 100)]
    pub chunk: usize,
    /// Concurrent requests: a number, or `auto` (finds the server's peak throughput, 1 to 16)
    #[arg(long, default_value = "auto")]
    pub concurrency: String,
    /// Journal file (SQLite); default: one per input content, template and CRM under the data
    /// directory (SMBATCH_DATA_DIR), so the same command continues the same run
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Continue a run from its journal (re-running with the same journal does the same)
    #[arg(long)]
    pub resume: bool,
    /// XLSX report of every row; default: FILE-STEM.import-report.xlsx in the current directory
    #[arg(long, short = 'o', alias = "report", value_name = "XLSX")]
    pub output: Option<PathBuf>,
    /// Also write the report as CSV
    #[arg(long, value_name = "CSV")]
    pub csv_report: Option<PathBuf>,
    /// Import only the rows an earlier run left to do (not created/existing), as its journal
    /// records them: this run's journal, or the JOURNAL given
    #[arg(long, value_name = "JOURNAL")]
    pub only_failed: Option<Option<PathBuf>>,
    #[command(flatten)]
    pub source: SourceArgs,
    /// How long to keep retrying a CRM that does not answer (refused connections, timeouts,
    /// 5xx) before stopping the run with exit 2, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = crate::crm::DEFAULT_RETRY_FOR.as_secs())]
    pub retry_for: u64,
    /// What to do with records the CRM already holds (every mode matches first, by the
    /// template's `match` probes): insert = create the rest, report matches as existing;
    /// upsert = create or update; update = update matches, report the rest as not_found
    #[arg(long = "mode", value_enum, default_value_t = WriteMode::Insert)]
    pub write_mode: WriteMode,
    /// Read, validate, plan and match against the CRM (reads only), send nothing; the report
    /// says what would be created, updated (each field: CRM value → new value), left unchanged,
    /// or found ambiguous (exit 0)
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub mode: OutputMode,
    /// How many invalid rows to print before sending (the report has them all)
    #[arg(long, value_name = "N", default_value_t = crate::job::import::INVALID_ROWS_SHOWN)]
    pub show: usize,
    /// Send even if the template writes fields the CRM does not list (their values are lost)
    #[arg(long)]
    pub allow_unknown_fields: bool,
}

/// `--mode`: the import's operation (Data Loader's insert / upsert / update).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WriteMode {
    Insert,
    Upsert,
    Update,
}

impl From<WriteMode> for crate::upload::Mode {
    fn from(m: WriteMode) -> Self {
        match m {
            WriteMode::Insert => crate::upload::Mode::Insert,
            WriteMode::Upsert => crate::upload::Mode::Upsert,
            WriteMode::Update => crate::upload::Mode::Update,
        }
    }
}

fn parse_concurrency(s: &str) -> Result<Concurrency> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(Concurrency::Auto);
    }
    match s.parse::<usize>() {
        Ok(n) if (1..=64).contains(&n) => Ok(Concurrency::Fixed(n)),
        _ => Err(Error::Usage(format!(
            "--concurrency must be 'auto' or a number from 1 to 64, not '{s}'"
        ))),
    }
}

impl ImportArgs {
    /// The job these arguments describe.
    pub fn job(&self) -> Result<ImportJob> {
        check_reports(self.output.as_deref(), self.csv_report.as_deref())?;
        Ok(ImportJob {
            file: self.file.clone(),
            template: self.template.clone(),
            source: self.source.overrides(),
            target: self.crm.target(),
            journal: self.journal.clone(),
            resume: self.resume,
            report: self.output.clone(),
            csv_report: self.csv_report.clone(),
            chunk: self.chunk,
            concurrency: parse_concurrency(&self.concurrency)?,
            retry_for: std::time::Duration::from_secs(self.retry_for.max(1)),
            mode: self.write_mode.into(),
            dry_run: self.dry_run,
            allow_unknown_fields: self.allow_unknown_fields,
            only_failed: self.only_failed.as_ref().map(|p| match p {
                Some(p) => OnlyFailed::From(p.clone()),
                None => OnlyFailed::Journal,
            }),
            progress: self.mode.chatty(),
            show_invalid: self.show,
            backup: None,
        })
    }
}

pub fn run(args: ImportArgs) -> Result<Exit> {
    let job = args.job()?;
    let show_rows = args.mode.chatty();
    let outcome = job.run(&mut |event| print_event(event, show_rows))?;
    let summary = &outcome.summary;
    if args.mode.json {
        print_json(summary)?;
    } else {
        print_summary(summary);
    }
    outcome.exit()
}

/// What an import says while it runs (on stderr): warnings and a stop always, the invalid rows
/// unless `--json` or `--quiet`.
pub(crate) fn print_event(event: ImportEvent, show_rows: bool) {
    match event {
        ImportEvent::Warning(w) => eprintln!("warning: {w}"),
        ImportEvent::InvalidRows(lines) if show_rows => {
            for l in lines {
                eprintln!("{l}");
            }
        }
        ImportEvent::InvalidRows(_) => {}
        ImportEvent::Interrupted => eprintln!(
            "smbatch: interrupted: finishing requests in flight, then stopping (run again to resume)"
        ),
        ImportEvent::Stopped(e) => eprintln!("smbatch: error: {e}"),
    }
}

/// The summary table and the lines under it.
pub(crate) fn print_summary(s: &Summary) {
    println!(
        "{:<9} {:>7} {:>8} {:>8} {:>8} {:>9} {:>8} {:>7} {:>10} {:>9}",
        "entity",
        "rows",
        "invalid",
        "records",
        "created",
        "existing",
        "earlier",
        "failed",
        "unresolved",
        "not sent"
    );
    for (e, c) in &s.entities {
        let n = &c.counts;
        println!(
            "{:<9} {:>7} {:>8} {:>8} {:>8} {:>9} {:>8} {:>7} {:>10} {:>9}",
            e.as_str(),
            c.read(),
            c.invalid,
            n.records,
            n.created,
            n.existing,
            n.earlier,
            n.failed,
            n.unresolved,
            n.not_sent
        );
    }
    // What matching found, where it found anything (an insert into an empty CRM has none).
    for (e, c) in &s.entities {
        let n = &c.counts;
        let parts: Vec<String> = [
            (n.updated, "updated"),
            (n.unchanged, "unchanged"),
            (n.not_found, "not found"),
            (
                n.ambiguous,
                "ambiguous (matches several CRM records: not written)",
            ),
            (n.deleted, "deleted"),
        ]
        .iter()
        .filter(|(v, _)| *v > 0)
        .map(|(v, what)| format!("{v} {what}"))
        .collect();
        if !parts.is_empty() {
            println!("{:<9} {}", e.as_str(), parts.join(", "));
        }
    }
    let outcomes: Vec<String> = s
        .rows_by_outcome
        .iter()
        .map(|(k, v)| format!("{v} {}", k.replace('_', " ")))
        .collect();
    println!(
        "{} rows: {} ({:.1} s) → {}",
        s.rows,
        outcomes.join(", "),
        s.seconds,
        s.target
    );
    let resolved: u64 = s
        .entities
        .values()
        .map(|c| c.counts.ambiguous_resolved)
        .sum();
    if resolved > 0 {
        println!(
            "{resolved} records whose answer was lost were found in the CRM and not sent again"
        );
    }
    if let Some(r) = &s.report {
        println!("report: {r}");
    }
    if let Some(r) = &s.csv_report {
        println!("csv report: {r}");
    }
    if let Some(j) = &s.journal {
        println!("journal: {j}");
    }
    if s.dry_run {
        println!("dry run: nothing was sent; 'created' and 'updated' count what a run would do (the report's Changes sheet lists each field it would change)");
    }
    if s.stopped.is_some() {
        println!("stopped early (the reason is above): the report lists what was not sent; run the same command again to continue");
    } else if s.entities.values().any(|c| c.counts.unresolved > 0) {
        println!("some records' answers were lost and could not be checked: run the same command again to resolve them");
    }
}
