//! The PostgreSQL backend: the same rules as the embedded store ([`crate::sql`]), on a pool of
//! connections, for any number of servers on one database.
//!
//! The driver is the synchronous `postgres` crate behind the blocking port: the server already
//! runs store calls on its blocking pool, a transaction with row locks is plain sequential code,
//! and SQLite needs the same shape. Each write is one transaction; a run being changed is locked
//! (`SELECT … FOR UPDATE`), so two servers taking batches of one run apply them one after the
//! other, and each sees the offsets the other stored. Reads run in a read-only `REPEATABLE READ`
//! transaction: one snapshot. Lost connections, a server restarting, serialization failures and
//! deadlocks answer `backend_unavailable` (503 with `Retry-After`), which clients retry; the pool
//! drops broken connections and opens new ones, so the server recovers by itself.

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error as _;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use cairn_types::error::{CodedError, ErrorCode};
use postgres::error::SqlState;
use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, IsolationLevel, NoTls, Statement, Transaction};

use crate::sql::{Backend, Cell, Db, Dialect, Param, Row, SqlStore, numbered_placeholders};
use crate::{BlobStore, Result, StoreConfig};

/// The schema versions, in order; each runs once, in a transaction, under a lock.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("schema.sql")),
    (2, include_str!("schema_2.sql")),
    (3, include_str!("schema_3.sql")),
    (4, include_str!("schema_4.sql")),
    (5, include_str!("schema_5.sql")),
    (6, include_str!("schema_6.sql")),
    (7, include_str!("schema_7.sql")),
    (8, include_str!("schema_8.sql")),
    (9, include_str!("schema_9.sql")),
    (10, include_str!("schema_10.sql")),
    (11, include_str!("schema_11.sql")),
    (12, include_str!("schema_12.sql")),
];
/// The schema this cairn writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;
/// `pg_advisory_lock` key held while migrating: two servers starting at once take turns.
const MIGRATION_LOCK: i64 = 0x6361_6972_6e00_0001;
/// Connections a server keeps open at most.
const POOL_SIZE: usize = 16;
/// How long a request waits for a free connection.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// Opens the store at `url` (`postgres://user:pass@host:port/db`), creating or migrating its
/// tables, with file contents in `blobs`.
pub fn open(url: &str, config: StoreConfig, blobs: Arc<dyn BlobStore>) -> Result<SqlStore> {
    cairn_types::ids::validate_name("default entity", &config.default_entity)?;
    let mut pg: postgres::Config =
        url.parse().map_err(|e| CodedError::new(ErrorCode::InvalidValue, format!("the PostgreSQL URL is not valid ({e}); write postgres://user:password@host:port/database")))?;
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(Duration::from_secs(5));
    }
    // A connection whose peer went away without a word (a half-open LISTEN) is found in a
    // minute, not in the two hours of the system's defaults.
    pg.keepalives(true).keepalives_idle(Duration::from_secs(30));
    let pool = Pool { pg, idle: Mutex::new(Vec::new()), available: Condvar::new(), open: Mutex::new(0) };
    let describe = pool.describe();
    {
        let mut conn = pool.get()?;
        migrate(&mut conn.client)?;
    }
    let notices = Arc::new(PgNotices::start(pool.pg.clone()));
    SqlStore::new(Box::new(PgBackend { pool, describe, notices }), blobs, config)
}

/// What the store's tables take in its schema, indexes and TOAST included; after `VACUUM FULL`
/// with `vacuum`, which returns the space of rows that later writes replaced.
pub fn schema_bytes(store: &SqlStore, vacuum: bool) -> Result<u64> {
    if vacuum {
        store.maintenance("VACUUM FULL")?;
    }
    store.read(|db| {
        db.row(
            "SELECT CAST(coalesce(sum(pg_total_relation_size(c.oid)), 0) AS BIGINT) FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'",
            &[],
        )?
        .i64(0)
        .map(|b| b as u64)
    })
}

/// The channel that servers on one database share their events on.
const CHANNEL: &str = "cairn_events";

