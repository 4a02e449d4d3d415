//! The reconcile job: is everything there, and is it right? Reads the source through its
//! template, exports the CRM's records, compares and writes the report. `fix` sends the missing
//! records with an [`ImportJob`], through a journal that makes sure nothing goes twice, and
//! checks again.

use super::import::Summary;
use super::{names, ImportEvent, ImportJob, Target};
use crate::crm::{CrmClient, RetryPolicy};
use crate::reconcile::report::write_xlsx;
use crate::reconcile::run::{check, find_invisible, prepare_fix, read_source, SourceSide};
use crate::reconcile::Reconciliation;
use crate::source::SourceOverrides;
use crate::template::Template;
use crate::upload::journal::fingerprint_file;
use crate::upload::{Concurrency, Journal, RunIdentity};
use crate::{Error, Exit, Result};
use std::path::PathBuf;

/// One reconciliation.
#[derive(Debug, Clone)]
pub struct ReconcileJob {
    /// The source file the CRM should reflect.
    pub file: PathBuf,
    /// The template it was (or will be) imported with.
    pub template: PathBuf,
    pub source: SourceOverrides,
    /// The report (XLSX).
    pub output: PathBuf,
    /// The import's journal: its key → CRM id map is used for matching (and updated by `fix`).
    pub journal: Option<PathBuf>,
    /// Send the records missing in the CRM, then check again.
    pub fix: bool,
    pub target: Target,
    /// Pages fetched at once while exporting the CRM side.
    pub concurrency: usize,
    /// Show progress displays.
    pub progress: bool,
    /// With `fix`: send even if the template writes fields the CRM does not list.
    pub allow_unknown_fields: bool,
}

/// Something the caller may show while the job runs.
#[derive(Debug)]
pub enum ReconcileEvent<'a> {
    /// `fix` is about to send this many missing records.
    Sending(u64),
    /// What the fix's import says (warnings, a stop).
    Import(ImportEvent<'a>),
    /// The fix's import is done: what it sent.
    Fixed(&'a Summary),
}

/// How a reconciliation ended.
#[derive(Debug)]
pub struct ReconcileOutcome {
    /// The last comparison (after the fix, if one ran).
    pub result: Reconciliation,
    /// Source rows that are invalid and so not expected in the CRM.
    pub invalid_source_rows: u64,
    /// What `fix` sent, if it sent anything.
    pub fixed: Option<Summary>,
}

impl ReconcileOutcome {
    pub fn exit(&self) -> Exit {
        if self.result.is_clean() {
            Exit::Clean
        } else {
            Exit::RowsFailed
        }
    }
}

impl ReconcileJob {
    pub fn run(&self, on: &mut dyn FnMut(ReconcileEvent)) -> Result<ReconcileOutcome> {
        let template = Template::load(&self.template)?;
        let opts = self.source.options(Some(&template.source))?;
        let side = read_source(&self.file, &template, &opts)?;
        if side.rows_read == 0 {
            return Err(Error::Usage(format!(
                "{} has no data rows to reconcile",
                self.file.display()
            )));
        }
        let mut result = self.check(&side)?;
        let mut fixed = None;
        if self.fix && result.missing_count() > 0 {
            fixed = self.send_missing(&side, &result, on)?;
            result = self.check(&side)?;
        }
        write_xlsx(&result, &self.output)?;
        Ok(ReconcileOutcome {
            result,
            invalid_source_rows: side.invalid_rows,
            fixed,
        })
    }

    /// The journal `fix` works with: the import's own, or a new one next to the report.
    fn fix_journal_path(&self) -> PathBuf {
        self.journal
            .clone()
            .unwrap_or_else(|| names::fix_journal(&self.output))
    }

    /// Export the CRM side and match it with the source; records the journal knows as created
    /// that `list` does not show are looked up by `info` before they count as missing.
    fn check(&self, side: &SourceSide) -> Result<Reconciliation> {
        // The import's journal, or the one an earlier `fix` kept next to the report: without it
        // a record the API user cannot list would be "missing" and re-sent by every fix.
        let journal = match &self.journal {
            Some(path) if path.exists() => Some(path.clone()),
            Some(path) => {
                return Err(Error::Usage(format!(
                    "--journal {}: no such file",
                    path.display()
                )))
            }
            None => Some(self.fix_journal_path()).filter(|p| self.fix && p.exists()),
        };
        let journal = match &journal {
            Some(path) => Some(Journal::open(path)?),
            None => None,
        };
        let (sandbox, conn) = self.target.connect()?;
        let client = CrmClient::new(&conn)?;
        let runtime = super::runtime(Some(2))?;
        let policy = RetryPolicy::default();
        let mut result = runtime.block_on(check(
            &client,
            side,
            journal.as_ref(),
            self.concurrency.max(1),
            &policy,
            !self.progress,
        ))?;
        let invisible = runtime.block_on(find_invisible(&client, &result, &policy))?;
        result.mark_invisible(&invisible)?;
        if let Some(s) = sandbox {
            s.stop();
        }
        Ok(result)
    }

    /// Send what is missing with an import job; answers what it sent (never the records an
    /// earlier run already stored), or `None` when nothing was missing after all.
    fn send_missing(
        &self,
        side: &SourceSide,
        result: &Reconciliation,
        on: &mut dyn FnMut(ReconcileEvent),
    ) -> Result<Option<Summary>> {
        let journal_path = self.fix_journal_path();
        let mut journal = Journal::open(&journal_path)?;
        // Bind it to this file, template and CRM exactly as the import will check it.
        let target = self.target.resolve()?;
        journal.bind(&RunIdentity {
            input: self.file.display().to_string(),
            input_hash: fingerprint_file(&self.file)?,
            template_hash: fingerprint_file(&self.template)?,
            target: target.name()?,
        })?;
        let missing = prepare_fix(&mut journal, side, result)?;
        drop(journal);
        if missing == 0 {
            return Ok(None);
        }
        on(ReconcileEvent::Sending(missing as u64));
        let import = ImportJob {
            file: self.file.clone(),
            template: self.template.clone(),
            source: self.source.clone(),
            target,
            journal: Some(journal_path),
            resume: false,
            report: Some(names::fix_report(&self.output)),
            csv_report: None,
            chunk: 100,
            concurrency: Concurrency::Auto,
            retry_for: crate::crm::DEFAULT_RETRY_FOR,
            mode: crate::upload::Mode::Insert,
            backup: None,
            dry_run: false,
            allow_unknown_fields: self.allow_unknown_fields,
            only_failed: None,
            progress: self.progress,
            // The fix's invalid rows are not printed (the first check already said them).
            show_invalid: 0,
        };
        // Rows that fail again show in the fix report and in the second check.
        let outcome = import.run(&mut |e| on(ReconcileEvent::Import(e)))?;
        outcome.exit()?;
        on(ReconcileEvent::Fixed(&outcome.summary));
        Ok(Some(outcome.summary))
    }
}
