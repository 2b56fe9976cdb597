//! The embedded store: one SQLite file (`cairn.db`, WAL mode) plus a data directory for blobs.

mod branch;
mod filter;
mod pool;
mod series;

use std::path::{Path, PathBuf};

use cairn_types::api::{
    AlertInfo, AlertLevel, DEFAULT_PROJECT, EntityInfo, FileInfo, FinishRequest, HeartbeatReply, ProjectInfo, RUNS_DEFAULT_LIMIT,
    RUNS_MAX_LIMIT, ResumeMode, RunInfo, RunPage, RunPatch, RunSearch, RunState, StreamOffsets, UpsertRunRequest,
};
use cairn_types::error::{CodedError, ErrorCode};
use cairn_types::filter::{Filter, SortKey};
use cairn_types::ids::{validate_name, validate_run_id};
use cairn_types::value::{Map, Value};
use cairn_types::{RunPath, Timestamp, map};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::blob::LocalBlobStore;
use std::sync::Arc;
use crate::ingest::{self, RunDoc};
use crate::{BlobStore, MetaStore, Result, Store, StoreConfig};
use pool::{DbResult, Readers, Writer};

pub use pool::open_connection;

const SCHEMA_VERSION: i64 = 3;

pub struct SqliteStore {
    writer: Writer,
    readers: Readers,
    blobs: Arc<dyn BlobStore>,
    config: StoreConfig,
    db_path: PathBuf,
}

impl SqliteStore {
    /// Opens (or creates) the store in `data_dir`: `cairn.db` and `blobs/`.
    pub fn open(data_dir: &Path, config: StoreConfig) -> Result<SqliteStore> {
        let blobs = Arc::new(LocalBlobStore::open(&data_dir.join("blobs"))?);
        SqliteStore::open_with_blobs(data_dir, config, blobs)
    }

    /// Opens (or creates) `cairn.db` in `data_dir`, with file contents in `blobs`.
    pub fn open_with_blobs(data_dir: &Path, config: StoreConfig, blobs: Arc<dyn BlobStore>) -> Result<SqliteStore> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            CodedError::new(ErrorCode::Internal, format!("cannot create the data directory {}: {e}", data_dir.display()))
        })?;
        validate_name("default entity", &config.default_entity)?;
        let db_path = data_dir.join("cairn.db");
        let conn = open_connection(&db_path, false)?;
        migrate(&conn)?;
        Ok(SqliteStore {
            writer: Writer::start(conn),
            readers: Readers::new(db_path.clone(), 4),
            blobs,
            config,
            db_path,
        })
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    pub(crate) fn read<R>(&self, op: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
        self.readers.read(op)
    }

    pub(crate) fn write<R: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.writer.write(op)
    }
}

fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).db()?;
    if version > SCHEMA_VERSION {
        return Err(CodedError::new(
            ErrorCode::Internal,
            format!("the database has schema version {version}, newer than this cairn ({SCHEMA_VERSION}); upgrade cairn"),
        ));
    }
    conn.execute_batch(include_str!("schema.sql")).db()?;
    // Version 2: forks share chunks (`chunks.shared_key`), rewinds archive into hidden runs
    // (`runs.archive_of`). The tables of version 1 get the columns.
    let has_column = |table: &str, column: &str| -> Result<bool> {
        conn.prepare(&format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"))
            .db()?
            .exists([column])
            .db()
    };
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
    conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}")).db()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Rows and documents
// ---------------------------------------------------------------------------------------------

pub(crate) fn to_json_text(map: &Map) -> String {
    serde_json::to_string(map).expect("maps serialize")
}

fn parse_map(text: &str, column: &str) -> Result<Map> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Map(map)) => Ok(map),
        _ => Err(CodedError::new(ErrorCode::Internal, format!("stored {column} is not a JSON object"))),
    }
}

fn parse_tags(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|_| CodedError::new(ErrorCode::Internal, "stored tags are not a JSON list"))
}

fn ts(micros: Option<i64>) -> Option<Timestamp> {
    micros.map(Timestamp)
}

pub(crate) const RUN_SELECT: &str = "SELECT e.name, p.name, r.run_id, r.name, r.seq, r.state, r.config, r.summary,
        r.tags, r.notes, r.grp, r.job_type, r.metadata, r.created_at, r.started_at, r.heartbeat_at,
        r.finished_at, r.exit_code, r.last_step, r.stop_requested, r.off_history, r.off_summary,
        r.off_config, r.off_system, r.off_console, r.off_events, r.active_us, r.session_at
    FROM runs r
    JOIN projects p ON p.project_pk = r.project_pk
    JOIN entities e ON e.entity_pk = p.entity_pk";

