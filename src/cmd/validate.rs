//! `smbatch validate`: the arguments become a [`ValidateJob`] (no network unless a CRM is
//! named); its findings and summary are printed.

use super::args::{ConnectionArgs, SourceArgs};
use crate::job::{ValidateEvent, ValidateJob};
use crate::{Error, Exit, Result};
use clap::Args;
use std::path::PathBuf;

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

impl ValidateArgs {
    /// The job these arguments describe.
    pub fn job(&self) -> ValidateJob {
        let conn = self.conn.overrides();
        ValidateJob {
            file: self.file.clone(),
            template: self.template.clone(),
            source: self.source.overrides(),
            report: self.report.clone(),
            csv_report: self.csv_report.clone(),
            server: conn.names_a_crm().then_some(conn),
            show: (!self.json).then_some(self.show),
        }
    }
}

pub fn run(args: ValidateArgs) -> Result<Exit> {
    let template_name = args.template.display().to_string();
    let outcome = args.job().run(&mut |event| match event {
        ValidateEvent::Finding(f) => eprintln!("{}", f.render(&template_name)),
        ValidateEvent::Warning(f) => eprintln!("warning: {}", f.render(&template_name)),
        ValidateEvent::Hidden(n) => eprintln!("… and {n} more problems (see the report)"),
    })?;
    let summary = &outcome.summary;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(summary).map_err(|e| Error::Usage(e.to_string()))?
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
                crate::template::validation::rows_csv_path(r).display()
            );
        }
    }
    Ok(outcome.exit())
}
