//! cairn's storage: run metadata, history and series, and files, behind traits.
//!
//! The store is split by aggregate, and [`Store`] is all of them:
//! - [`RunStore`]: entities, projects, runs and their lifecycle;
//! - [`SeriesStore`]: ingest of batches, history reads and bucketed series queries;
//! - [`FileStore`]: the files runs save, and the collection of contents nothing names;
//! - [`AlertStore`]: alerts and their delivery;
//! - [`AccountStore`]: users, teams, roles and API keys;
//! - [`ArtifactStore`]: versioned artifacts, aliases and lineage;
//! - [`Leases`]: work that one server among several does at a time;
//! - [`BlobStore`]: content-addressed file contents.
//!
//! Both SQL backends, the embedded [`sqlite`] and [`postgres`], are one [`sql::SqlStore`]: the
//! rules are written once over the transactional port [`sql::Db`], and a backend only runs
//! statements. A store is chosen by URI ([`open_store`]). Blobs are a separate port,
//! [`BlobStore`], on a local directory or S3 ([`open_blobs`]). A new backend is correct when it
//! passes [`store_test_suite!`]. The logic that needs no SQL (chunk encoding, bucketing, how a batch
//! changes a run) lives in [`chunk`], [`bucket`] and [`ingest`].

pub mod blob;
pub mod bucket;
pub mod chunk;
pub mod crash;
pub mod ingest;
pub mod postgres;
pub mod sql;
pub mod sqlite;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

use cairn_types::api::{
    AlertInfo, ConsolePage, EntityInfo, FileInfo, FinishRequest, GroupPage, GroupQuery, HeartbeatReply, IngestAck, KeyInfo, ProjectColumns, ProjectInfo, ProjectKey,
    ProjectSeriesQuery, ProjectSeriesResult, RunInfo, RunPage, RunPatch, RunSearch, SeriesQuery, SeriesResult, UpsertRunRequest,
};
use cairn_types::error::CodedError;
use cairn_types::wire::{IngestBatch, KeyStream};
use cairn_types::{RunPath, Timestamp};

pub type Result<T, E = CodedError> = std::result::Result<T, E>;

/// Settings that a store needs from the server.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Where a run that names no entity goes.
    pub default_entity: String,
}

