//! `POST /graphql`: the operations the official client sends for a run, answered from cairn's
//! model. The operation is named by the query text (`query Viewer {`, `mutation UpsertBucket(`),
//! or, for an anonymous query, by its first root field. Answers carry the fields the client reads
//! (`../shared/compat/wandb-protocol.md`); the client ignores the rest. An operation cairn does not
//! know is answered with empty data (the client tolerates it) and logged once.

use std::collections::HashSet;
use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_types::api::{IngestJson, JsonEvents, JsonUpdate, JsonUpdates, ResumeMode, RunInfo, RunPatch, RunState, StepRef, UpsertRunRequest};
use cairn_types::error::{CodedError, ErrorCode};
use cairn_types::value::Map;
use cairn_types::{RunPath, Value};
use serde_json::{Value as Json, json};

use super::{bucket, config_from_wandb, parse_storage_id, project};
use crate::AppState;
use crate::auth::{Caller, Need};
use crate::service::blocking;

/// The operation a request names: `query Name`, `mutation Name`, or an anonymous query's first
/// root field.
pub(crate) fn operation_name(query: &str) -> Option<String> {
    let mut words = Vec::new();
    let mut chars = query.chars().peekable();
    let mut word = String::new();
    while let Some(c) = chars.next() {
        if c == '#' {
            // A comment, to the end of the line.
            for d in chars.by_ref() {
                if d == '\n' {
                    break;
                }
            }
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        if c == '{' || c == '(' {
            words.push(c.to_string());
        }
        if words.len() >= 4 {
            break;
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    match words.as_slice() {
        [kind, name, ..] if matches!(kind.as_str(), "query" | "mutation" | "subscription") && name != "{" && name != "(" => Some(name.clone()),
        [kind, brace, field, ..] if matches!(kind.as_str(), "query" | "mutation") && brace == "{" => Some(field.clone()),
        [brace, field, ..] if brace == "{" => Some(field.clone()),
        _ => None,
    }
}

/// A GraphQL error the client shows: HTTP 200 with `errors`, or the status that makes it retry
/// (5xx, 429) or give up (401, 403).
fn error_response(e: &CodedError) -> Response {
    let status = match e.code.http_status() {
        401 => StatusCode::UNAUTHORIZED,
        403 => StatusCode::FORBIDDEN,
        429 => StatusCode::TOO_MANY_REQUESTS,
        s if s >= 500 => StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        _ => StatusCode::OK,
    };
    if status.is_server_error() {
        tracing::warn!(code = e.code.as_str(), "graphql: {}", e.message);
    }
    (status, axum::Json(json!({"errors": [{"message": e.message, "extensions": {"code": e.code.as_str()}}], "data": null}))).into_response()
}

fn bad(message: impl Into<String>) -> CodedError {
    CodedError::new(ErrorCode::InvalidBody, message)
}

/// Operations answered with empty data, logged once each.
static UNKNOWN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// A GraphQL request as the official client sends it.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct GraphqlRequest {
    query: String,
    #[schema(value_type = Option<Object>)]
    variables: Option<Json>,
    /// Often empty or absent: the operation is taken from the query text.
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
}

/// A GraphQL answer: `data`, or `errors` with their messages.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct GraphqlResponse {
    #[schema(value_type = Option<Object>)]
    data: Option<Json>,
    #[schema(value_type = Option<Vec<Object>>)]
    errors: Option<Vec<Json>>,
}

#[utoipa::path(post, path = "/graphql", tag = "wandb", request_body = GraphqlRequest,
    responses((status = 200, description = "The operation's data, or `errors` naming what was wrong", body = GraphqlResponse),
        (status = 400, description = "The body is not JSON", body = GraphqlResponse),
        (status = 401, description = "No valid API key", body = cairn_types::ErrorBody)))]
