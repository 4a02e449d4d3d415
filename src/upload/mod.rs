//! Upload: chunking, bounded concurrency, retries, the journal and resume.
//!
//! Records go entity by entity in reference order (clients, persons, deals, tasks, history), so a
//! reference always resolves through ids the journal already holds. Within an entity, chunks run
//! concurrently under one adaptive limit. Every record's state is journaled before the next step
//! (pending → sent → created | existing | failed | ambiguous); a chunk whose answer was lost is
//! looked up in the CRM before anything of it is resent.

pub mod actions;
pub mod backup;
pub mod change;
pub mod delete;
pub mod journal;
pub mod limit;
pub mod lookup;
pub mod matching;
pub mod payment;
pub mod plan;
pub mod planstore;

pub use journal::{Entry, Journal, RunIdentity, State, Update};
pub use limit::Limiter;
pub use plan::{chunk_by_size, describe_problem, PlannedRow, RowCounts, RowProblem, RowSkip};
pub use planstore::{PlanTotals, RecordOutcome, StoredRecord};

use crate::crm::{CrmClient, CrmError, Entity, ItemOutcome, RetryClass, RetryPolicy};
use crate::report::Progress;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum UploadError {
    #[error("journal {path}: {source}")]
    Journal {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("journal {path}: {source}")]
    JournalIo {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("journal {path} cannot be used for this run: {what}. Leave out --journal (each input, template and CRM gets a journal of its own) or give another one: a new journal matches against the CRM first, so nothing already there is created again")]
    JournalMismatch { path: PathBuf, what: String },
    /// The CRM refused the whole run (bad key, unknown method): nothing more can be sent.
    #[error("{0}")]
    Fatal(#[source] CrmError),
    /// The server stopped answering for longer than the retry budget: the run stops at once.
    #[error("the CRM did not answer for {seconds} s ({source}). Check that the URL is right and the server is up, then run the same command again: the journal keeps what was done and nothing is sent twice")]
    Unreachable {
        seconds: u64,
        #[source]
        source: CrmError,
    },
    /// A bug: a task panicked. The records it carried stay as the journal says (looked up next run).
    #[error("internal error while sending {entity} records: {message}; run the same command again to continue (the journal keeps what was done)")]
    Internal { entity: Entity, message: String },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// Matching needs the CRM's records; without them nothing can be sent safely.
    #[error("reading the CRM's {entity} records to match against failed, so nothing of them was sent (a new record could duplicate one the CRM already has): {source}")]
    MatchRead {
        entity: Entity,
        #[source]
        source: crate::export::ExportError,
    },
}

impl UploadError {
    pub fn journal(path: &Path, source: rusqlite::Error) -> Self {
        UploadError::Journal {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How many requests may be in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    Fixed(usize),
    /// Climbs from 4 to the throughput peak, between 1 and 16 (see `limit`).
    Auto,
}

#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Rows per `add.list` request.
    pub chunk: usize,
    /// JSON bytes per request: far below the server's 8 MB (NOTES.md §9).
    pub max_chunk_bytes: usize,
    pub concurrency: Concurrency,
    /// Attempts per chunk on passing faults.
    pub retry: RetryPolicy,
    /// Retries of the lookups (reads) after a lost answer.
    pub lookup_retry: RetryPolicy,
    pub quiet: bool,
    pub mode: Mode,
    /// How each entity's records are recognised in the CRM (from the template).
    pub probes: HashMap<Entity, Vec<crate::template::matching::Probe>>,
    /// Match and decide, send nothing: what a run would do.
    pub dry_run: bool,
    /// The fields the template maps, per entity (what a client list is asked for).
    pub mapped: HashMap<Entity, Vec<String>>,
    /// The CRM's users, login → id (`user/list`): a person's or client's new owner is sent as
    /// its numeric id (`actions`).
    pub owners: HashMap<String, i64>,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            chunk: 100,
            max_chunk_bytes: 1 << 20,
            concurrency: Concurrency::Auto,
            retry: RetryPolicy {
                max_attempts: 8,
                ..RetryPolicy::default()
            },
            lookup_retry: RetryPolicy::default(),
            quiet: false,
            mode: Mode::Insert,
            probes: HashMap::new(),
            dry_run: false,
            mapped: HashMap::new(),
            owners: HashMap::new(),
        }
    }
}

