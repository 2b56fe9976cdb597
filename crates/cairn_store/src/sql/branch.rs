//! Fork and rewind: a run's history cut at a step.
//!
//! A fork's history up to its step is its source's, without copying points: a full chunk
//! (`TARGET_CHUNK_POINTS` points, never changed again) entirely before the cut is shared, as a
//! row of the fork that names the source's key (`shared_key`) and holds no data; only the chunk
//! across the cut is decoded and written again, cut. A rewind moves the chunks after the cut to
//! a hidden archive run (`runs.archive_of`), splitting the one across it, so the history after
//! the step stays readable. Whatever would leave a shared chunk without its data (a rewind that
//! splits it, a purge) first gives the sharing forks their own copy.

use super::series::{KeyRow, all_keys, chunk_bytes, insert_chunks, insert_key, set_totals};
use super::{Db, args};
use crate::Result;
use crate::chunk::{self, Points, TARGET_CHUNK_POINTS};
use crate::ingest::{self, KeyColumn, KeyTotals, RunDoc};
use cairn_types::error::{CodedError, ErrorCode};
use cairn_types::value::{Map, Value};
use cairn_types::wire::KeyStream;
use cairn_types::{Timestamp, map};

#[derive(Debug, Clone, Copy)]
struct ChunkMeta {
    start: i64,
    end: i64,
    count: i64,
}

fn chunks_of(db: &dyn Db, key_pk: i64) -> Result<Vec<ChunkMeta>> {
    db.query("SELECT start_step, end_step, count FROM chunks WHERE key_pk = ?1 ORDER BY start_step", args![key_pk])?
        .iter()
        .map(|r| Ok(ChunkMeta { start: r.i64(0)?, end: r.i64(1)?, count: r.i64(2)? }))
        .collect()
}

fn decode(db: &dyn Db, key_pk: i64, chunk: ChunkMeta) -> Result<Points> {
    chunk::decode(&chunk_bytes(db, key_pk, chunk.start)?, chunk.start)
}

fn totals_of(key: &KeyRow, points: &Points) -> Option<KeyTotals> {
    if points.steps.is_empty() {
        return None;
    }
    let column = KeyColumn { stream: key.stream, name: key.name.clone(), path: key.path.clone(), steps: points.steps.clone(), values: points.values.clone() };
    Some(KeyTotals::from_column(&column))
}

fn add(total: &mut Option<KeyTotals>, part: Option<KeyTotals>) {
    match (total.as_mut(), part) {
        (Some(t), Some(p)) => t.merge(&p),
        (None, Some(p)) => *total = Some(p),
        (_, None) => {}
    }
}

/// Points of `points` with steps in `[lo, hi]`.
fn slice(points: &Points, lo: i64, hi: i64) -> Points {
    let mut out = Points { steps: Vec::new(), values: Vec::new() };
    for (step, value) in points.steps.iter().zip(&points.values) {
        if (lo..=hi).contains(step) {
            out.steps.push(*step);
            out.values.push(value.clone());
        }
    }
    out
}

fn new_key(db: &dyn Db, run_pk: i64, key: &KeyRow, totals: &KeyTotals) -> Result<i64> {
    insert_key(db, run_pk, key.stream, &key.name, &key.path, totals)
}

/// Gives the chunks that share `(key_pk, start)` (or any chunk of `key_pk` when `start` is
/// `None`) their own copy of the data.
pub(crate) fn unshare(db: &dyn Db, key_pk: i64, start: Option<i64>) -> Result<()> {
    db.execute(
        "UPDATE chunks SET data = (SELECT o.data FROM chunks o WHERE o.key_pk = chunks.shared_key AND o.start_step = chunks.start_step),
            shared_key = NULL
         WHERE shared_key = ?1 AND (CAST(?2 AS BIGINT) IS NULL OR start_step = ?2)",
        args![key_pk, start],
    )?;
    Ok(())
}

