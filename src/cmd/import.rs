//! `smbatch import`: source → template → plan → upload (journaled) → report.

use super::args::{ConnectionArgs, SourceArgs};
use crate::crm::{CrmClient, Entity};
use crate::report::import::{
    print_invalid_rows, print_summary, row_line, rows_to_retry, summary_table, EntitySummary,
    ImportReport, Summary, INVALID_ROWS_SHOWN,
};
use crate::source;
use crate::template::dictionaries::{Dictionaries, UnknownValues};
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
    /// How long to keep retrying a CRM that does not answer (refused connections, timeouts,
    /// 5xx) before stopping the run with exit 2, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = crate::crm::DEFAULT_RETRY_FOR.as_secs())]
    pub retry_for: u64,
    /// Read, validate and plan only: contact no CRM, send nothing, write the report of what
    /// would be sent (exit 0)
    #[arg(long)]
    pub dry_run: bool,
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
    execute(args, true).map(|(exit, _)| exit)
}

/// The import, with its summary returned; `print` says whether it is also shown (stdout table or
/// `--json`). `reconcile --fix` runs it silently and says in its own words what was sent.
pub(crate) fn execute(args: ImportArgs, print: bool) -> Result<(Exit, Summary)> {
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

    let src = source::open(&args.file, &opts)?;
    let file_name = args.file.display().to_string();
    let mapper = Arc::new(template.bind(src.headers(), &file_name)?);
    if args.dry_run {
        // No CRM: the offline checks only, as `validate` without --url makes them.
        let planned = plan_rows(src, mapper, only.as_ref(), None, &template)?;
        return dry_run(&args, planned, started, print);
    }

    // Where to send: the embedded sandbox, or the configured CRM.
    let (sandbox, conn) = super::connect(args.sandbox.as_deref(), &args.conn)?;
    let client = CrmClient::new(&conn)?;
    let report_path = report_path(&args);
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
    let retry_for = std::time::Duration::from_secs(args.retry_for.max(1));

    // Before the first write: is the CRM there, does it take our key, does it know every field
    // the template writes, and does it have the owners and dictionary values the template
    // sends? A server that is down, a wrong key, a field the server would silently drop or an
    // owner it does not have is the first thing said, and nothing is sent. The CRM's lists
    // (users, deal steps…) then check every row.
    let preflight = runtime.block_on(preflight(
        &client,
        &super::target_name(args.sandbox.as_deref(), Some(&conn)),
        &template,
        &args.template.display().to_string(),
        args.allow_unknown_fields,
        retry_for,
    ));

    // Read, map and validate every row; valid records go into the plan (each key once). Every
    // row is read even when the preflight refused the run, so the report still lists them all.
    let dicts = preflight.as_ref().ok();
    let planned = plan_rows(src, mapper, only.as_ref(), dicts, &template)?;

    let mut upload_opts = UploadOptions {
        chunk: args.chunk,
        concurrency,
        quiet: args.quiet || args.json,
        ..UploadOptions::default()
    };
    upload_opts.retry.max_elapsed = retry_for;
    upload_opts.lookup_retry.max_elapsed = retry_for;
    let mut uploader = Uploader::new(
        client.clone(),
        journal,
        planned.plan.clone(),
        upload_opts,
        stop.clone(),
    )?;

    let result: Result<(), Error> = match preflight {
        Err(e) => Err(e),
        Ok(_) => {
            if print && !args.json && !args.quiet {
                print_invalid_rows(&planned.rows, INVALID_ROWS_SHOWN);
            }
            runtime
                .block_on(async {
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
                })
                .map_err(Error::from)
        }
    };
    drop(runtime);
    // A stop is said first, before the summary and the report paths.
    if let Err(e) = &result {
        eprintln!("smbatch: error: {e}");
    }

    let summary = finish(
        &args,
        &planned,
        &uploader.counts(),
        &|e, k| uploader.state(e, k).cloned(),
        RunInfo {
            target: conn.url.clone(),
            journal: Some(journal_path.display().to_string()),
            interrupted: interrupted.load(Ordering::SeqCst),
            stopped: result.as_ref().err().map(|e| e.to_string()),
            dry_run: false,
            started,
            print,
        },
    )?;
    if let Some(s) = sandbox {
        s.stop();
    }
    if result.is_err() {
        return Err(Error::AlreadyReported);
    }
    if summary.interrupted {
        return Err(Error::Interrupted);
    }
    let exit = if summary.is_clean() {
        Exit::Clean
    } else {
        Exit::RowsFailed
    };
    Ok((exit, summary))
}

/// Read, map and validate every row (the CRM's dictionaries, when known, check owners and deal
/// values per row); valid records go into the plan, each key once.
fn plan_rows(
    src: Box<dyn source::RowSource>,
    mapper: Arc<crate::template::Mapper>,
    only: Option<&HashSet<u64>>,
    dicts: Option<&Dictionaries>,
    template: &Template,
) -> Result<Planned> {
    let file_name = src.file().to_string();
    let SourcePlan {
        plan,
        rows,
        by_entity,
    } = SourcePlan::from_rows(
        map_file(src, mapper, MapOptions::default()).map(|item| {
            item.map(|(_, mut m)| {
                if let Some(d) = dicts {
                    d.apply(template, &mut m);
                }
                m
            })
        }),
        only,
    )?;
    Ok(Planned {
        file_name,
        rows,
        by_entity,
        plan: Arc::new(plan),
    })
}

/// The source read, mapped and planned: what a run (or a dry run) starts from.
struct Planned {
    file_name: String,
    rows: Vec<crate::upload::PlannedRow>,
    by_entity: BTreeMap<Entity, crate::upload::RowCounts>,
    plan: Arc<crate::upload::Plan>,
}

