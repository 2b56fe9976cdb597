//! Who calls, and what they may do.
//!
//! - The **Host allow-list** comes first: a request whose `Host` is not a loopback name, an IP
//!   literal, the host of the public URL or one allowed by flag gets 421 before anything else, which
//!   closes DNS rebinding (a page on `attacker.example` that resolves to 127.0.0.1 sends
//!   `Host: attacker.example`). IP literals are safe: a page served from one has that IP as its
//!   origin, and can read nothing else.
//! - **Authentication** (auth on): `Authorization: Bearer KEY`, or `Basic` with the key as the
//!   password (what the official wandb client sends); else the session cookie of a signed-in
//!   browser. A bad key is refused at once (401), whatever the route; a stale cookie counts as no
//!   credentials. Keys and sessions are looked up in the store at most once a second each
//!   ([`Credentials`]), so revocation takes effect within a second and the hot path reads nothing.
//! - **CSRF**: a write authenticated by the cookie must come from the same origin (`Origin`) with
//!   a JSON body type, which a cross-site form cannot send and a cross-site `fetch` cannot send
//!   without a preflight that the server never grants.
//! - **Authorization** is declared per route ([`Policy`], in the router's table) and enforced by
//!   [`enforce`] before the handler runs; routes whose target is in the body are checked by the
//!   service layer with the same [`AppState::authorize`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cairn_types::Timestamp;
use cairn_types::accounts::{Principal, Role};
use cairn_types::error::{CodedError, ErrorCode};

use crate::AppState;
use crate::error::ApiError;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "cairn_session";
/// How long a sign-in lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(14 * 24 * 3600);
/// How long a looked-up key or session is trusted before it is looked up again.
const CREDENTIAL_TTL: Duration = Duration::from_secs(1);

/// How the server decides who may do what.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Whether requests must carry credentials. Off: every request may do everything (a
    /// loopback server for one user).
    pub enabled: bool,
    /// Host names (without port) this server answers to, besides loopback names and IP literals.
    pub allowed_hosts: Vec<String>,
    /// Whether the session cookie is `Secure` (the public URL is https).
    pub secure_cookies: bool,
    /// The pages that may show this server's in a frame (CSP `frame-ancestors` sources: a
    /// notebook's `run.display()`), checked by [`frame_ancestors`]; empty: none may.
    pub frame_ancestors: Vec<String>,
}

/// Checks `frame-ancestors` sources: `'self'`, or origins such as `http://localhost:*` and
/// `https://*.example.com`. `none` (alone) allows no framing.
pub fn frame_ancestors(list: &str) -> Result<Vec<String>, String> {
    let sources: Vec<&str> = list.split_whitespace().collect();
    if sources == ["none"] || sources == ["'none'"] || sources.is_empty() {
        return Ok(Vec::new());
    }
    sources
        .into_iter()
        .map(|src| {
            let origin = src.strip_prefix("https://").or_else(|| src.strip_prefix("http://"));
            let host_ok = origin.is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'*' | b'[' | b']')));
            if src == "'self'" || host_ok {
                Ok(src.to_owned())
            } else {
                Err(format!("frame ancestor {src:?} is not 'self' or an origin such as http://localhost:* or https://notebooks.example.com"))
            }
        })
        .collect()
}

/// How a request proved who it is, with the credential itself (to look it up again: a
/// long-lived stream follows revocations and role changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Key(Arc<str>),
    Session(Arc<str>),
}

