//! Ingest, history and series queries on SQLite.

use cairn_types::api::{
    ConsoleLineOut, ConsolePage, IngestAck, KeyInfo, ProjectKey, ProjectSeriesQuery, ProjectSeriesResult, RunSeries,
    SERIES_DEFAULT_BUCKETS, SERIES_MAX_BUCKETS, SeriesGrid, SeriesQuery, SeriesResult,
};
use cairn_types::error::{CodedError, ErrorCode};
use cairn_types::value::Value;
use cairn_types::wire::{ColumnValues, KeyStream, Reader, put_value};
use cairn_types::{RunPath, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use super::pool::DbResult;
use super::{SqliteStore, load_doc, run_pk, save_doc, touch_project};
use crate::bucket::{self, ChunkSource, Grid, NumericSeries};
use crate::chunk::{self, ChunkValues, Points, Stats, Steps, TARGET_CHUNK_POINTS};
use crate::ingest::{self, KeyColumn, KeyTotals, RUNTIME_KEY, TIMESTAMP_KEY};
use crate::{HistoryData, HistoryRequest, HistoryValues, Result, SeriesStore};

/// NaN cannot be stored in SQLite (it becomes NULL); NULL reads back as `default`.
pub(crate) fn real(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

pub(crate) fn encode_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    put_value(&mut out, value);
    out
}

fn decode_value(bytes: &[u8]) -> Result<Value> {
    Reader::new(bytes).value().map_err(|e| CodedError::new(ErrorCode::Internal, format!("stored value is corrupt: {e}")))
}

#[derive(Debug, Clone)]
pub(crate) struct KeyRow {
    pub key_pk: i64,
    pub stream: KeyStream,
    pub name: String,
    pub path: Vec<String>,
    pub totals: KeyTotals,
}

const KEY_SELECT: &str = "SELECT key_pk, stream, name, path, count, num_count, nan_count, min, max, sum,
    first_step, last_step, first_value, last_value FROM run_keys";

fn key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(KeyRow, Vec<u8>, Vec<u8>)> {
    let stream: i64 = r.get(1)?;
    let path_text: String = r.get(3)?;
    Ok((
        KeyRow {
            key_pk: r.get(0)?,
            stream: if stream == 1 { KeyStream::System } else { KeyStream::History },
            name: r.get(2)?,
            path: serde_json::from_str(&path_text).unwrap_or_else(|_| vec![path_text.clone()]),
            totals: KeyTotals {
                count: r.get::<_, i64>(4)? as u64,
                num_count: r.get::<_, i64>(5)? as u64,
                nan_count: r.get::<_, i64>(6)? as u64,
                min: r.get::<_, Option<f64>>(7)?.unwrap_or(f64::INFINITY),
                max: r.get::<_, Option<f64>>(8)?.unwrap_or(f64::NEG_INFINITY),
                sum: r.get::<_, Option<f64>>(9)?.unwrap_or(f64::NAN),
                first_step: r.get(10)?,
                last_step: r.get(11)?,
                first_value: Value::Null,
                last_value: Value::Null,
            },
        },
        r.get(12)?,
        r.get(13)?,
    ))
}

fn finish_key(row: (KeyRow, Vec<u8>, Vec<u8>)) -> Result<KeyRow> {
    let (mut key, first, last) = row;
    key.totals.first_value = decode_value(&first)?;
    key.totals.last_value = decode_value(&last)?;
    Ok(key)
}

fn find_key(conn: &Connection, run_pk: i64, stream: KeyStream, name: &str) -> Result<Option<KeyRow>> {
    conn.prepare_cached(&format!("{KEY_SELECT} WHERE run_pk = ?1 AND stream = ?2 AND name = ?3"))
        .db()?
        .query_row(params![run_pk, stream as i64, name], key_from_row)
        .optional()
        .db()?
        .map(finish_key)
        .transpose()
}

pub(crate) fn all_keys(conn: &Connection, run_pk: i64) -> Result<Vec<KeyRow>> {
    let mut stmt = conn.prepare_cached(&format!("{KEY_SELECT} WHERE run_pk = ?1 ORDER BY stream, name")).db()?;
    let rows = stmt.query_map([run_pk], key_from_row).db()?.collect::<rusqlite::Result<Vec<_>>>().db()?;
    rows.into_iter().map(finish_key).collect()
}

fn is_time_key(name: &str) -> bool {
    name == TIMESTAMP_KEY || name == RUNTIME_KEY
}

/// Appends a column's points to its key: merges them into the key's last chunk while that chunk
/// is not full, and updates the key's totals. Returns the totals.
fn append_column(conn: &Connection, run_pk: i64, column: &mut KeyColumn) -> Result<KeyTotals> {
    let added = KeyTotals::from_column(column);
    let (key_pk, totals) = match find_key(conn, run_pk, column.stream, &column.name)? {
        Some(mut key) => {
            key.totals.merge(&added);
            let t = &key.totals;
            conn.prepare_cached(
                "UPDATE run_keys SET count = ?2, num_count = ?3, nan_count = ?4, min = ?5, max = ?6, sum = ?7,
                    last_step = ?8, last_value = ?9 WHERE key_pk = ?1",
            )
            .db()?
            .execute(params![
                key.key_pk,
                t.count as i64,
                t.num_count as i64,
                t.nan_count as i64,
                (t.num_count > 0).then_some(t.min),
                (t.num_count > 0).then_some(t.max),
                real(t.sum),
                t.last_step,
                encode_value(&t.last_value),
            ])
            .db()?;
            (key.key_pk, key.totals)
        }
        None => (insert_key(conn, run_pk, column.stream, &column.name, &column.path, &added)?, added),
    };

    let mut points = Points { steps: std::mem::take(&mut column.steps), values: std::mem::take(&mut column.values) };
    let tail: Option<(i64, i64, Vec<u8>)> = conn
        .prepare_cached("SELECT start_step, count, data FROM chunks WHERE key_pk = ?1 ORDER BY start_step DESC LIMIT 1")
        .db()?
        .query_row([key_pk], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .db()?;
    if let Some((start, count, data)) = tail
        && (count as usize) < TARGET_CHUNK_POINTS
    {
        let mut old = chunk::decode(&data, start)?;
        old.steps.append(&mut points.steps);
        old.values.append(&mut points.values);
        points = old;
        conn.prepare_cached("DELETE FROM chunks WHERE key_pk = ?1 AND start_step = ?2")
            .db()?
            .execute(params![key_pk, start])
            .db()?;
    }
    insert_chunks(conn, key_pk, &points)?;
    Ok(totals)
}

/// Adds a key to a run, with its totals; returns its `key_pk`.
pub(crate) fn insert_key(conn: &Connection, run_pk: i64, stream: KeyStream, name: &str, path: &[String], t: &KeyTotals) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO run_keys (run_pk, stream, name, path, count, num_count, nan_count, min, max, sum,
            first_step, last_step, first_value, last_value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )
    .db()?
    .execute(params![
        run_pk,
        stream as i64,
        name,
        serde_json::to_string(path).expect("paths serialize"),
        t.count as i64,
        t.num_count as i64,
        t.nan_count as i64,
        (t.num_count > 0).then_some(t.min),
        (t.num_count > 0).then_some(t.max),
        real(t.sum),
        t.first_step,
        t.last_step,
        encode_value(&t.first_value),
        encode_value(&t.last_value),
    ])
    .db()?;
    Ok(conn.last_insert_rowid())
}

/// Writes points as new chunks of a key (up to `TARGET_CHUNK_POINTS` each).
pub(crate) fn insert_chunks(conn: &Connection, key_pk: i64, points: &Points) -> Result<()> {
    if points.steps.is_empty() {
        return Ok(());
    }
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO chunks (key_pk, start_step, end_step, count, num_count, nan_count, min, max, sum, last, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .db()?;
    for (stats, bytes) in chunk::split_encode(points) {
        let (min, max) = stats.min_max().unzip();
        insert
            .execute(params![
                key_pk,
                stats.start_step,
                stats.end_step,
                stats.count as i64,
                stats.num_count as i64,
                stats.nan_count as i64,
                min,
                max,
                real(stats.sum),
                real(stats.last),
                bytes,
            ])
            .db()?;
    }
    Ok(())
}

/// A chunk's encoded points; a fork's chunk that shares its source's reads the source's.
pub(crate) fn chunk_bytes(conn: &Connection, key: i64, start_step: i64) -> Result<Vec<u8>> {
    conn.prepare_cached(
        "SELECT coalesce((SELECT o.data FROM chunks o WHERE o.key_pk = c.shared_key AND o.start_step = c.start_step), c.data)
         FROM chunks c WHERE c.key_pk = ?1 AND c.start_step = ?2",
    )
    .db()?
    .query_row(params![key, start_step], |r| r.get(0))
    .db()
}

struct SqliteChunks<'c> {
    conn: &'c Connection,
}

impl ChunkSource for SqliteChunks<'_> {
    fn chunk_stats(&mut self, key: i64, lo: i64, hi: i64) -> Result<Vec<Stats>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT start_step, end_step, count, num_count, nan_count, min, max, sum, last FROM chunks
                 WHERE key_pk = ?1
                   AND start_step >= coalesce((SELECT max(start_step) FROM chunks WHERE key_pk = ?1 AND start_step <= ?2), ?2)
                   AND start_step <= ?3
                 ORDER BY start_step",
            )
            .db()?;
        let rows = stmt
            .query_map(params![key, lo, hi], |r| {
                Ok(Stats {
                    start_step: r.get(0)?,
                    end_step: r.get(1)?,
                    count: r.get::<_, i64>(2)? as u64,
                    num_count: r.get::<_, i64>(3)? as u64,
                    nan_count: r.get::<_, i64>(4)? as u64,
                    min: r.get::<_, Option<f64>>(5)?.unwrap_or(f64::INFINITY),
                    max: r.get::<_, Option<f64>>(6)?.unwrap_or(f64::NEG_INFINITY),
                    sum: r.get::<_, Option<f64>>(7)?.unwrap_or(f64::NAN),
                    last: r.get::<_, Option<f64>>(8)?.unwrap_or(f64::NAN),
                })
            })
            .db()?;
        let stats = rows.collect::<rusqlite::Result<Vec<_>>>().db()?;
        Ok(stats.into_iter().filter(|s| s.end_step >= lo).collect())
    }

    fn chunk_data(&mut self, key: i64, start_step: i64) -> Result<Vec<u8>> {
        chunk_bytes(self.conn, key, start_step)
    }
}