/// LISTEN/NOTIFY on connections of their own: one that sends, one per listener.
struct PgNotices {
    pg: postgres::Config,
    sender: Mutex<Option<std::sync::mpsc::Sender<String>>>,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl PgNotices {
    fn start(pg: postgres::Config) -> PgNotices {
        let (sender, receiver) = std::sync::mpsc::channel::<String>();
        let config = pg.clone();
        std::thread::Builder::new()
            .name("cairn-pg-notify".into())
            .spawn(move || {
                let mut client: Option<Client> = None;
                // Ends when the store closes (the sender is dropped).
                for payload in receiver {
                    for attempt in 0..2 {
                        if client.as_ref().is_none_or(Client::is_closed) {
                            client = config.connect(NoTls).map_err(|e| tracing::warn!("events: {}", pg_error(e).message)).ok();
                        }
                        let Some(c) = client.as_mut() else { break };
                        match c.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload]) {
                            Ok(_) => break,
                            Err(e) => {
                                client = None;
                                if attempt == 1 {
                                    tracing::warn!("an event was not shared with the other servers: {}", pg_error(e).message);
                                }
                            }
                        }
                    }
                }
            })
            .expect("spawn the notify thread");
        PgNotices { pg, sender: Mutex::new(Some(sender)), closed: Default::default() }
    }

    fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::Relaxed);
        self.sender.lock().expect("sender lock").take();
    }
}

impl crate::Notices for PgNotices {
    fn notify(&self, payload: String) {
        if let Some(sender) = self.sender.lock().expect("sender lock").as_ref() {
            let _ = sender.send(payload);
        }
    }

    fn listen(&self, deliver: Box<dyn Fn(Option<String>) + Send>) {
        let (pg, closed) = (self.pg.clone(), self.closed.clone());
        let spawned = std::thread::Builder::new().name("cairn-pg-listen".into()).spawn(move || {
            let mut connected_before = false;
            while !closed.load(std::sync::atomic::Ordering::Relaxed) {
                let mut client = match pg.connect(NoTls).and_then(|mut c| c.batch_execute(&format!("LISTEN {CHANNEL}")).map(|_| c)) {
                    Ok(client) => client,
                    Err(e) => {
                        tracing::warn!("events from other servers: {}", pg_error(e).message);
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                };
                // After a gap, what was sent meanwhile is lost: subscribers resync.
                if connected_before {
                    deliver(None);
                }
                connected_before = true;
                'listening: while !closed.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut notifications = client.notifications();
                    let mut batch = notifications.timeout_iter(Duration::from_millis(500));
                    loop {
                        match postgres::fallible_iterator::FallibleIterator::next(&mut batch) {
                            Ok(Some(n)) => deliver(Some(n.payload().to_owned())),
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!("events from other servers: {}", pg_error(e).message);
                                break 'listening;
                            }
                        }
                    }
                    drop(batch);
                    drop(notifications);
                    if client.is_closed() {
                        break;
                    }
                }
            }
        });
        if let Err(e) = spawned {
            tracing::warn!("cannot listen for events from other servers: {e}");
        }
    }
}

fn migrate(client: &mut Client) -> Result<()> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).map_err(pg_error)?;
    let result = (|| {
        client.batch_execute("CREATE TABLE IF NOT EXISTS cairn_schema (version BIGINT NOT NULL)").map_err(pg_error)?;
        let current: i64 = client.query_one("SELECT coalesce(max(version), 0) FROM cairn_schema", &[]).map_err(pg_error)?.get(0);
        if current > SCHEMA_VERSION {
            return Err(CodedError::new(ErrorCode::Internal, format!("the database has schema version {current}, newer than this cairn ({SCHEMA_VERSION}); upgrade cairn")));
        }
        for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            let mut tx = client.transaction().map_err(pg_error)?;
            tx.batch_execute(sql).map_err(pg_error)?;
            tx.execute("INSERT INTO cairn_schema (version) VALUES ($1)", &[&version]).map_err(pg_error)?;
            if version == SCHEMA_VERSION {
                crate::crash::point("migrate");
            }
            tx.commit().map_err(pg_error)?;
            tracing::info!(version, "migrated the PostgreSQL schema");
        }
        Ok(())
    })();
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).map_err(pg_error);
    result.and(unlocked.map(|_| ()))
}

