//! cairn's HTTP server: the REST API (ingest, queries, lifecycle), its OpenAPI document, the crash
//! monitor, and the web UI. The server keeps no state of its own beyond the store, so any number of
//! instances can serve one PostgreSQL store.

pub mod alerts;
pub mod api;
pub mod error;
pub mod events;
mod openapi;
pub mod service;
pub mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cairn_store::Store;
use cairn_types::{RunPath, Timestamp};
use cairn_types::error::{CodedError, ErrorCode};
use tokio::net::TcpListener;

use crate::error::ApiError;
pub use openapi::openapi_json;

/// How the server behaves; the `cairn server` flags fill it in.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where runs that name no entity go.
    pub default_entity: String,
    /// A running run without a heartbeat for this long is marked crashed.
    pub heartbeat_timeout: Duration,
    /// How often the crash monitor looks.
    pub monitor_interval: Duration,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// A deleted run is purged (and its id free again) this long after its deletion.
    pub deleted_retention: Duration,
    /// Where run alerts are delivered.
    pub alerts: alerts::AlertTargets,
    /// How often alerts waiting for delivery are looked for.
    pub alert_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            default_entity: "default".into(),
            heartbeat_timeout: Duration::from_secs(60),
            monitor_interval: Duration::from_secs(10),
            max_body_bytes: 256 << 20,
            deleted_retention: Duration::from_secs(30 * 24 * 3600),
            alerts: alerts::AlertTargets::default(),
            alert_interval: Duration::from_millis(500),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<ServerConfig>,
    /// Changes to runs, for the live events stream (of every server on the store).
    pub events: events::Hub,
    /// This server among those on one store: the holder of its leases.
    pub instance: String,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, config: ServerConfig) -> AppState {
        let events = events::Hub::new(store.notices());
        AppState { store, config: Arc::new(config), events, instance: instance_id() }
    }
}

/// A name for this process that no other server on the store has: host, process and a random part.
fn instance_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{}-{:x}", if host.is_empty() { "cairn" } else { &host }, std::process::id(), nanos & 0xffff_ffff)
}

/// The whole application: API, OpenAPI document and UI.
pub fn router(state: AppState) -> Router {
    use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate as _};
    let run = "/api/v1/runs/{entity}/{project}/{run_id}";
    let api = Router::new()
        .route("/api/v1/info", get(api::info))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .route("/api/v1/entities", get(api::list_entities))
        .route("/api/v1/entities/{entity}", get(api::get_entity))
        .route("/api/v1/entities/{entity}/projects", get(api::list_projects))
        .route("/api/v1/projects/{entity}/{project}", get(api::get_project))
        .route("/api/v1/projects/{entity}/{project}/runs", get(api::list_runs))
        .route("/api/v1/projects/{entity}/{project}/runs/search", post(api::search_runs))
        .route("/api/v1/projects/{entity}/{project}/runs/groups", post(api::group_runs))
        .route("/api/v1/projects/{entity}/{project}/columns", get(api::project_columns))
        .route("/api/v1/projects/{entity}/{project}/keys", get(api::project_keys))
        .route("/api/v1/projects/{entity}/{project}/series", post(api::project_series))
        .route("/api/v1/events", get(events::stream))
        .route("/api/v1/uploads/{sha256}", get(api::upload_status).put(api::upload_part))
        .route("/api/v1/runs", post(api::upsert_run))
        .route("/api/v1/runs/move", post(api::move_runs))
        .route(run, get(api::get_run).patch(api::update_run).delete(api::delete_run))
        .route(&format!("{run}/ingest"), post(api::ingest))
        .route(&format!("{run}/heartbeat"), post(api::heartbeat))
        .route(&format!("{run}/finish"), post(api::finish_run))
        .route(&format!("{run}/stop"), post(api::stop_run))
        .route(&format!("{run}/purge"), post(api::purge_run))
        .route(&format!("{run}/alerts"), get(api::list_alerts))
        .route(&format!("{run}/forks"), get(api::list_forks))
        .route(&format!("{run}/keys"), get(api::list_keys))
        .route(&format!("{run}/history"), get(api::history))
        .route(&format!("{run}/series"), get(api::series))
        .route(&format!("{run}/console"), get(api::console))
        .route(&format!("{run}/files"), get(api::list_files))
        .route(&format!("{run}/files/{{*file_path}}"), get(api::get_file).put(api::put_file))
        .route("/api/v1", get(api_not_found))
        .route("/api/v1/{*rest}", axum::routing::any(api_not_found))
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .merge(api)
        .fallback(ui::serve)
        // Answers are gzipped for clients that ask (browsers): the UI's assets and JSON series.
        // Server-sent events, small answers and file downloads are left as they are: a
        // download keeps its Content-Length (a browser shows its size and progress), and
        // checkpoints do not compress anyway.
        // The fastest level: on a local network, a slower level costs more than it saves.
        .layer(
            tower_http::compression::CompressionLayer::new()
                .gzip(true)
                .quality(tower_http::CompressionLevel::Fastest)
                .compress_when(DefaultPredicate::new().and(NotForContentType::const_new("application/octet-stream"))),
        )
        .layer(axum::middleware::from_fn_with_state(state.clone(), api::with_body_limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic))
        .with_state(state)
}