pub(crate) fn run_from_row(row: &Row<'_>) -> Result<RunInfo> {
    let get_err = |e: rusqlite::Error| CodedError::new(ErrorCode::Internal, format!("database error: {e}"));
    let state_text: String = row.get(5).map_err(get_err)?;
    let started_at: i64 = row.get(14).map_err(get_err)?;
    let heartbeat_at: Option<i64> = row.get(15).map_err(get_err)?;
    let finished_at: Option<i64> = row.get(16).map_err(get_err)?;
    let end = finished_at.or(heartbeat_at).unwrap_or(started_at);
    let active_us: i64 = row.get(26).map_err(get_err)?;
    let session_at: i64 = row.get::<_, Option<i64>>(27).map_err(get_err)?.unwrap_or(started_at);
    let offset = |i: usize| -> Result<u64> { Ok(row.get::<_, i64>(i).map_err(get_err)? as u64) };
    Ok(RunInfo {
        entity: row.get(0).map_err(get_err)?,
        project: row.get(1).map_err(get_err)?,
        run_id: row.get(2).map_err(get_err)?,
        name: row.get(3).map_err(get_err)?,
        seq: row.get::<_, i64>(4).map_err(get_err)? as u64,
        state: RunState::parse(&state_text)
            .ok_or_else(|| CodedError::new(ErrorCode::Internal, format!("stored state {state_text:?} is unknown")))?,
        config: parse_map(&row.get::<_, String>(6).map_err(get_err)?, "config")?,
        summary: parse_map(&row.get::<_, String>(7).map_err(get_err)?, "summary")?,
        tags: parse_tags(&row.get::<_, String>(8).map_err(get_err)?)?,
        notes: row.get(9).map_err(get_err)?,
        group: row.get(10).map_err(get_err)?,
        job_type: row.get(11).map_err(get_err)?,
        metadata: parse_map(&row.get::<_, String>(12).map_err(get_err)?, "metadata")?,
        created_at: Timestamp(row.get(13).map_err(get_err)?),
        started_at: Timestamp(started_at),
        heartbeat_at: ts(heartbeat_at),
        finished_at: ts(finished_at),
        exit_code: row.get(17).map_err(get_err)?,
        runtime_secs: ((end - started_at).max(0)) as f64 / 1e6,
        duration_secs: (active_us + (end - session_at).max(0)) as f64 / 1e6,
        last_step: row.get(18).map_err(get_err)?,
        stop_requested: row.get::<_, i64>(19).map_err(get_err)? != 0,
        offsets: StreamOffsets {
            history: offset(20)?,
            summary: offset(21)?,
            config: offset(22)?,
            system: offset(23)?,
            console: offset(24)?,
            events: offset(25)?,
        },
    })
}

fn not_found(path: &RunPath) -> CodedError {
    CodedError::new(ErrorCode::RunNotFound, format!("run {path} not found"))
}

/// The run's primary key, for a run that is not deleted.
pub(crate) fn run_pk(conn: &Connection, path: &RunPath) -> Result<i64> {
    find_run_pk(conn, path, false)
}

/// The run's primary key; with `deleted`, a deleted run's too.
fn find_run_pk(conn: &Connection, path: &RunPath, deleted: bool) -> Result<i64> {
    conn.prepare_cached(
        "SELECT r.run_pk FROM runs r
         JOIN projects p ON p.project_pk = r.project_pk
         JOIN entities e ON e.entity_pk = p.entity_pk
         WHERE e.name = ?1 AND p.name = ?2 AND r.run_id = ?3 AND (?4 OR r.deleted_at IS NULL)",
    )
    .db()?
    .query_row(params![path.entity, path.project, path.run_id, deleted], |r| r.get(0))
    .optional()
    .db()?
    .ok_or_else(|| not_found(path))
}

/// The first column of every row a query returns.
fn column<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<T>> {
    conn.prepare_cached(sql).db()?.query_map(params, |r| r.get(0)).db()?.collect::<rusqlite::Result<_>>().db()
}

pub(crate) fn load_run(conn: &Connection, run_pk: i64) -> Result<RunInfo> {
    let mut stmt = conn.prepare_cached(&format!("{RUN_SELECT} WHERE r.run_pk = ?1")).db()?;
    let mut rows = stmt.query([run_pk]).db()?;
    let row = rows.next().db()?.ok_or_else(|| CodedError::new(ErrorCode::RunNotFound, "run not found"))?;
    run_from_row(row)
}

const ALERT_SELECT: &str = "SELECT alert_pk, title, text, level, time, delivery, attempts, last_error, delivered_to FROM alerts";

fn alert_from_row(r: &Row) -> rusqlite::Result<AlertInfo> {
    alert_at(r, 0)
}

/// An alert from the row's columns `at..at + 9` (as in `ALERT_SELECT`).
fn alert_at(r: &Row, at: usize) -> rusqlite::Result<AlertInfo> {
    let level: String = r.get(at + 3)?;
    Ok(AlertInfo {
        id: r.get(at)?,
        title: r.get(at + 1)?,
        text: r.get(at + 2)?,
        level: AlertLevel::parse(&level).unwrap_or(AlertLevel::Info),
        time: Timestamp(r.get(at + 4)?),
        delivery: r.get(at + 5)?,
        attempts: r.get::<_, i64>(at + 6)? as u32,
        last_error: r.get(at + 7)?,
        delivered_to: r.get::<_, String>(at + 8)?.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect(),
    })
}

pub(crate) fn load_doc(conn: &Connection, run_pk: i64) -> Result<RunDoc> {
    let info = load_run(conn, run_pk)?;
    let metric_defs: String =
        conn.query_row("SELECT metric_defs FROM runs WHERE run_pk = ?1", [run_pk], |r| r.get(0)).db()?;
    Ok(RunDoc {
        state: info.state,
        exit_code: info.exit_code,
        started_at: info.started_at,
        heartbeat_at: info.heartbeat_at,
        finished_at: info.finished_at,
        name: info.name,
        notes: info.notes,
        tags: info.tags,
        group: info.group,
        job_type: info.job_type,
        config: info.config,
        summary: info.summary,
        metadata: info.metadata,
        metric_defs: parse_map(&metric_defs, "metric_defs")?,
        last_step: info.last_step,
        offsets: info.offsets,
        stop_requested: info.stop_requested,
        new_alerts: Vec::new(),
    })
}

