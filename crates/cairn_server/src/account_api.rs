//! REST handlers for accounts: who am I, signing in and out, the first admin, API keys, teams and
//! their members, users, the audit log, project visibility.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_types::Timestamp;
use cairn_types::accounts::{
    Account, ApiKey, AuditEntry, CreateKey, CreateTeam, CreateUser, CreatedKey, MemberInfo, ProjectPatch, Role, SetRole, Setup, SetupState, SignIn, TeamRole, Viewer,
};
use cairn_types::error::{CodedError, ErrorBody, ErrorCode};

use crate::AppState;
use crate::auth::{Caller, ClientAddr, SESSION_COOKIE, cookie, session_cookie, unauthorized};
use crate::error::{ApiError, ApiResult, JsonBody, PathParams, QueryParams};
use crate::service::blocking;

fn viewer_of(state: &AppState, caller: &Caller) -> Viewer {
    match caller {
        Caller::User(p, _) => {
            Viewer { auth: true, user: Some(p.user.clone()), admin: p.admin, teams: p.teams.iter().map(|(name, role)| TeamRole { name: name.clone(), role: *role }).collect() }
        }
        _ => Viewer { auth: state.config.auth.enabled, user: None, admin: !state.config.auth.enabled, teams: Vec::new() },
    }
}

#[utoipa::path(get, path = "/api/v1/viewer", tag = "accounts",
    responses((status = 200, description = "Who the caller is; with auth off, no user and everything allowed", body = Viewer),
        (status = 401, body = ErrorBody)))]
pub async fn viewer(State(state): State<AppState>, caller: Caller) -> Json<Viewer> {
    Json(viewer_of(&state, &caller))
}

#[utoipa::path(get, path = "/api/v1/setup", tag = "accounts",
    responses((status = 200, description = "Whether the server waits for its first admin (the link `cairn server` printed)", body = SetupState)))]
pub async fn setup_state(State(state): State<AppState>) -> ApiResult<Json<SetupState>> {
    let needed = state.config.auth.enabled && state.setup_token.lock().expect("setup token").is_some() && {
        let store = state.store.clone();
        !blocking(move || store.has_users()).await?
    };
    Ok(Json(SetupState { needed }))
}

/// Signs `user` in: a new session, and the cookie that carries it.
async fn sign_in(state: &AppState, user: String) -> ApiResult<Response> {
    let store = state.store.clone();
    let now = Timestamp::now();
    let expires = Timestamp(now.micros() + crate::auth::SESSION_TTL.as_micros() as i64);
    let (token, principal) = blocking(move || {
        let token = store.create_session(&user, expires, now)?;
        let principal = store.principal(&user)?.ok_or_else(unauthorized)?;
        Ok((token, principal))
    })
    .await?;
    let caller = Caller::User(std::sync::Arc::new(principal), crate::auth::Via::Session(token.clone().into()));
    let cookie = session_cookie(&token, state.config.auth.secure_cookies);
    Ok(([(header::SET_COOKIE, cookie)], Json(viewer_of(state, &caller))).into_response())
}

#[utoipa::path(post, path = "/api/v1/setup", tag = "accounts", request_body = Setup,
    responses((status = 200, description = "The first admin, signed in", body = Viewer),
        (status = 401, description = "The token is not the one printed, or the server has users already", body = ErrorBody)))]