impl Via {
    /// The cache's name for the credential: how it came and its SHA-256, never the secret.
    fn cache_key(&self) -> String {
        use sha2::Digest as _;
        let (kind, token) = match self {
            Via::Key(t) => ("key", t),
            Via::Session(t) => ("session", t),
        };
        let digest = sha2::Sha256::digest(token.as_bytes());
        format!("{kind}:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }
}

/// Who makes a request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Auth is off: the one local user, who may do everything.
    Local,
    /// Auth is on and the request carries no (valid) credentials.
    Anonymous,
    User(Arc<Principal>, Via),
}

impl Caller {
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Caller::User(p, _) => Some(p),
            _ => None,
        }
    }

    /// The name in the audit log.
    pub fn actor(&self) -> &str {
        match self {
            Caller::Local => "local",
            Caller::Anonymous => "anonymous",
            Caller::User(p, _) => &p.user,
        }
    }

    /// The user's name; an error for callers without one.
    pub fn user(&self) -> Result<&str, CodedError> {
        match self {
            Caller::User(p, _) => Ok(&p.user),
            Caller::Local => Err(CodedError::new(ErrorCode::InvalidValue, "auth is off on this server: there is no signed-in user")),
            Caller::Anonymous => Err(unauthorized()),
        }
    }

    /// Whether this caller administers the server.
    pub fn server_admin(&self) -> bool {
        match self {
            Caller::Local => true,
            Caller::Anonymous => false,
            Caller::User(p, _) => p.admin,
        }
    }

    /// The entities whose projects this caller reads whole (`None`: every entity).
    pub fn readable_entities(&self) -> Option<Vec<String>> {
        match self {
            Caller::Local => None,
            Caller::Anonymous => Some(Vec::new()),
            Caller::User(p, _) if p.admin => None,
            Caller::User(p, _) => Some(std::iter::once(p.user.clone()).chain(p.teams.iter().map(|(t, _)| t.clone())).collect()),
        }
    }
}

pub fn unauthorized() -> CodedError {
    CodedError::new(ErrorCode::Unauthorized, "this server needs credentials: send an API key (Authorization: Bearer KEY; see `cairn keys create`) or sign in")
}

/// What a request needs on an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any role (or a public project): reading runs.
    Read,
    /// `member` or `admin`: writing runs.
    Write,
    /// `admin`: members, settings, purges.
    Admin,
}

impl Need {
    fn role(self) -> Role {
        match self {
            Need::Read => Role::Viewer,
            Need::Write => Role::Member,
            Need::Admin => Role::Admin,
        }
    }
}

/// Who may call a route. Every route in the router's table has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Anyone, signed in or not (server info, signing in, the first start).
    Public,
    /// Any signed-in caller; what they see is filtered to what they may read.
    Signed,
    /// `Need` on the entity of the path (`{entity}` or `{team}`); a project in the path may be
    /// public, which lets any signed-in user read it.
    Entity(Need),
    /// `Need` on the entity that the body or the query names, checked by the handler.
    Named(Need),
    /// Users who administer the server.
    ServerAdmin,
}

/// A looked-up credential: when, and whose (`None`: nobody's).
type Found = (Instant, Option<Arc<Principal>>);
/// The public projects as `(entity, project)`, and when they were read.
type PublicProjects = (Instant, Arc<HashSet<(String, String)>>);

/// Looked-up keys and sessions, each trusted for a second; and the public projects, likewise.
#[derive(Default)]
pub struct Credentials {
    found: Mutex<HashMap<String, Found>>,
    public: Mutex<Option<PublicProjects>>,
}

impl Credentials {
    fn cached(&self, key: &str) -> Option<Option<Arc<Principal>>> {
        let found = self.found.lock().expect("credential cache");
        found.get(key).filter(|(at, _)| at.elapsed() < CREDENTIAL_TTL).map(|(_, p)| p.clone())
    }

    fn remember(&self, key: &str, principal: Option<Arc<Principal>>) {
        let mut found = self.found.lock().expect("credential cache");
        if found.len() > 10_000 {
            found.retain(|_, (at, _)| at.elapsed() < CREDENTIAL_TTL);
        }
        found.insert(key.to_owned(), (Instant::now(), principal));
    }

    /// Forgets every looked-up credential: after a change of roles, keys or sessions made by
    /// this server, its next requests see it at once (other servers within a second).
    pub fn forget(&self) {
        self.found.lock().expect("credential cache").clear();
        *self.public.lock().expect("public projects") = None;
    }
}

