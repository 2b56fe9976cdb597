//! Sweeps over REST: create and list them, read one and its trials, pause, resume, stop or cancel
//! it, and the agents' `next` (the controller runs in the store, under the sweep's lock).

use axum::Json;
use axum::extract::State;
use cairn_types::Timestamp;
use cairn_types::error::ErrorBody;
use cairn_types::sweep::{BracketDecision, CreateSweep, ImportTrial, NextTrial, NextTrialRequest, SweepInfo, SweepPatch, SweepState, TrialInfo};

use crate::AppState;
use crate::error::{ApiResult, JsonBody, PathParams};
use crate::service::blocking;

type SweepParams = PathParams<(String, String, String)>;

#[utoipa::path(post, path = "/api/v1/projects/{entity}/{project}/sweeps", tag = "sweeps",
    params(("entity" = String, Path), ("project" = String, Path)), request_body = CreateSweep,
    responses((status = 200, body = SweepInfo), (status = 400, description = "The configuration cannot run: the message names the parameter and the problem", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    PathParams((entity, project)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<CreateSweep>,
) -> ApiResult<Json<SweepInfo>> {
    let store = state.store.clone();
    blocking(move || store.create_sweep(&entity, &project, &body.config, Timestamp::now())).await.map(Json).map_err(Into::into)
}

#[utoipa::path(get, path = "/api/v1/projects/{entity}/{project}/sweeps", tag = "sweeps",
    params(("entity" = String, Path), ("project" = String, Path)),
    responses((status = 200, description = "The project's sweeps, newest first", body = Vec<SweepInfo>), (status = 404, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>, PathParams((entity, project)): PathParams<(String, String)>) -> ApiResult<Json<Vec<SweepInfo>>> {
    let store = state.store.clone();
    blocking(move || store.list_sweeps(&entity, &project, Timestamp::now())).await.map(Json).map_err(Into::into)
}

#[utoipa::path(get, path = "/api/v1/sweeps/{entity}/{project}/{sweep_id}", tag = "sweeps",
    params(("entity" = String, Path), ("project" = String, Path), ("sweep_id" = String, Path)),
    responses((status = 200, body = SweepInfo), (status = 404, body = ErrorBody)))]
pub async fn get(State(state): State<AppState>, PathParams((entity, project, id)): SweepParams) -> ApiResult<Json<SweepInfo>> {
    let store = state.store.clone();
    blocking(move || store.get_sweep(&entity, &project, &id, Timestamp::now())).await.map(Json).map_err(Into::into)
}

#[utoipa::path(patch, path = "/api/v1/sweeps/{entity}/{project}/{sweep_id}", tag = "sweeps",
    params(("entity" = String, Path), ("project" = String, Path), ("sweep_id" = String, Path)), request_body = SweepPatch,
    responses((status = 200, body = SweepInfo), (status = 404, body = ErrorBody), (status = 409, description = "The sweep is over", body = ErrorBody)))]
pub async fn update(State(state): State<AppState>, PathParams((entity, project, id)): SweepParams, JsonBody(patch): JsonBody<SweepPatch>) -> ApiResult<Json<SweepInfo>> {
    let store = state.store.clone();
    let (e, p) = (entity.clone(), project.clone());
    let (info, to_stop) = blocking(move || store.set_sweep_state(&e, &p, &id, patch.state, Timestamp::now())).await?;
    // Canceled: its running trials are stopped (they end as killed at their next heartbeat).
    if info.state == SweepState::Canceled {
        for run_id in to_stop {
            let _ = state.stop_run(cairn_types::RunPath::new(&entity, &project, run_id.as_str())).await;
        }
    }
    Ok(Json(info))
}

#[utoipa::path(post, path = "/api/v1/sweeps/{entity}/{project}/{sweep_id}/next", tag = "sweeps",
    params(("entity" = String, Path), ("project" = String, Path), ("sweep_id" = String, Path)), request_body = NextTrialRequest,
    responses((status = 200, description = "A trial to run, a wait, or stop", body = NextTrial), (status = 404, body = ErrorBody)))]
pub async fn next(State(state): State<AppState>, PathParams((entity, project, id)): SweepParams, JsonBody(request): JsonBody<NextTrialRequest>) -> ApiResult<Json<NextTrial>> {
    let store = state.store.clone();
    blocking(move || store.next_trial(&entity, &project, &id, &request, Timestamp::now())).await.map(Json).map_err(Into::into)
}

#[utoipa::path(get, path = "/api/v1/sweeps/{entity}/{project}/{sweep_id}/trials", tag = "sweeps",
    params(("entity" = String, Path), ("project" = String, Path), ("sweep_id" = String, Path)),
    responses((status = 200, description = "The trials, in the order they were handed out", body = Vec<TrialInfo>), (status = 404, body = ErrorBody)))]
pub async fn trials(State(state): State<AppState>, PathParams((entity, project, id)): SweepParams) -> ApiResult<Json<Vec<TrialInfo>>> {
    let store = state.store.clone();
    blocking(move || store.sweep_trials(&entity, &project, &id, Timestamp::now())).await.map(Json).map_err(Into::into)
}

#[utoipa::path(get, path = "/api/v1/sweeps/{entity}/{project}/{sweep_id}/decisions", tag = "sweeps",
    params(("entity" = String, Path), ("project" = String, Path), ("sweep_id" = String, Path)),
    responses((status = 200, description = "Hyperband's judgements of the trials at each bracket, oldest first", body = Vec<BracketDecision>), (status = 404, body = ErrorBody)))]
pub async fn decisions(State(state): State<AppState>, PathParams((entity, project, id)): SweepParams) -> ApiResult<Json<Vec<BracketDecision>>> {
    let store = state.store.clone();
    blocking(move || store.sweep_decisions(&entity, &project, &id)).await.map(Json).map_err(Into::into)
}

#[utoipa::path(post, path = "/api/v1/sweeps/{entity}/{project}/{sweep_id}/trials", tag = "sweeps",
    params(("entity" = String, Path), ("project" = String, Path), ("sweep_id" = String, Path)), request_body = ImportTrial,
    responses((status = 200, description = "The trial of a local sweep is recorded (again: nothing changes); the sweep is made when new", body = SweepInfo),
        (status = 400, description = "The configuration cannot run, or the sweep exists with another one", body = ErrorBody)))]
pub async fn import_trial(State(state): State<AppState>, PathParams((entity, project, id)): SweepParams, JsonBody(trial): JsonBody<ImportTrial>) -> ApiResult<Json<SweepInfo>> {
    let store = state.store.clone();
    blocking(move || store.import_trial(&entity, &project, &id, &trial, Timestamp::now())).await.map(Json).map_err(Into::into)
}
