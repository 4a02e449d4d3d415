//! The validate job: read a file through a template and find every problem; with a CRM, also
//! check the template and the values against that CRM (read-only). Writes the validation report.

use crate::crm::{CrmClient, RetryPolicy};
use crate::report::Progress;
use crate::source::{self, display, escape, SourceOverrides};
use crate::template::dictionaries::Dictionaries;
use crate::template::server::{self as srv, Observed, ServerFacts, ServerFinding};
use crate::template::validation::{ReportWriter, Tally, ValidationSummary};
use crate::template::{check_row, map_file_view, MapOptions, Severity, Template};
use crate::{Exit, Result};
use std::path::PathBuf;
use std::sync::Arc;

/// One validation.
#[derive(Debug, Clone)]
pub struct ValidateJob {
    /// The file to check.
    pub file: PathBuf,
    /// The template (TOML) that maps its columns.
    pub template: PathBuf,
    pub source: SourceOverrides,
    /// The XLSX report (sheets "Problems" and "Rows").
    pub report: Option<PathBuf>,
    /// The problems as CSV (and the rows next to it as NAME.rows.csv).
    pub csv_report: Option<PathBuf>,
    /// Also check the template against this CRM (or sandbox), read-only.
    pub server: Option<super::Target>,
    /// How many individual problems to print above the progress display (the report has them
    /// all); `None` prints none and shows no progress.
    pub show: Option<usize>,
}

/// Something the caller may show while the job runs (on stderr, in this order).
#[derive(Debug)]
pub enum ValidateEvent<'a> {
    /// Where template and CRM disagree (the template's line is in the rendering).
    Finding(&'a ServerFinding),
    /// Worth knowing, not a problem (an inactive owner).
    Warning(&'a ServerFinding),
    /// More problems were found than `show` printed.
    Hidden(u64),
}

/// How a validation ended.
#[derive(Debug)]
pub struct ValidateOutcome {
    pub summary: ValidationSummary,
}

impl ValidateOutcome {
    /// Some rows are invalid, or the CRM disagrees with the template: exit 1.
    pub fn exit(&self) -> Exit {
        if self.summary.invalid_rows > 0 || !self.summary.server_findings.is_empty() {
            Exit::RowsFailed
        } else {
            Exit::Clean
        }
    }
}

impl ValidateJob {
    pub fn run(&self, on: &mut dyn FnMut(ValidateEvent)) -> Result<ValidateOutcome> {
        let template = Template::load(&self.template)?;
        let opts = self.source.options(Some(&template.source))?;
        let src = source::open(&self.file, &opts)?;
        let file_name = self.file.display().to_string();
        let mapper = template.bind(src.headers(), &file_name)?;
        let template_name = self.template.display().to_string();
        // Checked against the server, when one is given: ask before reading the file, so a
        // template that cannot work is reported at once.
        let server = match &self.server {
            Some(target) => {
                // A sandbox runs only while its facts are fetched; it is named by its file.
                let (sandbox, conn) = target.connect()?;
                let name = match sandbox {
                    Some(_) => target.name()?,
                    None => conn.url.clone(),
                };
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
                    on(ValidateEvent::Finding(f));
                }
                for f in &inactive {
                    on(ValidateEvent::Warning(f));
                }
                Some((name, facts, dicts, findings))
            }
            None => None,
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
            self.report.as_deref(),
            self.csv_report.as_deref(),
            src.headers(),
        )?;
        let progress = Progress::new("rows", None, self.show.is_none());
        let mut shown = 0usize;
        let mut hidden = 0u64;
        let keep_rows = report.is_active();
        let worker_mapper = Arc::clone(&mapper);
        let file: Arc<str> = Arc::from(src.file());
        let mut rows = map_file_view(src, MapOptions::default(), move |row| {
            check_row(&worker_mapper, row, keep_rows, &watch_cols)
        });
        // The key table is bigger than the caches: its slots for a few rows ahead are fetched
        // while the current row is counted (a row ahead was too close to hide the wait).
        const AHEAD: usize = 8;
        // The file's size over the first batch's bytes a row says about how many rows it holds.
        let file_len = std::fs::metadata(&self.file).map_or(0, |m| m.len());
        let mut sized = false;
        loop {
            if !sized {
                let (rows_in, bytes_in) = rows.read_so_far();
                if rows_in > 0 {
                    sized = true;
                    // No bytes (a spreadsheet): its size says nothing of its rows.
                    if let Some(rows) = file_len.saturating_mul(rows_in).checked_div(bytes_in) {
                        tally.expect_rows(rows);
                    }
                }
            }
            if let Some(later) = rows.ahead(AHEAD) {
                tally.prefetch(later.records.iter().map(|r| r.print()));
            }
            let Some(item) = rows.next_mut() else { break };
            let c = item?;
            if let Some(x) = c.extra.as_deref_mut() {
                if !x.watched.is_empty() {
                    observed.add(&watches, std::mem::take(&mut x.watched));
                }
            }
            tally.add_checked(c, &file);
            let Some(m) = c.mapped.as_deref() else {
                progress.inc(1);
                continue;
            };
            if let Some(row) = c.extra.as_ref().and_then(|x| x.source.as_ref()) {
                report.add(row, m)?;
            }
            if let Some(show) = self.show {
                for p in &m.problems {
                    if shown < show {
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
                        let line =
                            format!("{}{col}{ent}: {sev}:{val} {}", m.pos, escape(&p.message));
                        progress.println(&line);
                    } else {
                        hidden += 1;
                    }
                }
            }
            progress.inc(1);
        }
        progress.finish();
        if hidden > 0 {
            on(ValidateEvent::Hidden(hidden));
        }
        let mut summary = tally.finish(10);
        if let Some((name, facts, dicts, mut findings)) = server {
            let later = facts.check_values(&template, &watches, &observed);
            let (values, inactive) = dicts.check_values(&template, &watches, &observed);
            for f in later.iter().chain(&values) {
                on(ValidateEvent::Finding(f));
            }
            for f in &inactive {
                on(ValidateEvent::Warning(f));
            }
            findings.extend(later);
            findings.extend(values);
            summary.server = Some(name);
            summary.server_findings = findings;
        }
        report.finish(&template_name, &summary.server_findings)?;
        Ok(ValidateOutcome { summary })
    }
}