pub(crate) fn save_doc(conn: &Connection, run_pk: i64, doc: &RunDoc) -> Result<()> {
    conn.prepare_cached(
        "UPDATE runs SET state = ?2, exit_code = ?3, started_at = ?4, heartbeat_at = ?5, finished_at = ?6,
            name = ?7, notes = ?8, tags = ?9, grp = ?10, job_type = ?11, config = ?12, summary = ?13,
            metadata = ?14, metric_defs = ?15, last_step = ?16, stop_requested = ?17,
            off_history = ?18, off_summary = ?19, off_config = ?20, off_system = ?21, off_console = ?22,
            off_events = ?23
         WHERE run_pk = ?1",
    )
    .db()?
    .execute(params![
        run_pk,
        doc.state.as_str(),
        doc.exit_code,
        doc.started_at.micros(),
        doc.heartbeat_at.map(Timestamp::micros),
        doc.finished_at.map(Timestamp::micros),
        doc.name,
        doc.notes,
        serde_json::to_string(&doc.tags).expect("tags serialize"),
        doc.group,
        doc.job_type,
        to_json_text(&doc.config),
        to_json_text(&doc.summary),
        to_json_text(&doc.metadata),
        to_json_text(&doc.metric_defs),
        doc.last_step,
        doc.stop_requested as i64,
        doc.offsets.history as i64,
        doc.offsets.summary as i64,
        doc.offsets.config as i64,
        doc.offsets.system as i64,
        doc.offsets.console as i64,
        doc.offsets.events as i64,
    ])
    .db()?;
    for alert in &doc.new_alerts {
        // The same title within the alert's wait duration is not sent again (a replay of the
        // same event, from `cairn sync` say, is the same alert: stored once).
        let recent: bool = conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM alerts WHERE run_pk = ?1 AND title = ?2 AND time > ?3 AND time <= ?4)")
            .db()?
            .query_row(params![run_pk, alert.title, alert.time.micros().saturating_sub(alert.wait_micros.max(1)), alert.time.micros()], |r| r.get(0))
            .db()?;
        if recent {
            continue;
        }
        conn.prepare_cached(
            "INSERT INTO alerts (run_pk, time, title, text, level, delivery, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)",
        )
        .db()?
        .execute(params![run_pk, alert.time.micros(), alert.title, alert.text, alert.level.as_str(), alert.received.micros()])
        .db()?;
    }
    Ok(())
}

pub(crate) fn touch_project(conn: &Connection, run_pk: i64, now: Timestamp) -> Result<()> {
    conn.prepare_cached(
        "UPDATE projects SET last_activity_at = max(coalesce(last_activity_at, 0), ?2)
         WHERE project_pk = (SELECT project_pk FROM runs WHERE run_pk = ?1)",
    )
    .db()?
    .execute(params![run_pk, now.micros()])
    .db()?;
    Ok(())
}

/// Loads a run's document, changes it, and saves it; returns the run as it is afterwards.
fn modify_run(
    conn: &Connection,
    path: &RunPath,
    change: impl FnOnce(&mut RunDoc) -> Result<()>,
) -> Result<RunInfo> {
    let pk = run_pk(conn, path)?;
    let mut doc = load_doc(conn, pk)?;
    change(&mut doc)?;
    save_doc(conn, pk, &doc)?;
    load_run(conn, pk)
}

fn config_map(value: Option<Value>, what: &str) -> Result<Option<Map>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Map(map)) => Ok(Some(map)),
        Some(other) => Err(CodedError::new(
            if what == "config" { ErrorCode::InvalidConfig } else { ErrorCode::InvalidValue },
            format!("{what} must be a JSON object, got a {}: {}", other.type_name(), truncate(&other.to_json().to_string())),
        )),
    }
}

fn truncate(text: &str) -> String {
    if text.chars().count() > 80 { format!("{}…", text.chars().take(80).collect::<String>()) } else { text.to_owned() }
}

fn ensure_project(conn: &Connection, entity: &str, project: &str, now: Timestamp) -> Result<i64> {
    conn.prepare_cached("INSERT INTO entities (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING")
        .db()?
        .execute(params![entity, now.micros()])
        .db()?;
    conn.prepare_cached(
        "INSERT INTO projects (entity_pk, name, created_at, last_activity_at)
         SELECT entity_pk, ?2, ?3, ?3 FROM entities WHERE name = ?1
         ON CONFLICT (entity_pk, name) DO NOTHING",
    )
    .db()?
    .execute(params![entity, project, now.micros()])
    .db()?;
    conn.prepare_cached(
        "SELECT p.project_pk FROM projects p JOIN entities e ON e.entity_pk = p.entity_pk
         WHERE e.name = ?1 AND p.name = ?2",
    )
    .db()?
    .query_row(params![entity, project], |r| r.get(0))
    .db()
}

