//! The plan of a run kept in the journal rather than in memory: every distinct record (its
//! fields and references, first-seen order) and every source row (which records it holds, or
//! why it holds none). A run of any size then needs memory for one page of records at a time;
//! the plan is re-derived from the file on every run (the tables are cleared first), so only the
//! records' states need the journal's durability.

use super::journal::{Entry, Journal, State};
use super::plan::{PlannedRow, RowCounts, RowProblem, RowSkip};
use super::{EntityCounts, UploadError};
use crate::crm::Entity;
use crate::source::{SourceError, SourcePos};
use crate::template::{MappedRow, Reference};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

/// The states of a record that needs nothing more (SQL list).
const DONE: &str = "'created', 'existing', 'updated', 'unchanged'";

/// Rows per write transaction while planning: large enough that commits cost nothing, small
/// enough that the WAL stays small.
const ROWS_PER_COMMIT: u64 = 5_000;

/// Rows of one record shown in the journal's `rows` column before "… (N rows)".
const ROWS_LISTED: i64 = 20;

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS plan (
        id      INTEGER PRIMARY KEY,
        entity  TEXT NOT NULL,
        key     TEXT NOT NULL,
        fields  TEXT NOT NULL,
        refs    TEXT NOT NULL,
        rows    TEXT NOT NULL,
        nrows   INTEGER NOT NULL DEFAULT 1,
        earlier INTEGER NOT NULL DEFAULT 0,
        UNIQUE (entity, key)
    );
    CREATE INDEX IF NOT EXISTS plan_by_entity ON plan (entity, id);
    CREATE TABLE IF NOT EXISTS plan_rows (
        seq      INTEGER PRIMARY KEY,
        row      INTEGER NOT NULL,
        sheet    TEXT,
        skip     INTEGER NOT NULL DEFAULT 0,
        invalid  TEXT,
        rejected TEXT NOT NULL DEFAULT '',
        records  TEXT NOT NULL DEFAULT ''
    );";

/// What planning a source found, besides what went into the journal.
#[derive(Debug, Default, Clone)]
pub struct PlanTotals {
    pub rows: u64,
    pub invalid_rows: u64,
    pub by_entity: BTreeMap<Entity, RowCounts>,
    /// The first invalid rows (as many as asked for), to show before the upload.
    pub first_invalid: Vec<PlannedRow>,
}

/// One planned record as the uploader pages it out of the journal.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub id: i64,
    pub key: String,
    pub fields: Map<String, Value>,
    pub refs: Vec<Reference>,
    /// Its state when the page was read (None: never registered).
    pub state: Option<State>,
    /// The CRM id the journal holds for it (created earlier, or the CRM record it matched).
    pub crm_id: Option<i64>,
    /// The matched CRM record's fields as the match pass read them (upsert/update), to change.
    pub current: Option<Map<String, Value>>,
}

/// One record of a row, as the report sees it after a run.
#[derive(Debug, Clone)]
pub struct RecordOutcome {
    pub entity: Entity,
    pub key: String,
    pub entry: Option<Entry>,
}

pub(crate) fn refs_text(refs: &[Reference]) -> String {
    if refs.is_empty() {
        return "[]".into();
    }
    let v: Vec<Value> = refs
        .iter()
        .map(|r| Value::from(vec![r.entity.as_str(), r.field.as_str(), r.key.as_str()]))
        .collect();
    Value::Array(v).to_string()
}

pub(crate) fn refs_parse(text: &str) -> Vec<Reference> {
    let v: Vec<(String, String, String)> = serde_json::from_str(text).unwrap_or_default();
    v.into_iter()
        .filter_map(|(e, field, key)| {
            Some(Reference {
                entity: Entity::from_str(&e).ok()?,
                field,
                key,
            })
        })
        .collect()
}

fn entities_text(es: &[Entity]) -> String {
    es.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(",")
}

fn entities_parse(text: &str) -> Vec<Entity> {
    text.split(',')
        .filter_map(|e| Entity::from_str(e).ok())
        .collect()
}

fn problem_text(p: &RowProblem) -> String {
    serde_json::json!([p.entity.map(Entity::as_str), p.field, p.value, p.message]).to_string()
}

fn problem_parse(text: &str) -> Option<RowProblem> {
    let (entity, field, value, message): (Option<String>, Option<String>, String, String) =
        serde_json::from_str(text).ok()?;
    Some(RowProblem {
        entity: entity.and_then(|e| Entity::from_str(&e).ok()),
        field,
        value,
        message,
    })
}

fn state_parse(s: Option<String>) -> Option<State> {
    s.map(|s| State::parse(&s))
}