/// What PostgreSQL's checker finds wrong with the schema at `url` (amcheck's `bt_index_check`
/// with `heapallindexed` on every B-tree index of it: each index well formed and holding every
/// row of its table); empty when whole. Creates the amcheck extension when it is missing, which
/// takes a superuser.
pub fn check_integrity(url: &str) -> Result<Vec<String>> {
    let mut client = Client::connect(url, NoTls).map_err(pg_error)?;
    client.batch_execute("CREATE EXTENSION IF NOT EXISTS amcheck").map_err(pg_error)?;
    let indexes = client
        .query(
            "SELECT c.oid, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_am a ON a.oid = c.relam WHERE n.nspname = current_schema() AND a.amname = 'btree'",
            &[],
        )
        .map_err(pg_error)?;
    if indexes.is_empty() {
        return Ok(vec!["the schema has no indexes to check (is it a cairn database?)".to_owned()]);
    }
    let mut found = Vec::new();
    for index in indexes {
        let (oid, name): (postgres::types::Oid, String) = (index.get(0), index.get(1));
        if let Err(e) = client.execute("SELECT bt_index_check(c.oid::regclass, true) FROM pg_class c WHERE c.oid = $1", &[&oid]) {
            found.push(format!("index {name}: {}", pg_error(e).message));
        }
    }
    Ok(found)
}

/// A database error as a coded one: what is worth retrying is `backend_unavailable`.
fn pg_error(e: postgres::Error) -> CodedError {
    let detail = match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => e.source().map_or_else(|| e.to_string(), |s| format!("{e}: {s}")),
    };
    match e.code() {
        // A pattern that PostgreSQL's regular expressions do not take.
        Some(&SqlState::INVALID_REGULAR_EXPRESSION) => {
            return CodedError::new(ErrorCode::InvalidFilter, format!("the regular expression is not one PostgreSQL runs: {detail}"));
        }
        Some(&SqlState::DISK_FULL) => return cairn_types::error::storage_full("the PostgreSQL database"),
        Some(&SqlState::CHARACTER_NOT_IN_REPERTOIRE) | Some(&SqlState::UNTRANSLATABLE_CHARACTER) => {
            return CodedError::new(ErrorCode::InvalidValue, format!("a text the database cannot hold: {detail}"));
        }
        _ => {}
    }
    let retry = match e.code() {
        Some(code) => {
            let class = code.code().get(..2).unwrap_or("");
            // 08: connection exceptions; 57P0x: the server shutting down or starting; 53: out
            // of resources; 40001 and 40P01: a concurrent transaction won.
            // 23505: two servers created the same row at once; the retry finds it.
            class == "08"
                || class == "53"
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                    SqlState::UNIQUE_VIOLATION,
                ]
                .contains(code)
        }
        // No SQL state: the connection failed (refused, reset, timed out, closed), or a value
        // could not be converted (a bug).
        None => e.is_closed() || e.source().is_some_and(|s| s.is::<std::io::Error>()) || e.to_string().contains("timed out"),
    };
    if retry {
        CodedError::new(ErrorCode::BackendUnavailable, format!("PostgreSQL is unavailable ({detail}); try again"))
    } else {
        CodedError::new(ErrorCode::Internal, format!("database error: {detail}"))
    }
}

struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

struct Pool {
    pg: postgres::Config,
    idle: Mutex<Vec<Conn>>,
    available: Condvar,
    open: Mutex<usize>,
}

/// A connection taken from the pool; it goes back when dropped, unless it broke.
struct Pooled<'p> {
    pool: &'p Pool,
    conn: Option<Conn>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("taken")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("taken")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        // Under the idle lock, which waiters hold when they look: none misses the wakeup.
        let mut idle = self.pool.idle.lock().expect("pool lock");
        if conn.client.is_closed() {
            *self.pool.open.lock().expect("pool lock") -= 1;
        } else {
            idle.push(conn);
        }
        drop(idle);
        self.pool.available.notify_one();
    }
}

impl Pool {
    fn describe(&self) -> String {
        let host = match self.pg.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = self.pg.get_ports().first().copied().unwrap_or(5432);
        format!("PostgreSQL at {host}:{port}/{}", self.pg.get_dbname().unwrap_or(""))
    }

