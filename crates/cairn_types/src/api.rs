//! Request and response bodies of the REST API (`/api/v1`).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::{CodedError, ErrorCode};
use crate::time::Timestamp;
use crate::value::{Map, Value};
use crate::wire::{
    ConsoleLine, ConsolePart, ConsoleStream, EventsPart, HistoryPart, HistoryRow, IngestBatch, KeyDef, KeyStream, RUNTIME_UNKNOWN, Stream, SystemPart, SystemRow, Update,
    UpdatesPart,
};

pub const API_PREFIX: &str = "/api/v1";

/// The body of `POST /api/v1/uploads/batch`: contents whole, each framed as its SHA-256 (64
/// lowercase hex bytes), its size (8 bytes, little endian) and its bytes. For many small files
/// in one request; big ones take the resumable path.
pub const UPLOAD_BATCH_CONTENT_TYPE: &str = "application/x-cairn-contents";

/// Contents up to this size go in batches.
pub const UPLOAD_BATCH_FILE_MAX: u64 = 1 << 20;

/// What a batch of contents did: each content is `stored` (new) or `present` (held already).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadBatchResult {
    pub stored: Vec<String>,
    pub present: Vec<String>,
}

/// Frames contents for `POST /api/v1/uploads/batch`.
pub fn encode_upload_batch(contents: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.iter().map(|(_, b)| 72 + b.len()).sum());
    for (sha, bytes) in contents {
        out.extend_from_slice(sha.as_bytes());
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// A content of at least this size is sent as content-defined chunks (`POST /api/v1/chunks`,
/// then `POST /api/v1/uploads/{sha256}/compose`), so that a new version of a big file sends and
/// stores only the chunks that changed; smaller ones go whole.
pub const CHUNKED_MIN: u64 = 8 << 20;

/// One chunk of a content stored in chunks: its SHA-256 and size. A chunk is itself a content of
/// the blob store, shared by every content that has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChunkRef {
    pub sha256: String,
    pub size: u64,
}

/// `POST /api/v1/chunks/missing`: which of these chunks the server does not hold. The answer
/// has the missing ones, each once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChunkList {
    pub chunks: Vec<String>,
    /// The content these chunks are most likely to share with (the version before): when the
    /// server holds it whole, it cuts it into chunks first, so that they count as held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

/// `POST /api/v1/uploads/{sha256}/compose`: the content is these chunks, in order. The server
/// reads them back and checks the content's SHA-256 and size before it stores the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComposeContent {
    pub size: u64,
    pub chunks: Vec<ChunkRef>,
}

/// Splits a batch of contents; an error names what is malformed.
pub fn decode_upload_batch(body: &[u8]) -> Result<Vec<(String, &[u8])>, CodedError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let bad = |what: &str| CodedError::new(ErrorCode::InvalidBody, format!("content {} of the batch: {what}", out.len() + 1));
        let head = body.get(at..at + 72).ok_or_else(|| bad("truncated header"))?;
        let sha = std::str::from_utf8(&head[..64]).map_err(|_| bad("its SHA-256 is not hex"))?;
        if !sha.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
            return Err(bad("its SHA-256 is not lowercase hex"));
        }
        let size = u64::from_le_bytes(head[64..72].try_into().expect("8 bytes"));
        let end = usize::try_from(size).ok().and_then(|s| (at + 72).checked_add(s)).ok_or_else(|| bad("its size is past the end"))?;
        let bytes = body.get(at + 72..end).ok_or_else(|| bad("truncated bytes"))?;
        out.push((sha.to_owned(), bytes));
        at = end;
    }
    Ok(out)
}
/// The project a run goes to when it names none.
pub const DEFAULT_PROJECT: &str = "uncategorized";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Finished,
    Failed,
    Crashed,
    Killed,
}

impl RunState {
    pub const ALL: [RunState; 5] = [RunState::Running, RunState::Finished, RunState::Failed, RunState::Crashed, RunState::Killed];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Failed => "failed",
            RunState::Crashed => "crashed",
            RunState::Killed => "killed",
        }
    }

    pub fn parse(s: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// The state a run ends in when it finishes with `exit_code`.
    pub fn from_exit_code(exit_code: i32) -> RunState {
        if exit_code == 0 { RunState::Finished } else { RunState::Failed }
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, RunState::Running | RunState::Crashed)
    }
}

/// Per-stream offsets: the offset of the next record the server expects in each stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamOffsets {
    pub history: u64,
    pub summary: u64,
    pub config: u64,
    pub system: u64,
    pub console: u64,
    pub events: u64,
}

impl StreamOffsets {
    pub fn get(&self, stream: Stream) -> u64 {
        match stream {
            Stream::History => self.history,
            Stream::Summary => self.summary,
            Stream::Config => self.config,
            Stream::System => self.system,
            Stream::Console => self.console,
            Stream::Events => self.events,
        }
    }

