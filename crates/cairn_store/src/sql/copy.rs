//! Copies one store into another (`cairn migrate`): the embedded store onto PostgreSQL and S3, or
//! any SQL store into any other. Runs go one at a time, each in one transaction of the target, so a
//! copy stopped anywhere holds whole runs only, and running it again continues with the runs it
//! lacks. Forks keep sharing their sources' chunks, rewinds keep their archives, and file contents
//! are copied into the target's blob store before the run that names them.

use std::collections::HashMap;

use cairn_types::RunPath;
use cairn_types::error::{CodedError, ErrorCode};

use super::runs::path_at;
use super::{Cell, Db, Row, SqlStore, ToParam, args};
use crate::{BlobStore, Result, Store};

/// Columns copied as they are, per table (keys and references are mapped apart).
const RUN_COLUMNS: &str = "run_id, seq, name, state, config, summary, tags, notes, grp, job_type, metadata, metric_defs,
    created_at, started_at, heartbeat_at, finished_at, exit_code, last_step, stop_requested, off_history, off_summary,
    off_config, off_system, off_console, off_events, deleted_at, active_us, session_at, preempting_at";
const KEY_COLUMNS: &str = "stream, name, path, count, num_count, nan_count, min, max, sum, first_step, last_step, first_value, last_value";
const CHUNK_COLUMNS: &str = "start_step, end_step, count, num_count, nan_count, min, max, sum, last, data";
const CONSOLE_COLUMNS: &str = "line, stream, ts, text";
const FILE_COLUMNS: &str = "path, sha256, size, updated_at";
const ALERT_COLUMNS: &str = "time, title, text, level, delivery, attempts, next_attempt_at, last_error, delivered_to";

/// How far a copy is.
#[derive(Debug, Clone, Default)]
pub struct CopyProgress {
    /// Runs in the source (rewind archives included).
    pub runs: u64,
    /// Runs the target has now.
    pub done: u64,
    /// Of those, runs it had before this copy started.
    pub already: u64,
    /// Bytes of file contents copied.
    pub blob_bytes: u64,
    /// The run being copied.
    pub current: Option<RunPath>,
}

/// Rows per table on one side, as the final check counts them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counts {
    pub runs: u64,
    pub keys: u64,
    pub points: u64,
    pub console_lines: u64,
    pub files: u64,
    pub alerts: u64,
}

impl Counts {
    pub fn of(store: &SqlStore) -> Result<Counts> {
        store.read(|db| {
            let one = |sql: &str| -> Result<u64> { Ok(db.row(sql, &[])?.i64(0)? as u64) };
            Ok(Counts {
                runs: one("SELECT count(*) FROM runs")?,
                keys: one("SELECT count(*) FROM run_keys")?,
                points: one("SELECT CAST(coalesce(sum(count), 0) AS BIGINT) FROM chunks")?,
                console_lines: one("SELECT count(*) FROM console_lines")?,
                files: one("SELECT count(*) FROM run_files")?,
                alerts: one("SELECT count(*) FROM alerts")?,
            })
        })
    }

