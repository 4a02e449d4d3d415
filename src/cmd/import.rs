//! `smbatch import`: source → template → plan → upload (journaled) → report.

use crate::cli::{ConnectionArgs, SourceArgs};
use crate::crm::{CrmClient, Entity};
use crate::report::import::{
    print_invalid_rows, print_summary, row_line, rows_to_retry, summary_table, EntitySummary,
    ImportReport, Outcome, Summary, INVALID_ROWS_SHOWN,
};
use crate::source;
use crate::template::server::require_known_fields;
use crate::template::{map_file, MapOptions, Template};
use crate::upload::journal::fingerprint_file;
use crate::upload::{Concurrency, Journal, RunIdentity, SourcePlan, UploadOptions, Uploader};
use crate::{Error, Exit, Result};
use clap::Args;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file to import (.csv, .txt, .xlsx, .xls)
    pub file: PathBuf,
    /// The template (TOML) that maps columns to CRM fields
    #[arg(long, short = 't')]
    pub template: PathBuf,
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// Rows per add.list request (also capped at ~1 MB of JSON)
    #[arg(long, default_value_t = 100)]
    pub chunk: usize,
    /// Concurrent requests: a number, or `auto` (adapts between 1 and 8 to the server's latency)
    #[arg(long, default_value = "auto")]
    pub concurrency: String,
    /// Journal file (SQLite); default: next to the report, NAME.journal.sqlite
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Continue a run from its journal (re-running with the same journal does the same)
    #[arg(long)]
    pub resume: bool,
    /// XLSX report of every row; default: FILE-STEM.import-report.xlsx in the current directory
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Also write the report as CSV
    #[arg(long)]
    pub csv_report: Option<PathBuf>,
    /// Import into the embedded sandbox (SQLite file, default smbatch-sandbox.sqlite)
    #[arg(long, num_args = 0..=1, default_missing_value = "smbatch-sandbox.sqlite", value_name = "DB")]
    pub sandbox: Option<PathBuf>,
    /// Import only the rows an earlier report lists as not created/existing
    #[arg(long, value_name = "REPORT")]
    pub only_failed: Option<PathBuf>,
    #[command(flatten)]
    pub source: SourceArgs,
    /// Print the summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// No progress display
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Send even if the template writes fields the CRM does not list (their values are lost)
    #[arg(long)]
    pub allow_unknown_fields: bool,
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

/// `out/import-report.xlsx` → `out/import-report.journal.sqlite`.
fn journal_next_to(report: &Path) -> PathBuf {
    let stem = report
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "import".into());
    report.with_file_name(format!("{stem}.journal.sqlite"))
}