fn upsert_run(conn: &Connection, request: UpsertRunRequest, default_entity: &str, now: Timestamp) -> Result<RunInfo> {
    let entity = request.entity.clone().unwrap_or_else(|| default_entity.to_owned());
    let project = request.project.clone().unwrap_or_else(|| DEFAULT_PROJECT.to_owned());
    validate_name("entity", &entity)?;
    validate_name("project", &project)?;
    validate_run_id(&request.run_id)?;
    let config = config_map(request.config, "config")?;
    let metadata = config_map(request.metadata, "metadata")?;
    if let Some(tags) = &request.tags {
        ingest::validate_tags(tags)?;
    }
    let path = RunPath::new(&entity, &project, &request.run_id);
    let project_pk = ensure_project(conn, &entity, &project, now)?;
    let existing: Option<(i64, Option<i64>)> = conn
        .prepare_cached("SELECT run_pk, deleted_at FROM runs WHERE project_pk = ?1 AND run_id = ?2")
        .db()?
        .query_row(params![project_pk, request.run_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .db()?;
    let patch = RunPatch {
        name: request.name.clone(),
        notes: request.notes.clone(),
        tags: request.tags.clone(),
        group: request.group.clone(),
        job_type: request.job_type.clone(),
    };
    match existing {
        Some((_, Some(_))) => Err(CodedError::new(
            ErrorCode::RunDeleted,
            format!("run {path} was deleted; its id cannot be used again until it is purged"),
        )),
        Some(_) if request.resume == ResumeMode::Never => Err(CodedError::new(
            ErrorCode::RunAlreadyExists,
            format!("run {path} already exists; resume it with resume=\"allow\" or \"must\", or choose another id"),
        )),
        Some((pk, None)) if request.resume == ResumeMode::Keep => load_run(conn, pk),
        Some((pk, None)) => {
            let mut doc = load_doc(conn, pk)?;
            if let Some(at) = &request.resume_from {
                if at.run_id != request.run_id {
                    return Err(CodedError::new(
                        ErrorCode::InvalidValue,
                        format!("resume_from names run {:?}, but the run resumed is {:?}; a rewind keeps the run's id", at.run_id, request.run_id),
                    ));
                }
                rewind_run(conn, project_pk, pk, &request.run_id, &mut doc, at.step, now)?;
            }
            ingest::apply_patch(&mut doc, patch)?;
            // W&B's rule: resuming adds new config keys; changing a value needs allow_val_change.
            if let Some(config) = config {
                for (k, v) in config {
                    if request.allow_val_change || !doc.config.contains_key(&k) {
                        doc.config.insert(k, v);
                    }
                }
            }
            if let Some(metadata) = metadata {
                for (k, v) in metadata {
                    doc.metadata.insert(k, v);
                }
            }
            // A new session: the one before it (to its finish, or to its last sign of life)
            // joins the active time, and the pause until now does not.
            conn.prepare_cached(
                "UPDATE runs SET active_us = active_us + max(0, coalesce(finished_at, heartbeat_at, session_at, started_at)
                    - coalesce(session_at, started_at)), session_at = ?2 WHERE run_pk = ?1",
            )
            .db()?
            .execute(params![pk, now.micros()])
            .db()?;
            doc.state = RunState::Running;
            doc.exit_code = None;
            doc.finished_at = None;
            doc.heartbeat_at = Some(now);
            doc.stop_requested = false;
            save_doc(conn, pk, &doc)?;
            touch_project(conn, pk, now)?;
            load_run(conn, pk)
        }
        None if request.resume == ResumeMode::Must || request.resume_from.is_some() => Err(CodedError::new(
            ErrorCode::RunNotFound,
            format!("run {path} does not exist, so it cannot be resumed or rewound"),
        )),
        None => {
            let seq: i64 = conn
                .prepare_cached("UPDATE projects SET run_seq = run_seq + 1 WHERE project_pk = ?1 RETURNING run_seq")
                .db()?
                .query_row([project_pk], |r| r.get(0))
                .db()?;
            let name = match request.name.filter(|n| !n.trim().is_empty()) {
                Some(name) => name,
                None => cairn_types::names::display_name(seq as u64),
            };
            let started_at = request.started_at.unwrap_or(now);
            conn.prepare_cached(
                "INSERT INTO runs (project_pk, run_id, seq, name, state, created_at, started_at, heartbeat_at)
                 VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?5)",
            )
            .db()?
            .execute(params![project_pk, request.run_id, seq, name, now.micros(), started_at.micros()])
            .db()?;
            let pk = conn.last_insert_rowid();
            let mut doc = load_doc(conn, pk)?;
            ingest::apply_patch(&mut doc, RunPatch { name: None, ..patch })?;
            doc.config = config.unwrap_or_default();
            doc.metadata = metadata.unwrap_or_default();
            if let Some(from) = &request.fork_from {
                let src_pk: i64 = conn
                    .prepare_cached("SELECT run_pk FROM runs WHERE project_pk = ?1 AND run_id = ?2 AND deleted_at IS NULL")
                    .db()?
                    .query_row(params![project_pk, from.run_id], |r| r.get(0))
                    .optional()
                    .db()?
                    .ok_or_else(|| {
                        CodedError::new(ErrorCode::RunNotFound, format!("run {:?} to fork from is not in {entity}/{project}", from.run_id))
                    })?;
                let src = load_doc(conn, src_pk)?;
                // The fork starts from its source's config; what init gives goes on top.
                let mut merged = src.config.clone();
                merged.extend(std::mem::take(&mut doc.config));
                doc.config = merged;
                branch::fork(conn, src_pk, &src, &from.run_id, pk, &mut doc, from.step)?;
            }
            save_doc(conn, pk, &doc)?;
            load_run(conn, pk)
        }
    }
}

/// Rewinds run `pk` to `step`: what it logged after the step moves to a new hidden run,
/// `<run_id>-rewind-<n>`, reachable from the run's metadata (`rewinds`).
fn rewind_run(conn: &Connection, project_pk: i64, pk: i64, run_id: &str, doc: &mut RunDoc, step: i64, now: Timestamp) -> Result<()> {
    let taken = |id: &str| -> Result<bool> {
        conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM runs WHERE project_pk = ?1 AND run_id = ?2)")
            .db()?
            .query_row(params![project_pk, id], |r| r.get(0))
            .db()
    };
    let mut n = 1;
    let archive_id = loop {
        let base: String = run_id.chars().take(100).collect();
        let id = format!("{base}-rewind-{n}");
        if !taken(&id)? {
            break id;
        }
        n += 1;
    };
    let seq: i64 = conn
        .prepare_cached("UPDATE projects SET run_seq = run_seq + 1 WHERE project_pk = ?1 RETURNING run_seq")
        .db()?
        .query_row([project_pk], |r| r.get(0))
        .db()?;
    conn.prepare_cached(
        "INSERT INTO runs (project_pk, run_id, seq, name, state, created_at, started_at, finished_at, archive_of)
         VALUES (?1, ?2, ?3, ?4, 'finished', ?5, ?6, ?5, ?7)",
    )
    .db()?
    .execute(params![project_pk, archive_id, seq, format!("{} (after step {step}, rewound)", doc.name), now.micros(), doc.started_at.micros(), pk])
    .db()?;
    let archive_pk = conn.last_insert_rowid();
    let mut archive = load_doc(conn, archive_pk)?;
    archive.config = doc.config.clone();
    archive.tags = doc.tags.clone();
    archive.group = doc.group.clone();
    archive.job_type = doc.job_type.clone();
    archive.metadata = map! {"archive_of" => run_id, "rewound_at_step" => step};
    branch::rewind(conn, pk, run_id, doc, archive_pk, &archive_id, &mut archive, step, now)?;
    save_doc(conn, archive_pk, &archive)?;
    Ok(())
}

