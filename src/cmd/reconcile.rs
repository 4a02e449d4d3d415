//! `smbatch reconcile`: is everything there, and is it right? Reads the source through its
//! template, exports the CRM's records and writes a report a manager can read. `--fix` sends the
//! missing records through the import path, with a journal that makes sure nothing goes twice.

use super::args::{ConnectionArgs, SourceArgs};
use crate::crm::{CrmClient, RetryPolicy};
use crate::reconcile::run::{
    compare, fetch_crm, find_invisible, journal_ids, prepare_fix, read_source, SourceSide,
};
use crate::reconcile::Reconciliation;
use crate::report::reconcile::{summary_json, summary_text, write_xlsx};
use crate::template::Template;
use crate::upload::journal::fingerprint_file;
use crate::upload::{Journal, RunIdentity};
use crate::{Error, Exit, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The source file the CRM should reflect (.csv, .xlsx, .xls)
    pub file: PathBuf,
    /// The template the file was (or will be) imported with
    #[arg(long, short = 't')]
    pub template: PathBuf,
    /// Where to write the report (XLSX)
    #[arg(long, short = 'o', default_value = "reconcile.xlsx")]
    pub output: PathBuf,
    /// The import's journal: its key → CRM id map is used for matching (and updated by --fix)
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Re-send the records missing in the CRM through the import path, then check again
    #[arg(long)]
    pub fix: bool,
    /// Reconcile against the embedded sandbox (SQLite file, default smbatch-sandbox.sqlite)
    #[arg(long, num_args = 0..=1, default_missing_value = "smbatch-sandbox.sqlite", value_name = "DB")]
    pub sandbox: Option<PathBuf>,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub source: SourceArgs,
    /// Pages fetched at once while exporting the CRM side
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// No progress display
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// With --fix: send even if the template writes fields the CRM does not list
    #[arg(long)]
    pub allow_unknown_fields: bool,
    #[command(flatten)]
    pub conn: ConnectionArgs,
}

/// Export the CRM side and match it with the source; records the journal knows as created
/// that `list` does not show are looked up by `info` before they count as missing.
fn check(args: &ReconcileArgs, side: &SourceSide) -> Result<Reconciliation> {
    // The import's journal, or the one an earlier `--fix` kept next to the report: without it a
    // record the API user cannot list would be "missing" and re-sent by every --fix.
    let journal = match &args.journal {
        Some(path) if path.exists() => Some(path.clone()),
        Some(path) => {
            return Err(Error::Usage(format!(
                "--journal {}: no such file",
                path.display()
            )))
        }
        None => Some(fix_journal_path(args)).filter(|p| args.fix && p.exists()),
    };
    let ids = match &journal {
        Some(path) => Some(journal_ids(&Journal::open(path)?)?),
        None => None,
    };
    let (sandbox, conn) = super::connect(args.sandbox.as_deref(), &args.conn)?;
    let client = CrmClient::new(&conn)?;
    let runtime = super::runtime(Some(2))?;
    let policy = RetryPolicy::default();
    let crm = runtime.block_on(fetch_crm(
        &client,
        side,
        args.concurrency.max(1),
        &policy,
        args.quiet || args.json,
    ))?;
    let mut result = compare(side, &crm, ids.as_ref());
    let invisible = runtime.block_on(find_invisible(&client, &result, &policy))?;
    result.mark_invisible(&invisible);
    if let Some(s) = sandbox {
        s.stop();
    }
    Ok(result)
}

/// The journal `--fix` works with: the import's own, or a new one next to the report.
fn fix_journal_path(args: &ReconcileArgs) -> PathBuf {
    args.journal.clone().unwrap_or_else(|| {
        let stem = args
            .output
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "reconcile".into());
        args.output.with_file_name(format!("{stem}.journal.sqlite"))
    })
}

/// What `--fix` sent, per entity: what this run created, failed or left unsent (never the
/// records an earlier run already stored).
fn fix(
    args: &ReconcileArgs,
    side: &SourceSide,
    result: &Reconciliation,
) -> Result<Option<crate::report::import::Summary>> {
    let journal_path = fix_journal_path(args);
    let mut journal = Journal::open(&journal_path)?;
    // Bind it to this file, template and CRM exactly as the import will check it.
    let conn = match &args.sandbox {
        Some(_) => None,
        None => Some(args.conn.resolve()?),
    };
    let target = super::target_name(args.sandbox.as_deref(), conn.as_ref());
    journal.bind(&RunIdentity {
        input: args.file.display().to_string(),
        input_hash: fingerprint_file(&args.file)?,
        template_hash: fingerprint_file(&args.template)?,
        target,
    })?;
    let missing = prepare_fix(&mut journal, side, result)?;
    drop(journal);
    if missing == 0 {
        return Ok(None);
    }
    if !args.json {
        println!("--fix: sending {missing} missing records through the import path");
    }
    let stem = args
        .output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "reconcile".into());
    let import = super::import::ImportArgs {
        file: args.file.clone(),
        template: args.template.clone(),
        conn: args.conn.clone(),
        chunk: 100,
        concurrency: "auto".into(),
        journal: Some(journal_path),
        resume: false,
        report: Some(
            args.output
                .with_file_name(format!("{stem}.fix-report.xlsx")),
        ),
        csv_report: None,
        sandbox: args.sandbox.clone(),
        only_failed: None,
        source: args.source.clone(),
        json: false,
        retry_for: crate::crm::DEFAULT_RETRY_FOR.as_secs(),
        dry_run: false,
        quiet: args.quiet || args.json,
        allow_unknown_fields: args.allow_unknown_fields,
    };
    // Rows that fail again show in the fix report and in the second check below.
    let (_, summary) = super::import::execute(import, false)?;
    if !args.json {
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
    Ok(Some(summary))
}

fn print(
    args: &ReconcileArgs,
    side: &SourceSide,
    result: &Reconciliation,
    fixed: Option<&crate::report::import::Summary>,
) {
    if args.json {
        let mut j = summary_json(result);
        j["report"] = args.output.display().to_string().into();
        j["invalid_source_rows"] = side.invalid_rows.into();
        j["fixed"] = args.fix.into();
        if let Some(f) = fixed {
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
    if side.invalid_rows > 0 {
        println!(
            "{} source rows are invalid and were not expected in the CRM (see `smbatch validate`)",
            side.invalid_rows
        );
    }
    println!("Report: {}", args.output.display());
}

fn source_side(args: &ReconcileArgs, template: &Template, file: &Path) -> Result<SourceSide> {
    let opts = args.source.options(Some(template))?;
    let side = read_source(file, template, &opts)?;
    if side.rows_read == 0 {
        return Err(Error::Usage(format!(
            "{} has no data rows to reconcile",
            file.display()
        )));
    }
    Ok(side)
}

pub fn run(args: ReconcileArgs) -> Result<Exit> {
    let template = Template::load(&args.template)?;
    let side = source_side(&args, &template, &args.file)?;
    let mut result = check(&args, &side)?;
    let mut fixed = None;
    if args.fix && !result.missing.is_empty() {
        fixed = fix(&args, &side, &result)?;
        result = check(&args, &side)?;
    }
    write_xlsx(&result, &args.output)?;
    print(&args, &side, &result, fixed.as_ref());
    Ok(if result.is_clean() {
        Exit::Clean
    } else {
        Exit::RowsFailed
    })
}
