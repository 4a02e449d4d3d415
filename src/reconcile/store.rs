//! Reconcile's scratch stores: private SQLite files in the temporary directory (`$TMPDIR`),
//! deleted when closed, so a reconciliation's memory does not grow with either side.
//!
//! - [`SourceStore`]: the source's records (key, packed fields, references, row numbers), in
//!   first-seen order per entity; rows of one key merge through the table's unique key.
//! - [`Findings`]: one entity's CRM records at a time (values only; their probe hashes are the
//!   one thing kept in memory, see `matcher`), every matched key with its CRM id (references of
//!   later entities resolve through it, `--fix` reads it), and every finding the report shows.

use super::fields::{Fields, Names};
use super::matcher::{CrmRecord, Duplicate, FieldDiff, Missing, Rows, SourceRecord};
use super::ReconcileError;
use crate::crm::Entity;
use crate::source::SourcePos;
use crate::template::Reference;
use crate::upload::planstore::{refs_parse, refs_text};
use rusqlite::{params, Connection, OptionalExtension};
use std::str::FromStr;
use std::sync::Arc;

type Result<T, E = ReconcileError> = std::result::Result<T, E>;

/// Source records read back per batch (and CRM records written per batch).
pub const BATCH: usize = 4096;

/// A private SQLite file, deleted when closed: no journal (nothing to recover), a page cache of
/// 4 MB (the file itself lives in the OS page cache, not in this process's memory).
fn scratch(schema: &str) -> Result<Connection> {
    let conn = Connection::open("")?;
    conn.execute_batch(
        "PRAGMA journal_mode=OFF;
         PRAGMA synchronous=OFF;
         PRAGMA cache_size=-4000;
         PRAGMA temp_store=FILE;",
    )?;
    conn.execute_batch(schema)?;
    Ok(conn)
}

/// Run `f` in one write transaction (thousands of single-row writes cost nothing that way).
fn in_transaction<T>(conn: &Connection, f: impl FnOnce() -> Result<T>) -> Result<T> {
    conn.execute_batch("BEGIN")?;
    match f() {
        Ok(v) => {
            conn.execute_batch("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn entity_of(text: &str) -> rusqlite::Result<Entity> {
    Entity::from_str(text).map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown entity {text}").into(),
        )
    })
}

fn labels_text(labels: &[String]) -> String {
    serde_json::to_string(labels).unwrap_or_default()
}

fn labels_parse(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

const SOURCE_SCHEMA: &str = "
    CREATE TABLE src (
        seq    INTEGER PRIMARY KEY,
        entity TEXT NOT NULL,
        key    TEXT NOT NULL,
        fields BLOB NOT NULL,
        refs   TEXT NOT NULL,
        rows   TEXT NOT NULL,
        UNIQUE (entity, key)
    );
    CREATE INDEX src_by_entity ON src (entity, seq);";

/// The source side's records, on disk.
pub struct SourceStore {
    conn: Connection,
    /// Where the rows are (file, sheet): one place for every record.
    at: Option<Arc<SourcePos>>,
    open: bool,
}

impl std::fmt::Debug for SourceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceStore").field("at", &self.at).finish()
    }
}

impl SourceStore {
    pub fn new() -> Result<SourceStore> {
        Ok(SourceStore {
            conn: scratch(SOURCE_SCHEMA)?,
            at: None,
            open: false,
        })
    }

    /// Add a record of source row `pos`: a new key is stored with its fields (and answers
    /// true); a known one only gains the row (the first row's fields win, as in the import).
    pub fn add(
        &mut self,
        entity: Entity,
        key: &str,
        fields: &Fields,
        refs: &[Reference],
        pos: &SourcePos,
    ) -> Result<bool> {
        if !self.open {
            self.conn.execute_batch("BEGIN")?;
            self.open = true;
        }
        self.at.get_or_insert_with(|| Arc::new(pos.clone()));
        let row = pos.row.to_string();
        let added = self
            .conn
            .prepare_cached(
                "INSERT INTO src (entity, key, fields, refs, rows) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (entity, key) DO NOTHING",
            )?
            .execute(params![
                entity.as_str(),
                key,
                fields.encode(),
                refs_text(refs),
                row
            ])?;
        if added == 0 {
            // Another row of the record (unless it is the same row again: two records of one
            // row with the same key).
            self.conn
                .prepare_cached(
                    "UPDATE src SET rows = rows || ',' || ?3 WHERE entity = ?1 AND key = ?2
                     AND rows != ?3 AND rows NOT LIKE '%,' || ?3",
                )?
                .execute(params![entity.as_str(), key, row])?;
        }
        Ok(added > 0)
    }