/// Entities, projects and runs: their lifecycle, queries, deletion and moves.
pub trait RunStore: Send + Sync {
    fn list_entities(&self) -> Result<Vec<EntityInfo>>;
    fn get_entity(&self, entity: &str) -> Result<EntityInfo>;
    fn list_projects(&self, entity: &str) -> Result<Vec<ProjectInfo>>;
    fn get_project(&self, entity: &str, project: &str) -> Result<ProjectInfo>;
    /// Creates a run, or resumes it, as `request.resume` says. Creates the entity and project when
    /// they do not exist yet.
    fn upsert_run(&self, request: UpsertRunRequest, now: Timestamp) -> Result<RunInfo>;
    fn get_run(&self, path: &RunPath) -> Result<RunInfo>;
    fn update_run(&self, path: &RunPath, patch: RunPatch) -> Result<RunInfo>;
    /// Deletes a run softly: it disappears from every listing and query, and its id cannot be
    /// used again until it is purged.
    fn delete_run(&self, path: &RunPath) -> Result<()>;
    /// Removes a run for good, deleted or not: history, system metrics, console, keys and file
    /// names. Returns the contents (SHA-256) that nothing names any more: they are recorded for
    /// [`FileStore::collect_blobs`], which the caller runs next.
    fn purge_run(&self, path: &RunPath) -> Result<Vec<String>>;
    /// Moves runs to another project (of any entity, created when missing), all or none: a run
    /// id that the target holds already (deleted runs included), or a running run, is an error
    /// and nothing moves. Returns the runs' new paths.
    fn move_runs(&self, runs: &[RunPath], entity: &str, project: &str, now: Timestamp) -> Result<Vec<RunPath>>;
    /// The runs forked from this one (`fork_from`), oldest first.
    fn list_forks(&self, path: &RunPath) -> Result<Vec<String>>;
    /// The runs deleted before `deadline`: their retention window has passed.
    fn deleted_before(&self, deadline: Timestamp) -> Result<Vec<RunPath>>;
    fn search_runs(&self, entity: &str, project: &str, query: &RunQuery) -> Result<RunPage>;
    /// The config and summary leaf keys that the project's runs have.
    fn project_columns(&self, entity: &str, project: &str) -> Result<ProjectColumns>;
    /// The runs that match a filter, grouped by one field, with numeric columns summarized.
    fn group_runs(&self, entity: &str, project: &str, query: &GroupRequest) -> Result<GroupPage>;
    /// Records a sign of life. A crashed run goes back to running.
    fn heartbeat(&self, path: &RunPath, now: Timestamp) -> Result<HeartbeatReply>;
    fn finish_run(&self, path: &RunPath, request: FinishRequest, now: Timestamp) -> Result<RunInfo>;
    /// Asks the run's client to stop; it learns of it at its next heartbeat.
    fn request_stop(&self, path: &RunPath) -> Result<RunInfo>;
    /// Marks running runs whose last heartbeat is older than `deadline` as crashed; for runs that
    /// said they may be preempted, older than `preempting_deadline` (earlier: a longer wait).
    fn mark_crashed(&self, deadline: Timestamp, preempting_deadline: Timestamp) -> Result<Vec<RunPath>>;
    /// Records that a running run may be preempted and go silent (W&B's `mark_preempting`).
    fn mark_preempting(&self, path: &RunPath, now: Timestamp) -> Result<RunInfo>;
}

/// The files runs save: names of contents in the blob store, and the collection of contents
/// nothing names any more.
pub trait FileStore: Send + Sync {
    fn put_run_file(&self, path: &RunPath, file: FileInfo) -> Result<()>;
    fn list_run_files(&self, path: &RunPath) -> Result<Vec<FileInfo>>;
    /// Removes from the blob store the contents among `only` (every recorded candidate when
    /// `None`) that nothing names any more, and returns them. Safe against a run naming one of
    /// them at the same time: that run either keeps the content or is told it is gone.
    fn collect_blobs(&self, only: Option<&[String]>) -> Result<Vec<String>>;
    fn get_run_file(&self, path: &RunPath, file_path: &str) -> Result<FileInfo>;
    /// Removes the run's files whose names start with `prefix` (and are not exactly it), and
    /// lists for collection the contents nothing else names; returns how many went.
    fn remove_run_files(&self, path: &RunPath, prefix: &str) -> Result<usize>;

    /// The size of a stored content, whole in the blob store or in chunks; `None` when neither
    /// holds it.
    fn content_size(&self, sha256: &str) -> Result<Option<u64>>;
    /// Reads a stored content, whole or in chunks, streaming.
    fn open_content(&self, sha256: &str) -> Result<Box<dyn std::io::Read + Send>>;
    /// Which of the chunks `shas` the store does not hold, each once.
    fn missing_chunks(&self, shas: &[String]) -> Result<Vec<String>>;
    /// Stores chunks (SHA-256 and bytes), each checked against its hash, the new ones together
    /// in one pack; says which were new and which were held.
    fn store_chunks(&self, chunks: &[(String, &[u8])]) -> Result<cairn_types::api::UploadBatchResult>;
    /// Cuts a content stored whole into chunks, as a client would, and records them as in it
    /// (those held already elsewhere stay where they are): a later version sent in chunks finds
    /// them. Once: a content cut before, in chunks, or not held is left as it is. Returns how
    /// many it recorded.
    fn index_chunks(&self, sha256: &str) -> Result<usize>;
    /// Stores the content `sha256` of `size` bytes as the concatenation of `chunks` (each held
    /// already), once it has read them back and checked the hash and size: `chunks_missing` when
    /// some are not held, `content_mismatch` when they make another content. A content held
    /// already is checked the same way and kept as it is.
    fn compose_content(&self, sha256: &str, size: u64, chunks: &[cairn_types::api::ChunkRef], now: Timestamp) -> Result<BlobRef>;
}

