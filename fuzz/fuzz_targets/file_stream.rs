//! `POST /files/{entity}/{project}/{run}/file_stream`, the official wandb client's stream of a
//! run's history, summary, system metrics and console, to the real server, for a run of its own.
#![no_main]
use axum::http::Method;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if serde_json::from_slice::<serde_json::Value>(data).is_err() {
        return;
    }
    let app = cairn_fuzz::app();
    let run = app.fresh_run();
    let id = run.rsplit('/').next().expect("an id");
    let answer = app.request(Method::POST, &format!("/files/fuzz/p/{id}/file_stream"), "application/json", data.to_vec());
    cairn_fuzz::check_answer("file_stream", &answer);
});
