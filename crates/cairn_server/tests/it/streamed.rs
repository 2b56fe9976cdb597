//! Every answer, downloaded over a real socket as a browser does (`Accept-Encoding: gzip`), has the
//! same bytes as the plain answer. A file download under the gzip layer once reset the connection
//! (its stream panicked when polled after its end), which no in-process test could see.

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cairn_server::{ServerConfig, serve};
use cairn_store::StoreConfig;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection, read to the end; the body is de-chunked and, when
/// the answer says gzip, decompressed.
async fn request(addr: SocketAddr, method: &str, path: &str, gzip: bool, body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let accept = if gzip { "Accept-Encoding: gzip, deflate, br\r\n" } else { "" };
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    // A reset connection is the failure this test is for: report it as such.
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("the answer did not end within 30 s")
        .unwrap_or_else(|e| panic!("{method} {path} (gzip: {gzip}): the connection failed: {e}"));
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("no end of headers");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines.map(|l| l.split_once(':').unwrap()).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let mut answer = Answer { status, headers, body: raw[split + 4..].to_vec() };
    if answer.header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        answer.body = dechunk(&answer.body);
    } else if let Some(length) = answer.header("content-length") {
        assert_eq!(answer.body.len(), length.parse::<usize>().unwrap(), "{path}: body shorter than its Content-Length");
    }
    if answer.header("content-encoding") == Some("gzip") {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&answer.body[..]).read_to_end(&mut plain).unwrap_or_else(|e| panic!("{path}: the gzip body is cut or corrupt: {e}"));
        answer.body = plain;
    }
    answer
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = body.windows(2).position(|w| w == b"\r\n").expect("chunk size line is cut (the stream ended early)");
        let size = usize::from_str_radix(std::str::from_utf8(&body[..end]).unwrap().split(';').next().unwrap(), 16).unwrap();
        body = &body[end + 2..];
        if size == 0 {
            return out;
        }
        assert!(body.len() >= size + 2, "chunk is cut (the stream ended early)");
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

async fn start() -> (SocketAddr, tempfile::TempDir, tokio::sync::oneshot::Sender<()>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(cairn_store::sqlite::open(dir.path(), StoreConfig { default_entity: "tester".into() }).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = ServerConfig { default_entity: "tester".into(), ..ServerConfig::default() };
    tokio::spawn(serve(listener, store, config, async move {
        stopped.await.ok();
    }));
    (addr, dir, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_the_same_gzipped_or_not() {
    let (addr, _dir, _stop) = start().await;
    let run = "/api/v1/runs/e/p/r1";
    let created = request(addr, "POST", "/api/v1/runs", false, json!({"entity": "e", "project": "p", "run_id": "r1"}).to_string().as_bytes()).await;
    assert_eq!(created.status, 200, "{}", String::from_utf8_lossy(&created.body));
    let rows: Vec<_> = (0..3000).map(|s| json!({"_step": s, "loss": 1.0 / (s as f64 + 1.0)})).collect();
    let batch = json!({"history": {"offset": 0, "rows": rows}, "console": {"offset": 0, "lines": [{"line": 0, "text": "epoch 1", "stream": "stdout"}]}});
    assert_eq!(request(addr, "POST", &format!("{run}/ingest"), false, batch.to_string().as_bytes()).await.status, 200);

    // Files of every size class: empty, tiny (below the compression threshold), text that
    // compresses, random bytes over several 64 KiB reads.
    let mut random = vec![0u8; 700_001];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for b in &mut random {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = state as u8;
    }
    let text: Vec<u8> = (0..40_000).flat_map(|i| format!("line {i}: loss {}\n", 1.0 / (i as f64 + 1.0)).into_bytes()).collect();
    let files: [(&str, Vec<u8>); 4] = [("empty.txt", Vec::new()), ("tiny.txt", b"ok".to_vec()), ("output.log", text), ("ckpt/model.bin", random)];
    for (name, content) in &files {
        let put = request(addr, "PUT", &format!("{run}/files/{name}"), false, content).await;
        assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    }

    let mut paths: Vec<String> = files.iter().map(|(name, _)| format!("{run}/files/{name}")).collect();
    paths.extend(
        [
            format!("{run}/history?limit=5000"),
            format!("{run}/series?keys=loss&buckets=500"),
            format!("{run}/console"),
            format!("{run}/files"),
            format!("{run}/keys"),
            "/api/v1/projects/e/p/runs".to_owned(),
            "/api/v1/openapi.json".to_owned(),
            "/".to_owned(),
        ]
        .into_iter(),
    );
    for path in &paths {
        let plain = request(addr, "GET", path, false, b"").await;
        let gzipped = request(addr, "GET", path, true, b"").await;
        assert_eq!((plain.status, gzipped.status), (200, 200), "{path}: {}", String::from_utf8_lossy(&plain.body));
        assert!(plain.body == gzipped.body, "{path}: {} bytes plain, {} gzipped", plain.body.len(), gzipped.body.len());
        if let Some((_, content)) = files.iter().find(|(name, _)| path.ends_with(name)) {
            assert!(plain.body == *content, "{path}: the download differs from the upload");
            assert!(gzipped.header("content-disposition").is_some_and(|v| v.contains("attachment")), "{path}");
        }
    }
    // A download keeps its size, so that a browser shows progress; JSON is compressed.
    let model = request(addr, "GET", &format!("{run}/files/ckpt/model.bin"), true, b"").await;
    assert_eq!(model.header("content-encoding"), None);
    assert_eq!(model.header("content-length"), Some("700001"));
    let history = request(addr, "GET", &format!("{run}/history?limit=5000"), true, b"").await;
    assert_eq!(history.header("content-encoding"), Some("gzip"));

    // The project series (POST) too.
    let query = json!({"run_ids": ["r1"], "keys": ["loss"], "buckets": 300}).to_string();
    let plain = request(addr, "POST", "/api/v1/projects/e/p/series", false, query.as_bytes()).await;
    let gzipped = request(addr, "POST", "/api/v1/projects/e/p/series", true, query.as_bytes()).await;
    assert_eq!((plain.status, gzipped.status), (200, 200));
    assert!(plain.body == gzipped.body);
    let series: serde_json::Value = serde_json::from_slice(&plain.body).unwrap();
    assert_eq!(series["runs"][0]["series"][0]["extent"], json!([0.0, 2999.0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_is_not_compressed_and_delivers() {
    let (addr, _dir, _stop) = start().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!("GET /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nAccept-Encoding: gzip\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // Wait for the headers, then make an event happen.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "the event stream closed");
        seen.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&seen).to_lowercase();
    assert!(head.contains("text/event-stream") && !head.contains("content-encoding"), "{head}");
    request(addr, "POST", "/api/v1/runs", false, json!({"entity": "e", "project": "p", "run_id": "r2"}).to_string().as_bytes()).await;
    while !String::from_utf8_lossy(&seen).contains("r2") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await.expect("no event within 10 s").unwrap();
        assert!(n > 0, "the event stream closed");
        seen.extend_from_slice(&buf[..n]);
    }
}
