//! Ingest, history and series queries over [`Db`], for every SQL backend.

use std::collections::HashMap;

use cairn_types::api::{ConsoleLineOut, ConsolePage, IngestAck, KeyInfo, ProjectKey, ProjectSeriesResult, RunSeries, SeriesGrid, SeriesResult};
use cairn_types::error::{CodedError, ErrorCode};
use cairn_types::value::Value;
use cairn_types::wire::{ColumnValues, KeyStream, Reader, put_value};
use cairn_types::{RunPath, Timestamp};

use super::runs::{load_doc, run_pk, save_doc, touch_project};
use super::{Cell, Db, Param, Row, SqlStore, ToParam, args};
use crate::bucket::{self, ChunkSource, Grid, NumericSeries};
use crate::chunk::{self, ChunkValues, Points, Stats, Steps, TARGET_CHUNK_POINTS};
use crate::ingest::{self, KeyColumn, KeyTotals, RUNTIME_KEY, TIMESTAMP_KEY};
use crate::{HistoryData, HistoryRequest, HistoryValues, ProjectSeriesRequest, Result, SeriesRequest, SeriesStore};

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
    pub run_pk: i64,
    pub stream: KeyStream,
    pub name: String,
    pub path: Vec<String>,
    pub totals: KeyTotals,
}

const KEY_SELECT: &str = "SELECT key_pk, stream, name, path, count, num_count, nan_count, min, max, sum,
    first_step, last_step, first_value, last_value, run_pk FROM run_keys";

fn key_from_row(r: &Row) -> Result<KeyRow> {
    let path_text = r.str(3)?;
    Ok(KeyRow {
        key_pk: r.i64(0)?,
        run_pk: r.i64(14)?,
        stream: if r.i64(1)? == 1 { KeyStream::System } else { KeyStream::History },
        name: r.string(2)?,
        path: serde_json::from_str(path_text).unwrap_or_else(|_| vec![path_text.to_owned()]),
        totals: KeyTotals {
            count: r.i64(4)? as u64,
            num_count: r.i64(5)? as u64,
            nan_count: r.i64(6)? as u64,
            min: r.f64_or(7, f64::INFINITY)?,
            max: r.f64_or(8, f64::NEG_INFINITY)?,
            sum: r.f64_or(9, f64::NAN)?,
            first_step: r.i64(10)?,
            last_step: r.i64(11)?,
            first_value: decode_value(r.blob(12)?)?,
            last_value: decode_value(r.blob(13)?)?,
        },
    })
}

fn find_key(db: &dyn Db, run_pk: i64, stream: KeyStream, name: &str) -> Result<Option<KeyRow>> {
    db.opt_row(&format!("{KEY_SELECT} WHERE run_pk = ?1 AND stream = ?2 AND name = ?3"), args![run_pk, stream as i64, name])?.map(|r| key_from_row(&r)).transpose()
}

pub(crate) fn all_keys(db: &dyn Db, run_pk: i64) -> Result<Vec<KeyRow>> {
    db.query(&format!("{KEY_SELECT} WHERE run_pk = ?1 ORDER BY stream, name"), args![run_pk])?.iter().map(key_from_row).collect()
}