/// Per-entity counts of one run (after it, from the journal). Every record is in exactly one
/// of `created`, `existing`, `earlier`, `failed`, `unresolved`, `not_sent`: they add up to
/// `records` ([`EntityCounts::adds_up`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct EntityCounts {
    /// Distinct records (keys) of the valid rows.
    pub records: u64,
    /// Created by this run.
    pub created: u64,
    /// Found existing by this run (e.g. a client the server reported as a duplicate).
    pub existing: u64,
    /// Already in the CRM from an earlier run of the same journal: not sent again.
    pub earlier: u64,
    pub failed: u64,
    /// Sent but unresolved (gave up or interrupted): looked up on the next run.
    pub unresolved: u64,
    /// Never sent: the run stopped first.
    pub not_sent: u64,
    /// Matched a CRM record and changed it (upsert/update).
    pub updated: u64,
    /// Matched a CRM record already holding the mapped values: nothing sent.
    pub unchanged: u64,
    /// `update`: no CRM record matches.
    pub not_found: u64,
    /// Matched two or more CRM records: not written (the report lists the candidates).
    pub ambiguous: u64,
    /// Deleted from the CRM.
    pub deleted: u64,
    /// Of the above, answers lost and then found by lookup (a note, not an outcome).
    pub ambiguous_resolved: u64,
}

impl EntityCounts {
    pub fn adds_up(&self) -> bool {
        self.created
            + self.existing
            + self.earlier
            + self.failed
            + self.unresolved
            + self.not_sent
            + self.updated
            + self.unchanged
            + self.not_found
            + self.ambiguous
            + self.deleted
            == self.records
    }
}

/// What an import does with records the CRM already holds (Data Loader's operations, as modes
/// of one engine). Every mode matches first (`template::matching`), so losing the journal never
/// creates a duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Create what does not exist; a match is reported `existing` and left untouched.
    #[default]
    Insert,
    /// Create what does not exist, update what does (only records whose mapped fields differ).
    Upsert,
    /// Update what exists; the rest is `not_found`.
    Update,
    /// Delete what matches (dependants first); the rest is `not_found` (`smbatch delete`).
    Delete,
}

/// In a dry run nothing is sent: a record still pending is what the run would do with it —
/// delete or update the CRM record it matched, or create it (the same reading as
/// [`Journal::plan_counts`] of a dry run). A payment keeps its note: what it would pay, on
/// which invoice. Other states are what the match found.
pub fn would_do(entity: Entity, mode: Mode, entry: Option<Entry>) -> Option<Entry> {
    if entry.as_ref().is_some_and(|e| e.state != State::Pending) {
        return entry;
    }
    let crm_id = entry.as_ref().and_then(|e| e.crm_id);
    let note = entry.and_then(|e| e.error);
    Some(Entry {
        state: match (crm_id, mode) {
            (Some(_), Mode::Delete) => State::Deleted,
            (Some(_), _) => State::Updated,
            (None, _) => State::Created,
        },
        crm_id,
        error: note.filter(|_| entity == Entity::Payment),
        resolved: false,
    })
}

impl Mode {
    /// Matched records are compared and changed, not just reported.
    pub fn updates(self) -> bool {
        matches!(self, Mode::Upsert | Mode::Update)
    }

    /// Every run matches every record again (the CRM may have changed since the journal was
    /// written), and the matched CRM rows are kept (to update from, or to back up).
    pub fn rematches(self) -> bool {
        self.updates() || self == Mode::Delete
    }
}

