//! `POST /files/{entity}/{project}/{run}/file_stream`: what the client streams of a run.
//! - `wandb-history.jsonl`: one row per line, the line's number its offset in the run's history,
//!   so a retried request stores nothing twice;
//! - `wandb-summary.json`: the whole summary in one line, which replaces the run's;
//! - `wandb-events.jsonl`: system metrics, by line like history;
//! - `output.log`: console lines, each replacing the line at its number (progress bars rewrite);
//! - `complete` and `exitcode`: the run's end (255: stopped or interrupted);
//! - `preempting`: `run.mark_preempting()`, the run may go silent (the crash monitor waits longer).
//!
//! A request with none of these is a heartbeat. The answer says `stopped` when the run was asked
//! to stop.

use std::collections::BTreeMap;

use axum::Json as AxumJson;
use axum::extract::State;
use cairn_types::api::{FinishRequest, IngestJson, JsonConsole, JsonConsoleLine, JsonRows, JsonUpdate, JsonUpdates, RunState};
use cairn_types::error::{CodedError, ErrorCode};
use cairn_types::value::Map;
use cairn_types::{RunPath, Timestamp, Value};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::AppState;
use crate::error::{ApiResult, JsonBody, PathParams};

/// What the client streams: lines of its files by offset, and at the end `complete` and `exitcode`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct FileStreamRequest {
    #[serde(default)]
    files: BTreeMap<String, Chunk>,
    #[serde(default)]
    complete: Option<bool>,
    #[serde(default)]
    exitcode: Option<i64>,
    #[serde(default)]
    preempting: Option<bool>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
struct Chunk {
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    content: Vec<String>,
}

fn bad(message: String) -> CodedError {
    CodedError::new(ErrorCode::InvalidBody, message)
}

/// A line of JSON as a map of cairn values.
fn json_line(file: &str, line: u64, text: &str) -> Result<Map, CodedError> {
    match serde_json::from_str::<Json>(text) {
        Ok(v @ Json::Object(_)) => match Value::from_json(&v) {
            Value::Map(m) => Ok(m),
            _ => Err(bad(format!("{file} line {line} is not a JSON object"))),
        },
        Ok(_) => Err(bad(format!("{file} line {line} is not a JSON object"))),
        Err(e) => Err(bad(format!("{file} line {line} is not JSON: {e}"))),
    }
}

/// An `output.log` line: `<UTC time> text`, `ERROR <UTC time> text` for stderr, or with
/// structured console logs `{"ts": ..., "content": ..., "level": "error"}`.
fn console_line(line: u64, raw: &str) -> JsonConsoleLine {
    if raw.starts_with('{')
        && let Ok(Json::Object(o)) = serde_json::from_str::<Json>(raw)
        && let Some(content) = o.get("content").and_then(Json::as_str)
    {
        let stderr = o.get("level").and_then(Json::as_str) == Some("error");
        let time = o.get("ts").and_then(Json::as_str).and_then(parse_time);
        let label = o.get("label").and_then(Json::as_str).map(|l| format!("[{l}] ")).unwrap_or_default();
        return JsonConsoleLine { line, stream: stderr.then(|| "stderr".to_owned()), time, text: format!("{label}{content}") };
    }
    let (stderr, rest) = match raw.strip_prefix("ERROR ") {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    let (time, text) = match rest.split_once(' ').and_then(|(ts, text)| Some((parse_time(ts)?, text))) {
        Some((t, text)) => (Some(t), text),
        None => (None, rest),
    };
    JsonConsoleLine { line, stream: stderr.then(|| "stderr".to_owned()), time, text: text.to_owned() }
}

/// `2026-12-01T08:19:28.363152`, UTC without its `Z`.
fn parse_time(text: &str) -> Option<Timestamp> {
    if text.len() < 19 || text.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    // By `get`: byte 19 may fall inside a character of a line that only looks like a time.
    let zoned = if text.ends_with('Z') || text.get(19..)?.contains(['+', '-']) { text.to_owned() } else { format!("{text}Z") };
    Timestamp::parse_rfc3339(&zoned).ok()
}

/// The client's keys of its own in a summary (`_wandb`, `_step`, `_runtime`, `_timestamp`) are
/// the run's facts in cairn, not summary values.
fn summary_of(line: Map) -> Map {
    line.into_iter().filter(|(k, _)| !k.starts_with('_')).collect()
}

/// The answer: `stopped` asks the client to stop the run.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct FileStreamResponse {
    stopped: bool,
    #[schema(value_type = Option<i64>)]
    exitcode: Option<i64>,
    #[schema(value_type = Object)]
    limits: Json,
}

#[utoipa::path(post, path = "/files/{entity}/{project}/{run_id}/file_stream", tag = "wandb",
    params(("entity" = String, Path), ("project" = String, Path), ("run_id" = String, Path)), request_body = FileStreamRequest,
    responses((status = 200, description = "Stored; `stopped` when the run was asked to stop", body = FileStreamResponse),
        (status = 400, description = "A line is not what its file holds", body = cairn_types::ErrorBody), (status = 404, body = cairn_types::ErrorBody)))]