/// The summary recomputed from the run's history keys as a batch would, after the entries of
/// `before` (the history keys it had) are taken out; what the user set explicitly stays.
fn recompute_summary(db: &dyn Db, run_pk: i64, doc: &mut RunDoc, before: &[Vec<String>]) -> Result<()> {
    for path in before {
        cairn_types::value::remove_path(&mut doc.summary, path);
    }
    let keys = all_keys(db, run_pk)?;
    let touched: Vec<(KeyColumn, KeyTotals)> = keys
        .into_iter()
        .filter(|k| k.stream == KeyStream::History)
        .map(|k| {
            let column = KeyColumn { stream: k.stream, name: k.name.clone(), path: k.path.clone(), steps: Vec::new(), values: Vec::new() };
            (column, k.totals)
        })
        .collect();
    ingest::finalize(doc, &touched, Vec::new());
    Ok(())
}

fn beyond(run_id: &str, step: i64, last: Option<i64>) -> CodedError {
    match last {
        Some(last) => CodedError::new(ErrorCode::InvalidStep, format!("step {step} is beyond run {run_id:?}'s last step {last}; choose a step from 0 to {last}")),
        None => CodedError::new(ErrorCode::InvalidStep, format!("run {run_id:?} has no history to continue from step {step}")),
    }
}

/// Makes `dst` a fork of `src` at `step`: its history keys up to the step (full chunks shared),
/// its summary recomputed from them, its last step the fork's step.
pub(crate) fn fork(db: &dyn Db, src_pk: i64, src: &RunDoc, src_id: &str, dst_pk: i64, dst: &mut RunDoc, step: i64) -> Result<()> {
    if src.last_step.is_none_or(|last| step > last) {
        return Err(beyond(src_id, step, src.last_step));
    }
    // The runs whose chunks the source shares (a fork of a fork shares the first source's) are
    // locked too: a purge or rewind of them waits for this fork, then sees its rows.
    if db.dialect() == super::Dialect::Postgres {
        db.query(
            "SELECT r.run_pk FROM runs r WHERE r.run_pk IN (SELECT k.run_pk FROM run_keys k WHERE k.key_pk IN
                (SELECT c.shared_key FROM chunks c JOIN run_keys o ON o.key_pk = c.key_pk WHERE o.run_pk = ?1 AND c.shared_key IS NOT NULL))
             ORDER BY r.run_pk FOR SHARE",
            args![src_pk],
        )?;
    }
    for key in all_keys(db, src_pk)? {
        if key.stream != KeyStream::History || key.totals.first_step > step {
            continue;
        }
        let mut totals: Option<KeyTotals> = None;
        let mut shared: Vec<ChunkMeta> = Vec::new();
        let mut owned = Points { steps: Vec::new(), values: Vec::new() };
        let mut pending_owned: Vec<Points> = Vec::new();
        for chunk in chunks_of(db, key.key_pk)? {
            if chunk.start > step {
                break;
            }
            let points = decode(db, key.key_pk, chunk)?;
            if chunk.end <= step && chunk.count as usize >= TARGET_CHUNK_POINTS {
                add(&mut totals, totals_of(&key, &points));
                // Points written before (a partial chunk, as an archive starts with) become
                // chunks of their own first, ending before this one: chunks never overlap.
                if !owned.steps.is_empty() {
                    pending_owned.push(std::mem::replace(&mut owned, Points { steps: Vec::new(), values: Vec::new() }));
                }
                shared.push(chunk);
            } else {
                let kept = slice(&points, i64::MIN, step);
                add(&mut totals, totals_of(&key, &kept));
                owned.steps.extend(kept.steps);
                owned.values.extend(kept.values);
            }
        }
        let Some(totals) = totals else { continue };
        let dst_key = new_key(db, dst_pk, &key, &totals)?;
        for chunk in shared {
            // The row names the chunk that holds the data: the source's, or the one it shares.
            db.execute(
                "INSERT INTO chunks (key_pk, start_step, end_step, count, num_count, nan_count, min, max, sum, last, data, shared_key)
                 SELECT ?1, start_step, end_step, count, num_count, nan_count, min, max, sum, last, ?4, coalesce(shared_key, key_pk)
                 FROM chunks WHERE key_pk = ?2 AND start_step = ?3",
                args![dst_key, key.key_pk, chunk.start, b"".as_slice()],
            )?;
        }
        for points in pending_owned.iter().chain(std::iter::once(&owned)) {
            insert_chunks(db, dst_key, points)?;
        }
    }
    dst.last_step = Some(step);
    dst.metric_defs = src.metric_defs.clone();
    dst.summary = Map::new();
    recompute_summary(db, dst_pk, dst, &[])?;
    dst.metadata.insert("fork".into(), Value::Map(map! {"run_id" => src_id, "step" => step}));
    crate::crash::point("fork");
    Ok(())
}