pub async fn graphql(State(state): State<AppState>, caller: Caller, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    let request: Json = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, axum::Json(json!({"errors": [{"message": format!("the body is not JSON: {e}")}]}))).into_response(),
    };
    let query = request.get("query").and_then(Json::as_str).unwrap_or("");
    let given = request.get("operationName").and_then(Json::as_str).filter(|n| !n.is_empty()).map(str::to_owned);
    let Some(op) = given.or_else(|| operation_name(query)) else {
        return error_response(&bad("the request holds no GraphQL operation"));
    };
    let vars = request.get("variables").cloned().filter(Json::is_object).unwrap_or_else(|| json!({}));
    let base = super::uploads::base_url(&headers);
    // The public API (`wandb.Api()`) names itself; its UpsertBucket updates a run, never resumes it.
    let public = headers.get("user-agent").and_then(|v| v.to_str().ok()).is_some_and(|ua| ua.starts_with("W&B Public Client"));
    match answer(&state, &caller, &op, query, &vars, &base, public).await {
        Ok(data) => axum::Json(json!({"data": data})).into_response(),
        Err(e) => error_response(&e),
    }
}

pub(crate) fn text<'a>(vars: &'a Json, name: &str) -> Option<&'a str> {
    vars.get(name).and_then(Json::as_str).filter(|s| !s.is_empty())
}

async fn answer(state: &AppState, caller: &Caller, op: &str, query: &str, vars: &Json, base: &str, public: bool) -> Result<Json, CodedError> {
    use super::public;
    Ok(match op {
        "Viewer" | "GetViewer" | "GetDefaultEntity" | "viewer" => json!({"viewer": viewer(state, caller)}),
        "Run" | "RunState" | "RunHistoryKeys" => public::run(state, caller, vars).await?,
        "Runs" => public::runs(state, caller, vars).await?,
        "RunFullHistory" | "RunSampledHistory" | "HistoryPage" | "SampledHistoryPage" => public::history(state, caller, op, vars).await?,
        // No parquet files: the client reads the whole history live.
        "RunParquetHistory" => json!({"project": {"run": {"parquetHistory": {"parquetUrls": [], "liveData": []}}}}),
        "RunFiles" => public::files(state, caller, vars, base).await?,
        "DeleteRun" => public::delete(state, caller, vars).await?,
        "StopRun" => public::stop(state, caller, vars).await?,
        "ServerFeaturesQuery" => json!({"serverInfo": {"features": []}}),
        "ServerInfo" | "serverInfo" => json!({"serverInfo": {"cliVersionInfo": "{}", "latestLocalVersionInfo": null, "features": []}}),
        // The legacy clients' capability probes. 0.19 reads `fields` of each type without a
        // check for null (it crashes on `null` when it uploads a file), and picks its upload path
        // by whether `createRunFiles` is listed: the types are named with what cairn answers.
        "ProbeServerCapabilities" => json!({
            "QueryType": {"fields": names(&["viewer", "project", "models", "entity"])},
            "MutationType": {"fields": names(&[
                "upsertBucket", "createRunFiles", "notifyScriptableRunAlert", "rewindRun", "deleteRun", "stopRun",
                "createArtifact", "createArtifactFiles", "createArtifactManifest", "commitArtifact", "useArtifact",
            ])},
            "ServerInfoType": {"fields": names(&["features"])},
        }),
        // 0.19–0.21's core asks which fields an input or a type has before it sends them.
        "InputFields" => json!({"TypeInfo": {"inputFields": names(match text(vars, "typeName").unwrap_or_default() {
            "CreateArtifactInput" => &[
                "entityName", "projectName", "artifactTypeName", "artifactCollectionName", "runName", "digest", "digestAlgorithm", "description",
                "aliases", "metadata", "clientID", "sequenceClientID", "enableDigestDeduplication", "historyStep", "distributedID", "ttlDurationSeconds",
            ][..],
            "UseArtifactInput" => &["artifactID", "entityName", "projectName", "runName"][..],
            _ => &[][..],
        })}}),
        "TypeFields" => json!({"TypeInfo": {"fields": names(match text(vars, "typeName").unwrap_or_default() {
            "Artifact" => &["id", "state", "digest", "artifactSequence", "versionIndex", "artifactType", "description", "metadata", "aliases", "size", "fileCount", "createdAt"][..],
            "Project" => &["id", "name", "entity", "run", "runs", "artifactType", "artifactCollectionMembership", "artifactCollection"][..],
            _ => &[][..],
        })}}),
        "ProbeServerArtifact" => json!({"ArtifactInfoType": {"fields": names(&[
            "id", "artifactSequence", "versionIndex", "artifactType", "description", "metadata", "ttlDurationSeconds", "ttlIsInherited",
            "aliases", "tags", "historyStep", "state", "currentManifest", "commitHash", "fileCount", "createdAt", "updatedAt",
        ])}}),
        // `Project.artifact` takes a name (and not `enableTracking`).
        "ProbeServerProjectInfo" => json!({"ProjectInfoType": {"fields": [{"name": "artifact", "args": [{"name": "name"}]}, {"name": "run", "args": [{"name": "name"}]}]}}),
        "ProbeServerUseArtifactInput" => {
            json!({"UseArtifactInputInfoType": {"name": "UseArtifactInput", "inputFields": names(&["artifactID", "entityName", "projectName", "runName"])}})
        }
        "ProbeRunInput" => json!({"RunType": {"fields": [{"name": "projectId"}, {"name": "historyKeys"}, {"name": "sweepName"}]}}),
        "OrganizationCoreWeaveOrganizationID" => json!({"entity": null}),
        "UpsertBucket" => upsert_bucket(state, caller, &bucket_input(query, vars), public).await?,
        "RunResumeStatus" => resume_status(state, caller, vars).await?,
        "CreateRunFiles" => create_run_files(state, caller, vars, base).await?,
        "RunStoppedStatus" => stopped_status(state, caller, vars).await?,
        "NotifyScriptableRunAlert" => alert(state, caller, vars).await?,
        "RewindRun" => rewind(state, caller, vars).await?,
        "ArtifactType" => super::artifacts::artifact_type(state, caller, vars).await?,
        "CreateArtifact" => super::artifacts::create(state, caller, vars).await?,
        "CreateArtifactManifest" => super::artifacts::create_manifest(state, caller, vars, base).await?,
        "CreateArtifactFiles" => super::artifacts::create_files(state, caller, vars, base).await?,
        "CommitArtifact" => super::artifacts::commit(state, caller, vars).await?,
        "ArtifactByName" => super::artifacts::by_name(state, caller, vars, base).await?,
        "ArtifactMembershipByName" => super::artifacts::membership_by_name(state, caller, vars).await?,
        "UseArtifact" => super::artifacts::use_artifact(state, caller, vars).await?,
        "FetchArtifactManifest" => super::artifacts::fetch_manifest(state, caller, vars, base).await?,
        "ArtifactFileURLs" => super::artifacts::file_urls(state, caller, vars, base).await?,
        "GetArtifactMembershipFileUrls" => super::artifacts::membership_file_urls(state, caller, vars, base).await?,
        other => {
            let mut seen = UNKNOWN.lock().unwrap_or_else(|p| p.into_inner());
            if seen.get_or_insert_with(HashSet::new).insert(other.to_owned()) {
                tracing::info!("graphql: operation {other} is not served; answered with empty data");
            }
            json!({})
        }
    })
}

