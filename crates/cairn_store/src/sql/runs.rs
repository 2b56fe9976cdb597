//! Runs, entities, projects, files and alerts over [`Db`]: the upsert and resume rules (with
//! W&B's `allow_val_change`), the lifecycle (stop, crash, recovery), soft delete, purge and move.

use cairn_types::api::{
    AlertInfo, AlertLevel, DEFAULT_PROJECT, EntityInfo, FileInfo, FinishRequest, HeartbeatReply, ProjectInfo, ResumeMode, RunInfo, RunPage, RunPatch, RunState, StreamOffsets,
    UpsertRunRequest,
};
use cairn_types::error::{CodedError, ErrorCode};
use cairn_types::ids::{validate_name, validate_run_id};
use cairn_types::value::{Map, Value};
use cairn_types::{RunPath, Timestamp, map};

use super::{Cell, Db, Dialect, Row, SqlStore, ToParam, args, branch, query};
use crate::ingest::{self, RunDoc};
use crate::{AlertStore, FileStore, Leases, Result, RunStore};

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

pub(crate) const RUN_SELECT: &str = "SELECT e.name, p.name, r.run_id, r.name, r.seq, r.state, r.config, r.summary,
        r.tags, r.notes, r.grp, r.job_type, r.metadata, r.created_at, r.started_at, r.heartbeat_at,
        r.finished_at, r.exit_code, r.last_step, r.stop_requested, r.off_history, r.off_summary,
        r.off_config, r.off_system, r.off_console, r.off_events, r.active_us, r.session_at, r.metric_defs, r.preempting_at
    FROM runs r
    JOIN projects p ON p.project_pk = r.project_pk
    JOIN entities e ON e.entity_pk = p.entity_pk";

pub(crate) fn run_from_row(row: &Row) -> Result<RunInfo> {
    let state_text = row.str(5)?;
    let started_at = row.i64(14)?;
    let heartbeat_at = row.opt_i64(15)?;
    let finished_at = row.opt_i64(16)?;
    let end = finished_at.or(heartbeat_at).unwrap_or(started_at);
    let active_us = row.i64(26)?;
    let session_at = row.opt_i64(27)?.unwrap_or(started_at);
    let offset = |i: usize| -> Result<u64> { Ok(row.i64(i)? as u64) };
    Ok(RunInfo {
        entity: row.string(0)?,
        project: row.string(1)?,
        run_id: row.string(2)?,
        name: row.string(3)?,
        seq: row.i64(4)? as u64,
        state: RunState::parse(state_text).ok_or_else(|| CodedError::new(ErrorCode::Internal, format!("stored state {state_text:?} is unknown")))?,
        config: parse_map(row.str(6)?, "config")?,
        summary: parse_map(row.str(7)?, "summary")?,
        tags: parse_tags(row.str(8)?)?,
        notes: row.string(9)?,
        group: row.opt_string(10)?,
        job_type: row.opt_string(11)?,
        metadata: parse_map(row.str(12)?, "metadata")?,
        created_at: Timestamp(row.i64(13)?),
        started_at: Timestamp(started_at),
        heartbeat_at: heartbeat_at.map(Timestamp),
        finished_at: finished_at.map(Timestamp),
        exit_code: row.opt_i64(17)?.map(|c| c as i32),
        runtime_secs: ((end - started_at).max(0)) as f64 / 1e6,
        duration_secs: (active_us + (end - session_at).max(0)) as f64 / 1e6,
        last_step: row.opt_i64(18)?,
        stop_requested: row.bool(19)?,
        offsets: StreamOffsets { history: offset(20)?, summary: offset(21)?, config: offset(22)?, system: offset(23)?, console: offset(24)?, events: offset(25)? },
        preempting_at: row.opt_i64(29)?.map(Timestamp),
        sweep_id: None,
        stop_reason: None,
    })
}

fn not_found(path: &RunPath) -> CodedError {
    CodedError::new(ErrorCode::RunNotFound, format!("run {path} not found"))
}

/// The run's primary key, for a run that is not deleted.
pub(crate) fn run_pk(db: &dyn Db, path: &RunPath) -> Result<i64> {
    find_run_pk(db, path, false)
}

/// The run's primary key; with `deleted`, a deleted run's too.
fn find_run_pk(db: &dyn Db, path: &RunPath, deleted: bool) -> Result<i64> {
    db.opt_row(
        "SELECT r.run_pk FROM runs r
         JOIN projects p ON p.project_pk = r.project_pk
         JOIN entities e ON e.entity_pk = p.entity_pk
         WHERE e.name = ?1 AND p.name = ?2 AND r.run_id = ?3 AND (?4 OR r.deleted_at IS NULL)",
        args![path.entity, path.project, path.run_id, deleted],
    )?
    .ok_or_else(|| not_found(path))?
    .i64(0)
}

pub(crate) fn load_run(db: &dyn Db, run_pk: i64) -> Result<RunInfo> {
    let row = db.opt_row(&format!("{RUN_SELECT} WHERE r.run_pk = ?1"), args![run_pk])?.ok_or_else(|| CodedError::new(ErrorCode::RunNotFound, "run not found"))?;
    run_from_row(&row)
}

const ALERT_SELECT: &str = "SELECT alert_pk, title, text, level, time, delivery, attempts, last_error, delivered_to FROM alerts";

/// An alert from the row's columns `at..at + 9` (as in `ALERT_SELECT`).
fn alert_at(r: &Row, at: usize) -> Result<AlertInfo> {
    Ok(AlertInfo {
        id: r.i64(at)?,
        title: r.string(at + 1)?,
        text: r.string(at + 2)?,
        level: AlertLevel::parse(r.str(at + 3)?).unwrap_or(AlertLevel::Info),
        time: Timestamp(r.i64(at + 4)?),
        delivery: r.string(at + 5)?,
        attempts: r.i64(at + 6)? as u32,
        last_error: r.opt_string(at + 7)?,
        delivered_to: r.str(at + 8)?.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect(),
    })
}

