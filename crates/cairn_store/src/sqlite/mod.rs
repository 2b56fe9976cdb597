//! The embedded backend: one SQLite file (`cairn.db`, WAL mode), one writer thread with group
//! commit, a pool of readers. The only module that uses rusqlite (`scripts/check-layers.sh`).

mod pool;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_types::error::{CodedError, ErrorCode};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, params_from_iter};

use crate::blob::LocalBlobStore;
use crate::sql::{Backend, Cell, Db, Dialect, Param, Row, SqlStore};
use crate::{BlobStore, Result, StoreConfig};
use pool::{DbResult, Readers, Writer};

use pool::open_connection;

const SCHEMA_VERSION: i64 = 14;

/// Opens (or creates) the store in `data_dir`: `cairn.db` and `blobs/`.
pub fn open(data_dir: &Path, config: StoreConfig) -> Result<SqlStore> {
    let blobs = Arc::new(LocalBlobStore::open(&data_dir.join("blobs"))?);
    open_with_blobs(data_dir, config, blobs)
}

/// Opens (or creates) `cairn.db` in `data_dir`, with file contents in `blobs`.
pub fn open_with_blobs(data_dir: &Path, config: StoreConfig, blobs: Arc<dyn BlobStore>) -> Result<SqlStore> {
    std::fs::create_dir_all(data_dir).map_err(|e| CodedError::new(ErrorCode::Internal, format!("cannot create the data directory {}: {e}", data_dir.display())))?;
    open_file(&data_dir.join("cairn.db"), config, blobs)
}

/// Opens (or creates) the database file `db_path`, with file contents in `blobs`.
pub fn open_file(db_path: &Path, config: StoreConfig, blobs: Arc<dyn BlobStore>) -> Result<SqlStore> {
    cairn_types::ids::validate_name("default entity", &config.default_entity)?;
    let conn = open_connection(db_path, false)?;
    migrate(&conn)?;
    let backend = SqliteBackend { writer: Writer::start(conn), readers: Readers::new(db_path.to_owned(), 4), db_path: db_path.to_owned() };
    SqlStore::new(Box::new(backend), blobs, config)
}

struct SqliteBackend {
    writer: Writer,
    readers: Readers,
    db_path: PathBuf,
}

impl Backend for SqliteBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn read(&self, op: &mut dyn FnMut(&dyn Db) -> Result<()>) -> Result<()> {
        self.readers.read(|conn| op(&SqliteDb(conn)))
    }

    fn write(&self, op: Box<dyn FnOnce(&dyn Db) -> Result<()> + Send>) -> Result<()> {
        self.writer.write(move |conn| op(&SqliteDb(conn)))
    }

    fn describe(&self) -> String {
        format!("embedded SQLite at {}", self.db_path.display())
    }

    fn heap_bytes(&self) -> Option<u64> {
        // SQLite's own count of what it has allocated and not freed, in this process.
        // SAFETY: a read of a counter that SQLite keeps under its own mutex.
        Some(unsafe { rusqlite::ffi::sqlite3_memory_used() }.max(0) as u64)
    }

    fn close(&self) {
        self.writer.close();
    }
}

/// The size of a database file with its write-ahead log folded in: what it takes on disk.
pub fn file_bytes(db_path: &Path) -> Result<u64> {
    let conn = open_connection(db_path, false)?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").db()?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).db()?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).db()?;
    Ok((pages * size) as u64)
}

/// What SQLite's own checkers find wrong with the database file `db_path` (`PRAGMA
/// integrity_check`, and `foreign_key_check`: rows that name a missing row); empty when whole.
pub fn check_integrity(db_path: &Path) -> Result<Vec<String>> {
    let conn = open_connection(db_path, true)?;
    let mut found: Vec<String> = conn.prepare("PRAGMA integrity_check").db()?.query_map([], |r| r.get(0)).db()?.collect::<rusqlite::Result<_>>().db()?;
    found.retain(|line| line != "ok");
    let mut check = conn.prepare("PRAGMA foreign_key_check").db()?;
    let dangling = check.query_map([], |r| Ok(format!("a row of {} names a missing row of {}", r.get::<_, String>(0)?, r.get::<_, String>(2)?))).db()?;
    found.extend(dangling.collect::<rusqlite::Result<Vec<_>>>().db()?);
    Ok(found)
}

/// Direct access to a database file, for tests that look at it with the server down.
#[cfg(any(test, feature = "testsuite"))]
pub mod testing {
    use std::path::Path;

