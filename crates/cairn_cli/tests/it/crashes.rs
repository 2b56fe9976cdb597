//! The server killed with SIGKILL in the middle of a migration, a fork, a rewind and a purge, on
//! SQLite and on PostgreSQL: after a restart the store opens, passes its integrity checks
//! (`PRAGMA integrity_check` and `foreign_key_check`; amcheck on every PostgreSQL index), and each
//! operation happened or did not, never half. The crash points are the debug build's
//! `CAIRN_CRASH_AT` (`cairn_store::crash`): inside the write transaction after its last statement,
//! and, for a purge, between its commit and the removal of the contents it freed.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cairn_client::http::ApiClient;
use cairn_types::RunPath;
use cairn_types::api::{StepRef, UpsertRunRequest};
use cairn_types::error::ErrorCode;
use cairn_types::wire::Columns;

use crate::{CAIRN, ServerProcess, wait_until};

/// Where the store under test keeps its rows, to check them with the server down.
enum Db {
    Sqlite(PathBuf),
    Postgres(String),
}

/// The tables a fork, a rewind or a purge writes; a crash before its commit leaves their counts
/// as they were.
const TABLES: [&str; 5] = ["runs", "run_keys", "chunks", "run_files", "blob_gc"];

impl Db {
    fn count(&self, sql: &str) -> i64 {
        match self {
            Db::Sqlite(path) => cairn_store::sqlite::testing::query_i64(path, sql),
            Db::Postgres(url) => cairn_store::postgres::testing::query_i64(url, sql),
        }
    }

    fn execute(&self, sql: &str) {
        match self {
            Db::Sqlite(path) => cairn_store::sqlite::testing::execute_batch(path, sql),
            Db::Postgres(url) => cairn_store::postgres::testing::execute_batch(url, sql),
        }
    }

    fn counts(&self) -> Vec<(&'static str, i64)> {
        TABLES.iter().map(|t| (*t, self.count(&format!("SELECT count(*) FROM {t}")))).collect()
    }

    fn has_column(&self, table: &str, column: &str) -> bool {
        let sql = match self {
            Db::Sqlite(_) => format!("SELECT count(*) FROM pragma_table_info('{table}') WHERE name = '{column}'"),
            Db::Postgres(_) => {
                format!("SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = '{table}' AND column_name = '{column}'")
            }
        };
        self.count(&sql) > 0
    }

    /// What the database's own checkers find wrong: nothing, after any crash.
    fn problems(&self) -> Vec<String> {
        let checked = match self {
            Db::Sqlite(path) => cairn_store::sqlite::check_integrity(path),
            Db::Postgres(url) => cairn_store::postgres::check_integrity(url),
        };
        checked.unwrap_or_else(|e| vec![e.message])
    }
}

/// A store to crash: a data directory, and the server's arguments for it.
struct Setup {
    data: tempfile::TempDir,
    args: Vec<String>,
    db: Db,
    _schema: Option<cairn_store::postgres::testing::SchemaGuard>,
}

impl Setup {
    fn sqlite() -> Setup {
        let data = tempfile::tempdir().unwrap();
        let db = Db::Sqlite(data.path().join("cairn.db"));
        Setup { data, args: vec![], db, _schema: None }
    }

    fn postgres() -> Option<Setup> {
        let (url, guard) = cairn_store::postgres::testing::fresh_schema()?;
        let args = vec!["--store".to_owned(), url.clone()];
        Some(Setup { data: tempfile::tempdir().unwrap(), args, db: Db::Postgres(url), _schema: Some(guard) })
    }

    fn args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args: Vec<&str> = vec!["--default-entity", "tester", "--monitor-interval-secs", "0.2"];
        args.extend(self.args.iter().map(String::as_str));
        args.extend(extra);
        args
    }

    fn start(&self) -> ServerProcess {
        ServerProcess::start(self.data.path(), &self.args(&[]))
    }

    /// A server that dies at `point`: `request` reaches it, and fails because the server died.
    fn crash(&self, point: &str, request: impl FnOnce(&ApiClient) -> Result<(), cairn_client::http::CallError>) {
        let mut server = ServerProcess::start_with_env(self.data.path(), &self.args(&[]), &[("CAIRN_CRASH_AT", point)]);
        let outcome = request(&server.api());
        let status = server.child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "the server did not die at {point} (a release build has no crash points): {status}, {outcome:?}");
        assert!(outcome.is_err(), "a request answered by a server that died at {point}");
    }

    fn assert_whole(&self, after: &str) {
        let problems = self.db.problems();
        assert!(problems.is_empty(), "after a crash {after}, the database has problems: {problems:?}");
    }

    /// The contents' files the store keeps on local disk.
    fn blob_files(&self) -> usize {
        fn count(dir: &Path) -> usize {
            let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
            entries.map(|e| e.unwrap().path()).map(|p| if p.is_dir() { count(&p) } else { 1 }).sum()
        }
        count(&self.data.path().join("blobs"))
    }
}

