//! `cargo run --release -p cairn_bench -- [all|log|ingest|query|storage|runs|project]`, and
//! `cairn-bench ui-data DIR`, which writes the project of the UI render benchmark (`ui/bench/`).
//!
//! Prints the figures the DESIGN bars are about. Nothing here asserts: the machine is shared and
//! noisy, so compare ratios and repeat. Each figure is the median of several repetitions.
//!
//! The store benchmarks run on the embedded store, and also on PostgreSQL, side by side, when
//! `CAIRN_BENCH_POSTGRES` names a database (each case gets a fresh schema in it).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_client::{Mode, Settings, Value, map};
use cairn_server::ServerConfig;
use cairn_store::sql::SqlStore;
use cairn_store::{HistoryRequest, RunStore, SeriesStore, StoreConfig};
use cairn_types::api::{RunSearch, SeriesQuery, UpsertRunRequest};
use cairn_types::wire::{self, BatchWriter, KeyStream, payload};
use cairn_types::{RunPath, Timestamp};

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn store(dir: &Path) -> SqlStore {
    cairn_store::sqlite::open(dir, StoreConfig { default_entity: "bench".into() }).unwrap()
}

/// A backend the store benchmarks run on.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// The backends to compare: SQLite always, PostgreSQL when `CAIRN_BENCH_POSTGRES` is set.
fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Sqlite];
    if std::env::var_os("CAIRN_BENCH_POSTGRES").is_some() {
        out.push(Backend::Postgres);
    }
    out
}

/// A fresh store on a backend, with what keeps it alive.
struct Bench {
    store: SqlStore,
    backend: Backend,
    dir: tempfile::TempDir,
    _schema: Option<cairn_store::postgres::testing::SchemaGuard>,
}

impl Bench {
    fn new(backend: Backend) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let (store, schema) = match backend {
            Backend::Sqlite => (store(dir.path()), None),
            Backend::Postgres => {
                let (url, guard) = cairn_store::postgres::testing::schema_in(&std::env::var("CAIRN_BENCH_POSTGRES").unwrap());
                let blobs = std::sync::Arc::new(cairn_store::blob::LocalBlobStore::open(&dir.path().join("blobs")).unwrap());
                (cairn_store::postgres::open(&url, StoreConfig { default_entity: "bench".into() }, blobs).unwrap(), Some(guard))
            }
        };
        Bench { store, backend, dir, _schema: schema }
    }

    fn label(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "[sqlite]  ",
            Backend::Postgres => "[postgres]",
        }
    }

    /// What the store takes on disk: the SQLite file after a checkpoint, or the schema's tables
    /// with their indexes and TOAST (after `VACUUM FULL` with `vacuum`, which returns the space
    /// of rows that later writes replaced).
    fn bytes(&self, vacuum: bool) -> u64 {
        match self.backend {
            Backend::Sqlite => cairn_store::sqlite::file_bytes(&self.dir.path().join("cairn.db")).unwrap(),
            Backend::Postgres => cairn_store::postgres::schema_bytes(&self.store, vacuum).unwrap(),
        }
    }
}

fn new_run(store: &SqlStore, run_id: &str) -> RunPath {
    store
        .upsert_run(UpsertRunRequest { entity: Some("bench".into()), project: Some("bench".into()), run_id: run_id.into(), ..Default::default() }, Timestamp::now())
        .unwrap()
        .path()
}

/// A binary batch of `rows` history rows of `values(step)` under keys `k0..kn`.
fn batch(first: u64, rows: u64, keys: usize, value: impl Fn(u64, usize) -> f64) -> Vec<u8> {
    let names: Vec<String> = (0..keys).map(|k| format!("k{k}")).collect();
    named_batch(first, rows, &names, value)
}

/// A binary batch of `rows` history rows with one float per key name.
fn named_batch(first: u64, rows: u64, names: &[String], value: impl Fn(u64, usize) -> f64) -> Vec<u8> {
    let keys = names.len();
    let mut b = BatchWriter::new();
    let mut p = Vec::new();
    for (k, name) in names.iter().enumerate() {
        p.clear();
        payload::key_def(&mut p, k as u64, KeyStream::History, std::slice::from_ref(name));
        b.push_payload(&p);
    }
    let t0 = Timestamp::now().micros();
    for i in first..first + rows {
        p.clear();
        payload::history_head(&mut p, i, i as i64, wire::HISTORY_SEALED, t0 + i as i64 * 1000, i as i64 * 1000, keys);
        for k in 0..keys {
            payload::history_float_field(&mut p, k as u64, value(i, k));
        }
        b.push_payload(&p);
    }
    b.finish()
}

/// Logs `steps` rows of `keys` floats (`step * 1e-3 + key index`) through the fast row API.
fn log_floats(run: &cairn_client::Run, keys: &[String], steps: usize) {
    for step in 0..steps {
        let base = step as f64 * 1e-3;
        run.log_with(None, None, |row| {
            for (j, key) in keys.iter().enumerate() {
                row.float(key, base + j as f64)?;
            }
            Ok(())
        })
        .unwrap();
    }
}

