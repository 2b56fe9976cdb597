//! The web UI. Until the UI is built, the server answers `/` with a page that says how to build it.

use axum::Router;
use axum::response::Html;
use axum::routing::get;

use crate::AppState;

const PLACEHOLDER: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cairn</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto">
<h1>cairn</h1>
<p>The server is running. The REST API is at <a href="/api/v1/entities">/api/v1</a>, documented by
<a href="/api/v1/openapi.json">/api/v1/openapi.json</a>.</p>
</body></html>"#;

pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(|| async { Html(PLACEHOLDER) }))
}