impl AppState {
    /// Who holds the credential (a key or a session token), from the cache or the store.
    pub async fn principal_of(&self, via: &Via) -> Result<Option<Arc<Principal>>, CodedError> {
        let cache_key = via.cache_key();
        if let Some(found) = self.credentials.cached(&cache_key) {
            return Ok(found);
        }
        let (store, via_owned) = (self.store.clone(), via.clone());
        let found = crate::service::blocking(move || match &via_owned {
            Via::Key(token) => store.authenticate(token, Timestamp::now()),
            Via::Session(token) => store.session_principal(token, Timestamp::now()),
        })
        .await?
        .map(Arc::new);
        self.credentials.remember(&cache_key, found.clone());
        Ok(found)
    }

    /// The caller as they are now: a user's roles, keys and sessions change while a stream
    /// runs. `None` when their credential no longer holds.
    pub async fn caller_now(&self, caller: &Caller) -> Option<Caller> {
        match caller {
            Caller::User(_, via) => match self.principal_of(via).await {
                Ok(Some(p)) => Some(Caller::User(p, via.clone())),
                Ok(None) => None,
                // The store is away: keep what was known.
                Err(_) => Some(caller.clone()),
            },
            other => Some(other.clone()),
        }
    }

    /// The public projects, at most a second old.
    pub async fn public_projects(&self) -> Result<Arc<HashSet<(String, String)>>, CodedError> {
        if let Some((at, set)) = self.credentials.public.lock().expect("public projects").as_ref()
            && at.elapsed() < CREDENTIAL_TTL
        {
            return Ok(set.clone());
        }
        let store = self.store.clone();
        let set: Arc<HashSet<_>> = Arc::new(crate::service::blocking(move || store.public_projects()).await?.into_iter().collect());
        *self.credentials.public.lock().expect("public projects") = Some((Instant::now(), set.clone()));
        Ok(set)
    }

    /// Checks that `caller` has `need` on `entity` (and, for reading, that `project` is public
    /// when they have no role there). A 401 says nothing of the entity; a 403 names it and the
    /// role that was missing.
    pub async fn authorize(&self, caller: &Caller, entity: &str, project: Option<&str>, need: Need) -> Result<(), CodedError> {
        let principal = match caller {
            Caller::Local => return Ok(()),
            Caller::Anonymous => return Err(unauthorized()),
            Caller::User(p, _) => p,
        };
        let role = principal.role_on(entity);
        if role.is_some_and(|r| r >= need.role()) {
            return Ok(());
        }
        if need == Need::Read
            && let Some(project) = project
            && self.public_projects().await?.contains(&(entity.to_owned(), project.to_owned()))
        {
            return Ok(());
        }
        Err(forbidden(&principal.user, role, entity, need))
    }

    /// Whether `caller` may read the runs of `entity/project` (for filtering lists and events).
    pub async fn can_read(&self, caller: &Caller, entity: &str, project: &str) -> bool {
        self.authorize(caller, entity, Some(project), Need::Read).await.is_ok()
    }
}

fn forbidden(user: &str, role: Option<Role>, entity: &str, need: Need) -> CodedError {
    let has = match role {
        Some(role) => format!("is a {} of {entity:?}", role.as_str()),
        None => format!("has no role on {entity:?}"),
    };
    let what = match need {
        Need::Read => "reading it",
        Need::Write => "writing to it",
        Need::Admin => "administering it",
    };
    CodedError::new(ErrorCode::Forbidden, format!("user {user:?} {has}; {what} needs the {} role", need.role().as_str()))
}

/// The credentials a request carries: a key from `Authorization`, else the session cookie.
enum Presented {
    None,
    Key(String),
    Session(String),
}

