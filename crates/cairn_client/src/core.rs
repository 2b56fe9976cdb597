//! The state behind a run handle, under one lock: the write-ahead log, interned keys, stream
//! offsets, the open history row, and the local view of config and summary.
//!
//! `log` encodes a record and copies it into the memory-mapped log: no system call, no network.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cairn_types::api::StreamOffsets;
use cairn_types::summary;
use cairn_types::value::{Map, Value, insert_path, remove_path};
use cairn_types::wire::{self, HISTORY_SEALED, KeyStream, RecordType, payload};
use rustc_hash::FxHashMap;

use crate::error::{ClientError, ErrorKind, Result};
use crate::report::Sparkline;
use crate::wal::WalWriter;

/// Keys that the client writes itself and users cannot log.
pub const RESERVED_KEYS: [&str; 3] = ["_step", "_timestamp", "_runtime"];

pub fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Rows of floats that `log_floats` wrote and the keys' statistics do not have yet: they are
/// folded in [`FOLD_ROWS`] at a time, key by key, or before anything reads or changes the
/// statistics. A training loop's row then costs a copy of its values instead of ten updates of
/// ten keys' state.
#[derive(Debug, Default)]
struct FloatRows {
    /// The keys of every row held, in the order of its values.
    ids: Vec<KeyId>,
    steps: Vec<i64>,
    /// Key by key, [`FOLD_ROWS`] places each: the value of row `r` under `ids[k]` is at
    /// `k * FOLD_ROWS + r`.
    columns: Vec<f64>,
    /// The operation counter at the last row held.
    version: u64,
}

const FOLD_ROWS: usize = 16;

/// Running statistics of one key, as the server keeps them, for the local summary.
#[derive(Debug, Clone)]
pub struct KeyState {
    pub name: String,
    pub path: Vec<String>,
    pub stream: KeyStream,
    /// When the key was last logged (the core's operation counter).
    pub version: u64,
    pub count: u64,
    pub num_count: u64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub first: Value,
    pub last: Value,
    pub sparkline: Option<Sparkline>,
}

impl KeyState {
    /// Observes a column of floats, one per row at `steps`, oldest first: the same state as
    /// observing each in turn, with what is per value the same done once.
    fn observe_floats(&mut self, steps: &[i64], values: &[f64], version: u64) {
        let (Some(&first_step), Some(&first), Some(&last)) = (steps.first(), values.first(), values.last()) else { return };
        let sparkline = self.sparkline.get_or_insert_with(|| Sparkline::new(first_step));
        let (mut min, mut max, mut sum, mut nan) = (self.min, self.max, self.sum, 0u64);
        for (&step, &v) in steps.iter().zip(values) {
            if v.is_nan() {
                nan += 1;
            } else {
                // Not `f64::min`: NaN is already out.
                if v < min {
                    min = v;
                }
                if v > max {
                    max = v;
                }
                sum += v;
            }
            sparkline.push(step, v);
        }
        (self.min, self.max, self.sum) = (min, max, sum);
        self.num_count += values.len() as u64 - nan;
        if self.count == 0 {
            self.first = Value::Float(first);
        }
        self.count += values.len() as u64;
        self.last = Value::Float(last);
        self.version = version;
    }

    fn observe(&mut self, step: i64, value: Value, version: u64) {
        if let Some(v) = value.as_f64().filter(|_| matches!(value, Value::Int(_) | Value::Float(_))) {
            if !v.is_nan() {
                self.num_count += 1;
                self.min = self.min.min(v);
                self.max = self.max.max(v);
                self.sum += v;
            }
            self.sparkline.get_or_insert_with(|| Sparkline::new(step)).push(step, v);
        }
        if self.count == 0 {
            self.first = value.clone();
        }
        self.count += 1;
        self.last = value;
        self.version = version;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpenRow {
    seq: u64,
    step: i64,
}

/// What became of a `log` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutcome {
    /// Written at this step.
    Logged { step: i64 },
    /// The step was lower than the current one: nothing was written.
    Dropped { step: i64, current: i64 },
    /// The run is disabled.
    Disabled,
    /// The run directory cannot be written (its disk is full, or its filesystem turned
    /// read-only): nothing was written (the program was told once).
    Unwritten,
}

/// Why the run directory cannot be written, where that is the disk's doing rather than a bug:
/// training goes on, and what was written before stays syncable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unwritable {
    /// ENOSPC, or a quota (EDQUOT).
    Full,
    /// EROFS: mounted read-only, or turned read-only by the kernel after a disk error.
    ReadOnly,
}

impl Unwritable {
    pub fn of(e: &std::io::Error) -> Option<Unwritable> {
        if cairn_types::error::is_disk_full(e) {
            Some(Unwritable::Full)
        } else if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem || e.raw_os_error() == Some(30) {
            Some(Unwritable::ReadOnly)
        } else {
            None
        }
    }

