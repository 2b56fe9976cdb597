//! The OpenAPI document, generated from the handlers and types.

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::OpenApi;

use crate::{account_api, api, artifact_api, sweep_api};

#[derive(OpenApi)]
#[openapi(
    info(title = "cairn", description = "Experiment tracking: runs, history, series, files."),
    paths(
        api::info, api::list_entities, api::get_entity, api::list_projects, api::get_project,
        api::list_runs, api::search_runs, api::upsert_run, api::get_run, api::update_run, api::delete_run, api::purge_run, api::move_runs, api::list_alerts, api::list_forks,
        api::ingest, api::heartbeat, api::finish_run, api::stop_run, api::list_keys, api::history,
        api::series, api::histograms, api::console, api::list_files, api::put_file, api::get_file, api::upload_status, api::upload_part, api::upload_batch, api::upload_chunks, api::missing_chunks, api::compose,
        api::group_runs, api::project_columns, api::project_keys, api::project_series, api::project_values, api::project_histograms, crate::events::stream,
        account_api::viewer, account_api::setup_state, account_api::setup, account_api::create_session, account_api::end_session,
        account_api::list_keys, account_api::create_key, account_api::revoke_key, account_api::list_accounts, account_api::create_user,
        account_api::create_team, account_api::list_members, account_api::set_member, account_api::remove_member,
        account_api::audit, account_api::update_project, account_api::get_workspace, account_api::put_workspace, account_api::reset_workspace,
        artifact_api::commit, artifact_api::collections, artifact_api::types, artifact_api::versions, artifact_api::version,
        artifact_api::delete, artifact_api::manifest, artifact_api::lineage, artifact_api::file, artifact_api::set_aliases,
        artifact_api::run_artifacts, artifact_api::use_artifact,
        sweep_api::create, sweep_api::list, sweep_api::get, sweep_api::update, sweep_api::next, sweep_api::trials, sweep_api::decisions, sweep_api::import_trial, crate::wandb::graphql::graphql, crate::wandb::filestream::file_stream, crate::wandb::uploads::upload, crate::wandb::artifacts::manifest, crate::wandb::artifacts::file,
    ),
    modifiers(&Security, &Errors),
    tags(
        (name = "entities", description = "Users and teams"),
        (name = "projects"),
        (name = "runs", description = "Create, read, search, edit and delete runs"),
        (name = "ingest", description = "Batches of records, addressed by offset per stream: sending one twice stores nothing twice"),
        (name = "lifecycle", description = "Heartbeats, finish and stop"),
        (name = "history", description = "History, bucketed series, console output"),
        (name = "files"),
        (name = "server"),
        (name = "accounts", description = "Signing in, API keys, teams and roles, the audit log"),
        (name = "artifacts", description = "Versioned datasets and models: collections, versions, aliases, manifests, lineage"),
        (name = "sweeps", description = "Hyperparameter searches: each trial is a run an agent asks the server's controller for"),
        (name = "wandb", description = "The official wandb client's protocol (GraphQL and file_stream), for W&B code logging to cairn unchanged"),
    )
)]
struct ApiDoc;

/// Credentials: an API key as a bearer token (or as the password of Basic), or the session
/// cookie of a signed-in browser.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("api_key", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
        components.add_security_scheme("session", SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::SESSION_COOKIE))));
    }
}

/// Every answer that is not a success is an [`cairn_types::ErrorBody`] (its code and message),
/// whatever the status: each operation documents it as its `default` response, beside the
/// statuses it lists.
struct Errors;

impl utoipa::Modify for Errors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::Ref;
        use utoipa::openapi::{ContentBuilder, ResponseBuilder};
        let error = ResponseBuilder::new()
            .description("An error: its code (the error-code table) and a message that names what was wrong")
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.head, &mut item.options, &mut item.trace];
            for operation in operations.into_iter().flatten() {
                operation.responses.responses.entry("default".to_owned()).or_insert_with(|| error.clone().into());
            }
        }
    }
}

pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serializes")
}

pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json())
}
