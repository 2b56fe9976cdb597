//! What a batch does to a run, for every backend: which records are new (offsets), the columns to
//! append per key, and the changes to the run's document (config, summary, state, tags...). The
//! backend loads a [`RunDoc`], calls [`plan`], appends the columns, calls [`finalize`] with the
//! keys' updated statistics, and writes the document back, all in one transaction.

use std::collections::HashMap;

use cairn_types::api::{FinishRequest, RunPatch, RunState, StreamOffsets};
use cairn_types::error::{CodedError, ErrorCode};
use cairn_types::value::{Map, Value, insert_path, remove_path};
use cairn_types::wire::{ConsoleLine, IngestBatch, KeyPath, KeyStream, RUNTIME_UNKNOWN, Stream, Update, key_name};
use cairn_types::{Timestamp, summary};

use crate::Result;

/// Internal keys that hold the time of each row, in microseconds.
pub const TIMESTAMP_KEY: &str = "_timestamp";
pub const RUNTIME_KEY: &str = "_runtime";

/// The mutable part of a run, as ingest and lifecycle operations see it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunDoc {
    pub state: RunState,
    pub exit_code: Option<i32>,
    pub started_at: Timestamp,
    pub heartbeat_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub name: String,
    pub notes: String,
    pub tags: Vec<String>,
    pub group: Option<String>,
    pub job_type: Option<String>,
    pub config: Map,
    pub summary: Map,
    pub metadata: Map,
    /// Metric definitions (`define_metric`) by name or glob.
    pub metric_defs: Map,
    pub last_step: Option<i64>,
    pub offsets: StreamOffsets,
    pub stop_requested: bool,
    /// When the run said it may be preempted (`mark_preempting`): the crash monitor waits longer
    /// for its heartbeat. Cleared when it resumes (a new session); kept when it ends.
    pub preempting_at: Option<Timestamp>,
    /// Alerts raised by the events being applied, for the store to record.
    pub new_alerts: Vec<NewAlert>,
}

/// An alert event, as the client sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    pub title: String,
    pub text: String,
    pub level: cairn_types::api::AlertLevel,
    pub time: Timestamp,
    /// Within this long after an alert of the same title, another is not sent.
    pub wait_micros: i64,
    /// When the server got it: delivery starts then, whatever the client's clock says.
    pub received: Timestamp,
}

/// Values to append to one key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyColumn {
    pub stream: KeyStream,
    pub name: String,
    pub path: KeyPath,
    pub steps: Vec<i64>,
    pub values: Vec<Value>,
}

impl KeyColumn {
    fn push(&mut self, step: i64, value: Value) {
        if self.steps.last() == Some(&step) {
            *self.values.last_mut().expect("aligned") = value;
        } else {
            self.steps.push(step);
            self.values.push(value);
        }
    }
}

/// A key's statistics over all its points, as the backend keeps them.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyTotals {
    pub count: u64,
    pub num_count: u64,
    pub nan_count: u64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub first_step: i64,
    pub last_step: i64,
    pub first_value: Value,
    pub last_value: Value,
}

impl KeyTotals {
    pub fn from_column(column: &KeyColumn) -> KeyTotals {
        let mut stats = crate::chunk::Stats::empty();
        for (step, value) in column.steps.iter().zip(&column.values) {
            stats.push_value(*step, value);
        }
        KeyTotals {
            count: stats.count,
            num_count: stats.num_count,
            nan_count: stats.nan_count,
            min: stats.min,
            max: stats.max,
            sum: stats.sum,
            first_step: stats.start_step,
            last_step: stats.end_step,
            first_value: column.values.first().cloned().unwrap_or_default(),
            last_value: column.values.last().cloned().unwrap_or_default(),
        }
    }

    /// Adds `later`, whose points all come after this one's.
    pub fn merge(&mut self, later: &KeyTotals) {
        self.count += later.count;
        self.num_count += later.num_count;
        self.nan_count += later.nan_count;
        self.min = self.min.min(later.min);
        self.max = self.max.max(later.max);
        self.sum += later.sum;
        self.last_step = later.last_step;
        self.last_value = later.last_value.clone();
    }
}

/// What a batch adds, once the records the store already has are dropped.
#[derive(Debug, Default)]
pub struct IngestPlan {
    pub columns: Vec<KeyColumn>,
    pub console: Vec<ConsoleLine>,
    /// Explicit summary updates, applied after the history-derived summary.
    pub summary_updates: Vec<Update>,
    /// Values stored.
    pub points: u64,
    /// Events that were invalid and left out.
    pub skipped_events: u64,
}

