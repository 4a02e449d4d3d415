//! The journal: one SQLite file that remembers, for every record of a run, where it is on the way
//! to the CRM. A state is committed before the step that depends on it starts, so after a crash
//! (even SIGKILL) the next run knows which records are stored, which are certainly not, and which
//! might be (`sent`/`ambiguous`: looked up in the CRM before anything is resent).

use super::UploadError;
use crate::crm::Entity;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where a record is. `Sent` and `Ambiguous` mean "may be stored": never resend blindly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Pending,
    Sent,
    Created,
    Existing,
    Failed,
    Ambiguous,
    /// Matched a CRM record and changed it (upsert/update).
    Updated,
    /// Matched a CRM record that already holds the mapped values: nothing sent.
    Unchanged,
    /// `update`/`delete`: no CRM record matches.
    NotFound,
    /// Matched two or more CRM records: never guessed, never written.
    AmbiguousMatch,
    /// Deleted from the CRM.
    Deleted,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Sent => "sent",
            State::Created => "created",
            State::Existing => "existing",
            State::Failed => "failed",
            State::Ambiguous => "ambiguous",
            State::Updated => "updated",
            State::Unchanged => "unchanged",
            State::NotFound => "not_found",
            State::AmbiguousMatch => "ambiguous_match",
            State::Deleted => "deleted",
        }
    }

    pub(super) fn parse(s: &str) -> State {
        match s {
            "sent" => State::Sent,
            "created" => State::Created,
            "existing" => State::Existing,
            "failed" => State::Failed,
            "ambiguous" => State::Ambiguous,
            "updated" => State::Updated,
            "unchanged" => State::Unchanged,
            "not_found" => State::NotFound,
            "ambiguous_match" => State::AmbiguousMatch,
            "deleted" => State::Deleted,
            _ => State::Pending,
        }
    }

    /// Stored in the CRM with a known id: nothing more to do for this record.
    pub fn is_done(self) -> bool {
        matches!(
            self,
            State::Created | State::Existing | State::Updated | State::Unchanged
        )
    }

    /// Settled for this run without a write: nothing to send.
    pub fn is_settled(self) -> bool {
        self.is_done()
            || matches!(
                self,
                State::NotFound | State::AmbiguousMatch | State::Deleted
            )
    }

    /// A request carrying this record may have been applied without us seeing the answer.
    pub fn maybe_stored(self) -> bool {
        matches!(self, State::Sent | State::Ambiguous)
    }
}

/// What the journal knows about one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub state: State,
    pub crm_id: Option<i64>,
    pub error: Option<String>,
    /// Found by a lookup after a lost answer (counted as "ambiguous-resolved").
    pub resolved: bool,
}

/// One record's new state, as written by [`Journal::record`].
#[derive(Debug, Clone)]
pub struct Update {
    pub entity: Entity,
    pub key: String,
    pub state: State,
    pub crm_id: Option<i64>,
    pub error: Option<String>,
    pub resolved: bool,
}

/// What identifies the input of a run, so `--resume` on other input is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunIdentity {
    pub input: String,
    pub input_hash: String,
    pub template_hash: String,
    pub target: String,
}