fn run(entity_run: &str) -> RunPath {
    RunPath::new("tester", "crash", entity_run)
}

fn upsert(run_id: &str) -> UpsertRunRequest {
    UpsertRunRequest { entity: Some("tester".into()), project: Some("crash".into()), run_id: run_id.into(), ..Default::default() }
}

/// A run's history, for comparing: steps, and each key's name and values (a step without the
/// key is NaN, equal to itself here).
struct History(Columns);

impl PartialEq for History {
    fn eq(&self, other: &History) -> bool {
        format!("{:?}", self.0) == format!("{:?}", other.0)
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let steps = &self.0.steps;
        write!(f, "{} steps ({:?}..{:?}), keys", steps.len(), steps.first(), steps.last())?;
        for column in &self.0.columns {
            write!(f, " {} ({:?})", column.name, std::mem::discriminant(&column.data))?;
        }
        Ok(())
    }
}

fn history(api: &ApiClient, path: &RunPath) -> History {
    History(api.history_columns(path, None, None, None, 1_000_000, false).unwrap())
}

/// Steps 0..20000 of `loss` (two full chunks and a partial one) and every tenth of `acc`, and two
/// files of their own contents.
fn seed(api: &ApiClient, path: &RunPath) {
    api.upsert_run(&upsert(&path.run_id)).unwrap();
    for batch in 0..20u64 {
        let offset = batch * 1000;
        let rows: Vec<serde_json::Value> = (offset..offset + 1000)
            .map(|s| {
                if s % 10 == 0 {
                    serde_json::json!({"_step": s, "loss": 1.0 / (s + 1) as f64, "acc": s as f64 / 2e4})
                } else {
                    serde_json::json!({"_step": s, "loss": 1.0 / (s + 1) as f64})
                }
            })
            .collect();
        let batch = serde_json::from_value(serde_json::json!({"history": {"offset": offset, "rows": rows}})).unwrap();
        api.ingest_json(path, &batch).unwrap();
    }
    for (name, byte) in [("model.bin", 7u8), ("notes.txt", 9u8)] {
        let content = vec![byte; 100_000];
        api.put_file(path, name, &mut &content[..], content.len() as u64).unwrap();
    }
}

