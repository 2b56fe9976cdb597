//! In-process HTTP tests of every endpoint, including the error cases (no sockets: the router is
//! driven with `oneshot`).

mod api;
mod artifacts;
mod auth;
mod streamed;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cairn_server::{AppState, ServerConfig, router};
use cairn_store::StoreConfig;
use cairn_store::sql::SqlStore;
use http_body_util::BodyExt;
use serde_json::Value as Json;
use tower::ServiceExt;

pub struct TestApp {
    pub router: Router,
    pub store: Arc<SqlStore>,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Json {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.bytes)))
    }

    /// Asserts an error reply: status, code, and a message containing `needle`.
    pub fn assert_error(&self, status: u16, code: &str, needle: &str) {
        let body = self.json();
        assert_eq!(self.status.as_u16(), status, "{body}");
        assert_eq!(body["code"], code, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(needle), "message {message:?} lacks {needle:?}");
    }
}

impl Default for TestApp {
    fn default() -> Self {
        Self::new()
    }
}

impl TestApp {
    pub fn new() -> TestApp {
        TestApp::with_config(ServerConfig::default())
    }

    pub fn with_config(mut config: ServerConfig) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        config.default_entity = "tester".into();
        config.heartbeat_timeout = Duration::from_secs(60);
        let store = Arc::new(cairn_store::sqlite::open(dir.path(), StoreConfig { default_entity: "tester".into() }).unwrap());
        let router = router(AppState::new(store.clone(), config));
        TestApp { router, store, _dir: dir }
    }

    pub async fn request(&self, method: Method, uri: &str, content_type: Option<&str>, body: Vec<u8>) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        let response = self.router.clone().oneshot(builder.body(Body::from(body)).unwrap()).await.unwrap();
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let bytes = response.into_body().collect().await.unwrap().to_bytes().to_vec();
        Reply { status, content_type, bytes }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.request(Method::GET, uri, None, Vec::new()).await
    }

    pub async fn send_json(&self, method: Method, uri: &str, body: &Json) -> Reply {
        self.request(method, uri, Some("application/json"), serde_json::to_vec(body).unwrap()).await
    }

    pub async fn post(&self, uri: &str, body: &Json) -> Reply {
        self.send_json(Method::POST, uri, body).await
    }

    /// Creates a run and returns its API path (`/api/v1/runs/e/p/id`).
    pub async fn run(&self, entity: &str, project: &str, run_id: &str) -> String {
        let reply = self.post("/api/v1/runs", &serde_json::json!({"entity": entity, "project": project, "run_id": run_id})).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
        format!("/api/v1/runs/{entity}/{project}/{run_id}")
    }
}
