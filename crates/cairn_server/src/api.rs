//! REST handlers under `/api/v1`.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_store::{HistoryRequest, Store};
use cairn_types::RunPath;
use cairn_types::api::{
    AlertInfo, ConsolePage, ConsoleQuery, EntityInfo, FileInfo, FileLinkQuery, FinishRequest, GroupPage, GroupQuery, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_COLUMNS_LIMIT,
    HISTORY_MAX_LIMIT, HeartbeatReply, HistoryColumns, HistoryPage, HistoryQuery, IngestAck, IngestJson, KeyInfo, MoveRuns, MovedRuns, ProjectColumns, ProjectInfo, ProjectKey,
    ProjectSeriesQuery, ProjectSeriesResult, RunInfo, RunListQuery, RunPage, RunPatch, RunSearch, SeriesQuery, SeriesResult, ServerInfo, UploadQuery, UploadStatus,
    UpsertRunRequest,
};
use cairn_types::error::{CodedError, ErrorBody, ErrorCode};
use cairn_types::value::{Map, Value, insert_path};
use cairn_types::wire::{self, BATCH_CONTENT_TYPE, COLUMNS_CONTENT_TYPE, ColumnData, KeyStream};

use crate::AppState;
use crate::auth::{Caller, Need};
use crate::error::{ApiError, ApiResult, BodyLimit, JsonBody, PathParams, QueryParams, content_type, parse_json, read_body};

/// Runs store work on the blocking pool.
pub async fn blocking<R: Send + 'static>(work: impl FnOnce() -> Result<R, CodedError> + Send + 'static) -> ApiResult<R> {
    crate::service::blocking(work).await.map_err(ApiError)
}

fn store(state: &AppState) -> Arc<dyn Store> {
    state.store.clone()
}

type RunParams = PathParams<(String, String, String)>;

fn run_path((entity, project, run_id): (String, String, String)) -> ApiResult<RunPath> {
    let path = RunPath { entity, project, run_id };
    path.validate()?;
    Ok(path)
}

#[utoipa::path(get, path = "/api/v1/info", tag = "server",
    responses((status = 200, description = "The server's version and defaults", body = ServerInfo)))]
pub async fn info(State(state): State<AppState>, caller: Caller) -> Json<ServerInfo> {
    // Where the data lives is for those who may see it.
    let signed = !matches!(caller, Caller::Anonymous);
    let default_entity = match caller.principal() {
        Some(p) => p.user.clone(),
        None => state.config.default_entity.clone(),
    };
    Json(ServerInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        default_entity,
        storage: if signed { state.store.describe() } else { String::new() },
        auth: state.config.auth.enabled,
        database_heap_bytes: if signed { state.store.database_heap_bytes() } else { None },
    })
}

/// Whether `caller` sees the entity at all: a role on it, or one of its projects is public.
async fn sees_entity(state: &AppState, caller: &Caller, entity: &str) -> ApiResult<bool> {
    if state.authorize(caller, entity, None, Need::Read).await.is_ok() {
        return Ok(true);
    }
    Ok(state.public_projects().await?.iter().any(|(e, _)| e == entity))
}

#[utoipa::path(get, path = "/api/v1/entities", tag = "entities",
    responses((status = 200, description = "All entities", body = Vec<EntityInfo>)))]
pub async fn list_entities(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<EntityInfo>>> {
    let store = store(&state);
    let mut seen = Vec::new();
    for entity in blocking(move || store.list_entities()).await? {
        if sees_entity(&state, &caller, &entity.name).await? {
            seen.push(entity);
        }
    }
    Ok(Json(seen))
}

#[utoipa::path(get, path = "/api/v1/entities/{entity}", tag = "entities",
    params(("entity" = String, Path, description = "Entity name")),
    responses((status = 200, body = EntityInfo), (status = 404, body = ErrorBody)))]
pub async fn get_entity(State(state): State<AppState>, caller: Caller, PathParams(entity): PathParams<String>) -> ApiResult<Json<EntityInfo>> {
    if let Err(e) = state.authorize(&caller, &entity, None, Need::Read).await
        && !state.public_projects().await?.iter().any(|(p, _)| *p == entity)
    {
        return Err(ApiError(e));
    }
    let store = store(&state);
    blocking(move || store.get_entity(&entity)).await.map(Json)
}

#[utoipa::path(get, path = "/api/v1/entities/{entity}/projects", tag = "projects",
    params(("entity" = String, Path, description = "Entity name")),
    responses((status = 200, body = Vec<ProjectInfo>), (status = 404, body = ErrorBody)))]