/// How a run went, besides the records' states.
struct RunInfo {
    target: String,
    journal: Option<String>,
    interrupted: bool,
    stopped: Option<String>,
    dry_run: bool,
    started: std::time::Instant,
    /// Show the summary (table or `--json`).
    print: bool,
}

/// Count, write the report (every row, one outcome each), print the summary, and check that it
/// all adds up.
fn finish(
    args: &ImportArgs,
    planned: &Planned,
    counts: &std::collections::HashMap<Entity, crate::upload::EntityCounts>,
    state: &dyn Fn(Entity, &str) -> Option<crate::upload::Entry>,
    run: RunInfo,
) -> Result<Summary> {
    let mut entities = BTreeMap::new();
    for e in Entity::ALL {
        let c = counts.get(&e).cloned().unwrap_or_default();
        let rc = planned.by_entity.get(&e).copied().unwrap_or_default();
        if c.records == 0 && rc.invalid == 0 && rc.valid == 0 {
            continue;
        }
        entities.insert(
            e,
            EntitySummary {
                read: rc.valid + rc.invalid,
                valid: rc.valid,
                invalid: rc.invalid,
                counts: c,
            },
        );
    }
    let report_path = report_path(args);
    // Per-row outcomes into the report, after its summary sheet.
    let mut report = ImportReport::create(
        Some(&report_path),
        args.csv_report.as_deref(),
        &summary_table(&entities),
    )?;
    let mut by_outcome: BTreeMap<&'static str, u64> = BTreeMap::new();
    for r in &planned.rows {
        let line = row_line(r, &planned.plan, state);
        *by_outcome.entry(line.outcome.as_str()).or_default() += 1;
        report.write(&line)?;
    }
    report.finish()?;
    let summary = Summary {
        file: planned.file_name.clone(),
        target: run.target,
        dry_run: run.dry_run,
        rows: planned.rows.len() as u64,
        rows_by_outcome: by_outcome,
        entities,
        report: Some(report_path.display().to_string()),
        csv_report: args.csv_report.as_ref().map(|p| p.display().to_string()),
        journal: run.journal,
        interrupted: run.interrupted,
        stopped: run.stopped.clone(),
        seconds: run.started.elapsed().as_secs_f64(),
    };
    if run.print && args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).map_err(|e| Error::Usage(e.to_string()))?
        );
    } else if run.print {
        print_summary(&summary);
    }
    summary.check_adds_up()?;
    Ok(summary)
}

/// `--dry-run`: read, map, validate and plan, contact no CRM, write nothing but the report: every
/// valid record counts as what the run would create.
fn dry_run(
    args: &ImportArgs,
    planned: Planned,
    started: std::time::Instant,
    print: bool,
) -> Result<(Exit, Summary)> {
    let mut counts: std::collections::HashMap<Entity, crate::upload::EntityCounts> =
        std::collections::HashMap::new();
    for r in planned.plan.records() {
        let c = counts.entry(r.entity).or_default();
        c.records += 1;
        c.created += 1;
    }
    let would_create = |_: Entity, _: &str| {
        Some(crate::upload::Entry {
            state: crate::upload::State::Created,
            crm_id: None,
            error: None,
            resolved: false,
        })
    };
    if print && !args.json && !args.quiet {
        print_invalid_rows(&planned.rows, INVALID_ROWS_SHOWN);
    }
    let summary = finish(
        args,
        &planned,
        &counts,
        &would_create,
        RunInfo {
            target: "dry run: nothing sent".into(),
            journal: None,
            interrupted: false,
            stopped: None,
            dry_run: true,
            started,
            print,
        },
    )?;
    Ok((Exit::Clean, summary))
}

/// `--report`, or FILE-STEM.import-report.xlsx in the current directory.
fn report_path(args: &ImportArgs) -> PathBuf {
    args.report.clone().unwrap_or_else(|| {
        let stem = args
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "import".into());
        PathBuf::from(format!("{stem}.import-report.xlsx"))
    })
}

/// The checks before the first write: the CRM's `fields` of every entity the template writes
/// (one read-only call each) must list every field the template writes, and the owners and
/// deal dictionary values the template sends as constants or through a `map` must exist there.
/// A server that is down (within `retry_for`), a refused key, an unknown field or value stops
/// the run before anything is sent. Answers the CRM's lists, to check each row with.
async fn preflight(
    client: &CrmClient,
    target: &str,
    template: &Template,
    template_name: &str,
    allow_unknown_fields: bool,
    retry_for: std::time::Duration,
) -> Result<Dictionaries> {
    let policy = crate::crm::RetryPolicy {
        max_attempts: u32::MAX,
        max_elapsed: retry_for,
        ..crate::crm::RetryPolicy::default()
    };
    let checks = async {
        let mut warnings = require_known_fields(
            client,
            target,
            template,
            template_name,
            allow_unknown_fields,
            &policy,
        )
        .await?;
        let dicts = Dictionaries::fetch(client, template, &policy).await?;
        let (refused, inactive) = dicts.check_template(template);
        if !refused.is_empty() {
            return Err(UnknownValues {
                template: template_name.to_string(),
                target: target.to_string(),
                findings: refused,
            }
            .into());
        }
        warnings.extend(inactive.iter().map(|f| f.render(template_name)));
        Ok((warnings, dicts))
    };
    let (warnings, dicts) = checks.await.map_err(|err| match err {
        Error::Crm(e) if e.is_server_trouble() => {
            Error::Upload(crate::upload::UploadError::Unreachable {
                seconds: retry_for.as_secs(),
                source: e,
            })
        }
        other => other,
    })?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(dicts)
}