/// The index of the first new record of a stream part, or an offset-gap error.
fn new_from(stream: Stream, first: u64, count: u64, offsets: &StreamOffsets) -> Result<usize> {
    let expected = offsets.get(stream);
    if first > expected {
        let mut err = CodedError::new(ErrorCode::OffsetGap, format!("{} records start at offset {first}, but the server expects offset {expected}", stream.name()));
        err.expected_offsets = Some(*offsets);
        return Err(err);
    }
    Ok((expected - first).min(count) as usize)
}

struct ColumnSet {
    columns: Vec<KeyColumn>,
    by_name: HashMap<(KeyStream, String), usize>,
}

impl ColumnSet {
    fn column(&mut self, stream: KeyStream, path: &[String]) -> usize {
        let name = key_name(path);
        let next = self.columns.len();
        *self.by_name.entry((stream, name.clone())).or_insert_with(|| {
            self.columns.push(KeyColumn { stream, name, path: path.to_vec(), steps: Vec::new(), values: Vec::new() });
            next
        })
    }
}

/// Drops what is already stored, checks steps, applies config updates and events to `doc`, and
/// returns the columns to append.
pub fn plan(mut batch: IngestBatch, doc: &mut RunDoc, now: Timestamp) -> Result<IngestPlan> {
    // Check every stream before changing anything.
    for (stream, first, count) in batch.stream_ranges() {
        new_from(stream, first, count, &doc.offsets)?;
    }
    let mut plan = IngestPlan::default();
    let mut set = ColumnSet { columns: Vec::new(), by_name: HashMap::new() };
    // Batch key index -> column, resolved lazily.
    let mut key_columns: Vec<Option<usize>> = vec![None; batch.keys.len()];
    let mut column_of = |set: &mut ColumnSet, idx: u32| -> usize {
        *key_columns[idx as usize].get_or_insert_with(|| {
            let key = &batch.keys[idx as usize];
            set.column(key.stream, &key.path)
        })
    };

    if let Some(mut history) = batch.history.take() {
        let skip = new_from(Stream::History, history.first_offset, history.rows.len() as u64, &doc.offsets)?;
        let mut fields = std::mem::take(&mut history.fields).into_iter();
        let mut taken = 0usize;
        if skip < history.rows.len() {
            let ts_col = set.column(KeyStream::History, &[TIMESTAMP_KEY.to_owned()]);
            let rt_col = set.column(KeyStream::History, &[RUNTIME_KEY.to_owned()]);
            let mut last_step = doc.last_step;
            for i in skip..history.rows.len() {
                let row = history.rows[i];
                if let Some(last) = last_step
                    && row.step <= last
                {
                    return Err(CodedError::new(
                        ErrorCode::InvalidStep,
                        format!("history row at offset {} has _step {}, which is not greater than the last step {last}", history.first_offset + i as u64, row.step),
                    ));
                }
                last_step = Some(row.step);
                let runtime_us = if row.runtime_us == RUNTIME_UNKNOWN { (row.timestamp_us - doc.started_at.micros()).max(0) } else { row.runtime_us };
                set.columns[ts_col].push(row.step, Value::Int(row.timestamp_us));
                set.columns[rt_col].push(row.step, Value::Int(runtime_us));
                let row_start = if i == 0 { 0 } else { history.rows[i - 1].fields_end as usize };
                // Skip the fields of rows the store already has.
                for _ in taken..row_start {
                    fields.next();
                }
                taken = history.rows[i].fields_end as usize;
                for (idx, value) in fields.by_ref().take(taken - row_start) {
                    let col = column_of(&mut set, idx);
                    if set.columns[col].stream != KeyStream::History {
                        return Err(CodedError::new(ErrorCode::InvalidBody, format!("key {:?} is a system key but appears in a history row", set.columns[col].name)));
                    }
                    if cairn_types::media::holds_unstored(&value) {
                        return Err(CodedError::new(
                            ErrorCode::InvalidBody,
                            format!("key {:?} at step {} holds a media value that its client has not stored yet (a pending reference)", set.columns[col].name, row.step),
                        ));
                    }
                    set.columns[col].push(row.step, value);
                    plan.points += 1;
                }
            }
            doc.last_step = last_step;
        }
        doc.offsets.history = doc.offsets.history.max(history.first_offset + history.rows.len() as u64);
    }

    if let Some(system) = &batch.system {
        let skip = new_from(Stream::System, system.first_offset, system.rows.len() as u64, &doc.offsets)?;
        if skip < system.rows.len() {
            let ts_col = set.column(KeyStream::System, &[TIMESTAMP_KEY.to_owned()]);
            let rt_col = set.column(KeyStream::System, &[RUNTIME_KEY.to_owned()]);
            for i in skip..system.rows.len() {
                let row = system.rows[i];
                let step = (system.first_offset + i as u64) as i64;
                set.columns[ts_col].push(step, Value::Int(row.timestamp_us));
                set.columns[rt_col].push(step, Value::Int((row.timestamp_us - doc.started_at.micros()).max(0)));
                for (idx, value) in system.row_fields(i) {
                    let col = column_of(&mut set, *idx);
                    if set.columns[col].stream != KeyStream::System {
                        return Err(CodedError::new(ErrorCode::InvalidBody, format!("key {:?} is a history key but appears in a system row", set.columns[col].name)));
                    }
                    set.columns[col].push(step, Value::Float(*value));
                    plan.points += 1;
                }
            }
        }
        doc.offsets.system = doc.offsets.system.max(system.first_offset + system.rows.len() as u64);
    }

    if let Some(config) = batch.config {
        let skip = new_from(Stream::Config, config.first_offset, config.updates.len() as u64, &doc.offsets)?;
        doc.offsets.config = doc.offsets.config.max(config.first_offset + config.updates.len() as u64);
        for update in config.updates.into_iter().skip(skip) {
            apply_update(&mut doc.config, update);
        }
    }

    if let Some(summary) = batch.summary {
        let skip = new_from(Stream::Summary, summary.first_offset, summary.updates.len() as u64, &doc.offsets)?;
        doc.offsets.summary = doc.offsets.summary.max(summary.first_offset + summary.updates.len() as u64);
        plan.summary_updates = summary.updates.into_iter().skip(skip).collect();
    }

    if let Some(console) = batch.console {
        let skip = new_from(Stream::Console, console.first_offset, console.lines.len() as u64, &doc.offsets)?;
        doc.offsets.console = doc.offsets.console.max(console.first_offset + console.lines.len() as u64);
        plan.console = console.lines.into_iter().skip(skip).collect();
    }

    if let Some(events) = batch.events {
        let skip = new_from(Stream::Events, events.first_offset, events.events.len() as u64, &doc.offsets)?;
        doc.offsets.events = doc.offsets.events.max(events.first_offset + events.events.len() as u64);
        // A bad event (an empty tag, say) is left out; it must not hold back the rest of the
        // run's data, which a client would otherwise send again forever.
        for (i, event) in events.events.into_iter().enumerate().skip(skip) {
            if let Err(e) = apply_event(doc, &event, now) {
                tracing::warn!("event at offset {} left out: {}", events.first_offset + i as u64, e.message);
                plan.skipped_events += 1;
            }
        }
    }

    doc.heartbeat_at = Some(now);
    if doc.state == RunState::Crashed {
        doc.state = RunState::Running;
    }
    plan.columns = set.columns.into_iter().filter(|c| !c.steps.is_empty()).collect();
    Ok(plan)
}