    /// What the program is told, as "cairn: {this}: …".
    pub fn describe(self) -> &'static str {
        match self {
            Unwritable::Full => "the disk of the run directory is full",
            Unwritable::ReadOnly => "the run directory's filesystem is read-only",
        }
    }
}

pub struct Core {
    wal: WalWriter,
    record: Vec<u8>,
    fields: Vec<u8>,
    pending: Vec<(u32, Value)>,
    pending_floats: Vec<(u32, f64)>,
    flat_keys: FxHashMap<Box<str>, u32>,
    /// The flat key ids of the previous row, by position: most programs log the same keys in the
    /// same order every step, so a comparison usually replaces a hash lookup.
    row_ids: Vec<u32>,
    nested_keys: FxHashMap<Box<str>, u32>,
    system_keys: FxHashMap<Box<str>, u32>,
    /// Read through [`Core::keys`], which folds in `float_rows` first.
    keys: Vec<KeyState>,
    float_rows: FloatRows,
    pub seqs: StreamOffsets,
    open_row: Option<OpenRow>,
    next_step: i64,
    started: Instant,
    /// The wall clock at `started`: a row's timestamp is this plus the monotonic time since, so
    /// that logging reads one clock.
    started_wall_us: i64,
    runtime_offset_us: i64,
    version: u64,
    pub config: Map,
    summary_explicit: BTreeMap<String, (u64, Option<Value>)>,
    metric_summaries: Vec<(String, Vec<String>)>,
    pub finished: bool,
    console_line: u64,
    /// Where raw media is staged (none: the run keeps no directory, and media is refused).
    media: Option<crate::media::Stage>,
    /// The row being built holds staged media.
    row_media: bool,
    /// The last write to the log failed because the run directory cannot be written.
    unwritable: Option<Unwritable>,
    /// Rows `log` could not write since the disk filled up (0: none, or it has room again).
    unwritten_rows: u64,
}

impl Core {
    pub fn new(wal: WalWriter, seqs: StreamOffsets, next_step: i64, runtime_offset_us: i64, config: Map) -> Core {
        Core {
            wal,
            record: Vec::with_capacity(256),
            fields: Vec::with_capacity(256),
            pending: Vec::with_capacity(16),
            pending_floats: Vec::with_capacity(16),
            flat_keys: FxHashMap::default(),
            row_ids: Vec::new(),
            nested_keys: FxHashMap::default(),
            system_keys: FxHashMap::default(),
            keys: Vec::new(),
            float_rows: FloatRows::default(),
            seqs,
            open_row: None,
            next_step,
            started: Instant::now(),
            started_wall_us: now_micros(),
            runtime_offset_us,
            version: 0,
            config,
            summary_explicit: BTreeMap::new(),
            metric_summaries: Vec::new(),
            finished: false,
            // A resumed run's new lines come after every line earlier processes wrote: there
            // are at most as many lines as console records.
            console_line: seqs.console,
            media: None,
            row_media: false,
            unwritable: None,
            unwritten_rows: 0,
        }
    }

    /// After `finish` (or a stop from the server) the run takes nothing more.
    /// Stages logged media in `run_dir` from now on.
    pub fn stage_media_in(&mut self, run_dir: &std::path::Path) {
        self.media = Some(crate::media::Stage::new(run_dir));
    }

    /// Ends the run's log: nothing is appended any more (see [`WalWriter::seal`]). Returns where it
    /// ends.
    pub fn seal_log(&mut self) -> u64 {
        self.finished = true;
        self.wal.seal()
    }

    /// Ends media staging (the run has ended): the files made ahead are removed.
    pub fn close_media(&mut self) {
        self.media = None;
    }

    fn check_open(&self) -> Result<()> {
        if self.finished {
            return Err(ClientError::new(ErrorKind::Finished, "the run has finished; it takes no more data"));
        }
        Ok(())
    }

    /// Whether the last write failed because the run directory cannot be written, and why (and
    /// forgets it).
    pub fn take_unwritable(&mut self) -> Option<Unwritable> {
        self.unwritable.take()
    }

    fn append(&mut self) -> Result<()> {
        self.wal.append(&self.record).map_err(|e| {
            self.unwritable = Unwritable::of(&e);
            ClientError::new(ErrorKind::Io, format!("cannot write the run's log: {e}"))
        })
    }

    pub fn write_run_start(&mut self, info: &Value) -> Result<()> {
        self.record.clear();
        payload::run_start(&mut self.record, info);
        self.append()
    }

    /// The step the next `log` without a step goes to.
    pub fn step(&self) -> i64 {
        self.open_row.map_or(self.next_step, |r| r.step)
    }

