//! REST handlers for artifacts: committing versions, reading collections, versions, manifests,
//! files and lineage, aliases, deletion, and the artifacts a run used and logged.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use cairn_types::RunPath;
use cairn_types::artifacts::{ArtifactInfo, ArtifactLineage, ArtifactRef, CollectionInfo, CommitArtifact, ManifestEntry, RunArtifacts, SetAliases, UseArtifact};
use cairn_types::error::{ErrorBody, ErrorCode};

use crate::AppState;
use crate::auth::{Caller, Need};
use crate::error::{ApiError, ApiResult, JsonBody, PathParams, QueryParams};
use crate::service::blocking;

type Project = PathParams<(String, String)>;
type Version = PathParams<(String, String, String, String)>;

#[utoipa::path(post, path = "/api/v1/projects/{entity}/{project}/artifacts", tag = "artifacts",
    params(("entity" = String, Path), ("project" = String, Path)), request_body = CommitArtifact,
    responses((status = 200, description = "The version: new, or the one with the same manifest digest (the aliases move to it)", body = ArtifactInfo),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, description = "A stored entry's content is not uploaded", body = ErrorBody)))]
pub async fn commit(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((entity, project)): Project,
    JsonBody(request): JsonBody<CommitArtifact>,
) -> ApiResult<Json<ArtifactInfo>> {
    Ok(Json(state.commit_artifact(&caller, entity, project, request).await?))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CollectionsQuery {
    /// Only collections of this type (`dataset`, `model`, …).
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/projects/{entity}/{project}/artifacts", tag = "artifacts",
    params(("entity" = String, Path), ("project" = String, Path), CollectionsQuery),
    responses((status = 200, description = "The project's collections, by type and name", body = Vec<CollectionInfo>), (status = 404, body = ErrorBody)))]
pub async fn collections(
    State(state): State<AppState>,
    PathParams((entity, project)): Project,
    QueryParams(query): QueryParams<CollectionsQuery>,
) -> ApiResult<Json<Vec<CollectionInfo>>> {
    let store = state.store.clone();
    Ok(Json(blocking(move || store.list_collections(&entity, &project, query.kind.as_deref())).await?))
}

#[utoipa::path(get, path = "/api/v1/projects/{entity}/{project}/artifact-types", tag = "artifacts",
    params(("entity" = String, Path), ("project" = String, Path)),
    responses((status = 200, description = "The types of the project's artifacts", body = Vec<String>), (status = 404, body = ErrorBody)))]
pub async fn types(State(state): State<AppState>, PathParams((entity, project)): Project) -> ApiResult<Json<Vec<String>>> {
    let store = state.store.clone();
    Ok(Json(blocking(move || store.artifact_types(&entity, &project)).await?))
}

#[utoipa::path(get, path = "/api/v1/artifacts/{entity}/{project}/{name}", tag = "artifacts",
    params(("entity" = String, Path), ("project" = String, Path), ("name" = String, Path)),
    responses((status = 200, description = "The collection's versions, newest first", body = Vec<ArtifactInfo>), (status = 404, body = ErrorBody)))]
pub async fn versions(State(state): State<AppState>, PathParams((entity, project, name)): PathParams<(String, String, String)>) -> ApiResult<Json<Vec<ArtifactInfo>>> {
    let store = state.store.clone();
    Ok(Json(blocking(move || store.list_artifact_versions(&entity, &project, &name)).await?))
}

#[utoipa::path(get, path = "/api/v1/artifacts/{entity}/{project}/{name}/{version}", tag = "artifacts",
    params(("entity" = String, Path), ("project" = String, Path), ("name" = String, Path), ("version" = String, Path, description = "vN or an alias")),
    responses((status = 200, body = ArtifactInfo), (status = 404, body = ErrorBody)))]
pub async fn version(State(state): State<AppState>, PathParams((entity, project, name, version)): Version) -> ApiResult<Json<ArtifactInfo>> {
    let store = state.store.clone();
    Ok(Json(blocking(move || store.get_artifact(&entity, &project, &name, &version)).await?))
}