/// Rows of `sql` (whose `{list}` is a list of placeholders) for every item, a few hundred
/// items per statement: one round trip per batch, not per item. An item is one placeholder, or a
/// tuple of them for `IN (VALUES ...)`; `casts` gives each place its SQL type (PostgreSQL takes
/// the values of a `VALUES` list for text otherwise), or `""` for none.
fn batched<T>(db: &dyn Db, sql: &str, fixed: &[Param<'_>], items: &[T], casts: &[&str], param: impl Fn(&T) -> Vec<Param<'_>>) -> Result<Vec<Row>> {
    let width = casts.len();
    const BATCH: usize = 300;
    let mut out = Vec::new();
    for part in items.chunks(BATCH) {
        let mut params: Vec<Param<'_>> = fixed.to_vec();
        let mut list = Vec::with_capacity(part.len());
        for item in part {
            let values = param(item);
            debug_assert_eq!(values.len(), width);
            let start = params.len();
            params.extend(values);
            let places: Vec<String> =
                casts.iter().enumerate().map(|(i, cast)| if cast.is_empty() { format!("?{}", start + i + 1) } else { format!("CAST(?{} AS {cast})", start + i + 1) }).collect();
            list.push(if width == 1 { places.concat() } else { format!("({})", places.join(", ")) });
        }
        // Not kept prepared: each batch size is a statement of its own.
        out.extend(db.query_once(&sql.replace("{list}", &list.join(", ")), &params)?);
    }
    Ok(out)
}

fn is_time_key(name: &str) -> bool {
    name == TIMESTAMP_KEY || name == RUNTIME_KEY
}

fn totals_params(t: &KeyTotals) -> [Cell; 6] {
    let real = |v: f64| if v.is_nan() { Cell::Null } else { Cell::Real(v) };
    [
        Cell::Int(t.count as i64),
        Cell::Int(t.num_count as i64),
        Cell::Int(t.nan_count as i64),
        if t.num_count > 0 { Cell::Real(t.min) } else { Cell::Null },
        if t.num_count > 0 { Cell::Real(t.max) } else { Cell::Null },
        real(t.sum),
    ]
}

/// Appends a column's points to its key: merges them into the key's last chunk while that chunk
/// is not full, and updates the key's totals. Returns the totals.
fn append_column(db: &dyn Db, run_pk: i64, column: &mut KeyColumn) -> Result<KeyTotals> {
    let added = KeyTotals::from_column(column);
    let (key_pk, totals) = match find_key(db, run_pk, column.stream, &column.name)? {
        Some(mut key) => {
            key.totals.merge(&added);
            let t = &key.totals;
            let [count, num_count, nan_count, min, max, sum] = totals_params(t);
            db.execute(
                "UPDATE run_keys SET count = ?2, num_count = ?3, nan_count = ?4, min = ?5, max = ?6, sum = ?7,
                    last_step = ?8, last_value = ?9 WHERE key_pk = ?1",
                args![key.key_pk, count, num_count, nan_count, min, max, sum, t.last_step, encode_value(&t.last_value)],
            )?;
            (key.key_pk, key.totals)
        }
        None => (insert_key(db, run_pk, column.stream, &column.name, &column.path, &added)?, added),
    };

    let mut points = Points { steps: std::mem::take(&mut column.steps), values: std::mem::take(&mut column.values) };
    let tail = db.opt_row("SELECT start_step, count, data FROM chunks WHERE key_pk = ?1 ORDER BY start_step DESC LIMIT 1", args![key_pk])?;
    if let Some(mut tail) = tail
        && (tail.i64(1)? as usize) < TARGET_CHUNK_POINTS
    {
        let start = tail.i64(0)?;
        let mut old = chunk::decode(&tail.take_blob(2)?, start)?;
        old.steps.append(&mut points.steps);
        old.values.append(&mut points.values);
        points = old;
        db.execute("DELETE FROM chunks WHERE key_pk = ?1 AND start_step = ?2", args![key_pk, start])?;
    }
    insert_chunks(db, key_pk, &points)?;
    Ok(totals)
}

/// Adds a key to a run, with its totals; returns its `key_pk`.
pub(crate) fn insert_key(db: &dyn Db, run_pk: i64, stream: KeyStream, name: &str, path: &[String], t: &KeyTotals) -> Result<i64> {
    let [count, num_count, nan_count, min, max, sum] = totals_params(t);
    db.row(
        "INSERT INTO run_keys (run_pk, stream, name, path, count, num_count, nan_count, min, max, sum,
            first_step, last_step, first_value, last_value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) RETURNING key_pk",
        args![
            run_pk,
            stream as i64,
            name,
            serde_json::to_string(path).expect("paths serialize"),
            count,
            num_count,
            nan_count,
            min,
            max,
            sum,
            t.first_step,
            t.last_step,
            encode_value(&t.first_value),
            encode_value(&t.last_value),
        ],
    )?
    .i64(0)
}