/// The run's document, locked until the transaction ends (on PostgreSQL; SQLite has one writer).
pub(crate) fn load_doc(db: &dyn Db, run_pk: i64) -> Result<RunDoc> {
    let lock = match db.dialect() {
        Dialect::Postgres => " FOR UPDATE OF r",
        Dialect::Sqlite => "",
    };
    let row = db.opt_row(&format!("{RUN_SELECT} WHERE r.run_pk = ?1{lock}"), args![run_pk])?.ok_or_else(|| CodedError::new(ErrorCode::RunNotFound, "run not found"))?;
    let info = run_from_row(&row)?;
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
        metric_defs: parse_map(row.str(28)?, "metric_defs")?,
        last_step: info.last_step,
        offsets: info.offsets,
        stop_requested: info.stop_requested,
        preempting_at: info.preempting_at,
        new_alerts: Vec::new(),
    })
}

/// Writes the fields of `doc` that differ from `before` (what [`load_doc`] read), and records
/// its new alerts. Only changed columns are written: two changes that touch different fields
/// never undo each other.
pub(crate) fn save_doc(db: &dyn Db, run_pk: i64, before: &RunDoc, doc: &RunDoc) -> Result<()> {
    let mut sets: Vec<(&str, Cell)> = Vec::new();
    let int = |v: Option<i64>| v.map_or(Cell::Null, Cell::Int);
    let text = |v: &Option<String>| v.clone().map_or(Cell::Null, Cell::Text);
    let mut set = |changed: bool, column: &'static str, value: &dyn Fn() -> Cell| {
        if changed {
            sets.push((column, value()));
        }
    };
    set(doc.state != before.state, "state", &|| Cell::Text(doc.state.as_str().to_owned()));
    set(doc.exit_code != before.exit_code, "exit_code", &|| int(doc.exit_code.map(i64::from)));
    set(doc.started_at != before.started_at, "started_at", &|| Cell::Int(doc.started_at.micros()));
    set(doc.heartbeat_at != before.heartbeat_at, "heartbeat_at", &|| int(doc.heartbeat_at.map(Timestamp::micros)));
    set(doc.finished_at != before.finished_at, "finished_at", &|| int(doc.finished_at.map(Timestamp::micros)));
    set(doc.name != before.name, "name", &|| Cell::Text(doc.name.clone()));
    set(doc.notes != before.notes, "notes", &|| Cell::Text(doc.notes.clone()));
    set(doc.tags != before.tags, "tags", &|| Cell::Text(serde_json::to_string(&doc.tags).expect("tags serialize")));
    set(doc.group != before.group, "grp", &|| text(&doc.group));
    set(doc.job_type != before.job_type, "job_type", &|| text(&doc.job_type));
    set(doc.config != before.config, "config", &|| Cell::Text(to_json_text(&doc.config)));
    set(doc.summary != before.summary, "summary", &|| Cell::Text(to_json_text(&doc.summary)));
    set(doc.metadata != before.metadata, "metadata", &|| Cell::Text(to_json_text(&doc.metadata)));
    set(doc.metric_defs != before.metric_defs, "metric_defs", &|| Cell::Text(to_json_text(&doc.metric_defs)));
    set(doc.last_step != before.last_step, "last_step", &|| int(doc.last_step));
    set(doc.stop_requested != before.stop_requested, "stop_requested", &|| Cell::Int(doc.stop_requested as i64));
    set(doc.preempting_at != before.preempting_at, "preempting_at", &|| int(doc.preempting_at.map(Timestamp::micros)));
    let (o, b) = (&doc.offsets, &before.offsets);
    set(o.history != b.history, "off_history", &|| Cell::Int(o.history as i64));
    set(o.summary != b.summary, "off_summary", &|| Cell::Int(o.summary as i64));
    set(o.config != b.config, "off_config", &|| Cell::Int(o.config as i64));
    set(o.system != b.system, "off_system", &|| Cell::Int(o.system as i64));
    set(o.console != b.console, "off_console", &|| Cell::Int(o.console as i64));
    set(o.events != b.events, "off_events", &|| Cell::Int(o.events as i64));
    if !sets.is_empty() {
        let assignments: Vec<String> = sets.iter().enumerate().map(|(i, (c, _))| format!("{c} = ?{}", i + 2)).collect();
        let sql = format!("UPDATE runs SET {} WHERE run_pk = ?1", assignments.join(", "));
        let mut params = vec![run_pk.param()];
        params.extend(sets.iter().map(|(_, v)| v.param()));
        db.execute(&sql, &params)?;
    }
    for alert in &doc.new_alerts {
        // The same title within the alert's wait duration is not sent again (a replay of the
        // same event, from `cairn sync` say, is the same alert: stored once).
        let recent = db
            .row(
                "SELECT EXISTS (SELECT 1 FROM alerts WHERE run_pk = ?1 AND title = ?2 AND time > ?3 AND time <= ?4)",
                args![run_pk, alert.title, alert.time.micros().saturating_sub(alert.wait_micros.max(1)), alert.time.micros()],
            )?
            .bool(0)?;
        if recent {
            continue;
        }
        db.execute(
            "INSERT INTO alerts (run_pk, time, title, text, level, delivery, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)",
            args![run_pk, alert.time.micros(), alert.title, alert.text, alert.level.as_str(), alert.received.micros()],
        )?;
    }
    Ok(())
}