#[utoipa::path(get, path = "/api/v1/artifacts/{entity}/{project}/{name}/{version}/manifest", tag = "artifacts",
    params(("entity" = String, Path), ("project" = String, Path), ("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, description = "The version's entries, by path", body = Vec<ManifestEntry>), (status = 404, body = ErrorBody)))]
pub async fn manifest(State(state): State<AppState>, PathParams((entity, project, name, version)): Version) -> ApiResult<Json<Vec<ManifestEntry>>> {
    let store = state.store.clone();
    Ok(Json(blocking(move || store.artifact_manifest(&entity, &project, &name, &version)).await?))
}

#[utoipa::path(get, path = "/api/v1/artifacts/{entity}/{project}/{name}/{version}/lineage", tag = "artifacts",
    params(("entity" = String, Path), ("project" = String, Path), ("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, description = "The run that logged it and the runs that used it", body = ArtifactLineage), (status = 404, body = ErrorBody)))]
pub async fn lineage(State(state): State<AppState>, caller: Caller, PathParams((entity, project, name, version)): Version) -> ApiResult<Json<ArtifactLineage>> {
    let store = state.store.clone();
    let mut lineage = blocking(move || store.artifact_lineage(&entity, &project, &name, &version)).await?;
    // Runs of other entities that used it are listed only for those who may read them.
    let mut readable = Vec::new();
    for run in lineage.used_by {
        if let Ok(path) = RunPath::parse(&run)
            && state.can_read(&caller, &path.entity, &path.project).await
        {
            readable.push(run);
        }
    }
    lineage.used_by = readable;
    Ok(Json(lineage))
}

#[utoipa::path(get, path = "/api/v1/artifacts/{entity}/{project}/{name}/{version}/files/{file_path}", tag = "artifacts",
    params(("entity" = String, Path), ("project" = String, Path), ("name" = String, Path), ("version" = String, Path), ("file_path" = String, Path)),
    responses((status = 200, description = "The file's bytes, streamed", content_type = "application/octet-stream"),
        (status = 400, description = "The entry is a reference: its bytes are where it points", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn file(
    State(state): State<AppState>,
    PathParams((entity, project, name, version, file_path)): PathParams<(String, String, String, String, String)>,
) -> ApiResult<Response> {
    crate::api::validate_file_path(&file_path)?;
    let store = state.store.clone();
    let wanted = file_path.clone();
    let entry = blocking(move || store.artifact_entry(&entity, &project, &name, &version, &wanted)).await?;
    if let Some(uri) = &entry.reference {
        return Err(ApiError::new(ErrorCode::InvalidValue, format!("{file_path:?} is a reference to {uri}: its bytes are there")));
    }
    crate::api::stream_blob(&state, entry.digest, entry.size, &entry.path).await
}

#[utoipa::path(put, path = "/api/v1/artifacts/{entity}/{project}/{name}/{version}/aliases", tag = "artifacts",
    params(("entity" = String, Path), ("project" = String, Path), ("name" = String, Path), ("version" = String, Path)), request_body = SetAliases,
    responses((status = 200, description = "The version with exactly these aliases (each taken from the version that had it)", body = ArtifactInfo),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_aliases(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((entity, project, name, version)): Version,
    JsonBody(request): JsonBody<SetAliases>,
) -> ApiResult<Json<ArtifactInfo>> {
    Ok(Json(state.set_artifact_aliases(&caller, entity, project, name, version, request.aliases).await?))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Delete a version that has aliases too (they go with it).
    #[serde(default)]
    pub delete_aliases: bool,
}

#[utoipa::path(delete, path = "/api/v1/artifacts/{entity}/{project}/{name}/{version}", tag = "artifacts",
    params(("entity" = String, Path), ("project" = String, Path), ("name" = String, Path), ("version" = String, Path), DeleteQuery),
    responses((status = 204, description = "Deleted; its contents that nothing else names are removed"),
        (status = 400, description = "It has aliases (delete_aliases=true deletes them too)", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((entity, project, name, version)): Version,
    QueryParams(query): QueryParams<DeleteQuery>,
) -> ApiResult<StatusCode> {
    state.delete_artifact(&caller, entity, project, name, version, query.delete_aliases).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/runs/{entity}/{project}/{run_id}/artifacts/used", tag = "artifacts",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path)), request_body = UseArtifact,
    responses((status = 200, description = "The version the run uses (an input of the run)", body = ArtifactInfo),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn use_artifact(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((entity, project, run_id)): PathParams<(String, String, String)>,
    JsonBody(request): JsonBody<UseArtifact>,
) -> ApiResult<Json<ArtifactInfo>> {
    let run = RunPath { entity, project, run_id };
    run.validate()?;
    let artifact = ArtifactRef::parse(&request.artifact)?;
    // The artifact may be another project's, or another entity's: the caller must read it.
    let (e, p) = (artifact.entity.clone().unwrap_or_else(|| run.entity.clone()), artifact.project.clone().unwrap_or_else(|| run.project.clone()));
    state.authorize(&caller, &e, Some(&p), Need::Read).await?;
    let store = state.store.clone();
    Ok(Json(blocking(move || store.use_artifact(&run, &artifact)).await?))
}

#[utoipa::path(get, path = "/api/v1/runs/{entity}/{project}/{run_id}/artifacts", tag = "artifacts",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path)),
    responses((status = 200, description = "The versions the run used and logged", body = RunArtifacts), (status = 404, body = ErrorBody)))]
pub async fn run_artifacts(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((entity, project, run_id)): PathParams<(String, String, String)>,
) -> ApiResult<Json<RunArtifacts>> {
    let run = RunPath { entity, project, run_id };
    run.validate()?;
    let store = state.store.clone();
    let found = blocking(move || store.run_artifacts(&run)).await?;
    // Inputs from projects the caller cannot read are left out.
    let mut inputs = Vec::new();
    for a in found.inputs {
        if state.can_read(&caller, &a.entity, &a.project).await {
            inputs.push(a);
        }
    }
    Ok(Json(RunArtifacts { inputs, outputs: found.outputs }))
}