    pub fn set(&mut self, stream: Stream, offset: u64) {
        let slot = match stream {
            Stream::History => &mut self.history,
            Stream::Summary => &mut self.summary,
            Stream::Config => &mut self.config,
            Stream::System => &mut self.system,
            Stream::Console => &mut self.console,
            Stream::Events => &mut self.events,
        };
        *slot = offset;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntityInfo {
    pub name: String,
    pub created_at: Timestamp,
    pub project_count: u64,
    pub run_count: u64,
    pub last_activity_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectInfo {
    pub entity: String,
    pub name: String,
    pub created_at: Timestamp,
    pub run_count: u64,
    pub last_activity_at: Option<Timestamp>,
    /// Who may read it: its entity (`private`) or any signed-in user (`public`).
    #[serde(default)]
    pub visibility: crate::accounts::Visibility,
}

/// A run, as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunInfo {
    pub entity: String,
    pub project: String,
    pub run_id: String,
    /// The display name, `adjective-noun-N` unless the user gave one.
    pub name: String,
    /// The run's sequence number in its project (the N of the display name).
    pub seq: u64,
    pub state: RunState,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: Map,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub summary: Map,
    pub tags: Vec<String>,
    pub notes: String,
    pub group: Option<String>,
    pub job_type: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Map,
    pub created_at: Timestamp,
    pub started_at: Timestamp,
    pub heartbeat_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub exit_code: Option<i32>,
    /// Runtime: wall-clock seconds from start to finish, or to the last sign of life while the
    /// run is not finished; the pauses between a finish and a resume count.
    pub runtime_secs: f64,
    /// Duration: the seconds the run was active, computing or logging. The sum of its sessions'
    /// spans (each from its start or resume to its finish or last sign of life), pauses left out.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub duration_secs: f64,
    /// The last `_step` stored, if any history was logged.
    pub last_step: Option<i64>,
    /// Whether a stop was requested; the client learns it at its next heartbeat.
    pub stop_requested: bool,
    pub offsets: StreamOffsets,
    /// When the run said it may be preempted (W&B's `mark_preempting`): while it runs it shows as
    /// preempting, and the crash monitor waits the longer preempting timeout for its heartbeat.
    /// Cleared when it resumes; kept when it ends, so a crash after it reads as a preemption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preempting_at: Option<Timestamp>,
    /// The sweep it is a trial of (given when one run is read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep_id: Option<String>,
    /// Why its sweep stopped it (hyperband), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
}

impl RunInfo {
    pub fn path(&self) -> crate::ids::RunPath {
        crate::ids::RunPath::new(&self.entity, &self.project, &self.run_id)
    }
}

/// How `POST /runs` treats an id that exists already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ResumeMode {
    /// Fail when the run exists.
    Never,
    /// Resume when the run exists, create it otherwise.
    #[default]
    Allow,
    /// Fail when the run does not exist.
    Must,
    /// Create the run when it does not exist, and leave an existing one exactly as it is (its
    /// state included). `cairn sync` and the uploader's reconnects use it, so that uploading a
    /// finished run's log does not make it running again.
    Keep,
}

/// Creates a run, or resumes it (the body of `POST /api/v1/runs`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpsertRunRequest {
    /// Defaults to the server's default entity.
    #[serde(default)]
    pub entity: Option<String>,
    /// Defaults to `uncategorized`.
    #[serde(default)]
    pub project: Option<String>,
    pub run_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub job_type: Option<String>,
    /// Must be a JSON object. On resume only its new keys are added, unless `allow_val_change`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub config: Option<Value>,
    /// On resume, values in `config` replace the stored ones (otherwise they are kept).
    #[serde(default)]
    pub allow_val_change: bool,
    /// Creates the run as a fork: its history up to the step is the source's (shared, not
    /// copied), and it continues after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_from: Option<StepRef>,
    /// Rewinds the run (which must exist, with this id) to the step: its history after it is
    /// archived in a run of its own, and the run continues after the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_from: Option<StepRef>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    #[serde(default)]
    pub resume: ResumeMode,
}

/// A run at a step: W&B's `"<run_id>?_step=<N>"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepRef {
    pub run_id: String,
    pub step: i64,
}

impl StepRef {
    /// Parses `"<run_id>?_step=<N>"`; `what` names the argument in the error.
    pub fn parse(text: &str, what: &str) -> Result<StepRef, CodedError> {
        let bad = |why: &str| CodedError::new(ErrorCode::InvalidValue, format!("{what}={text:?} {why}; write \"<run_id>?_step=<N>\""));
        let (run_id, query) = text.split_once('?').ok_or_else(|| bad("names no step"))?;
        let step = query.strip_prefix("_step=").ok_or_else(|| bad("must give the step as _step"))?;
        let step: i64 = step.parse().map_err(|_| bad("has a step that is not an integer"))?;
        if step < 0 {
            return Err(bad("has a negative step"));
        }
        crate::ids::validate_run_id(run_id)?;
        Ok(StepRef { run_id: run_id.to_owned(), step })
    }
}

/// Edits a run's user-facing fields (`PATCH`). An absent field is left as it is; an empty string
/// clears group or job_type.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RunPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub job_type: Option<String>,
}

/// A tag has between 1 and 256 characters.
pub fn validate_tags(tags: &[String]) -> Result<(), CodedError> {
    for tag in tags {
        if tag.is_empty() || tag.chars().count() > 256 {
            return Err(CodedError::new(ErrorCode::InvalidValue, format!("tag {tag:?} must have between 1 and 256 characters")));
        }
    }
    Ok(())
}

