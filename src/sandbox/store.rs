//! The SQLite store: one table per entity with integer autoincrement ids (ids are never reused,
//! like MySQL's AUTO_INCREMENT), WAL journal so a crash never corrupts the file.

use super::SandboxError;
use crate::crm::Entity;
use rusqlite::Connection;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS client (
    clid INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT, type TEXT NOT NULL DEFAULT 'client',
    date_create TEXT NOT NULL, date_edit TEXT,
    title TEXT NOT NULL, iduser INTEGER,
    address TEXT, phone TEXT, fax TEXT, site_url TEXT, mail_url TEXT,
    des TEXT, territory TEXT, clientpath TEXT, tip_cmr TEXT, recv TEXT
);
CREATE INDEX IF NOT EXISTS client_title ON client(title);
CREATE INDEX IF NOT EXISTS client_uid ON client(uid);
CREATE TABLE IF NOT EXISTS person (
    pid INTEGER PRIMARY KEY AUTOINCREMENT,
    date_create TEXT, date_edit TEXT,
    clid INTEGER, ptitle TEXT, person TEXT, tel TEXT, fax TEXT, mob TEXT, mail TEXT,
    iduser INTEGER, input7 TEXT
);
CREATE INDEX IF NOT EXISTS person_clid ON person(clid);
CREATE INDEX IF NOT EXISTS person_owner_pid ON person(iduser, pid);
CREATE INDEX IF NOT EXISTS person_owner_date ON person(iduser, date_create, pid);
CREATE TABLE IF NOT EXISTS history (
    cid INTEGER PRIMARY KEY AUTOINCREMENT,
    datum TEXT NOT NULL, des TEXT, tip TEXT, iduser INTEGER,
    clid INTEGER NOT NULL DEFAULT 0, pid INTEGER NOT NULL DEFAULT 0, did INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS history_datum ON history(datum);
CREATE TABLE IF NOT EXISTS task (
    tid INTEGER PRIMARY KEY AUTOINCREMENT,
    datum TEXT NOT NULL, totime TEXT, title TEXT, des TEXT, tip TEXT,
    active TEXT NOT NULL DEFAULT 'yes', priority INTEGER NOT NULL DEFAULT 0,
    speed INTEGER NOT NULL DEFAULT 0, iduser INTEGER, autor INTEGER NOT NULL DEFAULT 0,
    clid INTEGER NOT NULL DEFAULT 0, pid INTEGER NOT NULL DEFAULT 0, did INTEGER NOT NULL DEFAULT 0,
    readonly TEXT NOT NULL DEFAULT 'no', day TEXT, status INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS deal (
    did INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT, datum TEXT, datum_izm TEXT, clid INTEGER NOT NULL DEFAULT 0, title TEXT,
    iduser INTEGER, datum_plan TEXT, step INTEGER NOT NULL DEFAULT 0, payer INTEGER NOT NULL DEFAULT 0,
    kol REAL NOT NULL DEFAULT 0, marga REAL NOT NULL DEFAULT 0, datum_start TEXT, datum_end TEXT,
    close TEXT NOT NULL DEFAULT 'no', datum_close TEXT, status_close TEXT, des_fact TEXT,
    kol_fact REAL NOT NULL DEFAULT 0, content TEXT, pid INTEGER NOT NULL DEFAULT 0,
    direction INTEGER NOT NULL DEFAULT 1, sid INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS speka (
    spid INTEGER PRIMARY KEY AUTOINCREMENT,
    did INTEGER NOT NULL, title TEXT, artikul TEXT, price REAL NOT NULL DEFAULT 0,
    kol REAL NOT NULL DEFAULT 0, nds REAL NOT NULL DEFAULT 0, edizm TEXT
);
CREATE INDEX IF NOT EXISTS speka_did ON speka(did);
CREATE TABLE IF NOT EXISTS invoice (
    crid INTEGER PRIMARY KEY AUTOINCREMENT,
    did INTEGER NOT NULL, clid INTEGER NOT NULL DEFAULT 0, pid INTEGER NOT NULL DEFAULT 0,
    datum TEXT, datum_credit TEXT, summa_credit REAL NOT NULL DEFAULT 0,
    nds_credit REAL NOT NULL DEFAULT 0, iduser INTEGER, do TEXT NOT NULL DEFAULT 'no',
    invoice TEXT, invoice_chek TEXT, invoice_date TEXT, rs INTEGER NOT NULL DEFAULT 1, tip TEXT
);
CREATE INDEX IF NOT EXISTS invoice_did ON invoice(did);
";

/// Columns added to [`SCHEMA`] after stores were first written: (table, column, declaration).
/// A store file from an older sandbox gets them on open.
const ADDED_COLUMNS: [(&str, &str, &str); 3] = [
    ("deal", "pid", "INTEGER NOT NULL DEFAULT 0"),
    ("deal", "direction", "INTEGER NOT NULL DEFAULT 1"),
    ("deal", "sid", "INTEGER NOT NULL DEFAULT 0"),
];

fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, decl) in ADDED_COLUMNS {
        let has: i64 = conn.query_row(
            "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
            [table, column],
            |r| r.get(0),
        )?;
        if has == 0 {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
        }
    }
    Ok(())
}

pub struct Store {
    conn: Mutex<Connection>,
    /// Ordered ids of recent list queries; see [`IdCache`].
    pub ids: Mutex<IdCache>,
}

/// How many list queries keep their ordered ids (each costs 8 bytes a matching row).
const ID_CACHE_ENTRIES: usize = 8;

/// The ordered ids matching recent `list` queries, each valid for one state of the data.
///
/// Paging with `LIMIT 200 OFFSET n*200` (and `COUNT(*)` on every page) costs O(rows) a page, so a
/// full export costs O(rows²). A paging client asks the same query again and again with only the
/// page changing: the first page computes every matching id in order once (which also gives the
/// count), the following pages slice that list and look their 200 rows up by id. Any write to the
/// store changes the data version and so invalidates every entry; what a page answers is exactly
/// what `LIMIT/OFFSET` over the same ordering would answer.
#[derive(Default)]
pub struct IdCache {
    entries: VecDeque<IdEntry>,
}

struct IdEntry {
    key: String,
    version: (u64, i64),
    ids: Arc<Vec<i64>>,
}

impl IdCache {
    pub fn get(&mut self, key: &str, version: (u64, i64)) -> Option<Arc<Vec<i64>>> {
        self.entries.retain(|e| e.version == version);
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.ids.clone())
    }

    pub fn put(&mut self, key: String, version: (u64, i64), ids: Arc<Vec<i64>>) {
        self.entries
            .retain(|e| e.version == version && e.key != key);
        if self.entries.len() >= ID_CACHE_ENTRIES {
            self.entries.pop_front();
        }
        self.entries.push_back(IdEntry { key, version, ids });
    }
}