/// Writes a key's totals.
pub(crate) fn set_totals(db: &dyn Db, key_pk: i64, t: &KeyTotals) -> Result<()> {
    let [count, num_count, nan_count, min, max, sum] = totals_params(t);
    db.execute(
        "UPDATE run_keys SET count = ?2, num_count = ?3, nan_count = ?4, min = ?5, max = ?6, sum = ?7,
            first_step = ?8, last_step = ?9, first_value = ?10, last_value = ?11 WHERE key_pk = ?1",
        args![key_pk, count, num_count, nan_count, min, max, sum, t.first_step, t.last_step, encode_value(&t.first_value), encode_value(&t.last_value)],
    )?;
    Ok(())
}

/// Writes points as new chunks of a key (up to `TARGET_CHUNK_POINTS` each).
pub(crate) fn insert_chunks(db: &dyn Db, key_pk: i64, points: &Points) -> Result<()> {
    if points.steps.is_empty() {
        return Ok(());
    }
    for (stats, bytes) in chunk::split_encode(points) {
        let (min, max) = stats.min_max().unzip();
        db.execute(
            "INSERT INTO chunks (key_pk, start_step, end_step, count, num_count, nan_count, min, max, sum, last, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            args![key_pk, stats.start_step, stats.end_step, stats.count as i64, stats.num_count as i64, stats.nan_count as i64, min, max, stats.sum, stats.last, bytes,],
        )?;
    }
    Ok(())
}

/// A chunk's encoded points; a fork's chunk that shares its source's reads the source's.
pub(crate) fn chunk_bytes(db: &dyn Db, key: i64, start_step: i64) -> Result<Vec<u8>> {
    db.row(
        "SELECT coalesce((SELECT o.data FROM chunks o WHERE o.key_pk = c.shared_key AND o.start_step = c.start_step), c.data)
         FROM chunks c WHERE c.key_pk = ?1 AND c.start_step = ?2",
        args![key, start_step],
    )?
    .take_blob(0)
}

const STATS_COLUMNS: &str = "start_step, end_step, count, num_count, nan_count, min, max, sum, last";

fn stats_from_row(r: &Row, at: usize) -> Result<Stats> {
    Ok(Stats {
        start_step: r.i64(at)?,
        end_step: r.i64(at + 1)?,
        count: r.i64(at + 2)? as u64,
        num_count: r.i64(at + 3)? as u64,
        nan_count: r.i64(at + 4)? as u64,
        min: r.f64_or(at + 5, f64::INFINITY)?,
        max: r.f64_or(at + 6, f64::NEG_INFINITY)?,
        sum: r.f64_or(at + 7, f64::NAN)?,
        last: r.f64_or(at + 8, f64::NAN)?,
    })
}

/// Chunks read one statement at a time.
struct DbChunks<'d> {
    db: &'d dyn Db,
}

impl ChunkSource for DbChunks<'_> {
    fn chunk_stats(&mut self, key: i64, lo: i64, hi: i64) -> Result<Vec<Stats>> {
        let stats = self
            .db
            .query(
                &format!(
                    "SELECT {STATS_COLUMNS} FROM chunks
                     WHERE key_pk = ?1
                       AND start_step >= coalesce((SELECT max(start_step) FROM chunks WHERE key_pk = ?1 AND start_step <= ?2), ?2)
                       AND start_step <= ?3
                     ORDER BY start_step"
                ),
                args![key, lo, hi],
            )?
            .iter()
            .map(|r| stats_from_row(r, 0))
            .collect::<Result<Vec<_>>>()?;
        Ok(stats.into_iter().filter(|s| s.end_step >= lo).collect())
    }

    fn chunk_data(&mut self, key: i64, start_step: i64) -> Result<Vec<u8>> {
        chunk_bytes(self.db, key, start_step)
    }
}

/// The chunks of many keys, read in a few statements: the statistics of every chunk in the
/// range, and the data of the chunks that `need` says a query decodes. What was not read ahead
/// is read when asked for.
struct Prefetched<'d> {
    stats: HashMap<i64, Vec<Stats>>,
    data: HashMap<(i64, i64), Vec<u8>>,
    fallback: DbChunks<'d>,
}