/// A key's points in step order, floats and ints kept in plain arrays while they are uniform.
#[derive(Debug, Default)]
struct KeyPoints {
    steps: Vec<i64>,
    values: Option<ChunkValues>,
}

impl KeyPoints {
    fn append(&mut self, steps: &Steps, values: ChunkValues, lo: i64, hi: i64, room: usize) {
        let n = steps.len();
        let first = (0..n).find(|&i| steps.get(i) >= lo).unwrap_or(n);
        let mut last = first;
        while last < n && steps.get(last) <= hi && last - first < room {
            last += 1;
        }
        for i in first..last {
            self.steps.push(steps.get(i));
        }
        let taken = last - first;
        let joined = match (self.values.take(), values) {
            (None, ChunkValues::F64(v)) => ChunkValues::F64(v[first..last].to_vec()),
            (None, ChunkValues::I64(v)) => ChunkValues::I64(v[first..last].to_vec()),
            (None, ChunkValues::Mixed(v)) => ChunkValues::Mixed(v[first..last].to_vec()),
            (Some(ChunkValues::F64(mut a)), ChunkValues::F64(b)) => {
                a.extend_from_slice(&b[first..last]);
                ChunkValues::F64(a)
            }
            (Some(ChunkValues::I64(mut a)), ChunkValues::I64(b)) => {
                a.extend_from_slice(&b[first..last]);
                ChunkValues::I64(a)
            }
            (Some(a), b) => {
                let mut all = to_values(a);
                all.extend(to_values(b).into_iter().skip(first).take(taken));
                ChunkValues::Mixed(all)
            }
        };
        self.values = Some(joined);
    }
}

