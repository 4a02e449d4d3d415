//! `smbatch import`: source → template → plan → upload (journaled) → report.

use crate::cli::{ConnectionArgs, SourceArgs};
use crate::crm::{CrmClient, Entity};
use crate::report::import::{rows_to_retry, ImportReport, Outcome, RowLine};
use crate::report::summary::SummaryTable;
use crate::source;
use crate::template::{map_file, MapOptions, Template};
use crate::upload::journal::{fingerprint_file, State};
use crate::upload::{
    Concurrency, EntityCounts, Journal, Plan, PlannedRow, RunIdentity, SourcePlan, UploadOptions,
    Uploader,
};
use crate::{Error, Exit, Result};
use clap::Args;
use serde::Serialize;
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
}

#[derive(Debug, Default, Serialize)]
struct EntitySummary {
    read: u64,
    invalid: u64,
    #[serde(flatten)]
    counts: EntityCounts,
}

#[derive(Debug, Serialize)]
struct Summary {
    file: String,
    target: String,
    rows: u64,
    rows_by_outcome: BTreeMap<&'static str, u64>,
    entities: BTreeMap<Entity, EntitySummary>,
    report: Option<String>,
    csv_report: Option<String>,
    journal: String,
    interrupted: bool,
    seconds: f64,
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

    // Where to send: the embedded sandbox, or the configured CRM.
    let (sandbox, conn) = super::connect(args.sandbox.as_deref(), &args.conn)?;
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

    let client = CrmClient::new(&conn)?;
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

/// Invalid rows printed before the upload starts; the report lists every one.
const INVALID_ROWS_SHOWN: usize = 10;

fn print_invalid_rows(rows: &[PlannedRow], at_most: usize) {
    let invalid: Vec<_> = rows
        .iter()
        .filter_map(|r| r.invalid.as_ref().map(|p| (&r.pos, p)))
        .collect();
    for (pos, p) in invalid.iter().take(at_most) {
        let what = [p.entity.map(|e| e.to_string()), p.field.clone()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let value = if p.value.is_empty() {
            String::new()
        } else {
            format!(" value '{}':", p.value)
        };
        eprintln!("{pos}: {what}:{value} {} (not sent)", p.message);
    }
    if invalid.len() > at_most {
        eprintln!(
            "… and {} more invalid rows (see the report)",
            invalid.len() - at_most
        );
    }
}

fn summary_table(entities: &BTreeMap<Entity, EntitySummary>) -> SummaryTable {
    SummaryTable {
        chart_title: "Import by entity".into(),
        columns: [
            "entity",
            "read",
            "invalid",
            "created",
            "existing",
            "failed",
            "unresolved",
            "ambiguous resolved",
        ]
        .map(String::from)
        .to_vec(),
        rows: entities
            .iter()
            .map(|(e, s)| {
                let c = &s.counts;
                (
                    e.to_string(),
                    vec![
                        s.read,
                        s.invalid,
                        c.created,
                        c.existing,
                        c.failed,
                        c.unresolved,
                        c.ambiguous_resolved,
                    ],
                )
            })
            .collect(),
        charted: vec![1, 2, 3, 4],
    }
}

fn row_line(r: &PlannedRow, plan: &Plan, up: &Uploader) -> RowLine {
    let mut line = RowLine {
        file: r.pos.file.to_string(),
        sheet: r.pos.sheet.as_ref().map(|s| s.to_string()),
        row: r.pos.row,
        outcome: Outcome::Skipped,
        ids: [None; 5],
        entity: None,
        field: None,
        value: None,
        error: None,
    };
    if let Some(p) = &r.invalid {
        line.outcome = Outcome::Invalid;
        line.entity = p.entity.map(|e| e.to_string());
        line.field = p.field.clone();
        line.value = (!p.value.is_empty()).then(|| p.value.clone());
        line.error = Some(p.message.clone());
        return line;
    }
    let (mut created, mut existing, mut failed, mut pending) = (0, 0, 0, 0);
    for &i in &r.records {
        let rec = plan.get(i);
        let slot = Entity::ALL
            .iter()
            .position(|e| *e == rec.entity)
            .unwrap_or(0);
        match up.state(rec.entity, &rec.key) {
            Some(e) if e.state.is_done() => {
                line.ids[slot] = e.crm_id;
                if e.state == State::Created {
                    created += 1;
                } else {
                    existing += 1;
                }
            }
            Some(e) if e.state == State::Failed || e.state == State::Ambiguous => {
                failed += 1;
                if line.error.is_none() {
                    line.entity = Some(rec.entity.to_string());
                    line.value = Some(rec.key.clone());
                    line.error = e.error.clone();
                }
            }
            other => {
                pending += 1;
                if line.error.is_none() {
                    line.entity = Some(rec.entity.to_string());
                    line.value = Some(rec.key.clone());
                    line.error = Some(
                        other
                            .and_then(|e| e.error.clone())
                            .unwrap_or_else(|| "not sent (the run stopped first)".into()),
                    );
                }
            }
        }
    }
    line.outcome = if failed > 0 {
        Outcome::Failed
    } else if pending > 0 || r.records.is_empty() {
        Outcome::Skipped
    } else if created > 0 {
        Outcome::Created
    } else if existing > 0 {
        Outcome::Existing
    } else {
        Outcome::Skipped
    };
    line
}

fn print_summary(s: &Summary) {
    println!(
        "{:<9} {:>8} {:>8} {:>8} {:>9} {:>7} {:>10}",
        "entity", "read", "invalid", "created", "existing", "failed", "ambiguous"
    );
    for (e, c) in &s.entities {
        println!(
            "{:<9} {:>8} {:>8} {:>8} {:>9} {:>7} {:>10}",
            e.as_str(),
            c.read,
            c.invalid,
            c.counts.created,
            c.counts.existing,
            c.counts.failed + c.counts.unresolved,
            c.counts.ambiguous_resolved
        );
    }
    let outcomes: Vec<String> = s
        .rows_by_outcome
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    println!(
        "{} rows: {} ({:.1} s) → {}",
        s.rows,
        outcomes.join(", "),
        s.seconds,
        s.target
    );
    if let Some(r) = &s.report {
        println!("report: {r}");
    }
    if let Some(r) = &s.csv_report {
        println!("csv report: {r}");
    }
    println!("journal: {}", s.journal);
    if s.entities.values().any(|c| c.counts.unresolved > 0) {
        println!("some records' answers were lost and could not be checked: run the same command again to resolve them");
    }
}