impl RunPatch {
    /// Checks the whole patch, so that a bad field changes nothing.
    pub fn validate(&self) -> Result<(), CodedError> {
        if let Some(name) = &self.name
            && name.trim().is_empty()
        {
            return Err(CodedError::new(ErrorCode::InvalidValue, "run name must not be empty".to_string()));
        }
        if let Some(tags) = &self.tags {
            validate_tags(tags)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatReply {
    /// The run was stopped from the UI or the CLI: the client should end it as killed.
    pub stop: bool,
    pub state: RunState,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FinishRequest {
    /// 0 means finished, anything else failed. Ignored when `state` is given.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// `finished`, `failed` or `killed`; or `crashed`, for a run that ended without a word (an
    /// import of a run whose process died), at `finished_at`.
    #[serde(default)]
    pub state: Option<RunState>,
    #[serde(default)]
    pub finished_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IngestAck {
    /// The offsets the server expects next: everything below is stored.
    pub offsets: StreamOffsets,
    /// Values stored by this request (records already stored are not counted again).
    pub points: u64,
    /// Whether a stop was requested for the run.
    pub stop: bool,
}

/// A key that a run logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyInfo {
    /// The path joined with ".".
    pub name: String,
    pub path: Vec<String>,
    /// `history` or `system`.
    pub stream: String,
    /// How many values were logged.
    pub count: u64,
    /// How many of them are numbers.
    pub numeric_count: u64,
    pub first_step: i64,
    pub last_step: i64,
    #[serde(serialize_with = "crate::value::serialize_f64_opt", deserialize_with = "crate::value::deserialize_f64_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub min: Option<f64>,
    #[serde(serialize_with = "crate::value::serialize_f64_opt", deserialize_with = "crate::value::deserialize_f64_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub max: Option<f64>,
}

/// Query of `GET .../history`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams, utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Comma-separated key names; all keys when absent.
    #[serde(default)]
    pub keys: Option<String>,
    /// First step (inclusive); use the previous page's `next_step` to page on.
    #[serde(default)]
    pub min_step: Option<i64>,
    /// Last step (exclusive).
    #[serde(default)]
    pub max_step: Option<i64>,
    /// Rows per page (default 1000, at most 100000).
    #[serde(default)]
    pub limit: Option<usize>,
    /// `any` (default): rows that hold at least one of the keys; `all`: rows that hold every key.
    #[serde(default)]
    pub require: Option<String>,
    /// `rows` (default) or `columns`.
    #[serde(default)]
    pub format: Option<String>,
    /// Include system metrics keys (`system.*`) instead of history keys.
    #[serde(default)]
    pub stream: Option<String>,
}

pub const HISTORY_DEFAULT_LIMIT: usize = 1000;
pub const HISTORY_MAX_LIMIT: usize = 100_000;
pub const HISTORY_MAX_COLUMNS_LIMIT: usize = 10_000_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryPage {
    /// Each row holds `_step`, `_timestamp`, `_runtime` and the requested keys, nested as logged.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub rows: Vec<Map>,
    /// Pass as `min_step` to get the next page; absent on the last page.
    pub next_step: Option<i64>,
}

/// History as columns: the fast form for reading many points back.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryColumns {
    pub steps: Vec<i64>,
    /// Key name to values, aligned with `steps`; null where a row lacks the key.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub columns: BTreeMap<String, Vec<Value>>,
    pub next_step: Option<i64>,
}

/// Query of `GET .../series`: bucketed aggregates for charts.
/// Query of `GET .../histograms`: one histogram key over the run's steps.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams, utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct HistogramQuery {
    pub key: String,
    /// Buckets of steps, at most (100 by default, 1,000 at most): the histograms of the steps in
    /// one are merged.
    pub buckets: Option<usize>,
    /// Bins of each merged histogram (as many as the logged ones have, at most, by default).
    pub bins: Option<usize>,
}

/// The histograms of a key, merged per bucket of steps (none is dropped: a bucket's histogram
/// counts every value of its steps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistogramSeries {
    pub key: String,
    pub buckets: Vec<HistogramBucket>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistogramBucket {
    pub first_step: i64,
    pub last_step: i64,
    /// How many logged histograms it merges.
    pub count: u64,
    pub bins: Vec<f64>,
    pub values: Vec<f64>,
}

/// Merges the histograms logged at `steps` into at most `buckets` buckets of consecutive steps
/// (equal ranges of steps), each rebinned to `bins` bins.
pub fn bucket_histograms(key: &str, points: &[(i64, &crate::value::Histogram)], buckets: usize, bins: Option<usize>) -> HistogramSeries {
    let mut out = HistogramSeries { key: key.to_owned(), buckets: Vec::new() };
    let (Some(first), Some(last)) = (points.first(), points.last()) else { return out };
    let buckets = buckets.clamp(1, 1000);
    let span = (last.0 - first.0 + 1) as f64;
    let bins = bins.unwrap_or_else(|| points.iter().map(|(_, h)| h.counts.len()).max().unwrap_or(1));
    let mut at = 0;
    while at < points.len() {
        let index = (((points[at].0 - first.0) as f64 / span) * buckets as f64) as usize;
        let mut end = at;
        while end < points.len() && (((points[end].0 - first.0) as f64 / span) * buckets as f64) as usize == index {
            end += 1;
        }
        let group = &points[at..end];
        let merged = crate::value::Histogram::merge(group.iter().map(|(_, h)| *h), bins).expect("a bucket holds a histogram");
        out.buckets.push(HistogramBucket { first_step: group[0].0, last_step: group[group.len() - 1].0, count: group.len() as u64, bins: merged.bins, values: merged.counts });
        at = end;
    }
    out
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams, utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct SeriesQuery {
    /// Comma-separated key names.
    pub keys: String,
    /// The x-axis: `_step` (default), `_runtime`, `_timestamp` or another logged key.
    #[serde(default)]
    pub x: Option<String>,
    /// Number of buckets (default 1000, 1 to 100000).
    #[serde(default)]
    pub buckets: Option<u32>,
    /// Lower end of the x-range (inclusive); the series' first x when absent.
    #[serde(default)]
    pub x_min: Option<f64>,
    /// Upper end of the x-range (inclusive); the series' last x when absent.
    #[serde(default)]
    pub x_max: Option<f64>,
}

pub const SERIES_DEFAULT_BUCKETS: u32 = 1000;
pub const SERIES_MAX_BUCKETS: u32 = 100_000;

/// Non-empty buckets of one key, as parallel arrays. `x` is the middle of the x-values that fell
/// in the bucket (the exact x when the bucket holds one point); `min` and `max` bound every value
/// in the bucket, so no spike is ever lost.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Buckets {
    /// The bucket's position in the grid (0 to buckets - 1), to line up several keys.
    pub index: Vec<u32>,
    #[serde(serialize_with = "crate::value::serialize_f64_slice", deserialize_with = "crate::value::deserialize_f64_vec")]
    pub x: Vec<f64>,
    #[serde(serialize_with = "crate::value::serialize_f64_slice", deserialize_with = "crate::value::deserialize_f64_vec")]
    pub x_min: Vec<f64>,
    #[serde(serialize_with = "crate::value::serialize_f64_slice", deserialize_with = "crate::value::deserialize_f64_vec")]
    pub x_max: Vec<f64>,
    #[serde(serialize_with = "crate::value::serialize_f64_slice", deserialize_with = "crate::value::deserialize_f64_vec")]
    pub min: Vec<f64>,
    #[serde(serialize_with = "crate::value::serialize_f64_slice", deserialize_with = "crate::value::deserialize_f64_vec")]
    pub max: Vec<f64>,
    #[serde(serialize_with = "crate::value::serialize_f64_slice", deserialize_with = "crate::value::deserialize_f64_vec")]
    pub mean: Vec<f64>,
    #[serde(serialize_with = "crate::value::serialize_f64_slice", deserialize_with = "crate::value::deserialize_f64_vec")]
    pub last: Vec<f64>,
    /// Numeric points in the bucket. NaN values are counted here but left out of min, max and mean.
    pub count: Vec<u64>,
}

impl Buckets {
    pub fn len(&self) -> usize {
        self.x.len()
    }

    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeySeries {
    pub key: String,
    pub buckets: Buckets,
    /// The lowest and highest x of this series over all its data, whatever the grid: a chart
    /// that pinned its grid learns from it that a live run has grown past the grid's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extent: Option<[f64; 2]>,
}

/// The x-grid that a series answer was bucketed on: the axis, its range (none when there was no
/// data), and the number of buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeriesGrid {
    pub x: String,
    #[serde(serialize_with = "crate::value::serialize_f64_opt", deserialize_with = "crate::value::deserialize_f64_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub x_min: Option<f64>,
    #[serde(serialize_with = "crate::value::serialize_f64_opt", deserialize_with = "crate::value::deserialize_f64_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub x_max: Option<f64>,
    pub buckets: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeriesResult {
    #[serde(flatten)]
    pub grid: SeriesGrid,
    pub series: Vec<KeySeries>,
}

/// Body of `POST .../runs/search` (also available as `GET .../runs` with query parameters).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RunSearch {
    /// A Mongo-style filter, for example `{"$and": [{"config.lr": {"$gt": 0.01}}, {"state": "finished"}]}`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub filter: Option<serde_json::Value>,
    /// Sort keys, for example `["-summary.acc", "created_at"]`; `-` sorts descending.
    #[serde(default)]
    pub sort: Vec<String>,
    /// Default 50, at most 10000.
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub offset: Option<usize>,
}

/// Query parameters of `GET .../runs`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct RunListQuery {
    /// The filter as JSON text.
    #[serde(default)]
    pub filter: Option<String>,
    /// Comma-separated sort keys.
    #[serde(default)]
    pub sort: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub offset: Option<usize>,
}