/// The state of the data as SQLite sees it: rows changed through this connection, and commits
/// by any other connection to the same file.
pub fn data_version(conn: &Connection) -> rusqlite::Result<(u64, i64)> {
    let other: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
    Ok((conn.total_changes(), other))
}

impl Store {
    pub fn open(path: &str) -> Result<Store, SandboxError> {
        let err = |source| SandboxError::Db {
            path: path.to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        // WAL + NORMAL: durable across process crashes, fast enough for bulk tests.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "OFF")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        add_missing_columns(&conn).map_err(err)?;
        conn.execute_batch(super::fields::SCHEMA).map_err(err)?;
        conn.execute_batch(super::users::SCHEMA).map_err(err)?;
        Ok(Store {
            conn: Mutex::new(conn),
            ids: Mutex::new(IdCache::default()),
        })
    }

    /// The deal counter of a store opened again: one past the highest deal id.
    pub fn next_deal_number(&self) -> i64 {
        self.lock()
            .query_row("SELECT COALESCE(MAX(did), 0) + 1 FROM deal", [], |r| {
                r.get(0)
            })
            .unwrap_or(1)
    }

    /// The one connection. A poisoned lock only means a handler panicked mid-request; SQLite's
    /// transaction was rolled back by then, so the connection is still consistent.
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Store field settings (see [`super::fields`]); later settings of a field replace earlier.
    pub fn save_fields(&self, specs: &[super::fields::FieldSpec]) -> rusqlite::Result<()> {
        super::fields::save(&self.lock(), specs)
    }

    /// Store the CRM's users (see [`super::users`]); id 1 is always the API user.
    pub fn save_users(
        &self,
        login: &str,
        users: &[super::users::UserSpec],
    ) -> rusqlite::Result<()> {
        super::users::save(&self.lock(), login, users)
    }

    pub fn count(&self, entity: Entity) -> u64 {
        let table = table(entity);
        let conn = self.lock();
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| n as u64)
        .unwrap_or(0)
    }
}

/// An entity's table: named after the entity, as [`SCHEMA`] creates it.
pub fn table(entity: Entity) -> &'static str {
    entity.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_version_moves_with_our_writes_and_other_connections_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sqlite").to_string_lossy().into_owned();
        let store = Store::open(&path).unwrap();
        let v0 = data_version(&store.lock()).unwrap();
        assert_eq!(
            data_version(&store.lock()).unwrap(),
            v0,
            "reads change nothing"
        );
        store
            .lock()
            .execute("INSERT INTO person (person) VALUES ('a')", [])
            .unwrap();
        let v1 = data_version(&store.lock()).unwrap();
        assert_ne!(v1, v0);
        let other = Connection::open(&path).unwrap();
        other
            .execute("INSERT INTO person (person) VALUES ('b')", [])
            .unwrap();
        let v2 = data_version(&store.lock()).unwrap();
        assert_ne!(v2, v1, "a commit by another connection is seen");

        let mut cache = IdCache::default();
        cache.put("q".into(), v2, Arc::new(vec![1, 2]));
        assert_eq!(cache.get("q", v2).as_deref(), Some(&vec![1, 2]));
        assert!(cache.get("q", v1).is_none(), "another data version misses");
        assert!(
            cache.get("q", v2).is_none(),
            "entries of other versions are dropped on lookup"
        );
    }

    #[test]
    fn a_store_written_before_the_deal_change_columns_gets_them_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite").to_string_lossy().into_owned();
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE deal (did INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT);
                 INSERT INTO deal (title) VALUES ('старая');",
            )
            .unwrap();
        let store = Store::open(&path).unwrap();
        let row: (String, i64, i64, i64) = store
            .lock()
            .query_row("SELECT title, pid, direction, sid FROM deal", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        assert_eq!(row, ("старая".to_string(), 0, 1, 0));
    }

    #[test]
    fn every_entity_has_its_table() {
        let store = Store::open(":memory:").unwrap();
        for e in Entity::EVERY {
            let n: i64 = store
                .lock()
                .query_row(&format!("SELECT COUNT(*) FROM {}", table(e)), [], |r| {
                    r.get(0)
                })
                .unwrap_or_else(|err| panic!("{e}: {err}"));
            assert_eq!(n, 0);
        }
    }
}
