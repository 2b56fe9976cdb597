//! Authorization: the matrix of every route of the router's table against every kind of caller,
//! tenant isolation between teams, keys and sessions, CSRF, DNS rebinding, the first start.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use cairn_server::auth::{AuthConfig, Need, Policy};
use cairn_server::{AppState, ServerConfig, router};
use cairn_store::sql::SqlStore;
use cairn_store::{AccountStore, FileStore, Role, RunStore, Store, StoreConfig};
use cairn_types::api::{FileInfo, RunSearch, UpsertRunRequest};
use cairn_types::{RunPath, Timestamp};
use futures_util::StreamExt as _;
use http_body_util::BodyExt;
use serde_json::{Value as Json, json};
use tower::ServiceExt;

/// Callers of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Who {
    NoKey,
    MalformedKey,
    RevokedKey,
    ExpiredKey,
    /// A viewer of another team.
    Outsider,
    Viewer,
    Member,
    Admin,
    /// A user who administers the server.
    Root,
    /// The member's session cookie, on a write with the page's own Origin.
    CookieWithOrigin,
    /// The member's session cookie, on a write without an Origin.
    CookieWithoutOrigin,
}

const EVERYONE: [Who; 11] = [
    Who::NoKey,
    Who::MalformedKey,
    Who::RevokedKey,
    Who::ExpiredKey,
    Who::Outsider,
    Who::Viewer,
    Who::Member,
    Who::Admin,
    Who::Root,
    Who::CookieWithOrigin,
    Who::CookieWithoutOrigin,
];

struct World {
    router: Router,
    store: Arc<SqlStore>,
    keys: HashMap<Who, String>,
    cookie: String,
    sha256: String,
    _dir: tempfile::TempDir,
}

fn secs_from_now(secs: i64) -> Timestamp {
    Timestamp(Timestamp::now().micros() + secs * 1_000_000)
}

/// A team `lab` (admin ana, member max, viewer vic) with a run that has a file, a team `rival`
/// (viewer eve) with a run, and root, who administers the server.
fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(cairn_store::sqlite::open(dir.path(), StoreConfig { default_entity: "nobody".into() }).unwrap());
    let now = Timestamp::now();
    for (user, admin) in [("root", true), ("ana", false), ("max", false), ("vic", false), ("eve", false)] {
        store.create_user(user, admin, now).unwrap();
    }
    store.set_password("max", "max-password").unwrap();
    store.create_team("lab", now).unwrap();
    store.create_team("rival", now).unwrap();
    store.set_role("lab", "ana", Some(Role::Admin)).unwrap();
    store.set_role("lab", "max", Some(Role::Member)).unwrap();
    store.set_role("lab", "vic", Some(Role::Viewer)).unwrap();
    store.set_role("rival", "eve", Some(Role::Viewer)).unwrap();
    let key = |user: &str| store.create_api_key(user, "test", None, now).unwrap().1;
    let mut keys = HashMap::new();
    for (who, user) in [(Who::Outsider, "eve"), (Who::Viewer, "vic"), (Who::Member, "max"), (Who::Admin, "ana"), (Who::Root, "root")] {
        keys.insert(who, key(user));
    }
    keys.insert(Who::MalformedKey, "not a key at all".to_owned());
    let revoked = key("max");
    store.revoke_api_key(&revoked, now).unwrap();
    keys.insert(Who::RevokedKey, revoked);
    let expiring = store.create_api_key("max", "short", Some(Timestamp(now.micros() + 1_000)), now).unwrap().1;
    keys.insert(Who::ExpiredKey, expiring);
    let cookie = store.create_session("max", secs_from_now(3600), now).unwrap();
    for path in [RunPath::new("lab", "p", "r1"), RunPath::new("rival", "q", "r9")] {
        let request = UpsertRunRequest { entity: Some(path.entity.clone()), project: Some(path.project.clone()), run_id: path.run_id.clone(), ..Default::default() };
        store.upsert_run(request, now).unwrap();
    }
    let file = dir.path().join("content");
    std::fs::write(&file, b"the lab's weights").unwrap();
    let blob = store.blobs().put_file(&file).unwrap();
    let info = FileInfo { path: "f.txt".into(), size: blob.size, sha256: blob.sha256.clone(), updated_at: now };
    store.put_run_file(&RunPath::new("lab", "p", "r1"), info).unwrap();
    let entry = cairn_types::artifacts::ManifestEntry { path: "f.txt".into(), digest: blob.sha256.clone(), size: blob.size, reference: None };
    let commit = cairn_types::artifacts::CommitArtifact {
        name: "mnist".into(),
        kind: "dataset".into(),
        entries: vec![entry],
        aliases: vec!["best".into()],
        run_id: Some("r1".into()),
        ..Default::default()
    };
    cairn_store::ArtifactStore::commit_artifact(store.as_ref(), "lab", "p", commit, now).unwrap();
    std::thread::sleep(Duration::from_millis(5)); // the short key has expired
    let config = ServerConfig {
        default_entity: "nobody".into(),
        auth: AuthConfig { enabled: true, allowed_hosts: vec!["cairn.example.com".into()], secure_cookies: false, ..Default::default() },
        ..Default::default()
    };
    let router = router(AppState::new(store.clone(), config));
    World { router, store, keys, cookie, sha256: blob.sha256, _dir: dir }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Json,
}