/// Planned records read from the journal at a time: what bounds the uploader's memory.
pub(super) const PAGE: usize = 2_000;

/// One record in flight: its key and the payload with references resolved.
struct Item {
    key: String,
    payload: Map<String, Value>,
}

struct Ctx {
    client: CrmClient,
    journal: Mutex<Journal>,
    limiter: Arc<Limiter>,
    opts: UploadOptions,
    stop: Arc<AtomicBool>,
}

/// Result of one chunk: updates already journaled, to mirror in memory.
type ChunkResult = Result<Vec<Update>, UploadError>;

/// Sends the plan the journal holds ([`Journal::plan_rows`]), entity by entity in pages, so
/// nothing holds every record: states live in the journal only.
pub struct Uploader {
    ctx: Arc<Ctx>,
    /// Every entity was matched already ([`Uploader::match_all`]).
    matched: bool,
}

impl Uploader {
    /// `stop` is raised by Ctrl-C: no new chunk starts, chunks in flight finish and are recorded.
    pub fn new(
        client: CrmClient,
        mut journal: Journal,
        opts: UploadOptions,
        stop: Arc<AtomicBool>,
    ) -> Result<Uploader, UploadError> {
        journal.register_plan(opts.mode.rematches())?;
        let limiter = match opts.concurrency {
            Concurrency::Fixed(n) => Limiter::fixed(n),
            Concurrency::Auto => Limiter::adaptive(limit::AUTO_START, 1, limit::AUTO_MAX),
        };
        Ok(Uploader {
            ctx: Arc::new(Ctx {
                client,
                journal: Mutex::new(journal),
                limiter,
                opts,
                stop,
            }),
            matched: false,
        })
    }

    /// Match every entity's records against the CRM, in upload order (references resolve
    /// through the ids matched before). A delete does this before anything is sent, so its
    /// backup holds every record it will delete.
    pub async fn match_all(&mut self) -> Result<(), UploadError> {
        for entity in Entity::IMPORT {
            let (all, _) = self.journal().plan_progress(entity)?;
            // Payments are decided against the invoice when they are paid, not matched.
            if all > 0 && entity != Entity::Payment {
                matching::match_entity(&self.ctx, entity).await?;
            }
        }
        self.matched = true;
        Ok(())
    }

    /// The journal, e.g. to write the report from after the run.
    pub fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.ctx.journal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Upload everything not yet stored. Returns early (Ok) when stopped by Ctrl-C; `Err` only
    /// for fatal trouble (401, journal failure), after chunks in flight have been recorded.
    pub async fn run(&mut self) -> Result<(), UploadError> {
        if self.ctx.opts.mode == Mode::Delete {
            return self.run_delete().await;
        }
        for entity in Entity::IMPORT {
            let (all, _) = self.journal().plan_progress(entity)?;
            if all == 0 {
                continue;
            }
            // Match before create: what the CRM already holds decides what is sent. A payment
            // is decided against its invoice's rows when it is paid (`payment`), dry run included.
            let paying = entity == Entity::Payment;
            if !paying {
                matching::match_entity(&self.ctx, entity).await?;
                if self.ctx.opts.dry_run {
                    continue;
                }
            }
            let (all, done) = self.journal().plan_progress(entity)?;
            let progress = Progress::new(entity.as_str(), Some(all), self.ctx.opts.quiet);
            progress.inc(done);
            let result = if paying {
                payment::pay_entity(&self.ctx, &progress).await
            } else {
                self.run_entity(entity, &progress).await
            };
            progress.finish();
            result?;
            if self.ctx.stop.load(Ordering::SeqCst) {
                break;
            }
        }
        Ok(())
    }