pub async fn list_projects(State(state): State<AppState>, caller: Caller, PathParams(entity): PathParams<String>) -> ApiResult<Json<Vec<ProjectInfo>>> {
    // Every project for those with a role on the entity; its public ones for anyone else.
    let whole = state.authorize(&caller, &entity, None, Need::Read).await;
    if let Err(e) = &whole
        && !state.public_projects().await?.iter().any(|(p, _)| *p == entity)
    {
        return Err(ApiError(e.clone()));
    }
    let store = store(&state);
    let projects = blocking(move || store.list_projects(&entity)).await?;
    Ok(Json(match whole {
        Ok(()) => projects,
        Err(_) => projects.into_iter().filter(|p| p.visibility == cairn_types::accounts::Visibility::Public).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/projects/{entity}/{project}", tag = "projects",
    params(("entity" = String, Path), ("project" = String, Path)),
    responses((status = 200, body = ProjectInfo), (status = 404, body = ErrorBody)))]
pub async fn get_project(State(state): State<AppState>, PathParams((entity, project)): PathParams<(String, String)>) -> ApiResult<Json<ProjectInfo>> {
    let store = store(&state);
    blocking(move || store.get_project(&entity, &project)).await.map(Json)
}

#[utoipa::path(get, path = "/api/v1/projects/{entity}/{project}/runs", tag = "runs",
    params(("entity" = String, Path), ("project" = String, Path), RunListQuery),
    responses((status = 200, body = RunPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_runs(
    State(state): State<AppState>,
    PathParams((entity, project)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<RunListQuery>,
) -> ApiResult<Json<RunPage>> {
    let filter = match query.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        Some(text) => Some(serde_json::from_str(text).map_err(|e| ApiError::new(ErrorCode::InvalidFilter, format!("filter is not valid JSON: {e}")))?),
        None => None,
    };
    let search = RunSearch {
        filter,
        sort: query.sort.map(|s| s.split(',').map(str::to_owned).filter(|s| !s.is_empty()).collect()).unwrap_or_default(),
        limit: query.limit,
        offset: query.offset,
    };
    let store = store(&state);
    blocking(move || store.search_runs(&entity, &project, &cairn_store::RunQuery::from_search(&search)?)).await.map(Json)
}

#[utoipa::path(post, path = "/api/v1/projects/{entity}/{project}/runs/search", tag = "runs",
    params(("entity" = String, Path), ("project" = String, Path)),
    request_body = RunSearch,
    responses((status = 200, body = RunPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn search_runs(
    State(state): State<AppState>,
    PathParams((entity, project)): PathParams<(String, String)>,
    JsonBody(search): JsonBody<RunSearch>,
) -> ApiResult<Json<RunPage>> {
    let store = store(&state);
    blocking(move || store.search_runs(&entity, &project, &cairn_store::RunQuery::from_search(&search)?)).await.map(Json)
}

#[utoipa::path(post, path = "/api/v1/projects/{entity}/{project}/runs/groups", tag = "runs",
    params(("entity" = String, Path), ("project" = String, Path)),
    request_body = GroupQuery,
    responses((status = 200, description = "Runs grouped by a field, with numeric columns summarized per group", body = GroupPage),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn group_runs(
    State(state): State<AppState>,
    PathParams((entity, project)): PathParams<(String, String)>,
    JsonBody(query): JsonBody<GroupQuery>,
) -> ApiResult<Json<GroupPage>> {
    let store = store(&state);
    blocking(move || store.group_runs(&entity, &project, &cairn_store::GroupRequest::from_query(&query)?)).await.map(Json)
}

#[utoipa::path(get, path = "/api/v1/projects/{entity}/{project}/columns", tag = "runs",
    params(("entity" = String, Path), ("project" = String, Path)),
    responses((status = 200, description = "The config and summary keys of the project's runs (the runs table's columns)", body = ProjectColumns),
        (status = 404, body = ErrorBody)))]
pub async fn project_columns(State(state): State<AppState>, PathParams((entity, project)): PathParams<(String, String)>) -> ApiResult<Json<ProjectColumns>> {
    let store = store(&state);
    blocking(move || store.project_columns(&entity, &project)).await.map(Json)
}

#[utoipa::path(get, path = "/api/v1/projects/{entity}/{project}/keys", tag = "history",
    params(("entity" = String, Path), ("project" = String, Path)),
    responses((status = 200, description = "The keys that the project's runs logged", body = Vec<ProjectKey>),
        (status = 404, body = ErrorBody)))]
pub async fn project_keys(State(state): State<AppState>, PathParams((entity, project)): PathParams<(String, String)>) -> ApiResult<Json<Vec<ProjectKey>>> {
    let store = store(&state);
    blocking(move || store.project_keys(&entity, &project)).await.map(Json)
}

#[utoipa::path(post, path = "/api/v1/projects/{entity}/{project}/series", tag = "history",
    params(("entity" = String, Path), ("project" = String, Path)),
    request_body = ProjectSeriesQuery,
    responses((status = 200, description = "Buckets of several runs and keys on one x-grid", body = ProjectSeriesResult),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn project_series(
    State(state): State<AppState>,
    PathParams((entity, project)): PathParams<(String, String)>,
    JsonBody(query): JsonBody<ProjectSeriesQuery>,
) -> ApiResult<Response> {
    let selection = cairn_types::api::BucketSelection::parse(query.fields.as_deref(), query.float32)?;
    let store = store(&state);
    // Serialized on the blocking pool too: a chart's answer can hold tens of thousands of numbers.
    let body = blocking(move || {
        let result = store.project_series(&entity, &project, &cairn_store::ProjectSeriesRequest::from_query(&query)?)?;
        serde_json::to_vec(&cairn_types::api::ProjectSeriesView { result: &result, selection })
            .map_err(|e| CodedError::new(ErrorCode::Internal, format!("cannot write the series: {e}")))
    })
    .await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[utoipa::path(post, path = "/api/v1/runs", tag = "runs",
    request_body = UpsertRunRequest,
    responses((status = 200, description = "The run, created or resumed", body = RunInfo),
        (status = 400, body = ErrorBody), (status = 404, description = "resume=must and no such run", body = ErrorBody),
        (status = 409, description = "resume=never and the run exists, or the run was deleted", body = ErrorBody)))]
pub async fn upsert_run(State(state): State<AppState>, caller: Caller, JsonBody(request): JsonBody<UpsertRunRequest>) -> ApiResult<Json<RunInfo>> {
    Ok(Json(state.upsert_run(&caller, request).await?))
}

#[utoipa::path(get, path = "/api/v1/runs/{entity}/{project}/{run_id}", tag = "runs",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path)),
    responses((status = 200, body = RunInfo), (status = 404, body = ErrorBody)))]
pub async fn get_run(State(state): State<AppState>, PathParams(p): RunParams) -> ApiResult<Json<RunInfo>> {
    let path = run_path(p)?;
    let store = store(&state);
    blocking(move || {
        let mut run = store.get_run(&path)?;
        if let Some((sweep_id, stop_reason)) = store.sweep_of_run(&path.entity, &path.project, &path.run_id)? {
            (run.sweep_id, run.stop_reason) = (Some(sweep_id), stop_reason);
        }
        Ok(run)
    })
    .await
    .map(Json)
}

#[utoipa::path(patch, path = "/api/v1/runs/{entity}/{project}/{run_id}", tag = "runs",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path)),
    request_body = RunPatch,
    responses((status = 200, body = RunInfo), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_run(State(state): State<AppState>, PathParams(p): RunParams, JsonBody(patch): JsonBody<RunPatch>) -> ApiResult<Json<RunInfo>> {
    Ok(Json(state.update_run(run_path(p)?, patch).await?))
}

#[utoipa::path(delete, path = "/api/v1/runs/{entity}/{project}/{run_id}", tag = "runs",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path)),
    responses((status = 204, description = "Deleted softly: gone from listings and queries; the id stays taken (409 run_deleted) until the run is purged, by POST .../purge or when the server's retention window passes"),
        (status = 404, body = ErrorBody)))]
pub async fn delete_run(State(state): State<AppState>, caller: Caller, PathParams(p): RunParams) -> ApiResult<StatusCode> {
    state.delete_run(&caller, run_path(p)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/runs/move", tag = "runs",
    request_body = MoveRuns,
    responses((status = 200, description = "Moved, all of them; their new paths", body = MovedRuns),
        (status = 400, description = "A bad path or name, or a running run", body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "A run id that the target holds already: nothing moved", body = ErrorBody)))]
pub async fn move_runs(State(state): State<AppState>, caller: Caller, JsonBody(request): JsonBody<MoveRuns>) -> ApiResult<Json<MovedRuns>> {
    let paths = request.runs.iter().map(|r| RunPath::parse(r)).collect::<Result<Vec<_>, _>>()?;
    let moved = state.move_runs(&caller, paths, request.entity, request.project).await?;
    Ok(Json(MovedRuns { runs: moved.iter().map(ToString::to_string).collect() }))
}

#[utoipa::path(get, path = "/api/v1/runs/{entity}/{project}/{run_id}/alerts", tag = "runs",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path)),
    responses((status = 200, description = "The run's alerts, oldest first, with how their delivery went", body = Vec<AlertInfo>),
        (status = 404, body = ErrorBody)))]
