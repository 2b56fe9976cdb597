//! The error response, and extractors whose rejections use it: every error the server sends is
//! `{"code": ..., "message": ...}` with the matching status, whatever failed.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_types::error::{CodedError, ErrorCode};
use serde::de::DeserializeOwned;

/// An error as the API returns it.
#[derive(Debug)]
pub struct ApiError(pub CodedError);

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError(CodedError::new(code, message))
    }
}

impl From<CodedError> for ApiError {
    fn from(e: CodedError) -> ApiError {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // The database or the bucket is away: clients retry, the server recovers by itself.
            tracing::warn!(code = self.0.code.as_str(), "{}", self.0.message);
        } else if status.is_server_error() {
            tracing::error!(code = self.0.code.as_str(), "{}", self.0.message);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Clients retry; a second is about what a backend takes to come back or fail over.
            return (status, [(axum::http::header::RETRY_AFTER, "1")], axum::Json(self.0.body())).into_response();
        }
        (status, axum::Json(self.0.body())).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Path parameters, with rejections in the API's error format.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParams(p.0))
            .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, format!("invalid path: {}", e.body_text())))
    }
}

/// Query parameters, with rejections in the API's error format (unknown parameters are refused).
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer).map(QueryParams).map_err(|e| {
            let path = e.path().to_string();
            let message = if path.is_empty() || path == "." { format!("invalid query string: {}", e.inner()) } else { format!("invalid query parameter {path}: {}", e.inner()) };
            ApiError::new(ErrorCode::InvalidQuery, message)
        })
    }
}

/// The largest request body accepted, set by the server's configuration.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Reads the whole body, refusing bodies over the limit and bodies that end early.
pub async fn read_body(request: Request, limit: usize) -> Result<(HeaderMap, axum::body::Bytes), ApiError> {
    let (parts, body) = request.into_parts();
    if let Some(length) = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && length > limit as u64
    {
        return Err(too_large(length, limit));
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let text = e.to_string();
        if std::error::Error::source(&e).is_some_and(|s| s.to_string().contains("length limit")) || text.contains("length limit") {
            ApiError::new(ErrorCode::PayloadTooLarge, format!("request body is larger than the limit of {limit} bytes"))
        } else {
            ApiError::new(ErrorCode::InvalidBody, format!("could not read the request body: {text}"))
        }
    })?;
    Ok((parts.headers, bytes))
}

fn too_large(length: u64, limit: usize) -> ApiError {
    ApiError::new(ErrorCode::PayloadTooLarge, format!("request body of {length} bytes is larger than the limit of {limit} bytes"))
}

pub fn content_type(headers: &HeaderMap) -> String {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase()).unwrap_or_default()
}

pub fn parse_json<T: DeserializeOwned>(headers: &HeaderMap, bytes: &[u8]) -> Result<T, ApiError> {
    let ct = content_type(headers);
    if !ct.is_empty() && ct != "application/json" {
        return Err(ApiError::new(ErrorCode::UnsupportedMediaType, format!("content type {ct:?} is not supported here; send application/json")));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let what = if e.inner().is_eof() { "JSON body is truncated" } else { "invalid JSON body" };
        let path = e.path().to_string();
        if path.is_empty() || path == "." {
            ApiError::new(ErrorCode::InvalidBody, format!("{what}: {}", e.inner()))
        } else {
            ApiError::new(ErrorCode::InvalidBody, format!("{what}: field {path}: {}", e.inner()))
        }
    })?;
    deserializer.end().map_err(|e| ApiError::new(ErrorCode::InvalidBody, format!("invalid JSON body: trailing characters: {e}")))?;
    Ok(value)
}

/// A JSON body, with rejections in the API's error format.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let limit = request.extensions().get::<BodyLimit>().map_or(1 << 20, |l| l.0);
        let (headers, bytes) = read_body(request, limit).await?;
        if bytes.is_empty() {
            // An empty body is the empty object: `POST .../finish` with no body finishes cleanly.
            return parse_json(&headers, b"{}").map(JsonBody);
        }
        parse_json(&headers, &bytes).map(JsonBody)
    }
}

/// A write the server could not make: a full disk is `storage_full` (507, retried by clients),
/// anything else an internal error naming what was written.
pub fn write_failed(what: &str, e: std::io::Error) -> CodedError {
    if cairn_types::error::is_disk_full(&e) {
        return cairn_types::error::storage_full(what);
    }
    CodedError::new(ErrorCode::Internal, format!("cannot write {what}: {e}"))
}