    fn get(&self) -> Result<Pooled<'_>> {
        let deadline = std::time::Instant::now() + POOL_WAIT;
        let mut idle = self.idle.lock().expect("pool lock");
        loop {
            if let Some(conn) = idle.pop() {
                if conn.client.is_closed() {
                    *self.open.lock().expect("pool lock") -= 1;
                    continue;
                }
                return Ok(Pooled { pool: self, conn: Some(conn) });
            }
            {
                let mut open = self.open.lock().expect("pool lock");
                if *open < POOL_SIZE {
                    *open += 1;
                    drop(open);
                    drop(idle);
                    return match self.pg.connect(NoTls) {
                        Ok(client) => Ok(Pooled { pool: self, conn: Some(Conn { client, statements: HashMap::new() }) }),
                        Err(e) => {
                            let idle = self.idle.lock().expect("pool lock");
                            *self.open.lock().expect("pool lock") -= 1;
                            drop(idle);
                            self.available.notify_one();
                            Err(pg_error(e))
                        }
                    };
                }
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(CodedError::new(ErrorCode::BackendUnavailable, "every PostgreSQL connection is busy; try again"));
            }
            idle = self.available.wait_timeout(idle, deadline - now).expect("pool lock").0;
        }
    }
}

struct PgBackend {
    pool: Pool,
    describe: String,
    notices: Arc<PgNotices>,
}

impl PgBackend {
    fn run(&self, read_only: bool, op: &mut dyn FnMut(&dyn Db) -> Result<()>) -> Result<()> {
        let mut conn = self.pool.get()?;
        let Conn { client, statements } = &mut *conn;
        let tx =
            if read_only { client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start() } else { client.transaction() }.map_err(pg_error)?;
        let db = PgDb { tx: RefCell::new(tx), statements: RefCell::new(statements) };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op(&db)))
            .unwrap_or_else(|_| Err(CodedError::new(ErrorCode::Internal, "internal error while writing (a bug); nothing was stored")));
        let tx = db.tx.into_inner();
        match result {
            Ok(()) => tx.commit().map_err(pg_error),
            Err(e) => {
                // Dropping the transaction rolls it back.
                drop(tx);
                Err(e)
            }
        }
    }
}

impl Backend for PgBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn read(&self, op: &mut dyn FnMut(&dyn Db) -> Result<()>) -> Result<()> {
        self.run(true, op)
    }

    fn write(&self, op: Box<dyn FnOnce(&dyn Db) -> Result<()> + Send>) -> Result<()> {
        let mut op = Some(op);
        self.run(false, &mut |db| (op.take().expect("a write runs once"))(db))
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn notices(&self) -> Option<Arc<dyn crate::Notices>> {
        Some(self.notices.clone())
    }

    fn maintenance(&self, sql: &str) -> Result<()> {
        self.pool.get()?.client.batch_execute(sql).map_err(pg_error)
    }

    fn close(&self) {
        self.notices.close();
        self.pool.idle.lock().expect("pool lock").clear();
    }
}

struct PgDb<'c> {
    tx: RefCell<Transaction<'c>>,
    statements: RefCell<&'c mut HashMap<String, Statement>>,
}

impl PgDb<'_> {
    fn statement(&self, sql: &str, cache: bool) -> Result<Statement> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.tx.borrow_mut().prepare(&numbered_placeholders(sql)).map_err(pg_error)?;
        if cache {
            self.statements.borrow_mut().insert(sql.to_owned(), statement.clone());
        }
        Ok(statement)
    }

    fn rows(&self, sql: &str, params: &[Param<'_>], cache: bool) -> Result<Vec<Row>> {
        let statement = self.statement(sql, cache)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = self.tx.borrow_mut().query(&statement, &refs).map_err(pg_error)?;
        rows.iter().map(|row| (0..row.len()).map(|i| row.try_get::<_, Cell>(i).map_err(pg_error)).collect::<Result<Vec<_>>>().map(Row)).collect()
    }
}

impl Db for PgDb<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64> {
        let statement = self.statement(sql, true)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        self.tx.borrow_mut().execute(&statement, &refs).map_err(pg_error)
    }

    fn query(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>> {
        self.rows(sql, params, true)
    }

    fn query_once(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>> {
        self.rows(sql, params, false)
    }
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// JSON text with its `\u0000` escapes (which jsonb refuses) as `\ufffd`; an escaped
/// backslash followed by `u0000` is text, and stays.
fn without_nul_escapes(json: &str) -> std::borrow::Cow<'_, str> {
    if !json.contains("\\u0000") {
        return json.into();
    }
    let mut out = String::with_capacity(json.len());
    let mut rest = json;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let escape = &rest[at..];
        if let Some(after) = escape.strip_prefix("\\u0000") {
            out.push_str("\\ufffd");
            rest = after;
        } else {
            // Any other escape, whole: `\\` included, so the next backslash starts an escape.
            let len = escape[1..].chars().next().map_or(1, |c| 1 + c.len_utf8());
            out.push_str(&escape[..len]);
            rest = &escape[len..];
        }
    }
    out.push_str(rest);
    out.into()
}