pub const RUNS_DEFAULT_LIMIT: usize = 50;
pub const RUNS_MAX_LIMIT: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunPage {
    pub runs: Vec<RunInfo>,
    /// Runs that match the filter, over all pages.
    pub total: u64,
    pub offset: usize,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsoleLineOut {
    /// The line number; a `\r` rewrite keeps its line number and replaces the text.
    pub line: u64,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub time: Timestamp,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsolePage {
    pub lines: Vec<ConsoleLineOut>,
    /// Pass as `from_line` for the next page; absent on the last page.
    pub next_line: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ConsoleQuery {
    #[serde(default)]
    pub from_line: Option<u64>,
    /// Default 1000, at most 100000.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// How serious an alert is (W&B's `AlertLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum AlertLevel {
    Info,
    Warn,
    Error,
}

impl AlertLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertLevel::Info => "INFO",
            AlertLevel::Warn => "WARN",
            AlertLevel::Error => "ERROR",
        }
    }

    /// `INFO`, `WARN` (or `WARNING`) and `ERROR`, in any case.
    pub fn parse(text: &str) -> Option<AlertLevel> {
        match text.to_ascii_uppercase().as_str() {
            "INFO" => Some(AlertLevel::Info),
            "WARN" | "WARNING" => Some(AlertLevel::Warn),
            "ERROR" => Some(AlertLevel::Error),
            _ => None,
        }
    }
}

/// An alert of a run, as stored, with how its delivery went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertInfo {
    pub id: i64,
    pub title: String,
    pub text: String,
    pub level: AlertLevel,
    /// When the program raised it.
    pub time: Timestamp,
    /// `pending` (being delivered, or waiting for a retry), `delivered`, `failed` (retries spent)
    /// or `stored` (the server has no delivery targets).
    pub delivery: String,
    pub attempts: u32,
    /// Why the last delivery attempt failed.
    pub last_error: Option<String>,
    /// The targets (`webhook`, `email`) that have it: a retry goes only to the others.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub delivered_to: Vec<String>,
}