    fn define_key(&mut self, stream: KeyStream, path: Vec<String>) -> Result<u32> {
        let id = self.keys.len() as u32;
        self.record.clear();
        payload::key_def(&mut self.record, id as u64, stream, &path);
        self.append()?;
        self.keys.push(KeyState {
            name: wire::key_name(&path),
            path,
            stream,
            version: 0,
            count: 0,
            num_count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            first: Value::Null,
            last: Value::Null,
            sparkline: None,
        });
        Ok(id)
    }

    /// Writes one history record; `fill` adds the fields.
    /// Logs a row. A run directory that cannot be written (a full disk, a filesystem turned
    /// read-only) does not fail the program: the row is not written, the program is told once (on
    /// stderr), and logging goes on once it can be written again; what was written before stays
    /// whole and syncable.
    pub fn log_row(&mut self, step: Option<i64>, commit: Option<bool>, fill: impl FnOnce(&mut RowFields<'_>) -> Result<()>) -> Result<LogOutcome> {
        self.unwritable = None;
        let result = self.log_row_inner(step, commit, fill);
        self.outcome(result)
    }

    /// Logs a row of floats under keys that earlier rows of this run named (`ids[i]` takes
    /// `values[i]`): the same row as [`Core::log_row`] with [`RowFields::float_id`] for each,
    /// without a call per field. This is `log()`'s path for a training loop's usual row, the same
    /// keys as the last one.
    pub fn log_floats(&mut self, step: Option<i64>, commit: Option<bool>, ids: &[KeyId], values: &[f64]) -> Result<LogOutcome> {
        self.unwritable = None;
        let result = self.log_floats_inner(step, commit, ids, values);
        self.outcome(result)
    }

    /// A failed write to a run directory that cannot be written is told once, and the row is
    /// counted as unwritten rather than failing the program.
    fn outcome(&mut self, result: Result<LogOutcome>) -> Result<LogOutcome> {
        match (result, self.unwritable.take()) {
            (Err(e), Some(why)) => {
                self.unwritten_rows += 1;
                if self.unwritten_rows == 1 {
                    eprintln!("cairn: {}: {}; logged rows are not written until it can be written again (what was written is kept)", why.describe(), e.message);
                }
                Ok(LogOutcome::Unwritten)
            }
            (Ok(outcome), _) => {
                if self.unwritten_rows > 0 {
                    eprintln!("cairn: the run directory can be written again; {} logged rows were not written", self.unwritten_rows);
                    self.unwritten_rows = 0;
                }
                Ok(outcome)
            }
            (Err(e), None) => Err(e),
        }
    }

    /// The row (its sequence number and step) that a log at `step` goes to, or why it goes nowhere.
    fn row_for(&self, step: Option<i64>) -> Result<std::result::Result<(u64, i64), LogOutcome>> {
        self.check_open()?;
        Ok(Ok(match (step, self.open_row) {
            (None, Some(open)) => (open.seq, open.step),
            (None, None) => (self.seqs.history, self.next_step),
            (Some(s), _) if s < 0 => {
                return Err(ClientError::new(ErrorKind::InvalidValue, format!("step {s} is negative")));
            }
            (Some(s), Some(open)) if s == open.step => (open.seq, s),
            (Some(s), Some(open)) if s < open.step => return Ok(Err(LogOutcome::Dropped { step: s, current: open.step })),
            (Some(s), Some(_)) => (self.seqs.history, s),
            (Some(s), None) if s < self.next_step => {
                return Ok(Err(LogOutcome::Dropped { step: s, current: self.next_step }));
            }
            (Some(s), None) => (self.seqs.history, s),
        }))
    }

    /// The history record's head, for a row of `count` fields.
    fn history_head(&mut self, seq: u64, row_step: i64, sealed: bool, count: usize) {
        // Seconds and microseconds apart: `as_micros` goes through 128-bit arithmetic.
        let elapsed = self.started.elapsed();
        let elapsed_us = elapsed.as_secs() as i64 * 1_000_000 + elapsed.subsec_micros() as i64;
        payload::history_head(
            &mut self.record,
            seq,
            row_step,
            if sealed { HISTORY_SEALED } else { 0 } | if self.row_media { wire::HISTORY_PENDING_MEDIA } else { 0 },
            self.started_wall_us + elapsed_us,
            self.runtime_offset_us + elapsed_us,
            count,
        );
    }

    /// After a row's record is in the log: the row's stream moves on.
    fn row_written(&mut self, seq: u64, row_step: i64, sealed: bool) -> LogOutcome {
        if seq == self.seqs.history {
            self.seqs.history += 1;
        }
        self.open_row = (!sealed).then_some(OpenRow { seq, step: row_step });
        self.next_step = row_step + 1;
        LogOutcome::Logged { step: row_step }
    }

    fn log_floats_inner(&mut self, step: Option<i64>, commit: Option<bool>, ids: &[KeyId], values: &[f64]) -> Result<LogOutcome> {
        let (seq, row_step) = match self.row_for(step)? {
            Ok(row) => row,
            Err(outcome) => return Ok(outcome),
        };
        if ids.len() != values.len() || ids.iter().any(|id| id.0 as usize >= self.keys.len()) {
            return Err(ClientError::new(ErrorKind::InvalidValue, "a row of floats names keys this run does not have"));
        }
        let sealed = commit.unwrap_or(step.is_none());
        self.row_media = false;
        self.record.clear();
        self.history_head(seq, row_step, sealed, ids.len());
        payload::history_float_fields(&mut self.record, ids.iter().zip(values).map(|(id, &value)| (id.0 as u64, value)));
        self.append()?;
        self.version += 1;
        if self.float_rows.ids != ids {
            self.fold_float_rows();
            let rows = &mut self.float_rows;
            rows.ids.clear();
            rows.ids.extend_from_slice(ids);
            rows.columns.resize(ids.len() * FOLD_ROWS, 0.0);
        }
        let rows = &mut self.float_rows;
        let row = rows.steps.len();
        for (column, &value) in rows.columns.chunks_exact_mut(FOLD_ROWS).zip(values) {
            column[row] = value;
        }
        rows.steps.push(row_step);
        rows.version = self.version;
        if rows.steps.len() >= FOLD_ROWS {
            self.fold_float_rows();
        }
        Ok(self.row_written(seq, row_step, sealed))
    }

    /// The keys' statistics take the rows of floats held in `float_rows`, in order.
    fn fold_float_rows(&mut self) {
        let rows = &mut self.float_rows;
        if rows.steps.is_empty() {
            return;
        }
        let held = rows.steps.len();
        for (id, column) in rows.ids.iter().zip(rows.columns.chunks_exact(FOLD_ROWS)) {
            self.keys[id.0 as usize].observe_floats(&rows.steps, &column[..held], rows.version);
        }
        rows.steps.clear();
    }

    /// Every key, with its statistics up to the last row logged.
    pub fn keys(&mut self) -> &[KeyState] {
        self.fold_float_rows();
        &self.keys
    }

    fn log_row_inner(&mut self, step: Option<i64>, commit: Option<bool>, fill: impl FnOnce(&mut RowFields<'_>) -> Result<()>) -> Result<LogOutcome> {
        // A key's values are observed in the order they were logged.
        self.fold_float_rows();
        let (seq, row_step) = match self.row_for(step)? {
            Ok(row) => row,
            Err(outcome) => return Ok(outcome),
        };
        let sealed = commit.unwrap_or(step.is_none());

        self.fields.clear();
        self.pending.clear();
        self.pending_floats.clear();
        self.row_media = false;
        let mut row = RowFields { core: self, count: 0, position: 0 };
        fill(&mut row)?;
        let count = row.count;

        self.record.clear();
        self.history_head(seq, row_step, sealed, count);
        let mut record = std::mem::take(&mut self.record);
        record.extend_from_slice(&self.fields);
        self.record = record;
        self.append()?;

        self.version += 1;
        let version = self.version;
        for &(id, value) in &self.pending_floats {
            self.keys[id as usize].observe_floats(&[row_step], &[value], version);
        }
        for (id, value) in self.pending.drain(..) {
            self.keys[id as usize].observe(row_step, value, version);
        }
        Ok(self.row_written(seq, row_step, sealed))
    }

    /// Stream offsets move only once the record is in the log: a failed write leaves no gap.
    fn write_updates(&mut self, record_type: RecordType, set: &Map, remove: &[String]) -> Result<()> {
        self.check_open()?;
        let config = record_type == RecordType::Config;
        let seq = if config { self.seqs.config } else { self.seqs.summary };
        self.record.clear();
        payload::updates(&mut self.record, record_type, seq, set, remove);
        self.append()?;
        if config {
            self.seqs.config += 1;
        } else {
            self.seqs.summary += 1;
        }
        Ok(())
    }

    pub fn update_config(&mut self, update: Map, allow_val_change: bool) -> Result<()> {
        self.check_open()?;
        crate::media::refuse_raw(&update, "config")?;
        if !allow_val_change {
            for (key, value) in &update {
                if let Some(old) = self.config.get(key)
                    && old.to_json() != value.to_json()
                {
                    return Err(ClientError::new(
                        ErrorKind::Config,
                        format!("config key {key:?} already has the value {}; changing it to {} needs allow_val_change=True", old.to_json(), value.to_json()),
                    ));
                }
            }
        }
        let changed: Map = update.into_iter().filter(|(k, v)| self.config.get(k) != Some(v)).collect();
        if changed.is_empty() {
            return Ok(());
        }
        self.write_updates(RecordType::Config, &changed, &[])?;
        self.config.extend(changed);
        Ok(())
    }

    pub fn remove_config(&mut self, keys: Vec<String>) -> Result<()> {
        let keys: Vec<String> = keys.into_iter().filter(|k| self.config.contains_key(k)).collect();
        if keys.is_empty() {
            return Ok(());
        }
        self.write_updates(RecordType::Config, &Map::new(), &keys)?;
        for key in keys {
            self.config.remove(&key);
        }
        Ok(())
    }

    pub fn update_summary(&mut self, set: Map, remove: Vec<String>) -> Result<()> {
        crate::media::refuse_raw(&set, "summary")?;
        self.write_updates(RecordType::Summary, &set, &remove)?;
        self.version += 1;
        for (key, value) in set {
            self.summary_explicit.insert(key, (self.version, Some(value)));
        }
        for key in remove {
            self.summary_explicit.insert(key, (self.version, None));
        }
        Ok(())
    }

    pub fn write_event(&mut self, event: &Value) -> Result<()> {
        self.check_open()?;
        let seq = self.seqs.events;
        self.record.clear();
        payload::event(&mut self.record, seq, event);
        self.append()?;
        self.seqs.events += 1;
        Ok(())
    }

    pub fn define_metric(&mut self, name: &str, summary_modes: Vec<String>, event: &Value) -> Result<()> {
        self.write_event(event)?;
        self.metric_summaries.retain(|(n, _)| n != name);
        if !summary_modes.is_empty() {
            self.metric_summaries.push((name.to_owned(), summary_modes));
        }
        Ok(())
    }

    fn modes_for(&self, name: &str) -> Option<&[String]> {
        summary::definition_for(self.metric_summaries.iter().map(|(p, modes)| (p.as_str(), modes.as_slice())), name)
    }

    /// The summary as the server will compute it: history-derived values (per `define_metric`),
    /// overlaid by explicit updates made after the key was last logged.
    pub fn summary(&mut self) -> Map {
        self.fold_float_rows();
        let mut out = Map::new();
        for key in &self.keys {
            if key.stream != KeyStream::History || key.count == 0 {
                continue;
            }
            if let Some((version, _)) = self.summary_explicit.get(&key.path[0])
                && *version > key.version
            {
                continue;
            }
            let stats = summary::KeyStats { first: &key.first, last: &key.last, min: key.min, max: key.max, sum: key.sum, num_count: key.num_count };
            if let Some(value) = summary::value(self.modes_for(&key.name), stats) {
                insert_path(&mut out, &key.path, value);
            }
        }
        for (key, (version, value)) in &self.summary_explicit {
            let logged_later = self.keys.iter().any(|k| k.stream == KeyStream::History && k.path[0] == *key && k.version > *version);
            if logged_later {
                continue;
            }
            match value {
                Some(v) => {
                    out.insert(key.clone(), v.clone());
                }
                None => remove_path(&mut out, &[key]),
            }
        }
        out
    }

    pub fn log_system(&mut self, timestamp_us: i64, fields: &[(&str, f64)]) -> Result<()> {
        self.check_open()?;
        let mut ids = Vec::with_capacity(fields.len());
        for (name, value) in fields {
            let id = match self.system_keys.get(*name) {
                Some(&id) => id,
                None => {
                    let id = self.define_key(KeyStream::System, vec![(*name).to_owned()])?;
                    self.system_keys.insert((*name).into(), id);
                    id
                }
            };
            ids.push((id as u64, *value));
        }
        let seq = self.seqs.system;
        self.record.clear();
        payload::system(&mut self.record, seq, timestamp_us, &ids);
        self.append()?;
        self.seqs.system += 1;
        Ok(())
    }

    /// Writes a console line; `line` is `None` for a new line, or the number of a line to rewrite.
    pub fn log_console(&mut self, line: Option<u64>, stream: wire::ConsoleStream, text: &str) -> Result<u64> {
        self.check_open()?;
        let number = line.unwrap_or(self.console_line);
        let seq = self.seqs.console;
        self.record.clear();
        payload::console(&mut self.record, seq, number, stream, now_micros(), text);
        self.append()?;
        self.seqs.console += 1;
        if line.is_none() {
            self.console_line += 1;
        }
        Ok(number)
    }

    pub fn flush(&self) {
        let _ = self.wal.flush();
    }
}

/// A top-level history key of one run, as [`RowFields::float`] gives it. Only that run's rows
/// take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyId(u32);

/// Adds fields to the row being logged.
pub struct RowFields<'a> {
    core: &'a mut Core,
    count: usize,
    /// Index of the next flat key in the row.
    position: usize,
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(ClientError::new(ErrorKind::InvalidValue, "a logged key must not be empty"));
    }
    if RESERVED_KEYS.contains(&key) {
        return Err(ClientError::new(ErrorKind::InvalidValue, format!("key {key:?} is reserved; cairn sets it itself")));
    }
    Ok(())
}