/// Top-level merge: a set key replaces the old value whole.
pub fn apply_update(target: &mut Map, update: Update) {
    for key in update.remove {
        target.remove(&key);
    }
    for (key, value) in update.set {
        target.insert(key, value);
    }
}

fn event_str<'a>(event: &'a Map, key: &str) -> Option<&'a str> {
    event.get(key).and_then(Value::as_str)
}

/// Applies one event of the events stream.
pub fn apply_event(doc: &mut RunDoc, event: &Value, now: Timestamp) -> Result<()> {
    let bad = |message: String| CodedError::new(ErrorCode::InvalidValue, message);
    let Some(map) = event.as_map() else {
        return Err(bad(format!("event must be an object, got {}", event.to_json())));
    };
    match event_str(map, "type") {
        Some("finish") => {
            let exit_code = match map.get("exit_code") {
                Some(Value::Int(i)) => Some(i32::try_from(*i).map_err(|_| bad(format!("exit_code {i} is out of range")))?),
                None | Some(Value::Null) => None,
                Some(other) => return Err(bad(format!("exit_code must be an integer, got {}", other.to_json()))),
            };
            let state = match event_str(map, "state") {
                Some(s) => Some(RunState::parse(s).ok_or_else(|| bad(format!("unknown run state {s:?}")))?),
                None => None,
            };
            let finished_at = match map.get("time") {
                Some(v) => v.as_f64().map(Timestamp::from_secs_f64),
                None => None,
            };
            finish(doc, FinishRequest { exit_code, state, finished_at }, now)?;
        }
        Some("define_metric") => {
            let Some(name) = event_str(map, "name") else {
                return Err(bad("define_metric event has no name".into()));
            };
            let mut def = map.clone();
            def.remove("type");
            def.remove("name");
            doc.metric_defs.insert(name.to_owned(), Value::Map(def));
        }
        Some("update") => {
            let patch: RunPatch = serde_json::from_value(event.to_json())
                .or_else(|_| {
                    let mut m = map.clone();
                    m.remove("type");
                    serde_json::from_value(Value::Map(m).to_json())
                })
                .map_err(|e| bad(format!("update event: {e}")))?;
            apply_patch(doc, patch)?;
        }
        Some("alert") => {
            let title = event_str(map, "title").filter(|t| !t.trim().is_empty()).ok_or_else(|| bad("alert event has no title".into()))?;
            let level = match event_str(map, "level") {
                None => cairn_types::api::AlertLevel::Info,
                Some(l) => cairn_types::api::AlertLevel::parse(l).ok_or_else(|| bad(format!("alert level {l:?} is not INFO, WARN or ERROR")))?,
            };
            let wait = map.get("wait_duration").and_then(Value::as_f64).unwrap_or(0.0);
            doc.new_alerts.push(NewAlert {
                title: title.to_owned(),
                text: event_str(map, "text").unwrap_or("").to_owned(),
                level,
                time: map.get("time").and_then(Value::as_f64).filter(|t| t.is_finite() && (0.0..1e11).contains(t)).map(Timestamp::from_secs_f64).unwrap_or(now),
                wait_micros: if wait.is_finite() && wait > 0.0 { (wait.min(1e9) * 1e6) as i64 } else { 0 },
                received: now,
            });
        }
        // `mark_preempting`: the run may go silent; the first time it said so counts.
        Some("preempting") => {
            if doc.state == RunState::Running && doc.preempting_at.is_none() {
                doc.preempting_at = Some(now);
            }
        }
        Some("metadata") => {
            if let Some(Value::Map(metadata)) = map.get("metadata") {
                for (k, v) in metadata {
                    doc.metadata.insert(k.clone(), v.clone());
                }
            }
        }
        // Unknown event types from newer clients are kept out of the run but do not fail the batch.
        Some(_) => {}
        None => return Err(bad(format!("event has no type: {}", event.to_json()))),
    }
    Ok(())
}