impl<'d> Prefetched<'d> {
    fn load(db: &'d dyn Db, keys: &[i64], lo: i64, hi: i64, need: impl Fn(&Stats) -> bool) -> Result<Prefetched<'d>> {
        let mut keys = keys.to_vec();
        keys.sort_unstable();
        keys.dedup();
        let mut stats: HashMap<i64, Vec<Stats>> = HashMap::new();
        let rows = batched(
            db,
            &format!("SELECT key_pk, {STATS_COLUMNS} FROM chunks WHERE end_step >= ?1 AND start_step <= ?2 AND key_pk IN ({{list}}) ORDER BY key_pk, start_step"),
            args![lo, hi],
            &keys,
            &[""],
            |k| vec![k.param()],
        )?;
        let mut wanted = Vec::new();
        for r in &rows {
            let key = r.i64(0)?;
            let s = stats_from_row(r, 1)?;
            if need(&s) {
                wanted.push((key, s.start_step));
            }
            stats.entry(key).or_default().push(s);
        }
        let mut data = HashMap::with_capacity(wanted.len());
        let rows = batched(
            db,
            "SELECT c.key_pk, c.start_step,
                coalesce((SELECT o.data FROM chunks o WHERE o.key_pk = c.shared_key AND o.start_step = c.start_step), c.data)
             FROM chunks c WHERE (c.key_pk, c.start_step) IN (VALUES {list})",
            &[],
            &wanted,
            &["BIGINT", "BIGINT"],
            |(k, s)| vec![k.param(), s.param()],
        )?;
        for mut r in rows {
            data.insert((r.i64(0)?, r.i64(1)?), r.take_blob(2)?);
        }
        Ok(Prefetched { stats, data, fallback: DbChunks { db } })
    }
}

impl Prefetched<'_> {
    /// Moves what was read ahead for `keys` into a source of its own, for another thread; a
    /// chunk it lacks is an error there.
    fn detach(&mut self, keys: impl Iterator<Item = i64>) -> Detached {
        let keys: std::collections::HashSet<i64> = keys.collect();
        let stats = keys.iter().filter_map(|k| self.stats.remove(k).map(|s| (*k, s))).collect();
        let wanted: Vec<(i64, i64)> = self.data.keys().filter(|(k, _)| keys.contains(k)).copied().collect();
        let data = wanted.into_iter().filter_map(|at| self.data.remove(&at).map(|d| (at, d))).collect();
        Detached { stats, data }
    }
}

/// The statistics read ahead for `key` of the chunks that overlap `[lo, hi]`.
fn overlapping(stats: &HashMap<i64, Vec<Stats>>, key: i64, lo: i64, hi: i64) -> Vec<Stats> {
    stats.get(&key).map_or_else(Vec::new, |all| all.iter().filter(|s| s.end_step >= lo && s.start_step <= hi).copied().collect())
}

/// Chunks read ahead, owned, with no connection behind them.
struct Detached {
    stats: HashMap<i64, Vec<Stats>>,
    data: HashMap<(i64, i64), Vec<u8>>,
}

impl ChunkSource for Detached {
    fn chunk_stats(&mut self, key: i64, lo: i64, hi: i64) -> Result<Vec<Stats>> {
        Ok(overlapping(&self.stats, key, lo, hi))
    }

    fn chunk_data(&mut self, key: i64, start_step: i64) -> Result<Vec<u8>> {
        self.data.remove(&(key, start_step)).ok_or_else(|| CodedError::new(ErrorCode::Internal, format!("chunk {key}/{start_step} was not read ahead")))
    }
}

