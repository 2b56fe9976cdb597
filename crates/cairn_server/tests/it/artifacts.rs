//! Artifacts over HTTP: upload contents, commit versions, read them back, aliases, lineage,
//! downloads and deletion.

use axum::http::Method;
use serde_json::{Value as Json, json};
use sha2::Digest as _;

use crate::TestApp;

async fn upload(app: &TestApp, bytes: &[u8]) -> String {
    let sha: String = sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
    let reply = app.request(Method::PUT, &format!("/api/v1/uploads/{sha}?offset=0&size={}", bytes.len()), None, bytes.to_vec()).await;
    assert_eq!(reply.json()["complete"], true);
    sha
}

#[tokio::test]
async fn versions_aliases_lineage_downloads_and_deletion() {
    let app = TestApp::new();
    app.run("e", "p", "maker").await;
    app.run("e", "p", "user").await;
    let (weights, config) = (b"weights of the model".to_vec(), b"{\"layers\": 3}".to_vec());
    let (w, c) = (upload(&app, &weights).await, upload(&app, &config).await);
    let entries = json!([
        {"path": "model/weights.bin", "digest": w, "size": weights.len()},
        {"path": "config.json", "digest": c, "size": config.len()},
        {"path": "data.tar", "digest": "\"etag\"", "size": 1000, "ref": "s3://bucket/data.tar"},
    ]);
    let body = json!({"name": "net", "type": "model", "aliases": ["best"], "entries": entries, "run_id": "maker", "metadata": {"acc": 0.9}});
    let v0 = app.post("/api/v1/projects/e/p/artifacts", &body).await;
    let v0 = v0.json();
    assert_eq!((v0["version"].as_str(), v0["file_count"].as_u64(), v0["logged_by"].as_str()), (Some("v0"), Some(3), Some("e/p/maker")), "{v0}");
    assert_eq!(v0["aliases"], json!(["best", "latest"]));
    // The same again: v0.
    assert_eq!(app.post("/api/v1/projects/e/p/artifacts", &body).await.json()["version"], "v0");
    let file = app.get("/api/v1/artifacts/e/p/net/best/files/model/weights.bin").await;
    assert_eq!((file.status.as_u16(), file.bytes.clone()), (200, weights.clone()));
    app.get("/api/v1/artifacts/e/p/net/v0/files/data.tar").await.assert_error(400, "invalid_value", "reference");
    app.get("/api/v1/artifacts/e/p/net/v0/files/nope").await.assert_error(404, "file_not_found", "nope");
    app.get("/api/v1/artifacts/e/p/net/v5").await.assert_error(404, "artifact_not_found", "net:v5");
    let manifest = app.get("/api/v1/artifacts/e/p/net/latest/manifest").await.json();
    assert_eq!(manifest[0]["path"], "config.json");
    assert_eq!(manifest[1]["ref"], "s3://bucket/data.tar");

    // Content that was never uploaded is refused by name.
    let missing = json!({"name": "net", "type": "model", "entries": [{"path": "x", "digest": "0".repeat(64), "size": 1}]});
    app.post("/api/v1/projects/e/p/artifacts", &missing).await.assert_error(404, "file_not_found", "x: content");
    let bad = json!({"name": "net", "type": "model", "entries": [{"path": "../x", "digest": w, "size": 1}]});
    app.post("/api/v1/projects/e/p/artifacts", &bad).await.assert_error(400, "invalid_value", "../x");

    // A run uses it; lineage both ways.
    let used = app.post("/api/v1/runs/e/p/user/artifacts/used", &json!({"artifact": "net:best"})).await;
    assert_eq!(used.json()["version"], "v0");
    let lineage = app.get("/api/v1/artifacts/e/p/net/v0/lineage").await.json();
    assert_eq!(lineage, json!({"logged_by": "e/p/maker", "used_by": ["e/p/user"]}));
    let of_user = app.get("/api/v1/runs/e/p/user/artifacts").await.json();
    assert_eq!((of_user["inputs"][0]["name"].as_str(), of_user["outputs"].as_array().unwrap().len()), (Some("net"), 0));
    let of_maker = app.get("/api/v1/runs/e/p/maker/artifacts").await.json();
    assert_eq!(of_maker["outputs"][0]["version"], "v0");

    // v1, aliases, collections and types.
    let body = json!({"name": "net", "type": "model", "entries": [{"path": "config.json", "digest": c, "size": config.len()}]});
    assert_eq!(app.post("/api/v1/projects/e/p/artifacts", &body).await.json()["aliases"], json!(["latest"]));
    let set = app.send_json(Method::PUT, "/api/v1/artifacts/e/p/net/v1/aliases", &json!({"aliases": ["best"]})).await.json();
    assert_eq!(set["aliases"], json!(["best", "latest"]));
    assert_eq!(app.get("/api/v1/artifacts/e/p/net/v0").await.json()["aliases"], json!([]));
    let versions = app.get("/api/v1/artifacts/e/p/net").await.json();
    assert_eq!(versions.as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap()).collect::<Vec<_>>(), ["v1", "v0"]);
    assert_eq!(app.get("/api/v1/projects/e/p/artifacts?type=model").await.json()[0]["version_count"], 2);
    assert_eq!(app.get("/api/v1/projects/e/p/artifacts?type=dataset").await.json(), json!([]));
    assert_eq!(app.get("/api/v1/projects/e/p/artifact-types").await.json(), json!(["model"]));

    // Deleting v0 removes the contents only it named; v1 keeps its own.
    assert_eq!(app.request(Method::DELETE, "/api/v1/artifacts/e/p/net/v0", None, Vec::new()).await.status, 204);
    assert_eq!(app.get(&format!("/api/v1/uploads/{w}")).await.json()["complete"], false, "the weights are gone");
    assert_eq!(app.get(&format!("/api/v1/uploads/{c}")).await.json()["complete"], true, "v1 names the config");
    app.request(Method::DELETE, "/api/v1/artifacts/e/p/net/v1", None, Vec::new()).await.assert_error(400, "invalid_value", "aliases");
    assert_eq!(app.request(Method::DELETE, "/api/v1/artifacts/e/p/net/v1?delete_aliases=true", None, Vec::new()).await.status, 204);
    app.get("/api/v1/artifacts/e/p/net/latest").await.assert_error(404, "artifact_not_found", "latest");
}