fn bench_log() {
    println!("\n## Rust client log() (offline mode: the write-ahead log only)");
    let dir = tempfile::tempdir().unwrap();
    let settings = || Settings::new().mode(Mode::Offline).dir(dir.path().to_owned()).silent(true).project("bench");
    let keys10: Vec<String> = (0..10).map(|k| format!("m{k}")).collect();
    let keys1000: Vec<String> = (0..1000).map(|k| format!("w{k:04}")).collect();
    for (label, keys, steps) in [("10 floats", &keys10, 1_000_000usize), ("1,000 keys", &keys1000, 10_000)] {
        let mut per_call = Vec::new();
        for _ in 0..5 {
            let run = cairn_client::init(settings()).unwrap();
            let t = Instant::now();
            log_floats(&run, keys, steps);
            per_call.push(t.elapsed().as_secs_f64() / steps as f64);
            run.finish(None).unwrap();
        }
        println!("log() of {label}: {:.3} µs per call (median of 5 × {steps} calls)", median(per_call) * 1e6);
    }
    // The generic API, with a map built per call (what a user writes).
    let run = cairn_client::init(settings()).unwrap();
    let steps = 200_000;
    let t = Instant::now();
    for step in 0..steps {
        let v = step as f64;
        run.log([("loss", v), ("acc", v), ("lr", v), ("m3", v), ("m4", v), ("m5", v), ("m6", v), ("m7", v), ("m8", v), ("m9", v)]).unwrap();
    }
    println!("log([(&str, f64); 10]) generic API: {:.3} µs per call", t.elapsed().as_secs_f64() / steps as f64 * 1e6);
    run.finish(None).unwrap();
    let disabled = cairn_client::init(Settings::new().mode(Mode::Disabled)).unwrap();
    let t = Instant::now();
    for _ in 0..1_000_000 {
        disabled.log([("loss", 1.0)]).unwrap();
    }
    println!("log() when disabled: {:.1} ns per call", t.elapsed().as_secs_f64() / 1e6 * 1e9);
}

fn serve(dir: &Path) -> (String, tokio::runtime::Runtime) {
    serve_with(dir, ServerConfig::default(), |_| {}).0
}

/// A server on a free port with `config`; `prepare` runs on its store first. Returns the URL,
/// the runtime that serves, and what `prepare` returned.
fn serve_with<R>(dir: &Path, config: ServerConfig, prepare: impl FnOnce(&dyn cairn_store::Store) -> R) -> ((String, tokio::runtime::Runtime), R) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let store: Arc<dyn cairn_store::Store> = Arc::new(store(dir));
    let prepared = prepare(store.as_ref());
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(cairn_server::serve(listener, store, config, std::future::pending()));
    ((url, runtime), prepared)
}

/// Authorization on the hot path: the same ingest with auth off and on (an API key on every
/// request, checked against the one-second cache), interleaved so that the machine's noise
/// falls on both.
fn bench_auth() {
    println!("\n## Auth on the hot path (off vs on, interleaved, median of 5)");
    let mut small = [Vec::new(), Vec::new()];
    let mut whole = [Vec::new(), Vec::new()];
    for _rep in 0..5 {
        for (i, on) in [false, true].into_iter().enumerate() {
            let data = tempfile::tempdir().unwrap();
            let mut config = ServerConfig::default();
            config.auth.enabled = on;
            let ((url, runtime), key) = serve_with(data.path(), config, |s| {
                s.create_user("bench", false, Timestamp::now()).unwrap();
                s.create_api_key("bench", "bench", None, Timestamp::now()).unwrap().1
            });
            let key = on.then_some(key);
            // Many small requests: 2,000 batches of 10 rows × 10 floats, one request each.
            let api = cairn_client::http::ApiClient::new(&url, key.clone(), Duration::from_secs(30));
            let request = cairn_types::api::UpsertRunRequest { entity: Some("bench".into()), project: Some("auth".into()), run_id: "small".into(), ..Default::default() };
            let path = api.upsert_run(&request).unwrap().path();
            let bodies: Vec<Vec<u8>> = (0..2_000u64).map(|b| batch(b * 10, 10, 10, |i, k| (i + k as u64) as f64)).collect();
            let t = Instant::now();
            for body in &bodies {
                api.ingest(&path, body).unwrap();
            }
            small[i].push(bodies.len() as f64 / t.elapsed().as_secs_f64());
            // The client end to end: 200k steps × 10 floats, finish included.
            let work = tempfile::tempdir().unwrap();
            let mut settings = Settings::new().base_url(url.clone()).dir(work.path().to_owned()).silent(true).entity("bench").project("auth");
            if let Some(key) = &key {
                settings = settings.api_key(key.clone());
            }
            let keys: Vec<String> = (0..10).map(|k| format!("m{k}")).collect();
            let t = Instant::now();
            let run = cairn_client::init(settings).unwrap();
            log_floats(&run, &keys, 200_000);
            assert!(run.finish(None).unwrap().uploaded);
            whole[i].push(2_000_000.0 / t.elapsed().as_secs_f64());
            drop(runtime);
        }
    }
    let (small_off, small_on) = (median(small[0].clone()), median(small[1].clone()));
    let (whole_off, whole_on) = (median(whole[0].clone()), median(whole[1].clone()));
    println!("small batches over HTTP (10 rows × 10 floats each): auth off {small_off:.0} req/s, on {small_on:.0} req/s (on/off {:.3})", small_on / small_off);
    println!("client end to end (200k steps × 10 floats): auth off {:.2} M points/s, on {:.2} M points/s (on/off {:.3})", whole_off / 1e6, whole_on / 1e6, whole_on / whole_off);
}