    /// The one integer `sql` answers.
    pub fn query_i64(db_path: &Path, sql: &str) -> i64 {
        rusqlite::Connection::open(db_path).unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    pub fn execute_batch(db_path: &Path, sql: &str) {
        rusqlite::Connection::open(db_path).unwrap().execute_batch(sql).unwrap();
    }
}

/// Brings the database to [`SCHEMA_VERSION`] in one transaction: a crash part way leaves it as
/// it was, and the next open starts again.
fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE").db()?;
    match migrate_in_transaction(conn) {
        Ok(()) => conn.execute_batch("COMMIT").db(),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn migrate_in_transaction(conn: &Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).db()?;
    if version > SCHEMA_VERSION {
        return Err(CodedError::new(ErrorCode::Internal, format!("the database has schema version {version}, newer than this cairn ({SCHEMA_VERSION}); upgrade cairn")));
    }
    conn.execute_batch(include_str!("schema.sql")).db()?;
    // Version 2: forks share chunks (`chunks.shared_key`), rewinds archive into hidden runs
    // (`runs.archive_of`). The tables of version 1 get the columns.
    let has_column =
        |table: &str, column: &str| -> Result<bool> { conn.prepare(&format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1")).db()?.exists([column]).db() };
    if !has_column("chunks", "shared_key")? {
        conn.execute_batch("ALTER TABLE chunks ADD COLUMN shared_key INTEGER").db()?;
    }
    // Rewinds and purges look up the forks' rows that share a chunk.
    conn.execute_batch("CREATE INDEX IF NOT EXISTS chunks_shared ON chunks (shared_key, start_step) WHERE shared_key IS NOT NULL").db()?;
    if !has_column("runs", "archive_of")? {
        conn.execute_batch("ALTER TABLE runs ADD COLUMN archive_of INTEGER").db()?;
    }
    // Version 3: Duration apart from Runtime. Earlier versions kept no sessions: a run resumed
    // under them has its whole Runtime, pauses included, as its Duration.
    if !has_column("runs", "active_us")? {
        conn.execute_batch("ALTER TABLE runs ADD COLUMN active_us INTEGER NOT NULL DEFAULT 0; ALTER TABLE runs ADD COLUMN session_at INTEGER").db()?;
    }
    // Version 4: leases; 5: blob_gc; 6: accounts, memberships, API keys (the schema creates them).
    // Version 7: sessions and the audit log (created by the schema), and project visibility.
    // Version 8: artifacts; 9: chunked contents; 10: workspace layouts; 11: sweeps; 12: hyperband decisions; 13: server secrets (the schema creates their tables).
    if !has_column("projects", "visibility")? {
        conn.execute_batch("ALTER TABLE projects ADD COLUMN visibility TEXT NOT NULL DEFAULT 'private'").db()?;
    }
    // Version 14: runs that said they may be preempted.
    if !has_column("runs", "preempting_at")? {
        conn.execute_batch("ALTER TABLE runs ADD COLUMN preempting_at INTEGER").db()?;
    }
    if version < SCHEMA_VERSION {
        crate::crash::point("migrate");
    }
    conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}")).db()?;
    Ok(())
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Null => ValueRef::Null,
            Param::Int(i) => ValueRef::Integer(i),
            Param::Real(f) => ValueRef::Real(f),
            Param::Bool(b) => ValueRef::Integer(b as i64),
            Param::Text(t) => ValueRef::Text(t.as_bytes()),
            Param::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// A connection of the writer (inside its transaction) or of a reader.
struct SqliteDb<'c>(&'c Connection);

fn cell(value: ValueRef<'_>) -> Cell {
    match value {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Int(i),
        ValueRef::Real(f) => Cell::Real(f),
        ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
    }
}

fn collect(stmt: &mut rusqlite::Statement<'_>, params: &[Param<'_>]) -> Result<Vec<Row>> {
    let n = stmt.column_count();
    let mut rows = stmt.query(params_from_iter(params.iter())).db()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().db()? {
        let mut cells = Vec::with_capacity(n);
        for i in 0..n {
            cells.push(cell(row.get_ref(i).db()?));
        }
        out.push(Row(cells));
    }
    Ok(out)
}

impl Db for SqliteDb<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64> {
        Ok(self.0.prepare_cached(sql).db()?.execute(params_from_iter(params.iter())).db()? as u64)
    }

    fn query(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>> {
        collect(&mut *self.0.prepare_cached(sql).db()?, params)
    }

    fn query_once(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>> {
        collect(&mut self.0.prepare(sql).db()?, params)
    }
}

#[cfg(test)]
mod tests {
    /// A key with a backslash (even a last one, which once escaped the closing quote: a 500 that
    /// `fuzz/regressions/filter` keeps) or a quote of SQL is found at its path.
    #[test]
    fn sqlite_paths_reach_keys_with_backslashes() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        for key in ["o\\[\\", "a\\", "\\", "\\\\n", "x'y", "plain"] {
            let doc = serde_json::json!({ "other": 1, key: 5 }).to_string();
            let sql = format!("SELECT json_extract(?1, {})", crate::sql::query::path_literal(crate::sql::Dialect::Sqlite, &[key]));
            let found: i64 = conn.query_row(&sql, [doc], |r| r.get(0)).unwrap_or_else(|e| panic!("{key:?}: {e}"));
            assert_eq!(found, 5, "{key:?}");
        }
    }
    use cairn_types::{RunPath, Timestamp};

    use super::*;
    use crate::{RunStore, SeriesStore, Store};

    fn config() -> StoreConfig {
        StoreConfig { default_entity: "tester".into() }
    }

    crate::store_test_suite!({
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), config()).unwrap();
        (store, dir)
    });

    #[test]
    fn reopening_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = RunPath::new("e", "p", "keep");
        {
            let store = open(dir.path(), config()).unwrap();
            crate::testsuite::new_run(&store, &path);
            store.ingest(&path, crate::testsuite::rows(0, 5000), Timestamp::now()).unwrap();
            store.close();
        }
        let store = open(dir.path(), config()).unwrap();
        let data = store.history(&path, &crate::HistoryRequest { limit: 10_000, ..Default::default() }).unwrap();
        assert_eq!(data.steps.len(), 5000);
        assert_eq!(store.get_run(&path).unwrap().offsets.history, 5000);
    }
}