fn presented(headers: &HeaderMap) -> Result<Presented, CodedError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let malformed = || CodedError::new(ErrorCode::Unauthorized, "the Authorization header is not `Bearer KEY` or `Basic` with the key as the password");
        let value = value.to_str().map_err(|_| malformed())?.trim();
        let (scheme, rest) = value.split_once(' ').ok_or_else(malformed)?;
        let key = if scheme.eq_ignore_ascii_case("bearer") {
            rest.trim().to_owned()
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64_decode(rest.trim()).ok_or_else(malformed)?;
            let text = String::from_utf8(decoded).map_err(|_| malformed())?;
            // The user name is anything (wandb sends `api`); the key is the password.
            text.split_once(':').map(|(_, key)| key.to_owned()).ok_or_else(malformed)?
        } else {
            return Err(malformed());
        };
        if key.is_empty() {
            return Err(malformed());
        }
        return Ok(Presented::Key(key));
    }
    Ok(cookie(headers, SESSION_COOKIE).map_or(Presented::None, Presented::Session))
}

/// The value of cookie `name`, if the request has it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in text.trim_end_matches('=').as_bytes() {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The host of a `Host` header or an origin, without port or brackets, lowercase.
fn host_name(authority: &str) -> String {
    let authority = authority.trim().to_ascii_lowercase();
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("").to_owned();
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host.to_owned(),
        _ => authority,
    }
}

fn host_allowed(config: &AuthConfig, host: &str) -> bool {
    host == "localhost" || host.ends_with(".localhost") || host.parse::<std::net::IpAddr>().is_ok() || config.allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
}

/// The first layer of every request: the Host check, who the caller is, and the CSRF check.
pub async fn identify(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let config = &state.config.auth;
    let host = match request.headers().get(header::HOST) {
        Some(h) => match h.to_str() {
            Ok(h) => Some(h.to_owned()),
            Err(_) => return ApiError::new(ErrorCode::HostNotAllowed, "the Host header is not text").into_response(),
        },
        None => request.uri().authority().map(|a| a.to_string()),
    };
    // Browsers always send a Host; a request without one is no DNS rebinding.
    let host = host.unwrap_or_default();
    if !host.is_empty() && !host_allowed(config, &host_name(&host)) {
        return ApiError::new(
            ErrorCode::HostNotAllowed,
            format!("this server does not answer to the host {:?}; reach it by its address or by the host of --public-url (or allow one with --allow-host)", host_name(&host)),
        )
        .into_response();
    }
    let caller = if !config.enabled {
        Caller::Local
    } else {
        match identify_caller(&state, request.headers()).await {
            Ok(caller) => caller,
            Err(e) => return ApiError(e).into_response(),
        }
    };
    // Writes from another origin are refused whoever the caller is: with auth off, any page
    // could otherwise drive a loopback server. Writes by cookie must also name this origin and
    // carry JSON.
    let by_cookie = matches!(&caller, Caller::User(_, Via::Session(_)));
    if let Err(e) = same_origin_write(request.method(), request.headers(), &host, by_cookie) {
        return ApiError(e).into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

async fn identify_caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, CodedError> {
    match presented(headers)? {
        Presented::None => Ok(Caller::Anonymous),
        Presented::Key(key) => match state.principal_of(&Via::Key(key.clone().into())).await? {
            Some(p) => Ok(Caller::User(p, Via::Key(key.into()))),
            None => Err(CodedError::new(ErrorCode::Unauthorized, "the API key is not valid: unknown, revoked or expired")),
        },
        // A stale cookie is no credential: the sign-in page must still load.
        Presented::Session(token) => Ok(match state.principal_of(&Via::Session(token.clone().into())).await? {
            Some(p) => Caller::User(p, Via::Session(token.into())),
            None => Caller::Anonymous,
        }),
    }
}

/// A write must not come from another origin; one authenticated by cookie must name this
/// origin and carry JSON.
fn same_origin_write(method: &Method, headers: &HeaderMap, host: &str, by_cookie: bool) -> Result<(), CodedError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()).unwrap_or("");
    let origin_authority = origin.split_once("://").map(|(_, rest)| rest.trim_end_matches('/')).unwrap_or("");
    let foreign = !origin.is_empty() && !origin_authority.eq_ignore_ascii_case(host.trim());
    if foreign || (by_cookie && origin_authority.is_empty()) {
        return Err(CodedError::new(ErrorCode::Forbidden, format!("a write signed in by cookie must come from this server's own pages (Origin {origin:?} is not this server)")));
    }
    if by_cookie && crate::error::content_type(headers) != "application/json" {
        return Err(CodedError::new(ErrorCode::Forbidden, "a write signed in by cookie must send application/json"));
    }
    Ok(())
}

