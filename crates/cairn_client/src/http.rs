//! A small blocking client for the REST API, used by the uploader, `cairn sync`, the CLI and the
//! query side of the SDKs.

use std::time::Duration;

use cairn_types::api::{
    FileInfo, FinishRequest, HeartbeatReply, IngestAck, KeyInfo, ProjectInfo, RunInfo, RunPage, RunPatch, RunSearch, SeriesQuery, SeriesResult, ServerInfo, UploadStatus,
    UpsertRunRequest,
};
use cairn_types::error::{CodedError, ErrorBody, ErrorCode};
use cairn_types::wire::{self, BATCH_CONTENT_TYPE, Columns};
use cairn_types::{RunPath, api::EntityInfo};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The server could not be reached or the connection broke: worth retrying.
    Transport(String),
    /// The server answered with an error.
    Api { status: u16, error: CodedError },
}

impl CallError {
    pub fn is_retryable(&self) -> bool {
        match self {
            CallError::Transport(_) => true,
            CallError::Api { status, .. } => *status >= 500 || *status == 429,
        }
    }

    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            CallError::Transport(_) => None,
            CallError::Api { error, .. } => Some(error.code),
        }
    }

    pub fn into_coded(self) -> CodedError {
        match self {
            CallError::Transport(message) => CodedError::new(ErrorCode::ShuttingDown, message),
            CallError::Api { error, .. } => error,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Transport(message) => write!(f, "{message}"),
            CallError::Api { status, error } => write!(f, "{} (HTTP {status}, {})", error.message, error.code.as_str()),
        }
    }
}

impl std::error::Error for CallError {}

pub type CallResult<T> = Result<T, CallError>;

/// The largest response body read (history of many millions of points fits).
const MAX_RESPONSE_BYTES: u64 = 4 << 30;

#[derive(Clone)]
pub struct ApiClient {
    agent: ureq::Agent,
    base_url: String,
    api_key: Option<String>,
}

fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn run_url(base: &str, path: &RunPath) -> String {
    format!("{base}/api/v1/runs/{}/{}/{}", encode_segment(&path.entity), encode_segment(&path.project), encode_segment(&path.run_id))
}

