//! Export: paging through list endpoints into CSV and XLSX writers.
//!
//! `export` runs one job: for each entity, its passes (`query`), paged in order (`pager`), rows
//! typed into cells (`columns`) and written (`output`). Differences between what the server
//! counted and what was exported are reported in the summary, never hidden.

pub mod columns;
pub mod output;
pub mod pager;
pub mod query;
pub mod state;

pub use columns::Columns;
pub use output::{partial_path, Format, Output};
pub use query::{Active, Filters};
pub use state::ExportState;

use crate::crm::{CrmClient, CrmError, Entity, FieldInfo, RetryPolicy};
use crate::report::{Cell, Progress, ReportError};
use chrono::NaiveDateTime;
use pager::{PageSink, PageStats, Pager, Row, Seen};
use serde::Serialize;
use std::collections::{BTreeSet, HashSet};
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
    /// Remember per entity the newest change exported; use it as `changed_since` next time.
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
    /// Records left out because they did not change since `changed_since`.
    pub unchanged: u64,
    pub changed_since: Option<String>,
    /// How `changed_since` was applied (the API has no edit-date filter for most entities).
    pub changed_since_by: Option<String>,
    /// Newest change date seen (what `--state` remembers).
    pub changed_up_to: Option<String>,
    /// Ids changed exactly at `changed_up_to` (for `--state`).
    #[serde(skip)]
    pub ids_at_mark: Vec<String>,
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

const MOMENT: &str = "%Y-%m-%d %H:%M:%S";

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
        let mut done_at_since = HashSet::new();
        if filters.changed_since.is_none() {
            if let Some(prev) = state.as_ref().and_then(|s| s.entities.get(&entity)) {
                if let Some(mark) = prev.changed_up_to.as_deref() {
                    filters.changed_since = Some(query::parse_moment("--state", mark)?);
                    done_at_since = prev.ids_at_mark.iter().cloned().collect();
                }
            }
        }
        let started_output = out_started(&out);
        match export_entity(
            client,
            job,
            entity,
            &filters,
            done_at_since,
            &mut out,
            &mut warnings,
        )
        .await
        {
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
    if let (Some(path), Some(st)) = (&job.state, state.as_mut()) {
        let now = chrono::Local::now()
            .naive_local()
            .format(MOMENT)
            .to_string();
        for s in &summaries {
            let prev = st.entities.remove(&s.entity).unwrap_or_default();
            // Never move backwards (a run that saw no rows keeps the old mark).
            let (mark, ids) = match (&s.changed_up_to, &prev.changed_up_to) {
                (Some(new), Some(old)) if new == old => {
                    let mut ids = prev.ids_at_mark.clone();
                    ids.extend(s.ids_at_mark.iter().cloned());
                    ids.sort();
                    ids.dedup();
                    (Some(new.clone()), ids)
                }
                (Some(new), Some(old)) if new < old => (Some(old.clone()), prev.ids_at_mark),
                (Some(new), _) => (Some(new.clone()), s.ids_at_mark.clone()),
                (None, old) => (old.clone(), prev.ids_at_mark),
            };
            st.entities.insert(
                s.entity,
                state::EntityState {
                    changed_up_to: mark,
                    ids_at_mark: ids,
                    exported_at: now.clone(),
                    rows: s.rows,
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

/// Where one entity's rows go: chooses columns on the first non-empty page, filters on the
/// change date, writes cells, counts.
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
    /// Ids already exported with a change date equal to `since` (from the state file).
    done_at_since: HashSet<String>,
    newest_ids: Vec<String>,
    change_cols: Option<(&'static str, &'static str)>,
    newest: Option<NaiveDateTime>,
    written: u64,
    unchanged: u64,
    progress: Option<Progress>,
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

    /// The row's change date: the edit date, else the creation date.
    fn changed_at(&self, row: &Row) -> Option<NaiveDateTime> {
        let (a, b) = self.change_cols?;
        [a, b]
            .into_iter()
            .find_map(|c| match columns::parse_datetime(row.get(c)?.as_str()?)? {
                Cell::DateTime(dt) => Some(dt),
                Cell::Date(d) => d.and_hms_opt(0, 0, 0),
                _ => None,
            })
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

    fn row(&mut self, row: Row) -> Result<(), ExportError> {
        if self.columns.is_none() {
            self.start(std::slice::from_ref(&row))?;
        }
        let changed = self.changed_at(&row);
        if let Some(c) = changed {
            let id = || {
                row.get(self.entity.id_field())
                    .map(columns::flatten)
                    .unwrap_or_default()
            };
            match self.newest {
                Some(n) if n > c => {}
                Some(n) if n == c => self.newest_ids.push(id()),
                _ => {
                    self.newest = Some(c);
                    self.newest_ids = vec![id()];
                }
            }
        }
        if let (Some(since), Some(c)) = (self.since, changed) {
            // A row without a usable date is exported: better once too often than missing.
            let done = c == since && {
                let id = row.get(self.entity.id_field()).map(columns::flatten);
                id.is_some_and(|i| self.done_at_since.contains(&i))
            };
            if c < since || done {
                self.unchanged += 1;
                return Ok(());
            }
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
    done_at_since: HashSet<String>,
    out: &mut Output,
    warnings: &mut Vec<String>,
) -> Result<EntitySummary, ExportError> {
    let need_fields = job.fields.is_some() || job.headers == HeaderStyle::Titles;
    let info = match client.fields(entity, &job.policy).await {
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
        unchanged: 0,
        changed_since: filters.changed_since.map(|s| s.format(MOMENT).to_string()),
        changed_since_by: None,
        changed_up_to: None,
        ids_at_mark: Vec::new(),
        columns: Vec::new(),
        ignored_columns: Vec::new(),
        count_mismatch: Vec::new(),
        pages: 0,
    };
    if filters.changed_since.is_some() {
        summary.changed_since_by = Some(match (entity, change_cols) {
            (Entity::History, _) => {
                "server dateStart (whole days) then datum on our side".to_string()
            }
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
        done_at_since,
        newest_ids: Vec::new(),
        change_cols,
        newest: None,
        written: 0,
        unchanged: 0,
        progress: None,
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
    summary.unchanged = w.unchanged;
    summary.server_count = total_count;
    summary.changed_up_to = w.newest.map(|n| n.format(MOMENT).to_string());
    summary.ids_at_mark = std::mem::take(&mut w.newest_ids);
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
        };
        let mut sink = EachRow {
            on_row: &mut on_row,
            progress,
        };
        pager.run(&mut seen, &mut sink).await?;
    }
    Ok(())
}