/// Ends a run. A stop that was requested turns a clean finish into killed.
pub fn finish(doc: &mut RunDoc, request: FinishRequest, now: Timestamp) -> Result<()> {
    let state = match request.state {
        Some(RunState::Running) => {
            return Err(CodedError::new(ErrorCode::InvalidValue, "a run can only be finished as finished, failed, killed or crashed".to_string()));
        }
        Some(state) => state,
        None => RunState::from_exit_code(request.exit_code.unwrap_or(0)),
    };
    doc.state = state;
    doc.exit_code = request.exit_code.or(match state {
        RunState::Finished => Some(0),
        _ => None,
    });
    doc.finished_at = Some(request.finished_at.unwrap_or(now));
    doc.heartbeat_at = Some(now);
    doc.stop_requested = false;
    Ok(())
}

pub use cairn_types::api::validate_tags;

pub fn apply_patch(doc: &mut RunDoc, patch: RunPatch) -> Result<()> {
    patch.validate()?;
    if let Some(name) = patch.name {
        doc.name = name;
    }
    if let Some(notes) = patch.notes {
        doc.notes = notes;
    }
    if let Some(tags) = patch.tags {
        let mut unique: Vec<String> = Vec::with_capacity(tags.len());
        for tag in tags {
            if !unique.contains(&tag) {
                unique.push(tag);
            }
        }
        doc.tags = unique;
    }
    if let Some(group) = patch.group {
        doc.group = (!group.is_empty()).then_some(group);
    }
    if let Some(job_type) = patch.job_type {
        doc.job_type = (!job_type.is_empty()).then_some(job_type);
    }
    Ok(())
}

/// The summary modes defined for a key, if `define_metric` gave it any.
fn summary_modes(doc: &RunDoc, name: &str) -> Option<Vec<String>> {
    let def = summary::definition_for(doc.metric_defs.iter().map(|(p, d)| (p.as_str(), d)), name)?;
    def.as_map().and_then(|d| d.get("summary")).and_then(Value::as_str).map(summary::parse_modes)
}

/// Updates the summary from the history keys a batch touched, then applies explicit updates.
pub fn finalize(doc: &mut RunDoc, touched: &[(KeyColumn, KeyTotals)], summary_updates: Vec<Update>) {
    for (column, totals) in touched {
        if column.stream != KeyStream::History || column.name == TIMESTAMP_KEY || column.name == RUNTIME_KEY {
            continue;
        }
        let modes = summary_modes(doc, &column.name);
        let stats = summary::KeyStats { first: &totals.first_value, last: &totals.last_value, min: totals.min, max: totals.max, sum: totals.sum, num_count: totals.num_count };
        match summary::value(modes.as_deref(), stats) {
            Some(value) => insert_path(&mut doc.summary, &column.path, value),
            None => {
                remove_path(&mut doc.summary, &column.path);
            }
        }
    }
    for update in summary_updates {
        apply_update(&mut doc.summary, update);
    }
}
