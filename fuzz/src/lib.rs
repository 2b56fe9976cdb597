//! What the fuzz targets share: the real server's router over a real SQLite store, driven in
//! process (no sockets), with a project of runs to filter and search, and the checks every
//! answer must pass.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request};
use cairn_server::{AppState, ServerConfig, router};
use cairn_store::StoreConfig;
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

pub struct App {
    runtime: tokio::runtime::Runtime,
    router: Router,
    next_run: AtomicU64,
    _dir: tempfile::TempDir,
}

/// The project every target reads and writes: `fuzz/p`.
pub const PROJECT: &str = "/api/v1/projects/fuzz/p";

/// The one app of this process, made on first use.
pub fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(App::new)
}

impl App {
    fn new() -> App {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Arc::new(cairn_store::sqlite::open(dir.path(), StoreConfig { default_entity: "fuzz".into() }).expect("a SQLite store"));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let router = runtime.block_on(async { router(AppState::new(store, ServerConfig::default())) });
        let app = App { runtime, router, next_run: AtomicU64::new(0), _dir: dir };
        // Runs with config, summary, tags, groups and history, so that filters resolve their
        // fields and searches return rows.
        for i in 0..8 {
            let run = app.post_json(
                "/api/v1/runs",
                &json!({"entity": "fuzz", "project": "p", "run_id": format!("seed{i}"), "name": format!("run-{i}"),
                        "group": if i % 2 == 0 { "even" } else { "odd" }, "tags": if i % 3 == 0 { json!(["three"]) } else { json!([]) },
                        "config": {"lr": i as f64 / 100.0, "opt": if i % 2 == 0 { "adam" } else { "sgd" }, "model": {"layers": i}}}),
            );
            assert_eq!(run.0, 200, "{}", String::from_utf8_lossy(&run.1));
            let rows: Vec<_> = (0..5).map(|s| json!({"_step": s, "loss": 1.0 / (s + i + 1) as f64, "acc": i as f64 / 8.0, "text": "x"})).collect();
            let ingest = app.post_json(&format!("/api/v1/runs/fuzz/p/seed{i}/ingest"), &json!({"history": {"offset": 0, "rows": rows}}));
            assert_eq!(ingest.0, 200, "{}", String::from_utf8_lossy(&ingest.1));
            if i % 4 == 0 {
                app.post_json(&format!("/api/v1/runs/fuzz/p/seed{i}/finish"), &json!({"exit_code": 0}));
            }
        }
        app
    }

    /// One request; the answer's status and body.
    pub fn request(&self, method: Method, uri: &str, content_type: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let request = Request::builder().method(method).uri(uri).header("content-type", content_type).body(Body::from(body)).expect("a request");
        self.runtime.block_on(async {
            let response = self.router.clone().oneshot(request).await.expect("the router answers");
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await.expect("a body").to_bytes().to_vec();
            (status, bytes)
        })
    }

    pub fn post_json(&self, uri: &str, body: &serde_json::Value) -> (u16, Vec<u8>) {
        self.request(Method::POST, uri, "application/json", serde_json::to_vec(body).expect("JSON"))
    }

    /// A new running run of its own, for a target that writes; its API path.
    pub fn fresh_run(&self) -> String {
        let id = format!("w{}", self.next_run.fetch_add(1, Ordering::Relaxed));
        let (status, body) = self.post_json("/api/v1/runs", &json!({"entity": "fuzz", "project": "p", "run_id": id}));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        format!("/api/v1/runs/fuzz/p/{id}")
    }
}

/// Every answer: a client's mistake is a 4xx with cairn's error body (GraphQL's own `errors`
/// for `/graphql`, which come with HTTP 200 too); the only 5xx allowed are the ones that say
/// "later" (503 unavailable, 507 storage full); never an internal error.
pub fn check_answer(what: &str, (status, body): &(u16, Vec<u8>)) {
    let text = String::from_utf8_lossy(body);
    assert!(*status < 500 || matches!(status, 503 | 507), "{what}: answered {status}: {text}");
    let answer = serde_json::from_slice::<serde_json::Value>(body);
    if let Some(errors) = answer.as_ref().ok().and_then(|a| a["errors"].as_array()).filter(|_| what == "graphql") {
        assert!(errors.iter().all(|e| e["extensions"]["code"] != "internal"), "{what}: {text}");
        if *status >= 400 {
            assert!(!errors.is_empty() && errors.iter().all(|e| e["message"].is_string()), "{what}: the {status} answer is not GraphQL errors: {text}");
        }
        return;
    }
    if *status >= 400 {
        let error = answer.unwrap_or_else(|e| panic!("{what}: the {status} answer is not JSON ({e}): {text}"));
        assert!(error["code"].is_string() && error["message"].is_string(), "{what}: the {status} answer is not an error body: {text}");
        assert_ne!(error["code"], "internal", "{what}: {text}");
    }
}