pub fn run(args: ImportArgs) -> Result<Exit> {
    let started = std::time::Instant::now();
    let concurrency = parse_concurrency(&args.concurrency)?;
    if args.chunk == 0 {
        return Err(Error::Usage("--chunk must be at least 1".into()));
    }
    let template = Template::load(&args.template)?;
    // Where to send: the embedded sandbox, or the configured CRM. Its field list is checked
    // before anything is read or sent.
    let (sandbox, conn) = super::connect(args.sandbox.as_deref(), &args.conn)?;
    let client = CrmClient::new(&conn)?;
    for w in super::runtime(None)?.block_on(require_known_fields(
        &client,
        &super::target_name(args.sandbox.as_deref(), Some(&conn)),
        &template,
        &args.template.display().to_string(),
        args.allow_unknown_fields,
    ))? {
        eprintln!("warning: {w}");
    }
    let opts = args.source.options(Some(&template))?;
    let only: Option<HashSet<u64>> = match &args.only_failed {
        Some(p) => Some(rows_to_retry(p)?),
        None => None,
    };

    // Read, map and validate every row; valid records go into the plan (each key once).
    let src = source::open(&args.file, &opts)?;
    let file_name = args.file.display().to_string();
    let mapper = Arc::new(template.bind(src.headers(), &file_name)?);
    let SourcePlan {
        plan,
        rows,
        invalid_by_entity,
    } = SourcePlan::from_rows(
        map_file(src, mapper, MapOptions::default()).map(|item| item.map(|(_, m)| m)),
        only.as_ref(),
    )?;
    let plan = Arc::new(plan);
    if !args.json && !args.quiet {
        print_invalid_rows(&rows, INVALID_ROWS_SHOWN);
    }

    let report_path = args.report.clone().unwrap_or_else(|| {
        let stem = args
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "import".into());
        PathBuf::from(format!("{stem}.import-report.xlsx"))
    });
    let journal_path = args
        .journal
        .clone()
        .unwrap_or_else(|| journal_next_to(&report_path));
    if args.resume && !journal_path.exists() {
        return Err(Error::Usage(format!(
            "--resume: there is no journal at {} to resume from",
            journal_path.display()
        )));
    }
    let mut journal = Journal::open(&journal_path)?;
    journal.bind(&RunIdentity {
        input: file_name.clone(),
        input_hash: fingerprint_file(&args.file)?,
        template_hash: fingerprint_file(&args.template)?,
        target: super::target_name(args.sandbox.as_deref(), Some(&conn)),
    })?;

    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    let runtime = super::runtime(Some(2))?;
    let upload_opts = UploadOptions {
        chunk: args.chunk,
        concurrency,
        quiet: args.quiet || args.json,
        ..UploadOptions::default()
    };
    let mut uploader = Uploader::new(client, journal, plan.clone(), upload_opts, stop.clone())?;
    let result = runtime.block_on(async {
        let (stop2, int2) = (stop.clone(), interrupted.clone());
        // Ctrl-C: no new chunks; requests in flight finish and are journaled.
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                int2.store(true, Ordering::SeqCst);
                stop2.store(true, Ordering::SeqCst);
                eprintln!("smbatch: interrupted: finishing requests in flight, then stopping (run again to resume)");
            }
        });
        uploader.run().await
    });
    drop(runtime);

    let counts = uploader.counts();
    let mut entities = BTreeMap::new();
    for e in Entity::ALL {
        let c = counts.get(&e).cloned().unwrap_or_default();
        let invalid = invalid_by_entity.get(&e).copied().unwrap_or(0);
        if c.records == 0 && invalid == 0 {
            continue;
        }
        entities.insert(
            e,
            EntitySummary {
                read: c.records + invalid,
                invalid,
                counts: c,
            },
        );
    }

    // Per-row outcomes into the report, after its summary sheet.
    let mut report = ImportReport::create(
        Some(&report_path),
        args.csv_report.as_deref(),
        &summary_table(&entities),
    )?;
    let mut by_outcome: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut clean = true;
    for r in &rows {
        let line = row_line(r, &plan, &uploader);
        if !matches!(line.outcome, Outcome::Created | Outcome::Existing) {
            clean = false;
        }
        *by_outcome.entry(line.outcome.as_str()).or_default() += 1;
        report.write(&line)?;
    }
    report.finish()?;

    let summary = Summary {
        file: file_name,
        target: conn.url.clone(),
        rows: rows.len() as u64,
        rows_by_outcome: by_outcome,
        entities,
        report: Some(report_path.display().to_string()),
        csv_report: args.csv_report.as_ref().map(|p| p.display().to_string()),
        journal: journal_path.display().to_string(),
        interrupted: interrupted.load(Ordering::SeqCst),
        seconds: started.elapsed().as_secs_f64(),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).map_err(|e| Error::Usage(e.to_string()))?
        );
    } else {
        print_summary(&summary);
    }
    if let Some(s) = sandbox {
        s.stop();
    }
    result?;
    if summary.interrupted {
        return Err(Error::Interrupted);
    }
    Ok(if clean { Exit::Clean } else { Exit::RowsFailed })
}