fn to_values(values: ChunkValues) -> Vec<Value> {
    match values {
        ChunkValues::F64(v) => v.into_iter().map(Value::Float).collect(),
        ChunkValues::I64(v) => v.into_iter().map(Value::Int).collect(),
        ChunkValues::Mixed(v) => v,
    }
}

/// Points of a key in `[lo, hi]`, at most `limit` of them. Returns whether more exist.
fn load_points(conn: &Connection, key_pk: i64, lo: i64, hi: i64, limit: usize) -> Result<(KeyPoints, bool)> {
    let want = limit.saturating_add(1);
    let mut source = SqliteChunks { conn };
    let mut out = KeyPoints::default();
    for stats in source.chunk_stats(key_pk, lo, hi)? {
        if out.steps.len() >= want {
            break;
        }
        let (steps, values) = chunk::decode_typed(&source.chunk_data(key_pk, stats.start_step)?, stats.start_step)?;
        out.append(&steps, values, lo, hi, want - out.steps.len());
    }
    let more = out.steps.len() > limit;
    if more {
        out.steps.truncate(limit);
        out.values = out.values.map(|values| match values {
            ChunkValues::F64(mut v) => {
                v.truncate(limit);
                ChunkValues::F64(v)
            }
            ChunkValues::I64(mut v) => {
                v.truncate(limit);
                ChunkValues::I64(v)
            }
            ChunkValues::Mixed(mut v) => {
                v.truncate(limit);
                ChunkValues::Mixed(v)
            }
        });
    }
    Ok((out, more))
}