    /// Each table as `(name, count)`.
    pub fn tables(&self) -> [(&'static str, u64); 6] {
        [("runs", self.runs), ("keys", self.keys), ("points", self.points), ("console lines", self.console_lines), ("files", self.files), ("alerts", self.alerts)]
    }
}

/// A run of the source, with what it depends on.
#[derive(Debug, Clone)]
struct SourceRun {
    pk: i64,
    path: RunPath,
    /// Runs that must be in the target first: the run it archives, the runs whose chunks it shares.
    needs: Vec<i64>,
}

const PATH_JOIN: &str = "JOIN projects p ON p.project_pk = r.project_pk JOIN entities e ON e.entity_pk = p.entity_pk";

/// The source's runs in an order where each comes after what it needs.
fn plan(db: &dyn Db) -> Result<Vec<SourceRun>> {
    let mut runs: Vec<SourceRun> = Vec::new();
    let mut index = HashMap::new();
    for r in db.query(&format!("SELECT r.run_pk, e.name, p.name, r.run_id, r.archive_of FROM runs r {PATH_JOIN} ORDER BY r.run_pk"), &[])? {
        index.insert(r.i64(0)?, runs.len());
        runs.push(SourceRun { pk: r.i64(0)?, path: path_at(&r, 1)?, needs: r.opt_i64(4)?.into_iter().collect() });
    }
    let shares = db.query(
        "SELECT DISTINCT k.run_pk, s.run_pk FROM chunks c JOIN run_keys k ON k.key_pk = c.key_pk
         JOIN run_keys s ON s.key_pk = c.shared_key WHERE c.shared_key IS NOT NULL",
        &[],
    )?;
    for r in shares {
        if let Some(&i) = index.get(&r.i64(0)?) {
            runs[i].needs.push(r.i64(1)?);
        }
    }
    // Depth first, dependencies before dependents; a cycle (there are none) would end the walk.
    let mut order = Vec::with_capacity(runs.len());
    let mut state = vec![0u8; runs.len()];
    fn visit(i: usize, runs: &[SourceRun], index: &HashMap<i64, usize>, state: &mut [u8], order: &mut Vec<usize>) {
        if state[i] != 0 {
            return;
        }
        state[i] = 1;
        for need in &runs[i].needs {
            if let Some(&j) = index.get(need) {
                visit(j, runs, index, state, order);
            }
        }
        state[i] = 2;
        order.push(i);
    }
    for i in 0..runs.len() {
        visit(i, &runs, &index, &mut state, &mut order);
    }
    Ok(order.into_iter().map(|i| runs[i].clone()).collect())
}

fn target_run_pk(db: &dyn Db, path: &RunPath) -> Result<Option<i64>> {
    db.opt_row(&format!("SELECT r.run_pk FROM runs r {PATH_JOIN} WHERE e.name = ?1 AND p.name = ?2 AND r.run_id = ?3"), args![path.entity, path.project, path.run_id])?
        .map(|r| r.i64(0))
        .transpose()
}

/// Everything of one run in the source.
struct RunRows {
    entity: Row,
    project: Row,
    run: Row,
    archive_of: Option<RunPath>,
    keys: Vec<(i64, Row)>,
    /// `(source key_pk, row, shared: (run, stream, name))`
    chunks: Vec<(i64, Row, Option<(RunPath, i64, String)>)>,
    console: Vec<Row>,
    files: Vec<Row>,
    alerts: Vec<Row>,
}

fn read_run(db: &dyn Db, pk: i64) -> Result<RunRows> {
    let entity = db.row(
        "SELECT e.name, e.created_at FROM runs r JOIN projects p ON p.project_pk = r.project_pk
         JOIN entities e ON e.entity_pk = p.entity_pk WHERE r.run_pk = ?1",
        args![pk],
    )?;
    let project = db.row("SELECT p.name, p.created_at, p.last_activity_at, p.run_seq FROM runs r JOIN projects p ON p.project_pk = r.project_pk WHERE r.run_pk = ?1", args![pk])?;
    let run = db.row(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_pk = ?1"), args![pk])?;
    let archive_of = db
        .opt_row(&format!("SELECT e.name, p.name, r.run_id FROM runs a JOIN runs r ON r.run_pk = a.archive_of {PATH_JOIN} WHERE a.run_pk = ?1"), args![pk])?
        .map(|r| path_at(&r, 0))
        .transpose()?;
    let mut keys = Vec::new();
    for r in db.query(&format!("SELECT key_pk, {KEY_COLUMNS} FROM run_keys WHERE run_pk = ?1 ORDER BY key_pk"), args![pk])? {
        keys.push((r.i64(0)?, Row(r.0[1..].to_vec())));
    }
    let mut chunks = Vec::new();
    for r in db.query(
        &format!(
            "SELECT c.key_pk, e.name, p.name, r.run_id, s.stream, s.name, {}
             FROM chunks c JOIN run_keys k ON k.key_pk = c.key_pk
             LEFT JOIN run_keys s ON s.key_pk = c.shared_key
             LEFT JOIN runs r ON r.run_pk = s.run_pk LEFT JOIN projects p ON p.project_pk = r.project_pk
             LEFT JOIN entities e ON e.entity_pk = p.entity_pk
             WHERE k.run_pk = ?1 ORDER BY c.key_pk, c.start_step",
            CHUNK_COLUMNS.split(", ").map(|c| format!("c.{c}")).collect::<Vec<_>>().join(", ")
        ),
        args![pk],
    )? {
        let shared = match r.cell(1) {
            Cell::Null => None,
            _ => Some((path_at(&r, 1)?, r.i64(4)?, r.string(5)?)),
        };
        chunks.push((r.i64(0)?, Row(r.0[6..].to_vec()), shared));
    }
    Ok(RunRows {
        entity,
        project,
        run,
        archive_of,
        keys,
        chunks,
        console: db.query(&format!("SELECT {CONSOLE_COLUMNS} FROM console_lines WHERE run_pk = ?1 ORDER BY line"), args![pk])?,
        files: db.query(&format!("SELECT {FILE_COLUMNS} FROM run_files WHERE run_pk = ?1 ORDER BY path"), args![pk])?,
        alerts: db.query(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE run_pk = ?1 ORDER BY alert_pk"), args![pk])?,
    })
}

/// `INSERT INTO table (first, columns) VALUES (?1, ...)` with `first` and the row's cells.
fn insert(db: &dyn Db, table: &str, first: Option<(&str, i64)>, columns: &str, row: &Row, returning: Option<&str>) -> Result<Option<i64>> {
    let mut names: Vec<&str> = Vec::new();
    let mut params = Vec::new();
    if let Some((name, value)) = first {
        names.push(name);
        params.push(super::Param::Int(value));
    }
    names.extend(columns.split(',').map(str::trim));
    params.extend(row.0.iter().map(|c| c.param()));
    let places: Vec<String> = (1..=params.len()).map(|i| format!("?{i}")).collect();
    let sql = format!("INSERT INTO {table} ({}) VALUES ({}){}", names.join(", "), places.join(", "), returning.map(|r| format!(" RETURNING {r}")).unwrap_or_default());
    match returning {
        Some(_) => Ok(Some(db.row(&sql, &params)?.i64(0)?)),
        None => db.execute(&sql, &params).map(|_| None),
    }
}

fn write_run(db: &dyn Db, rows: &RunRows) -> Result<()> {
    let entity = rows.entity.str(0)?;
    db.execute("INSERT INTO entities (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING", args![entity, rows.entity.i64(1)?])?;
    let p = &rows.project;
    db.execute(
        "INSERT INTO projects (entity_pk, name, created_at, last_activity_at, run_seq)
         SELECT entity_pk, ?2, ?3, ?4, ?5 FROM entities WHERE name = ?1
         ON CONFLICT (entity_pk, name) DO UPDATE SET run_seq = CASE WHEN projects.run_seq > excluded.run_seq
            THEN projects.run_seq ELSE excluded.run_seq END",
        args![entity, p.str(0)?, p.i64(1)?, p.opt_i64(2)?, p.i64(3)?],
    )?;
    let project_pk = super::query::project_pk(db, entity, p.str(0)?)?;
    let run_pk = insert(db, "runs", Some(("project_pk", project_pk)), RUN_COLUMNS, &rows.run, Some("run_pk"))?.expect("returning");
    if let Some(main) = &rows.archive_of {
        let main_pk = target_run_pk(db, main)?.ok_or_else(|| CodedError::new(ErrorCode::Internal, format!("the run {main} that this archive belongs to is not copied yet")))?;
        db.execute("UPDATE runs SET archive_of = ?2 WHERE run_pk = ?1", args![run_pk, main_pk])?;
    }
    let mut keys = HashMap::new();
    for (source_pk, row) in &rows.keys {
        keys.insert(*source_pk, insert(db, "run_keys", Some(("run_pk", run_pk)), KEY_COLUMNS, row, Some("key_pk"))?.expect("returning"));
    }
    let mut shared_keys: HashMap<(RunPath, i64, String), i64> = HashMap::new();
    for (source_key, row, shared) in &rows.chunks {
        let key = *keys.get(source_key).ok_or_else(|| CodedError::new(ErrorCode::Internal, "a chunk of a key the run lacks"))?;
        insert(db, "chunks", Some(("key_pk", key)), CHUNK_COLUMNS, row, None)?;
        if let Some(shared) = shared {
            let target = match shared_keys.get(shared) {
                Some(&k) => k,
                None => {
                    let (path, stream, name) = shared;
                    let owner =
                        target_run_pk(db, path)?.ok_or_else(|| CodedError::new(ErrorCode::Internal, format!("run {path}, whose chunks this one shares, is not copied yet")))?;
                    let k = db.row("SELECT key_pk FROM run_keys WHERE run_pk = ?1 AND stream = ?2 AND name = ?3", args![owner, *stream, name])?.i64(0)?;
                    shared_keys.insert(shared.clone(), k);
                    k
                }
            };
            db.execute("UPDATE chunks SET shared_key = ?3 WHERE key_pk = ?1 AND start_step = ?2", args![key, row.i64(0)?, target])?;
        }
    }
    for row in &rows.console {
        insert(db, "console_lines", Some(("run_pk", run_pk)), CONSOLE_COLUMNS, row, None)?;
    }
    for row in &rows.files {
        insert(db, "run_files", Some(("run_pk", run_pk)), FILE_COLUMNS, row, None)?;
    }
    for row in &rows.alerts {
        insert(db, "alerts", Some(("run_pk", run_pk)), ALERT_COLUMNS, row, None)?;
    }
    Ok(())
}

/// Copies a content from one store to another, whole or in chunks as the source holds it;
/// returns the bytes copied (0 when the target has it already).
fn copy_content(from: &SqlStore, to: &SqlStore, sha256: &str) -> Result<u64> {
    if crate::FileStore::content_size(to, sha256)?.is_some() {
        return Ok(0);
    }
    if from.blobs().exists(sha256)? {
        return copy_blob(from.blobs(), to.blobs(), sha256);
    }
    let (size, list, located) = from.read(|db| {
        let size =
            super::chunks::chunked_size(db, sha256)?.ok_or_else(|| CodedError::new(ErrorCode::Internal, format!("content {sha256} is named in the source store but not there")))?;
        Ok((size, super::chunks::chunk_list(db, sha256)?, super::chunks::located(db, sha256)?))
    })?;
    // The packs whole (each checked on its way in), then where each chunk is in them.
    let mut copied = 0;
    let mut by_pack: HashMap<String, Vec<(String, u64, u64)>> = HashMap::new();
    for l in located {
        by_pack.entry(l.piece.blob).or_default().push((l.sha256, l.piece.offset, l.piece.size));
    }
    for (pack, chunks) in by_pack {
        copied += copy_blob(from.blobs(), to.blobs(), &pack)?;
        to.write(move |db| super::chunks::record_chunks(db, &pack, &chunks))?;
    }
    let sha = sha256.to_owned();
    to.write(move |db| super::chunks::write_verified_list(db, &sha, size, &list))?;
    Ok(copied)
}

/// Copies a content from one blob store to another, through a scratch file; returns its size, or
/// 0 when the target has it already.
fn copy_blob(from: &dyn BlobStore, to: &dyn BlobStore, sha256: &str) -> Result<u64> {
    if to.exists(sha256)? {
        return Ok(0);
    }
    let mut reader = from.open(sha256)?;
    let mut scratch = match to.scratch_dir() {
        Some(dir) => tempfile::NamedTempFile::new_in(dir),
        None => tempfile::NamedTempFile::new(),
    }
    .map_err(|e| CodedError::new(ErrorCode::Internal, format!("cannot create a scratch file: {e}")))?;
    let size = std::io::copy(&mut reader, scratch.as_file_mut()).map_err(|e| CodedError::new(ErrorCode::Internal, format!("cannot copy content {sha256}: {e}")))?;
    // Hashed again on the way in: a content that was damaged in the source is not copied.
    let blob = to.put_file(scratch.path())?;
    if blob.sha256 != sha256 {
        return Err(CodedError::new(ErrorCode::Internal, format!("content {sha256} in the source store reads as {}: it is damaged", blob.sha256)));
    }
    Ok(size)
}

/// Copies every run of `from` that `to` lacks, at most `max_runs` of them; calls `progress` before
/// and after each. Returns the progress at the end.
pub fn copy_store(from: &SqlStore, to: &SqlStore, max_runs: Option<u64>, progress: &mut dyn FnMut(&CopyProgress)) -> Result<CopyProgress> {
    let accounts = from.read(read_accounts)?;
    to.write(move |db| write_accounts(db, &accounts))?;
    let order = from.read(plan)?;
    let mut state = CopyProgress { runs: order.len() as u64, ..Default::default() };
    let mut copied = 0u64;
    for source in order {
        if to.read(|db| target_run_pk(db, &source.path))?.is_some() {
            state.done += 1;
            state.already += 1;
            continue;
        }
        if max_runs.is_some_and(|max| copied >= max) {
            break;
        }
        state.current = Some(source.path.clone());
        progress(&state);
        let rows = from.read(|db| read_run(db, source.pk))?;
        for file in &rows.files {
            state.blob_bytes += copy_content(from, to, file.str(1)?)?;
        }
        to.write(move |db| write_run(db, &rows))?;
        copied += 1;
        state.done += 1;
        progress(&state);
    }
    state.current = None;
    // Artifacts once every run is there: their lineage names runs.
    if state.done == state.runs {
        state.blob_bytes += copy_artifacts(from, to)?;
    }
    // Public projects stay public (the projects exist once their runs are copied).
    for (entity, project) in crate::AccountStore::public_projects(from)? {
        match crate::AccountStore::set_visibility(to, &entity, &project, crate::Visibility::Public) {
            Err(e) if e.code == ErrorCode::ProjectNotFound => {}
            other => other?,
        }
    }
    copy_sweeps(from, to)?;
    // Workspace layouts, each user's, for the projects there.
    let layouts = from.read(|db| {
        db.query(
            "SELECT e.name, p.name, w.viewer, w.layout, w.updated_at FROM workspaces w
             JOIN projects p ON p.project_pk = w.project_pk JOIN entities e ON e.entity_pk = p.entity_pk ORDER BY 1, 2, 3",
            &[],
        )
    })?;
    for row in layouts {
        let layout: serde_json::Value = serde_json::from_str(&row.string(3)?).unwrap_or(serde_json::Value::Null);
        let (entity, project, viewer) = (row.string(0)?, row.string(1)?, row.string(2)?);
        match crate::WorkspaceStore::save_workspace(to, &entity, &project, &viewer, &layout, cairn_types::Timestamp(row.i64(4)?)) {
            Err(e) if e.code == ErrorCode::ProjectNotFound || e.code == ErrorCode::InvalidBody => {}
            other => other?,
        }
    }
    Ok(state)
}

/// The artifacts of the source that the target lacks, version by version (numbers, aliases,
/// lineage kept; contents copied first). Returns the bytes of contents copied.
fn copy_artifacts(from: &SqlStore, to: &SqlStore) -> Result<u64> {
    let collections = from.read(|db| {
        db.query(
            "SELECT c.collection_pk, e.name, p.name, c.name, c.kind, c.created_at, c.updated_at FROM artifact_collections c
             JOIN projects p ON p.project_pk = c.project_pk JOIN entities e ON e.entity_pk = p.entity_pk ORDER BY c.collection_pk",
            &[],
        )
    })?;
    let mut copied = 0u64;
    for c in collections {
        let source_pk = c.i64(0)?;
        let versions = from.read(|db| {
            let mut out = Vec::new();
            for v in db.query(
                "SELECT v.version_pk, v.version_index, v.digest, v.size, v.file_count, v.description, v.metadata, v.created_at,
                    le.name, lp.name, lr.run_id
                 FROM artifact_versions v LEFT JOIN runs lr ON lr.run_pk = v.logged_by
                 LEFT JOIN projects lp ON lp.project_pk = lr.project_pk LEFT JOIN entities le ON le.entity_pk = lp.entity_pk
                 WHERE v.collection_pk = ?1 ORDER BY v.version_index",
                args![source_pk],
            )? {
                let pk = v.i64(0)?;
                let entries = db.query("SELECT path, digest, size, ref FROM artifact_entries WHERE version_pk = ?1", args![pk])?;
                let aliases = db.column_string("SELECT alias FROM artifact_aliases WHERE version_pk = ?1", args![pk])?;
                let users = db.query(
                    &format!("SELECT e.name, p.name, r.run_id, u.kind FROM artifact_usage u JOIN runs r ON r.run_pk = u.run_pk {PATH_JOIN} WHERE u.version_pk = ?1"),
                    args![pk],
                )?;
                out.push((v, entries, aliases, users));
            }
            Ok(out)
        })?;
        for (_, entries, _, _) in &versions {
            for e in entries.iter().filter(|e| matches!(e.cell(3), super::Cell::Null)) {
                copied += copy_content(from, to, e.str(1)?)?;
            }
        }
        to.write(move |db| {
            let project_pk = super::runs::ensure_project(db, c.str(1)?, c.str(2)?, cairn_types::Timestamp(c.i64(5)?))?;
            db.execute(
                "INSERT INTO artifact_collections (project_pk, name, kind, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (project_pk, name) DO NOTHING",
                args![project_pk, c.str(3)?, c.str(4)?, c.i64(5)?, c.i64(6)?],
            )?;
            let collection_pk = db.row("SELECT collection_pk FROM artifact_collections WHERE project_pk = ?1 AND name = ?2", args![project_pk, c.str(3)?])?.i64(0)?;
            for (v, entries, aliases, users) in &versions {
                if db.opt_row("SELECT 1 FROM artifact_versions WHERE collection_pk = ?1 AND version_index = ?2", args![collection_pk, v.i64(1)?])?.is_some() {
                    continue;
                }
                let logged_by = match v.cell(8) {
                    super::Cell::Null => None,
                    _ => target_run_pk(db, &path_at(v, 8)?)?,
                };
                let pk = db
                    .row(
                        "INSERT INTO artifact_versions (collection_pk, version_index, digest, size, file_count, description, metadata, created_at, logged_by)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING version_pk",
                        args![collection_pk, v.i64(1)?, v.str(2)?, v.i64(3)?, v.i64(4)?, v.opt_string(5)?, v.str(6)?, v.i64(7)?, logged_by],
                    )?
                    .i64(0)?;
                for e in entries {
                    db.execute(
                        "INSERT INTO artifact_entries (version_pk, path, digest, size, ref) VALUES (?1, ?2, ?3, ?4, ?5)",
                        args![pk, e.str(0)?, e.str(1)?, e.i64(2)?, e.opt_string(3)?],
                    )?;
                }
                for alias in aliases {
                    db.execute(
                        "INSERT INTO artifact_aliases (collection_pk, alias, version_pk) VALUES (?1, ?2, ?3)
                         ON CONFLICT (collection_pk, alias) DO UPDATE SET version_pk = excluded.version_pk",
                        args![collection_pk, alias, pk],
                    )?;
                }
                for u in users {
                    if let Some(run) = target_run_pk(db, &path_at(u, 0)?)? {
                        db.execute(
                            "INSERT INTO artifact_usage (version_pk, run_pk, kind) VALUES (?1, ?2, ?3) ON CONFLICT (version_pk, run_pk, kind) DO NOTHING",
                            args![pk, run, u.str(3)?],
                        )?;
                    }
                }
            }
            Ok(())
        })?;
    }
    Ok(copied)
}

/// Users and teams (with password hashes), memberships, API keys (by hash) and the audit log.
/// Signed-in sessions are not copied: users sign in again.
struct AccountRows {
    accounts: Vec<Row>,
    memberships: Vec<Row>,
    keys: Vec<Row>,
    audit: Vec<Row>,
}

fn read_accounts(db: &dyn Db) -> Result<AccountRows> {
    Ok(AccountRows {
        accounts: db.query(
            "SELECT e.name, e.created_at, a.kind, a.admin, a.password_hash, a.created_at FROM accounts a
             JOIN entities e ON e.entity_pk = a.entity_pk ORDER BY a.entity_pk",
            &[],
        )?,
        memberships: db.query(
            "SELECT t.name, u.name, m.role FROM memberships m JOIN entities t ON t.entity_pk = m.team_pk
             JOIN entities u ON u.entity_pk = m.user_pk",
            &[],
        )?,
        keys: db.query(
            "SELECT e.name, k.name, k.prefix, k.hash, k.created_at, k.expires_at, k.last_used_at, k.revoked_at
             FROM api_keys k JOIN entities e ON e.entity_pk = k.user_pk ORDER BY k.key_pk",
            &[],
        )?,
        audit: db.query("SELECT at, actor, action, target, detail FROM audit_log ORDER BY audit_pk", &[])?,
    })
}

fn write_accounts(db: &dyn Db, rows: &AccountRows) -> Result<()> {
    let entity_pk = |name: &str| -> Result<i64> { db.row("SELECT entity_pk FROM entities WHERE name = ?1", args![name])?.i64(0) };
    for a in &rows.accounts {
        db.execute("INSERT INTO entities (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING", args![a.str(0)?, a.i64(1)?])?;
        db.execute(
            "INSERT INTO accounts (entity_pk, kind, admin, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (entity_pk) DO NOTHING",
            args![entity_pk(a.str(0)?)?, a.str(2)?, a.i64(3)?, a.opt_string(4)?, a.i64(5)?],
        )?;
    }
    for m in &rows.memberships {
        db.execute(
            "INSERT INTO memberships (team_pk, user_pk, role) VALUES (?1, ?2, ?3) ON CONFLICT (team_pk, user_pk) DO NOTHING",
            args![entity_pk(m.str(0)?)?, entity_pk(m.str(1)?)?, m.str(2)?],
        )?;
    }
    for k in &rows.keys {
        db.execute(
            "INSERT INTO api_keys (user_pk, name, prefix, hash, created_at, expires_at, last_used_at, revoked_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (hash) DO NOTHING",
            args![entity_pk(k.str(0)?)?, k.str(1)?, k.str(2)?, k.str(3)?, k.i64(4)?, k.opt_i64(5)?, k.opt_i64(6)?, k.opt_i64(7)?],
        )?;
    }
    // Once: a copy that is run again finds the log there.
    if db.opt_row("SELECT 1 FROM audit_log LIMIT 1", &[])?.is_none() {
        for e in &rows.audit {
            insert(db, "audit_log", None, "at, actor, action, target, detail", e, None)?;
        }
    }
    Ok(())
}

/// Sweeps, their trials and hyperband's judgements, that the target lacks (by project and sweep id), as they are.
fn copy_sweeps(from: &SqlStore, to: &SqlStore) -> Result<()> {
    let sweeps = from.read(|db| {
        db.query(
            "SELECT e.name, p.name, s.sweep_id, s.config, s.state, s.created_at, s.sweep_pk FROM sweeps s
             JOIN projects p ON p.project_pk = s.project_pk JOIN entities e ON e.entity_pk = p.entity_pk ORDER BY s.sweep_pk",
            &[],
        )
    })?;
    for sweep in sweeps {
        let sweep_pk = sweep.i64(6)?;
        let trials = from.read(|db| db.query("SELECT seq, run_id, grid_index, params, agent, assigned_at FROM sweep_trials WHERE sweep_pk = ?1 ORDER BY seq", args![sweep_pk]))?;
        let decisions = from
            .read(|db| db.query("SELECT run_id, bracket, value, threshold, rank, reached, kept, stopped, decided_at FROM sweep_decisions WHERE sweep_pk = ?1", args![sweep_pk]))?;
        to.write(move |db| {
            let (entity, project, sweep_id) = (sweep.string(0)?, sweep.string(1)?, sweep.string(2)?);
            let project_pk = super::runs::ensure_project(db, &entity, &project, cairn_types::Timestamp(sweep.i64(5)?))?;
            if db.opt_row("SELECT 1 FROM sweeps WHERE project_pk = ?1 AND sweep_id = ?2", args![project_pk, sweep_id])?.is_some() {
                return Ok(());
            }
            let pk = db
                .row(
                    "INSERT INTO sweeps (project_pk, sweep_id, config, state, created_at) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING sweep_pk",
                    args![project_pk, sweep_id, sweep.string(3)?, sweep.string(4)?, sweep.i64(5)?],
                )?
                .i64(0)?;
            for t in &trials {
                db.execute(
                    "INSERT INTO sweep_trials (sweep_pk, seq, run_id, grid_index, params, agent, assigned_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    args![pk, t.i64(0)?, t.string(1)?, t.opt_i64(2)?, t.string(3)?, t.string(4)?, t.i64(5)?],
                )?;
            }
            for d in &decisions {
                db.execute(
                    "INSERT INTO sweep_decisions (sweep_pk, run_id, bracket, value, threshold, rank, reached, kept, stopped, decided_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    args![pk, d.string(0)?, d.i64(1)?, d.f64_or(2, f64::NAN)?, d.f64_or(3, f64::NAN)?, d.i64(4)?, d.i64(5)?, d.i64(6)?, d.i64(7)?, d.i64(8)?],
                )?;
            }
            Ok(())
        })?;
    }
    Ok(())
}