pub async fn file_stream(
    State(state): State<AppState>,
    PathParams((entity, project, run_id)): PathParams<(String, String, String)>,
    JsonBody(request): JsonBody<FileStreamRequest>,
) -> ApiResult<AxumJson<Json>> {
    let path = RunPath::new(entity, project, run_id);
    path.validate()?;
    let store = state.store.clone();
    let p = path.clone();
    let run = crate::service::blocking(move || store.get_run(&p)).await?;
    let mut json = IngestJson::default();
    for (name, chunk) in request.files {
        let mut lines = chunk.content.iter().enumerate().map(|(i, text)| (chunk.offset + i as u64, text.as_str()));
        match name.as_str() {
            "wandb-history.jsonl" => {
                let rows = lines.map(|(n, text)| json_line(&name, n, text)).collect::<Result<Vec<_>, _>>()?;
                json.history = Some(JsonRows { offset: chunk.offset, rows });
            }
            "wandb-events.jsonl" => {
                let rows = lines
                    .map(|(n, text)| {
                        let mut row = json_line(&name, n, text)?;
                        row.retain(|k, v| k == "_timestamp" || (!k.starts_with('_') && matches!(v, Value::Int(_) | Value::Float(_))));
                        Ok(row)
                    })
                    .collect::<Result<Vec<_>, CodedError>>()?;
                json.system = Some(JsonRows { offset: chunk.offset, rows });
            }
            "wandb-summary.json" => {
                // The whole summary: the last line holds it.
                if let Some((n, text)) = lines.next_back() {
                    let summary = summary_of(json_line(&name, n, text)?);
                    let remove = run.summary.keys().filter(|k| !summary.contains_key(*k)).cloned().collect();
                    json.summary = Some(JsonUpdates { offset: run.offsets.summary, updates: vec![JsonUpdate { set: summary, remove }] });
                }
            }
            "output.log" => {
                let lines: Vec<JsonConsoleLine> = lines.map(|(n, text)| console_line(n, text)).collect();
                if !lines.is_empty() {
                    json.console = Some(JsonConsole { offset: run.offsets.console, lines });
                }
            }
            // Other files (a debug log, say) are the client's own.
            _ => {}
        }
    }
    if request.preempting == Some(true) && run.state == RunState::Running && run.preempting_at.is_none() {
        state.mark_preempting(path.clone()).await?;
    }
    let has_data = json.history.is_some() || json.system.is_some() || json.summary.is_some() || json.console.is_some();
    let mut stopped = run.stop_requested;
    if has_data && run.state == RunState::Running {
        let ack = state.ingest(path.clone(), move |now| json.into_batch(now)).await?;
        stopped = ack.stop;
    } else if run.state == RunState::Running {
        stopped = state.heartbeat(path.clone()).await?.stop;
    }
    if request.complete == Some(true) && run.state == RunState::Running {
        let code = request.exitcode.unwrap_or(0).clamp(i32::MIN as i64, i32::MAX as i64) as i32;
        // 255 is what the client sends for a run stopped from the server or interrupted.
        let finish = if code == 255 && (stopped || run.stop_requested) {
            FinishRequest { exit_code: Some(code), state: Some(RunState::Killed), ..Default::default() }
        } else {
            FinishRequest { exit_code: Some(code), ..Default::default() }
        };
        state.finish_run(path, finish).await?;
    }
    Ok(AxumJson(json!({"exitcode": null, "limits": {}, "stopped": stopped})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_lose_their_time_and_keep_their_stream() {
        let out = console_line(3, "2026-12-01T08:19:28.363152 step 1 done");
        assert_eq!((out.line, out.stream.as_deref(), out.text.as_str()), (3, None, "step 1 done"));
        assert_eq!(out.time.unwrap().to_rfc3339()[..19], *"2026-12-01T08:19:28");
        let err = console_line(4, "ERROR 2026-12-01T08:19:29.000001 Traceback (most recent call last):");
        assert_eq!((err.stream.as_deref(), err.text.as_str()), (Some("stderr"), "Traceback (most recent call last):"));
        let plain = console_line(5, "no time here");
        assert_eq!((plain.time, plain.text.as_str()), (None, "no time here"));
        let structured = console_line(6, r#"{"ts":"2026-12-01T08:24:01.295215","content":"started","level":"error","label":"rank0"}"#);
        assert_eq!((structured.stream.as_deref(), structured.text.as_str()), (Some("stderr"), "[rank0] started"));
        // Found by the file_stream fuzz target: a character across byte 19 of a time-like word.
        let odd = console_line(7, "2026-12-01T08:19:2é hello");
        assert_eq!((odd.time, odd.text.as_str()), (None, "2026-12-01T08:19:2é hello"));
    }
}