/// `POST /api/v1/runs/move`: runs to move, and where to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MoveRuns {
    /// `entity/project/run_id` of each run.
    pub runs: Vec<String>,
    /// The target entity (created when missing).
    pub entity: String,
    /// The target project (created when missing).
    pub project: String,
}

/// The moved runs' new paths, in the order asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MovedRuns {
    pub runs: Vec<String>,
}

/// Where a resumable upload of one content (by SHA-256) stands on the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadStatus {
    pub sha256: String,
    /// Bytes the server holds: send the rest from here.
    pub received: u64,
    /// The content is stored (possibly saved by another run before): nothing to send.
    pub complete: bool,
}

/// `PUT /api/v1/uploads/{sha256}?offset=K&size=N`: the body is the content from byte K.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct UploadQuery {
    /// Where the body starts in the content; must equal what the server holds.
    pub offset: u64,
    /// The content's whole size: when reached, the server checks the SHA-256 and stores it.
    pub size: u64,
}

/// `PUT .../files/{path}?sha256=X`: names a content uploaded before, without sending it again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct FileLinkQuery {
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileInfo {
    pub path: String,
    pub size: u64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerInfo {
    pub version: String,
    /// Where the caller's runs go when they name no entity: their own user, with auth on.
    pub default_entity: String,
    /// The store, for signed-in callers.
    pub storage: String,
    /// Whether requests need credentials.
    #[serde(default)]
    pub auth: bool,
    /// For signed-in callers, where the database is embedded (SQLite): the bytes it holds in the
    /// server's heap, its page caches mostly. They grow with the data up to the caches' bound,
    /// so the server's memory can be told from what it holds itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_heap_bytes: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// The JSON form of an ingest batch
// ---------------------------------------------------------------------------------------------

/// The JSON form of an ingest batch. Every part is optional; each starts at an offset in its stream,
/// and the server stores only what it does not have yet, so a batch can be sent any number of times.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IngestJson {
    #[serde(default)]
    pub history: Option<JsonRows>,
    #[serde(default)]
    pub summary: Option<JsonUpdates>,
    #[serde(default)]
    pub config: Option<JsonUpdates>,
    #[serde(default)]
    pub system: Option<JsonRows>,
    #[serde(default)]
    pub console: Option<JsonConsole>,
    #[serde(default)]
    pub events: Option<JsonEvents>,
}

/// History rows hold `_step` (required, an integer ≥ 0 that grows from row to row), `_timestamp`
/// (seconds since the epoch; default: when the server receives it), `_runtime` (seconds; default:
/// derived from the run's start) and any other keys, nested as wanted. System rows hold
/// `_timestamp` and numeric keys.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JsonRows {
    pub offset: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub rows: Vec<Map>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JsonUpdates {
    pub offset: u64,
    pub updates: Vec<JsonUpdate>,
}

/// Sets top-level keys (a value replaces the old one whole) and removes others.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JsonUpdate {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub set: Map,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JsonConsole {
    pub offset: u64,
    pub lines: Vec<JsonConsoleLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JsonConsoleLine {
    pub line: u64,
    /// `stdout` (default) or `stderr`.
    #[serde(default)]
    pub stream: Option<String>,
    #[serde(default)]
    pub time: Option<Timestamp>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JsonEvents {
    pub offset: u64,
    pub events: Vec<Value>,
}

fn invalid(code: ErrorCode, message: String) -> CodedError {
    CodedError::new(code, message)
}

fn time_field(row: &Map, key: &str, what: &str, row_offset: u64) -> Result<Option<f64>, CodedError> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(f) if f.is_finite() && !matches!(v, Value::Bool(_)) => Ok(Some(f)),
            _ => Err(invalid(ErrorCode::InvalidValue, format!("{what} row {row_offset}: {key} must be a number of seconds, got {}", v.to_json()))),
        },
    }
}

struct KeyTable {
    keys: Vec<KeyDef>,
    index: HashMap<(KeyStream, Vec<String>), u32>,
}

impl KeyTable {
    fn id(&mut self, stream: KeyStream, path: &[&str]) -> u32 {
        let owned: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        if let Some(&id) = self.index.get(&(stream, owned.clone())) {
            return id;
        }
        let id = self.keys.len() as u32;
        self.keys.push(KeyDef { stream, path: owned.clone() });
        self.index.insert((stream, owned), id);
        id
    }
}