/// The key's values at `steps` (a sorted superset of the key's own steps within the range).
fn align(points: KeyPoints, steps: &[i64], time_scale: Option<f64>) -> ColumnValues {
    let values = points.values.unwrap_or(ChunkValues::F64(Vec::new()));
    let numeric = |v: f64| v * time_scale.unwrap_or(1.0);
    if points.steps.len() == steps.len() {
        // Every row has the key: no alignment needed.
        return match (values, time_scale) {
            (ChunkValues::F64(v), _) => ColumnValues::Floats(v, vec![true; steps.len()]),
            (ChunkValues::I64(v), Some(_)) => ColumnValues::Floats(v.into_iter().map(|i| numeric(i as f64)).collect(), vec![true; steps.len()]),
            (other, _) => ColumnValues::Values(to_values(other).into_iter().map(Some).collect()),
        };
    }
    let positions: Vec<Option<usize>> = {
        let mut out = Vec::with_capacity(steps.len());
        let mut j = 0;
        for &step in steps {
            while j < points.steps.len() && points.steps[j] < step {
                j += 1;
            }
            out.push((j < points.steps.len() && points.steps[j] == step).then_some(j));
        }
        out
    };
    match (values, time_scale) {
        (ChunkValues::F64(v), _) => ColumnValues::Floats(
            positions.iter().map(|p| p.map_or(f64::NAN, |j| v[j])).collect(),
            positions.iter().map(Option::is_some).collect(),
        ),
        (ChunkValues::I64(v), Some(_)) => ColumnValues::Floats(
            positions.iter().map(|p| p.map_or(f64::NAN, |j| numeric(v[j] as f64))).collect(),
            positions.iter().map(Option::is_some).collect(),
        ),
        (other, _) => {
            let all = to_values(other);
            ColumnValues::Values(positions.iter().map(|p| p.map(|j| all[j].clone())).collect())
        }
    }
}

fn key_info(key: &KeyRow) -> KeyInfo {
    let t = &key.totals;
    KeyInfo {
        name: key.name.clone(),
        path: key.path.clone(),
        stream: key.stream.name().to_owned(),
        count: t.count,
        numeric_count: t.num_count + t.nan_count,
        first_step: t.first_step,
        last_step: t.last_step,
        min: (t.num_count > 0).then_some(t.min),
        max: (t.num_count > 0).then_some(t.max),
    }
}

fn key_not_found(path: &RunPath, stream: KeyStream, name: &str, conn: &Connection, pk: i64) -> CodedError {
    let known: Vec<String> = all_keys(conn, pk)
        .unwrap_or_default()
        .into_iter()
        .filter(|k| k.stream == stream && !is_time_key(&k.name))
        .take(20)
        .map(|k| k.name)
        .collect();
    CodedError::new(
        ErrorCode::KeyNotFound,
        format!("run {path} has no {} key {name:?}; it has: {}", stream.name(), known.join(", ")),
    )
}

/// Resolves a series key name: history first, then system metrics.
fn resolve_series_key(conn: &Connection, path: &RunPath, pk: i64, name: &str) -> Result<KeyRow> {
    if let Some(key) = find_key(conn, pk, KeyStream::History, name)? {
        return Ok(key);
    }
    if let Some(key) = find_key(conn, pk, KeyStream::System, name)? {
        return Ok(key);
    }
    Err(key_not_found(path, KeyStream::History, name, conn, pk))
}

fn parse_keys(keys: &str) -> Result<Vec<String>> {
    let names: Vec<String> = keys.split(',').map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned).collect();
    if names.is_empty() {
        return Err(CodedError::new(ErrorCode::InvalidQuery, "keys must name at least one key"));
    }
    if names.len() > 1000 {
        return Err(CodedError::new(ErrorCode::InvalidQuery, format!("{} keys asked for; at most 1000", names.len())));
    }
    Ok(names)
}

