//! `POST /graphql`, as the official wandb client and `wandb.Api()` send it, to the real server.
#![no_main]
use axum::http::Method;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let app = cairn_fuzz::app();
    let answer = app.request(Method::POST, "/graphql", "application/json", data.to_vec());
    cairn_fuzz::check_answer("graphql", &answer);
});