fn clamp_limit(limit: Option<usize>, default: usize, max: usize) -> usize {
    limit.unwrap_or(default).clamp(1, max)
}

impl MetaStore for SqliteStore {
    fn list_entities(&self) -> Result<Vec<EntityInfo>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT e.name, e.created_at,
                        (SELECT count(*) FROM projects p WHERE p.entity_pk = e.entity_pk),
                        (SELECT count(*) FROM runs r JOIN projects p ON p.project_pk = r.project_pk
                            WHERE p.entity_pk = e.entity_pk AND r.deleted_at IS NULL AND r.archive_of IS NULL),
                        (SELECT max(p.last_activity_at) FROM projects p WHERE p.entity_pk = e.entity_pk)
                     FROM entities e ORDER BY e.name",
                )
                .db()?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(EntityInfo {
                        name: r.get(0)?,
                        created_at: Timestamp(r.get(1)?),
                        project_count: r.get::<_, i64>(2)? as u64,
                        run_count: r.get::<_, i64>(3)? as u64,
                        last_activity_at: r.get::<_, Option<i64>>(4)?.map(Timestamp),
                    })
                })
                .db()?;
            rows.collect::<rusqlite::Result<Vec<_>>>().db()
        })
    }

    fn get_entity(&self, entity: &str) -> Result<EntityInfo> {
        validate_name("entity", entity)?;
        self.list_entities()?
            .into_iter()
            .find(|e| e.name == entity)
            .ok_or_else(|| CodedError::new(ErrorCode::EntityNotFound, format!("entity {entity:?} not found")))
    }

    fn list_projects(&self, entity: &str) -> Result<Vec<ProjectInfo>> {
        validate_name("entity", entity)?;
        let entity = entity.to_owned();
        self.read(move |conn| {
            let exists: Option<i64> = conn
                .query_row("SELECT entity_pk FROM entities WHERE name = ?1", [&entity], |r| r.get(0))
                .optional()
                .db()?;
            let Some(entity_pk) = exists else {
                return Err(CodedError::new(ErrorCode::EntityNotFound, format!("entity {entity:?} not found")));
            };
            let mut stmt = conn
                .prepare_cached(
                    "SELECT p.name, p.created_at, p.last_activity_at,
                        (SELECT count(*) FROM runs r WHERE r.project_pk = p.project_pk AND r.deleted_at IS NULL AND r.archive_of IS NULL)
                     FROM projects p WHERE p.entity_pk = ?1
                     ORDER BY coalesce(p.last_activity_at, p.created_at) DESC, p.name",
                )
                .db()?;
            let rows = stmt
                .query_map([entity_pk], |r| {
                    Ok(ProjectInfo {
                        entity: entity.clone(),
                        name: r.get(0)?,
                        created_at: Timestamp(r.get(1)?),
                        last_activity_at: r.get::<_, Option<i64>>(2)?.map(Timestamp),
                        run_count: r.get::<_, i64>(3)? as u64,
                    })
                })
                .db()?;
            rows.collect::<rusqlite::Result<Vec<_>>>().db()
        })
    }

    fn get_project(&self, entity: &str, project: &str) -> Result<ProjectInfo> {
        validate_name("project", project)?;
        self.list_projects(entity)?.into_iter().find(|p| p.name == project).ok_or_else(|| {
            CodedError::new(ErrorCode::ProjectNotFound, format!("project {entity}/{project} not found"))
        })
    }

    fn upsert_run(&self, request: UpsertRunRequest, now: Timestamp) -> Result<RunInfo> {
        let default_entity = self.config.default_entity.clone();
        self.write(move |conn| upsert_run(conn, request, &default_entity, now))
    }

    fn get_run(&self, path: &RunPath) -> Result<RunInfo> {
        path.validate()?;
        self.read(|conn| load_run(conn, run_pk(conn, path)?))
    }

    fn update_run(&self, path: &RunPath, patch: RunPatch) -> Result<RunInfo> {
        path.validate()?;
        let path = path.clone();
        self.write(move |conn| modify_run(conn, &path, |doc| ingest::apply_patch(doc, patch)))
    }

    fn delete_run(&self, path: &RunPath) -> Result<()> {
        path.validate()?;
        let path = path.clone();
        self.write(move |conn| {
            let pk = run_pk(conn, &path)?;
            conn.execute("UPDATE runs SET deleted_at = ?2 WHERE run_pk = ?1", params![pk, Timestamp::now().micros()])
                .db()?;
            Ok(())
        })
    }

    fn purge_run(&self, path: &RunPath) -> Result<Vec<String>> {
        path.validate()?;
        let path = path.clone();
        self.write(move |conn| {
            let pk = find_run_pk(conn, &path, true)?;
            // Forks that share the chunks of the run or of its rewind archives get their own
            // copies; then the archives go with the run.
            let archives: Vec<i64> = column(conn, "SELECT run_pk FROM runs WHERE archive_of = ?1", [pk])?;
            let runs: Vec<i64> = archives.into_iter().chain(std::iter::once(pk)).collect();
            for &run in &runs {
                for key in column::<i64>(conn, "SELECT key_pk FROM run_keys WHERE run_pk = ?1", [run])? {
                    branch::unshare(conn, key, None)?;
                }
            }
            let shas: Vec<String> = column(conn, "SELECT DISTINCT sha256 FROM run_files WHERE run_pk = ?1", [pk])?;
            for run in runs {
                for sql in [
                    "DELETE FROM chunks WHERE key_pk IN (SELECT key_pk FROM run_keys WHERE run_pk = ?1)",
                    "DELETE FROM run_keys WHERE run_pk = ?1",
                    "DELETE FROM console_lines WHERE run_pk = ?1",
                    "DELETE FROM run_files WHERE run_pk = ?1",
                    "DELETE FROM alerts WHERE run_pk = ?1",
                    "DELETE FROM runs WHERE run_pk = ?1",
                ] {
                    conn.prepare_cached(sql).db()?.execute([run]).db()?;
                }
            }
            let mut orphans = Vec::new();
            for sha in shas {
                let named: bool = conn
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM run_files WHERE sha256 = ?1)")
                    .db()?
                    .query_row([&sha], |r| r.get(0))
                    .db()?;
                if !named {
                    orphans.push(sha);
                }
            }
            Ok(orphans)
        })
    }

    fn move_runs(&self, runs: &[RunPath], entity: &str, project: &str, now: Timestamp) -> Result<Vec<RunPath>> {
        validate_name("entity", entity)?;
        validate_name("project", project)?;
        if runs.is_empty() {
            return Err(CodedError::new(ErrorCode::InvalidValue, "no runs to move"));
        }
        for path in runs {
            path.validate()?;
        }
        let (runs, entity, project) = (runs.to_vec(), entity.to_owned(), project.to_owned());
        self.write(move |conn| {
            let mut seen = std::collections::HashSet::new();
            let mut pks = Vec::with_capacity(runs.len());
            for path in &runs {
                if !seen.insert(path.run_id.clone()) {
                    return Err(CodedError::new(
                        ErrorCode::RunAlreadyExists,
                        format!("two of the runs to move have the id {:?}; ids must be unique in {entity}/{project}, so nothing was moved", path.run_id),
                    ));
                }
                let pk = run_pk(conn, path)?;
                let state: String = conn.prepare_cached("SELECT state FROM runs WHERE run_pk = ?1").db()?.query_row([pk], |r| r.get(0)).db()?;
                if state == "running" {
                    return Err(CodedError::new(
                        ErrorCode::InvalidValue,
                        format!("run {path} is running: stop it or let it end before moving it (nothing was moved)"),
                    ));
                }
                pks.push(pk);
            }
            let target = ensure_project(conn, &entity, &project, now)?;
            for (path, &pk) in runs.iter().zip(&pks) {
                let clash: Option<Option<i64>> = conn
                    .prepare_cached("SELECT deleted_at FROM runs WHERE project_pk = ?1 AND run_id = ?2 AND run_pk != ?3")
                    .db()?
                    .query_row(params![target, path.run_id, pk], |r| r.get(0))
                    .optional()
                    .db()?;
                if let Some(deleted) = clash {
                    let what = if deleted.is_some() { "a deleted run (purge it first)" } else { "a run" };
                    return Err(CodedError::new(
                        ErrorCode::RunAlreadyExists,
                        format!("{entity}/{project} already has {what} with id {:?}, so {path} cannot move there; nothing was moved", path.run_id),
                    ));
                }
            }
            let mut moved = Vec::with_capacity(runs.len());
            for (path, pk) in runs.iter().zip(pks) {
                let seq: i64 = conn
                    .prepare_cached("UPDATE projects SET run_seq = run_seq + 1 WHERE project_pk = ?1 RETURNING run_seq")
                    .db()?
                    .query_row([target], |r| r.get(0))
                    .db()?;
                conn.prepare_cached("UPDATE runs SET project_pk = ?2, seq = ?3 WHERE run_pk = ?1").db()?.execute(params![pk, target, seq]).db()?;
                // Its rewind archives go with it (their ids start with its id, unique there too).
                conn.prepare_cached("UPDATE runs SET project_pk = ?2 WHERE archive_of = ?1").db()?.execute(params![pk, target]).db()?;
                moved.push(RunPath::new(&entity, &project, &path.run_id));
            }
            conn.prepare_cached("UPDATE projects SET last_activity_at = ?2 WHERE project_pk = ?1").db()?.execute(params![target, now.micros()]).db()?;
            Ok(moved)
        })
    }

    fn list_alerts(&self, path: &RunPath) -> Result<Vec<AlertInfo>> {
        path.validate()?;
        let path = path.clone();
        self.read(move |conn| {
            let pk = run_pk(conn, &path)?;
            conn.prepare_cached(&format!("{ALERT_SELECT} WHERE run_pk = ?1 ORDER BY time, alert_pk"))
                .db()?
                .query_map([pk], alert_from_row)
                .db()?
                .collect::<rusqlite::Result<_>>()
                .db()
        })
    }

    fn due_alerts(&self, now: Timestamp, limit: usize) -> Result<Vec<(RunPath, String, AlertInfo)>> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT e.name, p.name, r.run_id, r.name, a.alert_pk, a.title, a.text, a.level, a.time, a.delivery, a.attempts, a.last_error, a.delivered_to
                 FROM alerts a JOIN runs r ON r.run_pk = a.run_pk
                 JOIN projects p ON p.project_pk = r.project_pk JOIN entities e ON e.entity_pk = p.entity_pk
                 WHERE a.delivery = 'pending' AND a.next_attempt_at <= ?1 AND r.deleted_at IS NULL
                 ORDER BY a.next_attempt_at LIMIT ?2",
            )
            .db()?
            .query_map(params![now.micros(), limit as i64], |r| {
                let path = RunPath::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?);
                let name: String = r.get(3)?;
                Ok((path, name, alert_at(r, 4)?))
            })
            .db()?
            .collect::<rusqlite::Result<_>>()
            .db()
        })
    }

    fn record_alert_delivery(
        &self,
        id: i64,
        delivery: &str,
        delivered_to: &[String],
        error: Option<String>,
        next_attempt: Option<Timestamp>,
    ) -> Result<()> {
        let (delivery, delivered_to) = (delivery.to_owned(), delivered_to.join(","));
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE alerts SET delivery = ?2, attempts = attempts + 1, last_error = ?3,
                    next_attempt_at = coalesce(?4, next_attempt_at), delivered_to = ?5 WHERE alert_pk = ?1",
            )
            .db()?
            .execute(params![id, delivery, error, next_attempt.map(Timestamp::micros), delivered_to])
            .db()?;
            Ok(())
        })
    }

    fn list_forks(&self, path: &RunPath) -> Result<Vec<String>> {
        path.validate()?;
        let path = path.clone();
        self.read(move |conn| {
            let pk = run_pk(conn, &path)?;
            column(
                conn,
                "SELECT run_id FROM runs WHERE project_pk = (SELECT project_pk FROM runs WHERE run_pk = ?1)
                    AND deleted_at IS NULL AND json_extract(metadata, '$.fork.run_id') = ?2 ORDER BY created_at",
                params![pk, path.run_id],
            )
        })
    }

    fn deleted_before(&self, deadline: Timestamp) -> Result<Vec<RunPath>> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT e.name, p.name, r.run_id FROM runs r
                 JOIN projects p ON p.project_pk = r.project_pk
                 JOIN entities e ON e.entity_pk = p.entity_pk
                 WHERE r.deleted_at IS NOT NULL AND r.deleted_at < ?1",
            )
            .db()?
            .query_map([deadline.micros()], |r| Ok(RunPath::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .db()?
            .collect::<rusqlite::Result<_>>()
            .db()
        })
    }

    fn search_runs(&self, entity: &str, project: &str, search: &RunSearch) -> Result<RunPage> {
        validate_name("entity", entity)?;
        validate_name("project", project)?;
        let parsed = match &search.filter {
            Some(json) => Filter::parse(json)?,
            None => Filter::always(),
        };
        let sort = search.sort.iter().map(|s| SortKey::parse(s)).collect::<Result<Vec<_>>>()?;
        let limit = clamp_limit(search.limit, RUNS_DEFAULT_LIMIT, RUNS_MAX_LIMIT);
        let offset = search.offset.unwrap_or(0);
        let (entity, project) = (entity.to_owned(), project.to_owned());
        self.read(move |conn| filter::search(conn, &entity, &project, &parsed, &sort, limit, offset))
    }

    fn project_columns(&self, entity: &str, project: &str) -> Result<cairn_types::api::ProjectColumns> {
        validate_name("entity", entity)?;
        validate_name("project", project)?;
        self.read(|conn| filter::project_columns(conn, entity, project))
    }

    fn group_runs(&self, entity: &str, project: &str, query: &cairn_types::api::GroupQuery) -> Result<cairn_types::api::GroupPage> {
        validate_name("entity", entity)?;
        validate_name("project", project)?;
        let parsed = match &query.filter {
            Some(json) => Filter::parse(json)?,
            None => Filter::always(),
        };
        self.read(|conn| filter::group_runs(conn, entity, project, query, &parsed))
    }

    fn heartbeat(&self, path: &RunPath, now: Timestamp) -> Result<HeartbeatReply> {
        path.validate()?;
        let path = path.clone();
        self.write(move |conn| {
            let info = modify_run(conn, &path, |doc| {
                doc.heartbeat_at = Some(now);
                if doc.state == RunState::Crashed {
                    doc.state = RunState::Running;
                }
                Ok(())
            })?;
            Ok(HeartbeatReply { stop: info.stop_requested, state: info.state })
        })
    }

    fn finish_run(&self, path: &RunPath, request: FinishRequest, now: Timestamp) -> Result<RunInfo> {
        path.validate()?;
        let path = path.clone();
        self.write(move |conn| modify_run(conn, &path, |doc| ingest::finish(doc, request, now)))
    }

    fn request_stop(&self, path: &RunPath) -> Result<RunInfo> {
        path.validate()?;
        let path = path.clone();
        self.write(move |conn| {
            modify_run(conn, &path, |doc| {
                match doc.state {
                    RunState::Running => doc.stop_requested = true,
                    // Nobody is left to hear the request: the run ends now.
                    // It ended at its last sign of life, not now: the time since counts in neither
                    // its Runtime nor its Duration.
                    RunState::Crashed => {
                        doc.state = RunState::Killed;
                        doc.finished_at = Some(doc.heartbeat_at.unwrap_or_else(Timestamp::now));
                    }
                    state => {
                        return Err(CodedError::new(
                            ErrorCode::RunFinished,
                            format!("run {path} is {} and cannot be stopped", state.as_str()),
                        ));
                    }
                }
                Ok(())
            })
        })
    }

    fn mark_crashed(&self, deadline: Timestamp) -> Result<Vec<RunPath>> {
        self.write(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "UPDATE runs SET state = 'crashed'
                     WHERE state = 'running' AND deleted_at IS NULL AND coalesce(heartbeat_at, started_at) < ?1
                     RETURNING run_pk",
                )
                .db()?;
            let pks = stmt.query_map([deadline.micros()], |r| r.get::<_, i64>(0)).db()?.collect::<rusqlite::Result<Vec<_>>>().db()?;
            pks.into_iter().map(|pk| load_run(conn, pk).map(|info| info.path())).collect()
        })
    }

    fn put_run_file(&self, path: &RunPath, file: FileInfo) -> Result<()> {
        path.validate()?;
        let path = path.clone();
        self.write(move |conn| {
            let pk = run_pk(conn, &path)?;
            conn.execute(
                "INSERT INTO run_files (run_pk, path, sha256, size, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (run_pk, path) DO UPDATE SET sha256 = ?3, size = ?4, updated_at = ?5",
                params![pk, file.path, file.sha256, file.size as i64, file.updated_at.micros()],
            )
            .db()?;
            Ok(())
        })
    }

    fn list_run_files(&self, path: &RunPath) -> Result<Vec<FileInfo>> {
        path.validate()?;
        self.read(|conn| {
            let pk = run_pk(conn, path)?;
            let mut stmt = conn
                .prepare_cached("SELECT path, size, sha256, updated_at FROM run_files WHERE run_pk = ?1 ORDER BY path")
                .db()?;
            let rows = stmt
                .query_map([pk], |r| {
                    Ok(FileInfo {
                        path: r.get(0)?,
                        size: r.get::<_, i64>(1)? as u64,
                        sha256: r.get(2)?,
                        updated_at: Timestamp(r.get(3)?),
                    })
                })
                .db()?;
            rows.collect::<rusqlite::Result<Vec<_>>>().db()
        })
    }

    fn get_run_file(&self, path: &RunPath, file_path: &str) -> Result<FileInfo> {
        self.list_run_files(path)?.into_iter().find(|f| f.path == file_path).ok_or_else(|| {
            CodedError::new(ErrorCode::FileNotFound, format!("run {path} has no file {file_path:?}"))
        })
    }
}

