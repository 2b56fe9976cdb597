//! The web UI: the built app (`ui/dist`, embedded with rust-embed) at `/`, with a single-page-app
//! fallback to `index.html`. Without a built UI the server still compiles, and `/` names the
//! command that builds it.

use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../../ui/dist"]
struct Assets;

pub const BUILD_COMMAND: &str = "npm --prefix ui ci && npm --prefix ui run build";

fn not_built() -> Response {
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cairn</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 44rem; margin: 4rem auto; line-height: 1.5">
<h1>cairn</h1>
<p>The server is running, but this binary was built without the web UI. Build the UI, then the
server again:</p>
<pre style="background: #8882; padding: 1rem">{BUILD_COMMAND}
cargo build --release -p cairn_cli</pre>
<p>The REST API works meanwhile: <a href="/api/v1/entities">/api/v1</a>, described by
<a href="/api/v1/openapi.json">/api/v1/openapi.json</a>.</p>
</body></html>"#
    );
    ([(header::CACHE_CONTROL, "no-cache")], Html(page)).into_response()
}

fn asset(path: &str) -> Option<Response> {
    let file = Assets::get(path)?;
    let cache = if path.starts_with("assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    Some(([(header::CONTENT_TYPE, file.metadata.mimetype().to_owned()), (header::CACHE_CONTROL, cache.to_owned())], file.data.into_owned()).into_response())
}

/// Serves a file of the UI, or `index.html` for the app's own routes.
pub async fn serve(method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return crate::error::ApiError::new(cairn_types::ErrorCode::MethodNotAllowed, format!("{method} is not allowed on {}", uri.path())).into_response();
    }
    let path = uri.path().trim_start_matches('/');
    if let Some(response) = asset(path) {
        return response;
    }
    // A missing file under /assets/ is a stale link, not an app route.
    if path.starts_with("assets/") {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    asset("index.html").unwrap_or_else(not_built)
}

pub fn is_built() -> bool {
    Assets::get("index.html").is_some()
}