/// Rewinds a run to `step`: the history after it goes to a new archive run (`archive_pk`), the
/// run's keys and summary are recomputed, and it continues after the step.
pub(crate) fn rewind(db: &dyn Db, run_pk: i64, run_id: &str, doc: &mut RunDoc, archive_pk: i64, archive_id: &str, archive: &mut RunDoc, step: i64, now: Timestamp) -> Result<()> {
    if doc.last_step.is_none_or(|last| step > last) {
        return Err(beyond(run_id, step, doc.last_step));
    }
    let last = doc.last_step;
    let history_paths: Vec<Vec<String>> = all_keys(db, run_pk)?.into_iter().filter(|k| k.stream == KeyStream::History).map(|k| k.path).collect();
    for key in all_keys(db, run_pk)? {
        if key.stream != KeyStream::History || key.totals.last_step <= step {
            continue;
        }
        let mut kept: Option<KeyTotals> = None;
        let mut moved: Option<KeyTotals> = None;
        let mut archived = Points { steps: Vec::new(), values: Vec::new() };
        let mut archive_key: Option<i64> = None;
        let placeholder = key.totals.clone();
        for chunk in chunks_of(db, key.key_pk)? {
            let points = decode(db, key.key_pk, chunk)?;
            if chunk.end <= step {
                add(&mut kept, totals_of(&key, &points));
            } else if chunk.start > step {
                add(&mut moved, totals_of(&key, &points));
                let target = match archive_key {
                    Some(k) => k,
                    None => *archive_key.insert(new_key(db, archive_pk, &key, &placeholder)?),
                };
                // Forks that share this chunk follow it to the archive.
                db.execute("UPDATE chunks SET shared_key = ?3 WHERE shared_key = ?1 AND start_step = ?2", args![key.key_pk, chunk.start, target])?;
                db.execute("UPDATE chunks SET key_pk = ?3 WHERE key_pk = ?1 AND start_step = ?2", args![key.key_pk, chunk.start, target])?;
            } else {
                // The chunk across the cut: forks sharing it get their own copy first.
                unshare(db, key.key_pk, Some(chunk.start))?;
                db.execute("DELETE FROM chunks WHERE key_pk = ?1 AND start_step = ?2", args![key.key_pk, chunk.start])?;
                let before = slice(&points, i64::MIN, step);
                let after = slice(&points, step + 1, i64::MAX);
                add(&mut kept, totals_of(&key, &before));
                add(&mut moved, totals_of(&key, &after));
                insert_chunks(db, key.key_pk, &before)?;
                archived = after;
            }
        }
        if let Some(moved) = &moved {
            let target = match archive_key {
                Some(k) => k,
                None => new_key(db, archive_pk, &key, moved)?,
            };
            insert_chunks(db, target, &archived)?;
            set_totals(db, target, moved)?;
        }
        match kept {
            Some(kept) => set_totals(db, key.key_pk, &kept)?,
            None => {
                db.execute("DELETE FROM run_keys WHERE key_pk = ?1", args![key.key_pk])?;
            }
        }
    }
    archive.last_step = last;
    archive.metric_defs = doc.metric_defs.clone();
    recompute_summary(db, archive_pk, archive, &[])?;
    doc.last_step = Some(step);
    recompute_summary(db, run_pk, doc, &history_paths)?;
    let mut rewinds = match doc.metadata.get("rewinds") {
        Some(Value::List(list)) => list.clone(),
        _ => Vec::new(),
    };
    rewinds.push(Value::Map(map! {"step" => step, "archive" => archive_id, "time" => now.micros() as f64 / 1e6}));
    doc.metadata.insert("rewinds".into(), Value::List(rewinds));
    crate::crash::point("rewind");
    Ok(())
}
