//! A binary ingest batch (`application/x-cairn-batch`), as a client sends it: the decoder, each
//! record's decoder, the contents-upload decoder, and a batch that decodes, ingested by the real
//! server into a run of its own.
#![no_main]
use axum::http::Method;
use cairn_types::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cairn_types::api::decode_upload_batch(data);
    if let wire::Frame::Record(payload) = wire::read_frame(data) {
        let _ = wire::decode_record(payload);
    }
    if let Ok(batch) = wire::decode_batch(data) {
        let _ = batch.point_count();
        let app = cairn_fuzz::app();
        let run = app.fresh_run();
        let answer = app.request(Method::POST, &format!("{run}/ingest"), wire::BATCH_CONTENT_TYPE, data.to_vec());
        cairn_fuzz::check_answer("ingest", &answer);
    }
});