    /// Done adding: what was added is committed.
    pub fn finish(&mut self) -> Result<()> {
        if self.open {
            self.conn.execute_batch("COMMIT")?;
            self.open = false;
        }
        Ok(())
    }

    /// The records of `entity` in first-seen order, `BATCH` at a time.
    pub fn batches<E: From<ReconcileError>>(
        &self,
        entity: Entity,
        mut f: impl FnMut(Vec<SourceRecord>) -> Result<(), E>,
    ) -> Result<(), E> {
        let at = self.at.clone().unwrap_or_else(|| {
            Arc::new(SourcePos {
                file: "".into(),
                sheet: None,
                row: 0,
            })
        });
        let mut names = Names::default();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT key, fields, refs, rows FROM src WHERE entity = ?1 ORDER BY entity, seq",
            )
            .map_err(ReconcileError::from)?;
        let mut rows = stmt
            .query(params![entity.as_str()])
            .map_err(ReconcileError::from)?;
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(r) = rows.next().map_err(ReconcileError::from)? {
            let get = |i| -> Result<String> { Ok(r.get::<_, String>(i)?) };
            let fields: Vec<u8> = r.get(1).map_err(ReconcileError::from)?;
            let numbers = get(3)?.split(',').filter_map(|n| n.parse().ok()).collect();
            batch.push(SourceRecord {
                entity,
                key: get(0)?,
                fields: Fields::decode(&fields, &mut names),
                refs: refs_parse(&get(2)?),
                rows: Rows::new(at.clone(), numbers),
            });
            if batch.len() == BATCH {
                f(std::mem::take(&mut batch))?;
            }
        }
        if !batch.is_empty() {
            f(batch)?;
        }
        Ok(())
    }
}

const FINDINGS_SCHEMA: &str = "
    CREATE TABLE crm (idx INTEGER PRIMARY KEY, id INTEGER NOT NULL, fields BLOB NOT NULL);
    CREATE TABLE matched (
        entity TEXT NOT NULL, key TEXT NOT NULL, id INTEGER NOT NULL,
        PRIMARY KEY (entity, key)
    ) WITHOUT ROWID;
    CREATE TABLE missing (
        n INTEGER PRIMARY KEY, entity TEXT NOT NULL, key TEXT NOT NULL, rows TEXT NOT NULL,
        fields BLOB NOT NULL, journal_id INTEGER
    );
    CREATE TABLE different (
        n INTEGER PRIMARY KEY, entity TEXT NOT NULL, key TEXT NOT NULL, id INTEGER NOT NULL,
        rows TEXT NOT NULL, field TEXT NOT NULL, source TEXT NOT NULL, crm TEXT NOT NULL
    );
    CREATE TABLE duplicates (
        n INTEGER PRIMARY KEY, entity TEXT NOT NULL, key TEXT NOT NULL, rows TEXT NOT NULL,
        ids TEXT NOT NULL
    );
    CREATE TABLE only_crm (
        n INTEGER PRIMARY KEY, entity TEXT NOT NULL, id INTEGER NOT NULL, fields BLOB NOT NULL
    );";

/// One reconciliation's CRM records (an entity at a time), matches and findings, on disk.
pub struct Findings {
    conn: Connection,
}

impl Findings {
    pub fn new() -> Result<Findings> {
        Ok(Findings {
            conn: scratch(FINDINGS_SCHEMA)?,
        })
    }