/// Notes activity in the run's project. At most once a second per project, so that the runs
/// of one project, ingesting at once, do not all wait for its row.
pub(crate) fn touch_project(db: &dyn Db, run_pk: i64, now: Timestamp) -> Result<()> {
    db.execute(
        "UPDATE projects SET last_activity_at = ?2
         WHERE project_pk = (SELECT project_pk FROM runs WHERE run_pk = ?1) AND coalesce(last_activity_at, 0) < CAST(?2 AS BIGINT) - 1000000",
        args![run_pk, now.micros()],
    )?;
    Ok(())
}

/// Loads a run's document for update, changes it, and saves what changed; returns the run as it
/// is afterwards.
pub(super) fn modify_run(db: &dyn Db, path: &RunPath, change: impl FnOnce(&mut RunDoc) -> Result<()>) -> Result<RunInfo> {
    let pk = run_pk(db, path)?;
    let before = load_doc(db, pk)?;
    let mut doc = before.clone();
    change(&mut doc)?;
    save_doc(db, pk, &before, &doc)?;
    load_run(db, pk)
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

pub(crate) fn ensure_project(db: &dyn Db, entity: &str, project: &str, now: Timestamp) -> Result<i64> {
    db.execute("INSERT INTO entities (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING", args![entity, now.micros()])?;
    db.execute(
        "INSERT INTO projects (entity_pk, name, created_at, last_activity_at)
         SELECT entity_pk, ?2, ?3, ?3 FROM entities WHERE name = ?1
         ON CONFLICT (entity_pk, name) DO NOTHING",
        args![entity, project, now.micros()],
    )?;
    query::project_pk(db, entity, project)
}

/// The next run number of a project (its rows are locked until the transaction ends).
fn next_seq(db: &dyn Db, project_pk: i64) -> Result<i64> {
    db.row("UPDATE projects SET run_seq = run_seq + 1 WHERE project_pk = ?1 RETURNING run_seq", args![project_pk])?.i64(0)
}

fn upsert_run(db: &dyn Db, request: UpsertRunRequest, default_entity: &str, now: Timestamp) -> Result<RunInfo> {
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
    let project_pk = ensure_project(db, &entity, &project, now)?;
    let existing = db
        .opt_row("SELECT run_pk, deleted_at FROM runs WHERE project_pk = ?1 AND run_id = ?2", args![project_pk, request.run_id])?
        .map(|r| Ok::<_, CodedError>((r.i64(0)?, r.opt_i64(1)?)))
        .transpose()?;
    let patch = RunPatch { name: request.name.clone(), notes: request.notes.clone(), tags: request.tags.clone(), group: request.group.clone(), job_type: request.job_type.clone() };
    match existing {
        Some((_, Some(_))) => Err(CodedError::new(ErrorCode::RunDeleted, format!("run {path} was deleted; its id cannot be used again until it is purged"))),
        Some(_) if request.resume == ResumeMode::Never => {
            Err(CodedError::new(ErrorCode::RunAlreadyExists, format!("run {path} already exists; resume it with resume=\"allow\" or \"must\", or choose another id")))
        }
        Some((pk, None)) if request.resume == ResumeMode::Keep => load_run(db, pk),
        Some((pk, None)) => {
            let before = load_doc(db, pk)?;
            let mut doc = before.clone();
            if let Some(at) = &request.resume_from {
                if at.run_id != request.run_id {
                    return Err(CodedError::new(
                        ErrorCode::InvalidValue,
                        format!("resume_from names run {:?}, but the run resumed is {:?}; a rewind keeps the run's id", at.run_id, request.run_id),
                    ));
                }
                rewind_run(db, project_pk, pk, &request.run_id, &mut doc, at.step, now)?;
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
            db.execute(
                "UPDATE runs SET active_us = active_us + CASE WHEN coalesce(finished_at, heartbeat_at, session_at, started_at)
                    > coalesce(session_at, started_at) THEN coalesce(finished_at, heartbeat_at, session_at, started_at)
                    - coalesce(session_at, started_at) ELSE 0 END, session_at = ?2 WHERE run_pk = ?1",
                args![pk, now.micros()],
            )?;
            doc.state = RunState::Running;
            doc.exit_code = None;
            doc.finished_at = None;
            doc.heartbeat_at = Some(now);
            doc.stop_requested = false;
            // The session that said it may be preempted is over: this one has not said so.
            doc.preempting_at = None;
            save_doc(db, pk, &before, &doc)?;
            touch_project(db, pk, now)?;
            load_run(db, pk)
        }
        None if request.resume == ResumeMode::Must || request.resume_from.is_some() => {
            Err(CodedError::new(ErrorCode::RunNotFound, format!("run {path} does not exist, so it cannot be resumed or rewound")))
        }
        None => {
            let seq = next_seq(db, project_pk)?;
            let name = match request.name.filter(|n| !n.trim().is_empty()) {
                Some(name) => name,
                None => cairn_types::names::display_name(seq as u64),
            };
            let started_at = request.started_at.unwrap_or(now);
            let pk = db
                .row(
                    "INSERT INTO runs (project_pk, run_id, seq, name, state, created_at, started_at, heartbeat_at)
                     VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?5) RETURNING run_pk",
                    args![project_pk, request.run_id, seq, name, now.micros(), started_at.micros()],
                )?
                .i64(0)?;
            let before = load_doc(db, pk)?;
            let mut doc = before.clone();
            ingest::apply_patch(&mut doc, RunPatch { name: None, ..patch })?;
            doc.config = config.unwrap_or_default();
            doc.metadata = metadata.unwrap_or_default();
            if let Some(from) = &request.fork_from {
                let src_pk = db
                    .opt_row("SELECT run_pk FROM runs WHERE project_pk = ?1 AND run_id = ?2 AND deleted_at IS NULL", args![project_pk, from.run_id])?
                    .ok_or_else(|| CodedError::new(ErrorCode::RunNotFound, format!("run {:?} to fork from is not in {entity}/{project}", from.run_id)))?
                    .i64(0)?;
                // Locked: the source cannot ingest while its chunks are shared.
                let src = load_doc(db, src_pk)?;
                // The fork starts from its source's config; what init gives goes on top.
                let mut merged = src.config.clone();
                merged.extend(std::mem::take(&mut doc.config));
                doc.config = merged;
                branch::fork(db, src_pk, &src, &from.run_id, pk, &mut doc, from.step)?;
            }
            save_doc(db, pk, &before, &doc)?;
            load_run(db, pk)
        }
    }
}

/// Rewinds run `pk` to `step`: what it logged after the step moves to a new hidden run,
/// `<run_id>-rewind-<n>`, reachable from the run's metadata (`rewinds`).
fn rewind_run(db: &dyn Db, project_pk: i64, pk: i64, run_id: &str, doc: &mut RunDoc, step: i64, now: Timestamp) -> Result<()> {
    let taken = |id: &str| -> Result<bool> { db.row("SELECT EXISTS (SELECT 1 FROM runs WHERE project_pk = ?1 AND run_id = ?2)", args![project_pk, id])?.bool(0) };
    let mut n = 1;
    let archive_id = loop {
        let base: String = run_id.chars().take(100).collect();
        let id = format!("{base}-rewind-{n}");
        if !taken(&id)? {
            break id;
        }
        n += 1;
    };
    let seq = next_seq(db, project_pk)?;
    let archive_pk = db
        .row(
            "INSERT INTO runs (project_pk, run_id, seq, name, state, created_at, started_at, finished_at, archive_of)
             VALUES (?1, ?2, ?3, ?4, 'finished', ?5, ?6, ?5, ?7) RETURNING run_pk",
            args![project_pk, archive_id, seq, format!("{} (after step {step}, rewound)", doc.name), now.micros(), doc.started_at.micros(), pk],
        )?
        .i64(0)?;
    let archive_before = load_doc(db, archive_pk)?;
    let mut archive = archive_before.clone();
    archive.config = doc.config.clone();
    archive.tags = doc.tags.clone();
    archive.group = doc.group.clone();
    archive.job_type = doc.job_type.clone();
    archive.metadata = map! {"archive_of" => run_id, "rewound_at_step" => step};
    branch::rewind(db, pk, run_id, doc, archive_pk, &archive_id, &mut archive, step, now)?;
    save_doc(db, archive_pk, &archive_before, &archive)?;
    Ok(())
}

fn entity_from_row(r: &Row) -> Result<EntityInfo> {
    Ok(EntityInfo {
        name: r.string(0)?,
        created_at: Timestamp(r.i64(1)?),
        project_count: r.i64(2)? as u64,
        run_count: r.i64(3)? as u64,
        last_activity_at: r.opt_i64(4)?.map(Timestamp),
    })
}

/// Locks the runs that `condition` picks until the transaction ends, in key order (PostgreSQL;
/// SQLite's one writer needs none).
pub(crate) fn lock_runs(db: &dyn Db, condition: &str, params: &[super::Param<'_>]) -> Result<()> {
    if db.dialect() == Dialect::Postgres {
        db.query(&format!("SELECT run_pk FROM runs WHERE {condition} ORDER BY run_pk FOR UPDATE"), params)?;
    }
    Ok(())
}

/// Serializes the transactions that name, count or remove one content (PostgreSQL: an advisory
/// lock on its hash, held until the transaction ends), so a name and a removal never interleave.
pub(crate) fn lock_content(db: &dyn Db, sha256: &str) -> Result<()> {
    if db.dialect() == Dialect::Postgres {
        db.execute("SELECT pg_advisory_xact_lock(hashtextextended(?1, 0))", args![sha256])?;
    }
    Ok(())
}

/// How many names a content has: every table that names contents by SHA-256 counts here (run
/// files, the stored entries of artifacts, the chunk lists of chunked contents, and for a pack
/// the chunks in it that some content lists, but for the one chunk that is the whole pack).
pub(crate) fn referrers(db: &dyn Db, sha256: &str) -> Result<i64> {
    Ok(db.row("SELECT count(*) FROM run_files WHERE sha256 = ?1", args![sha256])?.i64(0)?
        + db.row("SELECT count(*) FROM artifact_entries WHERE digest = ?1 AND ref IS NULL", args![sha256])?.i64(0)?
        + db.row("SELECT count(*) FROM content_chunks WHERE chunk = ?1", args![sha256])?.i64(0)?
        + db.row(
            "SELECT count(*) FROM stored_chunks k WHERE k.pack = ?1 AND k.sha256 <> ?1
             AND EXISTS (SELECT 1 FROM content_chunks c WHERE c.chunk = k.sha256)",
            args![sha256],
        )?
        .i64(0)?)
}

/// Lists for collection (`blob_gc`) those of `shas` that nothing names any more, each under its
/// content lock, in the caller's transaction (a crash before they are removed leaves them listed);
/// returns them.
pub(crate) fn queue_unnamed(db: &dyn Db, shas: Vec<String>) -> Result<Vec<String>> {
    queue_unnamed_at(db, shas, Timestamp::now())
}

/// [`queue_unnamed`], due for collection at `due` (not before).
pub(crate) fn queue_unnamed_at(db: &dyn Db, shas: Vec<String>, due: Timestamp) -> Result<Vec<String>> {
    let mut orphans = Vec::new();
    for sha in shas {
        lock_content(db, &sha)?;
        if referrers(db, &sha)? == 0 {
            db.execute("INSERT INTO blob_gc (sha256, since) VALUES (?1, ?2) ON CONFLICT (sha256) DO NOTHING", args![sha, due.micros()])?;
            orphans.push(sha);
        }
    }
    Ok(orphans)
}

/// The run path in columns `at..at + 3` (entity, project, run id).
pub(crate) fn path_at(r: &Row, at: usize) -> Result<RunPath> {
    Ok(RunPath::new(r.string(at)?, r.string(at + 1)?, r.string(at + 2)?))
}

impl RunStore for SqlStore {
    fn list_entities(&self) -> Result<Vec<EntityInfo>> {
        self.read(|db| {
            db.query(
                "SELECT e.name, e.created_at,
                    (SELECT count(*) FROM projects p WHERE p.entity_pk = e.entity_pk),
                    (SELECT count(*) FROM runs r JOIN projects p ON p.project_pk = r.project_pk
                        WHERE p.entity_pk = e.entity_pk AND r.deleted_at IS NULL AND r.archive_of IS NULL),
                    (SELECT max(p.last_activity_at) FROM projects p WHERE p.entity_pk = e.entity_pk)
                 FROM entities e ORDER BY e.name",
                &[],
            )?
            .iter()
            .map(entity_from_row)
            .collect()
        })
    }

    fn get_entity(&self, entity: &str) -> Result<EntityInfo> {
        validate_name("entity", entity)?;
        self.list_entities()?.into_iter().find(|e| e.name == entity).ok_or_else(|| CodedError::new(ErrorCode::EntityNotFound, format!("entity {entity:?} not found")))
    }

    fn list_projects(&self, entity: &str) -> Result<Vec<ProjectInfo>> {
        validate_name("entity", entity)?;
        self.read(|db| {
            let Some(found) = db.opt_row("SELECT entity_pk FROM entities WHERE name = ?1", args![entity])? else {
                return Err(CodedError::new(ErrorCode::EntityNotFound, format!("entity {entity:?} not found")));
            };
            db.query(
                "SELECT p.name, p.created_at, p.last_activity_at,
                    (SELECT count(*) FROM runs r WHERE r.project_pk = p.project_pk AND r.deleted_at IS NULL AND r.archive_of IS NULL),
                    p.visibility
                 FROM projects p WHERE p.entity_pk = ?1
                 ORDER BY coalesce(p.last_activity_at, p.created_at) DESC, p.name",
                args![found.i64(0)?],
            )?
            .iter()
            .map(|r| {
                Ok(ProjectInfo {
                    entity: entity.to_owned(),
                    name: r.string(0)?,
                    created_at: Timestamp(r.i64(1)?),
                    last_activity_at: r.opt_i64(2)?.map(Timestamp),
                    run_count: r.i64(3)? as u64,
                    visibility: crate::Visibility::parse(r.str(4)?)?,
                })
            })
            .collect()
        })
    }

    fn get_project(&self, entity: &str, project: &str) -> Result<ProjectInfo> {
        validate_name("project", project)?;
        self.list_projects(entity)?
            .into_iter()
            .find(|p| p.name == project)
            .ok_or_else(|| CodedError::new(ErrorCode::ProjectNotFound, format!("project {entity}/{project} not found")))
    }

    fn upsert_run(&self, request: UpsertRunRequest, now: Timestamp) -> Result<RunInfo> {
        let default_entity = self.config.default_entity.clone();
        self.write(move |db| upsert_run(db, request, &default_entity, now))
    }

    fn get_run(&self, path: &RunPath) -> Result<RunInfo> {
        path.validate()?;
        self.read(|db| load_run(db, run_pk(db, path)?))
    }

    fn update_run(&self, path: &RunPath, patch: RunPatch) -> Result<RunInfo> {
        path.validate()?;
        let path = path.clone();
        self.write(move |db| modify_run(db, &path, |doc| ingest::apply_patch(doc, patch)))
    }

    fn delete_run(&self, path: &RunPath) -> Result<()> {
        path.validate()?;
        let path = path.clone();
        self.write(move |db| {
            let pk = run_pk(db, &path)?;
            db.execute("UPDATE runs SET deleted_at = ?2 WHERE run_pk = ?1", args![pk, Timestamp::now().micros()])?;
            Ok(())
        })
    }

    fn purge_run(&self, path: &RunPath) -> Result<Vec<String>> {
        path.validate()?;
        let path = path.clone();
        self.write(move |db| {
            let pk = find_run_pk(db, &path, true)?;
            // Locked first (PostgreSQL): an ingest, or a fork that is sharing its chunks, waits
            // for the purge, or the purge waits for it and then sees its rows.
            lock_runs(db, "run_pk = ?1 OR archive_of = ?1", args![pk])?;
            // Forks that share the chunks of the run or of its rewind archives get their own
            // copies; then the archives go with the run.
            let archives = db.column_i64("SELECT run_pk FROM runs WHERE archive_of = ?1", args![pk])?;
            let runs: Vec<i64> = archives.into_iter().chain(std::iter::once(pk)).collect();
            for &run in &runs {
                for key in db.column_i64("SELECT key_pk FROM run_keys WHERE run_pk = ?1", args![run])? {
                    branch::unshare(db, key, None)?;
                }
            }
            let shas = db.column_string("SELECT DISTINCT sha256 FROM run_files WHERE run_pk = ?1", args![pk])?;
            for run in runs {
                for sql in [
                    "DELETE FROM chunks WHERE key_pk IN (SELECT key_pk FROM run_keys WHERE run_pk = ?1)",
                    "DELETE FROM run_keys WHERE run_pk = ?1",
                    "DELETE FROM console_lines WHERE run_pk = ?1",
                    "DELETE FROM run_files WHERE run_pk = ?1",
                    "DELETE FROM alerts WHERE run_pk = ?1",
                    // Artifacts outlive the runs that logged or used them; only the edges go.
                    "DELETE FROM artifact_usage WHERE run_pk = ?1",
                    "UPDATE artifact_versions SET logged_by = NULL WHERE logged_by = ?1",
                    "DELETE FROM runs WHERE run_pk = ?1",
                ] {
                    db.execute(sql, args![run])?;
                }
            }
            // Contents that nothing names now are candidates for collection (`collect_blobs`),
            // recorded in this transaction: a crash before they are removed leaves them listed.
            let orphans = queue_unnamed(db, shas)?;
            crate::crash::point("purge");
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
        self.write(move |db| {
            let mut seen = std::collections::HashSet::new();
            let mut pks = Vec::with_capacity(runs.len());
            // In key order: two moves of the same runs never wait for each other in a circle.
            let mut ids: Vec<i64> = runs.iter().map(|p| run_pk(db, p)).collect::<Result<_>>()?;
            ids.sort_unstable();
            for id in ids {
                lock_runs(db, "run_pk = ?1", args![id])?;
            }
            for path in &runs {
                if !seen.insert(path.run_id.clone()) {
                    return Err(CodedError::new(
                        ErrorCode::RunAlreadyExists,
                        format!("two of the runs to move have the id {:?}; ids must be unique in {entity}/{project}, so nothing was moved", path.run_id),
                    ));
                }
                let pk = run_pk(db, path)?;
                if load_doc(db, pk)?.state == RunState::Running {
                    return Err(CodedError::new(ErrorCode::InvalidValue, format!("run {path} is running: stop it or let it end before moving it (nothing was moved)")));
                }
                pks.push(pk);
            }
            let target = ensure_project(db, &entity, &project, now)?;
            for (path, &pk) in runs.iter().zip(&pks) {
                let clash = db.opt_row("SELECT deleted_at FROM runs WHERE project_pk = ?1 AND run_id = ?2 AND run_pk != ?3", args![target, path.run_id, pk])?;
                if let Some(clash) = clash {
                    let what = if clash.opt_i64(0)?.is_some() { "a deleted run (purge it first)" } else { "a run" };
                    return Err(CodedError::new(
                        ErrorCode::RunAlreadyExists,
                        format!("{entity}/{project} already has {what} with id {:?}, so {path} cannot move there; nothing was moved", path.run_id),
                    ));
                }
            }
            let mut moved = Vec::with_capacity(runs.len());
            for (path, pk) in runs.iter().zip(pks) {
                let seq = next_seq(db, target)?;
                db.execute("UPDATE runs SET project_pk = ?2, seq = ?3 WHERE run_pk = ?1", args![pk, target, seq])?;
                // Its rewind archives go with it (their ids start with its id, unique there too).
                db.execute("UPDATE runs SET project_pk = ?2 WHERE archive_of = ?1", args![pk, target])?;
                moved.push(RunPath::new(&entity, &project, &path.run_id));
            }
            db.execute("UPDATE projects SET last_activity_at = ?2 WHERE project_pk = ?1", args![target, now.micros()])?;
            Ok(moved)
        })
    }

    fn list_forks(&self, path: &RunPath) -> Result<Vec<String>> {
        path.validate()?;
        self.read(|db| {
            let pk = run_pk(db, path)?;
            let fork_of = query::json_text(db.dialect(), "metadata", &["fork", "run_id"]);
            db.column_string(
                &format!(
                    "SELECT run_id FROM runs WHERE project_pk = (SELECT project_pk FROM runs WHERE run_pk = ?1)
                        AND deleted_at IS NULL AND {fork_of} = ?2 ORDER BY created_at"
                ),
                args![pk, path.run_id],
            )
        })
    }

    fn deleted_before(&self, deadline: Timestamp) -> Result<Vec<RunPath>> {
        self.read(|db| {
            db.query(
                "SELECT e.name, p.name, r.run_id FROM runs r
                 JOIN projects p ON p.project_pk = r.project_pk
                 JOIN entities e ON e.entity_pk = p.entity_pk
                 WHERE r.deleted_at IS NOT NULL AND r.deleted_at < ?1",
                args![deadline.micros()],
            )?
            .iter()
            .map(|r| path_at(r, 0))
            .collect()
        })
    }

    fn search_runs(&self, entity: &str, project: &str, query: &crate::RunQuery) -> Result<RunPage> {
        validate_name("entity", entity)?;
        validate_name("project", project)?;
        self.read(|db| query::search(db, entity, project, &query.filter, &query.sort, query.limit, query.offset))
    }

    fn project_columns(&self, entity: &str, project: &str) -> Result<cairn_types::api::ProjectColumns> {
        validate_name("entity", entity)?;
        validate_name("project", project)?;
        self.read(|db| query::project_columns(db, entity, project))
    }

    fn group_runs(&self, entity: &str, project: &str, request: &crate::GroupRequest) -> Result<cairn_types::api::GroupPage> {
        validate_name("entity", entity)?;
        validate_name("project", project)?;
        self.read(|db| query::group_runs(db, entity, project, request))
    }

    fn heartbeat(&self, path: &RunPath, now: Timestamp) -> Result<HeartbeatReply> {
        path.validate()?;
        let path = path.clone();
        self.write(move |db| {
            let info = modify_run(db, &path, |doc| {
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
        self.write(move |db| modify_run(db, &path, |doc| ingest::finish(doc, request, now)))
    }

    fn request_stop(&self, path: &RunPath) -> Result<RunInfo> {
        path.validate()?;
        let path = path.clone();
        self.write(move |db| {
            modify_run(db, &path, |doc| {
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
                        return Err(CodedError::new(ErrorCode::RunFinished, format!("run {path} is {} and cannot be stopped", state.as_str())));
                    }
                }
                Ok(())
            })
        })
    }

    fn mark_preempting(&self, path: &RunPath, now: Timestamp) -> Result<RunInfo> {
        path.validate()?;
        let path = path.clone();
        self.write(move |db| {
            modify_run(db, &path, |doc| match doc.state {
                RunState::Running => {
                    doc.preempting_at.get_or_insert(now);
                    Ok(())
                }
                state => Err(CodedError::new(ErrorCode::RunFinished, format!("run {path} is {} and cannot be marked preempting", state.as_str()))),
            })
        })
    }

    fn mark_crashed(&self, deadline: Timestamp, preempting_deadline: Timestamp) -> Result<Vec<RunPath>> {
        self.write(move |db| {
            // One statement: with several servers, each crash is marked by exactly one of them.
            // A run that said it may be preempted gets the longer wait.
            let pks = db.column_i64(
                "UPDATE runs SET state = 'crashed'
                 WHERE state = 'running' AND deleted_at IS NULL
                   AND ((preempting_at IS NULL AND coalesce(heartbeat_at, started_at) < ?1)
                     OR (preempting_at IS NOT NULL AND coalesce(heartbeat_at, started_at) < ?2))
                 RETURNING run_pk",
                args![deadline.micros(), preempting_deadline.micros()],
            )?;
            pks.into_iter().map(|pk| load_run(db, pk).map(|info| info.path())).collect()
        })
    }
}

impl AlertStore for SqlStore {
    fn list_alerts(&self, path: &RunPath) -> Result<Vec<AlertInfo>> {
        path.validate()?;
        self.read(|db| {
            let pk = run_pk(db, path)?;
            db.query(&format!("{ALERT_SELECT} WHERE run_pk = ?1 ORDER BY time, alert_pk"), args![pk])?.iter().map(|r| alert_at(r, 0)).collect()
        })
    }

    fn claim_due_alerts(&self, now: Timestamp, lease: std::time::Duration, limit: usize) -> Result<Vec<(RunPath, String, AlertInfo)>> {
        let until = now.micros().saturating_add(lease.as_micros().min(i64::MAX as u128) as i64);
        self.write(move |db| {
            // One statement takes them: a server that claims at the same time skips the rows
            // this one locked (PostgreSQL) or runs after it (SQLite's one writer).
            let skip = match db.dialect() {
                Dialect::Postgres => " FOR UPDATE OF a SKIP LOCKED",
                Dialect::Sqlite => "",
            };
            let claimed = db.column_i64(
                &format!(
                    "UPDATE alerts SET next_attempt_at = ?3 WHERE alert_pk IN (
                        SELECT a.alert_pk FROM alerts a JOIN runs r ON r.run_pk = a.run_pk
                        WHERE a.delivery = 'pending' AND a.next_attempt_at <= ?1 AND r.deleted_at IS NULL
                        ORDER BY a.next_attempt_at LIMIT ?2{skip})
                     RETURNING alert_pk"
                ),
                args![now.micros(), limit as i64, until],
            )?;
            let mut out = Vec::with_capacity(claimed.len());
            for pk in claimed {
                let r = db.row(
                    "SELECT e.name, p.name, r.run_id, r.name, a.alert_pk, a.title, a.text, a.level, a.time, a.delivery, a.attempts, a.last_error, a.delivered_to
                     FROM alerts a JOIN runs r ON r.run_pk = a.run_pk
                     JOIN projects p ON p.project_pk = r.project_pk JOIN entities e ON e.entity_pk = p.entity_pk
                     WHERE a.alert_pk = ?1",
                    args![pk],
                )?;
                out.push((path_at(&r, 0)?, r.string(3)?, alert_at(&r, 4)?));
            }
            out.sort_by_key(|(_, _, a)| (a.time, a.id));
            Ok(out)
        })
    }

    fn record_alert_delivery(&self, id: i64, delivery: &str, delivered_to: &[String], error: Option<String>, next_attempt: Option<Timestamp>) -> Result<()> {
        let (delivery, delivered_to) = (delivery.to_owned(), delivered_to.join(","));
        self.write(move |db| {
            db.execute(
                "UPDATE alerts SET delivery = ?2, attempts = attempts + 1, last_error = ?3,
                    next_attempt_at = coalesce(?4, next_attempt_at), delivered_to = ?5 WHERE alert_pk = ?1",
                args![id, delivery, error, next_attempt.map(Timestamp::micros), delivered_to],
            )?;
            Ok(())
        })
    }
}

impl FileStore for SqlStore {
    fn remove_run_files(&self, path: &RunPath, prefix: &str) -> Result<usize> {
        path.validate()?;
        if prefix.is_empty() {
            return Err(CodedError::new(ErrorCode::InvalidValue, "the prefix of the files to remove must not be empty"));
        }
        let (path, prefix) = (path.clone(), prefix.to_owned());
        self.write(move |db| {
            let pk = run_pk(db, &path)?;
            // By comparison, not LIKE: a name's % and _ are its own.
            let rows =
                db.query("SELECT path, sha256 FROM run_files WHERE run_pk = ?1 AND substr(path, 1, ?2) = ?3 AND path <> ?3", args![pk, prefix.chars().count() as i64, prefix])?;
            let mut shas = Vec::new();
            for r in &rows {
                db.execute("DELETE FROM run_files WHERE run_pk = ?1 AND path = ?2", args![pk, r.string(0)?])?;
                shas.push(r.string(1)?);
            }
            shas.sort();
            shas.dedup();
            queue_unnamed(db, shas)?;
            Ok(rows.len())
        })
    }

    fn put_run_file(&self, path: &RunPath, file: FileInfo) -> Result<()> {
        path.validate()?;
        let (path, blobs) = (path.clone(), self.blobs.clone());
        self.write(move |db| {
            let pk = run_pk(db, &path)?;
            // A content being collected is taken off the list first (waiting for a collection
            // under way to end), then checked: it is named only if it is still there.
            lock_content(db, &file.sha256)?;
            db.execute("DELETE FROM blob_gc WHERE sha256 = ?1", args![file.sha256])?;
            if !super::chunks::content_exists(db, blobs.as_ref(), &file.sha256)? {
                return Err(CodedError::new(ErrorCode::FileNotFound, format!("content {} is not uploaded; send it first with PUT /api/v1/uploads/{}", file.sha256, file.sha256)));
            }
            db.execute(
                "INSERT INTO run_files (run_pk, path, sha256, size, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (run_pk, path) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, updated_at = excluded.updated_at",
                args![pk, file.path, file.sha256, file.size as i64, file.updated_at.micros()],
            )?;
            Ok(())
        })
    }

    fn collect_blobs(&self, only: Option<&[String]>) -> Result<Vec<String>> {
        let mut candidates: std::collections::VecDeque<String> = match only {
            Some(shas) => shas.iter().cloned().collect(),
            None => return self.collect_due(Timestamp::now()),
        };
        let mut removed = Vec::new();
        while let Some(sha) = candidates.pop_front() {
            let blobs = self.blobs.clone();
            // One transaction per content: the candidate's row stays locked while the content
            // is removed, so a run naming it meanwhile waits, then finds it gone.
            let content = sha.clone();
            let gone = self.write(move |db| {
                let sha = content;
                lock_content(db, &sha)?;
                super::chunks::lock_pack(db, &sha)?;
                if db.query("DELETE FROM blob_gc WHERE sha256 = ?1 RETURNING sha256", args![sha])?.is_empty() || referrers(db, &sha)? > 0 {
                    return Ok(None);
                }
                // A chunked content lets go of its chunks, a chunk of its pack; those nothing else
                // names go next.
                let chunks = super::chunks::release(db, &sha)?;
                blobs.remove(&sha)?;
                Ok(Some((sha, chunks)))
            });
            match gone {
                Ok(Some((sha, chunks))) => {
                    removed.push(sha);
                    candidates.extend(chunks);
                }
                Ok(None) => {}
                // Left listed for the next pass; the others go on.
                Err(e) => tracing::warn!("content {sha} stays for now: {}", e.message),
            }
        }
        Ok(removed)
    }

    fn list_run_files(&self, path: &RunPath) -> Result<Vec<FileInfo>> {
        path.validate()?;
        self.read(|db| {
            let pk = run_pk(db, path)?;
            db.query("SELECT path, size, sha256, updated_at FROM run_files WHERE run_pk = ?1 ORDER BY path", args![pk])?
                .iter()
                .map(|r| Ok(FileInfo { path: r.string(0)?, size: r.i64(1)? as u64, sha256: r.string(2)?, updated_at: Timestamp(r.i64(3)?) }))
                .collect()
        })
    }

    fn get_run_file(&self, path: &RunPath, file_path: &str) -> Result<FileInfo> {
        self.list_run_files(path)?
            .into_iter()
            .find(|f| f.path == file_path)
            .ok_or_else(|| CodedError::new(ErrorCode::FileNotFound, format!("run {path} has no file {file_path:?}")))
    }

    fn content_size(&self, sha256: &str) -> Result<Option<u64>> {
        self.chunked_content_size(sha256)
    }

    fn open_content(&self, sha256: &str) -> Result<Box<dyn std::io::Read + Send>> {
        self.open_chunked(sha256)
    }

    fn missing_chunks(&self, shas: &[String]) -> Result<Vec<String>> {
        self.chunks_missing(shas)
    }

    fn store_chunks(&self, chunks: &[(String, &[u8])]) -> Result<cairn_types::api::UploadBatchResult> {
        SqlStore::store_chunks(self, chunks)
    }

    fn index_chunks(&self, sha256: &str) -> Result<usize> {
        self.index(sha256)
    }

    fn compose_content(&self, sha256: &str, size: u64, chunks: &[cairn_types::api::ChunkRef], now: Timestamp) -> Result<crate::BlobRef> {
        self.compose(sha256, size, chunks, now)
    }
}

impl Leases for SqlStore {
    fn try_lease(&self, name: &str, holder: &str, now: Timestamp, ttl: std::time::Duration) -> Result<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let until = now.micros().saturating_add(ttl.as_micros().min(i64::MAX as u128) as i64);
        self.write(move |db| {
            // Taken when free, lapsed, or already ours; the row comes back only then.
            let rows = db.query(
                "INSERT INTO leases (name, holder, until) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 WHERE leases.until < ?4 OR leases.holder = excluded.holder
                 RETURNING holder",
                args![name, holder, until, now.micros()],
            )?;
            Ok(!rows.is_empty())
        })
    }

    fn release(&self, name: &str, holder: &str) -> Result<()> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |db| {
            db.execute("DELETE FROM leases WHERE name = ?1 AND holder = ?2", args![name, holder])?;
            Ok(())
        })
    }

    fn try_leases(&self, names: &[String], holder: &str, now: Timestamp, ttl: std::time::Duration) -> Result<()> {
        let (names, holder) = (names.to_vec(), holder.to_owned());
        let until = now.micros().saturating_add(ttl.as_micros().min(i64::MAX as u128) as i64);
        self.write(move |db| {
            for name in &names {
                db.execute(
                    "INSERT INTO leases (name, holder, until) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                     WHERE leases.until < ?4 OR leases.holder = excluded.holder",
                    args![name, holder, until, now.micros()],
                )?;
            }
            Ok(())
        })
    }

    fn holds(&self, name: &str, holder: &str, now: Timestamp) -> Result<bool> {
        self.read(|db| Ok(db.opt_row("SELECT 1 FROM leases WHERE name = ?1 AND holder = ?2 AND until >= ?3", args![name, holder, now.micros()])?.is_some()))
    }
}