fn mismatch(param: &Param<'_>, ty: &Type) -> BoxError {
    format!("a {param:?} cannot be sent as {ty}").into()
}

/// Parameters take the type that PostgreSQL inferred for their place: an integer becomes a
/// `bigint`, an `integer` or a `double precision`, text a `jsonb` document where the column is one.
impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        match (*self, ty) {
            (Param::Null, _) => return Ok(IsNull::Yes),
            (Param::Int(i), &Type::INT8) => i.to_sql(ty, out)?,
            (Param::Int(i), &Type::INT4) => i32::try_from(i).map_err(|_| mismatch(self, ty))?.to_sql(ty, out)?,
            (Param::Int(i), &Type::INT2) => i16::try_from(i).map_err(|_| mismatch(self, ty))?.to_sql(ty, out)?,
            (Param::Int(i), &Type::FLOAT8) => (i as f64).to_sql(ty, out)?,
            (Param::Int(i), &Type::BOOL) => (i != 0).to_sql(ty, out)?,
            (Param::Int(i), &Type::TEXT | &Type::VARCHAR) => i.to_string().as_str().to_sql(ty, out)?,
            (Param::Real(f), &Type::FLOAT8) => f.to_sql(ty, out)?,
            (Param::Real(f), &Type::FLOAT4) => (f as f32).to_sql(ty, out)?,
            (Param::Real(f), &Type::TEXT | &Type::VARCHAR) => f.to_string().as_str().to_sql(ty, out)?,
            (Param::Bool(b), &Type::BOOL) => b.to_sql(ty, out)?,
            (Param::Bool(b), &Type::INT8) => (b as i64).to_sql(ty, out)?,
            (Param::Bool(b), &Type::INT4) => (b as i32).to_sql(ty, out)?,
            // PostgreSQL holds no NUL character, in text or in jsonb (SQLite does): it is stored as
            // U+FFFD, so that a console line with one does not stop the run's stream.
            (Param::Text(t), &Type::JSONB) => {
                out.extend_from_slice(&[1]);
                out.extend_from_slice(without_nul_escapes(t).as_bytes());
                IsNull::No
            }
            (Param::Text(t), &Type::JSON) => {
                out.extend_from_slice(without_nul_escapes(t).as_bytes());
                IsNull::No
            }
            (Param::Text(t), &Type::TEXT | &Type::VARCHAR | &Type::BPCHAR | &Type::NAME | &Type::UNKNOWN) => {
                if t.contains('\0') {
                    t.replace('\0', "\u{fffd}").as_str().to_sql(ty, out)?
                } else {
                    t.to_sql(ty, out)?
                }
            }
            (Param::Blob(b), &Type::BYTEA) => b.to_sql(ty, out)?,
            _ => return Err(mismatch(self, ty)),
        };
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> std::result::Result<Cell, BoxError> {
        Ok(match *ty {
            Type::INT8 => Cell::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Cell::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Cell::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Cell::Int(bool::from_sql(ty, raw)? as i64),
            Type::FLOAT8 => Cell::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Cell::Real(f32::from_sql(ty, raw)?.into()),
            Type::BYTEA => Cell::Blob(raw.to_vec()),
            Type::JSONB => match raw.split_first() {
                Some((1, text)) => Cell::Json(std::str::from_utf8(text)?.to_owned()),
                _ => return Err("jsonb of an unknown version".into()),
            },
            Type::JSON => Cell::Json(std::str::from_utf8(raw)?.to_owned()),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => Cell::Text(String::from_sql(ty, raw)?),
            // A sum of bigints is numeric, for one: the statement casts what it reads.
            _ => return Err(format!("a column of type {ty} (cast it in the statement)").into()),
        })
    }

    fn from_sql_null(_: &Type) -> std::result::Result<Cell, BoxError> {
        Ok(Cell::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A fresh schema on the test cluster (`CAIRN_TEST_POSTGRES`, which `scripts/test.sh` starts),
/// dropped when the guard goes. `None` outside CI when no cluster is configured; in CI a missing
/// cluster is an error.
#[cfg(any(test, feature = "testsuite"))]
pub mod testing {
    /// Drops the schema when dropped.
    pub struct SchemaGuard {
        url: String,
        schema: String,
    }

    impl Drop for SchemaGuard {
        fn drop(&mut self) {
            if let Ok(mut client) = postgres::Client::connect(&self.url, postgres::NoTls) {
                let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
            }
        }
    }

    /// A PostgreSQL cluster of its own, for tests that stop and start the database: initdb and
    /// pg_ctl from Debian's PostgreSQL, as the postgres user when the tests run as root.
    pub struct Cluster {
        dir: tempfile::TempDir,
        bin: std::path::PathBuf,
        port: u16,
        as_postgres: bool,
    }

    impl Cluster {
        /// `None` outside CI when PostgreSQL is not installed.
        pub fn start() -> Option<Cluster> {
            let bin = std::fs::read_dir("/usr/lib/postgresql")
                .ok()
                .and_then(|dirs| dirs.filter_map(|d| d.ok()).map(|d| d.path().join("bin")).filter(|b| b.join("initdb").exists()).max());
            let Some(bin) = bin else {
                assert!(std::env::var_os("CI").is_none(), "PostgreSQL is not installed under /usr/lib/postgresql");
                eprintln!("skipped: PostgreSQL is not installed");
                return None;
            };
            let as_postgres = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
            let dir = tempfile::tempdir().expect("a directory for the cluster");
            if as_postgres {
                let status = std::process::Command::new("chown").arg("postgres").arg(dir.path()).status().expect("chown");
                assert!(status.success(), "chown the cluster's directory to postgres");
            }
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let cluster = Cluster { dir, bin, port, as_postgres };
            cluster.run("initdb", &["-D", "data", "-U", "cairn", "--auth=trust", "-E", "UTF8"]);
            cluster.resume();
            Some(cluster)
        }

        /// A PostgreSQL tool, run as the postgres user where needed, in the cluster's directory.
        fn command(&self, tool: &str) -> std::process::Command {
            let tool = self.bin.join(tool);
            let mut command = if self.as_postgres {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(tool);
                c
            } else {
                std::process::Command::new(tool)
            };
            command.current_dir(self.dir.path());
            command
        }

        fn run(&self, tool: &str, args: &[&str]) {
            let output = self.command(tool).args(args).output().expect("run a PostgreSQL tool");
            assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        }

        /// `postgres://` URL of its `postgres` database.
        pub fn url(&self) -> String {
            format!("postgres://cairn@127.0.0.1:{}/postgres", self.port)
        }

        /// Stops the database at once, as a crash or a restart does.
        pub fn stop(&self) {
            self.run("pg_ctl", &["-D", "data", "-m", "immediate", "-w", "stop"]);
        }

        /// Starts it (again).
        pub fn resume(&self) {
            let options = format!("-h 127.0.0.1 -p {} -k {} -c fsync=off", self.port, self.dir.path().display());
            self.run("pg_ctl", &["-D", "data", "-l", "log", "-w", "-o", &options, "start"]);
        }
    }

    impl Drop for Cluster {
        fn drop(&mut self) {
            let _ = self.command("pg_ctl").args(["-D", "data", "-m", "immediate", "stop"]).output();
        }
    }

    /// The one integer `sql` answers, in the schema at `url`.
    pub fn query_i64(url: &str, sql: &str) -> i64 {
        postgres::Client::connect(url, postgres::NoTls).unwrap().query_one(sql, &[]).unwrap().get(0)
    }

    pub fn execute_batch(url: &str, sql: &str) {
        postgres::Client::connect(url, postgres::NoTls).unwrap().batch_execute(sql).unwrap();
    }

    /// The URL of a new, empty schema, and its guard.
    pub fn fresh_schema() -> Option<(String, SchemaGuard)> {
        match std::env::var("CAIRN_TEST_POSTGRES") {
            Ok(url) => Some(schema_in(&url)),
            Err(_) if std::env::var_os("CI").is_some() => panic!("CAIRN_TEST_POSTGRES is not set: run the suite with scripts/test.sh"),
            Err(_) => {
                eprintln!("skipped: CAIRN_TEST_POSTGRES is not set (scripts/test.sh starts a cluster)");
                None
            }
        }
    }

    /// A new, empty schema in the database at `url`: its URL, and the guard that drops it.
    pub fn schema_in(url: &str) -> (String, SchemaGuard) {
        let url = url.to_owned();
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let schema = format!("t_{}_{n}_{nanos}", std::process::id());
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect to the test cluster");
        client.batch_execute(&format!("CREATE SCHEMA {schema}")).expect("create a test schema");
        let sep = if url.contains('?') { '&' } else { '?' };
        (format!("{url}{sep}options=-csearch_path%3D{schema}"), SchemaGuard { url, schema })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::LocalBlobStore;

    fn config() -> StoreConfig {
        StoreConfig { default_entity: "tester".into() }
    }

    crate::store_test_suite!({
        let Some((url, guard)) = testing::fresh_schema() else { return };
        let dir = tempfile::tempdir().unwrap();
        let blobs = Arc::new(LocalBlobStore::open(&dir.path().join("blobs")).unwrap());
        let store = open(&url, config(), blobs).unwrap();
        (store, (guard, dir))
    });

    #[test]
    fn a_newer_schema_is_refused_and_migrations_run_once() {
        let Some((url, _guard)) = testing::fresh_schema() else { return };
        let dir = tempfile::tempdir().unwrap();
        let blobs: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::open(dir.path()).unwrap());
        // Two servers starting at once: the lock makes them take turns, and both open.
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2).map(|_| scope.spawn(|| open(&url, config(), blobs.clone()).map(|_| ()))).collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
        });
        let mut client = postgres::Client::connect(&url, NoTls).unwrap();
        let versions: i64 = client.query_one("SELECT count(*) FROM cairn_schema", &[]).unwrap().get(0);
        assert_eq!(versions, MIGRATIONS.len() as i64);
        client.execute("INSERT INTO cairn_schema (version) VALUES ($1)", &[&(SCHEMA_VERSION + 1)]).unwrap();
        let err = open(&url, config(), blobs).err().expect("a newer schema is refused");
        assert!(err.message.contains("newer than this cairn"), "{}", err.message);
    }

    #[test]
    fn notices_reach_every_store_on_the_database() {
        use crate::Store as _;
        let Some((url, _guard)) = testing::fresh_schema() else { return };
        let dir = tempfile::tempdir().unwrap();
        let blobs: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::open(dir.path()).unwrap());
        let (one, two) = (open(&url, config(), blobs.clone()).unwrap(), open(&url, config(), blobs).unwrap());
        let (sender, received) = std::sync::mpsc::channel();
        for (name, store) in [("one", &one), ("two", &two)] {
            let sender = Mutex::new(sender.clone());
            store.notices().unwrap().listen(Box::new(move |payload| {
                let _ = sender.lock().unwrap().send((name, payload));
            }));
        }
        // Listening takes a moment to start: send until both have heard one.
        let mut heard = std::collections::HashSet::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while heard.len() < 2 {
            assert!(std::time::Instant::now() < deadline, "heard only {heard:?}");
            one.notices().unwrap().notify("hello".into());
            while let Ok((name, payload)) = received.recv_timeout(Duration::from_millis(200)) {
                assert_eq!(payload.as_deref(), Some("hello"));
                heard.insert(name);
            }
        }
    }

    #[test]
    fn nul_escapes_become_replacement_characters() {
        assert_eq!(without_nul_escapes(r#"{"a":"x\u0000y"}"#), r#"{"a":"x\ufffdy"}"#);
        assert_eq!(without_nul_escapes(r#"{"a":"x\\u0000y"}"#), r#"{"a":"x\\u0000y"}"#);
        assert_eq!(without_nul_escapes(r#"{"a":"\"\u0000"}"#), r#"{"a":"\"\ufffd"}"#);
    }

    #[test]
    fn an_unreachable_server_is_unavailable_not_internal() {
        let dir = tempfile::tempdir().unwrap();
        let blobs: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::open(dir.path()).unwrap());
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = open(&format!("postgres://cairn@127.0.0.1:{port}/cairn"), config(), blobs).err().expect("nothing listens");
        assert_eq!(err.code, ErrorCode::BackendUnavailable, "{}", err.message);
        let bad = open("mysql://x", config(), Arc::new(LocalBlobStore::open(dir.path()).unwrap())).err().unwrap();
        assert_eq!(bad.code, ErrorCode::InvalidValue, "{}", bad.message);
    }
}
