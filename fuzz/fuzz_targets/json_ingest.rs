//! The JSON ingest body (`POST .../ingest` as `application/json`): converted to a batch, and
//! ingested by the real server into a run of its own.
#![no_main]
use axum::http::Method;
use cairn_types::Timestamp;
use cairn_types::api::IngestJson;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<IngestJson>(data) else { return };
    if json.into_batch(Timestamp(1_700_000_000_000_000)).is_ok() {
        let app = cairn_fuzz::app();
        let run = app.fresh_run();
        let answer = app.request(Method::POST, &format!("{run}/ingest"), "application/json", data.to_vec());
        cairn_fuzz::check_answer("ingest", &answer);
    }
});
