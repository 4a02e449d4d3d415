//! `smbatch reconcile`: is everything there, and is it right? Reads the source through its
//! template, exports the CRM's records and writes a report a manager can read.

use crate::cli::ConnectionArgs;
use crate::cmd::validate::source_options;
use crate::crm::{CrmClient, RetryPolicy};
use crate::reconcile::run::{compare, fetch_crm, read_source};
use crate::report::reconcile::{summary_json, summary_text, write_xlsx};
use crate::template::Template;
use crate::{Error, Exit, Result};
use clap::Args;
use std::path::PathBuf;

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
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
    /// CSV encoding: auto, utf-8, windows-1251, utf-16 (overrides the template)
    #[arg(long)]
    pub encoding: Option<String>,
    /// CSV delimiter (overrides the template)
    #[arg(long)]
    pub delimiter: Option<String>,
    /// Sheet name or 1-based number (overrides the template)
    #[arg(long)]
    pub sheet: Option<String>,
    /// Pages fetched at once while exporting the CRM side
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// No progress display
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub conn: ConnectionArgs,
}

pub fn run(args: ReconcileArgs) -> Result<Exit> {
    let template = Template::load(&args.template)?;
    let opts = source_options(
        args.encoding.as_deref(),
        args.delimiter.as_deref(),
        args.sheet.as_deref(),
        &template,
    )?;
    let conn = args.conn.resolve()?;
    let side = read_source(&args.file, &template, &opts)?;
    if side.records.is_empty() && side.rows_read == 0 {
        return Err(Error::Usage(format!(
            "{} has no data rows to reconcile",
            args.file.display()
        )));
    }
    let client = CrmClient::new(&conn)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the async runtime: {e}")))?;
    let policy = RetryPolicy::default();
    let crm = runtime.block_on(fetch_crm(
        &client,
        &side,
        args.concurrency.max(1),
        &policy,
        args.quiet,
    ))?;
    let result = compare(&side, &crm, None);
    write_xlsx(&result, &args.output)?;
    if args.json {
        let mut j = summary_json(&result);
        j["report"] = args.output.display().to_string().into();
        j["invalid_source_rows"] = side.invalid_rows.into();
        println!("{j}");
    } else {
        print!("{}", summary_text(&result));
        if side.invalid_rows > 0 {
            println!(
                "{} source rows are invalid and were not expected in the CRM (see `smbatch validate`)",
                side.invalid_rows
            );
        }
        println!("Report: {}", args.output.display());
    }
    Ok(if result.is_clean() {
        Exit::Clean
    } else {
        Exit::RowsFailed
    })
}