/// Validates the x-axis, bucket count and range of a series query.
fn check_series(x: Option<&str>, buckets: Option<u32>, x_min: Option<f64>, x_max: Option<f64>) -> Result<(String, u32)> {
    let x = x.filter(|x| !x.is_empty()).unwrap_or("_step").to_owned();
    let n = buckets.unwrap_or(SERIES_DEFAULT_BUCKETS);
    if n == 0 || n > SERIES_MAX_BUCKETS {
        return Err(CodedError::new(
            ErrorCode::InvalidQuery,
            format!("buckets={n} is out of range; use 1 to {SERIES_MAX_BUCKETS}"),
        ));
    }
    for (name, bound) in [("x_min", x_min), ("x_max", x_max)] {
        if let Some(v) = bound
            && !v.is_finite()
        {
            return Err(CodedError::new(ErrorCode::InvalidQuery, format!("{name}={v} is not a finite number")));
        }
    }
    if let (Some(lo), Some(hi)) = (x_min, x_max)
        && lo > hi
    {
        return Err(CodedError::new(ErrorCode::InvalidQuery, format!("x_min={lo} is greater than x_max={hi}")));
    }
    Ok((x, n))
}

/// One series to bucket: a key of a run.
struct Target {
    run_pk: i64,
    key: KeyRow,
}

/// One target's buckets and the x-range of all its data (none when it has no x).
type TargetBuckets = Option<(cairn_types::api::Buckets, Option<[f64; 2]>)>;

/// Buckets every target on one shared grid over `[x_min, x_max]` (by default the union of their
/// ranges). A target whose run lacks the x key is an error when `strict` names the run, and has
/// no buckets otherwise.
fn bucket_targets(
    conn: &Connection,
    targets: &[Target],
    x: &str,
    n: u32,
    x_min: Option<f64>,
    x_max: Option<f64>,
    strict: Option<&RunPath>,
) -> Result<(f64, f64, Vec<TargetBuckets>)> {
    let mut source = SqliteChunks { conn };
    if x == "_step" {
        let lo = x_min.unwrap_or_else(|| targets.iter().map(|t| t.key.totals.first_step).min().unwrap_or(0) as f64);
        let hi = x_max.unwrap_or_else(|| targets.iter().map(|t| t.key.totals.last_step).max().unwrap_or(0) as f64);
        let grid = Grid::new(lo, hi, n as usize);
        let buckets = targets
            .iter()
            .map(|t| {
                let extent = (t.key.totals.count > 0)
                    .then(|| [t.key.totals.first_step as f64, t.key.totals.last_step as f64]);
                bucket::step_buckets(&mut source, t.key.key_pk, grid).map(|b| Some((b, extent)))
            })
            .collect::<Result<Vec<_>>>()?;
        return Ok((lo, hi, buckets));
    }
    let scale = if is_time_key(x) { 1e-6 } else { 1.0 };
    let mut joined = Vec::with_capacity(targets.len());
    for target in targets {
        match find_key(conn, target.run_pk, target.key.stream, x)? {
            Some(x_key) => {
                let xs = NumericSeries::load(&mut source, x_key.key_pk, i64::MIN, i64::MAX)?.scale(scale);
                let ys = NumericSeries::load(&mut source, target.key.key_pk, i64::MIN, i64::MAX)?;
                joined.push(Some(bucket::join(&xs, &ys)));
            }
            None => match strict {
                Some(path) => return Err(key_not_found(path, target.key.stream, x, conn, target.run_pk)),
                None => joined.push(None),
            },
        }
    }
    let data_range = joined.iter().flatten().filter_map(|p| bucket::x_range(p)).reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
    let lo = x_min.or(data_range.map(|r| r.0)).unwrap_or(0.0);
    let hi = x_max.or(data_range.map(|r| r.1)).unwrap_or(0.0);
    let grid = Grid::new(lo, hi, n as usize);
    let buckets = joined
        .iter()
        .map(|p| p.as_ref().map(|p| (bucket::xy_buckets(p, grid), bucket::x_range(p).map(|(a, b)| [a, b]))))
        .collect();
    Ok((lo, hi, buckets))
}