/// The largest body that routes open to anyone accept (signing in, the first start).
const PUBLIC_BODY_LIMIT: usize = 64 << 10;

/// The per-route check of a route's [`Policy`], after routing (the path's parameters are known).
pub async fn enforce(State((state, policy)): State<(AppState, Policy)>, params: axum::extract::RawPathParams, request: Request, next: Next) -> Response {
    let caller = request.extensions().get::<Caller>().cloned().unwrap_or(Caller::Anonymous);
    let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_owned());
    let mut request = request;
    let checked = match policy {
        Policy::Public => {
            // Whoever may call it unauthenticated sends a small body.
            request.extensions_mut().insert(crate::error::BodyLimit(PUBLIC_BODY_LIMIT));
            Ok(())
        }
        Policy::Signed | Policy::Named(_) => match caller {
            Caller::Anonymous => Err(unauthorized()),
            _ => Ok(()),
        },
        Policy::ServerAdmin => match &caller {
            Caller::Anonymous => Err(unauthorized()),
            c if c.server_admin() => Ok(()),
            c => Err(CodedError::new(ErrorCode::Forbidden, format!("user {:?} does not administer this server", c.actor()))),
        },
        Policy::Entity(need) => match param("entity").or_else(|| param("team")) {
            Some(entity) => state.authorize(&caller, &entity, param("project").as_deref(), need).await,
            None => Err(CodedError::new(ErrorCode::Internal, "a route checked by entity has no entity in its path (a bug)")),
        },
    };
    match checked {
        Ok(()) => next.run(request).await,
        Err(e) => ApiError(e).into_response(),
    }
}

/// The Content-Security-Policy of every answer, with the pages that may frame it.
pub fn content_security_policy(frame_ancestors: &[String]) -> HeaderValue {
    let ancestors = if frame_ancestors.is_empty() { "'none'".to_owned() } else { frame_ancestors.join(" ") };
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"
    );
    // Sources are checked (`frame_ancestors`); one that is not a header's text frames nothing.
    HeaderValue::from_str(&policy).unwrap_or_else(|_| content_security_policy(&[]))
}

/// Headers on every answer: no sniffing, no framing but by the allowed pages, no inline scripts,
/// no referrer off-site.
pub async fn security_headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: &'static str, value: HeaderValue| {
        headers.entry(name).or_insert(value);
    };
    set(headers, "x-content-type-options", HeaderValue::from_static("nosniff"));
    if state.config.auth.frame_ancestors.is_empty() {
        // For browsers without CSP; with allowed ancestors, frame-ancestors alone decides.
        set(headers, "x-frame-options", HeaderValue::from_static("DENY"));
    }
    set(headers, "referrer-policy", HeaderValue::from_static("same-origin"));
    set(headers, "content-security-policy", state.csp.clone());
    response
}

/// Failed sign-ins per account and per address: at most [`Self::PER_ACCOUNT`] and
/// [`Self::PER_ADDRESS`] in [`Self::WINDOW`].
#[derive(Default)]
pub struct SignInLimiter {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl SignInLimiter {
    pub const WINDOW: Duration = Duration::from_secs(300);
    pub const PER_ACCOUNT: usize = 5;
    pub const PER_ADDRESS: usize = 20;