impl Journal {
    /// Plan mapped rows into the journal (the previous run's plan is cleared first): each
    /// distinct key once (the first row's fields win), every row with its records. `only`
    /// keeps just those row numbers (`--only-failed`); `show_invalid` invalid rows come back
    /// whole to be shown. Records of one key merge through the table's key, not in memory.
    pub fn plan_rows(
        &mut self,
        rows: impl Iterator<Item = Result<MappedRow, SourceError>>,
        only: Option<&HashSet<u64>>,
        show_invalid: usize,
    ) -> Result<PlanTotals, crate::Error> {
        let path = self.path().to_path_buf();
        let err = |e| UploadError::journal(&path, e);
        let conn = &self.conn;
        // The plan is derived from the file again on every run: its writes need no sync (the
        // records' states, written after it, keep theirs).
        conn.execute_batch("DELETE FROM plan; DELETE FROM plan_rows; PRAGMA synchronous=OFF;")
            .map_err(err)?;
        let mut totals = PlanTotals::default();
        conn.execute_batch("BEGIN").map_err(err)?;
        let result = (|| -> Result<(), crate::Error> {
            let mut add = conn
                .prepare(
                    "INSERT INTO plan (entity, key, fields, refs, rows) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (entity, key) DO UPDATE SET nrows = nrows + 1,
                        rows = CASE WHEN nrows < ?6 THEN rows || ',' || excluded.rows ELSE rows END
                     RETURNING id",
                )
                .map_err(err)?;
            let mut put_row = conn
                .prepare(
                    "INSERT INTO plan_rows (row, sheet, skip, invalid, rejected, records)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(err)?;
            for m in rows {
                let (mut row, records) = PlannedRow::of(m?, only, &mut totals.by_entity);
                // A key held twice by one row is one record of that row.
                let mut seen: Vec<(Entity, String, usize)> = Vec::new();
                for rec in records {
                    if let Some((_, _, id)) = seen
                        .iter()
                        .find(|(e, k, _)| *e == rec.entity && *k == rec.key)
                    {
                        row.records.push(*id);
                        continue;
                    }
                    let fields = serde_json::to_string(&rec.fields).unwrap_or_else(|_| "{}".into());
                    let id: i64 = add
                        .query_row(
                            params![
                                rec.entity.as_str(),
                                rec.key,
                                fields,
                                refs_text(&rec.refs),
                                row.pos.row.to_string(),
                                ROWS_LISTED
                            ],
                            |r| r.get(0),
                        )
                        .map_err(err)?;
                    row.records.push(id as usize);
                    seen.push((rec.entity, rec.key, id as usize));
                }
                let skip = match row.skip {
                    None => 0,
                    Some(RowSkip::Blank) => 1,
                    Some(RowSkip::NotSelected) => 2,
                };
                let records = row
                    .records
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                put_row
                    .execute(params![
                        row.pos.row as i64,
                        row.pos.sheet.as_deref(),
                        skip,
                        row.invalid.as_ref().map(problem_text),
                        entities_text(&row.rejected),
                        records
                    ])
                    .map_err(err)?;
                totals.rows += 1;
                if row.invalid.is_some() {
                    totals.invalid_rows += 1;
                    if totals.first_invalid.len() < show_invalid {
                        totals.first_invalid.push(row);
                    }
                }
                if totals.rows % ROWS_PER_COMMIT == 0 {
                    conn.execute_batch("COMMIT; BEGIN").map_err(err)?;
                }
            }
            Ok(())
        })();
        let end = match result {
            Ok(()) => conn
                .execute_batch("COMMIT")
                .map_err(err)
                .map_err(crate::Error::from),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e)
            }
        };
        conn.execute_batch("PRAGMA synchronous=NORMAL")
            .map_err(err)?;
        end.map(|()| totals)
    }

    /// Register the plan's records as pending (records known from an earlier run keep their
    /// state, and those already stored are marked as done before this run).
    /// `rematch` (upsert/update): records done earlier are matched and compared again (the
    /// CRM may have changed since), keeping their CRM id as the first probe.
    pub fn register_plan(&mut self, rematch: bool) -> Result<(), UploadError> {
        let path = self.path().to_path_buf();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| UploadError::journal(&path, e))?;
        if rematch {
            tx.execute_batch(&format!(
                "UPDATE records SET state = 'pending', error = NULL
                 WHERE state IN ({DONE}, 'not_found', 'ambiguous_match', 'failed')"
            ))
            .map_err(|e| UploadError::journal(&path, e))?;
        }
        tx.execute_batch(&format!(
            "UPDATE plan SET earlier = 1 WHERE EXISTS (
                 SELECT 1 FROM records r WHERE r.entity = plan.entity AND r.key = plan.key
                 AND r.state IN ({DONE}, 'deleted'));
             INSERT INTO records (entity, key, rows, state)
                 SELECT entity, key,
                        rows || CASE WHEN nrows > {ROWS_LISTED}
                                     THEN ',… (' || nrows || ' rows)' ELSE '' END,
                        'pending'
                 FROM plan WHERE true
             ON CONFLICT (entity, key) DO UPDATE SET rows = excluded.rows;"
        ))
        .map_err(|e| UploadError::journal(&path, e))?;
        tx.commit().map_err(|e| UploadError::journal(&path, e))
    }

    /// Planned records of `entity` per state (how many in all, how many already stored).
    pub fn plan_progress(&self, entity: Entity) -> Result<(u64, u64), UploadError> {
        self.conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(r.state IN ('created', 'existing', 'updated',
                        'unchanged', 'not_found', 'ambiguous_match', 'deleted')), 0)
                 FROM plan p LEFT JOIN records r ON r.entity = p.entity AND r.key = p.key
                 WHERE p.entity = ?1",
                [entity.as_str()],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(|e| self.err(e))
    }

    /// The next `limit` planned records of `entity` after plan id `after`, in first-seen order.
    pub fn plan_page(
        &self,
        entity: Entity,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, UploadError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT p.id, p.key, p.fields, p.refs, r.state, r.crm_id, m.current
                 FROM plan p LEFT JOIN records r ON r.entity = p.entity AND r.key = p.key
                 LEFT JOIN matches m ON m.entity = p.entity AND m.key = p.key
                 WHERE p.entity = ?1 AND p.id > ?2 ORDER BY p.id LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![entity.as_str(), after, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, key, fields, refs, state, crm_id, current) = row.map_err(|e| self.err(e))?;
            out.push(StoredRecord {
                id,
                key,
                // Written from a map by `plan_rows`, so it parses back into one.
                fields: serde_json::from_str(&fields).unwrap_or_default(),
                refs: refs_parse(&refs),
                state: state_parse(state),
                crm_id,
                current: current.and_then(|c| serde_json::from_str(&c).ok()),
            });
        }
        Ok(out)
    }

    /// One record's state and CRM id (to resolve a reference to it).
    pub fn entry(&self, entity: Entity, key: &str) -> Result<Option<Entry>, UploadError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT state, crm_id, error, resolved FROM records WHERE entity = ?1 AND key = ?2",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_row(params![entity.as_str(), key], entry_of)
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Per entity, what happened to the planned records (after a run). `dry_run` (the mode of a
    /// dry run): nothing was sent; a pending record counts as what the run would do with it —
    /// create it, or update (delete, for a delete) the CRM record it matched ([`super::would_do`]).
    pub fn plan_counts(
        &self,
        dry_run: Option<super::Mode>,
    ) -> Result<HashMap<Entity, EntityCounts>, UploadError> {
        let deleting = dry_run == Some(super::Mode::Delete);
        let dry_run = dry_run.is_some();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT p.entity, COUNT(*), SUM(p.earlier),
                    SUM(p.earlier = 0 AND r.state = 'created'),
                    SUM(p.earlier = 0 AND r.state = 'existing'),
                    SUM(p.earlier = 0 AND r.state = 'failed'),
                    SUM(p.earlier = 0 AND r.state IN ('sent', 'ambiguous')),
                    SUM(p.earlier = 0 AND (r.state IS NULL OR r.state = 'pending')
                        AND (?1 = 0 OR r.crm_id IS NULL)),
                    SUM(p.earlier = 0 AND r.resolved <> 0 AND r.state IN ('created', 'existing')),
                    SUM(p.earlier = 0 AND (r.state = 'updated'
                        OR (?1 <> 0 AND ?2 = 0 AND r.state = 'pending' AND r.crm_id IS NOT NULL))),
                    SUM(p.earlier = 0 AND r.state = 'unchanged'),
                    SUM(p.earlier = 0 AND r.state = 'not_found'),
                    SUM(p.earlier = 0 AND r.state = 'ambiguous_match'),
                    SUM(p.earlier = 0 AND (r.state = 'deleted'
                        OR (?1 <> 0 AND ?2 <> 0 AND r.state = 'pending' AND r.crm_id IS NOT NULL)))
                 FROM plan p LEFT JOIN records r ON r.entity = p.entity AND r.key = p.key
                 GROUP BY p.entity",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![dry_run, deleting], |r| {
                let n = |i: usize| -> rusqlite::Result<u64> {
                    Ok(r.get::<_, Option<i64>>(i)?.unwrap_or(0) as u64)
                };
                Ok((
                    r.get::<_, String>(0)?,
                    EntityCounts {
                        records: n(1)?,
                        earlier: n(2)?,
                        created: n(3)?,
                        existing: n(4)?,
                        failed: n(5)?,
                        unresolved: n(6)?,
                        not_sent: n(7)?,
                        ambiguous_resolved: n(8)?,
                        updated: n(9)?,
                        unchanged: n(10)?,
                        not_found: n(11)?,
                        ambiguous: n(12)?,
                        deleted: n(13)?,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = HashMap::new();
        for row in rows {
            let (entity, mut c) = row.map_err(|e| self.err(e))?;
            let Ok(entity) = Entity::from_str(&entity) else {
                continue;
            };
            if dry_run {
                // Nothing was sent: what is still to do is what the run would create.
                c.created += c.not_sent;
                c.not_sent = 0;
            }
            out.insert(entity, c);
        }
        Ok(out)
    }

    /// The next `limit` planned rows after `after` (a row's place in the file, not its number),
    /// in file order; `file` labels them.
    pub fn planned_rows(
        &self,
        file: &Arc<str>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, PlannedRow)>, UploadError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, row, sheet, skip, invalid, rejected, records FROM plan_rows
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![after, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, n, sheet, skip, invalid, rejected, records) = row.map_err(|e| self.err(e))?;
            out.push((
                seq,
                PlannedRow {
                    pos: SourcePos {
                        file: file.clone(),
                        sheet: sheet.map(Arc::from),
                        row: n as u64,
                    },
                    invalid: invalid.as_deref().and_then(problem_parse),
                    rejected: entities_parse(&rejected),
                    records: records.split(',').filter_map(|i| i.parse().ok()).collect(),
                    skip: match skip {
                        1 => Some(RowSkip::Blank),
                        2 => Some(RowSkip::NotSelected),
                        _ => None,
                    },
                },
            ));
        }
        Ok(out)
    }

    /// A planned record (by plan id) with its state.
    pub fn record_outcome(&self, id: usize) -> Result<Option<RecordOutcome>, UploadError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT p.entity, p.key, r.state, r.crm_id, r.error, r.resolved
                 FROM plan p LEFT JOIN records r ON r.entity = p.entity AND r.key = p.key
                 WHERE p.id = ?1",
            )
            .map_err(|e| self.err(e))?;
        let found = stmt
            .query_row([id as i64], |r| {
                let entry = match r.get::<_, Option<String>>(2)? {
                    None => None,
                    Some(state) => Some(Entry {
                        state: State::parse(&state),
                        crm_id: r.get(3)?,
                        error: r.get(4)?,
                        resolved: r.get::<_, i64>(5)? != 0,
                    }),
                };
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, entry))
            })
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(found.and_then(|(entity, key, entry)| {
            Some(RecordOutcome {
                entity: Entity::from_str(&entity).ok()?,
                key,
                entry,
            })
        }))
    }

    /// Start replacing the row outcomes (one transaction until [`Journal::end_row_outcomes`]).
    pub fn begin_row_outcomes(&self) -> Result<(), UploadError> {
        self.conn
            .execute_batch("BEGIN; DELETE FROM row_outcomes;")
            .map_err(|e| self.err(e))
    }

    pub fn add_row_outcomes(&self, rows: &[(u64, &str)]) -> Result<(), UploadError> {
        let write = || -> rusqlite::Result<()> {
            let mut stmt = self.conn.prepare_cached(
                "INSERT OR REPLACE INTO row_outcomes (row, outcome) VALUES (?1, ?2)",
            )?;
            for (row, outcome) in rows {
                stmt.execute(params![*row as i64, outcome])?;
            }
            Ok(())
        };
        write().map_err(|e| {
            // Leave no transaction open behind a failure: the previous outcomes stay as they were.
            let _ = self.conn.execute_batch("ROLLBACK");
            self.err(e)
        })
    }

    pub fn end_row_outcomes(&self) -> Result<(), UploadError> {
        self.conn.execute_batch("COMMIT").map_err(|e| self.err(e))
    }
}

fn entry_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        state: State::parse(&r.get::<_, String>(0)?),
        crm_id: r.get(1)?,
        error: r.get(2)?,
        resolved: r.get::<_, i64>(3)? != 0,
    })
}

/// A journal no one keeps (a dry run's): a private SQLite file, deleted when closed.
pub fn scratch() -> Result<Journal, UploadError> {
    Journal::open_with(Connection::open(""), std::path::Path::new("(scratch)"))
}