fn series(conn: &Connection, path: &RunPath, query: &SeriesQuery) -> Result<SeriesResult> {
    let pk = run_pk(conn, path)?;
    let names = parse_keys(&query.keys)?;
    let (x, n) = check_series(query.x.as_deref(), query.buckets, query.x_min, query.x_max)?;
    let targets = names
        .iter()
        .map(|name| resolve_series_key(conn, path, pk, name).map(|key| Target { run_pk: pk, key }))
        .collect::<Result<Vec<_>>>()?;
    let (lo, hi, buckets) = bucket_targets(conn, &targets, &x, n, query.x_min, query.x_max, Some(path))?;
    let series = targets
        .iter()
        .zip(buckets)
        .map(|(t, b)| {
            let (buckets, extent) = b.unwrap_or_default();
            cairn_types::api::KeySeries { key: t.key.name.clone(), buckets, extent }
        })
        .collect();
    Ok(SeriesResult { grid: SeriesGrid { x, x_min: Some(lo), x_max: Some(hi), buckets: n }, series })
}

fn project_series(conn: &Connection, entity: &str, project: &str, query: &ProjectSeriesQuery) -> Result<ProjectSeriesResult> {
    let project_pk = super::filter::project_pk(conn, entity, project)?;
    if query.run_ids.is_empty() || query.run_ids.len() > 1000 {
        return Err(CodedError::new(ErrorCode::InvalidQuery, format!("run_ids has {} runs; ask for 1 to 1000", query.run_ids.len())));
    }
    if query.keys.is_empty() || query.keys.len() > 200 {
        return Err(CodedError::new(ErrorCode::InvalidQuery, format!("keys has {} keys; ask for 1 to 200", query.keys.len())));
    }
    let (x, n) = check_series(query.x.as_deref(), query.buckets, query.x_min, query.x_max)?;
    let mut targets = Vec::new();
    let mut owners = Vec::new();
    for (run_index, run_id) in query.run_ids.iter().enumerate() {
        let pk: Option<i64> = conn
            .prepare_cached("SELECT run_pk FROM runs WHERE project_pk = ?1 AND run_id = ?2 AND deleted_at IS NULL")
            .db()?
            .query_row(params![project_pk, run_id], |r| r.get(0))
            .optional()
            .db()?;
        let Some(pk) = pk else { continue };
        for name in &query.keys {
            let key = match find_key(conn, pk, KeyStream::History, name)? {
                Some(key) => Some(key),
                None => find_key(conn, pk, KeyStream::System, name)?,
            };
            if let Some(key) = key {
                targets.push(Target { run_pk: pk, key });
                owners.push(run_index);
            }
        }
    }
    let (lo, hi, buckets) = bucket_targets(conn, &targets, &x, n, query.x_min, query.x_max, None)?;
    let mut runs: Vec<RunSeries> = Vec::new();
    for ((target, owner), buckets) in targets.iter().zip(owners).zip(buckets) {
        let Some((buckets, extent)) = buckets else { continue };
        let run_id = &query.run_ids[owner];
        if runs.last().is_none_or(|r| &r.run_id != run_id) {
            runs.push(RunSeries { run_id: run_id.clone(), series: Vec::new() });
        }
        runs.last_mut().expect("pushed").series.push(cairn_types::api::KeySeries { key: target.key.name.clone(), buckets, extent });
    }
    Ok(ProjectSeriesResult { grid: SeriesGrid { x, x_min: Some(lo), x_max: Some(hi), buckets: n }, runs })
}

fn project_keys(conn: &Connection, entity: &str, project: &str) -> Result<Vec<ProjectKey>> {
    let project_pk = super::filter::project_pk(conn, entity, project)?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT k.stream, k.name, count(*), max(k.num_count + k.nan_count > 0)
             FROM run_keys k JOIN runs r ON r.run_pk = k.run_pk
             WHERE r.project_pk = ?1 AND r.deleted_at IS NULL AND r.archive_of IS NULL AND k.name NOT IN ('_timestamp', '_runtime')
             GROUP BY k.stream, k.name ORDER BY k.stream, k.name",
        )
        .db()?;
    let keys = stmt
        .query_map([project_pk], |r| {
            Ok(ProjectKey {
                stream: if r.get::<_, i64>(0)? == 1 { "system" } else { "history" }.to_owned(),
                name: r.get(1)?,
                runs: r.get::<_, i64>(2)? as u64,
                numeric: r.get::<_, i64>(3)? != 0,
            })
        })
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    Ok(keys)
}