    /// `delete`: match everything (unless done), then delete in reverse upload order, so the
    /// records that depend on others (history, tasks, deals) go before what they point to.
    async fn run_delete(&mut self) -> Result<(), UploadError> {
        if !self.matched {
            self.match_all().await?;
        }
        if self.ctx.opts.dry_run {
            return Ok(());
        }
        for entity in Entity::ALL.into_iter().rev() {
            let (all, done) = self.journal().plan_progress(entity)?;
            if all == 0 {
                continue;
            }
            let progress = Progress::new(entity.as_str(), Some(all), self.ctx.opts.quiet);
            progress.inc(done);
            let result = delete::delete_entity(&self.ctx, entity, &progress).await;
            progress.finish();
            result?;
            if self.ctx.stop.load(Ordering::SeqCst) {
                break;
            }
        }
        Ok(())
    }

    async fn run_entity(&mut self, entity: Entity, progress: &Progress) -> Result<(), UploadError> {
        let (max_rows, max_bytes) = if entity.batch_key().is_some() {
            (self.ctx.opts.chunk, self.ctx.opts.max_chunk_bytes)
        } else {
            (1, usize::MAX)
        };
        let size = |i: &Item| serde_json::to_vec(&i.payload).map_or(0, |v| v.len() + 1);
        let stop = self.ctx.stop.clone();
        let mut tasks = tokio::task::JoinSet::new();
        let mut fatal: Option<UploadError> = None;
        let handle = |res: Result<ChunkResult, tokio::task::JoinError>,
                      fatal: &mut Option<UploadError>| {
            match res {
                Ok(Ok(updates)) => {
                    let finished = updates
                        .iter()
                        .filter(|u| !matches!(u.state, State::Pending | State::Sent))
                        .count();
                    progress.inc(finished as u64);
                }
                Ok(Err(e)) => {
                    stop.store(true, Ordering::SeqCst);
                    fatal.get_or_insert(e);
                }
                Err(join) => {
                    stop.store(true, Ordering::SeqCst);
                    let message = match join.try_into_panic() {
                        Ok(p) => p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a task panicked".into()),
                        Err(j) => j.to_string(),
                    };
                    fatal.get_or_insert(UploadError::Internal { entity, message });
                }
            }
        };
        // The plan is read a page at a time: a page's chunks are under way before the next
        // page is read, so memory holds a page and the chunks in flight, whatever the plan's size.
        let mut after = 0i64;
        'pages: loop {
            if self.ctx.stop.load(Ordering::SeqCst) {
                break;
            }
            let mut ref_failures = Vec::new();
            let mut fresh = Vec::new();
            let mut maybe = Vec::new();
            let mut updates = Vec::new();
            {
                let journal = self.journal();
                let page = journal.plan_page(entity, after, PAGE)?;
                let Some(last) = page.last() else { break };
                after = last.id;
                for rec in page {
                    if rec.state.is_some_and(State::is_settled) {
                        continue;
                    }
                    let update_of = rec.crm_id.filter(|_| {
                        self.ctx.opts.mode.updates() && rec.state == Some(State::Pending)
                    });
                    match payload(&journal, entity, &rec)? {
                        Ok(mut payload) if update_of.is_some() => {
                            let id = update_of.unwrap_or_default();
                            if matches!(entity, Entity::Client | Entity::Deal)
                                && !rec.fields.contains_key("uid")
                            {
                                // Our key goes into uid on create only; an update keeps theirs.
                                payload.remove("uid");
                            }
                            // Plain fields go in the update, action fields as the CRM's actions.
                            let owners = &self.ctx.opts.owners;
                            let plan =
                                actions::plan(entity, id, payload, rec.current.as_ref(), owners)
                                    .and_then(|p| {
                                        change::keeps_owner(
                                            entity,
                                            &p,
                                            rec.current.as_ref(),
                                            self.ctx.client.login(),
                                        )
                                        .map(|()| p)
                                    });
                            match plan {
                                Ok(plan) => updates.push((rec.key, id, plan)),
                                Err(change::Unsafe(why)) => ref_failures.push(Update {
                                    entity,
                                    key: rec.key,
                                    state: State::Failed,
                                    crm_id: Some(id),
                                    error: Some(why),
                                    resolved: false,
                                }),
                            }
                        }
                        Ok(payload) => {
                            let is_maybe = rec.state.is_some_and(State::maybe_stored);
                            let item = Item {
                                key: rec.key,
                                payload,
                            };
                            if is_maybe {
                                maybe.push(item);
                            } else {
                                fresh.push(item);
                            }
                        }
                        Err(why) => ref_failures.push(Update {
                            entity,
                            key: rec.key,
                            state: State::Failed,
                            crm_id: None,
                            error: Some(why),
                            resolved: false,
                        }),
                    }
                }
            }
            if !ref_failures.is_empty() {
                self.ctx.journal_record(&ref_failures)?;
                progress.inc(ref_failures.len() as u64);
            }
            // Updates: one request each (the API has no bulk update), under the same limit.
            for (key, id, plan) in updates {
                if self.ctx.stop.load(Ordering::SeqCst) {
                    break 'pages;
                }
                let permit = loop {
                    tokio::select! {
                        p = self.ctx.limiter.acquire() => break p,
                        Some(res) = tasks.join_next(), if !tasks.is_empty() => handle(res, &mut fatal),
                    }
                };
                let ctx = self.ctx.clone();
                tasks.spawn(async move {
                    let r = actions::send(&ctx, entity, &key, id, plan).await;
                    drop(permit);
                    let up = r?;
                    ctx.journal_record(std::slice::from_ref(&up))?;
                    Ok(vec![up])
                });
            }
            let mut chunks: Vec<(Vec<Item>, bool)> = Vec::new();
            // Records a previous run may have stored go first, each chunk starting with a lookup.
            for c in chunk_by_size(maybe, size, max_rows.max(50), max_bytes) {
                chunks.push((c, true));
            }
            for c in chunk_by_size(fresh, size, max_rows, max_bytes) {
                chunks.push((c, false));
            }
            for (items, lookup_first) in chunks {
                if self.ctx.stop.load(Ordering::SeqCst) {
                    break 'pages;
                }
                // Adds that number records from a racy server counter go one at a time.
                if entity.serial_adds() {
                    while let Some(res) = tasks.join_next().await {
                        handle(res, &mut fatal);
                    }
                    if self.ctx.stop.load(Ordering::SeqCst) {
                        break 'pages;
                    }
                }
                // Take the permit here, so chunks are started (and journaled as sent) only as
                // fast as the limit allows; finished chunks are collected meanwhile.
                let permit = loop {
                    tokio::select! {
                        p = self.ctx.limiter.acquire() => break p,
                        Some(res) = tasks.join_next(), if !tasks.is_empty() => handle(res, &mut fatal),
                    }
                };
                if self.ctx.stop.load(Ordering::SeqCst) {
                    break 'pages;
                }
                let ctx = self.ctx.clone();
                tasks.spawn(async move {
                    let r = send_chunk(&ctx, entity, items, lookup_first).await;
                    drop(permit);
                    r
                });
            }
        }
        while let Some(res) = tasks.join_next().await {
            handle(res, &mut fatal);
        }
        match fatal {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The record's fields with references replaced by the CRM ids the journal holds; `Err` says
/// which referenced record is missing (that record is then failed, never sent without its link).
fn payload(
    journal: &Journal,
    entity: Entity,
    rec: &StoredRecord,
) -> Result<Result<Map<String, Value>, String>, UploadError> {
    let mut p = rec.fields.clone();
    for r in &rec.refs {
        match journal.entry(r.entity, &r.key)? {
            Some(Entry {
                state,
                crm_id: Some(id),
                ..
            }) if state.is_done() => {
                p.insert(r.field.clone(), Value::from(id));
            }
            _ => return Ok(Err(format!("{} '{}' was not created", r.entity, r.key))),
        }
    }
    // invoice/add reads the planned payment day as `date.plan` (a dotted template name would
    // be an object field's leaf).
    if entity == Entity::Invoice {
        if let Some(v) = p.remove("date_plan") {
            p.insert("date.plan".into(), v);
        }
    }
    // Clients and deals carry an external id: our key, so a lost answer can be looked up.
    if matches!(entity, Entity::Client | Entity::Deal)
        && p.get("uid").is_none_or(|v| v.is_null() || v == "")
    {
        p.insert("uid".into(), Value::from(rec.key.clone()));
    }
    Ok(Ok(p))
}

impl Ctx {
    /// A single-record request (update, delete, action), counted for the adaptive limit.
    async fn observed<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, CrmError>>,
    ) -> Result<T, CrmError> {
        let result = call.await;
        self.limiter.observe(
            1,
            result
                .as_ref()
                .is_err_and(|e| e.retry_class() == RetryClass::Retry),
        );
        result
    }

    fn journal_lock(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `entity`'s planned records a page at a time, in plan order; the journal is locked only
    /// while a page is read.
    fn plan_pages(
        &self,
        entity: Entity,
    ) -> impl Iterator<Item = Result<Vec<StoredRecord>, UploadError>> + '_ {
        let mut after = 0i64;
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed {
                return None;
            }
            match self.journal_lock().plan_page(entity, after, PAGE) {
                Err(e) => {
                    failed = true;
                    Some(Err(e))
                }
                Ok(page) => {
                    after = page.last()?.id;
                    Some(Ok(page))
                }
            }
        })
    }

    fn journal_record(&self, updates: &[Update]) -> Result<(), UploadError> {
        self.journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(updates)
    }

    fn update(&self, entity: Entity, item: &Item, state: State) -> Update {
        Update {
            entity,
            key: item.key.clone(),
            state,
            crm_id: None,
            error: None,
            resolved: false,
        }
    }
}

