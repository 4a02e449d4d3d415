//! Export: paging through list endpoints into CSV and XLSX writers.
//!
//! `export` runs one job: for each entity, its passes (`query`), paged in order (`pager`), rows
//! typed into cells (`columns`) and written (`output`). Differences between what the server
//! counted and what was exported are reported in the summary, never hidden.

pub mod columns;
pub mod invoice;
pub mod output;
pub mod pager;
pub mod query;
pub mod state;

pub use columns::Columns;
pub use output::{partial_path, Format, Output};
pub use query::{Active, Filters, Paid};
pub use state::{ExportState, Prints, RecordId};

use crate::crm::{CrmClient, CrmError, Entity, FieldInfo, RetryPolicy};
use crate::report::{Progress, ReportError};
use crate::values::{value_text, CrmDateTime};
use chrono::NaiveDateTime;
use pager::{PageSink, PageStats, Pager, Row, Seen};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ExportError {
    #[error("{flag}: '{value}' is not a date (use YYYY-MM-DD, or YYYY-MM-DD HH:MM:SS for --changed-since)")]
    BadDate { flag: &'static str, value: String },
    #[error("{entity} has no field(s) {}; fields of {entity}: {}", unknown.join(", "), valid.join(", "))]
    UnknownFields {
        entity: Entity,
        unknown: Vec<String>,
        valid: Vec<String>,
    },
    #[error("{0}")]
    Usage(String),
    #[error("page {page} of {entity} could not be fetched: {source}")]
    PageFailed {
        entity: Entity,
        page: u64,
        #[source]
        source: CrmError,
    },
    #[error("cannot read the fields of {entity}: {source}")]
    Fields {
        entity: Entity,
        #[source]
        source: CrmError,
    },
    #[error("page {page} of {entity} holds only records already exported: the server seems to ignore paging (`offset`); stopped")]
    PagingStuck { entity: Entity, page: u64 },
    /// The export stopped; what was fetched so far is in `partial`.
    #[error("export stopped: {source}. The rows exported before that are in {} — INCOMPLETE, do not use it as a full export", partial.display())]
    Incomplete {
        partial: PathBuf,
        #[source]
        source: Box<ExportError>,
    },
    #[error("state file {}: {message}", path.display())]
    State { path: PathBuf, message: String },
    #[error(transparent)]
    Write(#[from] ReportError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Column headers: the CRM's field names, or their titles from `fields`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderStyle {
    #[default]
    Names,
    Titles,
}

/// Everything one export run needs.
#[derive(Debug, Clone)]
pub struct ExportJob {
    pub entities: Vec<Entity>,
    pub output: PathBuf,
    pub format: Format,
    pub filters: Filters,
    /// Exactly these columns, in this order (checked against the server's `fields`).
    pub fields: Option<Vec<String>>,
    pub headers: HeaderStyle,
    pub concurrency: usize,
    pub policy: RetryPolicy,
    pub quiet: bool,
    /// Remember per entity every record exported (id and fingerprint); the next run with the
    /// same file exports only new and changed records.
    pub state: Option<PathBuf>,
}

/// One entity's outcome, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct EntitySummary {
    pub entity: Entity,
    /// Rows written to the file.
    pub rows: u64,
    /// Distinct records fetched (before the `--changed-since` filter).
    pub fetched: u64,
    /// What the server counted, where it reports a count (summed over open and closed).
    pub server_count: Option<u64>,
    /// Rows that came twice (pages shifting under concurrent changes) and were written once.
    pub duplicates: u64,
    /// Rows written that the state did not hold (every row written, without `--state`).
    pub new: u64,
    /// Rows written because they differ from what the state remembers.
    pub changed: u64,
    /// Records left out: not changed since `changed_since`, or the same as in the state.
    pub unchanged: u64,
    /// Records in the state that the listing no longer returns (deleted, or not visible to this
    /// login); not exported. `None` when the listing was narrowed (`--from`, `--user`...), so
    /// absence means nothing.
    pub gone: Option<u64>,
    pub changed_since: Option<String>,
    /// How `changed_since` was applied (the API has no edit-date filter for most entities).
    pub changed_since_by: Option<String>,
    /// What this run cannot see (said on every incremental run), and how it was done.
    pub notes: Vec<String>,
    /// What `--state` remembers after this run.
    #[serde(skip)]
    pub records: Option<Prints>,
    /// Invoices: the paid days `--state` remembers after this run.
    #[serde(skip)]
    pub paid_days: BTreeMap<String, String>,
    /// Invoice and deal exports: the sum over the rows written (invoices: `summa`; deals: paid +
    /// unpaid invoice totals); it equals the Totals sheet's control total. Two decimals.
    pub control_total: Option<String>,
    /// Invoices: paid rows whose paid day is unknown (the server recorded none and no --state).
    pub paid_without_date: u64,
    pub columns: Vec<String>,
    /// Keys that appeared only after the header was written: their values are not in the file.
    pub ignored_columns: Vec<String>,
    /// Differences between the server's count and the rows received, one line per pass.
    pub count_mismatch: Vec<String>,
    pub pages: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    pub file: PathBuf,
    pub entities: Vec<EntitySummary>,
    pub warnings: Vec<String>,
    pub unmappable_chars: u64,
    pub seconds: f64,
}

impl ExportSummary {
    pub fn rows(&self) -> u64 {
        self.entities.iter().map(|e| e.rows).sum()
    }

    /// Did every server count match what was received?
    pub fn counts_match(&self) -> bool {
        self.entities.iter().all(|e| e.count_mismatch.is_empty())
    }
}

/// Run an export job. On a failure after the output was started, the error is
/// [`ExportError::Incomplete`] naming the partial file.
pub async fn export(client: &CrmClient, job: &ExportJob) -> Result<ExportSummary, ExportError> {
    let started = std::time::Instant::now();
    if job.fields.is_some() && job.entities.len() > 1 {
        return Err(ExportError::Usage(
            "--fields names the columns of one entity; it cannot be used with --all".into(),
        ));
    }
    if matches!(job.format, Format::Csv(_)) && job.entities.len() > 1 {
        return Err(ExportError::Usage(
            "--all writes one XLSX file with a sheet per entity; give -o NAME.xlsx".into(),
        ));
    }
    let mut state = match &job.state {
        Some(p) => Some(ExportState::load(p)?),
        None => None,
    };
    let mut out = Output::create(&job.output, &job.format)?;
    let mut summaries = Vec::new();
    let mut warnings = Vec::new();
    for &entity in &job.entities {
        let mut filters = job.filters.clone();
        let inc = match state.as_mut() {
            None => None,
            Some(st) => {
                let mut prev = st.entities.get_mut(&entity);
                let mut inc = Incremental::default();
                if let Some(p) = prev.as_deref_mut() {
                    inc.paid_prev = std::mem::take(&mut p.paid_days);
                }
                match prev {
                    Some(p) if p.records.is_some() => {
                        inc.prev = p.records.take().unwrap_or_default();
                    }
                    // Older state file: what changed since its mark, as that format did; the
                    // rows left out are the ones it exported, so they are remembered too.
                    Some(p) => {
                        if let (Some(mark), None) = (&p.changed_up_to, filters.changed_since) {
                            filters.changed_since = Some(query::parse_moment("--state", mark)?);
                            inc.legacy_mark = Some(mark.clone());
                        }
                    }
                    None => {}
                }
                Some(inc)
            }
        };
        let started_output = out_started(&out);
        match export_entity(client, job, entity, &filters, inc, &mut out, &mut warnings).await {
            Ok(s) => summaries.push(s),
            // Bad input found before anything was written: no partial file to leave behind.
            Err(e @ (ExportError::UnknownFields { .. } | ExportError::Fields { .. }))
                if !started_output && !out_started(&out) =>
            {
                out.abandon();
                return Err(e);
            }
            Err(e) => {
                let partial = out.partial_path().to_path_buf();
                // Save what we have so the partial file opens; its own error matters less.
                let _ = out.close(false);
                return Err(ExportError::Incomplete {
                    partial,
                    source: Box::new(e),
                });
            }
        }
    }
    let (file, unmappable) = out.close(true)?;
    if unmappable > 0 {
        warnings.push(format!(
            "{unmappable} character(s) cannot be written in the chosen CSV encoding and became '?'; use --encoding utf-8-bom to keep them"
        ));
    }
    // Only a completed export moves the state on (a failed one returned above).
    if let (Some(path), Some(st)) = (&job.state, state.as_mut()) {
        let now = CrmDateTime::DateTime(chrono::Local::now().naive_local()).to_string();
        for s in &mut summaries {
            st.entities.insert(
                s.entity,
                state::EntityState {
                    exported_at: now.clone(),
                    rows: s.rows,
                    records: Some(s.records.take().unwrap_or_default()),
                    paid_days: std::mem::take(&mut s.paid_days),
                    ..state::EntityState::default()
                },
            );
        }
        st.save(path)?;
    }
    Ok(ExportSummary {
        file,
        entities: summaries,
        warnings,
        unmappable_chars: unmappable,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn out_started(out: &Output) -> bool {
    out.partial_path().exists()
}

/// The fields the server lists, and the columns to request from it.
struct FieldPlan {
    info: Vec<FieldInfo>,
    /// `fields` sent to the server (only names it knows, plus the id and change columns).
    server_fields: Option<String>,
    /// Requested names the `fields` action does not list: checked against the first page.
    to_check: Vec<String>,
}

fn plan_fields(
    entity: Entity,
    requested: Option<&[String]>,
    info: Vec<FieldInfo>,
    filters: &Filters,
) -> FieldPlan {
    let Some(req) = requested else {
        return FieldPlan {
            info,
            server_fields: None,
            to_check: Vec::new(),
        };
    };
    let known: HashSet<&str> = info.iter().map(|f| f.name.as_str()).collect();
    let to_check: Vec<String> = req
        .iter()
        .filter(|n| !known.contains(n.as_str()) && n.as_str() != entity.id_field())
        .cloned()
        .collect();
    // List-only keys (person `client`, deal `clientTitle`) are computed by the server; asking
    // for them in `fields` is not documented, so in that case the whole row is fetched.
    let server_fields = to_check.is_empty().then(|| {
        let mut names: Vec<&str> = vec![entity.id_field()];
        if filters.changed_since.is_some() {
            if let Some((a, b)) = query::change_columns(entity) {
                names.extend([a, b]);
            }
        }
        names.extend(req.iter().map(String::as_str));
        let mut seen = HashSet::new();
        names.retain(|n| seen.insert(*n));
        names.join(",")
    });
    FieldPlan {
        info,
        server_fields,
        to_check,
    }
}

/// `--state` for one entity during a run.
#[derive(Default)]
struct Incremental {
    /// What earlier runs exported; ids are taken out as the listing returns them, so what is
    /// left at the end was not listed.
    prev: Prints,
    /// What the state holds after this run.
    now: Prints,
    /// An older state file's mark, used as `changed_since` for this run.
    legacy_mark: Option<String>,
    /// Invoices: paid days remembered by earlier runs, and after this one.
    paid_prev: BTreeMap<String, String>,
    paid_now: BTreeMap<String, String>,
}

/// A record's change date, and whether it is only known to the day (a date without time).
#[derive(Debug, Clone, Copy)]
struct ChangedAt {
    at: NaiveDateTime,
    by_day: bool,
}

/// Where one entity's rows go: chooses columns on the first non-empty page, leaves out what did
/// not change (change date, state fingerprints), writes cells, counts.
struct EntityWriter<'a> {
    entity: Entity,
    label: String,
    job: &'a ExportJob,
    out: &'a mut Output,
    plan: &'a FieldPlan,
    columns: Option<Columns>,
    /// Columns derived from the rows (not `--fields`): later rows are checked for new keys.
    derived: Option<HashSet<String>>,
    ignored: BTreeSet<String>,
    since: Option<NaiveDateTime>,
    change_cols: Option<(&'static str, &'static str)>,
    inc: Option<Incremental>,
    written: u64,
    new: u64,
    changed: u64,
    unchanged: u64,
    progress: Option<Progress>,
    /// Invoices: the Totals sheet's sums over the rows written.
    totals: Option<invoice::Totals>,
    /// Invoices: the paid-day window (`--paid-from`/`--paid-to`).
    paid_window: (Option<chrono::NaiveDate>, Option<chrono::NaiveDate>),
    paid_without_date: u64,
}

impl EntityWriter<'_> {
    fn start(&mut self, rows: &[Row]) -> Result<(), ExportError> {
        let names: Vec<String> = match &self.job.fields {
            Some(req) => {
                if !self.plan.to_check.is_empty() {
                    let keys: HashSet<&str> = rows
                        .iter()
                        .flat_map(|r| r.keys().map(String::as_str))
                        .collect();
                    let unknown: Vec<String> = self
                        .plan
                        .to_check
                        .iter()
                        .filter(|n| !keys.contains(n.as_str()))
                        .cloned()
                        .collect();
                    if !unknown.is_empty() {
                        let mut valid: Vec<String> =
                            self.plan.info.iter().map(|f| f.name.clone()).collect();
                        for r in rows.iter().take(1) {
                            for k in r.keys() {
                                if !valid.contains(k) {
                                    valid.push(k.clone());
                                }
                            }
                        }
                        return Err(ExportError::UnknownFields {
                            entity: self.entity,
                            unknown,
                            valid,
                        });
                    }
                }
                req.clone()
            }
            None if !rows.is_empty() => {
                let c = Columns::from_rows(self.entity, rows);
                self.derived = Some(c.names().iter().cloned().collect());
                c.names().to_vec()
            }
            None => {
                let mut names: Vec<String> = vec![self.entity.id_field().to_string()];
                names.extend(
                    self.plan
                        .info
                        .iter()
                        .map(|f| f.name.clone())
                        .filter(|n| n != self.entity.id_field()),
                );
                names
            }
        };
        let headers: Vec<String> = match self.job.headers {
            HeaderStyle::Names => names.clone(),
            HeaderStyle::Titles => names
                .iter()
                .map(|n| {
                    self.plan
                        .info
                        .iter()
                        .find(|f| &f.name == n && !f.title.trim().is_empty())
                        .map_or_else(|| n.clone(), |f| f.title.clone())
                })
                .collect(),
        };
        self.out.begin(self.entity.as_str(), &headers)?;
        self.columns = Some(Columns::new(self.entity, names));
        Ok(())
    }

    /// Invoices: fill the paid day the server did not record (`date_paid` empty on a paid
    /// invoice: invoice/do never sets it) with the day a `--state` run first saw it paid, and
    /// apply `--paid-from`/`--paid-to`. `false`: the row is outside that window.
    fn paid_day(&mut self, row: &mut Row) -> bool {
        let paid = invoice::is_paid(row);
        let key = row.get("crid").map(value_text);
        let recorded = row
            .get("date_paid")
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        if paid && recorded.is_none() {
            match (self.inc.as_mut(), key) {
                (Some(inc), Some(k)) => {
                    let day = inc.paid_prev.get(&k).cloned().unwrap_or_else(|| {
                        CrmDateTime::Date(chrono::Local::now().date_naive()).to_string()
                    });
                    row.insert("date_paid".into(), serde_json::Value::from(day.clone()));
                    inc.paid_now.insert(k, day);
                }
                _ => self.paid_without_date += 1,
            }
        }
        let (from, to) = self.paid_window;
        if from.is_none() && to.is_none() {
            return true;
        }
        let day = row
            .get("date_paid")
            .and_then(serde_json::Value::as_str)
            .and_then(CrmDateTime::parse)
            .and_then(CrmDateTime::date);
        match day {
            Some(d) if paid => from.is_none_or(|f| d >= f) && to.is_none_or(|t| d <= t),
            _ => false,
        }
    }

    /// The row's change date: the edit date, else the creation date.
    fn changed_at(&self, row: &Row) -> Option<ChangedAt> {
        let (a, b) = self.change_cols?;
        [a, b].into_iter().find_map(|c| {
            let when = CrmDateTime::parse(row.get(c)?.as_str()?)?;
            Some(ChangedAt {
                at: when.moment()?,
                by_day: matches!(when, CrmDateTime::Date(_)),
            })
        })
    }

    /// Is the row left out as not changed? Counts it and keeps the state right either way.
    fn unchanged(&mut self, row: &Row) -> bool {
        let id = self
            .inc
            .as_ref()
            .and_then(|_| RecordId::of(row.get(self.entity.id_field())));
        let print = self.inc.as_ref().map(|_| state::fingerprint(row));
        let before = match self.inc.as_mut() {
            Some(inc) => id.as_ref().and_then(|i| inc.prev.0.remove(i)),
            None => None,
        };
        // A row without a usable date is exported: better once too often than missing.
        if let (Some(since), Some(c)) = (self.since, self.changed_at(row)) {
            // A date without time (deal `datum_izm`) counts for the whole day.
            let earlier = if c.by_day {
                c.at.date() < since.date()
            } else {
                c.at < since
            };
            if earlier {
                self.unchanged += 1;
                if let (Some(inc), Some(id)) = (self.inc.as_mut(), id) {
                    // An older state's runs exported it; an explicit --changed-since did not,
                    // so then the state keeps only what it held.
                    let keep = if inc.legacy_mark.is_some() {
                        print
                    } else {
                        before
                    };
                    if let Some(p) = keep {
                        inc.now.0.insert(id, p);
                    }
                }
                return true;
            }
        }
        let Some(inc) = self.inc.as_mut() else {
            self.new += 1;
            return false;
        };
        let (Some(id), Some(print)) = (id, print) else {
            // No id: cannot be remembered, so it is exported every time.
            self.new += 1;
            return false;
        };
        inc.now.0.insert(id, print);
        match before {
            Some(b) if b == print => {
                self.unchanged += 1;
                true
            }
            Some(_) => {
                self.changed += 1;
                false
            }
            None => {
                self.new += 1;
                false
            }
        }
    }
}

impl PageSink for EntityWriter<'_> {
    fn first_page(&mut self, rows: &[Row], count: Option<u64>) -> Result<(), ExportError> {
        // An empty first pass (no open deals) leaves the choice to the next pass.
        if self.columns.is_none() && (!rows.is_empty() || self.job.fields.is_some()) {
            self.start(rows)?;
        }
        self.progress = Some(Progress::new(&self.label, count, self.job.quiet));
        Ok(())
    }

    fn row(&mut self, mut row: Row) -> Result<(), ExportError> {
        if self.columns.is_none() {
            self.start(std::slice::from_ref(&row))?;
        }
        if self.entity == Entity::Invoice && !self.paid_day(&mut row) {
            return Ok(());
        }
        if self.unchanged(&row) {
            return Ok(());
        }
        if let Some(t) = self.totals.as_mut() {
            t.add(self.entity, &row);
        }
        if let Some(known) = &self.derived {
            // Nearly every row has exactly the header's keys in its order: compare names
            // first, and hash them only when that fails.
            let same_keys = self.columns.as_ref().is_some_and(|c| {
                row.len() == c.names().len() && row.keys().zip(c.names()).all(|(k, n)| k == n)
            });
            if !same_keys && (row.len() > known.len() || row.keys().any(|k| !known.contains(k))) {
                for k in row.keys().filter(|k| !known.contains(*k)) {
                    self.ignored.insert(k.clone());
                }
            }
        }
        let cells = match &self.columns {
            Some(c) => c.into_cells(row),
            None => return Err(ExportError::Internal("no columns".into())),
        };
        self.out.write(&cells)?;
        self.written += 1;
        Ok(())
    }

    fn page_done(&mut self, received: u64) {
        if let Some(p) = &self.progress {
            p.inc(received);
        }
    }
}

async fn export_entity(
    client: &CrmClient,
    job: &ExportJob,
    entity: Entity,
    filters: &Filters,
    inc: Option<Incremental>,
    out: &mut Output,
    warnings: &mut Vec<String>,
) -> Result<EntitySummary, ExportError> {
    let need_fields = job.fields.is_some() || job.headers == HeaderStyle::Titles;
    let fields = if entity == Entity::Invoice {
        // invoice has no `fields` action: its columns are ours (`invoice::COLUMNS`).
        Ok(invoice::COLUMNS
            .iter()
            .map(|n| FieldInfo {
                name: n.to_string(),
                title: n.to_string(),
            })
            .collect())
    } else {
        client.fields(entity, &job.policy).await
    };
    let info = match fields {
        Ok(info) => info,
        Err(source) if need_fields => return Err(ExportError::Fields { entity, source }),
        Err(e) => {
            warnings.push(format!(
                "{entity}: cannot read its fields ({e}); columns come from the rows"
            ));
            Vec::new()
        }
    };
    let plan = plan_fields(entity, job.fields.as_deref(), info, filters);
    let passes = query::passes(entity, filters, plan.server_fields.as_deref());
    let change_cols = query::change_columns(entity);
    let mut summary = EntitySummary {
        entity,
        rows: 0,
        fetched: 0,
        server_count: None,
        duplicates: 0,
        new: 0,
        changed: 0,
        unchanged: 0,
        gone: None,
        changed_since: filters
            .changed_since
            .map(|s| CrmDateTime::DateTime(s).to_string()),
        changed_since_by: None,
        notes: Vec::new(),
        records: None,
        paid_days: BTreeMap::new(),
        control_total: None,
        paid_without_date: 0,
        columns: Vec::new(),
        ignored_columns: Vec::new(),
        count_mismatch: Vec::new(),
        pages: 0,
    };
    if inc.is_some() {
        summary
            .notes
            .push(query::unseen_changes(entity).to_string());
    }
    if let Some(mark) = inc.as_ref().and_then(|i| i.legacy_mark.as_deref()) {
        summary.notes.push(format!(
            "{entity}: the state file is of the older format (no fingerprints): exported what changed since {mark} as it did; from this run on it remembers every record exported"
        ));
    }
    if let Some(since) = filters.changed_since {
        if query::change_by_day(entity) {
            summary.notes.push(format!(
                "{entity}: the change date has no time of day, so --changed-since is applied to whole days: everything changed on {} or later is included",
                since.date()
            ));
        }
        if entity == Entity::History && inc.is_none() {
            summary.notes.push(
                "history: datum is when the activity happened, not when it was entered: rows entered back-dated before --changed-since are left out (--state catches them)".to_string(),
            );
        }
    }
    if filters.changed_since.is_some() {
        summary.changed_since_by = Some(match (entity, change_cols) {
            (Entity::History, _) => {
                "on our side by datum; the whole history is read".to_string()
            }
            (_, Some((a, b))) if query::change_by_day(entity) => format!(
                "on our side by whole days: {a} (or {b} when empty) is a date without time; every record was fetched"
            ),
            (_, Some((a, b))) => format!(
                "on our side: {a} (or {b} when empty); the API has no filter by edit date, so every record was fetched"
            ),
            (_, None) => {
                let w = format!(
                    "{entity}: the API gives no change date, so --changed-since/--state cannot apply; exported in full"
                );
                warnings.push(w);
                "not applicable: exported in full".to_string()
            }
        });
    }
    let mut w = EntityWriter {
        entity,
        label: entity.to_string(),
        job,
        out,
        plan: &plan,
        columns: None,
        derived: None,
        ignored: BTreeSet::new(),
        since: filters.changed_since.filter(|_| change_cols.is_some()),
        change_cols,
        inc,
        written: 0,
        new: 0,
        changed: 0,
        unchanged: 0,
        progress: None,
        totals: matches!(entity, Entity::Invoice | Entity::Deal).then(invoice::Totals::default),
        paid_window: (filters.paid_from, filters.paid_to),
        paid_without_date: 0,
    };
    // Joined columns cost requests: each join runs only when one of its columns is wanted.
    let wanted = |cols: &[&str]| {
        job.fields
            .as_ref()
            .is_none_or(|f| f.iter().any(|n| cols.contains(&n.as_str())))
    };
    let join: Option<Arc<dyn pager::PageJoin>> = match entity {
        // VAT costs one invoice/info per invoice.
        Entity::Invoice => Some(Arc::new(
            invoice::InvoiceJoin::new(client.clone(), job.policy.clone())
                .with_vat(wanted(&["vat"]))
                .with_lookups(wanted(invoice::LOOKUP_COLUMNS)),
        )),
        // An invoice pass and a client/info per client.
        Entity::Deal if wanted(invoice::DEAL_BOOKS_COLUMNS) => Some(Arc::new(
            invoice::DealBooksJoin::new(client.clone(), job.policy.clone(), job.concurrency),
        )),
        _ => None,
    };
    let mut seen = Seen::default();
    let multi = passes.len() > 1;
    let mut total_count: Option<u64> = None;
    for pass in passes {
        w.label = if multi {
            format!("{entity} ({})", pass.label)
        } else {
            entity.to_string()
        };
        let pager = Pager {
            client: client.clone(),
            entity,
            params: Arc::new(pass.params),
            policy: job.policy.clone(),
            concurrency: job.concurrency,
            join: join.clone(),
        };
        let stats: PageStats = pager.run(&mut seen, &mut w).await?;
        if let Some(p) = w.progress.take() {
            p.finish();
        }
        let unique = stats.received - stats.duplicates;
        if let Some(c) = stats.server_count {
            total_count = Some(total_count.unwrap_or(0) + c);
            if c != unique {
                let what = if multi {
                    format!("{entity} ({})", pass.label)
                } else {
                    entity.to_string()
                };
                summary.count_mismatch.push(format!(
                    "{what}: the server counted {c} records but {unique} distinct records were received ({} duplicates dropped)",
                    stats.duplicates
                ));
            }
        }
        summary.fetched += unique;
        summary.duplicates += stats.duplicates;
        summary.pages += stats.pages;
    }
    if w.columns.is_none() {
        // Nothing at all: still write a sheet with the header so the file shows the entity.
        w.start(&[])?;
    }
    summary.rows = w.written;
    summary.paid_without_date = w.paid_without_date;
    if w.paid_without_date > 0 {
        summary.notes.push(format!(
            "invoice: {} paid invoice(s) have no paid date on the server (invoice/do never records one); with --state the paid day is the day a run first saw them paid",
            w.paid_without_date
        ));
    }
    if let Some(t) = w.totals.take() {
        summary.control_total = Some(t.control().fixed2(false));
        // One workbook of several entities has one totals sheet each.
        let sheet = if job.entities.len() > 1 {
            format!("{entity} totals")
        } else {
            "Totals".to_string()
        };
        w.out.totals(&sheet, &t.table())?;
    }
    summary.new = w.new;
    summary.changed = w.changed;
    summary.unchanged = w.unchanged;
    summary.server_count = total_count;
    if let Some(inc) = w.inc.take() {
        let mut now = inc.now;
        summary.paid_days = inc.paid_now;
        if !filters.lists_everything() {
            // Invoices not listed this time keep the paid day they had.
            for (k, v) in inc.paid_prev {
                summary.paid_days.entry(k).or_insert(v);
            }
        }
        // Left in `prev`: remembered but not listed this time.
        let unlisted = inc.prev.0;
        if filters.lists_everything() {
            summary.gone = Some(unlisted.len() as u64);
            if !unlisted.is_empty() {
                summary.notes.push(format!(
                    "{entity}: {} record(s) exported earlier are no longer listed (deleted, or not visible to this login); they are not in the file and the state forgets them",
                    unlisted.len()
                ));
            }
        } else {
            // A narrowed listing (--from, --user, ...) says nothing about the others.
            now.0.extend(unlisted);
        }
        summary.records = Some(now);
    }
    summary.columns = w
        .columns
        .as_ref()
        .map(|c| c.names().to_vec())
        .unwrap_or_default();
    summary.ignored_columns = w.ignored.into_iter().collect();
    if !summary.ignored_columns.is_empty() {
        warnings.push(format!(
            "{entity}: field(s) {} appeared only after the header was written and are NOT in the file; name them with --fields",
            summary.ignored_columns.join(", ")
        ));
    }
    Ok(summary)
}

/// Hands a pass's rows to a callback (reconcile keeps them; the file writers stream instead).
struct EachRow<'a, F: FnMut(Row)> {
    on_row: &'a mut F,
    progress: &'a Progress,
}