/// UpsertBucket's input by the names wandb-core sends its variables under, whatever the query
/// calls them (the public API's `run.update()` binds `displayName: $display_name`): each
/// `field: $variable` of the query text, with the variable's value.
fn bucket_input(query: &str, vars: &Json) -> Json {
    // The input's field names, as `UpsertBucket`'s variables are named in wandb-core.
    const AS_VARIABLE: [(&str, &str); 5] = [("modelName", "project"), ("entityName", "entity"), ("jobProgram", "program"), ("jobRepo", "repo"), ("name", "name")];
    let mut out = serde_json::Map::new();
    let bytes = query.as_bytes();
    let mut i = 0;
    while let Some(at) = query[i..].find('$') {
        let dollar = i + at;
        i = dollar + 1;
        // `field: $var`: the word before the colon before the dollar.
        let before = query[..dollar].trim_end();
        let Some(before) = before.strip_suffix(':') else { continue };
        let field: String = before.trim_end().chars().rev().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<Vec<_>>().into_iter().rev().collect();
        let var: String = query[dollar + 1..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if field.is_empty() || var.is_empty() || bytes.get(dollar.saturating_sub(1)) == Some(&b'(') {
            continue;
        }
        let name = AS_VARIABLE.iter().find(|(f, _)| *f == field).map_or(field.as_str(), |(_, v)| *v).to_owned();
        if let Some(value) = vars.get(&var) {
            out.insert(name, value.clone());
        }
    }
    // A query without field bindings (hand-written): the variables as they are.
    if out.is_empty() { vars.clone() } else { Json::Object(out) }
}

/// The signed-in user, or on a server without accounts its default entity.
fn viewer(state: &AppState, caller: &Caller) -> Json {
    match caller.principal() {
        Some(p) => {
            let teams: Vec<Json> = p.teams.iter().map(|(team, _)| json!({"node": {"name": team}})).collect();
            json!({"id": p.user, "name": p.user, "entity": p.user, "username": p.user, "email": "", "admin": p.admin, "flags": "{}", "teams": {"edges": teams}})
        }
        None => {
            let entity = &state.config.default_entity;
            json!({"id": entity, "name": entity, "entity": entity, "username": entity, "email": "", "admin": true, "flags": "{}", "teams": {"edges": []}})
        }
    }
}

/// The entity a request means: the one it names, else the caller's own, else the server's default.
pub(crate) fn entity_of(state: &AppState, caller: &Caller, named: Option<&str>) -> String {
    named.map(str::to_owned).or_else(|| caller.principal().map(|p| p.user.clone())).unwrap_or_else(|| state.config.default_entity.clone())
}

/// The run a request names by its variables (`entity`, `project` and the first of `run` given;
/// the entity defaults to the caller's, the project to `uncategorized`), once the caller has `need`
/// on it.
pub(crate) async fn named_run(state: &AppState, caller: &Caller, vars: &Json, [entity, project]: [&str; 2], run: &[&str], need: Need) -> Result<RunPath, CodedError> {
    let entity = entity_of(state, caller, text(vars, entity));
    let project = text(vars, project).unwrap_or("uncategorized");
    let name = run.iter().find_map(|v| text(vars, v)).ok_or_else(|| bad(format!("the request needs the run's name (${})", run.join(" or $"))))?;
    state.authorize(caller, &entity, Some(project), need).await?;
    let path = RunPath::new(entity.as_str(), project, name);
    path.validate()?;
    Ok(path)
}

pub(crate) async fn get_run(state: &AppState, path: &RunPath) -> Result<Option<RunInfo>, CodedError> {
    let (store, path) = (state.store.clone(), path.clone());
    match blocking(move || store.get_run(&path)).await {
        Ok(run) => Ok(Some(run)),
        Err(e) if e.code == ErrorCode::RunNotFound || e.code == ErrorCode::ProjectNotFound || e.code == ErrorCode::EntityNotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn strings(vars: &Json, name: &str) -> Option<Vec<String>> {
    vars.get(name).and_then(Json::as_array).map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
}

/// `UpsertBucket`: creates the run, updates it while it runs (null means unchanged; the config
/// comes whole), or resumes it when it had ended.
async fn upsert_bucket(state: &AppState, caller: &Caller, vars: &Json, public: bool) -> Result<Json, CodedError> {
    let path = match text(vars, "id").and_then(parse_storage_id) {
        Some(path) => path,
        None => {
            let entity = entity_of(state, caller, text(vars, "entity"));
            let project = text(vars, "project").unwrap_or("uncategorized").to_owned();
            let run_id = text(vars, "name").map(str::to_owned).unwrap_or_else(cairn_types::ids::generate_run_id);
            RunPath::new(entity, project, run_id)
        }
    };
    path.validate()?;
    state.authorize(caller, &path.entity, Some(&path.project), Need::Write).await?;
    let config = match vars.get("config") {
        Some(Json::String(s)) => Some(serde_json::from_str::<Json>(s).map_err(|e| bad(format!("config is not a JSON string: {e}")))?),
        Some(Json::Object(o)) => Some(Json::Object(o.clone())),
        _ => None,
    };
    let (config, internal) = match &config {
        Some(c) => {
            let (map, internal) = config_from_wandb(c);
            (Some(map), internal)
        }
        None => (None, None),
    };
    let tags = strings(vars, "tags");
    // The public API's `run.summary.update()` sends the whole summary, and nothing else.
    let summary = match vars.get("summaryMetrics") {
        Some(Json::String(s)) => match serde_json::from_str::<Json>(s) {
            Ok(v @ Json::Object(_)) => Some(v),
            _ => return Err(bad("summaryMetrics is not a JSON object")),
        },
        Some(v @ Json::Object(_)) => Some(v.clone()),
        _ => None,
    };
    let summary_only = summary.is_some() && vars.as_object().is_some_and(|o| o.iter().all(|(k, v)| k == "id" || k == "summaryMetrics" || v.is_null()));
    let existing = get_run(state, &path).await?;
    let run = match existing {
        Some(run) if run.state == RunState::Running || public || summary_only => {
            let patch = RunPatch {
                name: text(vars, "displayName").map(str::to_owned),
                notes: text(vars, "notes").or(text(vars, "description")).map(str::to_owned),
                tags,
                group: text(vars, "groupName").map(str::to_owned),
                job_type: text(vars, "jobType").map(str::to_owned),
            };
            let mut run = if patch != RunPatch::default() { state.update_run(path.clone(), patch).await? } else { run };
            if let Some(config) = config {
                run = replace_config(state, &run, config).await?;
            }
            if let Some(summary) = summary {
                run = replace_summary(state, &run, &summary).await?;
            }
            return Ok(json!({"upsertBucket": {"bucket": bucket(&run), "inserted": false}}));
        }
        other => other,
    };
    // A new run, or one that ended and resumes.
    let mut metadata = Map::new();
    for (var, key) in [("host", "host"), ("program", "program")] {
        if let Some(v) = text(vars, var) {
            metadata.insert(key.into(), Value::Str(v.into()));
        }
    }
    if let Some(commit) = text(vars, "commit") {
        let mut git = Map::new();
        git.insert("commit".into(), Value::Str(commit.into()));
        if let Some(repo) = text(vars, "repo") {
            git.insert("remote".into(), Value::Str(repo.into()));
        }
        metadata.insert("git".into(), Value::Map(git));
    }
    metadata.insert("client".into(), Value::Str("wandb".into()));
    let fork_from = internal.as_ref().and_then(|w| w.get("branch_point")).and_then(|bp| {
        let run_id = bp.get("run_id")?.as_str()?;
        (run_id != path.run_id).then(|| StepRef { run_id: run_id.to_owned(), step: bp.get("step").and_then(Json::as_i64).unwrap_or(0) })
    });
    let inserted = run.is_none();
    let request = UpsertRunRequest {
        entity: Some(path.entity.to_string()),
        project: Some(path.project.to_string()),
        run_id: path.run_id.to_string(),
        name: text(vars, "displayName").map(str::to_owned),
        notes: text(vars, "notes").or(text(vars, "description")).map(str::to_owned),
        tags,
        group: text(vars, "groupName").map(str::to_owned),
        job_type: text(vars, "jobType").map(str::to_owned),
        config: config.map(Value::Map),
        allow_val_change: true,
        fork_from: if inserted { fork_from } else { None },
        metadata: Some(Value::Map(metadata)),
        resume: ResumeMode::Allow,
        ..Default::default()
    };
    let run = state.upsert_run(caller, request).await?;
    Ok(json!({"upsertBucket": {"bucket": bucket(&run), "inserted": inserted}}))
}

/// The client sends the whole config: keys it no longer has are removed, changed ones set.
/// The run's config or summary made `wanted`: one update that sets what changed and removes
/// what is gone (none when nothing changed).
async fn replace_map(state: &AppState, run: &RunInfo, summary: bool, wanted: Map) -> Result<RunInfo, CodedError> {
    let current = if summary { &run.summary } else { &run.config };
    let set: Map = wanted.iter().filter(|(k, v)| current.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let remove: Vec<String> = current.keys().filter(|k| !wanted.contains_key(*k)).cloned().collect();
    if set.is_empty() && remove.is_empty() {
        return Ok(run.clone());
    }
    let offset = if summary { run.offsets.summary } else { run.offsets.config };
    let updates = Some(JsonUpdates { offset, updates: vec![JsonUpdate { set, remove }] });
    let json = if summary { IngestJson { summary: updates, ..Default::default() } } else { IngestJson { config: updates, ..Default::default() } };
    let path = run.path();
    state.ingest(path.clone(), move |now| json.into_batch(now)).await?;
    get_run(state, &path).await?.ok_or_else(|| CodedError::new(ErrorCode::RunNotFound, format!("run {path} is gone")))
}

async fn replace_config(state: &AppState, run: &RunInfo, config: Map) -> Result<RunInfo, CodedError> {
    replace_map(state, run, false, config).await
}

/// The summary replaced by `summary` (W&B's whole summary; its `_` keys are the run's facts).
async fn replace_summary(state: &AppState, run: &RunInfo, summary: &Json) -> Result<RunInfo, CodedError> {
    let Value::Map(given) = Value::from_json(summary) else { return Ok(run.clone()) };
    replace_map(state, run, true, given.into_iter().filter(|(k, _)| !k.starts_with('_')).collect()).await
}

/// `RunResumeStatus`: the run as the client resumes it, or a null bucket when it does not exist.
async fn resume_status(state: &AppState, caller: &Caller, vars: &Json) -> Result<Json, CodedError> {
    let path = named_run(state, caller, vars, ["entity", "project"], &["name"], Need::Read).await?;
    let model = project(&path.entity, &path.project);
    let Some(run) = get_run(state, &path).await? else {
        let mut model = model;
        model["bucket"] = Json::Null;
        return Ok(json!({"model": model}));
    };
    // The last history row, as the client resumes its step after it.
    let tail = match run.last_step {
        Some(step) => {
            let (store, p) = (state.store.clone(), path.clone());
            let request = cairn_store::HistoryRequest { min_step: Some(step), limit: 1, ..Default::default() };
            let data = blocking(move || store.history(&p, &request)).await?;
            history_rows(&data).into_iter().map(|row| row.to_string()).collect::<Vec<_>>()
        }
        None => Vec::new(),
    };
    let mut summary = serde_json::Map::new();
    for (k, v) in &run.summary {
        summary.insert(k.clone(), v.to_json());
    }
    let mut b = bucket(&run);
    b["summaryMetrics"] = Json::String(Json::Object(summary).to_string());
    b["logLineCount"] = json!(run.offsets.console);
    b["historyTail"] = Json::String(Json::from(tail).to_string());
    b["eventsTail"] = Json::String("[]".into());
    // The client counts a run as started when this holds "t".
    b["wandbConfig"] = Json::String(json!({"t": {}}).to_string());
    let mut model = model;
    model["bucket"] = b;
    Ok(json!({"model": model}))
}

/// History rows as W&B's JSON objects, with `_step`.
pub(crate) fn history_rows(data: &cairn_store::HistoryData) -> Vec<Json> {
    (0..data.steps.len())
        .map(|i| {
            let mut row = serde_json::Map::new();
            row.insert("_step".into(), json!(data.steps[i]));
            for column in &data.columns {
                if let Some(v) = column.values.get(i) {
                    row.insert(column.name.clone(), v.to_json());
                }
            }
            Json::Object(row)
        })
        .collect()
}

/// `CreateRunFiles`: one entry per file asked for, each with a signed URL the client PUTs it to
/// (the PUT carries no credentials). A name cairn cannot keep gets no URL: the client skips it.
async fn create_run_files(state: &AppState, caller: &Caller, vars: &Json, base: &str) -> Result<Json, CodedError> {
    let path = named_run(state, caller, vars, ["entity", "project"], &["run"], Need::Write).await?;
    let mut files = Vec::new();
    for name in strings(vars, "files").unwrap_or_default() {
        let url = if crate::api::validate_file_path(&name).is_ok() { Some(super::uploads::upload_url(state, base, &path, &name).await?) } else { None };
        files.push(json!({"name": name, "uploadUrl": url}));
    }
    Ok(json!({"createRunFiles": {"runID": super::storage_id(&path), "uploadHeaders": [], "files": files}}))
}

/// `RunStoppedStatus` (clients before 0.24 poll it): whether the run was asked to stop.
async fn stopped_status(state: &AppState, caller: &Caller, vars: &Json) -> Result<Json, CodedError> {
    let path = named_run(state, caller, vars, ["entityName", "projectName"], &["runId"], Need::Read).await?;
    let run = get_run(state, &path).await?;
    Ok(json!({"project": {"run": run.map(|r| json!({"stopped": r.stop_requested}))}}))
}

/// `NotifyScriptableRunAlert` (`run.alert`): an alert of the run, stored and delivered as
/// cairn's own are (`waitDuration` is in milliseconds).
async fn alert(state: &AppState, caller: &Caller, vars: &Json) -> Result<Json, CodedError> {
    let path = named_run(state, caller, vars, ["entityName", "projectName"], &["runName"], Need::Write).await?;
    let run = get_run(state, &path).await?.ok_or_else(|| CodedError::new(ErrorCode::RunNotFound, format!("run {path} not found")))?;
    let mut event = Map::new();
    event.insert("type".into(), Value::Str("alert".into()));
    event.insert("title".into(), Value::Str(text(vars, "title").unwrap_or("").into()));
    event.insert("text".into(), Value::Str(text(vars, "text").unwrap_or("").into()));
    event.insert("level".into(), Value::Str(text(vars, "severity").unwrap_or("INFO").into()));
    event.insert("time".into(), Value::Float(cairn_types::Timestamp::now().as_secs_f64()));
    if let Some(ms) = vars.get("waitDuration").and_then(Json::as_f64) {
        event.insert("wait_duration".into(), Value::Float(ms / 1000.0));
    }
    let json = IngestJson { events: Some(JsonEvents { offset: run.offsets.events, events: vec![Value::Map(event)] }), ..Default::default() };
    state.ingest(path, move |now| json.into_batch(now)).await?;
    Ok(json!({"notifyScriptableRunAlert": {"success": true}}))
}

/// `RewindRun` (`resume_from="RUN?_step=N"`): the run's history after the step is set aside (kept
/// in an archive run), and the run continues after it.
async fn rewind(state: &AppState, caller: &Caller, vars: &Json) -> Result<Json, CodedError> {
    let path = named_run(state, caller, vars, ["entity", "project"], &["runName"], Need::Write).await?;
    let metric = text(vars, "metricName").unwrap_or("_step");
    if metric != "_step" {
        return Err(bad(format!("a run rewinds to a _step, not to {metric:?}")));
    }
    let step = vars.get("metricValue").and_then(Json::as_f64).filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| bad("RewindRun needs the step, a number of at least 0"))?;
    let request = UpsertRunRequest {
        entity: Some(path.entity.to_string()),
        project: Some(path.project.to_string()),
        run_id: path.run_id.to_string(),
        resume_from: Some(StepRef { run_id: path.run_id.to_string(), step: step as i64 }),
        resume: ResumeMode::Must,
        ..Default::default()
    };
    let run = state.upsert_run(caller, request).await?;
    Ok(json!({"rewindRun": {"rewoundRun": bucket(&run)}}))
}

/// `[{"name": ...}]`, as an introspection's `fields` lists them.
fn names(fields: &[&str]) -> Json {
    Json::Array(fields.iter().map(|f| json!({"name": f})).collect())
}

#[cfg(test)]
mod tests {
    use super::operation_name;

    #[test]
    fn upsert_bucket_variables_are_read_by_their_input_fields() {
        let core = "mutation UpsertBucket($id: String, $name: String, $project: String, $displayName: String) { upsertBucket(input: {id:$id, name:$name, modelName:$project, displayName:$displayName}) { inserted } }";
        let vars = serde_json::json!({"id": null, "name": "r1", "project": "p", "displayName": "d"});
        assert_eq!(super::bucket_input(core, &vars), serde_json::json!({"id": null, "name": "r1", "project": "p", "displayName": "d"}));
        let public = "mutation UpsertBucket($id: String!, $display_name: String, $tags: [String!]) { upsertBucket(input: {id: $id, displayName: $display_name, tags: $tags}) { bucket { id } } }";
        let vars = serde_json::json!({"id": "e/p/r", "display_name": "renamed", "tags": ["a"]});
        assert_eq!(super::bucket_input(public, &vars), serde_json::json!({"id": "e/p/r", "displayName": "renamed", "tags": ["a"]}));
    }

    #[test]
    fn the_operation_comes_from_the_query_text() {
        assert_eq!(operation_name("query Viewer { viewer { id } }").as_deref(), Some("Viewer"));
        assert_eq!(operation_name("#graphql\nmutation UpsertBucket($id: String) { upsertBucket(input: {id: $id}) { inserted } }").as_deref(), Some("UpsertBucket"));
        assert_eq!(operation_name("  query($x: Int) { a }"), None, "anonymous with variables: not named");
        assert_eq!(operation_name("{ viewer { id } }").as_deref(), Some("viewer"));
        assert_eq!(operation_name("query { serverInfo { features { name } } }").as_deref(), Some("serverInfo"));
        assert_eq!(operation_name("").as_deref(), None);
    }
}