pub use cairn_types::accounts::{Account, ApiKey, AuditEntry, Principal, Role, Visibility};

/// Users, teams and their members, and API keys.
pub trait AccountStore: Send + Sync {
    /// Makes `name` a user (the entity of that name, which runs may have made already, becomes
    /// theirs).
    fn create_user(&self, name: &str, admin: bool, now: Timestamp) -> Result<Account>;
    fn create_team(&self, name: &str, now: Timestamp) -> Result<Account>;
    fn list_accounts(&self) -> Result<Vec<Account>>;
    /// Gives `user` the role in `team`, or takes them out of it (`None`).
    fn set_role(&self, team: &str, user: &str, role: Option<Role>) -> Result<()>;
    /// A team's members and their roles, by name.
    fn members(&self, team: &str) -> Result<Vec<(String, Role)>>;
    /// Makes an API key for `user`; returns it as listed, and the key itself, which is stored
    /// only as its hash.
    fn create_api_key(&self, user: &str, name: &str, expires_at: Option<Timestamp>, now: Timestamp) -> Result<(ApiKey, String)>;
    fn list_api_keys(&self, user: &str) -> Result<Vec<ApiKey>>;
    /// Revokes a key, given by the id that the list shows or by the key itself.
    fn revoke_api_key(&self, id_or_key: &str, now: Timestamp) -> Result<ApiKey>;
    /// Who holds `key`: `None` when it is unknown, revoked or expired. Notes its use.
    fn authenticate(&self, key: &str, now: Timestamp) -> Result<Option<Principal>>;
    /// A user as a request's principal, with their teams; `None` when there is no such user.
    fn principal(&self, user: &str) -> Result<Option<Principal>>;
    /// Sets a user's password (stored as an argon2 hash; at least 8 characters).
    fn set_password(&self, user: &str, password: &str) -> Result<()>;
    /// The user, when `password` is theirs; `None` otherwise (also for a user without one).
    fn check_password(&self, user: &str, password: &str) -> Result<Option<Principal>>;
    /// Opens a signed-in session for `user` until `expires_at`; returns its token, stored
    /// only as its hash.
    fn create_session(&self, user: &str, expires_at: Timestamp, now: Timestamp) -> Result<String>;
    /// Who holds the session `token`: `None` when it is unknown, ended or expired.
    fn session_principal(&self, token: &str, now: Timestamp) -> Result<Option<Principal>>;
    fn end_session(&self, token: &str) -> Result<()>;
    /// Whether any user exists (a server with none waits for its first admin).
    fn has_users(&self) -> Result<bool>;
    /// A secret of the whole deployment (every server on the store reads the same), made on first
    /// use: what signs upload URLs that carry no credentials.
    fn server_secret(&self, name: &str) -> Result<String>;
    fn set_visibility(&self, entity: &str, project: &str, visibility: Visibility) -> Result<()>;
    /// Every public project, as `(entity, project)`.
    fn public_projects(&self) -> Result<Vec<(String, String)>>;
    /// Whether a run in one of `entities` (any run when `None`), or in a public project, names
    /// the content `sha256`: who may link a content by its hash must be able to read it already.
    fn content_readable(&self, sha256: &str, entities: Option<&[String]>) -> Result<bool>;
    fn record_audit(&self, actor: &str, action: &str, target: &str, detail: &str, now: Timestamp) -> Result<()>;
    /// The audit log, newest first: `limit` entries older than the entry `before`, if given.
    fn list_audit(&self, limit: usize, before: Option<i64>) -> Result<Vec<AuditEntry>>;
}