pub async fn list_alerts(State(state): State<AppState>, PathParams(p): RunParams) -> ApiResult<Json<Vec<AlertInfo>>> {
    let path = run_path(p)?;
    let store = store(&state);
    blocking(move || store.list_alerts(&path)).await.map(Json)
}

#[utoipa::path(get, path = "/api/v1/runs/{entity}/{project}/{run_id}/forks", tag = "runs",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path)),
    responses((status = 200, description = "Ids of the runs forked from this one, oldest first", body = Vec<String>),
        (status = 404, body = ErrorBody)))]
pub async fn list_forks(State(state): State<AppState>, PathParams(p): RunParams) -> ApiResult<Json<Vec<String>>> {
    let path = run_path(p)?;
    let store = store(&state);
    blocking(move || store.list_forks(&path)).await.map(Json)
}

#[utoipa::path(post, path = "/api/v1/runs/{entity}/{project}/{run_id}/purge", tag = "runs",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path)),
    responses((status = 204, description = "Removed for good, deleted or not: history, console, files (contents no other run names), and the id is free again"),
        (status = 404, body = ErrorBody)))]
pub async fn purge_run(State(state): State<AppState>, caller: Caller, PathParams(p): RunParams) -> ApiResult<StatusCode> {
    state.purge_run(&caller, run_path(p)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/runs/{entity}/{project}/{run_id}/ingest", tag = "ingest",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path)),
    request_body(description = "A batch: JSON, or the binary form that the clients send (application/x-cairn-batch)",
        content((IngestJson = "application/json"), (Vec<u8> = "application/x-cairn-batch"))),
    responses((status = 200, description = "Stored; the offsets expected next", body = IngestAck),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "offset_gap: a stream starts past what is stored; resend from expected_offsets", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn ingest(State(state): State<AppState>, PathParams(p): RunParams, request: Request) -> ApiResult<Json<IngestAck>> {
    let path = run_path(p)?;
    let (headers, body) = read_body(request, state.config.max_body_bytes).await?;
    let ct = content_type(&headers);
    let ack = if ct == BATCH_CONTENT_TYPE {
        state.ingest(path, move |_| Ok(wire::decode_batch(&body)?)).await?
    } else if ct == "application/json" || ct.is_empty() {
        let json: IngestJson = parse_json(&headers, &body)?;
        state.ingest(path, move |now| json.into_batch(now)).await?
    } else {
        return Err(ApiError::new(ErrorCode::UnsupportedMediaType, format!("content type {ct:?} is not supported; send application/json or {BATCH_CONTENT_TYPE}")));
    };
    Ok(Json(ack))
}

#[utoipa::path(post, path = "/api/v1/runs/{entity}/{project}/{run_id}/heartbeat", tag = "lifecycle",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path)),
    responses((status = 200, description = "`stop` is true when the run was stopped from the UI or the CLI", body = HeartbeatReply),
        (status = 404, body = ErrorBody)))]
pub async fn heartbeat(State(state): State<AppState>, PathParams(p): RunParams) -> ApiResult<Json<HeartbeatReply>> {
    Ok(Json(state.heartbeat(run_path(p)?).await?))
}

#[utoipa::path(post, path = "/api/v1/runs/{entity}/{project}/{run_id}/finish", tag = "lifecycle",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path)),
    request_body = FinishRequest,
    responses((status = 200, body = RunInfo), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn finish_run(State(state): State<AppState>, PathParams(p): RunParams, JsonBody(request): JsonBody<FinishRequest>) -> ApiResult<Json<RunInfo>> {
    Ok(Json(state.finish_run(run_path(p)?, request).await?))
}

#[utoipa::path(post, path = "/api/v1/runs/{entity}/{project}/{run_id}/stop", tag = "lifecycle",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path)),
    responses((status = 200, description = "Stop requested; the client learns of it at its next heartbeat", body = RunInfo),
        (status = 404, body = ErrorBody), (status = 409, description = "The run has already ended", body = ErrorBody)))]