pub async fn setup(State(state): State<AppState>, JsonBody(request): JsonBody<Setup>) -> ApiResult<Response> {
    // Checked before the link is spent: a bad name or password leaves it usable.
    cairn_types::validate_name("user", &request.username)?;
    cairn_store::sql::accounts::check_password_rules(&request.password)?;
    let taken = {
        let mut token = state.setup_token.lock().expect("setup token");
        let matches = token.as_deref().is_some_and(|t| constant_time_eq(t.as_bytes(), request.token.as_bytes()));
        // Taken under the lock: two requests with the token cannot both make an admin.
        if matches { token.take() } else { None }
    };
    if taken.is_none() {
        return Err(ApiError::new(ErrorCode::Unauthorized, "the setup token is not valid (it is printed by `cairn server` at its first start, and used once)"));
    }
    let store = state.store.clone();
    let (name, password) = (request.username.clone(), request.password.clone());
    let made = blocking(move || {
        if store.has_users()? {
            return Err(CodedError::new(ErrorCode::Unauthorized, "the server has users already; sign in"));
        }
        store.create_user(&name, true, Timestamp::now())?;
        store.set_password(&name, &password)?;
        store.record_audit(&name, "user.create", &name, "first admin, by the setup link", Timestamp::now())
    })
    .await;
    if let Err(e) = made {
        // Not made: the link works again (unless the server has users now).
        *state.setup_token.lock().expect("setup token") = taken;
        return Err(ApiError(e));
    }
    sign_in(&state, request.username).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[utoipa::path(post, path = "/api/v1/session", tag = "accounts", request_body = SignIn,
    responses((status = 200, description = "Signed in: the session cookie is set", body = Viewer),
        (status = 401, body = ErrorBody), (status = 429, description = "Too many failed sign-ins for this account or address", body = ErrorBody)))]
pub async fn create_session(State(state): State<AppState>, ClientAddr(address): ClientAddr, JsonBody(request): JsonBody<SignIn>) -> ApiResult<Response> {
    if !state.config.auth.enabled {
        return Err(ApiError::new(ErrorCode::InvalidValue, "auth is off on this server: there is nothing to sign in to"));
    }
    state.sign_ins.attempt(&request.username, address)?;
    let store = state.store.clone();
    let (user, password) = (request.username.clone(), request.password);
    let found = blocking(move || store.check_password(&user, &password)).await?;
    if found.is_none() {
        return Err(ApiError::new(ErrorCode::Unauthorized, "the user name or the password is wrong"));
    }
    state.sign_ins.succeeded(&request.username, address);
    sign_in(&state, request.username).await
}

#[utoipa::path(delete, path = "/api/v1/session", tag = "accounts",
    responses((status = 204, description = "Signed out: the session ends and its cookie is cleared")))]
pub async fn end_session(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        let store = state.store.clone();
        blocking(move || store.end_session(&token)).await?;
        state.credentials.forget();
    }
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, session_cookie("", state.config.auth.secure_cookies))]).into_response())
}

#[utoipa::path(get, path = "/api/v1/keys", tag = "accounts", operation_id = "list_api_keys",
    responses((status = 200, description = "The caller's API keys (never the keys themselves)", body = Vec<ApiKey>), (status = 401, body = ErrorBody)))]
pub async fn list_keys(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<ApiKey>>> {
    let (store, user) = (state.store.clone(), caller.user()?.to_owned());
    blocking(move || store.list_api_keys(&user)).await.map(Json).map_err(ApiError)
}

#[utoipa::path(post, path = "/api/v1/keys", tag = "accounts", request_body = CreateKey,
    responses((status = 200, description = "The new key: `secret` is shown this once", body = CreatedKey), (status = 401, body = ErrorBody)))]
pub async fn create_key(State(state): State<AppState>, caller: Caller, JsonBody(request): JsonBody<CreateKey>) -> ApiResult<Json<CreatedKey>> {
    let user = caller.user()?.to_owned();
    Ok(Json(state.create_api_key(caller.actor(), &user, request).await?))
}

#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "accounts",
    params(("id" = i64, Path, description = "The key's id, as listed")),
    responses((status = 200, description = "Revoked: refused from now on (within a second on every server)", body = ApiKey),
        (status = 404, body = ErrorBody)))]
pub async fn revoke_key(State(state): State<AppState>, caller: Caller, PathParams(id): PathParams<i64>) -> ApiResult<Json<ApiKey>> {
    let user = caller.user()?.to_owned();
    let store = state.store.clone();
    // One's own keys only (a server admin revokes any); someone else's key is not found.
    let own = blocking(move || store.list_api_keys(&user)).await?.into_iter().any(|k| k.id == id);
    if !own && !caller.server_admin() {
        return Err(ApiError::new(ErrorCode::ApiKeyNotFound, format!("you have no API key {id}")));
    }
    Ok(Json(state.revoke_api_key(caller.actor(), &id.to_string()).await?))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "accounts",
    responses((status = 200, description = "Users and teams (server admins)", body = Vec<Account>), (status = 403, body = ErrorBody)))]