impl ChunkSource for Prefetched<'_> {
    fn chunk_stats(&mut self, key: i64, lo: i64, hi: i64) -> Result<Vec<Stats>> {
        Ok(overlapping(&self.stats, key, lo, hi))
    }

    fn chunk_data(&mut self, key: i64, start_step: i64) -> Result<Vec<u8>> {
        match self.data.remove(&(key, start_step)) {
            Some(bytes) => Ok(bytes),
            None => self.fallback.chunk_data(key, start_step),
        }
    }
}
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
fn load_points(db: &dyn Db, key_pk: i64, lo: i64, hi: i64, limit: usize) -> Result<(KeyPoints, bool)> {
    let want = limit.saturating_add(1);
    let mut source = DbChunks { db };
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
        (ChunkValues::F64(v), _) => ColumnValues::Floats(positions.iter().map(|p| p.map_or(f64::NAN, |j| v[j])).collect(), positions.iter().map(Option::is_some).collect()),
        (ChunkValues::I64(v), Some(_)) => {
            ColumnValues::Floats(positions.iter().map(|p| p.map_or(f64::NAN, |j| numeric(v[j] as f64))).collect(), positions.iter().map(Option::is_some).collect())
        }
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

fn key_not_found(path: &RunPath, stream: KeyStream, name: &str, db: &dyn Db, pk: i64) -> CodedError {
    let known: Vec<String> = all_keys(db, pk).unwrap_or_default().into_iter().filter(|k| k.stream == stream && !is_time_key(&k.name)).take(20).map(|k| k.name).collect();
    CodedError::new(ErrorCode::KeyNotFound, format!("run {path} has no {} key {name:?}; it has: {}", stream.name(), known.join(", ")))
}
/// One target's buckets and the x-range of all its data (none when it has no x).
type TargetBuckets = Option<(cairn_types::api::Buckets, Option<[f64; 2]>)>;

/// One series to bucket: a key of a run.
struct Target {
    key: KeyRow,
}

/// The keys named `names` of the runs `run_pks`, in one statement per batch: `(run_pk, name) ->
/// key`, the history key where a run has a key of that name in both streams.
fn keys_of(db: &dyn Db, run_pks: &[i64], names: &[String]) -> Result<HashMap<(i64, String), KeyRow>> {
    let mut out = HashMap::new();
    // System rows first, so the history key of a name wins.
    for key in keys_in(db, run_pks, names)? {
        out.insert((key.run_pk, key.name.clone()), key);
    }
    Ok(out)
}

/// The keys named `names` of the runs `run_pks`, of both streams, system ones first.
fn keys_in(db: &dyn Db, run_pks: &[i64], names: &[String]) -> Result<Vec<KeyRow>> {
    let mut pairs = Vec::with_capacity(run_pks.len() * names.len());
    for &pk in run_pks {
        for name in names {
            pairs.push((pk, name.as_str()));
        }
    }
    let rows = batched(db, &format!("{KEY_SELECT} WHERE (run_pk, name) IN (VALUES {{list}}) ORDER BY stream DESC"), &[], &pairs, &["BIGINT", "TEXT"], |(pk, name)| {
        vec![pk.param(), Param::Text(name)]
    })?;
    rows.iter().map(key_from_row).collect()
}

/// Buckets every target on one shared grid over `[x_min, x_max]` (by default the union of their
/// ranges). A target whose run lacks the x key is an error when `strict` names the run, and has
/// no buckets otherwise. Chunks are read ahead for all targets at once.
fn bucket_targets(db: &dyn Db, targets: &[Target], x: &str, n: u32, x_min: Option<f64>, x_max: Option<f64>, strict: Option<&RunPath>) -> Result<(f64, f64, Vec<TargetBuckets>)> {
    if x == "_step" {
        let lo = x_min.unwrap_or_else(|| targets.iter().map(|t| t.key.totals.first_step).min().unwrap_or(0) as f64);
        let hi = x_max.unwrap_or_else(|| targets.iter().map(|t| t.key.totals.last_step).max().unwrap_or(0) as f64);
        let grid = Grid::new(lo, hi, n as usize);
        let (lo_step, hi_step) = (grid.lo.ceil() as i64, grid.hi.floor() as i64);
        let keys: Vec<i64> = targets.iter().map(|t| t.key.key_pk).collect();
        // What `step_buckets` decodes: the chunks that do not fall inside one bucket.
        let mut source = Prefetched::load(db, &keys, lo_step, hi_step, |s| {
            !(s.start_step >= lo_step && s.end_step <= hi_step && grid.index(s.start_step as f64) == grid.index(s.end_step as f64))
        })?;
        let extent = |t: &Target| (t.key.totals.count > 0).then_some([t.key.totals.first_step as f64, t.key.totals.last_step as f64]);
        // Many series (a project's workspace): the second half is bucketed on a second core,
        // from what was read ahead; a chunk it lacks sends its series back to this thread.
        let half = if targets.len() >= 16 { targets.len() / 2 } else { targets.len() };
        let (mine, theirs) = targets.split_at(half);
        let mut detached = source.detach(theirs.iter().map(|t| t.key.key_pk));
        let (buckets, helped) = std::thread::scope(|scope| {
            let helper = scope.spawn(move || theirs.iter().map(|t| bucket::step_buckets(&mut detached, t.key.key_pk, grid).ok()).collect::<Vec<_>>());
            let mine = mine.iter().map(|t| bucket::step_buckets(&mut source, t.key.key_pk, grid).map(|b| Some((b, extent(t))))).collect::<Result<Vec<_>>>();
            (mine, helper.join())
        });
        let helped = helped.map_err(|_| CodedError::new(ErrorCode::Internal, "a bucketing thread panicked"))?;
        let mut buckets = buckets?;
        for (t, done) in theirs.iter().zip(helped) {
            let b = match done {
                Some(b) => b,
                // Read again from the database: what was read ahead for it went to the helper.
                None => bucket::step_buckets(&mut DbChunks { db }, t.key.key_pk, grid)?,
            };
            buckets.push(Some((b, extent(t))));
        }
        return Ok((lo, hi, buckets));
    }
    let scale = if is_time_key(x) { 1e-6 } else { 1.0 };
    let mut runs: Vec<i64> = targets.iter().map(|t| t.key.run_pk).collect();
    runs.dedup();
    let x_keys: HashMap<(i64, i64), KeyRow> = keys_in(db, &runs, &[x.to_owned()])?.into_iter().map(|k| ((k.run_pk, k.stream as i64), k)).collect();
    let x_of = |t: &Target| x_keys.get(&(t.key.run_pk, t.key.stream as i64));
    let mut keys: Vec<i64> = targets.iter().map(|t| t.key.key_pk).collect();
    keys.extend(targets.iter().filter_map(|t| x_of(t).map(|k| k.key_pk)));
    let mut source = Prefetched::load(db, &keys, i64::MIN, i64::MAX, |_| true)?;
    let mut joined = Vec::with_capacity(targets.len());
    for target in targets {
        match x_of(target) {
            Some(x_key) => {
                let xs = NumericSeries::load(&mut source, x_key.key_pk, i64::MIN, i64::MAX)?.scale(scale);
                let ys = NumericSeries::load(&mut source, target.key.key_pk, i64::MIN, i64::MAX)?;
                joined.push(Some(bucket::join(&xs, &ys)));
            }
            None => match strict {
                Some(path) => return Err(key_not_found(path, target.key.stream, x, db, target.key.run_pk)),
                None => joined.push(None),
            },
        }
    }
    let data_range = joined.iter().flatten().filter_map(|p| bucket::x_range(p)).reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
    let lo = x_min.or(data_range.map(|r| r.0)).unwrap_or(0.0);
    let hi = x_max.or(data_range.map(|r| r.1)).unwrap_or(0.0);
    let grid = Grid::new(lo, hi, n as usize);
    let buckets = joined.iter().map(|p| p.as_ref().map(|p| (bucket::xy_buckets(p, grid), bucket::x_range(p).map(|(a, b)| [a, b])))).collect();
    Ok((lo, hi, buckets))
}

fn series(db: &dyn Db, path: &RunPath, query: &SeriesRequest) -> Result<SeriesResult> {
    let pk = run_pk(db, path)?;
    let (names, x, n) = (&query.keys, query.x.clone(), query.buckets);
    let found = keys_of(db, &[pk], names)?;
    let targets = names
        .iter()
        .map(|name| match found.get(&(pk, name.clone())) {
            Some(key) => Ok(Target { key: key.clone() }),
            None => Err(key_not_found(path, KeyStream::History, name, db, pk)),
        })
        .collect::<Result<Vec<_>>>()?;
    let (lo, hi, buckets) = bucket_targets(db, &targets, &x, n, query.x_min, query.x_max, Some(path))?;
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

fn project_series(db: &dyn Db, entity: &str, project: &str, request: &ProjectSeriesRequest) -> Result<ProjectSeriesResult> {
    let project_pk = super::query::project_pk(db, entity, project)?;
    let (query, run_ids) = (&request.series, &request.run_ids);
    let (x, n) = (query.x.clone(), query.buckets);
    let rows = batched(db, "SELECT run_id, run_pk FROM runs WHERE project_pk = ?1 AND deleted_at IS NULL AND run_id IN ({list})", args![project_pk], run_ids, &[""], |id| {
        vec![id.param()]
    })?;
    let mut pks: HashMap<String, i64> = HashMap::new();
    for r in &rows {
        pks.insert(r.string(0)?, r.i64(1)?);
    }
    let run_pks: Vec<i64> = run_ids.iter().filter_map(|id| pks.get(id).copied()).collect();
    let found = keys_of(db, &run_pks, &query.keys)?;
    let mut targets = Vec::new();
    let mut owners = Vec::new();
    for (run_index, run_id) in run_ids.iter().enumerate() {
        let Some(&pk) = pks.get(run_id) else { continue };
        for name in &query.keys {
            if let Some(key) = found.get(&(pk, name.clone())) {
                targets.push(Target { key: key.clone() });
                owners.push(run_index);
            }
        }
    }
    let (lo, hi, buckets) = bucket_targets(db, &targets, &x, n, query.x_min, query.x_max, None)?;
    let mut runs: Vec<RunSeries> = Vec::new();
    for ((target, owner), buckets) in targets.iter().zip(owners).zip(buckets) {
        let Some((buckets, extent)) = buckets else { continue };
        let run_id = &run_ids[owner];
        if runs.last().is_none_or(|r| &r.run_id != run_id) {
            runs.push(RunSeries { run_id: run_id.clone(), series: Vec::new() });
        }
        runs.last_mut().expect("pushed").series.push(cairn_types::api::KeySeries { key: target.key.name.clone(), buckets, extent });
    }
    Ok(ProjectSeriesResult { grid: SeriesGrid { x, x_min: Some(lo), x_max: Some(hi), buckets: n }, runs })
}

fn project_keys(db: &dyn Db, entity: &str, project: &str) -> Result<Vec<ProjectKey>> {
    let project_pk = super::query::project_pk(db, entity, project)?;
    db.query(
        "SELECT k.stream, k.name, count(*), max(CASE WHEN k.num_count + k.nan_count > 0 THEN 1 ELSE 0 END)
         FROM run_keys k JOIN runs r ON r.run_pk = k.run_pk
         WHERE r.project_pk = ?1 AND r.deleted_at IS NULL AND r.archive_of IS NULL AND k.name NOT IN ('_timestamp', '_runtime')
         GROUP BY k.stream, k.name ORDER BY k.stream, k.name",
        args![project_pk],
    )?
    .iter()
    .map(|r| Ok(ProjectKey { stream: if r.i64(0)? == 1 { "system" } else { "history" }.to_owned(), name: r.string(1)?, runs: r.i64(2)? as u64, numeric: r.i64(3)? != 0 }))
    .collect()
}

fn history(db: &dyn Db, path: &RunPath, req: &HistoryRequest) -> Result<HistoryData> {
    let pk = run_pk(db, path)?;
    let lo = req.min_step.unwrap_or(i64::MIN);
    let hi = req.max_step.map_or(i64::MAX, |m| m.saturating_sub(1));
    let limit = req.limit.max(1);
    let (keys, with_time): (Vec<KeyRow>, bool) = match &req.keys {
        Some(names) => {
            let mut keys = Vec::new();
            for name in names {
                match find_key(db, pk, req.stream, name)? {
                    Some(key) => keys.push(key),
                    None => return Err(key_not_found(path, req.stream, name, db, pk)),
                }
            }
            (keys, false)
        }
        None => (all_keys(db, pk)?.into_iter().filter(|k| k.stream == req.stream && !is_time_key(&k.name)).collect(), true),
    };

    // Each key's first `limit` points from `lo`; rows up to `bound` are complete for every key.
    let mut loaded = Vec::with_capacity(keys.len());
    let mut bound = hi;
    for key in &keys {
        let (points, more) = load_points(db, key.key_pk, lo, hi, limit)?;
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
            if let Some(key) = find_key(db, pk, req.stream, name)? {
                let (points, _) = load_points(db, key.key_pk, first, last, usize::MAX)?;
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

impl SeriesStore for SqlStore {
    fn ingest(&self, path: &RunPath, batch: cairn_types::wire::IngestBatch, now: Timestamp) -> Result<IngestAck> {
        path.validate()?;
        let path = path.clone();
        self.write(move |db| {
            let pk = run_pk(db, &path)?;
            // Locked: a retry of the same batch on another server waits, then finds it stored.
            let before = load_doc(db, pk)?;
            let mut doc = before.clone();
            let mut plan = ingest::plan(batch, &mut doc, now)?;
            let mut touched = Vec::with_capacity(plan.columns.len());
            for mut column in std::mem::take(&mut plan.columns) {
                let totals = append_column(db, pk, &mut column)?;
                touched.push((column, totals));
            }
            for line in &plan.console {
                db.execute(
                    "INSERT INTO console_lines (run_pk, line, stream, ts, text) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (run_pk, line) DO UPDATE SET stream = excluded.stream, ts = excluded.ts, text = excluded.text",
                    args![pk, line.line as i64, line.stream as i64, line.timestamp_us, line.text],
                )?;
            }
            ingest::finalize(&mut doc, &touched, std::mem::take(&mut plan.summary_updates));
            save_doc(db, pk, &before, &doc)?;
            touch_project(db, pk, now)?;
            Ok(IngestAck { offsets: doc.offsets, points: plan.points, stop: doc.stop_requested })
        })
    }

    fn list_keys(&self, path: &RunPath) -> Result<Vec<KeyInfo>> {
        path.validate()?;
        self.read(|db| {
            let pk = run_pk(db, path)?;
            Ok(all_keys(db, pk)?.iter().filter(|k| !is_time_key(&k.name)).map(key_info).collect())
        })
    }

    fn history(&self, path: &RunPath, query: &HistoryRequest) -> Result<HistoryData> {
        path.validate()?;
        if let (Some(lo), Some(hi)) = (query.min_step, query.max_step)
            && lo > hi
        {
            return Err(CodedError::new(ErrorCode::InvalidQuery, format!("min_step={lo} is greater than max_step={hi}")));
        }
        self.read(|db| history(db, path, query))
    }

    fn series(&self, path: &RunPath, query: &SeriesRequest) -> Result<SeriesResult> {
        path.validate()?;
        self.read(|db| series(db, path, query))
    }

    fn project_keys(&self, entity: &str, project: &str) -> Result<Vec<ProjectKey>> {
        cairn_types::ids::validate_name("entity", entity)?;
        cairn_types::ids::validate_name("project", project)?;
        self.read(|db| project_keys(db, entity, project))
    }

    fn project_series(&self, entity: &str, project: &str, query: &ProjectSeriesRequest) -> Result<ProjectSeriesResult> {
        cairn_types::ids::validate_name("entity", entity)?;
        cairn_types::ids::validate_name("project", project)?;
        self.read(|db| project_series(db, entity, project, query))
    }

    fn console(&self, path: &RunPath, from_line: u64, limit: usize) -> Result<ConsolePage> {
        path.validate()?;
        let limit = limit.clamp(1, 100_000);
        self.read(|db| {
            let pk = run_pk(db, path)?;
            let mut lines = db
                .query(
                    "SELECT line, stream, ts, text FROM console_lines WHERE run_pk = ?1 AND line >= ?2 ORDER BY line LIMIT ?3",
                    args![pk, from_line.min(i64::MAX as u64) as i64, limit as i64 + 1],
                )?
                .iter()
                .map(|r| {
                    Ok(ConsoleLineOut {
                        line: r.i64(0)? as u64,
                        stream: if r.i64(1)? == 1 { "stderr" } else { "stdout" }.to_owned(),
                        time: Timestamp(r.i64(2)?),
                        text: r.string(3)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let next_line = if lines.len() > limit { lines.pop().map(|l| l.line) } else { None };
            Ok(ConsolePage { lines, next_line })
        })
    }
}