pub async fn stop_run(State(state): State<AppState>, PathParams(p): RunParams) -> ApiResult<Json<RunInfo>> {
    Ok(Json(state.stop_run(run_path(p)?).await?))
}

#[utoipa::path(get, path = "/api/v1/runs/{entity}/{project}/{run_id}/keys", tag = "history",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path)),
    responses((status = 200, description = "Keys logged by the run, history and system", body = Vec<KeyInfo>),
        (status = 404, body = ErrorBody)))]
pub async fn list_keys(State(state): State<AppState>, PathParams(p): RunParams) -> ApiResult<Json<Vec<KeyInfo>>> {
    let path = run_path(p)?;
    let store = store(&state);
    blocking(move || store.list_keys(&path)).await.map(Json)
}

fn value_or_null(value: Option<Value>) -> Value {
    value.unwrap_or(Value::Null)
}

#[utoipa::path(get, path = "/api/v1/runs/{entity}/{project}/{run_id}/history", tag = "history",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path), HistoryQuery),
    responses(
        (status = 200, description = "Rows (format=rows), columns (format=columns), or binary columns (format=binary)",
            content((HistoryPage = "application/json"), (HistoryColumns = "application/json"), (Vec<u8> = "application/x-cairn-columns"))),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn history(State(state): State<AppState>, PathParams(p): RunParams, QueryParams(query): QueryParams<HistoryQuery>) -> ApiResult<Response> {
    let path = run_path(p)?;
    let format = query.format.as_deref().unwrap_or("rows").to_owned();
    let max = match format.as_str() {
        "rows" => HISTORY_MAX_LIMIT,
        "columns" | "binary" => HISTORY_MAX_COLUMNS_LIMIT,
        other => {
            return Err(ApiError::new(ErrorCode::InvalidQuery, format!("format {other:?} is not rows, columns or binary")));
        }
    };
    let limit = query.limit.unwrap_or(HISTORY_DEFAULT_LIMIT);
    if limit == 0 || limit > max {
        return Err(ApiError::new(ErrorCode::InvalidQuery, format!("limit={limit} is out of range for format={format}; use 1 to {max}")));
    }
    let require_all = match query.require.as_deref() {
        None | Some("any") => false,
        Some("all") => true,
        Some(other) => return Err(ApiError::new(ErrorCode::InvalidQuery, format!("require={other:?} is not any or all"))),
    };
    let stream = match query.stream.as_deref() {
        None | Some("history") => KeyStream::History,
        Some("system") => KeyStream::System,
        Some(other) => return Err(ApiError::new(ErrorCode::InvalidQuery, format!("stream={other:?} is not history or system"))),
    };
    let keys = query.keys.as_deref().map(|k| k.split(',').map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned).collect());
    let request = HistoryRequest { stream, keys, min_step: query.min_step, max_step: query.max_step, limit, require_all };
    let store = store(&state);
    let response = blocking(move || {
        let data = store.history(&path, &request)?;
        Ok(match format.as_str() {
            "binary" => {
                let columns: Vec<ColumnData> = data.columns.into_iter().map(|c| ColumnData { name: c.name, path: c.path, values: c.values }).collect();
                let body = wire::encode_columns(&data.steps, &columns, data.next_step);
                ([(header::CONTENT_TYPE, COLUMNS_CONTENT_TYPE)], body).into_response()
            }
            "columns" => Json(HistoryColumns {
                columns: data.columns.into_iter().map(|c| (c.name, c.values.into_values().into_iter().map(value_or_null).collect())).collect(),
                steps: data.steps,
                next_step: data.next_step,
            })
            .into_response(),
            _ => {
                let mut rows: Vec<Map> = data.steps.iter().map(|&s| Map::from([("_step".to_owned(), Value::Int(s))])).collect();
                for column in data.columns {
                    for (row, value) in rows.iter_mut().zip(column.values.into_values()) {
                        if let Some(value) = value {
                            insert_path(row, &column.path, value);
                        }
                    }
                }
                Json(HistoryPage { rows, next_step: data.next_step }).into_response()
            }
        })
    })
    .await?;
    Ok(response)
}