/// Sweeps: configurations, their state, and their trials (the controller is `next_trial`).
pub trait SweepStore: Send + Sync {
    /// Creates a sweep from its configuration (checked: `invalid_sweep` names the problem).
    fn create_sweep(&self, entity: &str, project: &str, config: &serde_json::Value, now: Timestamp) -> Result<cairn_types::sweep::SweepInfo>;
    fn get_sweep(&self, entity: &str, project: &str, sweep_id: &str, now: Timestamp) -> Result<cairn_types::sweep::SweepInfo>;
    /// A project's sweeps, newest first.
    fn list_sweeps(&self, entity: &str, project: &str, now: Timestamp) -> Result<Vec<cairn_types::sweep::SweepInfo>>;
    /// Pauses, resumes, stops or cancels a sweep; returns it, and (canceled) the runs of its
    /// trials that still run, for the caller to stop.
    fn set_sweep_state(
        &self,
        entity: &str,
        project: &str,
        sweep_id: &str,
        state: cairn_types::sweep::SweepState,
        now: Timestamp,
    ) -> Result<(cairn_types::sweep::SweepInfo, Vec<String>)>;
    /// The controller: what `agent` does next (a trial to run, a wait, or stop), decided under
    /// the sweep's lock, so no two agents get the same grid point.
    fn next_trial(&self, entity: &str, project: &str, sweep_id: &str, agent: &cairn_types::sweep::NextTrialRequest, now: Timestamp) -> Result<cairn_types::sweep::NextTrial>;
    fn sweep_trials(&self, entity: &str, project: &str, sweep_id: &str, now: Timestamp) -> Result<Vec<cairn_types::sweep::TrialInfo>>;
    /// The sweep a run is a trial of, if any, and why the sweep stopped it, if it did.
    fn sweep_of_run(&self, entity: &str, project: &str, run_id: &str) -> Result<Option<(String, Option<String>)>>;
    /// Hyperband's judgements of a sweep's trials, in the order they were made.
    fn sweep_decisions(&self, entity: &str, project: &str, sweep_id: &str) -> Result<Vec<cairn_types::sweep::BracketDecision>>;
    /// Applies early termination to every sweep that has it: judges its running trials at the
    /// brackets they reached, records the judgements, and asks the trials it stops to stop.
    /// Returns the runs asked.
    fn early_terminate(&self, now: Timestamp) -> Result<Vec<RunPath>>;
    /// Records a trial of a sweep that ran without the server (a local agent's), making the
    /// sweep, finished, when it is new. Giving the same trial again changes nothing.
    fn import_trial(&self, entity: &str, project: &str, sweep_id: &str, trial: &cairn_types::sweep::ImportTrial, now: Timestamp) -> Result<cairn_types::sweep::SweepInfo>;
}

/// Workspace layouts: how each user arranged a project's workspace (JSON the UI reads back).
pub trait WorkspaceStore: Send + Sync {
    /// `viewer`'s layout of the project (`""` is the one user of a server without accounts).
    fn workspace(&self, entity: &str, project: &str, viewer: &str) -> Result<Option<serde_json::Value>>;
    /// Saves it (the project must exist).
    fn save_workspace(&self, entity: &str, project: &str, viewer: &str, layout: &serde_json::Value, now: Timestamp) -> Result<()>;
    /// Forgets it: the workspace is automatic again. Whether there was one.
    fn reset_workspace(&self, entity: &str, project: &str, viewer: &str) -> Result<bool>;
}

