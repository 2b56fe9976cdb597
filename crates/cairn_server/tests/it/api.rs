use axum::http::{Method, StatusCode};
use cairn_server::ServerConfig;
use cairn_types::map;
use cairn_types::value::Value;
use cairn_types::wire::{self, BatchWriter, KeyStream, payload};
use serde_json::{Value as Json, json};

use tower::ServiceExt;

use crate::TestApp;

#[tokio::test]
async fn info_and_openapi_document_every_route() {
    let app = TestApp::new();
    let info = app.get("/api/v1/info").await.json();
    assert_eq!(info["default_entity"], "tester");
    // The embedded database says what it holds in the heap (SQLite counts it itself).
    assert!(info["database_heap_bytes"].as_u64().is_some_and(|b| b > 0), "{info}");
    let doc = app.get("/api/v1/openapi.json").await.json();
    assert_eq!(doc["openapi"].as_str().unwrap().chars().next(), Some('3'));
    // Every route of the router's table, with its method, except the document itself.
    let state = cairn_server::AppState::new(app.store.clone(), ServerConfig::default());
    let table = cairn_server::route_table(&state);
    assert!(table.len() > 40, "{table:?}");
    for route in table.iter().filter(|r| r.path != "/api/v1/openapi.json") {
        let path = route.path.replace("{*file_path}", "{file_path}");
        let method = route.method.as_str().to_ascii_lowercase();
        assert!(doc["paths"][&path][&method].is_object(), "{} {path} is not documented", route.method);
        // Whatever else it answers, an error is an ErrorBody.
        assert_eq!(doc["paths"][&path][&method]["responses"]["default"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody", "{path}");
    }
    assert_eq!(doc["paths"].as_object().unwrap().len(), table.iter().map(|r| &r.path).collect::<std::collections::HashSet<_>>().len() - 1);
    let history = &doc["paths"]["/api/v1/runs/{entity}/{project}/{run_id}/history"]["get"]["parameters"];
    let names: Vec<&str> = history.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"min_step") && names.contains(&"keys"), "{names:?}");
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    // Operation ids are unique: the UI's types are generated from them.
    let mut ids = std::collections::HashSet::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for (_, op) in item.as_object().unwrap().iter().filter(|(method, _)| ["get", "put", "post", "delete", "patch"].contains(&method.as_str())) {
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        }
    }
}

#[tokio::test]
async fn entities_and_projects() {
    let app = TestApp::new();
    assert_eq!(app.get("/api/v1/entities").await.json(), json!([]));
    app.run("nico", "awesome", "r1").await;
    app.run("nico", "other", "r2").await;
    let entities = app.get("/api/v1/entities").await.json();
    assert_eq!(entities[0]["name"], "nico");
    assert_eq!(entities[0]["run_count"], 2);
    assert_eq!(app.get("/api/v1/entities/nico").await.json()["project_count"], 2);
    let projects = app.get("/api/v1/entities/nico/projects").await.json();
    assert_eq!(projects.as_array().unwrap().len(), 2);
    assert_eq!(app.get("/api/v1/projects/nico/awesome").await.json()["run_count"], 1);
    app.get("/api/v1/entities/ghost").await.assert_error(404, "entity_not_found", "ghost");
    app.get("/api/v1/entities/ghost/projects").await.assert_error(404, "entity_not_found", "ghost");
    app.get("/api/v1/projects/nico/ghost").await.assert_error(404, "project_not_found", "nico/ghost");
    app.get("/api/v1/entities/bad:name").await.assert_error(400, "invalid_name", "bad:name");
}