fn bench_ingest() {
    println!("\n## Ingest");
    // Server side: decode + store, batches as the client sends them (10,000 rows × 10 floats).
    for backend in backends() {
        let mut rates = Vec::new();
        let mut label = "";
        for rep in 0..3 {
            let b = Bench::new(backend);
            label = b.label();
            let s = &b.store;
            let path = new_run(s, &format!("r{rep}"));
            let rows = 10_000u64;
            let batches: Vec<Vec<u8>> = (0..50).map(|b| batch(b * rows, rows, 10, |i, k| (i as f64 * 1e-3 + k as f64).sin())).collect();
            let t = Instant::now();
            for body in &batches {
                s.ingest(&path, wire::decode_batch(body).unwrap(), Timestamp::now()).unwrap();
            }
            rates.push(5_000_000.0 / t.elapsed().as_secs_f64());
        }
        println!("{label} store (decode + ingest, no HTTP): {:.2} M points/s (5M points, 10 keys, median of 3)", median(rates) / 1e6);
    }

    // End to end: a client logs 1M steps × 10 floats online; the clock stops when finish returns
    // with everything acknowledged by the server (HTTP on loopback, SQLite committed).
    let mut rates = Vec::new();
    for _ in 0..3 {
        let data = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let (url, runtime) = serve(data.path());
        let steps = 1_000_000usize;
        let keys: Vec<String> = (0..10).map(|k| format!("m{k}")).collect();
        let t = Instant::now();
        let run = cairn_client::init(Settings::new().base_url(url).dir(work.path().to_owned()).silent(true).project("bench")).unwrap();
        log_floats(&run, &keys, steps);
        let report = run.finish(None).unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert!(report.uploaded);
        rates.push((steps * 10) as f64 / secs);
        drop(runtime);
    }
    println!("[sqlite]   end to end (client log → WAL → HTTP → SQLite, finish included): {:.2} M points/s (10M points, median of 3)", median(rates) / 1e6);
}

type Shape = (&'static str, std::rc::Rc<dyn Fn(u64) -> f64>);

fn shapes() -> Vec<Shape> {
    vec![
        ("ramp i*1e-3 (W4)", std::rc::Rc::new(|i| i as f64 * 1e-3)),
        (
            "noisy loss, float32",
            std::rc::Rc::new(|i| {
                let noise = ((i.wrapping_mul(2654435761) % 1000) as f64) / 1e4;
                ((2f64.powf(-(i as f64) / 1e5) + noise) as f32) as f64
            }),
        ),
        (
            "random f64 in [0,1)",
            std::rc::Rc::new(|i| {
                let mut x = i.wrapping_mul(0x9E3779B97F4A7C15) ^ 0xD1B54A32D192ED03;
                x ^= x >> 33;
                x = x.wrapping_mul(0xff51afd7ed558ccd);
                x ^= x >> 33;
                (x >> 11) as f64 / (1u64 << 53) as f64
            }),
        ),
    ]
}

fn load_series(s: &SqlStore, path: &RunPath, points: u64, value: &dyn Fn(u64) -> f64) {
    let rows = 50_000u64;
    for b in 0..points / rows {
        let body = batch(b * rows, rows, 1, |i, _| value(i));
        s.ingest(path, wire::decode_batch(&body).unwrap(), Timestamp::now()).unwrap();
    }
}

fn bench_query() {
    println!("\n## 1,000-bucket query over a 1,000,000-point series (at the store, no HTTP)");
    for ((label, value), backend) in shapes().into_iter().flat_map(|shape| backends().into_iter().map(move |b| (shape.clone(), b))) {
        let b = Bench::new(backend);
        let (s, label) = (&b.store, format!("{} {label}", b.label()));
        let path = new_run(s, "q");
        load_series(s, &path, 1_000_000, &*value);
        let query = SeriesQuery { keys: "k0".into(), buckets: Some(1000), ..Default::default() };
        let reps = std::env::var("CAIRN_BENCH_QUERY_REPS").ok().and_then(|r| r.parse().ok()).unwrap_or(21);
        let mut times = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            let result = s.series(&path, &cairn_store::SeriesRequest::from_query(&query).unwrap()).unwrap();
            times.push(t.elapsed().as_secs_f64());
            assert_eq!(result.series[0].buckets.count.iter().sum::<u64>(), 1_000_000);
        }
        let zoom = SeriesQuery { keys: "k0".into(), buckets: Some(1000), x_min: Some(400_000.0), x_max: Some(410_000.0), ..Default::default() };
        let t = Instant::now();
        for _ in 0..20 {
            s.series(&path, &cairn_store::SeriesRequest::from_query(&zoom).unwrap()).unwrap();
        }
        let zoom_ms = t.elapsed().as_secs_f64() / 20.0 * 1e3;
        let by_runtime = SeriesQuery { keys: "k0".into(), x: Some("_runtime".into()), buckets: Some(1000), ..Default::default() };
        let t = Instant::now();
        s.series(&path, &cairn_store::SeriesRequest::from_query(&by_runtime).unwrap()).unwrap();
        let runtime_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let all = s.history(&path, &HistoryRequest { keys: Some(vec!["k0".into()]), limit: 10_000_000, ..Default::default() }).unwrap();
        let read_ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(all.steps.len(), 1_000_000);
        println!(
            "{label:<33} by _step: {:.1} ms (median of {reps})   zoom to 10k steps: {zoom_ms:.2} ms   by _runtime: {runtime_ms:.1} ms   read all 1M points: {read_ms:.0} ms",
            median(times) * 1e3
        );
    }
}