/// Artifacts: versioned collections of files per project, their aliases and lineage.
pub trait ArtifactStore: Send + Sync {
    /// Commits a version of `request.name` in `entity/project`: a new `vN` unless a version has
    /// the same manifest digest (then that one). The aliases move to it; `latest` follows the
    /// newest version. Every stored entry's content must be in the blob store.
    fn commit_artifact(&self, entity: &str, project: &str, request: cairn_types::artifacts::CommitArtifact, now: Timestamp) -> Result<cairn_types::artifacts::ArtifactInfo>;
    /// A version by `vN` or alias.
    fn get_artifact(&self, entity: &str, project: &str, name: &str, version: &str) -> Result<cairn_types::artifacts::ArtifactInfo>;
    fn artifact_manifest(&self, entity: &str, project: &str, name: &str, version: &str) -> Result<Vec<cairn_types::artifacts::ManifestEntry>>;
    /// One entry of a version's manifest, by its path.
    fn artifact_entry(&self, entity: &str, project: &str, name: &str, version: &str, path: &str) -> Result<cairn_types::artifacts::ManifestEntry>;
    fn list_collections(&self, entity: &str, project: &str, kind: Option<&str>) -> Result<Vec<cairn_types::artifacts::CollectionInfo>>;
    /// A collection's versions, newest first.
    fn list_artifact_versions(&self, entity: &str, project: &str, name: &str) -> Result<Vec<cairn_types::artifacts::ArtifactInfo>>;
    /// Makes `aliases` exactly the version's own (each taken from the version that had it).
    fn set_artifact_aliases(&self, entity: &str, project: &str, name: &str, version: &str, aliases: Vec<String>) -> Result<cairn_types::artifacts::ArtifactInfo>;
    /// Deletes a version (refused while it has aliases, unless `delete_aliases`); returns the
    /// contents that nothing names any more, for collection.
    fn delete_artifact_version(&self, entity: &str, project: &str, name: &str, version: &str, delete_aliases: bool) -> Result<Vec<String>>;
    /// Notes that `run` uses a version (entity and project default to the run's).
    fn use_artifact(&self, run: &RunPath, artifact: &cairn_types::artifacts::ArtifactRef) -> Result<cairn_types::artifacts::ArtifactInfo>;
    fn run_artifacts(&self, run: &RunPath) -> Result<cairn_types::artifacts::RunArtifacts>;
    fn artifact_lineage(&self, entity: &str, project: &str, name: &str, version: &str) -> Result<cairn_types::artifacts::ArtifactLineage>;
    fn artifact_types(&self, entity: &str, project: &str) -> Result<Vec<String>>;
}

/// Alerts that runs raise, and their delivery.
pub trait AlertStore: Send + Sync {
    /// A run's alerts, oldest first.
    fn list_alerts(&self, path: &RunPath) -> Result<Vec<AlertInfo>>;
    /// Claims alerts waiting for delivery whose time has come, for `lease`: another server does
    /// not see them again until the claim lapses (or the delivery is recorded). Returns
    /// `(run, run name, alert)`.
    fn claim_due_alerts(&self, now: Timestamp, lease: std::time::Duration, limit: usize) -> Result<Vec<(RunPath, String, AlertInfo)>>;
    /// Notes an attempt to deliver an alert: its new state (`pending` to retry at `next_attempt`,
    /// `delivered`, `failed` or `stored`), the targets that have it, and the error, if any.
    fn record_alert_delivery(&self, id: i64, delivery: &str, delivered_to: &[String], error: Option<String>, next_attempt: Option<Timestamp>) -> Result<()>;
}

