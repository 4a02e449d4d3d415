//! `smbatch validate`: read a file through a template and report every problem. No network.

use super::args::{ConnectionArgs, SourceArgs};
use crate::crm::{CrmClient, RetryPolicy};
use crate::report::validation::{ReportWriter, Tally};
use crate::report::Progress;
use crate::source::{self, display, escape};
use crate::template::dictionaries::Dictionaries;
use crate::template::server::{self as srv, Observed, ServerFacts};
use crate::template::{check_row, map_file_with, CheckedRow, MapOptions, Severity, Template};
use crate::{Error, Exit, Result};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The file to check (.csv, .txt, .xlsx, .xls)
    pub file: PathBuf,
    /// The template (TOML) that maps columns to CRM fields
    #[arg(long, short = 't')]
    pub template: PathBuf,
    /// Write an XLSX report (sheets "Problems" and "Rows")
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the problems as CSV (and the rows next to it as NAME.rows.csv)
    #[arg(long)]
    pub csv_report: Option<PathBuf>,
    #[command(flatten)]
    pub source: SourceArgs,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
    /// How many individual problems to print (the report has them all)
    #[arg(long, default_value_t = 20)]
    pub show: usize,
    /// With --url (or a profile): also check the template against that CRM, read-only
    #[command(flatten)]
    pub conn: ConnectionArgs,
}

pub fn run(args: ValidateArgs) -> Result<Exit> {
    let template = Template::load(&args.template)?;
    let opts = args.source.options(Some(&template))?;
    let src = source::open(&args.file, &opts)?;
    let file_name = args.file.display().to_string();
    let mapper = template.bind(src.headers(), &file_name)?;
    let template_name = args.template.display().to_string();
    // Checked against the server, when one is given: ask before reading the file, so a
    // template that cannot work is reported at once.
    let server = if args.conn.url.is_some() || args.conn.profile.is_some() {
        let conn = args.conn.resolve()?;
        let rt = super::runtime(None)?;
        let client = CrmClient::new(&conn)?;
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let facts = rt.block_on(ServerFacts::fetch(&client, &template, &policy))?;
        let dicts = rt.block_on(Dictionaries::fetch(&client, &template, &policy))?;
        let mut findings = facts.check_template(&template);
        let (refused, inactive) = dicts.check_template(&template);
        findings.extend(refused);
        for f in &findings {
            eprintln!("{}", f.render(&template_name));
        }
        for f in &inactive {
            eprintln!("warning: {}", f.render(&template_name));
        }
        Some((conn, facts, dicts, findings))
    } else {
        None
    };
    let watches = if server.is_some() {
        let mut w = srv::watches(&template, &|c| mapper.column_index(c));
        for d in Dictionaries::watches(&template, &|c| mapper.column_index(c)) {
            if !w.iter().any(|x| x.entity == d.entity && x.field == d.field) {
                w.push(d);
            }
        }
        w
    } else {
        Vec::new()
    };
    let watch_cols: Vec<usize> = watches.iter().map(|w| w.column).collect();
    let mut observed = Observed::default();
    let mapper = Arc::new(mapper);
    let mut tally = Tally::new(
        &file_name,
        &template_name,
        &src.describe(),
        &mapper.entities(),
        template.warnings.clone(),
    );
    let mut report = ReportWriter::new(
        args.report.as_deref(),
        args.csv_report.as_deref(),
        src.headers(),
    )?;
    let progress = Progress::new("rows", None, args.json);
    let mut shown = 0usize;
    let mut hidden = 0u64;
    let keep_rows = report.is_active();
    let worker_mapper = Arc::clone(&mapper);
    let rows = map_file_with(src, MapOptions::default(), move |row| {
        check_row(&worker_mapper, row, keep_rows, &watch_cols)
    });
    for item in rows {
        let CheckedRow {
            row,
            mapped: mut m,
            prints,
            watched,
        } = item?;
        if !watched.is_empty() {
            observed.add(&watches, watched);
        }
        tally.add_fingerprinted(&mut m, &prints);
        if let Some(row) = &row {
            report.add(row, &m)?;
        }
        for p in &m.problems {
            if args.json {
                break;
            }
            if shown < args.show {
                shown += 1;
                let col = p
                    .column
                    .as_deref()
                    .map(|c| format!(" column '{}'", display(c)))
                    .unwrap_or_default();
                let ent = p.entity.map(|e| format!(" {e}")).unwrap_or_default();
                let sev = if p.severity == Severity::Warning {
                    "warning"
                } else {
                    "error"
                };
                let val = if p.value.is_empty() {
                    String::new()
                } else {
                    format!(" value '{}'", display(&p.value))
                };
                let line = format!("{}{col}{ent}: {sev}:{val} {}", m.pos, escape(&p.message));
                progress.println(&line);
            } else {
                hidden += 1;
            }
        }
        progress.inc(1);
    }
    progress.finish();
    if hidden > 0 {
        eprintln!("… and {hidden} more problems (see the report)");
    }
    let mut summary = tally.finish(10);
    if let Some((conn, facts, dicts, mut findings)) = server {
        let later = facts.check_values(&template, &watches, &observed);
        let (values, inactive) = dicts.check_values(&template, &watches, &observed);
        for f in later.iter().chain(&values) {
            eprintln!("{}", f.render(&template_name));
        }
        for f in &inactive {
            eprintln!("warning: {}", f.render(&template_name));
        }
        findings.extend(later);
        findings.extend(values);
        summary.server = Some(conn.url.clone());
        summary.server_findings = findings;
    }
    report.finish(&template_name, &summary.server_findings)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).map_err(|e| Error::Usage(e.to_string()))?
        );
    } else {
        print!("{}", summary.render());
        if let Some(r) = &args.report {
            println!("Report: {}", r.display());
        }
        if let Some(r) = &args.csv_report {
            println!(
                "CSV report: {} and {}",
                r.display(),
                crate::report::validation::rows_csv_path(r).display()
            );
        }
    }
    Ok(
        if summary.invalid_rows > 0 || !summary.server_findings.is_empty() {
            Exit::RowsFailed
        } else {
            Exit::Clean
        },
    )
}
