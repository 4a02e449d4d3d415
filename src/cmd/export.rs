//! `smbatch export`: CRM records out into XLSX or CSV. Wires the crm client to the export
//! pipeline (`crate::export`) and prints the summary.

use super::args::{check_output, print_json, CrmArgs, OutputMode};
use crate::crm::{CrmClient, Entity, RetryPolicy};
use crate::export::{
    self, query, Active, ExportError, ExportJob, Filters, Format, HeaderStyle, Paid,
};
use crate::report::{CsvEncoding, CsvOptions};
use crate::{Exit, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HeadersArg {
    /// The CRM's field names (pid, person, ...)
    Names,
    /// The field titles the CRM shows its users (Ф.И.О., ...)
    Titles,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ActiveArg {
    /// Open deals / tasks only
    Yes,
    /// Closed deals / done tasks only
    No,
    /// Both
    All,
}

pub const EXAMPLES: &str = "\
Examples:
  smbatch export person --sandbox -o persons.xlsx
  smbatch export invoice --paid-from 2026-11-01 --paid-to 2026-11-30 -o paid.xlsx
  smbatch export --all --profile prod -o crm.xlsx   # a sheet per entity: client, person, deal, task, history";

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PaidArg {
    /// Paid invoices only
    Yes,
    /// Unpaid invoices only
    No,
    /// Both
    All,
}

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ExportArgs {
    /// What to export: client, person, deal, task, history or invoice
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub entity: Option<Entity>,
    /// Export every entity into one XLSX file, a sheet each
    #[arg(long)]
    pub all: bool,
    /// Output file, .xlsx or .csv [default: ENTITY.xlsx, export.xlsx with --all]
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Only records created (task/history: dated) on or after this day, YYYY-MM-DD
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Only records created (task/history: dated) on or before this day, YYYY-MM-DD
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// Only records changed at or after this moment (YYYY-MM-DD[ HH:MM:SS], CRM time zone)
    #[arg(long, value_name = "MOMENT")]
    pub changed_since: Option<String>,
    /// Only records of this CRM user (login)
    #[arg(long, value_name = "LOGIN")]
    pub user: Option<String>,
    /// Only records matching this search word (the server's `word` filter)
    #[arg(long)]
    pub word: Option<String>,
    /// Exactly these columns, comma-separated (see `smbatch fields ENTITY`)
    #[arg(long, value_delimiter = ',')]
    pub fields: Option<Vec<String>>,
    /// Column headers: field names or the titles the CRM shows
    #[arg(long, value_enum, default_value = "names")]
    pub headers: HeadersArg,
    /// Deals and tasks: open, closed or both
    #[arg(long, value_enum, default_value = "all")]
    pub active: ActiveArg,
    /// Invoices: paid, unpaid or both
    #[arg(long, value_enum, default_value = "all")]
    pub paid: PaidArg,
    /// Invoices: only those paid on or after this day, YYYY-MM-DD (see README, "For accounting")
    #[arg(long)]
    pub paid_from: Option<String>,
    /// Invoices: only those paid on or before this day, YYYY-MM-DD
    #[arg(long)]
    pub paid_to: Option<String>,
    /// Invoices: only those of this client (clid)
    #[arg(long)]
    pub client: Option<i64>,
    /// Invoices: only those of this deal (did)
    #[arg(long)]
    pub deal: Option<i64>,
    /// CSV encoding: utf-8-bom (Excel opens Cyrillic), utf-8, windows-1251 (old Excel)
    #[arg(long, default_value = "utf-8-bom")]
    pub encoding: CsvEncoding,
    /// CSV delimiter (Russian Excel expects ';' and then decimal commas)
    #[arg(long, default_value = ";")]
    pub delimiter: char,
    /// CSV: prefix text that Excel would run as a formula (=, +, -, @) with '
    #[arg(long)]
    pub escape_formulas: bool,
    /// Pages fetched at the same time
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub concurrency: u16,
    /// Attempts per page before the export stops (transient errors are retried with backoff)
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub attempts: u32,
    /// State file: export only records new or changed since the last run with the same file
    #[arg(long)]
    pub state: Option<PathBuf>,
    #[command(flatten)]
    pub mode: OutputMode,
    #[command(flatten)]
    pub crm: CrmArgs,
}

impl ExportArgs {
    /// The job these arguments describe; every bad value is reported before any request.
    pub fn job(&self) -> std::result::Result<ExportJob, ExportError> {
        let entities = match self.entity {
            Some(Entity::Payment) => return Err(ExportError::Usage(
                "payments are invoice rows: export them with `smbatch export invoice --paid yes`"
                    .into(),
            )),
            Some(e) => vec![e],
            // Everything: the entities templates build, and the invoices (read-only here).
            None => Entity::ALL
                .iter()
                .copied()
                .chain([Entity::Invoice])
                .collect(),
        };
        // A day range from two flags, refused when it ends before it starts.
        let range = |from: (&'static str, &Option<String>), to: (&'static str, &Option<String>)| {
            let day = |(flag, value): (&'static str, &Option<String>)| {
                value
                    .as_deref()
                    .map(|s| query::parse_date(flag, s))
                    .transpose()
            };
            match (day(from)?, day(to)?) {
                (Some(f), Some(t)) if f > t => Err(ExportError::Usage(format!(
                    "{} {f} is after {} {t}",
                    from.0, to.0
                ))),
                days => Ok(days),
            }
        };
        let (from, to) = range(("--from", &self.from), ("--to", &self.to))?;
        let (paid_from, paid_to) = range(
            ("--paid-from", &self.paid_from),
            ("--paid-to", &self.paid_to),
        )?;
        let invoice_only = [
            ("--paid-from", paid_from.is_some()),
            ("--paid-to", paid_to.is_some()),
            ("--client", self.client.is_some()),
            ("--deal", self.deal.is_some()),
            ("--paid", !matches!(self.paid, PaidArg::All)),
        ];
        if let Some((flag, _)) = invoice_only
            .iter()
            .find(|(_, set)| *set && self.entity != Some(Entity::Invoice))
        {
            return Err(ExportError::Usage(format!(
                "{flag} filters invoices; use it with `smbatch export invoice`"
            )));
        }
        let changed_since = self
            .changed_since
            .as_deref()
            .map(|s| query::parse_moment("--changed-since", s))
            .transpose()?;
        if !self.delimiter.is_ascii() {
            return Err(ExportError::Usage(format!(
                "--delimiter must be one ASCII character, not '{}'",
                self.delimiter
            )));
        }
        let fields = self.fields.as_ref().map(|f| {
            f.iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        });
        if fields.as_ref().is_some_and(Vec::is_empty) {
            return Err(ExportError::Usage("--fields names no field".into()));
        }
        let output = self
            .output
            .clone()
            .unwrap_or_else(|| crate::job::names::export_output(self.entity));
        check_output("--output", &output, &["xlsx", "csv"])
            .map_err(|e| ExportError::Usage(e.to_string()))?;
        let csv = CsvOptions {
            encoding: self.encoding,
            delimiter: self.delimiter as u8,
            escape_formulas: self.escape_formulas,
        };
        Ok(ExportJob {
            entities,
            format: Format::for_path(&output, csv),
            output,
            filters: Filters {
                from,
                to,
                user: self.user.clone(),
                word: self.word.clone(),
                active: match self.active {
                    ActiveArg::Yes => Active::Yes,
                    ActiveArg::No => Active::No,
                    ActiveArg::All => Active::All,
                },
                changed_since,
                paid: match self.paid {
                    PaidArg::Yes => Paid::Yes,
                    PaidArg::No => Paid::No,
                    PaidArg::All => Paid::All,
                },
                paid_from,
                paid_to,
                client: self.client,
                deal: self.deal,
            },
            fields,
            headers: match self.headers {
                HeadersArg::Names => HeaderStyle::Names,
                HeadersArg::Titles => HeaderStyle::Titles,
            },
            concurrency: self.concurrency as usize,
            policy: RetryPolicy {
                max_attempts: self.attempts,
                ..RetryPolicy::default()
            },
            quiet: !self.mode.chatty(),
            state: self.state.clone(),
        })
    }
}

pub fn run(args: ExportArgs) -> Result<Exit> {
    let job = args.job()?;
    let (_sandbox, conn) = args.crm.connect()?;
    let client = CrmClient::new(&conn)?;
    let runtime = crate::job::runtime(Some(2))?;
    // The writer runs on this thread (block_on), the page fetches on the runtime's workers.
    let summary = runtime.block_on(export::export(&client, &job))?;
    for w in &summary.warnings {
        eprintln!("smbatch: warning: {w}");
    }
    for e in &summary.entities {
        for n in &e.notes {
            eprintln!("smbatch: note: {n}");
        }
        for m in &e.count_mismatch {
            eprintln!("smbatch: COUNT MISMATCH: {m}");
        }
    }
    if args.mode.json {
        print_json(&summary)?;
    } else if !args.mode.quiet {
        for e in &summary.entities {
            let count = e
                .server_count
                .map_or(String::new(), |c| format!(" (server count {c})"));
            let incremental = if args.state.is_some() {
                let gone = e.gone.map_or(String::new(), |g| format!(", {g} gone"));
                format!(
                    ": {} new, {} changed, {} unchanged left out{gone}",
                    e.new, e.changed, e.unchanged
                )
            } else if e.unchanged > 0 {
                format!(", {} unchanged left out", e.unchanged)
            } else {
                String::new()
            };
            eprintln!("{}: {} rows{count}{incremental}", e.entity, e.rows);
        }
        eprintln!(
            "wrote {} ({} rows in {:.1} s)",
            summary.file.display(),
            summary.rows(),
            summary.seconds
        );
    }
    Ok(if summary.counts_match() {
        Exit::Clean
    } else {
        Exit::RowsFailed
    })
}