impl IngestJson {
    /// Converts to the batch the store ingests, checking every value on the way.
    pub fn into_batch(self, now: Timestamp) -> Result<IngestBatch, CodedError> {
        let mut table = KeyTable { keys: Vec::new(), index: HashMap::new() };
        let mut batch = IngestBatch::default();

        if let Some(json) = self.history {
            let mut part = HistoryPart { first_offset: json.offset, ..Default::default() };
            for (i, row) in json.rows.iter().enumerate() {
                let offset = json.offset + i as u64;
                let step = match row.get("_step") {
                    Some(Value::Int(s)) if *s >= 0 => *s,
                    Some(Value::Float(f)) if f.fract() == 0.0 && *f >= 0.0 && *f < 9.0e15 => *f as i64,
                    Some(other) => {
                        return Err(invalid(ErrorCode::InvalidStep, format!("history row {offset}: _step must be an integer >= 0, got {}", other.to_json())));
                    }
                    None => {
                        return Err(invalid(ErrorCode::InvalidStep, format!("history row {offset} has no _step")));
                    }
                };
                let timestamp = time_field(row, "_timestamp", "history", offset)?.map(Timestamp::from_secs_f64).unwrap_or(now);
                let runtime_us = time_field(row, "_runtime", "history", offset)?.map(|s| (s * 1e6).round() as i64).unwrap_or(RUNTIME_UNKNOWN);
                for (key, value) in row {
                    if matches!(key.as_str(), "_step" | "_timestamp" | "_runtime") {
                        continue;
                    }
                    let mut leaves = Vec::new();
                    value.for_each_leaf(&mut |path, leaf| {
                        let mut full = vec![key.as_str()];
                        full.extend_from_slice(path);
                        leaves.push((table.id(KeyStream::History, &full), leaf.clone()));
                    });
                    part.fields.extend(leaves);
                }
                part.rows.push(HistoryRow { step, timestamp_us: timestamp.micros(), runtime_us, fields_end: part.fields.len() as u32 });
            }
            batch.history = Some(part);
        }

        let updates = |json: JsonUpdates| UpdatesPart { first_offset: json.offset, updates: json.updates.into_iter().map(|u| Update { set: u.set, remove: u.remove }).collect() };
        batch.summary = self.summary.map(updates);
        batch.config = self.config.map(updates);

        if let Some(json) = self.system {
            let mut part = SystemPart { first_offset: json.offset, ..Default::default() };
            for (i, row) in json.rows.iter().enumerate() {
                let offset = json.offset + i as u64;
                let timestamp = time_field(row, "_timestamp", "system", offset)?.map(Timestamp::from_secs_f64).unwrap_or(now);
                for (key, value) in row {
                    if matches!(key.as_str(), "_timestamp" | "_runtime") {
                        continue;
                    }
                    let number = match value {
                        Value::Int(_) | Value::Float(_) => value.as_f64().expect("numeric"),
                        other => {
                            return Err(invalid(ErrorCode::InvalidValue, format!("system row {offset}: {key} must be a number, got {}", other.to_json())));
                        }
                    };
                    part.fields.push((table.id(KeyStream::System, &[key.as_str()]), number));
                }
                part.rows.push(SystemRow { timestamp_us: timestamp.micros(), fields_end: part.fields.len() as u32 });
            }
            batch.system = Some(part);
        }

        if let Some(json) = self.console {
            let mut lines = Vec::with_capacity(json.lines.len());
            for line in json.lines {
                let stream = match line.stream.as_deref() {
                    None => ConsoleStream::Stdout,
                    Some(s) => ConsoleStream::parse(s).ok_or_else(|| invalid(ErrorCode::InvalidValue, format!("console stream {s:?} is neither stdout nor stderr")))?,
                };
                lines.push(ConsoleLine { line: line.line, stream, timestamp_us: line.time.unwrap_or(now).micros(), text: line.text });
            }
            batch.console = Some(ConsolePart { first_offset: json.offset, lines });
        }

        if let Some(json) = self.events {
            batch.events = Some(EventsPart { first_offset: json.offset, events: json.events });
        }
        batch.keys = table.keys;
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_refs_parse_wandb_syntax_and_name_bad_input() {
        assert_eq!(StepRef::parse("abc?_step=12", "fork_from").unwrap(), StepRef { run_id: "abc".into(), step: 12 });
        for bad in ["abc", "abc?step=1", "abc?_step=x", "abc?_step=-1", "a/b?_step=1", "?_step=1"] {
            let err = StepRef::parse(bad, "fork_from").unwrap_err();
            assert!(err.message.contains("fork_from") || err.message.contains("run id"), "{bad}: {}", err.message);
        }
    }

    #[test]
    fn series_view_narrows_values_but_not_x() {
        let result = ProjectSeriesResult {
            grid: SeriesGrid { x: "_timestamp".into(), x_min: Some(1.7e9), x_max: Some(1.7e9 + 1.0), buckets: 1 },
            runs: vec![RunSeries {
                run_id: "r".into(),
                series: vec![KeySeries {
                    key: "k".into(),
                    extent: Some([1.7e9, 1.7e9 + 1.0]),
                    buckets: Buckets { index: vec![0, 1, 2], x: vec![1_700_000_000.25, 1_700_000_000.5, 1_700_000_000.75], max: vec![0.1, f64::NAN, 1e300], ..Default::default() },
                }],
            }],
        };
        let selection = BucketSelection::parse(Some(&["x".into(), "max".into()]), true).unwrap();
        let text = serde_json::to_string(&ProjectSeriesView { result: &result, selection }).unwrap();
        assert!(text.contains(r#""buckets":{"x":[1700000000.25,1700000000.5,1700000000.75],"max":[0.1,"NaN",1e+300]},"extent":[1700000000.0,1700000001.0]"#), "{text}");
        assert!(BucketSelection::parse(Some(&["nope".into()]), false).unwrap_err().message.contains("index, x, x_min"));
    }

    #[test]
    fn json_batch_converts_nested_rows() {
        let json: IngestJson = serde_json::from_str(
            r#"{"history": {"offset": 3, "rows": [
                {"_step": 0, "_timestamp": 1700000000.5, "loss": 0.5, "train": {"acc": 0.9, "lr": "NaN"}},
                {"_step": 2, "loss": "Infinity"}
            ]},
            "system": {"offset": 0, "rows": [{"_timestamp": 1700000000, "system.cpu": 50}]},
            "console": {"offset": 0, "lines": [{"line": 0, "text": "hi", "stream": "stderr"}]}}"#,
        )
        .unwrap();
        let batch = json.into_batch(Timestamp(42)).unwrap();
        let h = batch.history.unwrap();
        assert_eq!(h.first_offset, 3);
        assert_eq!(h.rows[0].timestamp_us, 1_700_000_000_500_000);
        assert_eq!(h.rows[1].timestamp_us, 42);
        assert_eq!(h.rows[1].runtime_us, RUNTIME_UNKNOWN);
        let names: Vec<String> = batch.keys.iter().map(|k| crate::wire::key_name(&k.path)).collect();
        assert_eq!(names, ["loss", "train.acc", "train.lr", "system.cpu"]);
        assert!(matches!(h.row_fields(1)[0], (0, Value::Float(f)) if f == f64::INFINITY));
        assert_eq!(batch.console.unwrap().lines[0].stream, ConsoleStream::Stderr);
    }

