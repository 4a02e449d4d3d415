//! The import job: source → template → plan → upload (journaled) → report. Plain inputs, a
//! typed outcome; what to print is the caller's (events arrive in the order a user should see
//! them: warnings, the invalid rows, the reason a run stopped — all before the summary).

pub mod rows;
pub mod summary;

pub use rows::{invalid_row_lines, row_line, INVALID_ROWS_SHOWN};
pub use summary::{summary_table, EntitySummary, Summary};

use super::names;
use super::Target;
use crate::crm::{CrmClient, Entity};
use crate::report::import::{rows_to_retry, ImportReport};
use crate::source::{self, SourceOverrides};
use crate::template::dictionaries::{Dictionaries, UnknownValues};
use crate::template::server::require_known_fields;
use crate::template::{map_file, MapOptions, Template};
use crate::upload::journal::fingerprint_file;
use crate::upload::{Concurrency, Journal, Mode, PlanTotals, RunIdentity, UploadOptions, Uploader};
use crate::{Error, Exit, Result};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Which rows `only_failed` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnlyFailed {
    /// The rows the run's own journal recorded as not done.
    Journal,
    /// The rows another journal (`.sqlite`) recorded as not done, or — the legacy form — the
    /// rows an import report (`.xlsx`, `.csv`) lists as not created/existing.
    From(PathBuf),
}

/// One import run.
#[derive(Debug, Clone)]
pub struct ImportJob {
    /// The file to import.
    pub file: PathBuf,
    /// The template (TOML) that maps its columns.
    pub template: PathBuf,
    /// How to read the file, over the template's `[source]`.
    pub source: SourceOverrides,
    /// Where to send (not contacted in a dry run).
    pub target: Target,
    /// The journal; default: [`ImportJob::journal_path`] (under the data directory).
    pub journal: Option<PathBuf>,
    /// Continue from the journal, which must exist.
    pub resume: bool,
    /// The XLSX report; default: [`names::import_report`].
    pub report: Option<PathBuf>,
    pub csv_report: Option<PathBuf>,
    /// Rows per add.list request.
    pub chunk: usize,
    pub concurrency: Concurrency,
    /// How long to keep retrying a CRM that does not answer before the run stops.
    pub retry_for: Duration,
    /// Insert, upsert or update (every mode matches against the CRM first).
    pub mode: Mode,
    /// Read, validate, plan and match: read the CRM, send nothing (with no CRM configured,
    /// match nothing).
    pub dry_run: bool,
    /// Send even if the template writes fields the CRM does not list.
    pub allow_unknown_fields: bool,
    /// Only the rows an earlier run left to do.
    pub only_failed: Option<OnlyFailed>,
    /// Show a progress display while sending.
    pub progress: bool,
    /// How many invalid rows [`ImportEvent::InvalidRows`] lists (and a line for the rest).
    pub show_invalid: usize,
    /// `Mode::Delete`: the backup XLSX written before the first delete; default
    /// [`names::backup_next_to`] the report.
    pub backup: Option<PathBuf>,
}

/// What a delete is about to do, for the caller to confirm (after matching, before the backup
/// and the first delete).
#[derive(Debug, Clone)]
pub struct DeletePlan {
    pub total: u64,
    pub per_entity: BTreeMap<Entity, u64>,
    /// The CRM's URL.
    pub target: String,
}