fn bench_storage() {
    println!("\n## Bytes per point on disk (SQLite: the file after a checkpoint; PostgreSQL: tables, indexes and TOAST, as written and after VACUUM FULL)");
    let report = |b: &Bench, label: &str, points: f64, before: (u64, u64)| {
        let used = b.bytes(false) - before.0;
        match b.backend {
            Backend::Sqlite => println!("{} {label:<22} {:.2} bytes per logged point", b.label(), used as f64 / points),
            Backend::Postgres => {
                let packed = b.bytes(true) - before.1;
                println!("{} {label:<22} {:.2} bytes per logged point as written, {:.2} after VACUUM FULL", b.label(), used as f64 / points, packed as f64 / points)
            }
        }
    };
    for ((label, value), backend) in shapes().into_iter().flat_map(|shape| backends().into_iter().map(move |b| (shape.clone(), b))) {
        let b = Bench::new(backend);
        let before = (b.bytes(false), b.bytes(true));
        let path = new_run(&b.store, "b");
        load_series(&b.store, &path, 1_000_000, &*value);
        report(&b, label, 1e6, before);
    }
    // Ten keys per row, as W2 logs them: the row times are shared by ten points.
    for backend in backends() {
        let b = Bench::new(backend);
        let before = (b.bytes(false), b.bytes(true));
        let path = new_run(&b.store, "w2");
        for i in 0..20u64 {
            let body = batch(i * 10_000, 10_000, 10, |i, k| i as f64 * 1e-3 + k as f64);
            b.store.ingest(&path, wire::decode_batch(&body).unwrap(), Timestamp::now()).unwrap();
        }
        report(&b, "10 keys per row (W2)", 2e6, before);
    }
}

fn bench_runs() {
    println!("\n## Runs table: 10,000 runs, filtered and sorted (at the store)");
    for backend in backends() {
        let b = Bench::new(backend);
        bench_runs_on(&b.store, b.label());
    }
}