#[tokio::test]
async fn small_contents_go_in_batches_checked_one_by_one() {
    let app = TestApp::new();
    let (a, b) = (b"first".to_vec(), vec![9u8; 70_000]);
    let sha = |bytes: &[u8]| sha2::Sha256::digest(bytes).iter().map(|x| format!("{x:02x}")).collect::<String>();
    let body = cairn_types::api::encode_upload_batch(&[(&sha(&a), &a), (&sha(&b), &b)]);
    let ct = Some(cairn_types::api::UPLOAD_BATCH_CONTENT_TYPE);
    let first = app.request(Method::POST, "/api/v1/uploads/batch", ct, body.clone()).await.json();
    assert_eq!(first["stored"].as_array().unwrap().len(), 2, "{first}");
    let again = app.request(Method::POST, "/api/v1/uploads/batch", ct, body).await.json();
    assert_eq!((again["stored"].as_array().unwrap().len(), again["present"].as_array().unwrap().len()), (0, 2));
    assert_eq!(app.get(&format!("/api/v1/uploads/{}", sha(&b))).await.json()["complete"], true);
    // A content that is not what it claims, a truncated frame, a wrong type: refused by name.
    let lie = cairn_types::api::encode_upload_batch(&[(&sha(&a), b"not first")]);
    app.request(Method::POST, "/api/v1/uploads/batch", ct, lie).await.assert_error(400, "content_mismatch", "claims SHA-256");
    let mut cut = cairn_types::api::encode_upload_batch(&[(&sha(&a), &a)]);
    cut.truncate(cut.len() - 1);
    app.request(Method::POST, "/api/v1/uploads/batch", ct, cut).await.assert_error(400, "invalid_body", "truncated bytes");
    app.request(Method::POST, "/api/v1/uploads/batch", Some("application/json"), b"{}".to_vec()).await.assert_error(415, "unsupported_media_type", "x-cairn-contents");
}

