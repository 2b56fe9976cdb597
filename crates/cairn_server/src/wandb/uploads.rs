//! Upload URLs for run files. The official client PUTs a file to the URL `CreateRunFiles` gave
//! it, with no credentials, so the URL carries its own: the run, the file's name and an expiry,
//! signed (HMAC-SHA256) with a secret of the deployment that every server on the store shares.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use cairn_types::api::FileInfo;
use cairn_types::error::{CodedError, ErrorCode};
use cairn_types::{RunPath, Timestamp};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::{ApiResult, PathParams};
use crate::service::blocking;

/// How long an upload URL works: the client retries an upload for a long time.
const VALID_FOR_SECS: i64 = 7 * 24 * 3600;

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    cairn_types::chunking::hex(bytes)
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

async fn secret(state: &AppState) -> Result<String, CodedError> {
    let store = state.store.clone();
    blocking(move || store.server_secret("wandb-upload-urls")).await
}

/// The server's own address as the client reached it.
pub(crate) fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get("x-forwarded-host").or_else(|| headers.get("host")).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1:8080");
    let scheme = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).unwrap_or("http");
    format!("{scheme}://{host}")
}

/// A URL that takes the file `name` of the run `path`, for a week.
pub(crate) async fn upload_url(state: &AppState, base: &str, path: &RunPath, name: &str) -> Result<String, CodedError> {
    let expires = Timestamp::now().as_secs_f64() as i64 + VALID_FOR_SECS;
    let payload = format!("{}\n{}\n{}\n{name}\n{expires}", path.entity, path.project, path.run_id);
    Ok(format!("{base}/files-upload/{}", sign(state, payload.as_bytes()).await?))
}

/// `payload` and its signature with this server's secret, as one token (hex, a dot, hex).
pub(crate) async fn sign(state: &AppState, payload: &[u8]) -> Result<String, CodedError> {
    let signature = hmac(secret(state).await?.as_bytes(), payload);
    Ok(format!("{}.{}", hex(payload), hex(&signature)))
}

/// The payload of a token [`sign`] made; `None` for anything else.
pub(crate) async fn verify(state: &AppState, token: &str) -> Result<Option<Vec<u8>>, CodedError> {
    let Some((payload, signature)) = token.split_once('.') else { return Ok(None) };
    let (Some(payload), Some(signature)) = (unhex(payload), unhex(signature)) else { return Ok(None) };
    let expected = hmac(secret(state).await?.as_bytes(), &payload);
    // Compared in constant time.
    if signature.len() != expected.len() || signature.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
        return Ok(None);
    }
    Ok(Some(payload))
}

fn refused(message: &str) -> CodedError {
    CodedError::new(ErrorCode::InvalidValue, format!("this upload URL {message}; ask for a new one (CreateRunFiles)"))
}

#[utoipa::path(put, path = "/files-upload/{token}", tag = "wandb",
    params(("token" = String, Path, description = "What CreateRunFiles handed out: the run, the file and an expiry, signed")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, description = "The file is the run's", body = FileInfo),
        (status = 400, description = "The URL is forged or expired", body = cairn_types::ErrorBody), (status = 404, body = cairn_types::ErrorBody)))]
pub async fn upload(State(state): State<AppState>, PathParams(token): PathParams<String>, request: Request) -> ApiResult<Json<FileInfo>> {
    let payload = verify(&state, &token).await?.ok_or_else(|| refused("is not one cairn made"))?;
    let text = String::from_utf8(payload).map_err(|_| refused("is not one cairn made"))?;
    let parts: Vec<&str> = text.split('\n').collect();
    let [entity, project, run_id, name, expires] = parts.as_slice() else { return Err(refused("is not one cairn made").into()) };
    if expires.parse::<i64>().map_or(true, |e| e < Timestamp::now().as_secs_f64() as i64) {
        return Err(refused("has expired").into());
    }
    let path = RunPath::new(*entity, *project, *run_id);
    path.validate()?;
    crate::api::validate_file_path(name)?;
    state.require_run(&path).await?;
    let scratch = crate::api::receive_file(&state, request).await?;
    Ok(Json(state.store_file(path, name.to_string(), scratch).await?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 of RFC 4231.
        let mac = super::hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(super::hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert_eq!(super::unhex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(super::unhex("0g"), None);
    }
}