impl RowFields<'_> {
    #[inline]
    fn flat_id(&mut self, key: &str) -> Result<u32> {
        let position = self.position;
        self.position += 1;
        if let Some(&id) = self.core.row_ids.get(position)
            && self.core.keys[id as usize].name == key
        {
            return Ok(id);
        }
        let id = match self.core.flat_keys.get(key) {
            Some(&id) => id,
            None => {
                check_key(key)?;
                let id = self.core.define_key(KeyStream::History, vec![key.to_owned()])?;
                self.core.flat_keys.insert(key.into(), id);
                id
            }
        };
        self.remember_at(position, id);
        Ok(id)
    }

    /// Notes that the flat key at `position` of this row is `id`, for the next row's lookup.
    fn remember_at(&mut self, position: usize, id: u32) {
        let row_ids = &mut self.core.row_ids;
        if position < row_ids.len() {
            row_ids[position] = id;
        } else if position == row_ids.len() {
            row_ids.push(id);
        }
    }

    fn nested_id(&mut self, path: &[&str]) -> Result<u32> {
        let joined = path.join("\u{1f}");
        if let Some(&id) = self.core.nested_keys.get(joined.as_str()) {
            return Ok(id);
        }
        check_key(path[0])?;
        let id = self.core.define_key(KeyStream::History, path.iter().map(|s| s.to_string()).collect())?;
        self.core.nested_keys.insert(joined.into(), id);
        Ok(id)
    }

    /// A float under a top-level key: the fast path. Returns the key's id, which
    /// [`RowFields::float_id`] takes in later rows of the run.
    #[inline]
    pub fn float(&mut self, key: &str, value: f64) -> Result<KeyId> {
        let id = self.flat_id(key)?;
        self.push_float(id, value);
        Ok(KeyId(id))
    }

    /// A float under the top-level key that [`RowFields::float`] named `id` in this run: a
    /// binding that knows the key object it saw (Python's `str`, say) skips the key's text.
    pub fn float_id(&mut self, id: KeyId, value: f64) {
        let position = self.position;
        self.position += 1;
        self.remember_at(position, id.0);
        self.push_float(id.0, value);
    }

    #[inline]
    fn push_float(&mut self, id: u32, value: f64) {
        payload::history_float_field(&mut self.core.fields, id as u64, value);
        self.core.pending_floats.push((id, value));
        self.count += 1;
    }

    /// Any value under a top-level key; maps are stored nested, as their leaves.
    pub fn value(&mut self, key: &str, value: Value) -> Result<()> {
        match value {
            Value::Map(map) if !map.is_empty() => {
                let mut path = vec![key];
                self.nested(&mut path, &map)
            }
            Value::Float(f) => self.float(key, f).map(drop),
            mut other => {
                self.stage(key, &mut other)?;
                let id = self.flat_id(key)?;
                payload::history_field(&mut self.core.fields, id as u64, &other);
                self.core.pending.push((id, other));
                self.count += 1;
                Ok(())
            }
        }
    }

    /// Writes raw media to the run directory, as pending references for the uploader to store.
    fn stage(&mut self, key: &str, value: &mut Value) -> Result<()> {
        if !matches!(value, Value::Media(_) | Value::List(_) | Value::Table(_)) {
            return Ok(());
        }
        match &mut self.core.media {
            Some(stage) => self.core.row_media |= stage.stage(key, value)?,
            None if cairn_types::media::holds_unstored(value) => {
                return Err(ClientError::new(ErrorKind::InvalidValue, format!("{key:?}: this run keeps no directory to stage media in")));
            }
            None => {}
        }
        Ok(())
    }

    fn nested<'k>(&mut self, path: &mut Vec<&'k str>, map: &'k Map) -> Result<()> {
        for (key, value) in map {
            path.push(key);
            match value {
                Value::Map(child) if !child.is_empty() => self.nested(path, child)?,
                leaf => {
                    if key.is_empty() {
                        return Err(ClientError::new(ErrorKind::InvalidValue, format!("key {:?} has an empty part", path.join("."))));
                    }
                    let id = self.nested_id(path)?;
                    let mut leaf = leaf.clone();
                    self.stage(&path.join("/"), &mut leaf)?;
                    payload::history_field(&mut self.core.fields, id as u64, &leaf);
                    self.core.pending.push((id, leaf));
                    self.count += 1;
                }
            }
            path.pop();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_types::map;
    use cairn_types::wire::{Record, decode_record};

    fn core() -> (Core, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let wal = WalWriter::create(&dir.path().join("wal")).unwrap();
        (Core::new(wal, StreamOffsets::default(), 0, 0, Map::new()), dir)
    }

    fn history(dir: &std::path::Path) -> Vec<(u64, i64, u8, usize)> {
        let mut out = Vec::new();
        crate::wal::WalReader::new(&dir.join("wal"))
            .scan(0, u64::MAX, |_, _, p| {
                if let Ok(Record::History { seq, step, flags, fields, .. }) = decode_record(p) {
                    out.push((seq, step, flags, fields.len()));
                }
                true
            })
            .unwrap();
        out
    }

    fn log(core: &mut Core, step: Option<i64>, commit: Option<bool>, data: Map) -> LogOutcome {
        core.log_row(step, commit, |row| {
            for (k, v) in data {
                row.value(&k, v)?;
            }
            Ok(())
        })
        .unwrap()
    }

    #[test]
    fn nothing_is_written_after_finish() {
        let (mut c, dir) = core();
        log(&mut c, None, None, map! {"a" => 1});
        c.write_event(&Value::Map(map! {"type" => "finish"})).unwrap();
        c.finished = true;
        let before = c.seqs;
        let finished = |r: Result<()>| assert_eq!(r.unwrap_err().kind, ErrorKind::Finished);
        finished(c.update_config(map! {"lr" => 1}, false));
        finished(c.update_summary(map! {"best" => 1}, vec![]));
        finished(c.write_event(&Value::Map(map! {"type" => "update"})));
        finished(c.log_system(0, &[("cpu", 1.0)]));
        finished(c.log_console(None, wire::ConsoleStream::Stdout, "late").map(|_| ()));
        finished(c.log_row(None, None, |_| Ok(())).map(|_| ()));
        assert_eq!(c.seqs, before);
        assert_eq!(history(dir.path()).len(), 1);
    }

    #[test]
    fn a_record_over_the_limit_is_refused_and_leaves_no_gap() {
        let (mut c, _dir) = core();
        let huge = "x".repeat(wire::MAX_RECORD_LEN + 1);
        let err = c.log_console(None, wire::ConsoleStream::Stdout, &huge).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Io);
        assert!(err.message.contains("over the limit"), "{}", err.message);
        assert_eq!(c.seqs.console, 0);
        assert_eq!(c.log_console(None, wire::ConsoleStream::Stdout, "next").unwrap(), 0);
        assert_eq!(c.seqs.console, 1);
    }

    #[test]
    fn wandb_step_and_commit_semantics() {
        let (mut c, dir) = core();
        assert_eq!(log(&mut c, None, None, map! {"a" => 1}), LogOutcome::Logged { step: 0 });
        assert_eq!(log(&mut c, None, Some(false), map! {"b" => 2}), LogOutcome::Logged { step: 1 });
        assert_eq!(log(&mut c, None, None, map! {"c" => 3}), LogOutcome::Logged { step: 1 });
        assert_eq!(log(&mut c, Some(5), None, map! {"a" => 4}), LogOutcome::Logged { step: 5 });
        assert_eq!(log(&mut c, Some(5), None, map! {"b" => 5}), LogOutcome::Logged { step: 5 });
        assert_eq!(log(&mut c, Some(3), None, map! {"a" => 6}), LogOutcome::Dropped { step: 3, current: 5 });
        assert_eq!(log(&mut c, Some(7), Some(true), map! {"a" => 7}), LogOutcome::Logged { step: 7 });
        assert_eq!(log(&mut c, Some(7), None, map! {"a" => 8}), LogOutcome::Dropped { step: 7, current: 8 });
        assert_eq!(log(&mut c, None, None, map! {"a" => 9}), LogOutcome::Logged { step: 8 });
        assert_eq!(history(dir.path()), vec![(0, 0, 1, 1), (1, 1, 0, 1), (1, 1, 1, 1), (2, 5, 0, 1), (2, 5, 0, 1), (3, 7, 1, 1), (4, 8, 1, 1)]);
        assert!(c.log_row(Some(-1), None, |_| Ok(())).is_err());
    }

    #[test]
    fn summary_follows_metric_definitions_and_explicit_updates() {
        let (mut c, _dir) = core();
        for (i, loss) in [3.0, 1.0, 2.0].into_iter().enumerate() {
            log(&mut c, None, None, map! {"loss" => loss, "val" => Value::Map(map! {"acc" => i as i64})});
        }
        assert_eq!(c.summary()["loss"], Value::Float(2.0));
        assert_eq!(c.summary()["val"], Value::Map(map! {"acc" => 2}));
        c.define_metric("loss", vec!["min".into(), "max".into()], &Value::Null).unwrap();
        assert_eq!(c.summary()["loss"], Value::Map(map! {"min" => 1.0, "max" => 3.0}));
        c.update_summary(map! {"loss" => "best"}, vec![]).unwrap();
        assert_eq!(c.summary()["loss"], Value::from("best"));
        log(&mut c, None, None, map! {"loss" => 0.5});
        assert_eq!(c.summary()["loss"], Value::Map(map! {"min" => 0.5, "max" => 3.0}));
        c.update_summary(Map::new(), vec!["val".into()]).unwrap();
        assert!(!c.summary().contains_key("val"));
    }

    #[test]
    fn config_changes_need_permission() {
        let (mut c, _dir) = core();
        c.update_config(map! {"lr" => 0.1}, false).unwrap();
        c.update_config(map! {"lr" => 0.1, "epochs" => 3}, false).unwrap();
        let err = c.update_config(map! {"lr" => 0.2}, false).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Config);
        assert!(err.message.contains("lr") && err.message.contains("0.2"), "{}", err.message);
        c.update_config(map! {"lr" => 0.2}, true).unwrap();
        assert_eq!(c.config["lr"], Value::Float(0.2));
        assert_eq!(c.seqs.config, 3);
    }

    /// Rows of floats held back from the keys' statistics give the summary and the sparklines
    /// that each value observed as it came would: across blocks, a change of keys, rows of the
    /// general path between them, explicit summary updates and metric definitions.
    #[test]
    fn rows_of_floats_folded_later_give_what_observing_each_row_gives() {
        let (mut eager, _a) = core();
        let (mut folded, _b) = core();
        eager.define_metric("loss", vec!["min".into(), "max".into(), "mean".into(), "first".into()], &Value::Null).unwrap();
        folded.define_metric("loss", vec!["min".into(), "max".into(), "mean".into(), "first".into()], &Value::Null).unwrap();
        let value = |i: usize, k: usize| match (i * 7 + k) % 23 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            n => (n as f64 - 11.0) * 0.25 + i as f64 * 1e-3,
        };
        let mut ids: Vec<KeyId> = Vec::new();
        let mut names = vec!["loss", "acc", "lr"];
        for i in 0..3 * FOLD_ROWS + 5 {
            if i == FOLD_ROWS + 3 {
                // Other keys from here: the rows held are folded, a new layout begins.
                names = vec!["acc", "loss"];
                ids.clear();
            }
            let row: Vec<(&str, f64)> = names.iter().enumerate().map(|(k, &n)| (n, value(i, k))).collect();
            eager.log_row(Some(i as i64), None, |r| row.iter().try_for_each(|&(n, v)| r.float(n, v).map(drop))).unwrap();
            if ids.is_empty() || i % 50 == 17 {
                // The general path, as `log` takes for a first row or one with other values.
                ids.clear();
                folded.log_row(Some(i as i64), None, |r| row.iter().try_for_each(|&(n, v)| r.float(n, v).map(|id| ids.push(id)))).unwrap();
            } else {
                let values: Vec<f64> = row.iter().map(|&(_, v)| v).collect();
                assert_eq!(folded.log_floats(Some(i as i64), None, &ids, &values).unwrap(), LogOutcome::Logged { step: i as i64 });
            }
            if i == 40 || i == 2 * FOLD_ROWS + 1 {
                for c in [&mut eager, &mut folded] {
                    c.update_summary(map! {"acc" => "explicit"}, vec![]).unwrap();
                }
                assert_eq!(eager.summary().get("acc"), Some(&Value::from("explicit")));
                assert_eq!(folded.summary().get("acc"), Some(&Value::from("explicit")));
            }
            // Now and then: a summary folds what is held, and the test wants blocks to fill too.
            if i % 97 == 96 {
                assert_eq!(Value::Map(eager.summary()).to_json(), Value::Map(folded.summary()).to_json(), "after row {i}");
            }
        }
        assert_eq!(Value::Map(eager.summary()).to_json(), Value::Map(folded.summary()).to_json());
        let sparklines = |c: &mut Core| c.keys().iter().map(|k| (k.name.clone(), k.count, k.sparkline.as_ref().map(Sparkline::render))).collect::<Vec<_>>();
        assert_eq!(sparklines(&mut eager), sparklines(&mut folded));
        assert_eq!(sparklines(&mut folded)[0].1 as usize, 3 * FOLD_ROWS + 5, "every row has a loss");
    }

    #[test]
    fn bad_keys_abort_the_row_and_leave_no_trace() {
        let (mut c, dir) = core();
        let err = c
            .log_row(None, None, |row| {
                row.float("ok", 1.0)?;
                row.float("_step", 2.0).map(drop)
            })
            .unwrap_err();
        assert!(err.message.contains("_step"));
        assert!(history(dir.path()).is_empty());
        assert_eq!(c.keys[0].count, 0);
        assert_eq!(c.step(), 0);
    }
}