impl World {
    /// Calls the router as `who`; the body is read unless it is an event stream.
    async fn call(&self, who: Who, method: Method, uri: &str, body: Option<Vec<u8>>, content_type: &str) -> Answer {
        let mut request = Request::builder().method(method.clone()).uri(uri).header(header::HOST, "127.0.0.1:8080");
        match who {
            Who::NoKey => {}
            Who::CookieWithOrigin | Who::CookieWithoutOrigin => {
                request = request.header(header::COOKIE, format!("theme=dark; cairn_session={}", self.cookie));
                if who == Who::CookieWithOrigin {
                    request = request.header(header::ORIGIN, "http://127.0.0.1:8080");
                }
            }
            other => request = request.header(header::AUTHORIZATION, format!("Bearer {}", self.keys[&other])),
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let response = self.router.clone().oneshot(request.body(Body::from(body.unwrap_or_default())).unwrap()).await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let streaming = headers.get(header::CONTENT_TYPE).is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
        let body = if streaming {
            Json::Null
        } else {
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice(&bytes).unwrap_or(Json::Null)
        };
        Answer { status, headers, body }
    }

    async fn json(&self, who: Who, method: Method, uri: &str, body: &Json) -> Answer {
        self.call(who, method, uri, Some(serde_json::to_vec(body).unwrap()), "application/json").await
    }

    /// Everything a request could change, but when keys were last used.
    fn snapshot(&self) -> String {
        let s = &self.store;
        let runs = |e: &str, p: &str| serde_json::to_string(&s.search_runs(e, p, &cairn_store::RunQuery::from_search(&RunSearch::default()).unwrap()).ok()).unwrap();
        let keys: Vec<_> = ["root", "ana", "max", "vic", "eve"].iter().flat_map(|u| s.list_api_keys(u).unwrap()).map(|k| (k.id, k.name, k.revoked_at, k.expires_at)).collect();
        format!(
            "{}\n{}\n{}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
            runs("lab", "p"),
            runs("lab", "q"),
            runs("rival", "q"),
            s.list_accounts().unwrap(),
            s.members("lab").unwrap(),
            s.members("rival").unwrap(),
            keys,
            s.list_audit(1000, None).unwrap(),
            s.list_run_files(&RunPath::new("lab", "p", "r1")).ok(),
            s.public_projects().unwrap(),
            s.list_run_files(&RunPath::new("rival", "q", "r9")).ok(),
        ) + &format!(
            "\n{:?}\n{:?}\n{:?}\n{:?}",
            cairn_store::SweepStore::list_sweeps(s.as_ref(), "lab", "p", cairn_types::Timestamp(0)).ok(),
            ["", "root", "ana", "max", "vic", "eve"].map(|u| cairn_store::WorkspaceStore::workspace(s.as_ref(), "lab", "p", u).ok()),
            cairn_store::ArtifactStore::list_artifact_versions(s.as_ref(), "lab", "p", "mnist").ok(),
            cairn_store::ArtifactStore::run_artifacts(s.as_ref(), &RunPath::new("lab", "p", "r1")).ok(),
        )
    }
}

/// The URI and body that exercise a route of the table on team lab's run.
fn exercise(method: &Method, path: &str, sha256: &str, key_id: i64) -> (String, Option<(Vec<u8>, &'static str)>) {
    let uri = path
        .replace("{entity}", "lab")
        .replace("{team}", "lab")
        .replace("{project}", "p")
        .replace("{run_id}", "r1")
        .replace("{user}", "vic")
        .replace("{id}", &key_id.to_string())
        .replace("{sha256}", sha256)
        .replace("{*file_path}", "f.txt")
        .replace("{name}", "mnist")
        .replace("{version}", "v0")
        .replace("{sweep_id}", "sw1");
    let json = |v: Json| Some((serde_json::to_vec(&v).unwrap(), "application/json"));
    let body = match (method.as_str(), path) {
        ("GET", _) => None,
        ("POST", "/api/v1/runs") => json(json!({"entity": "lab", "project": "p", "run_id": "new"})),
        ("POST", "/api/v1/projects/{entity}/{project}/artifacts") => {
            json(json!({"name": "mnist", "type": "dataset", "aliases": ["new"], "entries": [{"path": "g.txt", "digest": sha256, "size": 17}]}))
        }
        ("PUT", p) if p.ends_with("/aliases") => json(json!({"aliases": ["best", "prod"]})),
        ("POST", p) if p.ends_with("/artifacts/used") => json(json!({"artifact": "mnist:v0"})),
        ("POST", "/api/v1/runs/move") => json(json!({"runs": ["lab/p/r1"], "entity": "lab", "project": "q"})),
        ("POST", "/api/v1/session") => json(json!({"username": "max", "password": "max-password"})),
        ("POST", "/api/v1/setup") => json(json!({"token": "guess", "username": "new", "password": "long enough"})),
        ("POST", "/api/v1/keys") => json(json!({"name": "made by the matrix"})),
        ("POST", "/api/v1/users") => json(json!({"name": "newcomer"})),
        ("POST", "/api/v1/teams") => json(json!({"name": "newteam"})),
        ("PUT", p) if p.ends_with("/members/{user}") => json(json!({"role": "member"})),
        ("PATCH", "/api/v1/projects/{entity}/{project}") => json(json!({"visibility": "public"})),
        ("POST", p) if p.ends_with("/sweeps") => json(json!({"config": {"method": "grid", "parameters": {"a": {"values": [1, 2]}}}})),
        ("PATCH", p) if p.starts_with("/api/v1/sweeps/") => json(json!({"state": "paused"})),
        ("POST", p) if p.ends_with("/next") => json(json!({"agent": "matrix"})),
        ("PUT", p) if p.ends_with("/workspace") => json(json!({"layout": {"version": 1, "sections": [], "known": []}})),
        ("PATCH", _) => json(json!({"notes": "changed"})),
        ("POST", p) if p.ends_with("/series") => json(json!({"run_ids": ["r1"], "keys": ["loss"]})),
        ("POST", p) if p.ends_with("/values") || p.ends_with("/histograms") => json(json!({"run_ids": ["r1"], "key": "loss"})),
        ("POST", p) if p.ends_with("/groups") => json(json!({"by": "state", "columns": []})),
        ("PUT", p) if p.ends_with("/files/{*file_path}") => Some((b"new content".to_vec(), "application/octet-stream")),
        ("PUT", "/api/v1/uploads/{sha256}") => Some((b"x".to_vec(), "application/octet-stream")),
        _ => json(json!({})),
    };
    let uri = match path {
        "/api/v1/events" => format!("{uri}?entity=lab&project=p"),
        "/api/v1/uploads/{sha256}" if method == Method::PUT => format!("{uri}?offset=0&size=1"),
        _ => uri,
    };
    (uri, body)
}

/// What `who` gets from a route with `policy`, on team lab's private project: `None` when the
/// request is allowed (any status but 401, 403 and 421), or the refusing status.
fn expected(policy: Policy, who: Who, method: &Method, content_type: &str) -> Option<u16> {
    let write = !matches!(*method, Method::GET | Method::HEAD);
    match who {
        Who::NoKey if policy != Policy::Public => return Some(401),
        Who::MalformedKey | Who::RevokedKey | Who::ExpiredKey => return Some(401),
        Who::CookieWithoutOrigin if write => return Some(403),
        // A browser's writes are JSON; a cookie never carries a binary write (CSRF).
        Who::CookieWithOrigin if write && content_type != "application/json" => return Some(403),
        _ => {}
    }
    let role = match who {
        Who::NoKey => None,
        Who::Outsider => None,
        Who::Viewer => Some(Role::Viewer),
        Who::Member | Who::CookieWithOrigin | Who::CookieWithoutOrigin => Some(Role::Member),
        Who::Admin | Who::Root => Some(Role::Admin),
        _ => unreachable!(),
    };
    let needs = |need: Need| {
        let required = match need {
            Need::Read => Role::Viewer,
            Need::Write => Role::Member,
            Need::Admin => Role::Admin,
        };
        if role.is_some_and(|r| r >= required) { None } else { Some(403) }
    };
    match policy {
        Policy::Public | Policy::Signed => None,
        Policy::Entity(need) | Policy::Named(need) => needs(need),
        Policy::ServerAdmin if who == Who::Root => None,
        Policy::ServerAdmin => Some(403),
    }
}

#[tokio::test]
async fn every_route_answers_every_caller_as_its_policy_says() {
    let probe = world();
    let table = cairn_server::route_table(&AppState::new(probe.store.clone(), ServerConfig::default()));
    assert!(table.len() >= 61, "{}", table.len());
    // The table's policies keep two rules: only signing in, the first start and the signed upload
    // URLs (whose credential is the URL) are open to writes without credentials, and a route of an
    // entity is checked on that entity.
    for route in &table {
        if route.policy == Policy::Public && route.method != Method::GET {
            assert!(["/api/v1/session", "/api/v1/setup", "/files-upload/{token}"].contains(&route.path.as_str()), "{route:?}");
        }
        if route.path.contains("{entity}") || route.path.contains("{team}") {
            assert!(matches!(route.policy, Policy::Entity(_) | Policy::Named(_)), "{route:?}");
        }
        if route.path.ends_with("/purge") || route.path.contains("/members/") || route.method == Method::PATCH && route.path.starts_with("/api/v1/projects/") {
            assert_eq!(route.policy, Policy::Entity(Need::Admin), "{route:?}");
        }
    }
    let mut checked = 0;
    for route in &table {
        let w = world();
        let key_id = w.store.list_api_keys("vic").unwrap()[0].id;
        let (uri, body) = exercise(&route.method, &route.path, &w.sha256, key_id);
        // Refused first: none of them may change anything.
        let before = w.snapshot();
        let mut allowed = Vec::new();
        for who in EVERYONE {
            let content_type = body.as_ref().map_or("application/json", |(_, ct)| *ct);
            let Some(status) = expected(route.policy, who, &route.method, content_type) else {
                allowed.push(who);
                continue;
            };
            let (bytes, ct) = body.clone().map_or((None, ""), |(b, ct)| (Some(b), ct));
            let answer = w.call(who, route.method.clone(), &uri, bytes, ct).await;
            assert_eq!(answer.status.as_u16(), status, "{} {uri} as {who:?}: {}", route.method, answer.body);
            let code = answer.body["code"].as_str().unwrap_or_default();
            assert_eq!(code, if status == 401 { "unauthorized" } else { "forbidden" }, "{} {uri} as {who:?}", route.method);
            if status == 403 && !matches!(who, Who::CookieWithoutOrigin | Who::CookieWithOrigin) && route.policy != Policy::ServerAdmin {
                // A 403 names the entity and the role that was missing.
                let message = answer.body["message"].as_str().unwrap();
                assert!(message.contains("\"lab\"") && message.contains("role"), "{message}");
            }
            checked += 1;
        }
        assert_eq!(w.snapshot(), before, "a refused {} {uri} changed something", route.method);
        // Then allowed: on a fresh world each, since an allowed call may change things.
        for who in allowed {
            let w = world();
            let (bytes, ct) = body.clone().map_or((None, ""), |(b, ct)| (Some(b), ct));
            let answer = w.call(who, route.method.clone(), &uri, bytes, ct).await;
            let status = answer.status.as_u16();
            let refused_setup = route.path == "/api/v1/setup" && route.method == Method::POST && status == 401;
            assert!((!matches!(status, 401 | 403 | 421) || refused_setup) && status < 500, "{} {uri} as {who:?} got {status}: {}", route.method, answer.body);
            checked += 1;
        }
    }
    assert!(checked > 500, "{checked}");
}

#[tokio::test]
async fn one_team_cannot_reach_another() {
    let w = world();
    let eve = Who::Outsider;
    let lab_run = "/api/v1/runs/lab/p/r1";
    // Listing: lab is not there, its projects and runs are refused.
    let entities = w.call(eve, Method::GET, "/api/v1/entities", None, "").await.body;
    let names: Vec<&str> = entities.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"rival") && !names.contains(&"lab"), "{names:?}");
    for uri in
        ["/api/v1/entities/lab", "/api/v1/entities/lab/projects", "/api/v1/projects/lab/p/runs", lab_run, "/api/v1/runs/lab/p/r1/files/f.txt", "/api/v1/runs/lab/p/r1/history"]
    {
        assert_eq!(w.call(eve, Method::GET, uri, None, "").await.status, 403, "{uri}");
    }
    assert_eq!(w.json(eve, Method::POST, "/api/v1/projects/lab/p/runs/search", &json!({})).await.status, 403);
    // Events: lab's stream is refused, and an unfiltered stream carries none of lab's events.
    assert_eq!(w.call(eve, Method::GET, "/api/v1/events?entity=lab", None, "").await.status, 403);
    let request = Request::get("/api/v1/events").header(header::AUTHORIZATION, format!("Bearer {}", w.keys[&eve])).body(Body::empty()).unwrap();
    let response = w.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut events = response.into_body().into_data_stream();
    assert_eq!(w.json(Who::Member, Method::POST, "/api/v1/runs/lab/p/r1/stop", &json!({})).await.status, 200);
    assert_eq!(w.json(Who::Root, Method::POST, "/api/v1/runs/rival/q/r9/stop", &json!({})).await.status, 200);
    let chunk = tokio::time::timeout(Duration::from_secs(5), events.next()).await.expect("an event").unwrap().unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.contains("\"entity\":\"rival\"") && !text.contains("\"lab\""), "{text}");
    // Writing: resume, fork, delete, move in and out, all refused.
    for body in [json!({"entity": "lab", "project": "p", "run_id": "r1"}), json!({"entity": "lab", "project": "p", "run_id": "f", "fork_from": {"run_id": "r1", "step": 0}})] {
        assert_eq!(w.json(eve, Method::POST, "/api/v1/runs", &body).await.status, 403, "{body}");
    }
    assert_eq!(w.call(eve, Method::DELETE, lab_run, None, "").await.status, 403);
    let into = json!({"runs": ["rival/q/r9"], "entity": "lab", "project": "p"});
    let out_of = json!({"runs": ["lab/p/r1"], "entity": "rival", "project": "q"});
    assert_eq!(w.json(Who::Root, Method::PUT, "/api/v1/teams/rival/members/eve", &json!({"role": "admin"})).await.status, 204);
    for body in [into, out_of] {
        let answer = w.json(eve, Method::POST, "/api/v1/runs/move", &body).await;
        assert_eq!(answer.status, 403, "{body}: {}", answer.body);
    }
    // Linking lab's content by its hash into eve's own run: refused; sending the bytes works.
    let link = format!("/api/v1/runs/rival/q/r9/files/stolen.bin?sha256={}", w.sha256);
    let refused = w.call(eve, Method::PUT, &link, Some(Vec::new()), "application/octet-stream").await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body["message"].as_str().unwrap().contains("send its bytes"));
    let sent = w.call(eve, Method::PUT, "/api/v1/runs/rival/q/r9/files/own.bin", Some(b"the lab's weights".to_vec()), "application/octet-stream").await;
    assert_eq!((sent.status.as_u16(), sent.body["sha256"].as_str()), (200, Some(w.sha256.as_str())), "{}", sent.body);
    // Now eve has a run that names it: she may link it again.
    let again = w.call(eve, Method::PUT, &link, Some(Vec::new()), "application/octet-stream").await;
    assert_eq!(again.status, 200, "{}", again.body);
    // And lab's run is as it was.
    assert_eq!(w.store.list_run_files(&RunPath::new("lab", "p", "r1")).unwrap().len(), 1);
    assert!(w.store.get_run(&RunPath::new("lab", "p", "r1")).is_ok());
}