    #[test]
    fn json_batch_errors_name_the_bad_value() {
        let bad_step: IngestJson = serde_json::from_str(r#"{"history": {"offset": 0, "rows": [{"_step": -1}]}}"#).unwrap();
        let err = bad_step.into_batch(Timestamp(0)).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidStep);
        assert!(err.message.contains("-1"), "{}", err.message);
        let bad_sys: IngestJson = serde_json::from_str(r#"{"system": {"offset": 0, "rows": [{"cpu": "hot"}]}}"#).unwrap();
        assert!(bad_sys.into_batch(Timestamp(0)).unwrap_err().message.contains("cpu"));
        assert!(serde_json::from_str::<IngestJson>(r#"{"histroy": {}}"#).unwrap_err().to_string().contains("histroy"));
    }
}

// ---------------------------------------------------------------------------------------------
// Project-wide views, for the workspace and the runs table
// ---------------------------------------------------------------------------------------------

/// A key that runs of a project logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectKey {
    pub name: String,
    /// `history` or `system`.
    pub stream: String,
    /// How many runs logged it.
    pub runs: u64,
    /// Whether any of its values are numbers (only those are charted).
    pub numeric: bool,
}

/// The config and summary keys (dotted leaf paths) that a project's runs have: the runs table's
/// columns.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectColumns {
    pub config: Vec<String>,
    pub summary: Vec<String>,
}

/// Body of `POST .../series`: buckets for several runs and keys on one shared x-grid.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProjectSeriesQuery {
    pub run_ids: Vec<String>,
    pub keys: Vec<String>,
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default)]
    pub buckets: Option<u32>,
    #[serde(default)]
    pub x_min: Option<f64>,
    #[serde(default)]
    pub x_max: Option<f64>,
    /// The per-bucket arrays to return, from `index`, `x`, `x_min`, `x_max`, `min`, `max`,
    /// `mean`, `last` and `count` (default: all). A chart needs far fewer than all.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// Values (`min`, `max`, `mean`, `last`, not x) rounded to 32-bit floats: plenty to draw, and
    /// about half the JSON.
    #[serde(default)]
    pub float32: bool,
}

/// The per-bucket arrays of [`Buckets`], by name.
pub const BUCKET_FIELDS: [&str; 9] = ["index", "x", "x_min", "x_max", "min", "max", "mean", "last", "count"];

/// Which arrays of a bucket answer to write, and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketSelection {
    mask: u16,
    pub float32: bool,
}

impl BucketSelection {
    pub const ALL: BucketSelection = BucketSelection { mask: (1 << BUCKET_FIELDS.len()) - 1, float32: false };

    /// From the names in a query; an unknown name is an error that lists the known ones.
    pub fn parse(fields: Option<&[String]>, float32: bool) -> Result<BucketSelection, CodedError> {
        let Some(fields) = fields else { return Ok(BucketSelection { float32, ..BucketSelection::ALL }) };
        let mut mask = 0;
        for field in fields {
            let Some(i) = BUCKET_FIELDS.iter().position(|f| f == field) else {
                return Err(CodedError::new(ErrorCode::InvalidQuery, format!("unknown bucket field {field:?}; the fields are {}", BUCKET_FIELDS.join(", "))));
            };
            mask |= 1 << i;
        }
        Ok(BucketSelection { mask, float32 })
    }

    fn has(&self, field: &str) -> bool {
        BUCKET_FIELDS.iter().position(|f| *f == field).is_some_and(|i| self.mask & (1 << i) != 0)
    }
}

/// Serializes a [`ProjectSeriesResult`] with only the selected bucket arrays: the answer of
/// `POST .../series`, whose shape is that of `ProjectSeriesResult` less the arrays left out.
pub struct ProjectSeriesView<'a> {
    pub result: &'a ProjectSeriesResult,
    pub selection: BucketSelection,
}