/// A big content sent as chunks: the server says which it lacks, takes them in batches, checks
/// the composed whole against its hash, and serves it back whole.
#[tokio::test]
async fn a_content_composed_of_chunks_is_checked_and_served_whole() {
    let app = TestApp::new();
    app.run("e", "p", "maker").await;
    let sha = |bytes: &[u8]| sha2::Sha256::digest(bytes).iter().map(|x| format!("{x:02x}")).collect::<String>();
    let parts: Vec<Vec<u8>> = (0..5u32).map(|i| (0..40_000u32).map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i) >> 11) as u8).collect()).collect();
    let whole: Vec<u8> = parts.concat();
    let whole_sha = sha(&whole);
    let chunks: Vec<Json> = parts.iter().map(|p| json!({"sha256": sha(p), "size": p.len()})).collect();
    let names: Vec<String> = parts.iter().map(|p| sha(p)).collect();
    let ct = Some(cairn_types::api::UPLOAD_BATCH_CONTENT_TYPE);

    // Nothing held: composing names how many are missing.
    let missing = app.post("/api/v1/chunks/missing", &json!({"chunks": names})).await.json();
    assert_eq!(missing["chunks"].as_array().unwrap().len(), 5);
    let compose = format!("/api/v1/uploads/{whole_sha}/compose");
    app.post(&compose, &json!({"size": whole.len(), "chunks": chunks})).await.assert_error(409, "chunks_missing", "5 of its 5 chunks");
    let framed: Vec<(&str, &[u8])> = names.iter().zip(&parts).take(3).map(|(s, p)| (s.as_str(), p.as_slice())).collect();
    assert_eq!(app.request(Method::POST, "/api/v1/chunks", ct, cairn_types::api::encode_upload_batch(&framed)).await.json()["stored"].as_array().unwrap().len(), 3);
    let missing = app.post("/api/v1/chunks/missing", &json!({"chunks": names})).await.json();
    assert_eq!(missing["chunks"], json!([names[3].clone(), names[4].clone()].iter().collect::<std::collections::BTreeSet<_>>()));
    app.post(&compose, &json!({"size": whole.len(), "chunks": chunks})).await.assert_error(409, "chunks_missing", "2 of its 5 chunks");
    let framed: Vec<(&str, &[u8])> = names.iter().zip(&parts).skip(3).map(|(s, p)| (s.as_str(), p.as_slice())).collect();
    app.request(Method::POST, "/api/v1/chunks", ct, cairn_types::api::encode_upload_batch(&framed)).await;

    // Chunks that make another content, or a size that is not theirs: refused by name.
    let reversed: Vec<Json> = chunks.iter().rev().cloned().collect();
    app.post(&compose, &json!({"size": whole.len(), "chunks": reversed})).await.assert_error(400, "content_mismatch", "not");
    app.post(&compose, &json!({"size": whole.len() + 1, "chunks": chunks})).await.assert_error(400, "invalid_value", "bytes");
    app.post(&compose, &json!({"size": 1})).await.assert_error(400, "invalid_body", "chunks");
    assert_eq!(app.get(&format!("/api/v1/uploads/{whole_sha}")).await.json()["complete"], false);

    // Composed: held, named by an artifact, downloaded whole.
    let done = app.post(&compose, &json!({"size": whole.len(), "chunks": chunks})).await.json();
    assert_eq!((done["complete"].clone(), done["received"].clone()), (json!(true), json!(whole.len())));
    assert_eq!(app.get(&format!("/api/v1/uploads/{whole_sha}")).await.json()["received"], json!(whole.len()));
    let body = json!({"name": "ckpt", "type": "model", "run_id": "maker", "entries": [{"path": "model.pt", "digest": whole_sha, "size": whole.len()}]});
    assert_eq!(app.post("/api/v1/projects/e/p/artifacts", &body).await.json()["version"], "v0");
    let file = app.get("/api/v1/artifacts/e/p/ckpt/v0/files/model.pt").await;
    assert_eq!(file.status, 200);
    assert!(file.bytes == whole, "served back whole");
    assert_eq!(app.post("/api/v1/chunks/missing", &json!({"chunks": names})).await.json()["chunks"], json!([]));
    app.post("/api/v1/chunks/missing", &json!({"chunks": ["nope"]})).await.assert_error(400, "invalid_value", "SHA-256");
}