impl<F: FnMut(Row)> PageSink for EachRow<'_, F> {
    fn first_page(&mut self, _rows: &[Row], _count: Option<u64>) -> Result<(), ExportError> {
        Ok(())
    }
    fn row(&mut self, row: Row) -> Result<(), ExportError> {
        (self.on_row)(row);
        Ok(())
    }
    fn page_done(&mut self, received: u64) {
        self.progress.inc(received);
    }
}

/// Every record of `entity` matching `filters`, all passes (open and closed deals...) together,
/// each record once, handed to `on_row` in page order. `fields` narrows what the server sends
/// (where it honours `fields`).
#[allow(clippy::too_many_arguments)]
pub async fn fetch_all(
    client: &CrmClient,
    entity: Entity,
    filters: &Filters,
    fields: Option<&str>,
    concurrency: usize,
    policy: &RetryPolicy,
    progress: &Progress,
    mut on_row: impl FnMut(Row),
) -> Result<(), ExportError> {
    let mut seen = Seen::default();
    for pass in query::passes(entity, filters, fields) {
        let pager = Pager {
            client: client.clone(),
            entity,
            params: Arc::new(pass.params),
            policy: policy.clone(),
            concurrency,
            join: None,
        };
        let mut sink = EachRow {
            on_row: &mut on_row,
            progress,
        };
        pager.run(&mut seen, &mut sink).await?;
    }
    Ok(())
}