impl Serialize for ProjectSeriesView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Runs<'a>(&'a [RunSeries], BucketSelection);
        struct Run<'a>(&'a RunSeries, BucketSelection);
        struct Keys<'a>(&'a [KeySeries], BucketSelection);
        struct Key<'a>(&'a KeySeries, BucketSelection);
        struct Arrays<'a>(&'a Buckets, BucketSelection);
        struct Values<'a>(&'a [f64], bool);
        impl Serialize for Runs<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|r| Run(r, self.1)))
            }
        }
        impl Serialize for Run<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("run_id", &self.0.run_id)?;
                m.serialize_entry("series", &Keys(&self.0.series, self.1))?;
                m.end()
            }
        }
        impl Serialize for Keys<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|k| Key(k, self.1)))
            }
        }
        impl Serialize for Key<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(2 + usize::from(self.0.extent.is_some())))?;
                m.serialize_entry("key", &self.0.key)?;
                m.serialize_entry("buckets", &Arrays(&self.0.buckets, self.1))?;
                if let Some(extent) = &self.0.extent {
                    m.serialize_entry("extent", extent)?;
                }
                m.end()
            }
        }
        impl Serialize for Values<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if !self.1 {
                    return crate::value::serialize_f64_slice(self.0, s);
                }
                s.collect_seq(self.0.iter().map(|v| {
                    let narrow = *v as f32;
                    // Out of the f32 range: the f64 stays, so nothing becomes infinite.
                    if narrow.is_finite() || !v.is_finite() { F32OrF64::F32(narrow, *v) } else { F32OrF64::F64(*v) }
                }))
            }
        }
        enum F32OrF64 {
            F32(f32, f64),
            F64(f64),
        }
        impl Serialize for F32OrF64 {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match *self {
                    F32OrF64::F32(narrow, _) if narrow.is_finite() => s.serialize_f32(narrow),
                    F32OrF64::F32(_, wide) | F32OrF64::F64(wide) => crate::value::serialize_f64(&wide, s),
                }
            }
        }
        impl Serialize for Arrays<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let (b, sel) = (self.0, self.1);
                let mut m = s.serialize_map(None)?;
                if sel.has("index") {
                    m.serialize_entry("index", &b.index)?;
                }
                for (name, values, narrow) in [
                    ("x", &b.x, false),
                    ("x_min", &b.x_min, false),
                    ("x_max", &b.x_max, false),
                    ("min", &b.min, sel.float32),
                    ("max", &b.max, sel.float32),
                    ("mean", &b.mean, sel.float32),
                    ("last", &b.last, sel.float32),
                ] {
                    if sel.has(name) {
                        m.serialize_entry(name, &Values(values, narrow))?;
                    }
                }
                if sel.has("count") {
                    m.serialize_entry("count", &b.count)?;
                }
                m.end()
            }
        }
        let grid = &self.result.grid;
        let mut m = serializer.serialize_map(Some(5))?;
        m.serialize_entry("x", &grid.x)?;
        m.serialize_entry("x_min", &grid.x_min.map(crate::value::JsonF64))?;
        m.serialize_entry("x_max", &grid.x_max.map(crate::value::JsonF64))?;
        m.serialize_entry("buckets", &grid.buckets)?;
        m.serialize_entry("runs", &Runs(&self.result.runs, self.selection))?;
        m.end()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunSeries {
    pub run_id: String,
    /// The keys this run logged, among those asked for.
    pub series: Vec<KeySeries>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectSeriesResult {
    #[serde(flatten)]
    pub grid: SeriesGrid,
    pub runs: Vec<RunSeries>,
}

/// Body of `POST .../runs/groups`: runs grouped by one field, with the distribution of numeric
/// columns within each group.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GroupQuery {
    /// The field to group by: `config.opt`, `group`, `job_type`, `state`...
    pub by: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub filter: Option<serde_json::Value>,
    /// Numeric columns to summarize per group, for example `summary.acc`.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Histogram bins per column (default 10, at most 100).
    #[serde(default)]
    pub bins: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ColumnStats {
    /// Runs of the group with a number in this column.
    pub count: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    /// Counts in equal bins over the column's range across all groups (`range`).
    pub histogram: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunGroup {
    /// The group's value of the field (null for runs without one).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub value: Value,
    pub count: u64,
    pub columns: BTreeMap<String, ColumnStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupPage {
    pub by: String,
    pub groups: Vec<RunGroup>,
    /// Per column, the `[min, max]` that the histograms' bins divide.
    pub ranges: BTreeMap<String, (f64, f64)>,
}

/// What changed, sent on the live events stream (`GET /api/v1/events`, server-sent events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunEvent {
    /// `created`, `logged`, `updated`, `finished`, `stopped`, `crashed` or `deleted`.
    pub kind: String,
    pub entity: String,
    pub project: String,
    pub run_id: String,
    pub state: Option<RunState>,
    /// The history offset after the change (how many rows are stored).
    pub history_offset: Option<u64>,
    pub time: Timestamp,
}

/// A project's workspace as one viewer arranged it (`GET`/`PUT .../workspace`): the UI's layout,
/// or `null` while it is automatic.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WorkspaceLayout {
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub layout: Option<serde_json::Value>,
}

/// The most runs one batched request of a project's values or histograms names.
pub const MAX_BATCH_RUNS: usize = 200;
/// The most values one answer of `.../values` holds, shared by its runs (each gets its first
/// `MAX_BATCH_VALUES / runs`).
pub const MAX_BATCH_VALUES: usize = 200_000;

/// Body of `POST .../projects/{e}/{p}/values`: one key's every value, for several runs (a
/// workspace's media panel).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProjectValuesQuery {
    pub run_ids: Vec<String>,
    pub key: String,
}

/// A key's values per run, by step; runs that lack the key (or do not exist) have none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectValues {
    pub key: String,
    pub runs: Vec<RunValues>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunValues {
    pub run_id: String,
    pub steps: Vec<i64>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub values: Vec<Value>,
}

/// Body of `POST .../projects/{e}/{p}/histograms`: one histogram key, merged per bucket of
/// steps, for several runs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProjectHistogramsQuery {
    pub run_ids: Vec<String>,
    pub key: String,
    pub buckets: Option<usize>,
    pub bins: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectHistograms {
    pub key: String,
    /// Each run's histograms (no buckets where a run lacks the key).
    pub runs: Vec<RunHistograms>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunHistograms {
    pub run_id: String,
    pub series: HistogramSeries,
}
