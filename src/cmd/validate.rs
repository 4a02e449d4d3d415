//! `smbatch validate`: the arguments become a [`ValidateJob`] (no network unless a CRM is
//! named); its findings and summary are printed.

use super::args::{check_reports, print_json, CrmArgs, OutputMode, SourceArgs};
use crate::job::{ValidateEvent, ValidateJob};
use crate::{Exit, Result};
use clap::Args;
use std::path::PathBuf;

pub const EXAMPLES: &str = "\
Examples:
  smbatch validate samples/migration-cp1251.csv -t templates/migration-flat.toml -o out/validate.xlsx
  smbatch validate customer.xlsx -t templates/customer.toml --sandbox --csv-report out/problems.csv
  smbatch validate customer.xlsx -t templates/customer.toml --url https://crm.example.ru --login admin@example.ru -q";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ValidateArgs {
    /// The file to check (.csv, .txt, .xlsx, .xls)
    pub file: PathBuf,
    /// The template (TOML) that maps columns to CRM fields
    #[arg(long, short = 't')]
    pub template: PathBuf,
    /// Write an XLSX report (sheets "Problems" and "Rows")
    #[arg(long, short = 'o', alias = "report", value_name = "XLSX")]
    pub output: Option<PathBuf>,
    /// Write the problems as CSV (and the rows next to it as NAME.rows.csv)
    #[arg(long, value_name = "CSV")]
    pub csv_report: Option<PathBuf>,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub mode: OutputMode,
    /// How many individual problems to print (the report has them all)
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub show: usize,
    /// With --url (or a profile) or --sandbox: also check the template against that CRM,
    /// read-only
    #[command(flatten)]
    pub crm: CrmArgs,
}

impl ValidateArgs {
    /// The job these arguments describe.
    pub fn job(&self) -> Result<ValidateJob> {
        check_reports(self.output.as_deref(), self.csv_report.as_deref())?;
        Ok(ValidateJob {
            file: self.file.clone(),
            template: self.template.clone(),
            source: self.source.overrides(),
            report: self.output.clone(),
            csv_report: self.csv_report.clone(),
            server: self.crm.names_a_crm().then(|| self.crm.target()),
            show: self.mode.chatty().then_some(self.show),
        })
    }
}

pub fn run(args: ValidateArgs) -> Result<Exit> {
    let template_name = args.template.display().to_string();
    let outcome = args.job()?.run(&mut |event| match event {
        ValidateEvent::Finding(f) => eprintln!("{}", f.render(&template_name)),
        ValidateEvent::Warning(f) => eprintln!("warning: {}", f.render(&template_name)),
        ValidateEvent::Hidden(n) => eprintln!("… and {n} more problems (see the report)"),
    })?;
    let summary = &outcome.summary;
    if args.mode.json {
        print_json(summary)?;
    } else {
        print!("{}", summary.render());
        if let Some(r) = &args.output {
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