    fn keys(user: &str, address: Option<SocketAddr>) -> [(String, usize); 2] {
        // IPv6 by /64: one client easily has a whole one.
        let addr = match address.map(|a| a.ip()) {
            Some(std::net::IpAddr::V6(ip)) if ip.to_ipv4_mapped().is_none() => {
                let s = ip.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            Some(ip) => ip.to_canonical().to_string(),
            None => String::new(),
        };
        [(format!("user:{user}"), Self::PER_ACCOUNT), (format!("addr:{addr}"), Self::PER_ADDRESS)]
    }

    /// Counts an attempt for the account and the address, or refuses it when either failed too
    /// often lately. Counted before the password is checked, so that parallel guesses count
    /// too; [`Self::succeeded`] takes the attempt back.
    pub fn attempt(&self, user: &str, address: Option<SocketAddr>) -> Result<(), CodedError> {
        let mut failures = self.failures.lock().expect("sign-in limiter");
        if failures.len() > 100_000 {
            failures.retain(|_, times| times.back().is_some_and(|t| t.elapsed() < Self::WINDOW));
        }
        let keys = Self::keys(user, address);
        for (key, limit) in &keys {
            if let Some(times) = failures.get_mut(key) {
                while times.front().is_some_and(|t| t.elapsed() > Self::WINDOW) {
                    times.pop_front();
                }
                if times.len() >= *limit {
                    let wait = Self::WINDOW.saturating_sub(times.front().map_or(Duration::ZERO, |t| t.elapsed()));
                    return Err(CodedError::new(ErrorCode::RateLimited, format!("too many failed sign-ins; try again in {} s", wait.as_secs().max(1))));
                }
            }
        }
        for (key, _) in keys {
            failures.entry(key).or_default().push_back(Instant::now());
        }
        Ok(())
    }

    /// The attempt was right: the account starts afresh, and the address's count drops it.
    pub fn succeeded(&self, user: &str, address: Option<SocketAddr>) {
        let mut failures = self.failures.lock().expect("sign-in limiter");
        let [(account, _), (addr, _)] = Self::keys(user, address);
        failures.remove(&account);
        if let Some(times) = failures.get_mut(&addr) {
            times.pop_back();
        }
    }
}

/// The `Set-Cookie` value that signs a browser in (or out, with an empty token).
pub fn session_cookie(token: &str, secure: bool) -> String {
    let max_age = if token.is_empty() { 0 } else { SESSION_TTL.as_secs() };
    format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{}", if secure { "; Secure" } else { "" })
}

/// The client's address, when the server knows it (not in tests that call the router directly).
pub struct ClientAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<ClientAddr, Self::Rejection> {
        Ok(ClientAddr(parts.extensions.get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0)))
    }
}

/// The caller, as [`identify`] found them.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Caller, Self::Rejection> {
        Ok(parts.extensions.get::<Caller>().cloned().unwrap_or(Caller::Anonymous))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_basic_credentials() {
        assert_eq!(host_name("LocalHost:8080"), "localhost");
        assert_eq!(host_name("[::1]:8080"), "::1");
        assert_eq!(host_name("cairn.example.com"), "cairn.example.com");
        let config = AuthConfig { allowed_hosts: vec!["cairn.example.com".into()], ..Default::default() };
        for ok in ["localhost", "127.0.0.1", "::1", "10.1.2.3", "cairn.example.com", "app.localhost"] {
            assert!(host_allowed(&config, ok), "{ok}");
        }
        for bad in ["attacker.example", "cairn.example.com.attacker.example", "127.0.0.1.nip.io", ""] {
            assert!(!host_allowed(&config, bad), "{bad}");
        }
        assert_eq!(base64_decode("YXBpOmNhaXJuX2tleQ==").unwrap(), b"api:cairn_key");
        assert_eq!(base64_decode("not base64!"), None);
    }
}