/// Something the caller may show while the job runs, in the order it happens.
#[derive(Debug)]
pub enum ImportEvent<'a> {
    /// A check before the first write found something worth saying (an inactive owner, an
    /// unknown field let through).
    Warning(&'a str),
    /// The invalid rows, before the upload starts (at most `show_invalid` and a line
    /// saying how many more).
    InvalidRows(&'a [String]),
    /// Ctrl-C: no new chunks are sent; the requests in flight finish and are journaled.
    Interrupted,
    /// The run stopped early for this reason; the report and summary still follow.
    Stopped(&'a Error),
}

/// How an import ended.
#[derive(Debug)]
pub struct ImportOutcome {
    pub summary: Summary,
}

impl ImportOutcome {
    /// The exit the run ends with: a run that stopped early is an error (already reported by
    /// [`ImportEvent::Stopped`]), an interrupted one says so; otherwise clean or some rows
    /// failed. A dry run is clean.
    pub fn exit(&self) -> Result<Exit> {
        let s = &self.summary;
        if s.stopped.is_some() {
            return Err(Error::AlreadyReported);
        }
        if s.interrupted {
            return Err(Error::Interrupted);
        }
        Ok(if s.dry_run || s.is_clean() {
            Exit::Clean
        } else {
            Exit::RowsFailed
        })
    }
}

impl ImportJob {
    /// The report this job writes.
    pub fn report_path(&self) -> PathBuf {
        self.report
            .clone()
            .unwrap_or_else(|| names::import_report(&self.file))
    }

    /// The backup a delete writes.
    pub fn backup_path(&self) -> PathBuf {
        self.backup
            .clone()
            .unwrap_or_else(|| names::backup_next_to(&self.report_path()))
    }

    /// The journal this job keeps for `target` (its [`Target::identity`]): `--journal`, or one
    /// derived from the input's content, the template and the target ([`names::default_journal`]).
    pub fn journal_path(&self, target: &str) -> Result<PathBuf> {
        if let Some(j) = &self.journal {
            return Ok(j.clone());
        }
        // A delete of the same file keeps a journal of its own: an import after it must not
        // take its deleted records for ones an earlier run stored.
        let target = if self.mode == Mode::Delete {
            format!("{target}\ndelete")
        } else {
            target.to_string()
        };
        Ok(names::default_journal(
            &self.file,
            &fingerprint_file(&self.file)?,
            &fingerprint_file(&self.template)?,
            &target,
        ))
    }

    /// Run it. Errors before the first row is planned (a bad template, an unreadable file, a
    /// journal of another run) come back as `Err`; a run that starts always writes its report
    /// and journal, and ends with an outcome (see [`ImportOutcome::exit`]).
    pub fn run(&self, on: &mut dyn FnMut(ImportEvent)) -> Result<ImportOutcome> {
        self.run_confirmed(on, &mut |_| true)
    }

    /// [`ImportJob::run`], and a delete asks `confirm` with what it matched before its backup
    /// and first delete: `false` stops the run with nothing deleted.
    pub fn run_confirmed(
        &self,
        on: &mut dyn FnMut(ImportEvent),
        confirm: &mut dyn FnMut(&DeletePlan) -> bool,
    ) -> Result<ImportOutcome> {
        let started = std::time::Instant::now();
        if self.chunk == 0 {
            return Err(Error::Usage("--chunk must be at least 1".into()));
        }
        let template = Template::load(&self.template)?;
        if self.mode == Mode::Delete {
            if let Some(e) = template
                .entities
                .iter()
                .find(|e| matches!(e.entity, Entity::Invoice | Entity::Payment))
            {
                return Err(Error::Usage(format!(
                    "{}: smbatch delete does not delete {}s (the API has no invoice delete, and a payment cannot be undone); leave the [[entity]] of type \"{}\" out of the delete's template",
                    self.template.display(),
                    e.entity,
                    e.entity
                )));
            }
        }
        let opts = self.source.options(Some(&template.source))?;
        let only = self.rows_to_retry()?;

        let src = source::open(&self.file, &opts)?;
        let file_name = self.file.display().to_string();
        let mapper = Arc::new(template.bind(src.headers(), &file_name)?);
        // A dry run reads the CRM it would write to (to match), when one is configured.
        let target = match self.target.resolve() {
            Err(_) if self.dry_run && matches!(self.target, Target::Configured(_)) => None,
            other => Some(other?),
        };
        let Some(target) = target else {
            // No CRM: the offline checks only, as `validate` without --url makes them. The plan
            // goes into a scratch journal, deleted when the run ends.
            on(ImportEvent::Warning(
                "no CRM configured (--url, --sandbox or a profile): the dry run matches nothing, so every valid record counts as one it would create",
            ));
            let mut journal = crate::upload::planstore::scratch()?;
            let planned = plan_rows(&mut journal, src, mapper, only.as_ref(), None, &template)?;
            return self.dry_run(&journal, planned, started, on);
        };

        // Where to send: the embedded sandbox, or the configured CRM.
        let target_name = target.name()?;
        let (sandbox, conn) = target.connect()?;
        let client = CrmClient::new(&conn)?;
        let journal_path = self.journal_path(&target.identity()?)?;
        if self.resume && !journal_path.exists() {
            let why = if self.journal.is_none() {
                " (the default journal belongs to this file's content, template and CRM: if the file or template changed since, there is nothing to resume — run without --resume; records already in the CRM are matched, not created again)"
            } else {
                ""
            };
            return Err(Error::Usage(format!(
                "--resume: there is no journal at {} to resume from{why}",
                journal_path.display()
            )));
        }
        let mut journal = if self.dry_run {
            // A dry run keeps nothing: its plan and matches go into a scratch journal.
            crate::upload::planstore::scratch()?
        } else {
            let mut journal = Journal::open(&journal_path)?;
            journal.bind(&RunIdentity {
                input: file_name.clone(),
                input_hash: fingerprint_file(&self.file)?,
                template_hash: fingerprint_file(&self.template)?,
                target: target_name.clone(),
            })?;
            journal
        };

        let stop = Arc::new(AtomicBool::new(false));
        let mut interrupted = false;
        let runtime = super::runtime(Some(2))?;

        // Before the first write: is the CRM there, does it take our key, does it know every
        // field the template writes, and does it have the owners and dictionary values the
        // template sends? A server that is down, a wrong key, a field the server would silently
        // drop or an owner it does not have is the first thing said, and nothing is sent. The
        // CRM's lists (users, deal steps…) then check every row.
        let preflight = runtime.block_on(preflight(
            &client,
            &target_name,
            &template,
            &self.template.display().to_string(),
            self.allow_unknown_fields,
            self.retry_for,
        ));
        let dicts = match preflight {
            Ok((warnings, dicts)) => {
                for w in &warnings {
                    on(ImportEvent::Warning(w));
                }
                Ok(dicts)
            }
            Err(e) => Err(e),
        };

        // Read, map and validate every row; valid records go into the plan (each key once), in
        // the journal. Every row is read even when the preflight refused the run, so the report
        // still lists them all.
        let planned = plan_rows(
            &mut journal,
            src,
            mapper,
            only.as_ref(),
            dicts.as_ref().ok(),
            &template,
        )?;

        let mut upload_opts = UploadOptions {
            chunk: self.chunk,
            concurrency: self.concurrency,
            quiet: !self.progress,
            mode: self.mode,
            dry_run: self.dry_run,
            probes: template
                .entities
                .iter()
                .map(|e| (e.entity, e.probes.clone()))
                .collect(),
            mapped: template
                .entities
                .iter()
                .map(|e| (e.entity, e.fields.iter().map(|f| f.name.clone()).collect()))
                .collect(),
            owners: dicts
                .as_ref()
                .ok()
                .and_then(|d| d.users.as_ref())
                .into_iter()
                .flatten()
                .map(|u| (u.login.clone(), u.iduser))
                .collect(),
            ..UploadOptions::default()
        };
        upload_opts.retry.max_elapsed = self.retry_for;
        upload_opts.lookup_retry.max_elapsed = self.retry_for;
        let mut uploader = Uploader::new(client.clone(), journal, upload_opts, stop.clone())?;
        let mut backup: Option<crate::upload::backup::BackupFiles> = None;

        let result: Result<(), Error> = match dicts {
            Err(e) => Err(e),
            Ok(_) => {
                on(ImportEvent::InvalidRows(&invalid_row_lines(
                    &planned.totals.first_invalid,
                    planned.totals.invalid_rows,
                    self.show_invalid,
                )));
                let prepared = if self.mode == Mode::Delete {
                    self.prepare_delete(&runtime, &client, &mut uploader, &target_name, confirm)
                } else {
                    Ok(None)
                };
                if let Ok(Some(b)) = &prepared {
                    backup = Some(b.clone());
                }
                prepared.and_then(|_| {
                    runtime
                        .block_on(async {
                            let upload = uploader.run();
                            tokio::pin!(upload);
                            // Ctrl-C: no new chunks; requests in flight finish and are journaled.
                            tokio::select! {
                                r = &mut upload => r,
                                Ok(()) = tokio::signal::ctrl_c() => {
                                    interrupted = true;
                                    stop.store(true, Ordering::SeqCst);
                                    on(ImportEvent::Interrupted);
                                    upload.await
                                }
                            }
                        })
                        .map_err(Error::from)
                })
            }
        };
        drop(runtime);
        // A stop is said first, before the summary and the report paths.
        if let Err(e) = &result {
            on(ImportEvent::Stopped(e));
        }

        let counts = self.counts(&uploader.journal())?;
        let mut summary = self.finish(
            &uploader.journal(),
            &planned,
            &counts,
            RunInfo {
                target: conn.url.clone(),
                journal: (!self.dry_run).then_some(journal_path.as_path()),
                interrupted,
                stopped: result.as_ref().err().map(|e| e.to_string()),
                dry_run: self.dry_run,
                started,
            },
        )?;
        if let Some(s) = sandbox {
            s.stop();
        }
        summary.backup = backup.map(|b| crate::job::import::summary::BackupSummary {
            file: b.xlsx.display().to_string(),
            template: b.template.display().to_string(),
            records: b.records,
        });
        Ok(ImportOutcome { summary })
    }

    /// Per-entity counts; a dry run counts what it would do.
    fn counts(
        &self,
        journal: &Journal,
    ) -> Result<std::collections::HashMap<Entity, crate::upload::EntityCounts>> {
        Ok(journal.plan_counts(self.dry_run.then_some(self.mode))?)
    }

    /// A delete, before its first request: match every record, ask, and write the backup of
    /// every record it will delete (and what the server deletes along with them). `None`: a
    /// dry run, or nothing to delete.
    fn prepare_delete(
        &self,
        runtime: &tokio::runtime::Runtime,
        client: &CrmClient,
        uploader: &mut Uploader,
        target: &str,
        confirm: &mut dyn FnMut(&DeletePlan) -> bool,
    ) -> Result<Option<crate::upload::backup::BackupFiles>> {
        use crate::upload::backup;
        runtime.block_on(uploader.match_all())?;
        if self.dry_run {
            return Ok(None);
        }
        let deleting = uploader.journal().delete_candidates()?;
        if deleting.is_empty() {
            return Ok(None);
        }
        let mut per_entity = BTreeMap::new();
        for r in &deleting {
            *per_entity.entry(r.entity).or_insert(0u64) += 1;
        }
        let plan = DeletePlan {
            total: deleting.len() as u64,
            per_entity,
            target: target.to_string(),
        };
        if !confirm(&plan) {
            return Err(Error::Usage("not confirmed: nothing was deleted".into()));
        }
        let policy = crate::crm::RetryPolicy {
            max_elapsed: self.retry_for,
            ..crate::crm::RetryPolicy::default()
        };
        let along = runtime.block_on(backup::dependants(client, &deleting, &policy))?;
        let rows = {
            let mut j = uploader.journal();
            j.keep_backup(&deleting)?;
            j.keep_backup(&along)?;
            j.backup_rows()?
        };
        let entities = rows.iter().map(|r| r.entity).collect();
        let known = runtime.block_on(backup::known_fields(client, &entities, &policy))?;
        Ok(Some(backup::write_files(
            &rows,
            &known,
            &self.backup_path(),
        )?))
    }

    /// The rows `only_failed` selects: from a journal's row outcomes, or (legacy) a report.
    fn rows_to_retry(&self) -> Result<Option<HashSet<u64>>> {
        let path = match &self.only_failed {
            None => return Ok(None),
            Some(OnlyFailed::Journal) => self.journal_path(&self.target.resolve()?.identity()?)?,
            Some(OnlyFailed::From(p)) => p.clone(),
        };
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if matches!(ext.as_deref(), Some("xlsx" | "csv")) {
            return Ok(Some(rows_to_retry(&path)?));
        }
        if !path.exists() {
            return Err(Error::Usage(format!(
                "--only-failed: there is no journal at {}: it reads the journal of an earlier run (pass --only-failed JOURNAL, or the same --journal/--report as that run)",
                path.display()
            )));
        }
        match Journal::open(&path)?.rows_to_retry()? {
            Some(rows) => Ok(Some(rows)),
            None => Err(Error::Usage(format!(
                "--only-failed: the journal {} holds no finished run's row outcomes: run the import without --only-failed first",
                path.display()
            ))),
        }
    }

    /// Count, write the report (every row, one outcome each) and the row outcomes into the
    /// journal, and check that it all adds up.
    fn finish(
        &self,
        journal: &Journal,
        planned: &Planned,
        counts: &std::collections::HashMap<Entity, crate::upload::EntityCounts>,
        run: RunInfo,
    ) -> Result<Summary> {
        let mut entities = BTreeMap::new();
        for e in Entity::IMPORT {
            let c = counts.get(&e).cloned().unwrap_or_default();
            let rc = planned
                .totals
                .by_entity
                .get(&e)
                .copied()
                .unwrap_or_default();
            if c.records == 0 && rc.invalid == 0 && rc.valid == 0 {
                continue;
            }
            entities.insert(
                e,
                EntitySummary {
                    valid: rc.valid,
                    invalid: rc.invalid,
                    counts: c,
                },
            );
        }
        let report_path = self.report_path();
        // Per-row outcomes into the report, after its summary sheet, streamed out of the
        // journal a page at a time (and into the journal's row outcomes, in one transaction).
        let mut report = ImportReport::create(
            Some(&report_path),
            self.csv_report.as_deref(),
            &summary_table(&entities),
        )?;
        let keep_outcomes = run.journal.is_some();
        if keep_outcomes {
            journal.begin_row_outcomes()?;
        }
        let file: Arc<str> = Arc::from(planned.file_name.as_str());
        let mut by_outcome: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut outcomes = Vec::new();
        let mut after = 0;
        loop {
            let page = journal.planned_rows(&file, after, 2_000)?;
            if page.is_empty() {
                break;
            }
            for (seq, r) in page {
                after = seq;
                let mut records = Vec::with_capacity(r.records.len());
                for &i in &r.records {
                    let Some(mut rec) = journal.record_outcome(i)? else {
                        continue;
                    };
                    if run.dry_run {
                        rec.entry = crate::upload::would_do(rec.entity, self.mode, rec.entry);
                    }
                    records.push(rec);
                }
                let line = row_line(&r, &records);
                *by_outcome.entry(line.outcome.as_str()).or_default() += 1;
                outcomes.push((line.row, line.outcome.as_str()));
                report.write(&line)?;
            }
            if keep_outcomes {
                journal.add_row_outcomes(&outcomes)?;
            }
            outcomes.clear();
        }
        // The fields updates changed (or would change), streamed out of the journal.
        let mut after = 0;
        loop {
            let page = journal.changes_page(after, 2_000, run.dry_run)?;
            let Some(last) = page.last() else { break };
            after = last.0;
            let lines: Vec<crate::report::import::ChangeLine> = page
                .into_iter()
                .map(|(_, entity, key, crm_id, field, before, after)| {
                    crate::report::import::ChangeLine {
                        entity,
                        key,
                        crm_id,
                        field,
                        before,
                        after,
                    }
                })
                .collect();
            report.changes(&lines)?;
        }
        report.finish()?;
        if keep_outcomes {
            journal.end_row_outcomes()?;
        }
        let summary = Summary {
            file: planned.file_name.clone(),
            target: run.target,
            dry_run: run.dry_run,
            rows: planned.totals.rows,
            rows_by_outcome: by_outcome,
            entities,
            report: Some(report_path.display().to_string()),
            csv_report: self.csv_report.as_ref().map(|p| p.display().to_string()),
            journal: run.journal.map(|j| j.display().to_string()),
            interrupted: run.interrupted,
            stopped: run.stopped,
            seconds: run.started.elapsed().as_secs_f64(),
            backup: None,
        };
        summary.check_adds_up()?;
        Ok(summary)
    }

    /// A dry run with no CRM configured: read, map, validate and plan, write nothing but the report:
    /// every valid record counts as what the run would create.
    fn dry_run(
        &self,
        journal: &Journal,
        planned: Planned,
        started: std::time::Instant,
        on: &mut dyn FnMut(ImportEvent),
    ) -> Result<ImportOutcome> {
        let counts = self.counts(journal)?;
        on(ImportEvent::InvalidRows(&invalid_row_lines(
            &planned.totals.first_invalid,
            planned.totals.invalid_rows,
            self.show_invalid,
        )));
        let summary = self.finish(
            journal,
            &planned,
            &counts,
            RunInfo {
                target: "dry run: nothing sent".into(),
                journal: None,
                interrupted: false,
                stopped: None,
                dry_run: true,
                started,
            },
        )?;
        Ok(ImportOutcome { summary })
    }
}

/// Read, map and validate every row (the CRM's dictionaries, when known, check owners and deal
/// values per row); valid records go into the plan, each key once.
fn plan_rows(
    journal: &mut Journal,
    src: Box<dyn source::RowSource>,
    mapper: Arc<crate::template::Mapper>,
    only: Option<&HashSet<u64>>,
    dicts: Option<&Dictionaries>,
    template: &Template,
) -> Result<Planned> {
    let file_name = src.file().to_string();
    let totals = journal.plan_rows(
        map_file(src, mapper, MapOptions::default()).map(|item| {
            item.map(|(_, mut m)| {
                if let Some(d) = dicts {
                    d.apply(template, &mut m);
                }
                m
            })
        }),
        only,
        INVALID_ROWS_SHOWN,
    )?;
    Ok(Planned { file_name, totals })
}

/// The source read, mapped and planned into the journal: what a run (or a dry run) starts from.
struct Planned {
    file_name: String,
    totals: PlanTotals,
}

/// How a run went, besides the records' states.
struct RunInfo<'a> {
    target: String,
    journal: Option<&'a Path>,
    interrupted: bool,
    stopped: Option<String>,
    dry_run: bool,
    started: std::time::Instant,
}

/// The checks before the first write: the CRM's `fields` of every entity the template writes
/// (one read-only call each) must list every field the template writes, and the owners and
/// deal dictionary values the template sends as constants or through a `map` must exist there.
/// A server that is down (within `retry_for`), a refused key, an unknown field or value stops
/// the run before anything is sent. Answers the warnings and the CRM's lists, to check each row
/// with.
async fn preflight(
    client: &CrmClient,
    target: &str,
    template: &Template,
    template_name: &str,
    allow_unknown_fields: bool,
    retry_for: Duration,
) -> Result<(Vec<String>, Dictionaries)> {
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
    checks.await.map_err(|err| match err {
        Error::Crm(e) if e.is_server_trouble() => {
            Error::Upload(crate::upload::UploadError::Unreachable {
                seconds: retry_for.as_secs(),
                source: e,
            })
        }
        other => other,
    })
}