#[tokio::test]
async fn upsert_defaults_and_errors() {
    let app = TestApp::new();
    let run = app.post("/api/v1/runs", &json!({"run_id": "abc12345"})).await.json();
    assert_eq!((run["entity"].as_str(), run["project"].as_str()), (Some("tester"), Some("uncategorized")));
    assert_eq!(run["state"], "running");
    assert!(run["name"].as_str().unwrap().ends_with("-1"));
    assert!(run["created_at"].as_str().unwrap().ends_with('Z'));

    app.post("/api/v1/runs", &json!({"run_id": "bad/id"})).await.assert_error(400, "invalid_run_id", "bad/id");
    app.post("/api/v1/runs", &json!({"run_id": "x", "config": [1, 2]})).await.assert_error(400, "invalid_config", "list");
    app.post("/api/v1/runs", &json!({"run_id": "x", "colour": "red"})).await.assert_error(400, "invalid_body", "colour");
    app.post("/api/v1/runs", &json!({"run_id": "abc12345", "resume": "never"})).await.assert_error(409, "run_already_exists", "abc12345");
    app.post("/api/v1/runs", &json!({"run_id": "new", "resume": "must"})).await.assert_error(404, "run_not_found", "new");
    app.post("/api/v1/runs", &json!({"run_id": "x", "resume": "sometimes"})).await.assert_error(400, "invalid_body", "sometimes");
    app.request(Method::POST, "/api/v1/runs", Some("application/json"), br#"{"run_id": "trunc"#.to_vec()).await.assert_error(400, "invalid_body", "truncated");
    app.request(Method::POST, "/api/v1/runs", Some("text/plain"), br#"{"run_id": "x"}"#.to_vec()).await.assert_error(415, "unsupported_media_type", "text/plain");
    app.request(Method::POST, "/api/v1/runs", Some("application/json"), b"\xff\xfe".to_vec()).await.assert_error(400, "invalid_body", "JSON");
}

#[tokio::test]
async fn run_get_patch_delete() {
    let app = TestApp::new();
    let run = app.run("e", "p", "r1").await;
    let patched = app.send_json(Method::PATCH, &run, &json!({"notes": "<script>x</script>", "tags": ["a", "b"], "group": "g", "job_type": "eval"})).await.json();
    assert_eq!(patched["notes"], "<script>x</script>");
    assert_eq!(patched["tags"], json!(["a", "b"]));
    assert_eq!(app.get(&run).await.json()["job_type"], "eval");
    let cleared = app.send_json(Method::PATCH, &run, &json!({"group": ""})).await.json();
    assert_eq!(cleared["group"], Json::Null);
    app.send_json(Method::PATCH, &run, &json!({"name": "  "})).await.assert_error(400, "invalid_value", "name");
    app.send_json(Method::PATCH, &run, &json!({"tags": [""]})).await.assert_error(400, "invalid_value", "tag");
    app.send_json(Method::PATCH, &run, &json!({"state": "killed"})).await.assert_error(400, "invalid_body", "state");
    let deleted = app.request(Method::DELETE, &run, None, Vec::new()).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.get(&run).await.assert_error(404, "run_not_found", "e/p/r1");
    app.get("/api/v1/runs/e/p/ghost").await.assert_error(404, "run_not_found", "ghost");
}

fn history_batch(offset: u64, steps: std::ops::Range<u64>) -> Json {
    let rows: Vec<Json> = steps.map(|s| json!({"_step": s, "loss": s as f64 / 10.0, "train": {"acc": s}})).collect();
    json!({"history": {"offset": offset, "rows": rows}})
}

#[tokio::test]
async fn ingest_json_is_idempotent_and_reports_gaps() {
    let app = TestApp::new();
    let run = app.run("e", "p", "r1").await;
    let ingest = format!("{run}/ingest");
    let ack = app.post(&ingest, &history_batch(0, 0..10)).await.json();
    assert_eq!(ack["offsets"]["history"], 10);
    assert_eq!(ack["points"], 20);
    let again = app.post(&ingest, &history_batch(0, 0..10)).await.json();
    assert_eq!((again["offsets"]["history"].as_u64(), again["points"].as_u64()), (Some(10), Some(0)));
    let gap = app.post(&ingest, &history_batch(20, 20..25)).await;
    gap.assert_error(409, "offset_gap", "expects offset 10");
    assert_eq!(gap.json()["expected_offsets"]["history"], 10);
    app.post(&ingest, &history_batch(10, 10..20)).await;
    let rows = app.get(&format!("{run}/history?limit=100")).await.json();
    assert_eq!(rows["rows"].as_array().unwrap().len(), 20);
    assert_eq!(rows["rows"][3]["train"]["acc"], 3);
    assert_eq!(rows["rows"][3]["_step"], 3);
    assert!(rows["rows"][3]["_timestamp"].is_f64());

    app.post(&ingest, &json!({"histroy": {}})).await.assert_error(400, "invalid_body", "histroy");
    app.post(&ingest, &json!({"history": {"offset": 20, "rows": [{"loss": 1}]}})).await.assert_error(400, "invalid_step", "_step");
    app.post(&ingest, &json!({"history": {"offset": 20, "rows": [{"_step": 5}]}})).await.assert_error(400, "invalid_step", "19");
    app.post("/api/v1/runs/e/p/ghost/ingest", &history_batch(0, 0..1)).await.assert_error(404, "run_not_found", "ghost");
    app.request(Method::POST, &ingest, Some("text/csv"), b"a,b".to_vec()).await.assert_error(415, "unsupported_media_type", "csv");
}

#[tokio::test]
async fn nan_infinity_big_strings_and_wide_rows_are_stored() {
    let app = TestApp::new();
    let run = app.run("e", "p", "r1").await;
    let huge = "z".repeat(1 << 20);
    let mut row = serde_json::Map::new();
    row.insert("_step".into(), json!(0));
    for i in 0..10_000 {
        row.insert(format!("k{i}"), json!(i as f64 + 0.5));
    }
    row.insert("nan".into(), json!("NaN"));
    row.insert("inf".into(), json!("Infinity"));
    row.insert("ninf".into(), json!("-Infinity"));
    row.insert("huge".into(), json!(huge));
    let reply = app.post(&format!("{run}/ingest"), &json!({"history": {"offset": 0, "rows": [row]}})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
    let rows = app.get(&format!("{run}/history?keys=nan,inf,ninf,huge,k9999")).await.json();
    let row = &rows["rows"][0];
    assert_eq!((row["nan"].as_str(), row["inf"].as_str(), row["ninf"].as_str()), (Some("NaN"), Some("Infinity"), Some("-Infinity")));
    assert_eq!(row["huge"].as_str().unwrap().len(), 1 << 20);
    assert_eq!(row["k9999"], 9999.5);
    let summary = app.get(&run).await.json()["summary"].clone();
    assert_eq!(summary["nan"], "NaN");
    assert_eq!(summary.as_object().unwrap().len(), 10_004);
    let keys = app.get(&format!("{run}/keys")).await.json();
    assert_eq!(keys.as_array().unwrap().len(), 10_004);
}

fn binary_batch(first_seq: u64, rows: u64) -> Vec<u8> {
    let mut batch = BatchWriter::new();
    let mut p = Vec::new();
    payload::key_def(&mut p, 3, KeyStream::History, &["loss"]);
    batch.push_payload(&p);
    for i in 0..rows {
        p.clear();
        let seq = first_seq + i;
        payload::history_head(&mut p, seq, seq as i64, wire::HISTORY_SEALED, 1_700_000_000_000_000 + seq as i64, seq as i64, 1);
        payload::history_float_field(&mut p, 3, if seq == 5 { f64::NAN } else { seq as f64 });
        batch.push_payload(&p);
    }
    batch.finish()
}

#[tokio::test]
async fn ingest_binary_batches_and_refuses_broken_ones() {
    let app = TestApp::new();
    let run = app.run("e", "p", "r1").await;
    let ingest = format!("{run}/ingest");
    let body = binary_batch(0, 100);
    for _ in 0..2 {
        let ack = app.request(Method::POST, &ingest, Some(wire::BATCH_CONTENT_TYPE), body.clone()).await.json();
        assert_eq!(ack["offsets"]["history"], 100);
    }
    app.request(Method::POST, &ingest, Some(wire::BATCH_CONTENT_TYPE), body[..body.len() - 3].to_vec()).await.assert_error(400, "invalid_body", "truncated");
    app.request(Method::POST, &ingest, Some(wire::BATCH_CONTENT_TYPE), b"garbage!".to_vec()).await.assert_error(400, "invalid_body", "CRNB");
    let mut corrupt = binary_batch(100, 10);
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    app.request(Method::POST, &ingest, Some(wire::BATCH_CONTENT_TYPE), corrupt).await.assert_error(400, "invalid_body", "batch");
    // Nothing of the broken batches was stored.
    assert_eq!(app.get(&run).await.json()["offsets"]["history"], 100);

    let columns = app.get(&format!("{run}/history?keys=loss&format=binary&limit=1000")).await;
    assert_eq!(columns.content_type, wire::COLUMNS_CONTENT_TYPE);
    let decoded = wire::decode_columns(&columns.bytes).unwrap();
    assert_eq!(decoded.steps, (0..100).collect::<Vec<i64>>());
    match &decoded.columns[0].data {
        wire::ColumnValues::Floats(values, present) => {
            assert!(values[5].is_nan());
            assert_eq!(values[99], 99.0);
            assert!(present.iter().all(|p| *p));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let app = TestApp::with_config(ServerConfig { max_body_bytes: 10_000, ..Default::default() });
    let run = app.run("e", "p", "r1").await;
    let reply = app.post(&format!("{run}/ingest"), &history_batch(0, 0..1000)).await;
    reply.assert_error(413, "payload_too_large", "10000");
    app.post("/api/v1/runs", &json!({"run_id": "big", "notes": "n".repeat(20_000)})).await.assert_error(413, "payload_too_large", "limit");
}

#[tokio::test]
async fn lifecycle_heartbeat_stop_finish() {
    let app = TestApp::new();
    let run = app.run("e", "p", "r1").await;
    let hb = app.post(&format!("{run}/heartbeat"), &json!({})).await.json();
    assert_eq!(hb, json!({"stop": false, "state": "running"}));
    assert_eq!(app.post(&format!("{run}/stop"), &json!({})).await.json()["stop_requested"], true);
    assert_eq!(app.post(&format!("{run}/heartbeat"), &json!({})).await.json()["stop"], true);
    let killed = app.post(&format!("{run}/finish"), &json!({"state": "killed"})).await.json();
    assert_eq!(killed["state"], "killed");
    app.post(&format!("{run}/stop"), &json!({})).await.assert_error(409, "run_finished", "killed");

    let run2 = app.run("e", "p", "r2").await;
    let failed = app.request(Method::POST, &format!("{run2}/finish"), Some("application/json"), br#"{"exit_code": 3}"#.to_vec()).await.json();
    assert_eq!((failed["state"].as_str(), failed["exit_code"].as_i64()), (Some("failed"), Some(3)));
    let run3 = app.run("e", "p", "r3").await;
    let finished = app.request(Method::POST, &format!("{run3}/finish"), None, Vec::new()).await.json();
    assert_eq!(finished["state"], "finished");
    app.post(&format!("{run3}/finish"), &json!({"state": "running"})).await.assert_error(400, "invalid_value", "finished");
    // An import ends a run whose process died as crashed, when it stopped.
    let run4 = app.run("e", "p", "r4").await;
    let crashed = app.post(&format!("{run4}/finish"), &json!({"state": "crashed", "finished_at": "2026-01-02T03:04:05Z"})).await.json();
    assert_eq!((crashed["state"].as_str(), crashed["finished_at"].as_str(), crashed["exit_code"].as_i64()), (Some("crashed"), Some("2026-01-02T03:04:05Z"), None));
    app.post(&format!("{run3}/finish"), &json!({"exit_code": "3"})).await.assert_error(400, "invalid_body", "exit_code");
}

#[tokio::test]
async fn history_formats_and_query_errors() {
    let app = TestApp::new();
    let run = app.run("e", "p", "r1").await;
    app.post(&format!("{run}/ingest"), &history_batch(0, 0..50)).await;
    let columns = app.get(&format!("{run}/history?keys=loss,train.acc&format=columns&min_step=10&max_step=20")).await.json();
    assert_eq!(columns["steps"], json!((10..20).collect::<Vec<i64>>()));
    assert_eq!(columns["columns"]["train.acc"][0], 10);
    let page = app.get(&format!("{run}/history?keys=loss&limit=20")).await.json();
    assert_eq!(page["next_step"], 20);
    let next = app.get(&format!("{run}/history?keys=loss&limit=20&min_step=40")).await.json();
    assert_eq!(next["next_step"], Json::Null);
    app.get(&format!("{run}/history?format=xml")).await.assert_error(400, "invalid_query", "xml");
    app.get(&format!("{run}/history?limit=0")).await.assert_error(400, "invalid_query", "limit");
    app.get(&format!("{run}/history?limit=1000000")).await.assert_error(400, "invalid_query", "limit");
    app.get(&format!("{run}/history?min_step=abc")).await.assert_error(400, "invalid_query", "min_step");
    app.get(&format!("{run}/history?color=red")).await.assert_error(400, "invalid_query", "color");
    app.get(&format!("{run}/history?keys=nope")).await.assert_error(404, "key_not_found", "loss");
    app.get(&format!("{run}/history?min_step=5&max_step=1")).await.assert_error(400, "invalid_query", "min_step");
    app.get(&format!("{run}/history?require=some")).await.assert_error(400, "invalid_query", "some");
}

#[tokio::test]
async fn series_buckets() {
    let app = TestApp::new();
    let run = app.run("e", "p", "r1").await;
    let rows: Vec<Json> = (0..10_000).map(|s| json!({"_step": s, "loss": if s == 7777 { 100.0 } else { 1.0 }})).collect();
    app.post(&format!("{run}/ingest"), &json!({"history": {"offset": 0, "rows": rows}})).await;
    let result = app.get(&format!("{run}/series?keys=loss&buckets=10")).await.json();
    let buckets = &result["series"][0]["buckets"];
    assert_eq!(buckets["count"].as_array().unwrap().len(), 10);
    assert_eq!(buckets["max"][7], 100.0);
    assert_eq!(buckets["min"][7], 1.0);
    let zoomed = app.get(&format!("{run}/series?keys=loss&buckets=5&x_min=7775&x_max=7779")).await.json();
    assert_eq!(zoomed["series"][0]["buckets"]["x"], json!([7775.0, 7776.0, 7777.0, 7778.0, 7779.0]));
    let by_runtime = app.get(&format!("{run}/series?keys=loss&x=_runtime&buckets=3")).await.json();
    assert_eq!(by_runtime["x"], "_runtime");
    app.get(&format!("{run}/series?keys=loss&buckets=0")).await.assert_error(400, "invalid_query", "buckets");
    app.get(&format!("{run}/series?keys=loss&x_min=5&x_max=1")).await.assert_error(400, "invalid_query", "x_min");
    app.get(&format!("{run}/series?keys=loss&x_min=inf")).await.assert_error(400, "invalid_query", "x_min");
    app.get(&format!("{run}/series")).await.assert_error(400, "invalid_query", "keys");
    app.get(&format!("{run}/series?keys=ghost")).await.assert_error(404, "key_not_found", "ghost");
    app.get(&format!("{run}/series?keys=loss&x=ghost")).await.assert_error(404, "key_not_found", "ghost");
}

#[tokio::test]
async fn console_and_system_streams() {
    let app = TestApp::new();
    let run = app.run("e", "p", "r1").await;
    let batch = json!({
        "console": {"offset": 0, "lines": [{"line": 0, "text": "start"}, {"line": 1, "text": "10%"}, {"line": 1, "text": "100%"}, {"line": 2, "text": "warn", "stream": "stderr"}]},
        "system": {"offset": 0, "rows": [{"_timestamp": 1.7e9, "system.cpu": 12.5}, {"_timestamp": 1.7e9 + 10.0, "system.cpu": 50}]}
    });
    app.post(&format!("{run}/ingest"), &batch).await;
    let console = app.get(&format!("{run}/console")).await.json();
    let texts: Vec<&str> = console["lines"].as_array().unwrap().iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["start", "100%", "warn"]);
    assert_eq!(console["lines"][2]["stream"], "stderr");
    let system = app.get(&format!("{run}/history?stream=system&format=columns")).await.json();
    assert_eq!(system["columns"]["system.cpu"], json!([12.5, 50.0]));
    app.post(&format!("{run}/ingest"), &json!({"console": {"offset": 4, "lines": [{"line": 3, "text": "x", "stream": "stdwhat"}]}})).await.assert_error(
        400,
        "invalid_value",
        "stdwhat",
    );
}

#[tokio::test]
async fn files_upload_and_download() {
    let app = TestApp::new();
    let run = app.run("e", "p", "r1").await;
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let put = app.request(Method::PUT, &format!("{run}/files/ckpt/model.bin"), Some("application/octet-stream"), content.clone()).await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(put.json()["size"], 200_000);
    let list = app.get(&format!("{run}/files")).await.json();
    assert_eq!(list[0]["path"], "ckpt/model.bin");
    let got = app.get(&format!("{run}/files/ckpt/model.bin")).await;
    assert_eq!(got.bytes, content);
    app.get(&format!("{run}/files/nope.txt")).await.assert_error(404, "file_not_found", "nope.txt");
    app.request(Method::PUT, &format!("{run}/files/a/../b"), None, b"x".to_vec()).await.assert_error(400, "invalid_value", "..");
    app.request(Method::PUT, "/api/v1/runs/e/p/ghost/files/a", None, b"x".to_vec()).await.assert_error(404, "run_not_found", "ghost");
}

#[tokio::test]
async fn an_upload_claimed_by_another_server_waits_for_its_lease() {
    use cairn_store::Leases as _;
    use sha2::Digest;
    let app = TestApp::new();
    let content = b"weights".to_vec();
    let sha: String = sha2::Sha256::digest(&content).iter().map(|b| format!("{b:02x}")).collect();
    // Another server (another holder) is uploading the same content.
    let now = cairn_types::Timestamp::now();
    assert!(app.store.try_lease(&format!("upload:{sha}"), "other-server/1", now, std::time::Duration::from_secs(30)).unwrap());
    let put = format!("/api/v1/uploads/{sha}?offset=0&size={}", content.len());
    app.request(Method::PUT, &put, None, content.clone()).await.assert_error(409, "upload_in_progress", "retry");
    // Its lease goes (it finished, or died and the lease lapsed): this one goes through, and
    // gives its own claim back.
    app.store.release(&format!("upload:{sha}"), "other-server/1").unwrap();
    assert_eq!(app.request(Method::PUT, &put, None, content.clone()).await.json()["complete"], true);
    let mut free = false;
    for _ in 0..100 {
        free = app.store.try_lease(&format!("upload:{sha}"), "third/1", cairn_types::Timestamp::now(), std::time::Duration::from_secs(30)).unwrap();
        if free {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(free, "the request kept its claim after it ended");
}

#[tokio::test]
async fn uploads_resume_from_what_the_server_holds_and_store_each_content_once() {
    use sha2::Digest;
    let app = TestApp::new();
    let run = app.run("e", "p", "r1").await;
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let sha: String = sha2::Sha256::digest(&content).iter().map(|b| format!("{b:02x}")).collect();
    let size = content.len();
    let status = app.get(&format!("/api/v1/uploads/{sha}")).await.json();
    assert_eq!(status, json!({"sha256": sha, "received": 0, "complete": false}));
    // Naming a content that is not uploaded is refused.
    app.request(Method::PUT, &format!("{run}/files/m.bin?sha256={sha}"), None, Vec::new()).await.assert_error(404, "file_not_found", "not uploaded");
    // A first part, then a part sent from the wrong offset, then the rest.
    let first = app.request(Method::PUT, &format!("/api/v1/uploads/{sha}?offset=0&size={size}"), None, content[..100_000].to_vec()).await.json();
    assert_eq!(first["received"], 100_000);
    assert_eq!(first["complete"], false);
    app.request(Method::PUT, &format!("/api/v1/uploads/{sha}?offset=0&size={size}"), None, content[..10].to_vec()).await.assert_error(
        409,
        "upload_offset",
        "send from offset 100000",
    );
    assert_eq!(app.get(&format!("/api/v1/uploads/{sha}")).await.json()["received"], 100_000);
    let last = app.request(Method::PUT, &format!("/api/v1/uploads/{sha}?offset=100000&size={size}"), None, content[100_000..].to_vec()).await.json();
    assert_eq!(last["complete"], true);
    let linked = app.request(Method::PUT, &format!("{run}/files/ckpt/m.bin?sha256={sha}"), None, Vec::new()).await.json();
    assert_eq!(linked["size"], size);
    assert_eq!(app.get(&format!("{run}/files/ckpt/m.bin")).await.bytes, content);
    // Another run names the same content without sending it.
    let run2 = app.run("e", "p", "r2").await;
    app.request(Method::PUT, &format!("{run2}/files/copy.bin?sha256={sha}"), None, Vec::new()).await.json();
    assert_eq!(app.get(&format!("{run2}/files/copy.bin")).await.bytes, content);
    // A content that does not match its SHA-256 is refused, and nothing is kept of it.
    let wrong = "0".repeat(64);
    app.request(Method::PUT, &format!("/api/v1/uploads/{wrong}?offset=0&size=3"), None, b"abc".to_vec()).await.assert_error(400, "content_mismatch", "upload it again");
    assert_eq!(app.get(&format!("/api/v1/uploads/{wrong}")).await.json()["received"], 0);
    // Bad input is named.
    app.get("/api/v1/uploads/XYZ").await.assert_error(400, "invalid_value", "XYZ");
    app.request(Method::PUT, &format!("/api/v1/uploads/{wrong}?offset=5&size=3"), None, Vec::new()).await.assert_error(400, "invalid_query", "offset 5");
    app.request(Method::PUT, &format!("/api/v1/uploads/{wrong}?offset=0&size=2"), None, b"abc".to_vec()).await.assert_error(400, "invalid_body", "longer than its size 2");
}

#[tokio::test]
async fn runs_search_get_and_post() {
    let app = TestApp::new();
    for i in 0..6 {
        let run = app.run("team", "proj", &format!("r{i}")).await;
        app.post(
            &format!("{run}/ingest"),
            &json!({
                "config": {"offset": 0, "updates": [{"set": {"lr": i as f64 / 10.0}}]},
                "history": {"offset": 0, "rows": [{"_step": 0, "acc": i}]}
            }),
        )
        .await;
    }
    let filter = urlencode(&json!({"config.lr": {"$gte": 0.2}}).to_string());
    let page = app.get(&format!("/api/v1/projects/team/proj/runs?filter={filter}&sort=-summary.acc&limit=2")).await.json();
    assert_eq!(page["total"], 4);
    let ids: Vec<&str> = page["runs"].as_array().unwrap().iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["r5", "r4"]);
    let posted = app.post("/api/v1/projects/team/proj/runs/search", &json!({"filter": {"summary.acc": {"$in": [1, 3]}}, "sort": ["run_id"]})).await.json();
    assert_eq!(posted["runs"].as_array().unwrap().len(), 2);
    app.get("/api/v1/projects/team/proj/runs?filter=%7Bnope").await.assert_error(400, "invalid_filter", "JSON");
    app.post("/api/v1/projects/team/proj/runs/search", &json!({"filter": {"config.lr": {"$near": 1}}})).await.assert_error(400, "invalid_filter", "$near");
    app.get("/api/v1/projects/team/proj/runs?sort=-tags").await.assert_error(400, "invalid_query", "tags");
    app.get("/api/v1/projects/team/ghost/runs").await.assert_error(404, "project_not_found", "ghost");
}

fn urlencode(text: &str) -> String {
    text.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let app = TestApp::new();
    app.get("/api/v1/nothing/here").await.assert_error(404, "route_not_found", "/api/v1/nothing/here");
    app.request(Method::DELETE, "/api/v1/entities", None, Vec::new()).await.assert_error(405, "method_not_allowed", "DELETE");
    app.request(Method::GET, "/api/v1/runs", None, Vec::new()).await.assert_error(405, "method_not_allowed", "GET");
}

#[tokio::test]
async fn no_malformed_request_panics_the_server() {
    let app = TestApp::new();
    let run = app.run("e", "p", "r1").await;
    let mut rng = fastrand::Rng::with_seed(7);
    let ingest = format!("{run}/ingest");
    let seed = binary_batch(0, 20);
    for _ in 0..300 {
        let mut body = seed.clone();
        for _ in 0..rng.usize(1..8) {
            let i = rng.usize(..body.len());
            body[i] = rng.u8(..);
        }
        let reply = app.request(Method::POST, &ingest, Some(wire::BATCH_CONTENT_TYPE), body).await;
        assert!(reply.status.is_success() || reply.status.is_client_error() || reply.status == StatusCode::CONFLICT, "{}", reply.status);
    }
    for query in ["keys=%FF", "limit=-1", "min_step=9223372036854775807", "max_step=-9223372036854775808", "keys=,,,", "x_min=1e400"] {
        for endpoint in ["history", "series", "console"] {
            let reply = app.get(&format!("{run}/{endpoint}?{query}")).await;
            assert!(reply.status.is_client_error() || reply.status.is_success(), "{endpoint}?{query}: {}", reply.status);
            reply.json();
        }
    }
    for body in [json!(null), json!([]), json!("x"), json!({"history": null}), json!({"history": {"offset": -1, "rows": []}})] {
        let reply = app.post(&ingest, &body).await;
        assert!(reply.status.is_client_error() || reply.status.is_success(), "{body}: {}", reply.status);
    }
    // The server still works.
    assert_eq!(app.get(&run).await.status, StatusCode::OK);
    let _ = Value::Map(map! {});
}

#[tokio::test]
async fn project_columns_keys_series_and_groups() {
    let app = TestApp::new();
    for (i, opt) in ["adam", "sgd", "adam"].iter().enumerate() {
        let reply = app.post("/api/v1/runs", &json!({"entity": "e", "project": "p", "run_id": format!("r{i}"), "config": {"opt": opt, "net": {"depth": i}}})).await;
        assert_eq!(reply.status, 200);
        let rows: Vec<Json> = (0..100).map(|s| json!({"_step": s, "loss": if s == 50 && i == 1 { 99.0 } else { s as f64 }, "train/acc": i})).collect();
        let reply = app.post(&format!("/api/v1/runs/e/p/r{i}/ingest"), &json!({"history": {"offset": 0, "rows": rows}})).await;
        assert_eq!(reply.status, 200, "{}", reply.json());
    }
    let columns = app.get("/api/v1/projects/e/p/columns").await.json();
    assert_eq!(columns["config"], json!(["net.depth", "opt"]));
    assert!(columns["summary"].as_array().unwrap().contains(&json!("loss")));
    let keys = app.get("/api/v1/projects/e/p/keys").await.json();
    let loss = keys.as_array().unwrap().iter().find(|k| k["name"] == "loss").unwrap();
    assert_eq!((loss["runs"].as_u64(), loss["numeric"].as_bool(), loss["stream"].as_str()), (Some(3), Some(true), Some("history")));

    // One grid for every run: the spike of r1 is in its bucket's max.
    let series = app.post("/api/v1/projects/e/p/series", &json!({"run_ids": ["r0", "r1", "missing"], "keys": ["loss"], "buckets": 10})).await.json();
    let runs = series["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{series}");
    let r1 = &runs.iter().find(|r| r["run_id"] == "r1").unwrap()["series"][0]["buckets"];
    assert_eq!(r1["max"][5], 99.0);
    assert_eq!(r1["count"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).sum::<u64>(), 100);
    assert_eq!(r1["index"].as_array().unwrap().len(), 10);
    let zoomed = app.post("/api/v1/projects/e/p/series", &json!({"run_ids": ["r1"], "keys": ["loss"], "buckets": 5, "x_min": 40, "x_max": 59})).await.json();
    assert_eq!(zoomed["runs"][0]["series"][0]["buckets"]["count"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).sum::<u64>(), 20);
    // Only the arrays asked for, values as 32-bit floats (x stays exact).
    let slim = app.post("/api/v1/projects/e/p/series", &json!({"run_ids": ["r1"], "keys": ["loss"], "buckets": 4, "fields": ["index", "x", "max"], "float32": true})).await.json();
    let b = &slim["runs"][0]["series"][0]["buckets"];
    let mut names: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["index", "max", "x"]);
    assert_eq!(b["max"][2], 99.0);
    app.post("/api/v1/projects/e/p/series", &json!({"run_ids": ["r1"], "keys": ["loss"], "fields": ["median"]})).await.assert_error(
        400,
        "invalid_query",
        "unknown bucket field \"median\"",
    );
    app.post("/api/v1/projects/e/p/series", &json!({"run_ids": ["r1"], "keys": ["loss"], "buckets": 0})).await.assert_error(400, "invalid_query", "buckets");
    app.post("/api/v1/projects/e/p/series", &json!({"run_ids": ["r1"], "keys": ["loss"], "x_min": 5, "x_max": 1})).await.assert_error(400, "invalid_query", "x_min");

    let groups = app.post("/api/v1/projects/e/p/runs/groups", &json!({"by": "config.opt", "columns": ["summary.loss"]})).await.json();
    let counts: Vec<(Json, u64)> = groups["groups"].as_array().unwrap().iter().map(|g| (g["value"].clone(), g["count"].as_u64().unwrap())).collect();
    assert_eq!(counts, [(json!("adam"), 2), (json!("sgd"), 1)]);
    assert_eq!(groups["groups"][0]["columns"]["summary.loss"]["count"], 2);
    app.post("/api/v1/projects/e/p/runs/groups", &json!({"by": ""})).await.assert_error(400, "invalid_query", "by");
    app.get("/api/v1/projects/e/nope/columns").await.assert_error(404, "project_not_found", "nope");
}

#[tokio::test]
async fn events_stream_names_the_runs_that_change() {
    use futures_util::StreamExt;
    let app = TestApp::new();
    let path = app.run("e", "p", "live").await;
    app.run("e", "other", "quiet").await;
    let response = app.router.clone().oneshot(axum::http::Request::get("/api/v1/events?entity=e&project=p").body(axum::body::Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body().into_data_stream();
    // A change in another project is not sent; one in this project is.
    app.post("/api/v1/runs/e/other/quiet/ingest", &history_batch(0, 0..1)).await;
    app.post(&format!("{path}/ingest"), &history_batch(0, 0..3)).await;
    let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), body.next()).await.expect("an event").unwrap().unwrap();
    let text = String::from_utf8_lossy(&chunk).to_string();
    assert!(text.starts_with("event: run\n"), "{text}");
    let data: Json = serde_json::from_str(text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    assert_eq!((data["kind"].as_str(), data["run_id"].as_str(), data["history_offset"].as_u64()), (Some("logged"), Some("live"), Some(3)));
    app.post(&format!("{path}/stop"), &json!({})).await;
    let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), body.next()).await.expect("an event").unwrap().unwrap();
    assert!(String::from_utf8_lossy(&chunk).contains("\"kind\":\"stopped\""), "{}", String::from_utf8_lossy(&chunk));
    app.get("/api/v1/events?bogus=1").await.assert_error(400, "invalid_query", "bogus");
}

#[tokio::test]
async fn the_web_ui_is_served_with_an_app_fallback() {
    let app = TestApp::new();
    let home = app.get("/").await;
    assert_eq!(home.status, 200);
    assert!(home.content_type.starts_with("text/html"), "{}", home.content_type);
    let text = String::from_utf8_lossy(&home.bytes).to_string();
    // Built or not, the page says what it is: the app, or the command that builds it.
    if cairn_server::ui::is_built() {
        assert!(text.contains("<div id=\"app\">"), "{text}");
    } else {
        assert!(text.contains(cairn_server::ui::BUILD_COMMAND), "{text}");
    }
    // The app's own routes get the same page; missing assets and API routes do not.
    let deep = app.get("/nico/awesome-project/runs/1jx1ud12?tab=logs").await;
    assert_eq!((deep.status.as_u16(), deep.bytes.clone()), (200, home.bytes.clone()));
    assert_eq!(app.get("/assets/missing-abc.js").await.status, 404);
    app.get("/api/v1/nothing").await.assert_error(404, "route_not_found", "/api/v1/nothing");
    app.request(Method::POST, "/somewhere", None, Vec::new()).await.assert_error(405, "method_not_allowed", "POST");
}

#[tokio::test]
async fn answers_are_gzipped_for_clients_that_ask() {
    let app = TestApp::new();
    app.run("e", "p", "r").await;
    let rows: Vec<Json> = (0..2000).map(|s| json!({"_step": s, "loss": s as f64})).collect();
    app.post("/api/v1/runs/e/p/r/ingest", &json!({"history": {"offset": 0, "rows": rows}})).await;
    let request = || axum::http::Request::get("/api/v1/runs/e/p/r/history?keys=loss");
    let plain = app.router.clone().oneshot(request().body(axum::body::Body::empty()).unwrap()).await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let gzipped = app.router.clone().oneshot(request().header("accept-encoding", "gzip").body(axum::body::Body::empty()).unwrap()).await.unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
}