fn bench_runs_on(s: &SqlStore, backend: &str) {
    let t = Instant::now();
    for i in 0..10_000u64 {
        let path = s
            .upsert_run(
                UpsertRunRequest {
                    entity: Some("bench".into()),
                    project: Some("sweep".into()),
                    run_id: format!("run{i:05}"),
                    tags: Some(if i % 3 == 0 { vec!["baseline".into()] } else { vec!["candidate".into()] }),
                    group: Some(format!("g{}", i % 20)),
                    config: Some(Value::Map(map! {
                        "lr" => (i % 100) as f64 / 1000.0, "batch_size" => 32 * (1 + i % 4), "optimizer" => if i % 2 == 0 { "adam" } else { "sgd" },
                        "layers" => (i % 8) as i64, "dropout" => (i % 5) as f64 / 10.0, "seed" => i as i64,
                    })),
                    ..Default::default()
                },
                Timestamp::now(),
            )
            .unwrap()
            .path();
        let rows = serde_json::json!({"history": {"offset": 0, "rows": [{
            "_step": 0, "acc": (i % 997) as f64 / 997.0, "loss": 1.0 / (1.0 + i as f64), "val": {"acc": (i % 101) as f64 / 101.0},
            "f1": 0.5, "epoch": 10, "throughput": i as f64 * 3.0, "grad_norm": 1.5, "lr_now": 0.001
        }]}});
        let batch: cairn_types::api::IngestJson = serde_json::from_value(rows).unwrap();
        s.ingest(&path, batch.into_batch(Timestamp::now()).unwrap(), Timestamp::now()).unwrap();
    }
    println!("{backend} (created in {:.1} s)", t.elapsed().as_secs_f64());
    let cases = [
        ("no filter, newest first", None, vec![]),
        (
            "config.lr ≥ 0.05 and optimizer = adam, sort -summary.acc",
            Some(serde_json::json!({"config.lr": {"$gte": 0.05}, "config.optimizer": "adam"})),
            vec!["-summary.acc".to_owned()],
        ),
        (
            "tags in [baseline] or summary.val.acc > 0.9, sort config.lr",
            Some(serde_json::json!({"$or": [{"tags": {"$in": ["baseline"]}}, {"summary.val.acc": {"$gt": 0.9}}]})),
            vec!["config.lr".to_owned()],
        ),
        ("name regex, sort summary.loss", Some(serde_json::json!({"name": {"$regex": "-1[0-9]$"}})), vec!["summary.loss".to_owned()]),
        // W&B's bare names, resolved against the project's keys first.
        ("bare names: lr ≥ 0.05 and optimizer = adam, sort -acc", Some(serde_json::json!({"lr": {"$gte": 0.05}, "optimizer": "adam"})), vec!["-acc".to_owned()]),
    ];
    for (label, filter, sort) in cases {
        let search = RunSearch { filter, sort, limit: Some(100), offset: None };
        let mut times = Vec::new();
        let mut total = 0;
        for _ in 0..11 {
            let t = Instant::now();
            total = s.search_runs("bench", "sweep", &cairn_store::RunQuery::from_search(&search).unwrap()).unwrap().total;
            times.push(t.elapsed().as_secs_f64());
        }
        println!("{backend} {label}: {:.1} ms for a page of 100 ({total} of 10,000 match; median of 11)", median(times) * 1e3);
    }
    // The worst case of resolving a bare name: no run has it, so both columns are scanned.
    let search = RunSearch { filter: Some(serde_json::json!({"nosuchkey": 1})), limit: Some(100), ..Default::default() };
    let mut times = Vec::new();
    for _ in 0..11 {
        let t = Instant::now();
        let refused = s.search_runs("bench", "sweep", &cairn_store::RunQuery::from_search(&search).unwrap()).is_err();
        times.push(t.elapsed().as_secs_f64());
        assert!(refused, "a bare name no run has is refused");
    }
    println!("{backend} bare name no run has (refused after scanning config and summary): {:.1} ms (median of 11)", median(times) * 1e3);
}

/// The workspace's query: buckets of 20 keys for 100 runs on one grid, in one request.
fn bench_project_series() {
    println!("\n## Project series: 100 runs × 20 keys × 1,000 steps, 500 buckets (at the store)");
    let names: Vec<String> = (0..20).map(|k| format!("m{k:02}")).collect();
    for backend in backends() {
        let b = Bench::new(backend);
        let mut run_ids = Vec::new();
        for r in 0..100u64 {
            let path = new_run(&b.store, &format!("p{r:03}"));
            let body = named_batch(0, 1_000, &names, |i, k| (i as f64 * 1e-3 + k as f64 + r as f64).sin());
            b.store.ingest(&path, wire::decode_batch(&body).unwrap(), Timestamp::now()).unwrap();
            run_ids.push(path.run_id);
        }
        let query = cairn_types::api::ProjectSeriesQuery { run_ids, keys: names.clone(), buckets: Some(500), ..Default::default() };
        let mut times = Vec::new();
        for _ in 0..11 {
            let t = Instant::now();
            let result = b.store.project_series("bench", "bench", &cairn_store::ProjectSeriesRequest::from_query(&query).unwrap()).unwrap();
            times.push(t.elapsed().as_secs_f64());
            assert_eq!(result.runs.len(), 100);
        }
        println!("{} 100 runs × 20 keys: {:.1} ms (median of 11)", b.label(), median(times) * 1e3);
    }
}