async fn send(ctx: &Ctx, entity: Entity, items: &[Item]) -> Result<Vec<ItemOutcome>, CrmError> {
    if entity.batch_key().is_some() {
        let rows: Vec<Map<String, Value>> = items.iter().map(|i| i.payload.clone()).collect();
        ctx.client.add_list(entity, &rows).await
    } else {
        let mut out = Vec::with_capacity(items.len());
        for i in items {
            let added = if entity == Entity::Invoice {
                actions::add_invoice(ctx, &i.payload).await
            } else {
                ctx.client.add(entity, &i.payload).await
            };
            match added {
                Err(e) if entity == Entity::Invoice && no_specification(&e) => {
                    out.push(ItemOutcome::Failed {
                        code: None,
                        text: format!(
                            "deal {} has no specification (speka): the CRM cannot invoice it (invoice/add dies with a DivisionByZeroError). Add the deal's products in the CRM, or create the deal with a speka, then run again",
                            i.payload.get("did").map(crate::values::value_text).unwrap_or_default()
                        ),
                    })
                }
                r => out.push(r?),
            }
        }
        Ok(out)
    }
}

/// invoice/add on a deal without a specification: the server dies dividing by the spec's sum
/// (NOTES §12). Nothing is stored, and sending it again dies again.
fn no_specification(e: &CrmError) -> bool {
    e.server_fatal()
        .is_some_and(|m| m.contains("DivisionByZeroError"))
}