pub async fn list_accounts(State(state): State<AppState>) -> ApiResult<Json<Vec<Account>>> {
    let store = state.store.clone();
    blocking(move || store.list_accounts()).await.map(Json).map_err(ApiError)
}

#[utoipa::path(post, path = "/api/v1/users", tag = "accounts", request_body = CreateUser,
    responses((status = 200, body = Account), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_user(State(state): State<AppState>, caller: Caller, JsonBody(request): JsonBody<CreateUser>) -> ApiResult<Json<Account>> {
    let (store, actor) = (state.store.clone(), caller.actor().to_owned());
    blocking(move || {
        if let Some(password) = &request.password {
            cairn_store::sql::accounts::check_password_rules(password)?;
        }
        let account = store.create_user(&request.name, request.admin, Timestamp::now())?;
        if let Some(password) = &request.password {
            store.set_password(&request.name, password)?;
        }
        store.record_audit(&actor, "user.create", &request.name, if request.admin { "server admin" } else { "" }, Timestamp::now())?;
        Ok(account)
    })
    .await
    .map(Json)
    .map_err(ApiError)
}

#[utoipa::path(post, path = "/api/v1/teams", tag = "accounts", request_body = CreateTeam,
    responses((status = 200, description = "The team; its creator is its admin", body = Account), (status = 409, body = ErrorBody)))]
pub async fn create_team(State(state): State<AppState>, caller: Caller, JsonBody(request): JsonBody<CreateTeam>) -> ApiResult<Json<Account>> {
    let user = caller.user()?.to_owned();
    let (store, admin) = (state.store.clone(), caller.server_admin());
    let team = blocking(move || {
        // A name that runs use already is someone's data: only a server admin makes it a team.
        if !admin && store.get_entity(&request.name).is_ok() {
            return Err(CodedError::new(ErrorCode::AccountExists, format!("the name {:?} is taken; a server admin can make it a team (`cairn teams create`)", request.name)));
        }
        let team = store.create_team(&request.name, Timestamp::now())?;
        store.set_role(&team.name, &user, Some(Role::Admin))?;
        store.record_audit(&user, "team.create", &team.name, "", Timestamp::now())?;
        Ok(team)
    })
    .await?;
    state.credentials.forget();
    Ok(Json(team))
}