/// `ui-data DIR`: a project for the UI render benchmark, written straight into a store: 1,000 runs
/// (`bench/ui-bench`), 20 metrics each in sections, 10,000 steps per metric, configs to filter on.
fn ui_data(dir: &Path) {
    const METRICS: [&str; 20] = [
        "loss",
        "acc",
        "train/loss",
        "train/acc",
        "train/lr",
        "train/grad_norm",
        "train/throughput",
        "val/loss",
        "val/acc",
        "val/f1",
        "val/precision",
        "val/recall",
        "eval/bleu",
        "eval/perplexity",
        "gpu/util",
        "gpu/mem",
        "epoch",
        "weights/mean",
        "weights/std",
        "weights/norm",
    ];
    let (runs, steps, per_batch) = (1_000u64, 10_000u64, 2_500u64);
    let s = store(dir);
    let names: Vec<String> = METRICS.iter().map(|m| (*m).to_owned()).collect();
    let t = Instant::now();
    for r in 0..runs {
        let path = s
            .upsert_run(
                UpsertRunRequest {
                    entity: Some("bench".into()),
                    project: Some("ui-bench".into()),
                    run_id: format!("ui{r:04}"),
                    group: Some(format!("sweep-{}", r % 10)),
                    tags: Some(vec![if r % 4 == 0 { "baseline".into() } else { "candidate".into() }]),
                    config: Some(Value::Map(map! {
                        "lr" => [0.1, 0.03, 0.01, 0.003, 0.001][(r % 5) as usize], "batch_size" => 32 * (1 + r % 4) as i64,
                        "optimizer" => if r % 2 == 0 { "adam" } else { "sgd" }, "seed" => r as i64, "layers" => (2 + r % 6) as i64,
                    })),
                    ..Default::default()
                },
                Timestamp::now(),
            )
            .unwrap()
            .path();
        let rate = 1.0 + (r % 7) as f64 * 0.3;
        for first in (0..steps).step_by(per_batch as usize) {
            let body = named_batch(first, per_batch, &names, |i, k| {
                let x = i as f64 / steps as f64;
                let noise = ((i.wrapping_mul(2654435761).wrapping_add(r * 97 + k as u64 * 13)) % 1000) as f64 / 1e4;
                let spike = if i == 7_777 && k == 0 && r % 100 == 0 { 50.0 } else { 0.0 };
                (1.0 + k as f64 * 0.1) * (-rate * x * 3.0).exp() + noise + spike
            });
            s.ingest(&path, wire::decode_batch(&body).unwrap(), Timestamp::now()).unwrap();
        }
        s.finish_run(&path, cairn_types::api::FinishRequest { exit_code: Some(0), ..Default::default() }, Timestamp::now()).unwrap();
        if (r + 1) % 100 == 0 {
            println!("{} runs written ({:.0} s)", r + 1, t.elapsed().as_secs_f64());
        }
    }
    println!("{} points in {:.1} s", runs * steps * METRICS.len() as u64, t.elapsed().as_secs_f64());

    // 10,000 light runs (one row each) for scrolling the runs table.
    for r in 0..10_000u64 {
        let path = s
            .upsert_run(
                UpsertRunRequest {
                    entity: Some("bench".into()),
                    project: Some("ui-10k".into()),
                    run_id: format!("t{r:05}"),
                    config: Some(Value::Map(map! {"lr" => (r % 100) as f64 / 1000.0, "seed" => r as i64})),
                    ..Default::default()
                },
                Timestamp::now(),
            )
            .unwrap()
            .path();
        let body = named_batch(0, 1, &["acc".to_owned(), "loss".to_owned()], |_, k| if k == 0 { (r % 997) as f64 / 997.0 } else { 1.0 / (1.0 + r as f64) });
        s.ingest(&path, wire::decode_batch(&body).unwrap(), Timestamp::now()).unwrap();
    }
    println!("and 10,000 runs in bench/ui-10k ({:.1} s in all)", t.elapsed().as_secs_f64());
}

/// Artifacts: many small files logged at once, and a big directory up and down beside `cp`.
fn bench_artifacts() {
    use cairn_client::artifacts::{ArtifactDraft, download_artifact, log_artifact};
    println!("\n## Artifacts");
    let data = tempfile::tempdir().unwrap();
    let (url, runtime) = serve(data.path());
    let api = cairn_client::http::ApiClient::new(&url, None, Duration::from_secs(600));
    let work = tempfile::tempdir().unwrap();

    // 10,000 small files: hash, upload, commit.
    let small = work.path().join("small");
    for i in 0..10_000 {
        let dir = small.join(format!("d{}", i / 500));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i}.json")), format!("{{\"i\": {i}, \"pad\": \"{}\"}}", "x".repeat(i % 200))).unwrap();
    }
    let mut draft = ArtifactDraft::new("small", "dataset").unwrap();
    draft.add_dir(&small, None).unwrap();
    let t = Instant::now();
    let info = log_artifact(&api, "bench", "artifacts", None, &draft, &[]).unwrap();
    let first = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let again = log_artifact(&api, "bench", "artifacts", None, &draft, &[]).unwrap();
    let second = t.elapsed().as_secs_f64();
    assert_eq!(info.version, again.version);
    println!("log_artifact of 10,000 small files: {first:.2} s (again, nothing new: {second:.2} s; {} files)", info.file_count);
    let t = Instant::now();
    download_artifact(&api, &info, &work.path().join("small-down")).unwrap();
    println!("download of the 10,000 files: {:.2} s", t.elapsed().as_secs_f64());

    // A big directory: 20 files, `CAIRN_BENCH_ARTIFACT_MB` in all (2,000 by default).
    let mb: u64 = std::env::var("CAIRN_BENCH_ARTIFACT_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let big = work.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    let per_file = (mb << 20) / 20;
    let mut block = vec![0u8; 1 << 20];
    for i in 0..20 {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(big.join(format!("shard{i:02}.bin"))).unwrap());
        let mut left = per_file;
        let mut x = i as u64 + 1;
        while left > 0 {
            for b in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
            }
            let n = left.min(block.len() as u64) as usize;
            f.write_all(&block[..n]).unwrap();
            left -= n as u64;
        }
    }
    let total = per_file * 20;
    // Drop the page cache's advantage for none: every side reads what the last wrote.
    let t = Instant::now();
    let copy = work.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for i in 0..20 {
        let name = format!("shard{i:02}.bin");
        std::fs::copy(big.join(&name), copy.join(&name)).unwrap();
    }
    let cp = t.elapsed().as_secs_f64();
    let mut draft = ArtifactDraft::new("big", "dataset").unwrap();
    draft.add_dir(&big, None).unwrap();
    let t = Instant::now();
    let info = log_artifact(&api, "bench", "artifacts", None, &draft, &[]).unwrap();
    let up = t.elapsed().as_secs_f64();
    let t = Instant::now();
    download_artifact(&api, &info, &work.path().join("big-down")).unwrap();
    let down = t.elapsed().as_secs_f64();
    let mbps = |s: f64| total as f64 / s / (1 << 20) as f64;
    println!(
        "{} MiB in 20 files: cp {:.0} MiB/s; upload (hash + send + commit) {:.0} MiB/s ({:.0}% of cp); download (checked) {:.0} MiB/s ({:.0}% of cp)",
        total >> 20,
        mbps(cp),
        mbps(up),
        cp / up * 100.0,
        mbps(down),
        cp / down * 100.0
    );
    bench_changed_checkpoint(&api, data.path(), work.path());
    drop(runtime);
}