/// Send one chunk until every record in it is settled or attempts run out. Returns the updates
/// it journaled. Only fatal errors are `Err`.
///
/// A server fatal (the server died on the request: a PHP error page) is an answer, not a lost
/// one. Once the same fatal comes back twice in a row, the chunk is split in halves and each
/// half sent on its own (each subject to the same rule, pgloader-style), down to the single
/// record that causes it, which is `failed` with the server's message; the rest are sent
/// normally. Every half starts with a lookup, since a fatal can come after rows were stored
/// (NOTES §9): nothing is created twice.
async fn send_chunk(
    ctx: &Ctx,
    entity: Entity,
    items: Vec<Item>,
    lookup_first: bool,
) -> ChunkResult {
    let mut done: Vec<Update> = Vec::new();
    let mut parts = vec![(items, lookup_first)];
    while let Some((items, lookup)) = parts.pop() {
        if let Some((a, b)) = send_part(ctx, entity, items, lookup, &mut done).await? {
            if ctx.stop.load(Ordering::SeqCst) {
                // Interrupted: the journal says these may be stored; the next run looks them up.
                break;
            }
            parts.push((b, true));
            parts.push((a, true));
        }
    }
    Ok(done)
}

/// The fatal's message with what varies between two runs of the same failure (numbers: sizes,
/// lines, ids) blanked, to tell "the same fatal again" from two different passing ones.
fn fatal_kind(message: &str) -> String {
    message
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

/// One part of a chunk (see [`send_chunk`]): `Ok(Some(halves))` when it must be split because
/// the server died on it the same way twice; settled updates are appended to `done`.
async fn send_part(
    ctx: &Ctx,
    entity: Entity,
    items: Vec<Item>,
    lookup_first: bool,
    done: &mut Vec<Update>,
) -> Result<Option<(Vec<Item>, Vec<Item>)>, UploadError> {
    let mut remaining = items;
    let mut lookup = lookup_first;
    let mut tries = ctx.opts.retry.tries();
    // The kind of the last attempt's server fatal, if it was one.
    let mut last_fatal: Option<String> = None;
    // A single record the server died on twice: failed with this message unless the lookup
    // finds it stored after all.
    let mut dies_on: Option<String> = None;
    loop {
        if lookup {
            let wanted: Vec<lookup::Wanted> = remaining
                .iter()
                .map(|i| lookup::Wanted {
                    key: &i.key,
                    payload: &i.payload,
                })
                .collect();
            match lookup::find(&ctx.client, entity, &wanted, &ctx.opts.lookup_retry).await {
                Ok(found) => {
                    let mut ups = Vec::new();
                    remaining.retain(|i| match found.get(&i.key) {
                        Some(id) => {
                            ups.push(Update {
                                crm_id: Some(*id),
                                resolved: true,
                                ..ctx.update(entity, i, State::Created)
                            });
                            false
                        }
                        None => true,
                    });
                    ctx.journal_record(&ups)?;
                    done.extend(ups);
                }
                Err(e) if e.is_fatal() => return Err(UploadError::Fatal(e)),
                Err(e) => {
                    // Cannot tell what was stored: leave the records ambiguous for the next run.
                    let ups: Vec<Update> = remaining
                        .iter()
                        .map(|i| Update {
                            error: Some(format!("answer lost and the lookup failed: {e}")),
                            ..ctx.update(entity, i, State::Ambiguous)
                        })
                        .collect();
                    ctx.journal_record(&ups)?;
                    done.extend(ups);
                    return Ok(None);
                }
            }
        }
        if remaining.is_empty() {
            return Ok(None);
        }
        if let Some(message) = dies_on.take() {
            let ups: Vec<Update> = remaining
                .iter()
                .map(|i| Update {
                    error: Some(format!(
                        "the CRM fails on this record with a server error, the same each time (not a lost answer; sending it again cannot help): {message}"
                    )),
                    ..ctx.update(entity, i, State::Failed)
                })
                .collect();
            ctx.journal_record(&ups)?;
            done.extend(ups);
            return Ok(None);
        }
        if tries.attempt() > 0 && ctx.stop.load(Ordering::SeqCst) {
            // Interrupted between attempts: the journal already says pending/ambiguous.
            return Ok(None);
        }
        let attempt = tries.begin();
        let sent: Vec<Update> = remaining
            .iter()
            .map(|i| ctx.update(entity, i, State::Sent))
            .collect();
        ctx.journal_record(&sent)?;
        let started = Instant::now();
        let result = send(ctx, entity, &remaining).await;
        ctx.limiter.observe(
            remaining.len(),
            result
                .as_ref()
                .is_err_and(|e| e.retry_class() == RetryClass::Retry),
        );
        match result {
            Ok(outcomes) => {
                let ups: Vec<Update> = remaining
                    .iter()
                    .zip(outcomes)
                    .map(|(i, o)| {
                        let resolved = attempt > 1 || lookup_first;
                        match o {
                            ItemOutcome::Created(id) => Update {
                                crm_id: Some(id),
                                resolved: false,
                                ..ctx.update(entity, i, State::Created)
                            },
                            ItemOutcome::Existing(id) => Update {
                                crm_id: Some(id),
                                resolved,
                                ..ctx.update(entity, i, State::Existing)
                            },
                            ItemOutcome::Failed { code, text } => Update {
                                error: Some(match code {
                                    Some(c) if !c.is_empty() => format!("{text} (code {c})"),
                                    _ => text,
                                }),
                                ..ctx.update(entity, i, State::Failed)
                            },
                        }
                    })
                    .collect();
                ctx.journal_record(&ups)?;
                done.extend(ups);
                return Ok(None);
            }
            Err(e) if e.is_fatal() => {
                // 401 and friends: the server refused the request itself; nothing was stored.
                let back: Vec<Update> = remaining
                    .iter()
                    .map(|i| ctx.update(entity, i, State::Pending))
                    .collect();
                ctx.journal_record(&back)?;
                return Err(UploadError::Fatal(e));
            }
            Err(e) if e.retry_class() == RetryClass::Stop => {
                // The server rejected the whole request with its own error: a per-row failure
                // for each record (retrying would get the same answer).
                let ups: Vec<Update> = remaining
                    .iter()
                    .map(|i| Update {
                        error: Some(e.to_string()),
                        ..ctx.update(entity, i, State::Failed)
                    })
                    .collect();
                ctx.journal_record(&ups)?;
                done.extend(ups);
                return Ok(None);
            }
            Err(e) => {
                let state = if e.may_have_applied() {
                    State::Ambiguous
                } else {
                    State::Pending
                };
                let ups: Vec<Update> = remaining
                    .iter()
                    .map(|i| Update {
                        error: Some(format!("gave up after {attempt} attempts: {e}")),
                        ..ctx.update(entity, i, state)
                    })
                    .collect();
                ctx.journal_record(&ups)?;
                let since = tries.failed(started);
                if tries.exhausted() && e.is_server_trouble() {
                    // Not this chunk's fault: the server is not answering. Stop the run now
                    // (the journal already says which records may have arrived).
                    return Err(UploadError::Unreachable {
                        seconds: since.as_secs().max(1),
                        source: e,
                    });
                }
                let fatal = e.server_fatal();
                let repeated = fatal
                    .as_deref()
                    .map(fatal_kind)
                    .filter(|k| last_fatal.as_ref() == Some(k));
                last_fatal = fatal.as_deref().map(fatal_kind);
                if repeated.is_some() && !ctx.stop.load(Ordering::SeqCst) {
                    // The server died on this request the same way twice: some record in it
                    // causes it. Find which, rather than retrying what will fail again.
                    if remaining.len() > 1 {
                        let b = remaining.split_off(remaining.len().div_ceil(2));
                        return Ok(Some((remaining, b)));
                    }
                    dies_on = fatal;
                    lookup = true;
                    continue;
                }
                if tries.exhausted() || ctx.stop.load(Ordering::SeqCst) {
                    done.extend(ups);
                    return Ok(None);
                }
                lookup = e.may_have_applied();
                tries.back_off().await;
            }
        }
    }
}