impl ApiClient {
    /// A client with `timeout` for each whole call.
    pub fn new(base_url: &str, api_key: Option<String>, timeout: Duration) -> ApiClient {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout.min(Duration::from_secs(5))))
            .user_agent(format!("cairn-client/{}", env!("CARGO_PKG_VERSION")))
            .build();
        ApiClient { agent: config.into(), base_url: base_url.trim_end_matches('/').to_owned(), api_key }
    }

    /// The API key it sends, if any (an agent hands it to the trials it starts).
    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The same client with another timeout per call.
    pub fn with_timeout(&self, timeout: Duration) -> ApiClient {
        ApiClient::new(&self.base_url, self.api_key.clone(), timeout)
    }

    fn finish<T: DeserializeOwned>(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> CallResult<T> {
        let bytes = Self::finish_bytes(result)?;
        serde_json::from_slice(&bytes).map_err(|e| CallError::Transport(format!("the server sent an unexpected answer: {e}")))
    }

    fn finish_bytes(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> CallResult<Vec<u8>> {
        let mut response = result.map_err(|e| CallError::Transport(format!("cannot reach the server: {e}")))?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| CallError::Transport(format!("the connection broke while reading the answer: {e}")))?;
        if (200..300).contains(&status) {
            return Ok(bytes);
        }
        let error = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => CodedError::from(body),
            Err(_) => CodedError::new(
                if status >= 500 { ErrorCode::Internal } else { ErrorCode::InvalidBody },
                format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes).chars().take(200).collect::<String>()),
            ),
        };
        Err(CallError::Api { status, error })
    }

    fn auth<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.api_key {
            Some(key) => request.header("Authorization", format!("Bearer {key}")),
            None => request,
        }
    }

    fn get_json<T: DeserializeOwned>(&self, url: &str, query: &[(&str, String)]) -> CallResult<T> {
        let mut request = self.auth(self.agent.get(url));
        for (k, v) in query {
            request = request.query(*k, v);
        }
        Self::finish(request.call())
    }

    fn post_json<B: Serialize, T: DeserializeOwned>(&self, url: &str, body: &B) -> CallResult<T> {
        let body = serde_json::to_vec(body).expect("request bodies serialize");
        Self::finish(self.auth(self.agent.post(url)).header("Content-Type", "application/json").send(&body[..]))
    }

    /// Any JSON call of the API (`path` from `/api/v1/...`), for the SDKs' less used endpoints.
    pub fn call_json(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> CallResult<serde_json::Value> {
        let url = format!("{}{path}", self.base_url);
        let result = match (method, body) {
            ("GET", _) => self.auth(self.agent.get(&url)).call(),
            ("DELETE", _) => self.auth(self.agent.delete(&url)).call(),
            (method, body) => {
                let bytes = serde_json::to_vec(body.unwrap_or(&serde_json::Value::Object(Default::default()))).expect("JSON serializes");
                let request = match method {
                    "POST" => self.agent.post(&url),
                    "PUT" => self.agent.put(&url),
                    "PATCH" => self.agent.patch(&url),
                    other => return Err(CallError::Transport(format!("method {other} is not supported"))),
                };
                self.auth(request).header("Content-Type", "application/json").send(&bytes[..])
            }
        };
        let bytes = Self::finish_bytes(result)?;
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| CallError::Transport(format!("the server sent an unexpected answer: {e}")))
    }

    /// Sends small contents whole, many per request (`POST /api/v1/uploads/batch`).
    pub fn upload_batch(&self, body: &[u8]) -> CallResult<cairn_types::api::UploadBatchResult> {
        let url = format!("{}/api/v1/uploads/batch", self.base_url);
        Self::finish(self.auth(self.agent.post(url)).header("Content-Type", cairn_types::api::UPLOAD_BATCH_CONTENT_TYPE).send(body))
    }

    /// Sends chunks of contents (framed as for [`ApiClient::upload_batch`]) to compose later.
    pub fn upload_chunks(&self, body: &[u8]) -> CallResult<cairn_types::api::UploadBatchResult> {
        let url = format!("{}/api/v1/chunks", self.base_url);
        Self::finish(self.auth(self.agent.post(url)).header("Content-Type", cairn_types::api::UPLOAD_BATCH_CONTENT_TYPE).send(body))
    }

    /// Which of `chunks` the server does not hold; `base`: the content they most likely share
    /// with (the version before).
    pub fn missing_chunks(&self, chunks: &[String], base: Option<&str>) -> CallResult<Vec<String>> {
        let request = cairn_types::api::ChunkList { chunks: chunks.to_vec(), base: base.map(str::to_owned) };
        let list: cairn_types::api::ChunkList = self.post_json(&format!("{}/api/v1/chunks/missing", self.base_url), &request)?;
        Ok(list.chunks)
    }

    /// Stores the content `sha256` as `chunks`, which the server holds.
    pub fn compose(&self, sha256: &str, request: &cairn_types::api::ComposeContent) -> CallResult<UploadStatus> {
        self.post_json(&format!("{}/api/v1/uploads/{sha256}/compose", self.base_url), request)
    }

    pub fn commit_artifact(&self, entity: &str, project: &str, request: &cairn_types::artifacts::CommitArtifact) -> CallResult<cairn_types::artifacts::ArtifactInfo> {
        self.post_json(&format!("{}/api/v1/projects/{}/{}/artifacts", self.base_url, encode_segment(entity), encode_segment(project)), request)
    }

    fn artifact_url(&self, entity: &str, project: &str, name: &str, version: &str) -> String {
        format!("{}/api/v1/artifacts/{}/{}/{}/{}", self.base_url, encode_segment(entity), encode_segment(project), encode_segment(name), encode_segment(version))
    }

    pub fn get_artifact(&self, entity: &str, project: &str, name: &str, version: &str) -> CallResult<cairn_types::artifacts::ArtifactInfo> {
        self.get_json(&self.artifact_url(entity, project, name, version), &[])
    }

    pub fn artifact_manifest(&self, entity: &str, project: &str, name: &str, version: &str) -> CallResult<Vec<cairn_types::artifacts::ManifestEntry>> {
        self.get_json(&format!("{}/manifest", self.artifact_url(entity, project, name, version)), &[])
    }

    pub fn use_artifact(&self, run: &RunPath, artifact: &str) -> CallResult<cairn_types::artifacts::ArtifactInfo> {
        self.post_json(&format!("{}/artifacts/used", run_url(&self.base_url, run)), &cairn_types::artifacts::UseArtifact { artifact: artifact.to_owned() })
    }

    /// Streams a stored file of an artifact version into `out`; returns the bytes written.
    pub fn download_artifact_file(&self, entity: &str, project: &str, name: &str, version: &str, path: &str, out: &mut dyn std::io::Write) -> CallResult<u64> {
        let encoded: Vec<String> = path.split('/').map(encode_segment).collect();
        self.download(&format!("{}/files/{}", self.artifact_url(entity, project, name, version), encoded.join("/")), path, out)
    }

    /// Streams a run file into `out`; returns the bytes written.
    pub fn download_run_file(&self, run: &RunPath, name: &str, out: &mut dyn std::io::Write) -> CallResult<u64> {
        let encoded: Vec<String> = name.split('/').map(encode_segment).collect();
        self.download(&format!("{}/files/{}", run_url(&self.base_url, run), encoded.join("/")), name, out)
    }

    fn download(&self, url: &str, what: &str, out: &mut dyn std::io::Write) -> CallResult<u64> {
        let mut response = self.auth(self.agent.get(url)).call().map_err(|e| CallError::Transport(format!("cannot reach the server: {e}")))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Self::finish_bytes(Ok(response)).map(|_| 0);
        }
        let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
        std::io::copy(&mut reader, out).map_err(|e| CallError::Transport(format!("the download of {what} broke: {e}")))
    }

    /// Who the key is (`GET /api/v1/viewer`).
    pub fn viewer(&self) -> CallResult<cairn_types::accounts::Viewer> {
        self.get_json(&format!("{}/api/v1/viewer", self.base_url), &[])
    }

    pub fn info(&self) -> CallResult<ServerInfo> {
        self.get_json(&format!("{}/api/v1/info", self.base_url), &[])
    }

    pub fn upsert_run(&self, request: &UpsertRunRequest) -> CallResult<RunInfo> {
        self.post_json(&format!("{}/api/v1/runs", self.base_url), request)
    }

    pub fn get_run(&self, path: &RunPath) -> CallResult<RunInfo> {
        self.get_json(&run_url(&self.base_url, path), &[])
    }

    pub fn update_run(&self, path: &RunPath, patch: &RunPatch) -> CallResult<RunInfo> {
        let body = serde_json::to_vec(patch).expect("patches serialize");
        Self::finish(self.auth(self.agent.patch(run_url(&self.base_url, path))).header("Content-Type", "application/json").send(&body[..]))
    }

    pub fn delete_run(&self, path: &RunPath) -> CallResult<()> {
        Self::finish_bytes(self.auth(self.agent.delete(run_url(&self.base_url, path))).call()).map(|_| ())
    }

    /// Moves runs to `entity/project`, all or none; returns their new paths.
    pub fn move_runs(&self, runs: &[RunPath], entity: &str, project: &str) -> CallResult<Vec<RunPath>> {
        let body = cairn_types::api::MoveRuns { runs: runs.iter().map(ToString::to_string).collect(), entity: entity.to_owned(), project: project.to_owned() };
        let moved: cairn_types::api::MovedRuns = self.post_json(&format!("{}/api/v1/runs/move", self.base_url), &body)?;
        moved.runs.iter().map(|p| RunPath::parse(p).map_err(|e| CallError::Transport(format!("the server sent an unexpected path: {}", e.message)))).collect()
    }

    /// Ids of the runs forked from this one.
    pub fn list_forks(&self, path: &RunPath) -> CallResult<Vec<String>> {
        self.get_json(&format!("{}/forks", run_url(&self.base_url, path)), &[])
    }

    /// The run's alerts, oldest first, with how their delivery went.
    pub fn list_alerts(&self, path: &RunPath) -> CallResult<Vec<cairn_types::api::AlertInfo>> {
        self.get_json(&format!("{}/alerts", run_url(&self.base_url, path)), &[])
    }

    /// Removes a run for good (deleted or not), its files included.
    pub fn purge_run(&self, path: &RunPath) -> CallResult<()> {
        let url = format!("{}/purge", run_url(&self.base_url, path));
        Self::finish_bytes(self.auth(self.agent.post(url)).send(&[][..])).map(|_| ())
    }

    /// Sends a binary batch (see [`cairn_types::wire`]).
    pub fn ingest(&self, path: &RunPath, batch: &[u8]) -> CallResult<IngestAck> {
        let url = format!("{}/ingest", run_url(&self.base_url, path));
        Self::finish(self.auth(self.agent.post(url)).header("Content-Type", BATCH_CONTENT_TYPE).send(batch))
    }

    /// Sends a batch in its JSON form (see [`cairn_types::api::IngestJson`]), for importers.
    pub fn ingest_json(&self, path: &RunPath, batch: &cairn_types::api::IngestJson) -> CallResult<IngestAck> {
        self.post_json(&format!("{}/ingest", run_url(&self.base_url, path)), batch)
    }

    /// The run's files, with their sizes and SHA-256.
    pub fn list_files(&self, path: &RunPath) -> CallResult<Vec<FileInfo>> {
        self.get_json(&format!("{}/files", run_url(&self.base_url, path)), &[])
    }

    /// How much of a content (by SHA-256) the server holds.
    pub fn upload_status(&self, sha256: &str) -> CallResult<UploadStatus> {
        self.get_json(&format!("{}/api/v1/uploads/{sha256}", self.base_url), &[])
    }

    /// Sends `length` bytes of a content from `offset`, streamed from `reader`.
    pub fn upload_part(&self, sha256: &str, offset: u64, size: u64, reader: &mut dyn std::io::Read, length: u64) -> CallResult<UploadStatus> {
        let url = format!("{}/api/v1/uploads/{sha256}", self.base_url);
        let request = self
            .auth(self.agent.put(url))
            .query("offset", offset.to_string())
            .query("size", size.to_string())
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", length.to_string());
        Self::finish(request.send(ureq::SendBody::from_reader(reader)))
    }

    /// Names an uploaded content as one of the run's files.
    pub fn link_file(&self, path: &RunPath, name: &str, sha256: &str) -> CallResult<FileInfo> {
        let encoded: Vec<String> = name.split('/').map(encode_segment).collect();
        let url = format!("{}/files/{}", run_url(&self.base_url, path), encoded.join("/"));
        Self::finish(self.auth(self.agent.put(url)).query("sha256", sha256).send(&[][..]))
    }

    /// Sends a content whole as one of the run's files (when linking it by hash is refused:
    /// the server holds it, but in runs the caller cannot read).
    pub fn put_file(&self, path: &RunPath, name: &str, reader: &mut dyn std::io::Read, length: u64) -> CallResult<FileInfo> {
        let encoded: Vec<String> = name.split('/').map(encode_segment).collect();
        let url = format!("{}/files/{}", run_url(&self.base_url, path), encoded.join("/"));
        let request = self.auth(self.agent.put(url)).header("Content-Type", "application/octet-stream").header("Content-Length", length.to_string());
        Self::finish(request.send(ureq::SendBody::from_reader(reader)))
    }

    pub fn heartbeat(&self, path: &RunPath) -> CallResult<HeartbeatReply> {
        self.post_json(&format!("{}/heartbeat", run_url(&self.base_url, path)), &serde_json::json!({}))
    }

    pub fn finish_run(&self, path: &RunPath, request: &FinishRequest) -> CallResult<RunInfo> {
        self.post_json(&format!("{}/finish", run_url(&self.base_url, path)), request)
    }

    pub fn stop_run(&self, path: &RunPath) -> CallResult<RunInfo> {
        self.post_json(&format!("{}/stop", run_url(&self.base_url, path)), &serde_json::json!({}))
    }

    pub fn list_entities(&self) -> CallResult<Vec<EntityInfo>> {
        self.get_json(&format!("{}/api/v1/entities", self.base_url), &[])
    }

    pub fn list_projects(&self, entity: &str) -> CallResult<Vec<ProjectInfo>> {
        self.get_json(&format!("{}/api/v1/entities/{}/projects", self.base_url, encode_segment(entity)), &[])
    }

    pub fn search_runs(&self, entity: &str, project: &str, search: &RunSearch) -> CallResult<RunPage> {
        let url = format!("{}/api/v1/projects/{}/{}/runs/search", self.base_url, encode_segment(entity), encode_segment(project));
        self.post_json(&url, search)
    }

    pub fn list_keys(&self, path: &RunPath) -> CallResult<Vec<KeyInfo>> {
        self.get_json(&format!("{}/keys", run_url(&self.base_url, path)), &[])
    }

    pub fn series(&self, path: &RunPath, query: &SeriesQuery) -> CallResult<SeriesResult> {
        let mut params = vec![("keys", query.keys.clone())];
        if let Some(x) = &query.x {
            params.push(("x", x.clone()));
        }
        if let Some(b) = query.buckets {
            params.push(("buckets", b.to_string()));
        }
        if let Some(v) = query.x_min {
            params.push(("x_min", v.to_string()));
        }
        if let Some(v) = query.x_max {
            params.push(("x_max", v.to_string()));
        }
        self.get_json(&format!("{}/series", run_url(&self.base_url, path)), &params)
    }

    /// History as binary columns: the fast path for reading many points.
    pub fn history_columns(&self, path: &RunPath, keys: Option<&[String]>, min_step: Option<i64>, max_step: Option<i64>, limit: usize, require_all: bool) -> CallResult<Columns> {
        let mut request = self.auth(self.agent.get(format!("{}/history", run_url(&self.base_url, path))));
        request = request.query("format", "binary").query("limit", limit.to_string());
        if let Some(keys) = keys {
            request = request.query("keys", keys.join(","));
        }
        if let Some(v) = min_step {
            request = request.query("min_step", v.to_string());
        }
        if let Some(v) = max_step {
            request = request.query("max_step", v.to_string());
        }
        if require_all {
            request = request.query("require", "all");
        }
        let bytes = Self::finish_bytes(request.call())?;
        wire::decode_columns(&bytes).map_err(|e| CallError::Transport(format!("the server sent unreadable columns: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
        assert_eq!(run_url("http://h", &RunPath::new("e", "p r", "日")), "http://h/api/v1/runs/e/p%20r/%E6%97%A5");
    }

    #[test]
    fn unreachable_servers_are_retryable_transport_errors() {
        let client = ApiClient::new("http://127.0.0.1:9", None, Duration::from_millis(300));
        let err = client.info().unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(matches!(err, CallError::Transport(_)));
    }
}
