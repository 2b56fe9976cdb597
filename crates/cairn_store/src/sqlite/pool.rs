//! SQLite connections: one writer thread that commits jobs in batched transactions (group commit),
//! and a pool of readers. The database runs in WAL mode, so readers never block the writer.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use cairn_types::error::{CodedError, ErrorCode};
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OpenFlags};

use crate::Result;

/// Converts database errors into coded ones.
pub trait DbResult<T> {
    fn db(self) -> Result<T>;
}

impl<T> DbResult<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T> {
        self.map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => cairn_types::error::storage_full("the database"),
            _ => CodedError::new(ErrorCode::Internal, format!("database error: {e}")),
        })
    }
}

/// The page cache of the writer's connection, and of each reader's.
const WRITER_CACHE_KIB: u32 = 8 << 10;
const READER_CACHE_KIB: u32 = 2 << 10;

/// Jobs committed together in one transaction, at most.
const MAX_JOBS_PER_COMMIT: usize = 256;

type Completion = Box<dyn FnOnce(Result<()>) + Send>;
/// A job runs in the writer's transaction, or is told why there is none (and must not write).
type Job = Box<dyn FnOnce(std::result::Result<&Connection, CodedError>) -> Completion + Send>;

pub fn open_connection(path: &Path, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI
    };
    let conn = Connection::open_with_flags(path, flags).db()?;
    conn.busy_timeout(std::time::Duration::from_secs(30)).db()?;
    // The page cache keeps every page a connection touched, up to its size: it grows with the
    // database until then (the soak saw the writer's add 1.8 MiB a minute). Reads of the file
    // go through mmap and need little of it; the writer keeps the pages it changes, and the
    // tails of the series it appends to are what it reads again. 8 MiB for the writer and
    // 2 MiB for each of the 4 readers bound SQLite's caches to 16 MiB in all.
    let cache_kib = if read_only { READER_CACHE_KIB } else { WRITER_CACHE_KIB };
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -{cache_kib};
         PRAGMA temp_store = MEMORY;
         PRAGMA mmap_size = 4294967296;"
    ))
    .db()?;
    if !read_only {
        // WAL: readers do not block the writer. NORMAL: a commit survives any crash of the server
        // process; a power loss may undo the last commits, which the clients' run directories
        // can upload again (ingest by offset keeps that exact).
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;").db()?;
    }
    register_functions(&conn)?;
    // Every statement of the rules stays prepared (the default keeps 16).
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

fn register_functions(conn: &Connection) -> Result<()> {
    conn.create_scalar_function("regexp", 2, FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC, |ctx| {
        let regex: Arc<regex::Regex> = ctx.get_or_create_aux(0, |pattern| -> Result<regex::Regex, Box<dyn std::error::Error + Send + Sync>> {
            Ok(regex::RegexBuilder::new(pattern.as_str()?).size_limit(1 << 20).build()?)
        })?;
        let text = match ctx.get_raw(1) {
            rusqlite::types::ValueRef::Text(t) => std::str::from_utf8(t).unwrap_or(""),
            _ => return Ok(false),
        };
        Ok(regex.is_match(text))
    })
    .db()
}

/// The writer thread.
pub struct Writer {
    sender: Mutex<Option<SyncSender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    pub fn start(conn: Connection) -> Writer {
        let (sender, receiver) = sync_channel::<Job>(1024);
        let thread = std::thread::Builder::new().name("cairn-sqlite-writer".into()).spawn(move || writer_loop(conn, receiver)).expect("spawn the writer thread");
        Writer { sender: Mutex::new(Some(sender)), thread: Mutex::new(Some(thread)) }
    }

    /// Runs `op` in the writer's next transaction and waits until that transaction commits. If
    /// `op` fails, only its own changes are rolled back.
    pub fn write<R: Send + 'static>(&self, op: impl FnOnce(&Connection) -> Result<R> + Send + 'static) -> Result<R> {
        let (reply, wait) = sync_channel::<Result<R>>(1);
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                Ok(conn) => in_savepoint(conn, op),
                Err(e) => Err(e),
            };
            Box::new(move |committed: Result<()>| {
                let _ = reply.send(committed.and(result));
            })
        });
        let sender = self.sender.lock().expect("writer lock").clone();
        let Some(sender) = sender else {
            return Err(CodedError::new(ErrorCode::ShuttingDown, "the store is closed"));
        };
        sender.send(job).map_err(|_| CodedError::new(ErrorCode::ShuttingDown, "the store is closed"))?;
        wait.recv().map_err(|_| CodedError::new(ErrorCode::Internal, "the writer thread stopped"))?
    }

    /// Commits what is queued and stops the thread.
    pub fn close(&self) {
        self.sender.lock().expect("writer lock").take();
        if let Some(thread) = self.thread.lock().expect("writer lock").take() {
            let _ = thread.join();
        }
    }
}

fn in_savepoint<R>(conn: &Connection, op: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
    conn.execute_batch("SAVEPOINT job").db()?;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op(conn)))
        .unwrap_or_else(|_| Err(CodedError::new(ErrorCode::Internal, "internal error while writing (a bug); nothing was stored")));
    match &result {
        Ok(_) => conn.execute_batch("RELEASE job").db()?,
        Err(_) => conn.execute_batch("ROLLBACK TO job; RELEASE job").db()?,
    }
    result
}

fn writer_loop(conn: Connection, receiver: Receiver<Job>) {
    while let Ok(first) = receiver.recv() {
        let mut completions: Vec<Completion> = Vec::new();
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE").db() {
            // Without a transaction the job would commit on its own: it is answered, not run.
            first(Err(e.clone()))(Err(e));
            continue;
        }
        completions.push(first(Ok(&conn)));
        while completions.len() < MAX_JOBS_PER_COMMIT {
            match receiver.try_recv() {
                Ok(job) => completions.push(job(Ok(&conn))),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let committed = conn.execute_batch("COMMIT").db();
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for completion in completions {
            completion(committed.clone());
        }
    }
    let _ = conn.execute_batch("PRAGMA optimize; PRAGMA wal_checkpoint(TRUNCATE);");
}

/// A pool of read-only connections.
pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    available: Condvar,
    opened: Mutex<usize>,
    max: usize,
}

impl Readers {
    pub fn new(path: PathBuf, max: usize) -> Readers {
        Readers { path, idle: Mutex::new(Vec::new()), available: Condvar::new(), opened: Mutex::new(0), max }
    }

    /// Runs `op` on a reader, inside a read transaction so that it sees one snapshot.
    pub fn read<R>(&self, op: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
        let mut conn = self.take()?;
        let result = (|| {
            let tx = conn.transaction().db()?;
            let out = op(&tx)?;
            tx.finish().db()?;
            Ok(out)
        })();
        self.give_back(conn);
        result
    }

    fn take(&self) -> Result<Connection> {
        let mut idle = self.idle.lock().expect("pool lock");
        loop {
            if let Some(conn) = idle.pop() {
                return Ok(conn);
            }
            {
                let mut opened = self.opened.lock().expect("pool lock");
                if *opened < self.max {
                    *opened += 1;
                    drop(opened);
                    drop(idle);
                    return open_connection(&self.path, true).inspect_err(|_| {
                        *self.opened.lock().expect("pool lock") -= 1;
                    });
                }
            }
            idle = self.available.wait(idle).expect("pool lock");
        }
    }

    fn give_back(&self, conn: Connection) {
        self.idle.lock().expect("pool lock").push(conn);
        self.available.notify_one();
    }
}