/// Bytes of the files under `dir`, recursively.
fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() { bytes_under(&entry.path()) } else { meta.len() };
    }
    total
}

/// A checkpoint of `CAIRN_BENCH_CKPT_MB` (1,024 by default) logged, then changed in 16 places (1%
/// of it in all) with 100 bytes inserted near its start, and logged again: what the second
/// version stores and sends.
fn bench_changed_checkpoint(api: &cairn_client::http::ApiClient, data: &Path, work: &Path) {
    use cairn_client::artifacts::{ArtifactDraft, log_artifact};
    let mb: u64 = std::env::var("CAIRN_BENCH_CKPT_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let size = (mb << 20) as usize;
    let mut bytes = vec![0u8; size];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for b in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
    }
    let path = work.join("model.ckpt");
    std::fs::write(&path, &bytes).unwrap();
    let blobs = data.join("blobs");
    let mut draft = ArtifactDraft::new("ckpt", "model").unwrap();
    draft.add_file(&path, Some("model.ckpt")).unwrap();
    let before = bytes_under(&blobs);
    let t = Instant::now();
    let v0 = log_artifact(api, "bench", "artifacts", None, &draft, &[]).unwrap();
    let first = t.elapsed().as_secs_f64();
    let base = api.artifact_manifest("bench", "artifacts", "ckpt", &v0.version).unwrap()[0].digest.clone();
    let stored_first = bytes_under(&blobs) - before;

    // 16 places, 1% of the file in all, spread over it; then 100 bytes in at 4 KiB.
    let place = size / 100 / 16;
    for i in 0..16 {
        let at = size / 16 * i + size / 37;
        for b in &mut bytes[at..at + place] {
            *b = b.wrapping_mul(31).wrapping_add(7);
        }
    }
    bytes.splice(4096..4096, (0..100u8).map(|i| i.wrapping_mul(97)));
    std::fs::write(&path, &bytes).unwrap();
    let (sha, new_size) = cairn_client::files::hash_file(&path).unwrap();
    let before = bytes_under(&blobs);
    let db_before = bytes_under(data) - before;
    let t = Instant::now();
    let sent = cairn_client::chunks::send_chunked(api, &path, &sha, new_size, Some(&base), &mut |_| {}).unwrap();
    let info = log_artifact(api, "bench", "artifacts", None, &draft, &[]).unwrap();
    let second = t.elapsed().as_secs_f64();
    assert_eq!(info.version, "v1");
    let stored = bytes_under(&blobs) - before;
    let db = (bytes_under(data) - bytes_under(&blobs)).saturating_sub(db_before);
    let pct = |n: u64| n as f64 / new_size as f64 * 100.0;
    println!(
        "checkpoint of {mb} MiB (sent whole first: {:.0} MiB stored in {first:.1} s; {} chunks), changed in 16 places (1%) with 100 bytes inserted near its start: \
         the new version (in chunks; the server cut the first) sent {} of {} chunks, {:.1} MiB of chunks + {:.2} MiB of lists ({:.2}% of the file), stored {:.1} MiB of chunks ({:.2}%) \
         + {:.2} MiB of database, in {second:.1} s (W&B sends and stores 100%)",
        stored_first as f64 / (1 << 20) as f64,
        sent.chunks,
        sent.sent_chunks,
        sent.chunks,
        sent.sent_bytes as f64 / (1 << 20) as f64,
        sent.list_bytes as f64 / (1 << 20) as f64,
        pct(sent.sent_bytes + sent.list_bytes),
        stored as f64 / (1 << 20) as f64,
        pct(stored),
        db as f64 / (1 << 20) as f64,
    );
}