fn history(conn: &Connection, path: &RunPath, req: &HistoryRequest) -> Result<HistoryData> {
    let pk = run_pk(conn, path)?;
    let lo = req.min_step.unwrap_or(i64::MIN);
    let hi = req.max_step.map_or(i64::MAX, |m| m.saturating_sub(1));
    let limit = req.limit.max(1);
    let (keys, with_time): (Vec<KeyRow>, bool) = match &req.keys {
        Some(names) => {
            let mut keys = Vec::new();
            for name in names {
                match find_key(conn, pk, req.stream, name)? {
                    Some(key) => keys.push(key),
                    None => return Err(key_not_found(path, req.stream, name, conn, pk)),
                }
            }
            (keys, false)
        }
        None => (
            all_keys(conn, pk)?.into_iter().filter(|k| k.stream == req.stream && !is_time_key(&k.name)).collect(),
            true,
        ),
    };

    // Each key's first `limit` points from `lo`; rows up to `bound` are complete for every key.
    let mut loaded = Vec::with_capacity(keys.len());
    let mut bound = hi;
    for key in &keys {
        let (points, more) = load_points(conn, key.key_pk, lo, hi, limit)?;
        if more && let Some(&last) = points.steps.last() {
            bound = bound.min(last);
        }
        loaded.push(points);
    }
    let mut steps: Vec<i64> = if loaded.len() == 1 {
        loaded[0].steps.iter().copied().filter(|&s| s <= bound).collect()
    } else if req.require_all {
        let mut common: Option<Vec<i64>> = None;
        for points in &loaded {
            let set: Vec<i64> = points.steps.iter().copied().filter(|&s| s <= bound).collect();
            common = Some(match common {
                None => set,
                Some(prev) => prev.into_iter().filter(|s| set.binary_search(s).is_ok()).collect(),
            });
        }
        common.unwrap_or_default()
    } else {
        let mut all: Vec<i64> = loaded.iter().flat_map(|p| p.steps.iter().copied()).filter(|&s| s <= bound).collect();
        all.sort_unstable();
        all.dedup();
        all
    };
    let next_step = if steps.len() > limit {
        let next = steps[limit];
        steps.truncate(limit);
        Some(next)
    } else if bound < hi {
        Some(bound + 1)
    } else {
        None
    };

    let mut data = HistoryData { steps: Vec::new(), columns: Vec::new(), next_step };
    if let (Some(&first), Some(&last)) = (steps.first(), steps.last()) {
        let time_names: Vec<&str> = if with_time { vec![TIMESTAMP_KEY, RUNTIME_KEY] } else { Vec::new() };
        for name in time_names {
            if let Some(key) = find_key(conn, pk, req.stream, name)? {
                let (points, _) = load_points(conn, key.key_pk, first, last, usize::MAX)?;
                let points = restrict(points, &steps);
                data.columns.push(HistoryValues { name: name.to_owned(), path: vec![name.to_owned()], values: align(points, &steps, Some(1e-6)) });
            }
        }
        for (key, points) in keys.iter().zip(loaded) {
            let points = restrict(points, &steps);
            let scale = is_time_key(&key.name).then_some(1e-6);
            data.columns.push(HistoryValues { name: key.name.clone(), path: key.path.clone(), values: align(points, &steps, scale) });
        }
    }
    data.steps = steps;
    Ok(data)
}

/// Drops the points of a key that are not at one of `steps` (past the page, or excluded by
/// `require_all`).
fn restrict(points: KeyPoints, steps: &[i64]) -> KeyPoints {
    if points.steps.len() <= steps.len() && points.steps.last() <= steps.last() && points.steps.first() >= steps.first() {
        let all_in = points.steps.len() == steps.len() || points.steps.iter().all(|s| steps.binary_search(s).is_ok());
        if all_in {
            return points;
        }
    }
    let keep: Vec<bool> = points.steps.iter().map(|s| steps.binary_search(s).is_ok()).collect();
    let steps_kept: Vec<i64> = points.steps.iter().zip(&keep).filter(|(_, k)| **k).map(|(s, _)| *s).collect();
    let values = points.values.map(|values| match values {
        ChunkValues::F64(v) => ChunkValues::F64(v.into_iter().zip(&keep).filter(|(_, k)| **k).map(|(v, _)| v).collect()),
        ChunkValues::I64(v) => ChunkValues::I64(v.into_iter().zip(&keep).filter(|(_, k)| **k).map(|(v, _)| v).collect()),
        ChunkValues::Mixed(v) => ChunkValues::Mixed(v.into_iter().zip(&keep).filter(|(_, k)| **k).map(|(v, _)| v).collect()),
    });
    KeyPoints { steps: steps_kept, values }
}

