//! The runs filter: its text form (`cairn runs list --filter`, the UI's filter box) and its
//! JSON form, parsed, then resolved and compiled to SQL by the real store and run against runs
//! with config, summary and tags, as a search and as a grouping.
#![no_main]
use cairn_types::filter::Filter;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let app = cairn_fuzz::app();
    if let Ok(filter) = Filter::parse_str(text) {
        let _ = format!("{filter:?}");
    }
    // The JSON form, as the search and group requests carry it.
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        let _ = Filter::parse(&value);
        let search = app.post_json(&format!("{}/runs/search", cairn_fuzz::PROJECT), &json!({"filter": value, "sort": ["-summary.loss"], "limit": 5}));
        cairn_fuzz::check_answer("search", &search);
        let group = app.post_json(&format!("{}/runs/groups", cairn_fuzz::PROJECT), &json!({"by": "config.opt", "filter": value, "columns": ["summary.acc"]}));
        cairn_fuzz::check_answer("groups", &group);
    } else if text.len() < 200 {
        // A sort key or group field is text too.
        let search = app.post_json(&format!("{}/runs/search", cairn_fuzz::PROJECT), &json!({"sort": [text], "limit": 5}));
        cairn_fuzz::check_answer("search sort", &search);
        let group = app.post_json(&format!("{}/runs/groups", cairn_fuzz::PROJECT), &json!({"by": text, "columns": [text]}));
        cairn_fuzz::check_answer("groups by", &group);
    }
});