/// History, system metrics and console output.
pub trait SeriesStore: Send + Sync {
    /// Stores what the batch holds that the store does not have yet, atomically, and updates the
    /// run's summary, config, heartbeat and state. Returns the offsets expected next.
    fn ingest(&self, path: &RunPath, batch: IngestBatch, now: Timestamp) -> Result<IngestAck>;
    fn list_keys(&self, path: &RunPath) -> Result<Vec<KeyInfo>>;
    /// History as columns for `keys` (all, with `_timestamp` and `_runtime`, when `None`) over
    /// `[min_step, max_step)`, at most `limit` rows. `require_all` keeps only rows that hold every key.
    fn history(&self, path: &RunPath, query: &HistoryRequest) -> Result<HistoryData>;
    fn series(&self, path: &RunPath, query: &SeriesRequest) -> Result<SeriesResult>;
    /// The keys logged by a project's runs.
    fn project_keys(&self, entity: &str, project: &str) -> Result<Vec<ProjectKey>>;
    /// Buckets for several runs and keys on one x-grid; runs or keys that do not exist are left out.
    fn project_series(&self, entity: &str, project: &str, query: &ProjectSeriesRequest) -> Result<ProjectSeriesResult>;
    fn console(&self, path: &RunPath, from_line: u64, limit: usize) -> Result<ConsolePage>;
}

/// A runs search, validated: the filter and sort keys parsed (bare names are resolved by the
/// store, against the project's keys), the page bounded.
#[derive(Debug, Clone, PartialEq)]
pub struct RunQuery {
    pub filter: cairn_types::filter::Filter,
    pub sort: Vec<cairn_types::filter::SortKey>,
    pub limit: usize,
    pub offset: usize,
}

impl RunQuery {
    /// From the REST shape (a MongoDB-style JSON filter, sort keys as text).
    pub fn from_search(search: &RunSearch) -> Result<RunQuery> {
        use cairn_types::api::{RUNS_DEFAULT_LIMIT, RUNS_MAX_LIMIT};
        use cairn_types::filter::{Filter, SortKey};
        let filter = match &search.filter {
            Some(json) => Filter::parse(json)?,
            None => Filter::always(),
        };
        let sort = search.sort.iter().map(|s| SortKey::parse(s)).collect::<Result<Vec<_>>>()?;
        Ok(RunQuery { filter, sort, limit: search.limit.unwrap_or(RUNS_DEFAULT_LIMIT).clamp(1, RUNS_MAX_LIMIT), offset: search.offset.unwrap_or(0) })
    }
}

/// Runs grouped by one field, validated: the field and the numeric columns to summarize, each
/// with the name it was asked by.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRequest {
    pub by: (String, cairn_types::filter::Field),
    pub filter: cairn_types::filter::Filter,
    pub columns: Vec<(String, cairn_types::filter::Field)>,
    pub bins: usize,
}

impl GroupRequest {
    pub fn from_query(query: &GroupQuery) -> Result<GroupRequest> {
        use cairn_types::error::ErrorCode;
        use cairn_types::filter::{Field, Filter};
        let field =
            |what: &str, name: &str| Field::parse(name).map(|f| (name.to_owned(), f)).map_err(|e| CodedError::new(ErrorCode::InvalidQuery, format!("{what}: {}", e.message)));
        if query.columns.len() > 100 {
            return Err(CodedError::new(ErrorCode::InvalidQuery, format!("{} columns asked for; at most 100", query.columns.len())));
        }
        Ok(GroupRequest {
            by: field("by", &query.by)?,
            filter: match &query.filter {
                Some(json) => Filter::parse(json)?,
                None => Filter::always(),
            },
            columns: query.columns.iter().map(|c| field("columns", c)).collect::<Result<_>>()?,
            bins: query.bins.unwrap_or(10).clamp(1, 100),
        })
    }
}

/// A bucketed series read, validated: the keys (history first, then system metrics), the x
/// axis (`_step`, `_runtime`, `_timestamp` or a logged key), the bucket count and the x range.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRequest {
    pub keys: Vec<String>,
    pub x: String,
    pub buckets: u32,
    pub x_min: Option<f64>,
    pub x_max: Option<f64>,
}

