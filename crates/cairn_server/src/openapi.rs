//! The OpenAPI document, generated from the handlers and types.

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::OpenApi;

use crate::api;

#[derive(OpenApi)]
#[openapi(
    info(title = "cairn", description = "Experiment tracking: runs, history, series, files."),
    paths(
        api::info, api::list_entities, api::get_entity, api::list_projects, api::get_project,
        api::list_runs, api::search_runs, api::upsert_run, api::get_run, api::update_run, api::delete_run, api::purge_run, api::move_runs, api::list_alerts, api::list_forks,
        api::ingest, api::heartbeat, api::finish_run, api::stop_run, api::list_keys, api::history,
        api::series, api::console, api::list_files, api::put_file, api::get_file, api::upload_status, api::upload_part,
        api::group_runs, api::project_columns, api::project_keys, api::project_series, crate::events::stream,
    ),
    tags(
        (name = "entities", description = "Users and teams"),
        (name = "projects"),
        (name = "runs", description = "Create, read, search, edit and delete runs"),
        (name = "ingest", description = "Batches of records, addressed by offset per stream: sending one twice stores nothing twice"),
        (name = "lifecycle", description = "Heartbeats, finish and stop"),
        (name = "history", description = "History, bucketed series, console output"),
        (name = "files"),
        (name = "server"),
    )
)]
struct ApiDoc;

pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serializes")
}

pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json())
}