#[tokio::test]
async fn keys_sessions_and_the_protections_around_them() {
    let w = world();
    // Basic with the key as the password, as the official wandb client sends it.
    let basic = |key: &str| {
        let raw = format!("api:{key}");
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in raw.as_bytes().chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
            for i in 0..4 {
                out.push(if i <= chunk.len() { A[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
            }
        }
        format!("Basic {out}")
    };
    let get = |auth: String| Request::get("/api/v1/viewer").header(header::AUTHORIZATION, auth).body(Body::empty()).unwrap();
    let response = w.router.clone().oneshot(get(basic(&w.keys[&Who::Viewer]))).await.unwrap();
    assert_eq!(response.status(), 200);
    let viewer: Json = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(viewer, json!({"auth": true, "user": "vic", "admin": false, "teams": [{"name": "lab", "role": "viewer"}]}));
    for bad in ["Bearer", "Token abc", "Basic !!!", "Basic YXBp"] {
        assert_eq!(w.router.clone().oneshot(get(bad.to_owned())).await.unwrap().status(), 401, "{bad}");
    }
    // A 401 says nothing of what exists: the same answer for a team and for nothing.
    let a = w.call(Who::NoKey, Method::GET, "/api/v1/runs/lab/p/r1", None, "").await.body;
    let b = w.call(Who::NoKey, Method::GET, "/api/v1/runs/none/such/run", None, "").await.body;
    assert_eq!(a, b);

    // Keys over REST: made, listed with their use, revoked; refused within a second.
    let made = w.json(Who::Member, Method::POST, "/api/v1/keys", &json!({"name": "ci", "expires_days": 30})).await;
    assert_eq!(made.status, 200, "{}", made.body);
    let secret = made.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("cairn-") && secret.len() == 46, "{secret}");
    let as_new = |secret: String| Request::get("/api/v1/keys").header(header::AUTHORIZATION, format!("Bearer {secret}")).body(Body::empty()).unwrap();
    let listed = w.router.clone().oneshot(as_new(secret.clone())).await.unwrap();
    assert_eq!(listed.status(), 200);
    let listed: Json = serde_json::from_slice(&listed.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let mine = listed.as_array().unwrap().iter().find(|k| k["name"] == "ci").unwrap().clone();
    assert!(mine["last_used_at"].is_string() && mine["expires_at"].is_string() && mine.get("secret").is_none(), "{mine}");
    let id = mine["id"].as_i64().unwrap();
    // Someone else's key is not found; one's own is revoked.
    assert_eq!(w.json(Who::Viewer, Method::DELETE, &format!("/api/v1/keys/{id}"), &json!({})).await.status, 404);
    assert_eq!(w.json(Who::Member, Method::DELETE, &format!("/api/v1/keys/{id}"), &json!({})).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(w.router.clone().oneshot(as_new(secret)).await.unwrap().status(), 401, "revoked within a second");
    let log = w.store.list_audit(10, None).unwrap();
    assert_eq!(log.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["key.revoke", "key.create"]);

    // DNS rebinding: a name the server does not answer to gets no data.
    for host in ["attacker.example", "127.0.0.1.attacker.example"] {
        let request =
            Request::get("/api/v1/runs/lab/p/r1").header(header::HOST, host).header(header::AUTHORIZATION, format!("Bearer {}", w.keys[&Who::Admin])).body(Body::empty()).unwrap();
        let response = w.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 421, "{host}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(!String::from_utf8_lossy(&body).contains("r1"), "{}", String::from_utf8_lossy(&body));
    }
    for host in ["cairn.example.com", "localhost:8080", "[::1]:8080", "10.0.0.7:8080"] {
        let request = Request::get("/api/v1/info").header(header::HOST, host).body(Body::empty()).unwrap();
        assert_eq!(w.router.clone().oneshot(request).await.unwrap().status(), 200, "{host}");
    }

    // What the store is and holds is for those who may see it.
    let anonymous = w.call(Who::NoKey, Method::GET, "/api/v1/info", None, "").await.body;
    assert!(anonymous["storage"] == "" && anonymous.get("database_heap_bytes").is_none(), "{anonymous}");
    let admin = w.call(Who::Admin, Method::GET, "/api/v1/info", None, "").await.body;
    assert!(admin["database_heap_bytes"].as_u64().is_some_and(|b| b > 0), "{admin}");

    // Signing in: a cookie that is HttpOnly and SameSite=Lax; wrong passwords are limited.
    let signed = w.json(Who::NoKey, Method::POST, "/api/v1/session", &json!({"username": "max", "password": "max-password"})).await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    let cookie = signed.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("cairn_session=cairns_") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain http");
    for _ in 0..5 {
        let wrong = w.json(Who::NoKey, Method::POST, "/api/v1/session", &json!({"username": "vic", "password": "not it at all"})).await;
        assert_eq!(wrong.status, 401);
    }
    let limited = w.json(Who::NoKey, Method::POST, "/api/v1/session", &json!({"username": "vic", "password": "not it at all"})).await;
    assert_eq!((limited.status.as_u16(), limited.body["code"].as_str()), (429, Some("rate_limited")), "{}", limited.body);

    // CSRF: a write by cookie needs this origin and JSON.
    let write = |origin: Option<&str>, ct: &str| {
        let mut r = Request::builder()
            .method(Method::PATCH)
            .uri("/api/v1/runs/lab/p/r1")
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::COOKIE, format!("cairn_session={}", w.cookie))
            .header(header::CONTENT_TYPE, ct);
        if let Some(origin) = origin {
            r = r.header(header::ORIGIN, origin);
        }
        r.body(Body::from(r#"{"notes": "from a page"}"#)).unwrap()
    };
    for (origin, ct) in [(Some("http://attacker.example"), "application/json"), (None, "application/json"), (Some("http://127.0.0.1:8080"), "text/plain")] {
        assert_eq!(w.router.clone().oneshot(write(origin, ct)).await.unwrap().status(), 403, "{origin:?} {ct}");
    }
    assert_eq!(w.store.get_run(&RunPath::new("lab", "p", "r1")).unwrap().notes, "");
    let ok = w.router.clone().oneshot(write(Some("http://127.0.0.1:8080"), "application/json")).await.unwrap();
    assert_eq!(ok.status(), 200);
    // Security headers on every answer, the UI's pages included.
    let page = w.router.clone().oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.split(';').any(|d| d.trim().starts_with("script-src") && d.contains("unsafe-inline")), "{csp}");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert_eq!(page.headers()["referrer-policy"], "same-origin");
    assert_eq!(page.headers()["x-frame-options"], "DENY");

    // Signing out ends the session on the server too.
    let out = w.call(Who::CookieWithOrigin, Method::DELETE, "/api/v1/session", Some(b"{}".to_vec()), "application/json").await;
    assert_eq!(out.status, 204);
    assert!(out.headers[header::SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(w.call(Who::CookieWithOrigin, Method::GET, "/api/v1/viewer", None, "").await.status, 401);
}

#[tokio::test]
async fn only_the_allowed_pages_may_frame_the_ui() {
    use cairn_server::auth::frame_ancestors;
    // What `--frame-ancestors` takes, and what it refuses, naming the source.
    assert_eq!(frame_ancestors("none").unwrap(), Vec::<String>::new());
    assert_eq!(frame_ancestors("'self' http://localhost:* https://*.example.com").unwrap().len(), 3);
    for bad in ["localhost:8888", "http://a.b; script-src *", "javascript:alert(1)", "http://"] {
        let err = frame_ancestors(bad).unwrap_err();
        assert!(err.contains("is not 'self' or an origin"), "{bad}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(cairn_store::sqlite::open(dir.path(), StoreConfig { default_entity: "x".into() }).unwrap());
    let auth = AuthConfig { frame_ancestors: frame_ancestors("http://localhost:* http://127.0.0.1:*").unwrap(), ..Default::default() };
    let router = router(AppState::new(store, ServerConfig { auth, ..Default::default() }));
    let page = router.oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors http://localhost:* http://127.0.0.1:*"), "{csp}");
    assert!(page.headers().get("x-frame-options").is_none(), "X-Frame-Options: DENY would forbid the allowed pages too");
}

#[tokio::test]
async fn the_first_start_makes_one_admin_by_its_link() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(cairn_store::sqlite::open(dir.path(), StoreConfig { default_entity: "x".into() }).unwrap());
    let config = ServerConfig { auth: AuthConfig { enabled: true, ..Default::default() }, ..Default::default() };
    let state = AppState::new(store.clone(), config);
    let token = state.setup_token().unwrap().expect("no users: a setup link");
    let router = router(state);
    let call = |body: Json| Request::post("/api/v1/setup").header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())).unwrap();
    let state_of = |router: Router| async move {
        let r = router.oneshot(Request::get("/api/v1/setup").body(Body::empty()).unwrap()).await.unwrap();
        serde_json::from_slice::<Json>(&r.into_body().collect().await.unwrap().to_bytes()).unwrap()
    };
    assert_eq!(state_of(router.clone()).await, json!({"needed": true}));
    let wrong = router.clone().oneshot(call(json!({"token": "nope", "username": "ana", "password": "long enough"}))).await.unwrap();
    assert_eq!(wrong.status(), 401);
    let short = router.clone().oneshot(call(json!({"token": token, "username": "ana", "password": "short"}))).await.unwrap();
    assert_eq!(short.status(), 400);
    let made = router.clone().oneshot(call(json!({"token": token, "username": "ana", "password": "long enough"}))).await.unwrap();
    assert_eq!(made.status(), 200);
    assert!(made.headers()[header::SET_COOKIE].to_str().unwrap().starts_with("cairn_session="));
    assert!(store.principal("ana").unwrap().unwrap().admin);
    let again = router.clone().oneshot(call(json!({"token": token, "username": "bo", "password": "long enough"}))).await.unwrap();
    assert_eq!(again.status(), 401, "the link works once");
    assert_eq!(state_of(router).await, json!({"needed": false}));
}

#[tokio::test]
async fn names_moves_and_streams_keep_to_their_owners() {
    let w = world();
    // A name that runs use already is not anyone's to claim; reserved names are refused.
    let orphan = UpsertRunRequest { entity: Some("orphan".into()), project: Some("old".into()), run_id: "r".into(), ..Default::default() };
    w.store.upsert_run(orphan, Timestamp::now()).unwrap();
    let taken = w.json(Who::Outsider, Method::POST, "/api/v1/teams", &json!({"name": "orphan"})).await;
    assert_eq!((taken.status.as_u16(), taken.body["code"].as_str()), (409, Some("account_exists")), "{}", taken.body);
    assert_eq!(w.json(Who::Outsider, Method::POST, "/api/v1/teams", &json!({"name": "shell"})).await.status, 400);
    let made = w.json(Who::Outsider, Method::POST, "/api/v1/teams", &json!({"name": "eves"})).await;
    assert_eq!(made.status, 200, "{}", made.body);
    assert_eq!(w.store.members("eves").unwrap(), [("eve".to_owned(), Role::Admin)]);
    assert_eq!(w.json(Who::Root, Method::POST, "/api/v1/teams", &json!({"name": "orphan"})).await.status, 200, "a server admin may");

    // A member moves runs within the team, but not out of it (where they could purge them).
    assert_eq!(w.json(Who::Member, Method::POST, "/api/v1/runs/lab/p/r1/finish", &json!({})).await.status, 200);
    let out = w.json(Who::Member, Method::POST, "/api/v1/runs/move", &json!({"runs": ["lab/p/r1"], "entity": "max", "project": "mine"})).await;
    assert_eq!(out.status, 403, "{}", out.body);
    assert!(out.body["message"].as_str().unwrap().contains("admin"), "{}", out.body);
    let within = w.json(Who::Member, Method::POST, "/api/v1/runs/move", &json!({"runs": ["lab/p/r1"], "entity": "lab", "project": "q"})).await;
    assert_eq!(within.status, 200, "{}", within.body);

    // Writes from another origin are refused even with a key (and with auth off, below).
    let mut request = Request::patch("/api/v1/runs/lab/q/r1")
        .header(header::AUTHORIZATION, format!("Bearer {}", w.keys[&Who::Admin]))
        .header(header::ORIGIN, "http://attacker.example")
        .header(header::CONTENT_TYPE, "application/json");
    assert_eq!(w.router.clone().oneshot(request.body(Body::from("{}")).unwrap()).await.unwrap().status(), 403);
    let dir = tempfile::tempdir().unwrap();
    let open = router(AppState::new(Arc::new(cairn_store::sqlite::open(dir.path(), StoreConfig { default_entity: "me".into() }).unwrap()), ServerConfig::default()));
    let body = r#"{"entity": "me", "project": "p", "run_id": "from-a-page"}"#;
    request = Request::post("/api/v1/runs").header(header::ORIGIN, "http://attacker.example");
    assert_eq!(open.clone().oneshot(request.body(Body::from(body)).unwrap()).await.unwrap().status(), 403, "auth off: no page drives it");
    request = Request::post("/api/v1/runs").header(header::CONTENT_TYPE, "application/json");
    assert_eq!(open.oneshot(request.body(Body::from(body)).unwrap()).await.unwrap().status(), 200, "a client sends no Origin");

    // An open event stream follows its key: once revoked, the stream ends.
    let key = w.keys[&Who::Viewer].clone();
    let request = Request::get("/api/v1/events?entity=lab").header(header::AUTHORIZATION, format!("Bearer {key}")).body(Body::empty()).unwrap();
    let response = w.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut events = response.into_body().into_data_stream();
    assert_eq!(w.json(Who::Member, Method::PATCH, "/api/v1/runs/lab/q/r1", &json!({"notes": "before"})).await.status, 200);
    let first = tokio::time::timeout(Duration::from_secs(5), events.next()).await.expect("an event").unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("updated"), "{}", String::from_utf8_lossy(&first));
    w.store.revoke_api_key(&key, Timestamp::now()).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(w.json(Who::Member, Method::PATCH, "/api/v1/runs/lab/q/r1", &json!({"notes": "after"})).await.status, 200);
    let end = tokio::time::timeout(Duration::from_secs(5), events.next()).await.expect("the stream ends");
    assert!(end.is_none(), "{:?}", end.map(|c| c.map(|b| String::from_utf8_lossy(&b).into_owned())));
}

#[tokio::test]
async fn each_reader_arranges_their_own_workspace() {
    let w = world();
    let uri = "/api/v1/projects/lab/p/workspace";
    let layout = json!({"version": 1, "sections": [{"id": "s1", "name": "Mine", "panels": []}], "known": ["loss"]});
    assert_eq!(w.call(Who::Member, Method::GET, uri, None, "").await.body, json!({"layout": null}), "automatic until arranged");
    let saved = w.json(Who::Member, Method::PUT, uri, &json!({ "layout": layout })).await;
    assert_eq!(saved.status, 200, "{:?}", saved.body);
    assert_eq!(w.call(Who::Member, Method::GET, uri, None, "").await.body["layout"], layout);
    // A viewer reads the project, and arranges it for themselves only.
    assert_eq!(w.call(Who::Viewer, Method::GET, uri, None, "").await.body, json!({"layout": null}));
    let theirs = json!({"version": 1, "sections": [], "known": []});
    assert_eq!(w.json(Who::Viewer, Method::PUT, uri, &json!({ "layout": theirs })).await.status, 200);
    assert_eq!(w.call(Who::Member, Method::GET, uri, None, "").await.body["layout"], layout);
    // Reset: automatic again, for that reader alone.
    assert_eq!(w.call(Who::Member, Method::DELETE, uri, None, "").await.status, 200);
    assert_eq!(w.call(Who::Member, Method::GET, uri, None, "").await.body, json!({"layout": null}));
    assert_eq!(w.call(Who::Viewer, Method::GET, uri, None, "").await.body["layout"], theirs);
    // Bad input names what is wrong; an unknown project is not found.
    let bad = w.json(Who::Member, Method::PUT, uri, &json!({"layout": [1, 2]})).await;
    assert_eq!((bad.status.as_u16(), bad.body["code"].as_str()), (400, Some("invalid_body")), "{:?}", bad.body);
    assert!(bad.body["message"].as_str().unwrap().contains("object"), "{:?}", bad.body);
    let none = w.json(Who::Member, Method::PUT, uri, &json!({"layout": null})).await;
    assert_eq!(none.status, 400);
    let missing = w.call(Who::Member, Method::GET, "/api/v1/projects/lab/nope/workspace", None, "").await;
    assert_eq!((missing.status.as_u16(), missing.body["code"].as_str()), (404, Some("project_not_found")));
}

#[tokio::test]
async fn a_projects_values_and_histograms_come_for_several_runs_at_once() {
    let w = world();
    let values = w.json(Who::Viewer, Method::POST, "/api/v1/projects/lab/p/values", &json!({"run_ids": ["r1", "gone"], "key": "loss"})).await;
    assert_eq!(values.status, 200, "{:?}", values.body);
    // A run that did not log the key, or is not there, has nothing (the UI's panels and the
    // e2e tests read what runs logged).
    assert_eq!(values.body["runs"], json!([{"run_id": "r1", "steps": [], "values": []}, {"run_id": "gone", "steps": [], "values": []}]));
    let hist = w.json(Who::Viewer, Method::POST, "/api/v1/projects/lab/p/histograms", &json!({"run_ids": ["r1"], "key": "loss", "buckets": 10})).await;
    assert_eq!(hist.status, 200, "{:?}", hist.body);
    assert_eq!(hist.body["runs"][0]["series"]["buckets"], json!([]));
    // Bad input names what is wrong.
    let many: Vec<String> = (0..201).map(|i| format!("r{i}")).collect();
    let refused = w.json(Who::Viewer, Method::POST, "/api/v1/projects/lab/p/values", &json!({"run_ids": many, "key": "loss"})).await;
    assert_eq!((refused.status.as_u16(), refused.body["code"].as_str()), (400, Some("invalid_body")));
    assert!(refused.body["message"].as_str().unwrap().contains("at most 200 runs"), "{:?}", refused.body);
    let bins = w.json(Who::Viewer, Method::POST, "/api/v1/projects/lab/p/histograms", &json!({"run_ids": ["r1"], "key": "loss", "bins": 0})).await;
    assert_eq!(bins.status, 400);
    let missing = w.json(Who::Viewer, Method::POST, "/api/v1/projects/lab/nope/values", &json!({"run_ids": ["r1"], "key": "loss"})).await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn sweeps_are_created_driven_and_canceled_over_the_api() {
    let w = world();
    let bad = w.json(Who::Member, Method::POST, "/api/v1/projects/lab/p/sweeps", &json!({"config": {"method": "grid", "parameters": {"lr": {"min": 0.1, "max": 0.01}}}})).await;
    assert_eq!((bad.status.as_u16(), bad.body["code"].as_str()), (400, Some("invalid_sweep")), "{:?}", bad.body);
    assert!(bad.body["message"].as_str().unwrap().contains("parameter \"lr\""), "{:?}", bad.body);
    let made = w.json(Who::Member, Method::POST, "/api/v1/projects/lab/p/sweeps", &json!({"config": {"method": "grid", "parameters": {"a": {"values": [1, 2]}}}})).await;
    assert_eq!(made.status, 200, "{:?}", made.body);
    let id = made.body["sweep_id"].as_str().unwrap().to_owned();
    assert_eq!(made.body["grid_size"], 2);
    // A viewer reads it but drives nothing.
    assert_eq!(w.call(Who::Viewer, Method::GET, &format!("/api/v1/sweeps/lab/p/{id}"), None, "").await.status, 200);
    assert_eq!(w.json(Who::Viewer, Method::POST, &format!("/api/v1/sweeps/lab/p/{id}/next"), &json!({})).await.status, 403);
    let next = w.json(Who::Member, Method::POST, &format!("/api/v1/sweeps/lab/p/{id}/next"), &json!({"agent": "a1"})).await;
    assert_eq!(next.body["action"], "run", "{:?}", next.body);
    let run_id = next.body["run_id"].as_str().unwrap().to_owned();
    // The trial's run starts, then the sweep is canceled: the run is asked to stop.
    let run = w.json(Who::Member, Method::POST, "/api/v1/runs", &json!({"entity": "lab", "project": "p", "run_id": run_id})).await;
    assert_eq!(run.status, 200, "{:?}", run.body);
    let canceled = w.json(Who::Member, Method::PATCH, &format!("/api/v1/sweeps/lab/p/{id}"), &json!({"state": "canceled"})).await;
    assert_eq!(canceled.body["state"], "canceled", "{:?}", canceled.body);
    let stopped = w.call(Who::Member, Method::GET, &format!("/api/v1/runs/lab/p/{run_id}"), None, "").await;
    assert_eq!(stopped.body["stop_requested"], true, "{:?}", stopped.body);
    let after = w.json(Who::Member, Method::POST, &format!("/api/v1/sweeps/lab/p/{id}/next"), &json!({})).await;
    assert_eq!(after.body["action"], "stop");
    let again = w.json(Who::Member, Method::PATCH, &format!("/api/v1/sweeps/lab/p/{id}"), &json!({"state": "running"})).await;
    assert_eq!((again.status.as_u16(), again.body["code"].as_str()), (409, Some("sweep_over")));
    let trials = w.call(Who::Viewer, Method::GET, &format!("/api/v1/sweeps/lab/p/{id}/trials"), None, "").await;
    assert_eq!(trials.body[0]["run_id"], run_id.as_str());
    let decisions = w.call(Who::Viewer, Method::GET, &format!("/api/v1/sweeps/lab/p/{id}/decisions"), None, "").await;
    assert_eq!((decisions.status.as_u16(), decisions.body.clone()), (200, json!([])), "no early termination, no judgements");
    let listed = w.call(Who::Viewer, Method::GET, "/api/v1/projects/lab/p/sweeps", None, "").await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    assert_eq!(w.call(Who::Viewer, Method::GET, "/api/v1/sweeps/lab/p/nope", None, "").await.body["code"], "sweep_not_found");
}