#[utoipa::path(get, path = "/api/v1/runs/{entity}/{project}/{run_id}/series", tag = "history",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path), SeriesQuery),
    responses((status = 200, description = "Bucketed min, max, mean, last and count per key; never sampled", body = SeriesResult),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn series(State(state): State<AppState>, PathParams(p): RunParams, QueryParams(query): QueryParams<SeriesQuery>) -> ApiResult<Json<SeriesResult>> {
    let path = run_path(p)?;
    let store = store(&state);
    blocking(move || store.series(&path, &cairn_store::SeriesRequest::from_query(&query)?)).await.map(Json)
}

#[utoipa::path(get, path = "/api/v1/runs/{entity}/{project}/{run_id}/histograms", tag = "history",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path), cairn_types::api::HistogramQuery),
    responses((status = 200, description = "A histogram key's histograms, merged per bucket of steps", body = cairn_types::api::HistogramSeries),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn histograms(
    State(state): State<AppState>,
    PathParams(p): RunParams,
    QueryParams(query): QueryParams<cairn_types::api::HistogramQuery>,
) -> ApiResult<Json<cairn_types::api::HistogramSeries>> {
    let path = run_path(p)?;
    let store = store(&state);
    blocking(move || {
        check_bins(query.bins)?;
        run_histograms(store.as_ref(), &path, &query.key, query.buckets, query.bins)?
            .ok_or_else(|| CodedError::new(ErrorCode::InvalidQuery, format!("key {:?} holds no histograms", query.key)))
    })
    .await
    .map(Json)
}

fn check_bins(bins: Option<usize>) -> Result<(), CodedError> {
    if bins.is_some_and(|b| b == 0 || b > cairn_types::value::MAX_BINS) {
        return Err(CodedError::new(ErrorCode::InvalidQuery, format!("bins must be 1 to {}", cairn_types::value::MAX_BINS)));
    }
    Ok(())
}

/// One key's values of a run, by step (the first `limit`; none when the run lacks it).
fn run_values(store: &dyn cairn_store::Store, path: &RunPath, key: &str, limit: usize) -> Result<(Vec<i64>, Vec<Option<Value>>), CodedError> {
    let request = cairn_store::HistoryRequest { keys: Some(vec![key.to_owned()]), require_all: true, limit, ..Default::default() };
    let data = store.history(path, &request)?;
    let values = data.columns.into_iter().next().map(|c| c.values.into_values()).unwrap_or_default();
    Ok((data.steps, values))
}

/// A run's histograms of `key`, merged per bucket of steps; `None` when the key holds values but
/// no histograms.
fn run_histograms(
    store: &dyn cairn_store::Store,
    path: &RunPath,
    key: &str,
    buckets: Option<usize>,
    bins: Option<usize>,
) -> Result<Option<cairn_types::api::HistogramSeries>, CodedError> {
    let (steps, values) = run_values(store, path, key, 1_000_000)?;
    let points: Vec<(i64, &cairn_types::value::Histogram)> = steps
        .iter()
        .zip(&values)
        .filter_map(|(step, v)| match v {
            Some(Value::Histogram(h)) => Some((*step, h.as_ref())),
            _ => None,
        })
        .collect();
    if points.is_empty() && !values.is_empty() {
        return Ok(None);
    }
    Ok(Some(cairn_types::api::bucket_histograms(key, &points, buckets.unwrap_or(100), bins)))
}

/// `read` for each run a batched request names (at most `MAX_BATCH_RUNS`), in the project; a
/// run that is not there, or lacks the key, gets `None`.
fn per_run<T>(
    store: &dyn cairn_store::Store,
    entity: &str,
    project: &str,
    run_ids: &[String],
    read: impl Fn(&RunPath) -> Result<Option<T>, CodedError>,
) -> Result<Vec<(String, Option<T>)>, CodedError> {
    if run_ids.len() > cairn_types::api::MAX_BATCH_RUNS {
        return Err(CodedError::new(ErrorCode::InvalidBody, format!("a request names at most {} runs, not {}", cairn_types::api::MAX_BATCH_RUNS, run_ids.len())));
    }
    store.get_project(entity, project)?;
    run_ids
        .iter()
        .map(|run_id| match read(&RunPath::new(entity, project, run_id)) {
            Ok(found) => Ok((run_id.clone(), found)),
            Err(e) if matches!(e.code, ErrorCode::RunNotFound | ErrorCode::KeyNotFound) => Ok((run_id.clone(), None)),
            Err(e) => Err(e),
        })
        .collect()
}

#[utoipa::path(post, path = "/api/v1/projects/{entity}/{project}/values", tag = "history",
    params(("entity" = String, Path), ("project" = String, Path)), request_body = cairn_types::api::ProjectValuesQuery,
    responses((status = 200, description = "One key's values per run, by step", body = cairn_types::api::ProjectValues),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn project_values(
    State(state): State<AppState>,
    PathParams((entity, project)): PathParams<(String, String)>,
    JsonBody(query): JsonBody<cairn_types::api::ProjectValuesQuery>,
) -> ApiResult<Json<cairn_types::api::ProjectValues>> {
    let store = store(&state);
    blocking(move || {
        // A budget of values for the whole answer, shared by its runs.
        let limit = (cairn_types::api::MAX_BATCH_VALUES / query.run_ids.len().max(1)).max(1);
        let found = per_run(store.as_ref(), &entity, &project, &query.run_ids, |path| run_values(store.as_ref(), path, &query.key, limit).map(Some))?;
        let runs = found
            .into_iter()
            .map(|(run_id, found)| {
                let (steps, values) = found.unwrap_or_default();
                let (steps, values) = steps.into_iter().zip(values).filter_map(|(s, v)| v.map(|v| (s, v))).unzip();
                cairn_types::api::RunValues { run_id, steps, values }
            })
            .collect();
        Ok(cairn_types::api::ProjectValues { key: query.key, runs })
    })
    .await
    .map(Json)
}

#[utoipa::path(post, path = "/api/v1/projects/{entity}/{project}/histograms", tag = "history",
    params(("entity" = String, Path), ("project" = String, Path)), request_body = cairn_types::api::ProjectHistogramsQuery,
    responses((status = 200, description = "A histogram key of several runs, merged per bucket of steps", body = cairn_types::api::ProjectHistograms),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn project_histograms(
    State(state): State<AppState>,
    PathParams((entity, project)): PathParams<(String, String)>,
    JsonBody(query): JsonBody<cairn_types::api::ProjectHistogramsQuery>,
) -> ApiResult<Json<cairn_types::api::ProjectHistograms>> {
    check_bins(query.bins)?;
    let store = store(&state);
    blocking(move || {
        let found = per_run(store.as_ref(), &entity, &project, &query.run_ids, |path| run_histograms(store.as_ref(), path, &query.key, query.buckets, query.bins))?;
        let runs = found
            .into_iter()
            .map(|(run_id, series)| {
                let series = series.unwrap_or_else(|| cairn_types::api::HistogramSeries { key: query.key.clone(), buckets: Vec::new() });
                cairn_types::api::RunHistograms { run_id, series }
            })
            .collect();
        Ok(cairn_types::api::ProjectHistograms { key: query.key, runs })
    })
    .await
    .map(Json)
}

#[utoipa::path(get, path = "/api/v1/runs/{entity}/{project}/{run_id}/console", tag = "history",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path), ConsoleQuery),
    responses((status = 200, body = ConsolePage), (status = 404, body = ErrorBody)))]
pub async fn console(State(state): State<AppState>, PathParams(p): RunParams, QueryParams(query): QueryParams<ConsoleQuery>) -> ApiResult<Json<ConsolePage>> {
    let path = run_path(p)?;
    let store = store(&state);
    blocking(move || store.console(&path, query.from_line.unwrap_or(0), query.limit.unwrap_or(1000))).await.map(Json)
}

#[utoipa::path(get, path = "/api/v1/runs/{entity}/{project}/{run_id}/files", tag = "files",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path)),
    responses((status = 200, body = Vec<FileInfo>), (status = 404, body = ErrorBody)))]
