//! cairn's HTTP server: the REST API (ingest, queries, lifecycle), its OpenAPI document, the crash
//! monitor, and the web UI. The server keeps no state of its own beyond the store, so any number of
//! instances can serve one PostgreSQL store.

mod account_api;
pub mod alerts;
pub mod api;
mod artifact_api;
pub mod auth;
pub mod error;
pub mod events;
mod openapi;
pub mod service;
mod sweep_api;
pub mod ui;
mod wandb;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cairn_store::Store;
use cairn_types::error::{CodedError, ErrorCode};
use cairn_types::{RunPath, Timestamp};
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
    /// The wait instead for a run that said it may be preempted (`mark_preempting`).
    pub preempting_timeout: Duration,
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
    /// Who may do what.
    pub auth: auth::AuthConfig,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            default_entity: "default".into(),
            heartbeat_timeout: Duration::from_secs(60),
            preempting_timeout: Duration::from_secs(600),
            monitor_interval: Duration::from_secs(10),
            max_body_bytes: 256 << 20,
            deleted_retention: Duration::from_secs(30 * 24 * 3600),
            alerts: alerts::AlertTargets::default(),
            alert_interval: Duration::from_millis(500),
            auth: auth::AuthConfig::default(),
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
    /// Keys and sessions looked up lately.
    pub credentials: Arc<auth::Credentials>,
    /// Failed sign-ins, per account and address.
    pub sign_ins: Arc<auth::SignInLimiter>,
    /// The token of the first-start link, while the server has no users.
    pub setup_token: Arc<std::sync::Mutex<Option<String>>>,
    /// The Content-Security-Policy of every answer (with the configured frame ancestors).
    pub csp: axum::http::HeaderValue,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, config: ServerConfig) -> AppState {
        let events = events::Hub::new(store.notices());
        let csp = auth::content_security_policy(&config.auth.frame_ancestors);
        AppState {
            csp,
            store,
            config: Arc::new(config),
            events,
            instance: instance_id(),
            credentials: Default::default(),
            sign_ins: Default::default(),
            setup_token: Default::default(),
        }
    }

    /// With auth on and no users yet: a one-time token for the link that creates the first
    /// admin (`/setup?token=...`), which the server prints.
    pub fn setup_token(&self) -> Result<Option<String>, CodedError> {
        if !self.config.auth.enabled || self.store.has_users()? {
            return Ok(None);
        }
        let mut bytes = [0u8; 18];
        getrandom::fill(&mut bytes).map_err(|e| CodedError::new(ErrorCode::Internal, format!("the system's random generator failed: {e}")))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        *self.setup_token.lock().expect("setup token") = Some(token.clone());
        Ok(Some(token))
    }
}

/// A route as the router's table lists it: method, path and who may call it.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: axum::http::Method,
    pub path: String,
    pub policy: auth::Policy,
}

/// Builds the API's routes, each with its policy, enforced before its handler, and listed.
struct Routes {
    router: Router<AppState>,
    table: Vec<RouteSpec>,
    state: AppState,
}

impl Routes {
    fn at<H, T>(mut self, method: axum::http::Method, path: &str, policy: auth::Policy, handler: H) -> Routes
    where
        H: axum::handler::Handler<T, AppState>,
        T: 'static,
    {
        let filter = axum::routing::MethodFilter::try_from(method.clone()).expect("a method the router knows");
        let enforce = axum::middleware::from_fn_with_state((self.state.clone(), policy), auth::enforce);
        self.router = self.router.route(path, axum::routing::on(filter, handler).route_layer(enforce));
        self.table.push(RouteSpec { method, path: path.to_owned(), policy });
        self
    }
}

/// Every API route with its policy: what the authorization matrix test calls.
pub fn route_table(state: &AppState) -> Vec<RouteSpec> {
    api_routes(state.clone()).table
}