pub struct Journal {
    pub(super) conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

impl Journal {
    pub fn open(path: &Path) -> Result<Journal, UploadError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| UploadError::JournalIo {
                path: path.to_path_buf(),
                source: e,
            })?;
        }
        Journal::open_with(Connection::open(path), path)
    }

    pub(super) fn open_with(
        conn: rusqlite::Result<Connection>,
        path: &Path,
    ) -> Result<Journal, UploadError> {
        let err = |e| UploadError::journal(path, e);
        let conn = conn.map_err(err)?;
        // WAL + synchronous=NORMAL: a committed transaction survives the process being killed
        // (only an OS crash could lose the last commits), and commits stay cheap.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             PRAGMA busy_timeout=5000;
             PRAGMA cache_size=-16000;
             CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS records (
                 entity   TEXT NOT NULL,
                 key      TEXT NOT NULL,
                 rows     TEXT NOT NULL,
                 state    TEXT NOT NULL,
                 crm_id   INTEGER,
                 error    TEXT,
                 resolved INTEGER NOT NULL DEFAULT 0,
                 updated  TEXT NOT NULL DEFAULT (datetime('now')),
                 PRIMARY KEY (entity, key)
             );
             CREATE TABLE IF NOT EXISTS row_outcomes (
                 row     INTEGER PRIMARY KEY,
                 outcome TEXT NOT NULL
             );",
        )
        .map_err(err)?;
        conn.execute_batch(super::planstore::SCHEMA).map_err(err)?;
        conn.execute_batch(super::matching::SCHEMA).map_err(err)?;
        conn.execute_batch(super::actions::SCHEMA).map_err(err)?;
        conn.execute_batch(super::backup::SCHEMA).map_err(err)?;
        Ok(Journal {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn err(&self, e: rusqlite::Error) -> UploadError {
        UploadError::journal(&self.path, e)
    }

    fn meta(&self, k: &str) -> Result<Option<String>, UploadError> {
        self.conn
            .query_row("SELECT v FROM meta WHERE k = ?1", [k], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Bind the journal to this input. A fresh journal takes the identity; one that holds another
    /// run's records refuses unless it is the same input, template and CRM (mixing two inputs in
    /// one journal would make "already created" meaningless).
    pub fn bind(&mut self, id: &RunIdentity) -> Result<bool, UploadError> {
        let existing = self.meta("input_hash")?;
        // A journal that never sent anything (a run refused before its first write) binds anew.
        let existing = match existing {
            Some(_) if !self.has_sent()? => None,
            other => other,
        };
        if let Some(hash) = existing {
            let template = self.meta("template_hash")?.unwrap_or_default();
            let target = self.meta("target")?.unwrap_or_default();
            let input = self.meta("input")?.unwrap_or_default();
            if hash != id.input_hash || template != id.template_hash {
                return Err(UploadError::JournalMismatch {
                    path: self.path.clone(),
                    what: format!(
                        "it belongs to a run of '{input}' with {}; this run reads '{}' with {}",
                        if template != id.template_hash {
                            "another template"
                        } else {
                            "different file contents"
                        },
                        id.input,
                        if template != id.template_hash {
                            "this template"
                        } else {
                            "other contents"
                        }
                    ),
                });
            }
            if target != id.target {
                return Err(UploadError::JournalMismatch {
                    path: self.path.clone(),
                    what: format!(
                        "its records were sent to {target}, this run sends to {}",
                        id.target
                    ),
                });
            }
            return Ok(true);
        }
        self.write(|tx| {
            for (k, v) in [
                ("input", &id.input),
                ("input_hash", &id.input_hash),
                ("template_hash", &id.template_hash),
                ("target", &id.target),
            ] {
                tx.execute(
                    "INSERT OR REPLACE INTO meta (k, v) VALUES (?1, ?2)",
                    params![k, v],
                )?;
            }
            Ok(())
        })?;
        Ok(false)
    }

    /// Run `f` in one transaction and commit it (for the upload's own tables).
    pub(super) fn write_with<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, UploadError> {
        self.write(f)
    }

    /// Run `f` in one transaction and commit it; any SQLite error names the journal.
    fn write<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, UploadError> {
        let path = self.path.clone();
        let err = |e| UploadError::journal(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        let out = f(&tx).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(out)
    }

    /// Has any record of this journal been sent (is it bound to its target for good)?
    pub fn has_sent(&self) -> Result<bool, UploadError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM records WHERE state <> 'pending')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Register records as pending (records known from an earlier run keep their state).
    pub fn register<'a>(
        &mut self,
        records: impl Iterator<Item = (Entity, &'a str, String)>,
    ) -> Result<(), UploadError> {
        self.write(|tx| {
            let mut stmt = tx.prepare(
                "INSERT INTO records (entity, key, rows, state) VALUES (?1, ?2, ?3, 'pending')
                 ON CONFLICT (entity, key) DO UPDATE SET rows = excluded.rows",
            )?;
            for (entity, key, rows) in records {
                stmt.execute(params![entity.as_str(), key, rows])?;
            }
            Ok(())
        })
    }

    /// The CRM id of the record `key` of `entity` when the journal says it is stored (created
    /// or existing); one indexed read, so reconcile need not load the journal into memory.
    pub fn stored_id(&self, entity: Entity, key: &str) -> Result<Option<i64>, UploadError> {
        let row: Option<(String, Option<i64>)> = self
            .conn
            .prepare_cached("SELECT state, crm_id FROM records WHERE entity = ?1 AND key = ?2")
            .and_then(|mut st| {
                st.query_row(params![entity.as_str(), key], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
            })
            .map_err(|e| self.err(e))?;
        Ok(row.and_then(|(state, id)| State::parse(&state).is_done().then_some(id).flatten()))
    }

    /// Everything the journal knows.
    pub fn load(&self) -> Result<HashMap<(Entity, String), Entry>, UploadError> {
        let mut stmt = self
            .conn
            .prepare("SELECT entity, key, state, crm_id, error, resolved FROM records")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = HashMap::new();
        for row in rows {
            let (entity, key, state, crm_id, error, resolved) = row.map_err(|e| self.err(e))?;
            let Ok(entity) = Entity::from_str(&entity) else {
                continue;
            };
            out.insert(
                (entity, key),
                Entry {
                    state: State::parse(&state),
                    crm_id,
                    error,
                    resolved: resolved != 0,
                },
            );
        }
        Ok(out)
    }

    /// Write many state changes in one transaction (one fsync-free WAL commit per chunk).
    pub fn record(&mut self, updates: &[Update]) -> Result<(), UploadError> {
        if updates.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "UPDATE records SET state = ?3, crm_id = ?4, error = ?5,
                        resolved = (resolved OR ?6), updated = datetime('now')
                 WHERE entity = ?1 AND key = ?2",
            )?;
            for u in updates {
                stmt.execute(params![
                    u.entity.as_str(),
                    u.key,
                    u.state.as_str(),
                    u.crm_id,
                    u.error,
                    u.resolved
                ])?;
            }
            Ok(())
        })
    }
}

impl Journal {
    /// The CRM holds no `entity` at all: what the journal says was stored of it is not there,
    /// so those records are to be sent again (and no longer count as an earlier run's).
    pub fn forget_stored(&mut self, entity: Entity) -> Result<(), UploadError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE plan SET earlier = 0 WHERE entity = ?1 AND key IN (
                     SELECT key FROM records WHERE entity = ?1
                     AND state IN ('created', 'existing', 'updated', 'unchanged'))",
                [entity.as_str()],
            )?;
            // Only what was stored: a record an earlier run deleted stays that run's deletion
            // (an empty CRM is what the delete left; a second delete deletes nothing).
            tx.execute(
                "UPDATE records SET state = 'pending', crm_id = NULL, error = NULL
                 WHERE entity = ?1 AND state IN ('created', 'existing', 'updated', 'unchanged')",
                [entity.as_str()],
            )?;
            Ok(())
        })
    }

    /// `insert`'s decisions in bulk: the records (by plan id) that matched one CRM record become
    /// `existing` with its id — `created` (found again) when a lost answer left them sent or
    /// ambiguous — and those that matched several `ambiguous_match` with `why`. Records already
    /// settled are left alone.
    pub(super) fn settle_matches(
        &mut self,
        entity: Entity,
        one: &[(i64, i64)],
        many: &[(i64, String)],
    ) -> Result<(), UploadError> {
        self.write(|tx| {
            tx.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS found_ids (
                     plan_id INTEGER PRIMARY KEY, crm_id INTEGER, why TEXT);
                 DELETE FROM found_ids;",
            )?;
            {
                let mut put = tx.prepare_cached(
                    "INSERT OR REPLACE INTO found_ids (plan_id, crm_id, why) VALUES (?1, ?2, ?3)",
                )?;
                for (plan_id, crm_id) in one {
                    put.execute(params![plan_id, crm_id, Option::<String>::None])?;
                }
                for (plan_id, why) in many {
                    put.execute(params![plan_id, Option::<i64>::None, why])?;
                }
            }
            // SET expressions see the old row: `state` below is the state before this update.
            tx.execute(
                "UPDATE records SET
                     resolved = resolved OR (f.crm_id IS NOT NULL AND state IN ('sent', 'ambiguous')),
                     state = CASE
                         WHEN f.crm_id IS NULL THEN 'ambiguous_match'
                         WHEN state IN ('sent', 'ambiguous') THEN 'created'
                         ELSE 'existing' END,
                     crm_id = f.crm_id,
                     error = f.why,
                     updated = datetime('now')
                 FROM found_ids f JOIN plan p ON p.id = f.plan_id
                 WHERE records.entity = ?1 AND p.entity = records.entity AND p.key = records.key
                   AND records.state NOT IN ('created', 'existing', 'updated', 'unchanged',
                                             'not_found', 'ambiguous_match', 'deleted')",
                [entity.as_str()],
            )?;
            tx.execute_batch("DELETE FROM found_ids;")?;
            Ok(())
        })
    }

    /// The CRM row a record matched, as the match pass read it.
    pub fn match_current(
        &self,
        entity: Entity,
        key: &str,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>, UploadError> {
        let text: Option<Option<String>> = self
            .conn
            .query_row(
                "SELECT current FROM matches WHERE entity = ?1 AND key = ?2",
                params![entity.as_str(), key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(text.flatten().and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// The field changes the match found for `entity`'s records (this run's, replacing any
    /// earlier ones of the same records).
    pub fn put_changes(
        &mut self,
        entity: Entity,
        changes: &[super::change::FieldChange],
    ) -> Result<(), UploadError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut clear =
                tx.prepare_cached("DELETE FROM changes WHERE entity = ?1 AND key = ?2")?;
            let mut put = tx.prepare_cached(
                "INSERT INTO changes (entity, key, crm_id, field, before, after)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut last: Option<&str> = None;
            for c in changes {
                if last != Some(c.key.as_str()) {
                    clear.execute(params![entity.as_str(), c.key])?;
                    last = Some(c.key.as_str());
                }
                put.execute(params![
                    entity.as_str(),
                    c.key,
                    c.crm_id,
                    c.field,
                    c.before,
                    c.after
                ])?;
            }
            Ok(())
        })
    }

    /// The next `limit` field changes after `after` (its sequence number) of records this run
    /// updated (or, `dry_run`, would update): (seq, entity, key, crm id, field, before, after).
    #[allow(clippy::type_complexity)]
    pub fn changes_page(
        &self,
        after: i64,
        limit: usize,
        dry_run: bool,
    ) -> Result<Vec<(i64, String, String, i64, String, String, String)>, UploadError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT c.seq, c.entity, c.key, c.crm_id, c.field, c.before, c.after
                 FROM changes c JOIN records r ON r.entity = c.entity AND r.key = c.key
                 JOIN plan p ON p.entity = c.entity AND p.key = c.key
                 WHERE c.seq > ?1 AND (r.state = 'updated' OR (?3 <> 0 AND r.state = 'pending'))
                 ORDER BY c.seq LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![after, limit as i64, dry_run], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// The rows the last run left to do: their outcome is not created, existing, blank or
    /// skipped. `None` when no run recorded its row outcomes here.
    pub fn rows_to_retry(&self) -> Result<Option<HashSet<u64>>, UploadError> {
        let mut stmt = self
            .conn
            .prepare("SELECT row, outcome FROM row_outcomes")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut any = false;
        let mut out = HashSet::new();
        for r in rows {
            let (row, outcome) = r.map_err(|e| self.err(e))?;
            any = true;
            if !crate::report::import::Outcome::is_success(&outcome) {
                out.insert(row as u64);
            }
        }
        Ok(any.then_some(out))
    }
}

/// A stable fingerprint of an input file ([`crate::hash::fingerprint`] of its bytes): the
/// journal outlives the binary that wrote it.
pub fn fingerprint_file(path: &Path) -> Result<String, UploadError> {
    let io = |e| UploadError::JournalIo {
        path: path.to_path_buf(),
        source: e,
    };
    crate::hash::fingerprint_reader(std::fs::File::open(path).map_err(io)?).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(hash: &str) -> RunIdentity {
        RunIdentity {
            input: "in.csv".into(),
            input_hash: hash.into(),
            template_hash: "t".into(),
            target: "http://crm".into(),
        }
    }

    /// A run's row outcomes, written as the import job writes them: page by page in one
    /// transaction.
    fn record_row_outcomes(j: &Journal, rows: &[(u64, &str)]) {
        j.begin_row_outcomes().unwrap();
        for page in rows.chunks(2) {
            j.add_row_outcomes(page).unwrap();
        }
        j.end_row_outcomes().unwrap();
    }

    #[test]
    fn rows_to_retry_are_the_last_runs_rows_not_done() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        let j = Journal::open(&path).unwrap();
        // No run finished here yet: nothing to pick from (not "no rows failed").
        assert_eq!(j.rows_to_retry().unwrap(), None);
        record_row_outcomes(
            &j,
            &[
                (2, "created"),
                (3, "failed"),
                (4, "invalid"),
                (5, "existing"),
                (6, "blank"),
                (7, "not_sent"),
            ],
        );
        let want: HashSet<u64> = [3, 4, 7].into_iter().collect();
        assert_eq!(
            Journal::open(&path).unwrap().rows_to_retry().unwrap(),
            Some(want)
        );
        // The next run's outcomes replace these: rows it skipped count as done.
        record_row_outcomes(&j, &[(2, "skipped"), (3, "created"), (4, "partial")]);
        let want: HashSet<u64> = [4].into_iter().collect();
        assert_eq!(j.rows_to_retry().unwrap(), Some(want));
    }

    #[test]
    fn states_survive_reopening_and_other_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        {
            let mut j = Journal::open(&path).unwrap();
            assert!(!j.bind(&id("a")).unwrap());
            j.register(
                [
                    (Entity::Person, "a@x", "2".to_string()),
                    (Entity::Person, "b@x", "3".to_string()),
                ]
                .into_iter(),
            )
            .unwrap();
            j.record(&[Update {
                entity: Entity::Person,
                key: "a@x".into(),
                state: State::Created,
                crm_id: Some(7),
                error: None,
                resolved: true,
            }])
            .unwrap();
        }
        let mut j = Journal::open(&path).unwrap();
        assert!(j.bind(&id("a")).unwrap());
        // Registering again keeps the state of known records.
        j.register([(Entity::Person, "a@x", "2".to_string())].into_iter())
            .unwrap();
        let all = j.load().unwrap();
        let a = &all[&(Entity::Person, "a@x".to_string())];
        assert_eq!(
            (a.state, a.crm_id, a.resolved),
            (State::Created, Some(7), true)
        );
        assert_eq!(
            all[&(Entity::Person, "b@x".to_string())].state,
            State::Pending
        );
        let e = j.bind(&id("b")).unwrap_err().to_string();
        assert!(e.contains("different file contents"), "{e}");
    }

    #[test]
    fn fingerprints_are_stable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        assert_eq!(fingerprint_file(&p).unwrap(), "a430d84680aabd0b-5");
    }
}