pub async fn list_files(State(state): State<AppState>, PathParams(p): RunParams) -> ApiResult<Json<Vec<FileInfo>>> {
    let path = run_path(p)?;
    let store = store(&state);
    blocking(move || store.list_run_files(&path)).await.map(Json)
}

pub(crate) fn validate_file_path(file_path: &str) -> ApiResult<()> {
    let bad = file_path.is_empty()
        || file_path.len() > 1024
        || file_path.starts_with('/')
        || file_path.split('/').any(|s| s.is_empty() || s == "." || s == "..")
        || file_path.chars().any(|c| c.is_control() || c == '\\');
    if bad {
        return Err(ApiError::new(ErrorCode::InvalidValue, format!("file path {file_path:?} must be relative, without '.', '..', empty segments or backslashes")));
    }
    Ok(())
}

#[utoipa::path(put, path = "/api/v1/runs/{entity}/{project}/{run_id}/files/{file_path}", tag = "files",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path),
        ("file_path" = String, Path, description = "Path of the file in the run, may contain /"), FileLinkQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The content; empty with `sha256`, which names a content uploaded before"),
    responses((status = 200, description = "Stored, streamed to disk and content-addressed", body = FileInfo),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_file(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((entity, project, run_id, file_path)): PathParams<(String, String, String, String)>,
    QueryParams(link): QueryParams<FileLinkQuery>,
    request: Request,
) -> ApiResult<Json<FileInfo>> {
    let path = run_path((entity, project, run_id))?;
    validate_file_path(&file_path)?;
    state.require_run(&path).await?;
    if let Some(sha256) = link.sha256 {
        // A content uploaded before (by this run or any other): only the name is new.
        return Ok(Json(state.link_file(&caller, path, file_path, sha256).await?));
    }
    let tmp_path = receive_file(&state, request).await?;
    Ok(Json(state.store_file(path, file_path, tmp_path).await?))
}

/// A request's body in a local scratch file (written off the async threads, a piece at a time),
/// on its way into the blob store, which may be remote.
pub(crate) async fn receive_file(state: &AppState, request: Request) -> ApiResult<tempfile::TempPath> {
    use std::io::Write;

    let tmp = state.scratch_file().await?;
    let (file, tmp_path) = tmp.into_parts();
    let mut file = Some(file);
    let mut body = request.into_body();
    loop {
        let (bytes, end) = next_piece(&mut body).await;
        if !bytes.is_empty() {
            let mut f = file.take().expect("the file is back after each write");
            file = Some(
                blocking(move || {
                    f.write_all(&bytes).map_err(|e| crate::error::write_failed("the upload", e))?;
                    Ok(f)
                })
                .await?,
            );
        }
        match end {
            Some(Ok(())) => break,
            Some(Err(e)) => return Err(ApiError::new(ErrorCode::InvalidBody, format!("upload ended early: {e}"))),
            None => {}
        }
    }
    drop(file);
    Ok(tmp_path)
}

#[utoipa::path(get, path = "/api/v1/runs/{entity}/{project}/{run_id}/files/{file_path}", tag = "files",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path), ("file_path" = String, Path)),
    responses((status = 200, description = "The file's bytes, streamed", content_type = "application/octet-stream"),
        (status = 404, body = ErrorBody)))]
pub async fn get_file(State(state): State<AppState>, PathParams((entity, project, run_id, file_path)): PathParams<(String, String, String, String)>) -> ApiResult<Response> {
    let path = run_path((entity, project, run_id))?;
    validate_file_path(&file_path)?;
    let store = store(&state);
    let info = blocking(move || store.get_run_file(&path, &file_path)).await?;
    stream_blob(&state, info.sha256, info.size, &info.path).await
}

/// Streams a stored content as a download named after the last segment of `path`, with its
/// length (a browser shows size and progress).
pub(crate) async fn stream_blob(state: &AppState, sha256: String, size: u64, path: &str) -> ApiResult<Response> {
    let store = state.store.clone();
    let reader = blocking(move || store.open_content(&sha256)).await?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        loop {
            let mut buf = vec![0u8; 1 << 16];
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if sender.blocking_send(Ok(buf)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = sender.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    // Fused: the gzip encoder of `CompressionLayer` polls its body once more after the end, and a
    // bare `unfold` panics when polled again after it finished.
    let stream = futures_util::StreamExt::fuse(futures_util::stream::unfold(receiver, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }));
    let file_name = path.rsplit('/').next().unwrap_or("file").replace('"', "");
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file_name}\"")),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

use std::io::Read as _;

/// Sets the body limit for the JSON extractor.
pub async fn with_body_limit(State(state): State<AppState>, mut request: Request, next: axum::middleware::Next) -> Response {
    request.extensions_mut().insert(BodyLimit(state.config.max_body_bytes));
    next.run(request).await
}

/// The body of an upload is handed to the blob store in pieces of about this size.
const UPLOAD_PIECE: usize = 8 << 20;