impl SeriesStore for SqliteStore {
    fn ingest(&self, path: &RunPath, batch: cairn_types::wire::IngestBatch, now: Timestamp) -> Result<IngestAck> {
        path.validate()?;
        let path = path.clone();
        self.write(move |conn| {
            let pk = run_pk(conn, &path)?;
            let mut doc = load_doc(conn, pk)?;
            let mut plan = ingest::plan(batch, &mut doc, now)?;
            let mut touched = Vec::with_capacity(plan.columns.len());
            for mut column in std::mem::take(&mut plan.columns) {
                let totals = append_column(conn, pk, &mut column)?;
                touched.push((column, totals));
            }
            if !plan.console.is_empty() {
                let mut insert = conn
                    .prepare_cached(
                        "INSERT INTO console_lines (run_pk, line, stream, ts, text) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (run_pk, line) DO UPDATE SET stream = ?3, ts = ?4, text = ?5",
                    )
                    .db()?;
                for line in &plan.console {
                    insert
                        .execute(params![pk, line.line as i64, line.stream as i64, line.timestamp_us, line.text])
                        .db()?;
                }
            }
            ingest::finalize(&mut doc, &touched, std::mem::take(&mut plan.summary_updates));
            save_doc(conn, pk, &doc)?;
            touch_project(conn, pk, now)?;
            Ok(IngestAck { offsets: doc.offsets, points: plan.points, stop: doc.stop_requested })
        })
    }

    fn list_keys(&self, path: &RunPath) -> Result<Vec<KeyInfo>> {
        path.validate()?;
        self.read(|conn| {
            let pk = run_pk(conn, path)?;
            Ok(all_keys(conn, pk)?.iter().filter(|k| !is_time_key(&k.name)).map(key_info).collect())
        })
    }

    fn history(&self, path: &RunPath, query: &HistoryRequest) -> Result<HistoryData> {
        path.validate()?;
        if let (Some(lo), Some(hi)) = (query.min_step, query.max_step)
            && lo > hi
        {
            return Err(CodedError::new(ErrorCode::InvalidQuery, format!("min_step={lo} is greater than max_step={hi}")));
        }
        self.read(|conn| history(conn, path, query))
    }

    fn series(&self, path: &RunPath, query: &SeriesQuery) -> Result<SeriesResult> {
        path.validate()?;
        self.read(|conn| series(conn, path, query))
    }

    fn project_keys(&self, entity: &str, project: &str) -> Result<Vec<ProjectKey>> {
        cairn_types::ids::validate_name("entity", entity)?;
        cairn_types::ids::validate_name("project", project)?;
        self.read(|conn| project_keys(conn, entity, project))
    }

    fn project_series(&self, entity: &str, project: &str, query: &ProjectSeriesQuery) -> Result<ProjectSeriesResult> {
        cairn_types::ids::validate_name("entity", entity)?;
        cairn_types::ids::validate_name("project", project)?;
        self.read(|conn| project_series(conn, entity, project, query))
    }

    fn console(&self, path: &RunPath, from_line: u64, limit: usize) -> Result<ConsolePage> {
        path.validate()?;
        let limit = limit.clamp(1, 100_000);
        self.read(|conn| {
            let pk = run_pk(conn, path)?;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT line, stream, ts, text FROM console_lines WHERE run_pk = ?1 AND line >= ?2
                     ORDER BY line LIMIT ?3",
                )
                .db()?;
            let mut lines = stmt
                .query_map(params![pk, from_line.min(i64::MAX as u64) as i64, limit as i64 + 1], |r| {
                    Ok(ConsoleLineOut {
                        line: r.get::<_, i64>(0)? as u64,
                        stream: if r.get::<_, i64>(1)? == 1 { "stderr" } else { "stdout" }.to_owned(),
                        time: Timestamp(r.get(2)?),
                        text: r.get(3)?,
                    })
                })
                .db()?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db()?;
            let next_line = if lines.len() > limit { lines.pop().map(|l| l.line) } else { None };
            Ok(ConsolePage { lines, next_line })
        })
    }
}