impl SeriesRequest {
    pub fn new(keys: Vec<String>, x: Option<&str>, buckets: Option<u32>, x_min: Option<f64>, x_max: Option<f64>) -> Result<SeriesRequest> {
        use cairn_types::api::{SERIES_DEFAULT_BUCKETS, SERIES_MAX_BUCKETS};
        use cairn_types::error::ErrorCode;
        let invalid = |message: String| CodedError::new(ErrorCode::InvalidQuery, message);
        if keys.is_empty() {
            return Err(invalid("keys must name at least one key".into()));
        }
        if keys.len() > 1000 {
            return Err(invalid(format!("{} keys asked for; at most 1000", keys.len())));
        }
        let x = x.filter(|x| !x.is_empty()).unwrap_or("_step").to_owned();
        let buckets = buckets.unwrap_or(SERIES_DEFAULT_BUCKETS);
        if buckets == 0 || buckets > SERIES_MAX_BUCKETS {
            return Err(invalid(format!("buckets={buckets} is out of range; use 1 to {SERIES_MAX_BUCKETS}")));
        }
        for (name, bound) in [("x_min", x_min), ("x_max", x_max)] {
            if let Some(v) = bound
                && !v.is_finite()
            {
                return Err(invalid(format!("{name}={v} is not a finite number")));
            }
        }
        if let (Some(lo), Some(hi)) = (x_min, x_max)
            && lo > hi
        {
            return Err(invalid(format!("x_min={lo} is greater than x_max={hi}")));
        }
        Ok(SeriesRequest { keys, x, buckets, x_min, x_max })
    }

    /// From the REST query, whose `keys` are comma-separated.
    pub fn from_query(query: &SeriesQuery) -> Result<SeriesRequest> {
        let keys = query.keys.split(',').map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned).collect();
        SeriesRequest::new(keys, query.x.as_deref(), query.buckets, query.x_min, query.x_max)
    }
}

/// Series of several runs of a project on one grid, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectSeriesRequest {
    pub run_ids: Vec<String>,
    pub series: SeriesRequest,
}

impl ProjectSeriesRequest {
    pub fn from_query(query: &ProjectSeriesQuery) -> Result<ProjectSeriesRequest> {
        use cairn_types::error::ErrorCode;
        if query.run_ids.is_empty() || query.run_ids.len() > 1000 {
            return Err(CodedError::new(ErrorCode::InvalidQuery, format!("run_ids has {} runs; ask for 1 to 1000", query.run_ids.len())));
        }
        if query.keys.is_empty() || query.keys.len() > 200 {
            return Err(CodedError::new(ErrorCode::InvalidQuery, format!("keys has {} keys; ask for 1 to 200", query.keys.len())));
        }
        let series = SeriesRequest::new(query.keys.clone(), query.x.as_deref(), query.buckets, query.x_min, query.x_max)?;
        Ok(ProjectSeriesRequest { run_ids: query.run_ids.clone(), series })
    }
}

/// A history read, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRequest {
    pub stream: KeyStream,
    pub keys: Option<Vec<String>>,
    pub min_step: Option<i64>,
    pub max_step: Option<i64>,
    pub limit: usize,
    pub require_all: bool,
}

impl Default for HistoryRequest {
    fn default() -> HistoryRequest {
        HistoryRequest { stream: KeyStream::History, keys: None, min_step: None, max_step: None, limit: cairn_types::api::HISTORY_DEFAULT_LIMIT, require_all: false }
    }
}

/// History rows as aligned columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistoryData {
    pub steps: Vec<i64>,
    pub columns: Vec<HistoryValues>,
    /// The `min_step` of the next page, if there is one.
    pub next_step: Option<i64>,
}

/// One key's values, aligned with [`HistoryData::steps`]: floats stay plain `f64` arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryValues {
    pub name: String,
    pub path: Vec<String>,
    pub values: cairn_types::wire::ColumnValues,
}

pub use blob::{BlobRef, BlobStore, open_blobs};