fn crash_and_recover(setup: &Setup) {
    let (src, fork) = (run("src"), run("fork"));
    let server = setup.start();
    seed(&server.api(), &src);
    let src_history = history(&server.api(), &src);
    assert_eq!(src_history.0.steps.len(), 20_000);
    drop(server);

    // A fork dies before its commit: no fork, the source as it was; then it goes through.
    let before = setup.db.counts();
    setup.crash("fork", |api| api.upsert_run(&UpsertRunRequest { fork_from: Some(StepRef { run_id: "src".into(), step: 12_000 }), ..upsert("fork") }).map(drop));
    setup.assert_whole("in a fork");
    assert_eq!(setup.db.counts(), before, "a fork that did not commit left rows");
    let server = setup.start();
    let api = server.api();
    assert_eq!(api.get_run(&fork).unwrap_err().into_coded().code, ErrorCode::RunNotFound);
    assert_eq!(history(&api, &src), src_history);
    api.upsert_run(&UpsertRunRequest { fork_from: Some(StepRef { run_id: "src".into(), step: 12_000 }), ..upsert("fork") }).unwrap();
    let fork_history = history(&api, &fork);
    assert_eq!(fork_history.0.steps, (0..=12_000).collect::<Vec<i64>>());
    drop(server);

    // A rewind dies before its commit: the run keeps all of its history and has no archive.
    let before = setup.db.counts();
    let rewind = || UpsertRunRequest { resume_from: Some(StepRef { run_id: "src".into(), step: 15_000 }), ..upsert("src") };
    setup.crash("rewind", |api| api.upsert_run(&rewind()).map(drop));
    setup.assert_whole("in a rewind");
    assert_eq!(setup.db.counts(), before, "a rewind that did not commit left rows");
    let server = setup.start();
    let api = server.api();
    assert_eq!(api.get_run(&src).unwrap().last_step, Some(19_999));
    assert_eq!(history(&api, &src), src_history);
    assert_eq!(api.get_run(&run("src-rewind-1")).unwrap_err().into_coded().code, ErrorCode::RunNotFound);
    api.upsert_run(&rewind()).unwrap();
    assert_eq!(api.get_run(&src).unwrap().last_step, Some(15_000));
    assert_eq!(history(&api, &run("src-rewind-1")).0.steps, (15_001..20_000).collect::<Vec<i64>>());
    assert_eq!(history(&api, &fork), fork_history, "the fork shares chunks of the rewound run");
    api.delete_run(&src).unwrap();
    drop(server);

    // A purge dies before its commit: everything is still there.
    let (before, blobs) = (setup.db.counts(), setup.blob_files());
    assert!(blobs >= 2, "{blobs} blob files");
    setup.crash("purge", |api| api.purge_run(&src));
    setup.assert_whole("in a purge");
    assert_eq!(setup.db.counts(), before, "a purge that did not commit removed rows");
    assert_eq!(setup.blob_files(), blobs);

    // A purge dies after its commit, before removing the contents it freed: the run and its
    // archive are gone, the contents are listed for collection, and the restarted server
    // removes them.
    setup.crash("purge.collect", |api| api.purge_run(&src));
    setup.assert_whole("after a purge's commit");
    let runs_left = setup.db.count("SELECT count(*) FROM runs");
    assert_eq!(runs_left, before[0].1 - 2, "the run and its rewind archive");
    assert_eq!(setup.db.count("SELECT count(*) FROM blob_gc"), 2, "the purged run's two contents are listed for collection");
    assert_eq!(setup.blob_files(), blobs, "nothing was removed before the crash");
    let server = setup.start();
    wait_until("the restarted server to collect the purged run's contents", Duration::from_secs(60), || setup.db.count("SELECT count(*) FROM blob_gc") == 0);
    assert_eq!(setup.blob_files(), blobs - 2);
    assert_eq!(history(&server.api(), &fork), fork_history, "the fork lost data with the purge of its source");
    drop(server);

    // A migration dies before its commit: the database stays at the version before it, with
    // its data; the next start migrates it.
    make_one_version_older(&setup.db);
    let status = Command::new(CAIRN)
        .arg("server")
        .args(["--port", "0", "--data-dir"])
        .arg(setup.data.path())
        .args(setup.args(&[]))
        .env("CAIRN_CRASH_AT", "migrate")
        .env("CAIRN_LOG", "warn")
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the server did not die in its migration: {status}");
    setup.assert_whole("in a migration");
    assert!(!setup.db.has_column("runs", "preempting_at"), "a migration that did not commit added its column");
    let server = setup.start();
    assert!(setup.db.has_column("runs", "preempting_at"));
    assert_eq!(history(&server.api(), &fork), fork_history);
    drop(server);
    setup.assert_whole("at the end");
}

/// Undoes the last migration (both stores' last one adds `runs.preempting_at`).
fn make_one_version_older(db: &Db) {
    match db {
        Db::Sqlite(_) => {
            let version = db.count("PRAGMA user_version");
            db.execute(&format!("ALTER TABLE runs DROP COLUMN preempting_at; PRAGMA user_version = {}", version - 1));
        }
        Db::Postgres(_) => {
            let version = db.count("SELECT max(version) FROM cairn_schema");
            db.execute(&format!("ALTER TABLE runs DROP COLUMN preempting_at; DELETE FROM cairn_schema WHERE version = {version}"));
        }
    }
}

#[test]
fn sigkill_mid_migration_fork_rewind_and_purge_leaves_sqlite_whole_and_each_operation_all_or_nothing() {
    crash_and_recover(&Setup::sqlite());
}

#[test]
fn sigkill_mid_migration_fork_rewind_and_purge_leaves_postgres_whole_and_each_operation_all_or_nothing() {
    let Some(setup) = Setup::postgres() else { return };
    crash_and_recover(&setup);
}