#[utoipa::path(get, path = "/api/v1/teams/{team}/members", tag = "accounts",
    params(("team" = String, Path)),
    responses((status = 200, body = Vec<MemberInfo>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_members(State(state): State<AppState>, PathParams(team): PathParams<String>) -> ApiResult<Json<Vec<MemberInfo>>> {
    let store = state.store.clone();
    let members = blocking(move || store.members(&team)).await?;
    Ok(Json(members.into_iter().map(|(user, role)| MemberInfo { user, role }).collect()))
}

#[utoipa::path(put, path = "/api/v1/teams/{team}/members/{user}", tag = "accounts",
    params(("team" = String, Path), ("user" = String, Path)), request_body = SetRole,
    responses((status = 204, description = "The user has the role in the team now"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_member(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((team, user)): PathParams<(String, String)>,
    JsonBody(request): JsonBody<SetRole>,
) -> ApiResult<StatusCode> {
    state.set_role(caller.actor(), &team, &user, Some(request.role)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/teams/{team}/members/{user}", tag = "accounts",
    params(("team" = String, Path), ("user" = String, Path)),
    responses((status = 204, description = "The user is no longer a member"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_member(State(state): State<AppState>, caller: Caller, PathParams((team, user)): PathParams<(String, String)>) -> ApiResult<StatusCode> {
    state.set_role(caller.actor(), &team, &user, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries to return, newest first (100 by default).
    pub limit: Option<usize>,
    /// Only entries older than this id (the next page).
    pub before: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "accounts", params(AuditQuery),
    responses((status = 200, description = "Who did what, newest first (server admins)", body = Vec<AuditEntry>), (status = 403, body = ErrorBody)))]
pub async fn audit(State(state): State<AppState>, QueryParams(query): QueryParams<AuditQuery>) -> ApiResult<Json<Vec<AuditEntry>>> {
    let store = state.store.clone();
    blocking(move || store.list_audit(query.limit.unwrap_or(100), query.before)).await.map(Json).map_err(ApiError)
}

#[utoipa::path(patch, path = "/api/v1/projects/{entity}/{project}", tag = "projects",
    params(("entity" = String, Path), ("project" = String, Path)), request_body = ProjectPatch,
    responses((status = 200, body = cairn_types::api::ProjectInfo), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_project(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((entity, project)): PathParams<(String, String)>,
    JsonBody(patch): JsonBody<ProjectPatch>,
) -> ApiResult<Json<cairn_types::api::ProjectInfo>> {
    let (store, actor) = (state.store.clone(), caller.actor().to_owned());
    let info = blocking(move || {
        store.set_visibility(&entity, &project, patch.visibility)?;
        store.record_audit(&actor, "project.visibility", &format!("{entity}/{project}"), patch.visibility.as_str(), Timestamp::now())?;
        store.get_project(&entity, &project)
    })
    .await?;
    state.credentials.forget();
    Ok(Json(info))
}

/// Whose layout a request reads or writes: the signed-in user's, or the one layout of a server
/// without accounts.
fn layout_owner(caller: &Caller) -> String {
    caller.principal().map(|p| p.user.clone()).unwrap_or_default()
}

#[utoipa::path(get, path = "/api/v1/projects/{entity}/{project}/workspace", tag = "projects",
    params(("entity" = String, Path), ("project" = String, Path)),
    responses((status = 200, description = "The caller's layout of the workspace; null while automatic", body = cairn_types::api::WorkspaceLayout),
        (status = 404, body = ErrorBody)))]
pub async fn get_workspace(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((entity, project)): PathParams<(String, String)>,
) -> ApiResult<Json<cairn_types::api::WorkspaceLayout>> {
    let (store, viewer) = (state.store.clone(), layout_owner(&caller));
    let layout = blocking(move || {
        store.get_project(&entity, &project)?;
        store.workspace(&entity, &project, &viewer)
    })
    .await?;
    Ok(Json(cairn_types::api::WorkspaceLayout { layout }))
}

#[utoipa::path(put, path = "/api/v1/projects/{entity}/{project}/workspace", tag = "projects",
    params(("entity" = String, Path), ("project" = String, Path)), request_body = cairn_types::api::WorkspaceLayout,
    responses((status = 200, body = cairn_types::api::WorkspaceLayout), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_workspace(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((entity, project)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<cairn_types::api::WorkspaceLayout>,
) -> ApiResult<Json<cairn_types::api::WorkspaceLayout>> {
    let Some(layout) = body.layout else {
        return Err(ApiError::new(ErrorCode::InvalidBody, "a layout to save is an object; DELETE the workspace to make it automatic again"));
    };
    let (store, viewer) = (state.store.clone(), layout_owner(&caller));
    let saved = layout.clone();
    blocking(move || store.save_workspace(&entity, &project, &viewer, &layout, Timestamp::now())).await?;
    Ok(Json(cairn_types::api::WorkspaceLayout { layout: Some(saved) }))
}

#[utoipa::path(delete, path = "/api/v1/projects/{entity}/{project}/workspace", tag = "projects",
    params(("entity" = String, Path), ("project" = String, Path)),
    responses((status = 200, description = "The workspace is automatic again", body = cairn_types::api::WorkspaceLayout), (status = 404, body = ErrorBody)))]
pub async fn reset_workspace(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((entity, project)): PathParams<(String, String)>,
) -> ApiResult<Json<cairn_types::api::WorkspaceLayout>> {
    let (store, viewer) = (state.store.clone(), layout_owner(&caller));
    blocking(move || store.reset_workspace(&entity, &project, &viewer)).await?;
    Ok(Json(cairn_types::api::WorkspaceLayout { layout: None }))
}