    pub fn in_transaction<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        in_transaction(&self.conn, f)
    }

    /// Forget the CRM records of the entity just matched.
    pub fn clear_crm(&self) -> Result<()> {
        self.conn.execute("DELETE FROM crm", [])?;
        Ok(())
    }

    pub fn add_crm(&self, idx: u32, rec: &CrmRecord) -> Result<()> {
        self.conn
            .prepare_cached("INSERT INTO crm (idx, id, fields) VALUES (?1, ?2, ?3)")?
            .execute(params![idx, rec.id, rec.fields.encode()])?;
        Ok(())
    }

    pub fn crm(&self, idx: u32, names: &mut Names) -> Result<CrmRecord> {
        let (id, fields): (i64, Vec<u8>) = self
            .conn
            .prepare_cached("SELECT id, fields FROM crm WHERE idx = ?1")?
            .query_row(params![idx], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(CrmRecord {
            id,
            fields: Fields::decode(&fields, names),
        })
    }

    pub fn add_matched(&self, entity: Entity, key: &str, id: i64) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO matched (entity, key, id) VALUES (?1, ?2, ?3)")?
            .execute(params![entity.as_str(), key, id])?;
        Ok(())
    }

    /// The CRM id the record `key` of `entity` matched.
    pub fn matched_id(&self, entity: Entity, key: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id FROM matched WHERE entity = ?1 AND key = ?2")?
            .query_row(params![entity.as_str(), key], |r| r.get(0))
            .optional()?)
    }

    /// Every matched (entity, key, CRM id).
    pub fn each_matched(&self, mut f: impl FnMut(Entity, String, i64)) -> Result<()> {
        let mut stmt = self.conn.prepare("SELECT entity, key, id FROM matched")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            f(entity_of(&r.get::<_, String>(0)?)?, r.get(1)?, r.get(2)?);
        }
        Ok(())
    }

    pub fn add_missing(&self, m: &Missing) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO missing (entity, key, rows, fields, journal_id)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                m.entity.as_str(),
                m.key,
                labels_text(&m.rows),
                m.fields.encode(),
                m.journal_id
            ])?;
        Ok(())
    }

    /// Every missing record in the order found (entity by entity, source order).
    pub fn each_missing<E: From<ReconcileError>>(
        &self,
        f: impl FnMut(Missing) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut names = Names::default();
        self.each_row(
            "SELECT entity, key, rows, fields, journal_id FROM missing ORDER BY n",
            |r| {
                Ok(Missing {
                    entity: entity_of(&r.get::<_, String>(0)?)?,
                    key: r.get(1)?,
                    rows: labels_parse(&r.get::<_, String>(2)?),
                    fields: Fields::decode(&r.get::<_, Vec<u8>>(3)?, &mut names),
                    journal_id: r.get(4)?,
                })
            },
            f,
        )
    }

    /// Take these missing records (entity, journal id) out of `missing`.
    pub fn remove_missing(&self, gone: &[(Entity, i64)]) -> Result<()> {
        self.in_transaction(|| {
            for (entity, id) in gone {
                self.conn
                    .prepare_cached("DELETE FROM missing WHERE entity = ?1 AND journal_id = ?2")?
                    .execute(params![entity.as_str(), id])?;
            }
            Ok(())
        })
    }

    pub fn add_different(&self, d: &FieldDiff) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO different (entity, key, id, rows, field, source, crm)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                d.entity.as_str(),
                d.key,
                d.id,
                labels_text(&d.rows),
                d.field,
                d.source,
                d.crm
            ])?;
        Ok(())
    }

    pub fn each_different<E: From<ReconcileError>>(
        &self,
        f: impl FnMut(FieldDiff) -> Result<(), E>,
    ) -> Result<(), E> {
        self.each_row(
            "SELECT entity, key, id, rows, field, source, crm FROM different ORDER BY n",
            |r| {
                Ok(FieldDiff {
                    entity: entity_of(&r.get::<_, String>(0)?)?,
                    key: r.get(1)?,
                    id: r.get(2)?,
                    rows: labels_parse(&r.get::<_, String>(3)?),
                    field: r.get(4)?,
                    source: r.get(5)?,
                    crm: r.get(6)?,
                })
            },
            f,
        )
    }

    pub fn add_duplicate(&self, d: &Duplicate) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO duplicates (entity, key, rows, ids) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                d.entity.as_str(),
                d.key,
                labels_text(&d.rows),
                serde_json::to_string(&d.ids).unwrap_or_default()
            ])?;
        Ok(())
    }

    pub fn each_duplicate<E: From<ReconcileError>>(
        &self,
        f: impl FnMut(Duplicate) -> Result<(), E>,
    ) -> Result<(), E> {
        self.each_row(
            "SELECT entity, key, rows, ids FROM duplicates ORDER BY n",
            |r| {
                Ok(Duplicate {
                    entity: entity_of(&r.get::<_, String>(0)?)?,
                    key: r.get(1)?,
                    rows: labels_parse(&r.get::<_, String>(2)?),
                    ids: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
                })
            },
            f,
        )
    }

    /// The CRM record `idx` of the entity being matched is only in the CRM.
    pub fn add_only_in_crm(&self, entity: Entity, idx: u32) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO only_crm (entity, id, fields)
                 SELECT ?1, id, fields FROM crm WHERE idx = ?2",
            )?
            .execute(params![entity.as_str(), idx])?;
        Ok(())
    }

    pub fn each_only_in_crm<E: From<ReconcileError>>(
        &self,
        mut f: impl FnMut(Entity, CrmRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut names = Names::default();
        self.each_row(
            "SELECT entity, id, fields FROM only_crm ORDER BY n",
            |r| {
                let entity = entity_of(&r.get::<_, String>(0)?)?;
                let fields = Fields::decode(&r.get::<_, Vec<u8>>(2)?, &mut names);
                Ok((
                    entity,
                    CrmRecord {
                        id: r.get(1)?,
                        fields,
                    },
                ))
            },
            |(entity, rec)| f(entity, rec),
        )
    }

    /// Stream a finding table: each row of `sql` (which takes no parameters) is read by `decode`
    /// and handed to `f`; an error of either ends the stream.
    fn each_row<T, E: From<ReconcileError>>(
        &self,
        sql: &str,
        mut decode: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
        mut f: impl FnMut(T) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut stmt = self.conn.prepare(sql).map_err(ReconcileError::from)?;
        let mut rows = stmt.query([]).map_err(ReconcileError::from)?;
        while let Some(r) = rows.next().map_err(ReconcileError::from)? {
            f(decode(r).map_err(ReconcileError::from)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: serde_json::Value, names: &mut Names) -> Fields {
        Fields::from_map(v.as_object().unwrap(), names)
    }

    #[test]
    fn rows_of_one_key_merge_and_the_first_rows_fields_win() {
        let mut names = Names::default();
        let mut store = SourceStore::new().unwrap();
        let at = |row| SourcePos {
            file: "клиенты.csv".into(),
            sheet: None,
            row,
        };
        let first = fields(
            json!({"person": "Иван Петров", "mail": "i@x.ru"}),
            &mut names,
        );
        let later = fields(json!({"person": "Иван П.", "mail": "i@x.ru"}), &mut names);
        let other = fields(json!({"person": "Анна"}), &mut names);
        assert!(store
            .add(Entity::Person, "i@x.ru", &first, &[], &at(2))
            .unwrap());
        // The same row again (two records of one row with one key) is not a second row.
        assert!(!store
            .add(Entity::Person, "i@x.ru", &first, &[], &at(2))
            .unwrap());
        assert!(store.add(Entity::Person, "a", &other, &[], &at(3)).unwrap());
        assert!(!store
            .add(Entity::Person, "i@x.ru", &later, &[], &at(12))
            .unwrap());
        store.finish().unwrap();
        let mut read = Vec::new();
        store
            .batches(Entity::Person, |b| {
                read.extend(b);
                Ok::<_, ReconcileError>(())
            })
            .unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].key, "i@x.ru");
        assert_eq!(read[0].fields.get("person"), Some("Иван Петров"));
        assert_eq!(
            read[0].rows.labels(),
            vec!["клиенты.csv row 2", "клиенты.csv row 12"]
        );
        assert_eq!(read[1].key, "a");
        let mut clients = 0;
        store
            .batches(Entity::Client, |b| {
                clients += b.len();
                Ok::<_, ReconcileError>(())
            })
            .unwrap();
        assert_eq!(clients, 0);
    }
}