/// Opens the store that `uri` names, with file contents in `blobs` (by default the `blobs`
/// folder of `data_dir`):
/// - none: the embedded SQLite store in `data_dir` (`cairn.db`);
/// - `sqlite:///path/cairn.db`: an embedded store in that file;
/// - `postgres://user:password@host:port/database` (or `postgresql://`): PostgreSQL.
pub fn open_store(uri: Option<&str>, blobs: Option<&str>, data_dir: &std::path::Path, config: StoreConfig) -> Result<sql::SqlStore> {
    let blobs = match blobs {
        Some(uri) => open_blobs(uri)?,
        None => std::sync::Arc::new(blob::LocalBlobStore::open(&data_dir.join("blobs"))?) as std::sync::Arc<dyn BlobStore>,
    };
    let bad = |why: &str| {
        CodedError::new(
            cairn_types::error::ErrorCode::InvalidValue,
            format!("store {:?}: {why}; use sqlite:///path/cairn.db or postgres://user:password@host:port/database", uri.unwrap_or("")),
        )
    };
    match uri {
        None => sqlite::open_with_blobs(data_dir, config, blobs),
        Some(uri) if uri.starts_with("postgres://") || uri.starts_with("postgresql://") => crate::postgres::open(uri, config, blobs),
        Some(uri) => match uri.strip_prefix("sqlite://") {
            Some(path) if path.starts_with('/') => {
                let path = std::path::Path::new(path);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| blob::io_err("create", parent, e))?;
                }
                sqlite::open_file(path, config, blobs)
            }
            Some(_) => Err(bad("a sqlite:// path must be absolute (three slashes)")),
            None => Err(bad("unknown scheme")),
        },
    }
}

/// Change notices shared by every server on one store (PostgreSQL's LISTEN/NOTIFY). A store
/// that only one process uses has none, and the server keeps its events in the process.
pub trait Notices: Send + Sync {
    /// Sends `payload` to the listeners of every server, this one's included. Does not wait.
    fn notify(&self, payload: String);
    /// Calls `deliver` with every payload any server sends, from a thread of its own, until the
    /// store closes. `deliver(None)` means some may have been missed (the connection was lost).
    fn listen(&self, deliver: Box<dyn Fn(Option<String>) + Send>);
}

/// Work that one server among several does at a time (the crash monitor, purges): a lease by
/// name, held by the server that took it until it lapses.
pub trait Leases: Send + Sync {
    /// Takes or renews the lease `name` for `holder` until `now + ttl`. Returns whether `holder`
    /// has it: false while another holder's lease runs.
    fn try_lease(&self, name: &str, holder: &str, now: Timestamp, ttl: std::time::Duration) -> Result<bool>;
    /// Gives the lease up, if `holder` has it.
    fn release(&self, name: &str, holder: &str) -> Result<()>;
    /// Whether `holder` has the lease `name` at `now` (without taking it).
    fn holds(&self, name: &str, holder: &str, now: Timestamp) -> Result<bool>;
    /// Takes or renews every lease of `names` that is free or `holder`'s, in one go.
    fn try_leases(&self, names: &[String], holder: &str, now: Timestamp, ttl: std::time::Duration) -> Result<()> {
        for name in names {
            self.try_lease(name, holder, now, ttl)?;
        }
        Ok(())
    }
}

/// The whole store, as the server holds it.
pub trait Store: RunStore + SeriesStore + FileStore + AlertStore + AccountStore + ArtifactStore + WorkspaceStore + SweepStore + Leases {
    fn blobs(&self) -> &dyn BlobStore;
    /// The notices shared with the other servers on this store, if there can be others.
    fn notices(&self) -> Option<std::sync::Arc<dyn Notices>> {
        None
    }
    /// A line that says what the store is, for the server's banner.
    fn describe(&self) -> String;
    /// What an embedded database holds in this process's heap (its page caches, mostly); `None`
    /// for a database in a server of its own.
    fn database_heap_bytes(&self) -> Option<u64> {
        None
    }
    /// Flushes and stops background work; called once at shutdown.
    fn close(&self);
}