async fn api_not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::RouteNotFound, format!("no API route {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, format!("{method} is not allowed on {}", uri.path()))
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    let body = cairn_types::ErrorBody::new(ErrorCode::Internal, "internal error while handling the request (a bug)");
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
}

/// Marks runs without a recent heartbeat as crashed, every `monitor_interval`.
pub async fn crash_monitor(state: AppState) {
    let config = state.config.clone();
    let mut ticker = tokio::time::interval(config.monitor_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One server among several does this at a time: the one holding the lease, which it renews
    // at every tick; when it stops, another takes over once the lease lapses.
    let lease = config.monitor_interval.saturating_mul(3).max(Duration::from_secs(5));
    loop {
        ticker.tick().await;
        let (store, holder) = (state.store.clone(), state.instance.clone());
        match tokio::task::spawn_blocking(move || store.try_lease("monitor", &holder, Timestamp::now(), lease)).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => continue,
            Ok(Err(e)) => {
                tracing::warn!("crash monitor: {}", e.message);
                continue;
            }
            Err(_) => continue,
        }
        let store = state.store.clone();
        let timeout = config.heartbeat_timeout;
        let deadline = Timestamp(Timestamp::now().micros() - timeout.as_micros() as i64);
        match tokio::task::spawn_blocking(move || store.mark_crashed(deadline)).await {
            Ok(Ok(crashed)) => {
                for path in crashed {
                    tracing::info!("run {path} sent no heartbeat for {}s: marked crashed", timeout.as_secs());
                    events::publish(&state, "crashed", &path, Some(cairn_types::api::RunState::Crashed), None);
                }
            }
            Ok(Err(e)) => tracing::warn!("crash monitor: {}", e.message),
            Err(_) => tracing::warn!("crash monitor task failed"),
        }
        purge_expired(&state).await;
    }
}

/// Purges the runs whose retention window after deletion has passed.
async fn purge_expired(state: &AppState) {
    let store = state.store.clone();
    let retention = state.config.deleted_retention;
    let deadline = Timestamp(Timestamp::now().micros().saturating_sub(retention.as_micros().min(i64::MAX as u128) as i64));
    let result = tokio::task::spawn_blocking(move || -> Result<Vec<RunPath>, CodedError> {
        // Contents a purge left behind (its server stopped before removing them).
        if let Err(e) = store.collect_blobs(None) {
            tracing::warn!("collecting unnamed contents: {}", e.message);
        }
        let mut purged = Vec::new();
        for path in store.deleted_before(deadline)? {
            match service::purge(store.as_ref(), &path) {
                Ok(()) => purged.push(path),
                // Purged meanwhile (by a server that held the lease before this one).
                Err(e) if e.code == ErrorCode::RunNotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(purged)
    })
    .await;
    match result {
        Ok(Ok(purged)) => {
            for path in purged {
                tracing::info!("run {path} was deleted {} days ago: purged", retention.as_secs() / 86_400);
            }
        }
        Ok(Err(e)) => tracing::warn!("purging deleted runs: {}", e.message),
        Err(_) => tracing::warn!("the purge task failed"),
    }
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish and closes the store, so
/// that every batch that was acknowledged is committed.
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn Store>,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = AppState::new(store.clone(), config);
    let state_instance = state.instance.clone();
    let monitor = tokio::spawn(crash_monitor(state.clone()));
    let delivery = tokio::spawn(alerts::delivery_loop(state.clone(), state.config.alert_interval));
    let app = router(state);
    let result = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await;
    monitor.abort();
    delivery.abort();
    let (leases, holder) = (store.clone(), state_instance);
    tokio::task::spawn_blocking(move || leases.release("monitor", &holder)).await.ok();
    tokio::task::spawn_blocking(move || store.close()).await.ok();
    result
}