/// The sweep controller's suggestion latency (`next_trial` on SQLite) with 10, 100 and 1,000
/// finished trials, each with a summary holding the metric.
fn bench_sweeps() {
    use cairn_store::SweepStore;
    use cairn_types::sweep::NextTrial;
    println!("\nsweeps: suggesting a trial (the controller, under the sweep's lock, on SQLite), median of 20");
    let grid: Vec<i64> = (0..50).collect();
    let configs = [
        ("grid", serde_json::json!({"method": "grid", "metric": {"name": "loss"}, "parameters": {"a": {"values": grid}, "b": {"values": grid}}})),
        (
            "random",
            serde_json::json!({"method": "random", "metric": {"name": "loss"}, "parameters": {
                "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1.0}, "layers": {"min": 1, "max": 8}, "opt": {"values": ["adam", "sgd"]}}}),
        ),
        (
            "bayes",
            serde_json::json!({"method": "bayes", "metric": {"name": "loss"}, "parameters": {
                "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1.0}, "layers": {"min": 1, "max": 8}, "opt": {"values": ["adam", "sgd"]}}}),
        ),
    ];
    for (method, config) in configs {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let id = s.create_sweep("bench", "sweeps", &config, Timestamp(1)).unwrap().sweep_id;
        let play = |run_id: &str, i: usize| {
            let path = RunPath::new("bench", "sweeps", run_id);
            s.upsert_run(UpsertRunRequest { entity: Some("bench".into()), project: Some("sweeps".into()), run_id: run_id.into(), ..Default::default() }, Timestamp(2)).unwrap();
            let json: cairn_types::api::IngestJson =
                serde_json::from_value(serde_json::json!({"history": {"offset": 0, "rows": [{"_step": 0, "loss": (i % 97) as f64 / 97.0}]}})).unwrap();
            s.ingest(&path, json.into_batch(Timestamp(3)).unwrap(), Timestamp(3)).unwrap();
            s.finish_run(&path, cairn_types::api::FinishRequest { exit_code: Some(0), ..Default::default() }, Timestamp(4)).unwrap();
        };
        let asker = cairn_types::sweep::NextTrialRequest { agent: "bench".into(), last: None };
        let mut finished = 0usize;
        let mut line = format!("  {method:<7}");
        for target in [10usize, 100, 1000] {
            while finished < target {
                let NextTrial::Run { run_id, .. } = s.next_trial("bench", "sweeps", &id, &asker, Timestamp(5)).unwrap() else { panic!("a trial") };
                play(&run_id, finished);
                finished += 1;
            }
            let mut times = Vec::new();
            for _ in 0..20 {
                let t = Instant::now();
                let next = s.next_trial("bench", "sweeps", &id, &asker, Timestamp(5)).unwrap();
                times.push(t.elapsed().as_secs_f64());
                if let NextTrial::Run { run_id, .. } = next {
                    play(&run_id, finished);
                    finished += 1;
                }
            }
            line += &format!("  {target:>5} finished: {:>6.2} ms", median(times) * 1e3);
        }
        println!("{line}");
    }
    // What bayes buys: the best of 30 trials on the Branin function (minimum 0.397887).
    let branin = |x1: f64, x2: f64| {
        let (b, c, t) = (5.1 / (4.0 * std::f64::consts::PI.powi(2)), 5.0 / std::f64::consts::PI, 1.0 / (8.0 * std::f64::consts::PI));
        (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
    };
    let mut line = String::from("  Branin, best of 30 trials, median of 10 seeds:");
    for method in ["random", "bayes"] {
        let config = cairn_types::sweep::SweepConfig::parse(&serde_json::json!({"method": method, "metric": {"name": "f"},
            "parameters": {"x1": {"min": -5.0, "max": 10.0}, "x2": {"min": 0.0, "max": 15.0}}}))
        .unwrap();
        let bests: Vec<f64> = (0..10u64)
            .map(|seed| {
                let mut rng = fastrand::Rng::with_seed(seed);
                let mut seen: Vec<cairn_types::bayes::Observation> = Vec::new();
                for _ in 0..30 {
                    let next = if method == "bayes" { cairn_types::bayes::suggest(&config, &seen, &mut rng) } else { config.sample(&mut rng) };
                    let f = branin(next["x1"].as_f64().unwrap(), next["x2"].as_f64().unwrap());
                    seen.push(cairn_types::bayes::Observation { config: next, value: Some(f) });
                }
                seen.iter().filter_map(|o| o.value).fold(f64::INFINITY, f64::min)
            })
            .collect();
        line += &format!("  {method} {:.4}", median(bests));
    }
    println!("{line}");
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    if which == "ui-data" {
        let dir = std::env::args().nth(2).expect("usage: cairn-bench ui-data DIR");
        ui_data(Path::new(&dir));
        return;
    }
    println!("cairn benchmarks ({} cores)", std::thread::available_parallelism().map_or(0, |n| n.get()));
    let all = which == "all";
    if all || which == "log" {
        bench_log();
    }
    if all || which == "ingest" {
        bench_ingest();
    }
    if all || which == "query" {
        bench_query();
    }
    if all || which == "storage" {
        bench_storage();
    }
    if all || which == "runs" {
        bench_runs();
    }
    if all || which == "project" {
        bench_project_series();
    }
    if all || which == "auth" {
        bench_auth();
    }
    if all || which == "artifacts" {
        bench_artifacts();
    }
    if all || which == "sweeps" {
        bench_sweeps();
    }
    let _ = Duration::ZERO;
}