fn api_routes(state: AppState) -> Routes {
    use auth::Need::{Admin, Read, Write};
    use auth::Policy::{Entity, Named, Public, ServerAdmin, Signed};
    use axum::http::Method as M;
    let run = "/api/v1/runs/{entity}/{project}/{run_id}";
    let r = |tail: &str| format!("{run}{tail}");
    Routes { router: Router::new(), table: Vec::new(), state }
        .at(M::GET, "/api/v1/info", Public, api::info)
        // The official wandb client's protocol (adapters over the same service).
        .at(M::POST, "/graphql", Signed, wandb::graphql)
        .at(M::POST, "/files/{entity}/{project}/{run_id}/file_stream", Entity(Write), wandb::file_stream)
        // Signed by the server: the client's PUT carries no credentials.
        .at(M::PUT, "/files-upload/{token}", Public, wandb::upload)
        .at(M::GET, "/wandb-artifacts/{token}/manifest", Public, wandb::artifacts::manifest)
        .at(M::GET, "/wandb-artifacts/{token}/files/{*file_path}", Public, wandb::artifacts::file)
        .at(M::GET, "/api/v1/openapi.json", Public, openapi::serve)
        .at(M::GET, "/api/v1/viewer", Signed, account_api::viewer)
        .at(M::GET, "/api/v1/setup", Public, account_api::setup_state)
        .at(M::POST, "/api/v1/setup", Public, account_api::setup)
        .at(M::POST, "/api/v1/session", Public, account_api::create_session)
        .at(M::DELETE, "/api/v1/session", Public, account_api::end_session)
        .at(M::GET, "/api/v1/keys", Signed, account_api::list_keys)
        .at(M::POST, "/api/v1/keys", Signed, account_api::create_key)
        .at(M::DELETE, "/api/v1/keys/{id}", Signed, account_api::revoke_key)
        .at(M::GET, "/api/v1/users", ServerAdmin, account_api::list_accounts)
        .at(M::POST, "/api/v1/users", ServerAdmin, account_api::create_user)
        .at(M::POST, "/api/v1/teams", Signed, account_api::create_team)
        .at(M::GET, "/api/v1/teams/{team}/members", Entity(Read), account_api::list_members)
        .at(M::PUT, "/api/v1/teams/{team}/members/{user}", Entity(Admin), account_api::set_member)
        .at(M::DELETE, "/api/v1/teams/{team}/members/{user}", Entity(Admin), account_api::remove_member)
        .at(M::GET, "/api/v1/audit", ServerAdmin, account_api::audit)
        .at(M::GET, "/api/v1/entities", Signed, api::list_entities)
        .at(M::GET, "/api/v1/entities/{entity}", Named(Read), api::get_entity)
        .at(M::GET, "/api/v1/entities/{entity}/projects", Named(Read), api::list_projects)
        .at(M::GET, "/api/v1/projects/{entity}/{project}", Entity(Read), api::get_project)
        .at(M::PATCH, "/api/v1/projects/{entity}/{project}", Entity(Admin), account_api::update_project)
        .at(M::GET, "/api/v1/projects/{entity}/{project}/runs", Entity(Read), api::list_runs)
        .at(M::POST, "/api/v1/projects/{entity}/{project}/runs/search", Entity(Read), api::search_runs)
        .at(M::POST, "/api/v1/projects/{entity}/{project}/runs/groups", Entity(Read), api::group_runs)
        .at(M::GET, "/api/v1/projects/{entity}/{project}/columns", Entity(Read), api::project_columns)
        .at(M::GET, "/api/v1/projects/{entity}/{project}/keys", Entity(Read), api::project_keys)
        // Each reader arranges their own view of the workspace.
        .at(M::GET, "/api/v1/projects/{entity}/{project}/workspace", Entity(Read), account_api::get_workspace)
        .at(M::PUT, "/api/v1/projects/{entity}/{project}/workspace", Entity(Read), account_api::put_workspace)
        .at(M::DELETE, "/api/v1/projects/{entity}/{project}/workspace", Entity(Read), account_api::reset_workspace)
        .at(M::POST, "/api/v1/projects/{entity}/{project}/series", Entity(Read), api::project_series)
        .at(M::POST, "/api/v1/projects/{entity}/{project}/values", Entity(Read), api::project_values)
        .at(M::POST, "/api/v1/projects/{entity}/{project}/sweeps", Entity(Write), sweep_api::create)
        .at(M::GET, "/api/v1/projects/{entity}/{project}/sweeps", Entity(Read), sweep_api::list)
        .at(M::GET, "/api/v1/sweeps/{entity}/{project}/{sweep_id}", Entity(Read), sweep_api::get)
        .at(M::PATCH, "/api/v1/sweeps/{entity}/{project}/{sweep_id}", Entity(Write), sweep_api::update)
        .at(M::POST, "/api/v1/sweeps/{entity}/{project}/{sweep_id}/next", Entity(Write), sweep_api::next)
        .at(M::GET, "/api/v1/sweeps/{entity}/{project}/{sweep_id}/trials", Entity(Read), sweep_api::trials)
        .at(M::GET, "/api/v1/sweeps/{entity}/{project}/{sweep_id}/decisions", Entity(Read), sweep_api::decisions)
        .at(M::POST, "/api/v1/sweeps/{entity}/{project}/{sweep_id}/trials", Entity(Write), sweep_api::import_trial)
        .at(M::POST, "/api/v1/projects/{entity}/{project}/histograms", Entity(Read), api::project_histograms)
        .at(M::POST, "/api/v1/projects/{entity}/{project}/artifacts", Entity(Write), artifact_api::commit)
        .at(M::GET, "/api/v1/projects/{entity}/{project}/artifacts", Entity(Read), artifact_api::collections)
        .at(M::GET, "/api/v1/projects/{entity}/{project}/artifact-types", Entity(Read), artifact_api::types)
        .at(M::GET, "/api/v1/artifacts/{entity}/{project}/{name}", Entity(Read), artifact_api::versions)
        .at(M::GET, "/api/v1/artifacts/{entity}/{project}/{name}/{version}", Entity(Read), artifact_api::version)
        .at(M::DELETE, "/api/v1/artifacts/{entity}/{project}/{name}/{version}", Entity(Write), artifact_api::delete)
        .at(M::GET, "/api/v1/artifacts/{entity}/{project}/{name}/{version}/manifest", Entity(Read), artifact_api::manifest)
        .at(M::GET, "/api/v1/artifacts/{entity}/{project}/{name}/{version}/lineage", Entity(Read), artifact_api::lineage)
        .at(M::GET, "/api/v1/artifacts/{entity}/{project}/{name}/{version}/files/{*file_path}", Entity(Read), artifact_api::file)
        .at(M::PUT, "/api/v1/artifacts/{entity}/{project}/{name}/{version}/aliases", Entity(Write), artifact_api::set_aliases)
        .at(M::GET, &r("/artifacts"), Entity(Read), artifact_api::run_artifacts)
        .at(M::POST, &r("/artifacts/used"), Entity(Write), artifact_api::use_artifact)
        .at(M::GET, "/api/v1/events", Named(Read), events::stream)
        .at(M::POST, "/api/v1/uploads/batch", Signed, api::upload_batch)
        .at(M::POST, "/api/v1/uploads/{sha256}/compose", Signed, api::compose)
        .at(M::POST, "/api/v1/chunks", Signed, api::upload_chunks)
        .at(M::POST, "/api/v1/chunks/missing", Signed, api::missing_chunks)
        .at(M::GET, "/api/v1/uploads/{sha256}", Signed, api::upload_status)
        .at(M::PUT, "/api/v1/uploads/{sha256}", Signed, api::upload_part)
        .at(M::POST, "/api/v1/runs", Named(Write), api::upsert_run)
        .at(M::POST, "/api/v1/runs/move", Named(Write), api::move_runs)
        .at(M::GET, run, Entity(Read), api::get_run)
        .at(M::PATCH, run, Entity(Write), api::update_run)
        .at(M::DELETE, run, Entity(Write), api::delete_run)
        .at(M::POST, &r("/ingest"), Entity(Write), api::ingest)
        .at(M::POST, &r("/heartbeat"), Entity(Write), api::heartbeat)
        .at(M::POST, &r("/finish"), Entity(Write), api::finish_run)
        .at(M::POST, &r("/stop"), Entity(Write), api::stop_run)
        .at(M::POST, &r("/purge"), Entity(Admin), api::purge_run)
        .at(M::GET, &r("/alerts"), Entity(Read), api::list_alerts)
        .at(M::GET, &r("/forks"), Entity(Read), api::list_forks)
        .at(M::GET, &r("/keys"), Entity(Read), api::list_keys)
        .at(M::GET, &r("/history"), Entity(Read), api::history)
        .at(M::GET, &r("/series"), Entity(Read), api::series)
        .at(M::GET, &r("/histograms"), Entity(Read), api::histograms)
        .at(M::GET, &r("/console"), Entity(Read), api::console)
        .at(M::GET, &r("/files"), Entity(Read), api::list_files)
        .at(M::GET, &r("/files/{*file_path}"), Entity(Read), api::get_file)
        .at(M::PUT, &r("/files/{*file_path}"), Entity(Write), api::put_file)
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
    let api = api_routes(state.clone())
        .router
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
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::identify))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::security_headers))
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
        let before = |wait: Duration| Timestamp(Timestamp::now().micros().saturating_sub(wait.as_micros().min(i64::MAX as u128) as i64));
        let (deadline, preempting_deadline) = (before(timeout), before(config.preempting_timeout.max(timeout)));
        match tokio::task::spawn_blocking(move || store.mark_crashed(deadline, preempting_deadline)).await {
            Ok(Ok(crashed)) => {
                for path in crashed {
                    tracing::info!("run {path} sent no heartbeat for {}s: marked crashed", timeout.as_secs());
                    events::publish(&state, "crashed", &path, Some(cairn_types::api::RunState::Crashed), None);
                }
            }
            Ok(Err(e)) => tracing::warn!("crash monitor: {}", e.message),
            Err(_) => tracing::warn!("crash monitor task failed"),
        }
        // Early termination of sweeps' trials, by the same one server.
        let store = state.store.clone();
        match tokio::task::spawn_blocking(move || store.early_terminate(Timestamp::now())).await {
            Ok(Ok(stopped)) => {
                for path in stopped {
                    tracing::info!("run {path} stopped by its sweep's early termination");
                    events::publish(&state, "stopped", &path, None, None);
                }
            }
            Ok(Err(e)) => tracing::warn!("early termination: {}", e.message),
            Err(_) => tracing::warn!("early termination task failed"),
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
pub async fn serve(listener: TcpListener, store: Arc<dyn Store>, config: ServerConfig, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let state = AppState::new(store.clone(), config);
    let setup = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || state.setup_token()).await.map_err(std::io::Error::other)?
    };
    match setup {
        Ok(Some(token)) => {
            let base = state.config.alerts.public_url.clone().unwrap_or_default();
            println!("  no users yet: open {}/setup?token={token} to create the first admin (the link works once)", base.trim_end_matches('/'));
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("cannot tell whether the server has users: {}", e.message),
    }
    let state_instance = state.instance.clone();
    let monitor = tokio::spawn(crash_monitor(state.clone()));
    let delivery = tokio::spawn(alerts::delivery_loop(state.clone(), state.config.alert_interval));
    let app = router(state);
    // No Nagle: a response's head and body go out as written, not after the client's delayed
    // ACK (40 ms per small download otherwise).
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    let result = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(shutdown).await;
    monitor.abort();
    delivery.abort();
    let (leases, holder) = (store.clone(), state_instance);
    tokio::task::spawn_blocking(move || leases.release("monitor", &holder)).await.ok();
    tokio::task::spawn_blocking(move || store.close()).await.ok();
    result
}