/// Reads the next piece of a request body: at least [`UPLOAD_PIECE`] bytes unless the body ends
/// first. `end` is `None` while there is more, `Some(Ok)` at the end, and `Some(Err)` when the
/// body broke; the bytes read before a break come back all the same.
async fn next_piece(body: &mut Body) -> (Vec<u8>, Option<Result<(), axum::Error>>) {
    use http_body_util::BodyExt;
    let mut piece = Vec::with_capacity(UPLOAD_PIECE);
    while piece.len() < UPLOAD_PIECE {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    piece.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => return (piece, Some(Err(e))),
            None => return (piece, Some(Ok(()))),
        }
    }
    (piece, None)
}

fn upload_status_of(store: &dyn Store, sha256: &str) -> Result<UploadStatus, CodedError> {
    cairn_store::blob::valid_sha(sha256)?;
    if let Some(size) = store.content_size(sha256)? {
        return Ok(UploadStatus { sha256: sha256.to_owned(), received: size, complete: true });
    }
    let received = store.blobs().upload_received(sha256)?;
    Ok(UploadStatus { sha256: sha256.to_owned(), received, complete: false })
}

#[utoipa::path(get, path = "/api/v1/uploads/{sha256}", tag = "files",
    params(("sha256" = String, Path, description = "SHA-256 of the content, lowercase hex")),
    responses((status = 200, description = "How much of the content the server holds", body = UploadStatus),
        (status = 400, body = ErrorBody)))]
pub async fn upload_status(State(state): State<AppState>, PathParams(sha256): PathParams<String>) -> ApiResult<Json<UploadStatus>> {
    let store = store(&state);
    blocking(move || upload_status_of(store.as_ref(), &sha256)).await.map(Json)
}

#[utoipa::path(put, path = "/api/v1/uploads/{sha256}", tag = "files",
    params(("sha256" = String, Path, description = "SHA-256 of the content, lowercase hex"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The content from byte `offset`, whole or in part: an interrupted upload resumes from what the server holds"),
    responses((status = 200, description = "What the server holds now; `complete` once the content is checked and stored", body = UploadStatus),
        (status = 400, body = ErrorBody), (status = 409, description = "`offset` is not what the server holds, or another upload of the same content is under way", body = ErrorBody)))]
pub async fn upload_part(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(sha256): PathParams<String>,
    QueryParams(query): QueryParams<UploadQuery>,
    request: Request,
) -> ApiResult<Json<UploadStatus>> {
    let store = store(&state);
    let status = {
        let (store, sha256) = (store.clone(), sha256.clone());
        blocking(move || upload_status_of(store.as_ref(), &sha256)).await?
    };
    if status.complete {
        return Ok(Json(status));
    }
    if query.offset > query.size {
        return Err(ApiError::new(ErrorCode::InvalidQuery, format!("offset {} is past the content's size {}", query.offset, query.size)));
    }
    // Shared with the blocking work it covers: a request cancelled by its client (a reset) drops
    // its future at once, but the claim lasts until the append or finish under way is done.
    let claim = state.claim_upload(&sha256).await?;
    let mut renewed = std::time::Instant::now();
    // Read again under the claim: another request may have added to it meanwhile.
    let status = {
        let (store, sha256) = (store.clone(), sha256.clone());
        blocking(move || upload_status_of(store.as_ref(), &sha256)).await?
    };
    if status.complete {
        return Ok(Json(status));
    }
    if status.received != query.offset {
        return Err(cairn_store::blob::offset_error(&sha256, status.received, query.offset).into());
    }
    // The body goes to the blob store a piece at a time; what arrived before a break is kept,
    // and the client resumes from it.
    let mut received = status.received;
    let mut body = request.into_body();
    loop {
        let (bytes, end) = next_piece(&mut body).await;
        if received + bytes.len() as u64 > query.size {
            let (store, key, claim) = (store.clone(), sha256.clone(), claim.clone());
            blocking(move || {
                let _claim = claim;
                store.blobs().upload_discard(&key)
            })
            .await?;
            return Err(ApiError::new(ErrorCode::InvalidBody, format!("the upload of {sha256} is longer than its size {}", query.size)));
        }
        if !bytes.is_empty() {
            let renew = renewed.elapsed() >= crate::service::UPLOAD_RENEW;
            let (store, key, at, claim) = (store.clone(), sha256.clone(), received, claim.clone());
            received = blocking(move || {
                if renew && !claim.renew()? {
                    return Err(CodedError::new(ErrorCode::UploadInProgress, format!("the claim on the upload of {key} lapsed; retry")));
                }
                store.blobs().upload_append(&key, at, &bytes)
            })
            .await?;
            if renew {
                renewed = std::time::Instant::now();
            }
        }
        match end {
            Some(Ok(())) => break,
            Some(Err(e)) => return Err(ApiError::new(ErrorCode::InvalidBody, format!("the upload of {sha256} ended early: {e}"))),
            None => {}
        }
    }
    if received < query.size {
        return Ok(Json(UploadStatus { sha256, received, complete: false }));
    }
    let actor = caller.actor().to_owned();
    blocking(move || {
        // Checked before it is stored: a content that is not what it claims is dropped whole,
        // and nothing of it stays in the store.
        let _claim = claim;
        let blob = store.blobs().upload_finish(&sha256)?;
        // Whoever sent the bytes has them: they may name the content in their runs.
        store.try_lease(&crate::service::upload_grant(&sha256, &actor), &actor, cairn_types::Timestamp::now(), crate::service::UPLOAD_GRANT)?;
        Ok(UploadStatus { sha256, received: blob.size, complete: true })
    })
    .await
    .map(Json)
}