impl Store for SqliteStore {
    fn blobs(&self) -> &dyn BlobStore {
        self.blobs.as_ref()
    }

    fn describe(&self) -> String {
        format!("embedded SQLite at {}, {}", self.db_path.display(), self.blobs.describe())
    }

    fn close(&self) {
        self.writer.close();
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.writer.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SeriesStore;

    fn config() -> StoreConfig {
        StoreConfig { default_entity: "tester".into() }
    }

    crate::store_test_suite!({
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), config()).unwrap();
        (store, dir)
    });

    #[test]
    fn a_fork_shares_its_sources_full_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), config()).unwrap();
        let src = RunPath::new("e", "p", "big");
        crate::testsuite::new_run(&store, &src);
        for i in 0..10 {
            store.ingest(&src, crate::testsuite::rows(i * 10_000, 10_000), Timestamp::now()).unwrap();
        }
        let fork = UpsertRunRequest {
            entity: Some("e".into()),
            project: Some("p".into()),
            run_id: "fork".into(),
            fork_from: Some(cairn_types::api::StepRef { run_id: "big".into(), step: 90_000 }),
            ..Default::default()
        };
        store.upsert_run(fork, Timestamp::now()).unwrap();
        let bytes = |run: &str, shared: bool| -> (i64, i64) {
            store
                .read(|conn| {
                    conn.query_row(
                        "SELECT count(*), coalesce(sum(length(c.data)), 0) FROM chunks c JOIN run_keys k ON k.key_pk = c.key_pk
                         JOIN runs r ON r.run_pk = k.run_pk WHERE r.run_id = ?1 AND (c.shared_key IS NOT NULL) = ?2",
                        params![run, shared],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .db()
                })
                .unwrap()
        };
        let (source_chunks, source_bytes) = bytes("big", false);
        let (shared_chunks, shared_bytes) = bytes("fork", true);
        let (own_chunks, own_bytes) = bytes("fork", false);
        // 90,001 points of 3 keys (loss, _timestamp, _runtime): 10 full chunks each are shared,
        // one partial chunk per key is the fork's own.
        assert_eq!(shared_chunks, 30);
        assert_eq!(shared_bytes, 0);
        assert_eq!(own_chunks, 3);
        assert!(own_bytes * 5 < source_bytes, "the fork wrote {own_bytes} bytes; its source holds {source_bytes} in {source_chunks} chunks");
    }

    #[test]
    fn reopening_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = RunPath::new("e", "p", "keep");
        {
            let store = SqliteStore::open(dir.path(), config()).unwrap();
            crate::testsuite::new_run(&store, &path);
            store.ingest(&path, crate::testsuite::rows(0, 5000), Timestamp::now()).unwrap();
            store.close();
        }
        let store = SqliteStore::open(dir.path(), config()).unwrap();
        let data = store.history(&path, &crate::HistoryRequest { limit: 10_000, ..Default::default() }).unwrap();
        assert_eq!(data.steps.len(), 5000);
        assert_eq!(store.get_run(&path).unwrap().offsets.history, 5000);
    }

    #[test]
    fn concurrent_writers_are_serialized() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SqliteStore::open(dir.path(), config()).unwrap());
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let path = RunPath::new("e", "p", format!("t{t}"));
                    crate::testsuite::new_run(&*store, &path);
                    for i in 0..20 {
                        store.ingest(&path, crate::testsuite::rows(i * 10, 10), Timestamp::now()).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        for t in 0..8 {
            let run = store.get_run(&RunPath::new("e", "p", format!("t{t}"))).unwrap();
            assert_eq!(run.offsets.history, 200);
        }
    }
}