#[utoipa::path(post, path = "/api/v1/uploads/batch", tag = "files",
    request_body(content = Vec<u8>, content_type = "application/x-cairn-contents",
        description = "Contents whole, each framed as its SHA-256 (64 hex bytes), its size (8 bytes, little endian) and its bytes"),
    responses((status = 200, description = "Which contents were new and which the server held; each is checked against its SHA-256", body = cairn_types::api::UploadBatchResult),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn upload_batch(State(state): State<AppState>, caller: Caller, request: Request) -> ApiResult<Json<cairn_types::api::UploadBatchResult>> {
    let body = framed_body(&state, request).await?;
    let (store, actor, scratch) = (store(&state), caller.actor().to_owned(), state.store.blobs().scratch_dir());
    let result = blocking(move || {
        use sha2::Digest as _;
        let contents = cairn_types::api::decode_upload_batch(&body)?;
        let mut result = cairn_types::api::UploadBatchResult::default();
        for (sha, bytes) in contents {
            let got: String = sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
            if got != sha {
                return Err(CodedError::new(ErrorCode::ContentMismatch, format!("a content of the batch claims SHA-256 {sha} but has {got}; nothing after it was stored")));
            }
            if store.blobs().exists(&sha)? {
                result.present.push(sha);
                continue;
            }
            let tmp = match &scratch {
                Some(dir) => tempfile::NamedTempFile::new_in(dir),
                None => tempfile::NamedTempFile::new(),
            }
            .map_err(|e| crate::error::write_failed("a scratch file", e))?;
            std::fs::write(tmp.path(), bytes).map_err(|e| crate::error::write_failed("the upload", e))?;
            store.blobs().put_hashed(tmp.path(), cairn_store::blob::BlobRef { sha256: sha.clone(), size: bytes.len() as u64 })?;
            result.stored.push(sha);
        }
        // Whoever sent the bytes has them: they may name the contents in their runs and artifacts.
        let grants: Vec<String> = result.stored.iter().chain(&result.present).map(|sha| crate::service::upload_grant(sha, &actor)).collect();
        store.try_leases(&grants, &actor, cairn_types::Timestamp::now(), crate::service::UPLOAD_GRANT)?;
        Ok(result)
    })
    .await?;
    Ok(Json(result))
}

#[utoipa::path(post, path = "/api/v1/chunks", tag = "files",
    request_body(content = Vec<u8>, content_type = "application/x-cairn-contents",
        description = "Chunks of contents to compose later, framed as for `/api/v1/uploads/batch`"),
    responses((status = 200, description = "Which chunks were new and which the server held; each is checked against its SHA-256", body = cairn_types::api::UploadBatchResult),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn upload_chunks(State(state): State<AppState>, request: Request) -> ApiResult<Json<cairn_types::api::UploadBatchResult>> {
    let body = framed_body(&state, request).await?;
    let store = store(&state);
    // A chunk is no content of anyone's until a compose checks the whole it belongs to: nothing
    // is granted.
    blocking(move || store.store_chunks(&cairn_types::api::decode_upload_batch(&body)?)).await.map(Json)
}

/// The body of a request of framed contents.
async fn framed_body(state: &AppState, request: Request) -> ApiResult<axum::body::Bytes> {
    let (headers, body) = read_body(request, state.config.max_body_bytes).await?;
    let ct = content_type(&headers);
    if ct != cairn_types::api::UPLOAD_BATCH_CONTENT_TYPE {
        return Err(ApiError::new(ErrorCode::UnsupportedMediaType, format!("content type {ct:?} is not supported here; send {}", cairn_types::api::UPLOAD_BATCH_CONTENT_TYPE)));
    }
    Ok(body)
}

#[utoipa::path(post, path = "/api/v1/chunks/missing", tag = "files",
    request_body = cairn_types::api::ChunkList,
    responses((status = 200, description = "The chunks of the list that the server does not hold, each once", body = cairn_types::api::ChunkList),
        (status = 400, body = ErrorBody)))]
pub async fn missing_chunks(State(state): State<AppState>, caller: Caller, JsonBody(list): JsonBody<cairn_types::api::ChunkList>) -> ApiResult<Json<cairn_types::api::ChunkList>> {
    let store = store(&state);
    let (readable, actor) = (caller.readable_entities(), caller.actor().to_owned());
    blocking(move || {
        // The version before, held whole and the caller's to read: cut into chunks as a client
        // would, so that the chunks it shares with this one count as held.
        if let Some(base) = &list.base
            && crate::service::may_name(store.as_ref(), base, readable.as_deref(), &actor)?
            && let Err(e) = store.index_chunks(base)
        {
            tracing::warn!("content {base} stays without chunks: {}", e.message);
        }
        store.missing_chunks(&list.chunks)
    })
    .await
    .map(|chunks| Json(cairn_types::api::ChunkList { chunks, base: None }))
}

#[utoipa::path(post, path = "/api/v1/uploads/{sha256}/compose", tag = "files",
    params(("sha256" = String, Path, description = "SHA-256 of the content, lowercase hex")),
    request_body = cairn_types::api::ComposeContent,
    responses((status = 200, description = "The content is stored as the chunks, checked against its SHA-256", body = UploadStatus),
        (status = 400, body = ErrorBody), (status = 409, description = "Chunks are missing (`chunks_missing`), or another upload of the content is under way", body = ErrorBody)))]
pub async fn compose(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(sha256): PathParams<String>,
    JsonBody(request): JsonBody<cairn_types::api::ComposeContent>,
) -> ApiResult<Json<UploadStatus>> {
    cairn_store::blob::valid_sha(&sha256)?;
    let claim = state.claim_upload(&sha256).await?;
    let (store, actor) = (store(&state), caller.actor().to_owned());
    blocking(move || {
        let _claim = claim;
        let blob = store.compose_content(&sha256, request.size, &request.chunks, cairn_types::Timestamp::now())?;
        // The caller had every chunk, so they have the content: they may name it.
        store.try_lease(&crate::service::upload_grant(&sha256, &actor), &actor, cairn_types::Timestamp::now(), crate::service::UPLOAD_GRANT)?;
        Ok(UploadStatus { sha256, received: blob.size, complete: true })
    })
    .await
    .map(Json)
}
