#![allow(clippy::cloned_ref_to_slice_refs)] // `[x.clone()]` reads best in the assertions
//! The conformance suite that every store implementation must pass (after quickwit's
//! `metastore_test_suite!`). Invoke it with an expression that makes a fresh store and a guard that
//! keeps its resources alive:
//!
//! ```ignore
//! cairn_store::store_test_suite!({
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = cairn_store::sqlite::open(dir.path(), config()).unwrap();
//!     (store, dir)
//! });
//! ```

use cairn_types::api::{FileInfo, FinishRequest, GroupQuery, IngestJson, ProjectSeriesQuery, ResumeMode, RunPatch, RunSearch, RunState, SeriesQuery, UpsertRunRequest};
use cairn_types::error::ErrorCode;
use cairn_types::value::Value;
use cairn_types::wire::{BatchWriter, KeyStream, RecordType, payload};
use cairn_types::{RunPath, Timestamp, map};
use serde_json::json;

use crate::{ArtifactStore, FileStore, HistoryRequest, RunStore, SeriesStore, Store};

#[macro_export]
macro_rules! store_test_suite {
    ($make:expr) => {
        $crate::store_test_suite!(@tests $make;
            upsert_creates_entity_project_and_names,
            resume_modes,
            bad_run_input_is_refused,
            ingest_is_idempotent_and_refuses_gaps,
            history_reads_back_exactly,
            history_pages,
            steps_must_grow,
            series_buckets_keep_spikes,
            series_on_other_axes,
            summary_and_config,
            lifecycle_states,
            duration_leaves_out_pauses,
            bare_names_and_empty_text,
            crash_monitor_and_recovery,
            preempting_runs_get_the_longer_wait,
            search_filters_and_sorts,
            console_rewrites,
            files_are_recorded,
            entities_and_projects_count_runs,
            big_values_are_stored,
            system_metrics,
            binary_batches_with_amendments,
            project_keys_columns_and_series,
            grouping_with_distributions,
            delete_then_purge,
            move_all_or_nothing,
            alerts_are_recorded_once_per_title,
            fork_shares_history_and_rewind_archives_it,
            forking_an_archive_and_explicit_summary_values,
            a_fork_shares_its_sources_full_chunks,
            leases_are_held_by_one_holder,
            accounts_teams_and_api_keys,
            passwords_sessions_visibility_and_audit,
            workspaces_are_kept_per_project_and_viewer,
            a_grid_sweep_hands_out_every_point_once_and_again_after_a_crash,
            sweeps_stop_at_their_cap_target_and_state,
            bayes_learns_and_hyperband_stops_the_trials_it_should,
            artifacts_versions_aliases_and_lineage,
            artifacts_committed_at_once_get_distinct_versions,
            chunked_contents_share_chunks_and_go_chunk_by_chunk,
            a_chunk_composed_during_a_collection_is_never_lost,
            a_nul_character_does_not_stop_a_run,
            project_series_of_many_runs_match_each_run,
            a_content_named_during_a_purge_is_never_lost,
            a_copy_in_steps_reads_back_the_same,
            a_heartbeat_racing_an_ingest_loses_nothing,
            concurrent_writers_each_get_every_batch
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (store, _guard) = $make;
                $crate::testsuite::$name(&store);
            }
        )*
    };
}

pub const T0: Timestamp = Timestamp(1_700_000_000_000_000);

fn secs(s: i64) -> Timestamp {
    Timestamp(T0.0 + s * 1_000_000)
}

pub fn new_run(store: &impl Store, path: &RunPath) {
    store
        .upsert_run(
            UpsertRunRequest { entity: Some(path.entity.clone()), project: Some(path.project.clone()), run_id: path.run_id.clone(), started_at: Some(T0), ..Default::default() },
            T0,
        )
        .unwrap();
}

fn json_batch(value: serde_json::Value) -> cairn_types::wire::IngestBatch {
    serde_json::from_value::<IngestJson>(value).unwrap().into_batch(secs(1)).unwrap()
}

/// A batch of `n` history rows from offset `offset`, `loss = step * 0.5`.
/// History rows at steps `first..first + n` from the record offset `offset`.
fn rows_from(first: i64, n: i64, offset: u64) -> cairn_types::wire::IngestBatch {
    let rows: Vec<serde_json::Value> = (first..first + n).map(|i| json!({"_step": i, "_timestamp": (T0.0 as f64 / 1e6) + i as f64, "loss": i as f64 * 0.25})).collect();
    json_batch(json!({"history": {"offset": offset, "rows": rows}}))
}

pub fn rows(offset: u64, n: u64) -> cairn_types::wire::IngestBatch {
    let rows: Vec<serde_json::Value> = (offset..offset + n).map(|i| json!({"_step": i, "_timestamp": (T0.0 as f64 / 1e6) + i as f64, "loss": i as f64 * 0.5})).collect();
    json_batch(json!({"history": {"offset": offset, "rows": rows}}))
}

/// A search as the REST API takes it.
fn search_of(store: &impl Store, entity: &str, project: &str, search: &RunSearch) -> crate::Result<cairn_types::api::RunPage> {
    store.search_runs(entity, project, &crate::RunQuery::from_search(search)?)
}

fn group_of(store: &impl Store, entity: &str, project: &str, query: &GroupQuery) -> crate::Result<cairn_types::api::GroupPage> {
    store.group_runs(entity, project, &crate::GroupRequest::from_query(query)?)
}

/// A series read as the REST API takes it.
fn series_of(store: &impl Store, path: &RunPath, query: &SeriesQuery) -> crate::Result<cairn_types::api::SeriesResult> {
    store.series(path, &crate::SeriesRequest::from_query(query)?)
}

fn project_series_of(store: &impl Store, entity: &str, project: &str, query: &ProjectSeriesQuery) -> crate::Result<cairn_types::api::ProjectSeriesResult> {
    store.project_series(entity, project, &crate::ProjectSeriesRequest::from_query(query)?)
}

fn history_all(store: &impl Store, path: &RunPath) -> crate::HistoryData {
    store.history(path, &HistoryRequest { limit: 1_000_000, ..Default::default() }).unwrap()
}

fn column(data: &crate::HistoryData, name: &str) -> Vec<Option<Value>> {
    data.columns.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no column {name}")).values.clone().into_values()
}

pub fn upsert_creates_entity_project_and_names(store: &impl Store) {
    let run = store.upsert_run(UpsertRunRequest { run_id: "r1".into(), ..Default::default() }, T0).unwrap();
    assert_eq!(run.project, "uncategorized");
    assert!(!run.entity.is_empty());
    assert_eq!(run.state, RunState::Running);
    assert_eq!(run.seq, 1);
    let parts: Vec<&str> = run.name.split('-').collect();
    assert_eq!(parts.len(), 3, "{}", run.name);
    assert_eq!(parts[2], "1");
    let second = store.upsert_run(UpsertRunRequest { run_id: "r2".into(), ..Default::default() }, T0).unwrap();
    assert!(second.name.ends_with("-2"), "{}", second.name);

    let named = store
        .upsert_run(
            UpsertRunRequest {
                entity: Some("nico".into()),
                project: Some("awesome-project".into()),
                run_id: "1jx1ud12".into(),
                name: Some("my-run".into()),
                notes: Some("first try".into()),
                tags: Some(vec!["baseline".into(), "baseline".into(), "v2".into()]),
                group: Some("exp-1".into()),
                job_type: Some("train".into()),
                config: Some(Value::Map(map! {"learning_rate" => 0.01, "epochs" => 10})),
                metadata: Some(Value::Map(map! {"host" => "box"})),
                ..Default::default()
            },
            T0,
        )
        .unwrap();
    assert_eq!(named.name, "my-run");
    assert_eq!(named.tags, vec!["baseline", "v2"]);
    assert_eq!(named.group.as_deref(), Some("exp-1"));
    let fetched = store.get_run(&RunPath::new("nico", "awesome-project", "1jx1ud12")).unwrap();
    assert_eq!(fetched.config["epochs"], Value::Int(10));
    assert_eq!(fetched.metadata["host"], Value::from("box"));
    assert_eq!(fetched.notes, "first try");
    assert_eq!(store.get_run(&RunPath::new("nico", "awesome-project", "nope")).unwrap_err().code, ErrorCode::RunNotFound);
}

pub fn resume_modes(store: &impl Store) {
    let path = RunPath::new("e", "p", "run1");
    let req = |resume| UpsertRunRequest {
        entity: Some("e".into()),
        project: Some("p".into()),
        run_id: "run1".into(),
        resume,
        config: Some(Value::Map(map! {"a" => 1})),
        ..Default::default()
    };
    assert_eq!(store.upsert_run(req(ResumeMode::Must), T0).unwrap_err().code, ErrorCode::RunNotFound);
    store.upsert_run(req(ResumeMode::Never), T0).unwrap();
    assert_eq!(store.upsert_run(req(ResumeMode::Never), T0).unwrap_err().code, ErrorCode::RunAlreadyExists);
    store.finish_run(&path, FinishRequest { exit_code: Some(0), ..Default::default() }, secs(5)).unwrap();
    let mut again = req(ResumeMode::Must);
    // New keys are added; a changed value is kept as it was, unless allow_val_change.
    again.config = Some(Value::Map(map! {"a" => 10, "b" => 2}));
    let resumed = store.upsert_run(again.clone(), secs(10)).unwrap();
    assert_eq!(resumed.state, RunState::Running);
    assert_eq!(resumed.seq, 1);
    assert_eq!(resumed.config, map! {"a" => 1, "b" => 2});
    assert_eq!(resumed.finished_at, None);
    again.allow_val_change = true;
    again.config = Some(Value::Map(map! {"a" => 1}));
    assert_eq!(store.upsert_run(again, secs(11)).unwrap().config, map! {"a" => 1, "b" => 2});

    // "keep" leaves an existing run exactly as it is, and creates a missing one.
    store.finish_run(&path, FinishRequest { exit_code: Some(0), ..Default::default() }, secs(20)).unwrap();
    let mut keep = req(ResumeMode::Keep);
    keep.config = Some(Value::Map(map! {"c" => 3}));
    keep.name = Some("renamed".into());
    let kept = store.upsert_run(keep.clone(), secs(30)).unwrap();
    assert_eq!(kept.state, RunState::Finished);
    assert_eq!(kept.config, map! {"a" => 1, "b" => 2});
    assert_eq!(kept.finished_at, Some(secs(20)));
    assert_ne!(kept.name, "renamed");
    keep.run_id = "run2".into();
    let created = store.upsert_run(keep, secs(30)).unwrap();
    assert_eq!(created.state, RunState::Running);
    assert_eq!(created.config, map! {"c" => 3});
}

pub fn bad_run_input_is_refused(store: &impl Store) {
    for bad in ["a/b", "", "x:y", "q?"] {
        let err = store.upsert_run(UpsertRunRequest { run_id: bad.into(), ..Default::default() }, T0).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRunId, "{bad}");
    }
    let err = store.upsert_run(UpsertRunRequest { run_id: "ok".into(), config: Some(Value::from(5)), ..Default::default() }, T0).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidConfig);
    assert!(err.message.contains("int"), "{}", err.message);
    let err = store.upsert_run(UpsertRunRequest { run_id: "ok".into(), project: Some("a%b".into()), ..Default::default() }, T0).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidName);
    // Nothing was created by the refused requests.
    assert!(store.list_entities().unwrap().is_empty());
}

pub fn ingest_is_idempotent_and_refuses_gaps(store: &impl Store) {
    let path = RunPath::new("e", "p", "idem");
    new_run(store, &path);
    let ack = store.ingest(&path, rows(0, 100), secs(2)).unwrap();
    assert_eq!(ack.offsets.history, 100);
    assert_eq!(ack.points, 100);
    // The same batch again stores nothing.
    let ack = store.ingest(&path, rows(0, 100), secs(3)).unwrap();
    assert_eq!((ack.offsets.history, ack.points), (100, 0));
    // A batch ahead of what is stored is refused with the expected offsets; nothing changes.
    let err = store.ingest(&path, rows(150, 10), secs(3)).unwrap_err();
    assert_eq!(err.code, ErrorCode::OffsetGap);
    assert_eq!(err.expected_offsets.unwrap().history, 100);
    // An overlapping batch stores only its new part.
    let ack = store.ingest(&path, rows(50, 100), secs(4)).unwrap();
    assert_eq!((ack.offsets.history, ack.points), (150, 50));
    // Out of order, then in order: no gap, no duplicate.
    assert!(store.ingest(&path, rows(200, 50), secs(5)).is_err());
    store.ingest(&path, rows(150, 50), secs(5)).unwrap();
    store.ingest(&path, rows(200, 50), secs(5)).unwrap();
    let data = history_all(store, &path);
    assert_eq!(data.steps, (0..250).collect::<Vec<i64>>());
    let loss = column(&data, "loss");
    for (i, v) in loss.iter().enumerate() {
        assert_eq!(v, &Some(Value::Float(i as f64 * 0.5)));
    }
    assert_eq!(store.get_run(&path).unwrap().offsets.history, 250);
    assert_eq!(store.list_keys(&path).unwrap().iter().find(|k| k.name == "loss").unwrap().count, 250);
}

pub fn history_reads_back_exactly(store: &impl Store) {
    let path = RunPath::new("e", "p", "exact");
    new_run(store, &path);
    let big = "x".repeat(1000);
    store
        .ingest(
            &path,
            json_batch(json!({"history": {"offset": 0, "rows": [
                {"_step": 0, "_timestamp": 1700000001.25, "_runtime": 1.25, "loss": "NaN", "acc": 1, "train": {"lr": 0.1, "phase": "warm"}},
                {"_step": 3, "loss": "Infinity", "flag": true, "note": big, "empty": null},
                {"_step": 7, "loss": "-Infinity", "acc": 2.5, "train": {"lr": 0.2},
                 "weights": {"_type": "histogram", "bins": [0.0, 0.5, 1.0], "values": [3, 4]}}
            ]}})),
            secs(2),
        )
        .unwrap();
    let data = history_all(store, &path);
    assert_eq!(data.steps, vec![0, 3, 7]);
    let loss = column(&data, "loss");
    assert!(matches!(loss[0], Some(Value::Float(f)) if f.is_nan()));
    assert_eq!(loss[1], Some(Value::Float(f64::INFINITY)));
    assert_eq!(loss[2], Some(Value::Float(f64::NEG_INFINITY)));
    assert_eq!(column(&data, "acc"), &[Some(Value::Int(1)), None, Some(Value::Float(2.5))]);
    assert_eq!(column(&data, "train.lr"), &[Some(Value::Float(0.1)), None, Some(Value::Float(0.2))]);
    assert_eq!(column(&data, "train.phase")[0], Some(Value::from("warm")));
    assert_eq!(column(&data, "flag")[1], Some(Value::Bool(true)));
    assert_eq!(column(&data, "note")[1], Some(Value::Str(big)));
    assert_eq!(column(&data, "empty")[1], Some(Value::Null));
    // A histogram is one typed value, not keys of its own.
    let weights = cairn_types::value::Histogram::new(vec![0.0, 0.5, 1.0], vec![3.0, 4.0]).unwrap();
    assert_eq!(column(&data, "weights")[2], Some(Value::Histogram(Box::new(weights))));
    assert!(data.columns.iter().all(|c| !c.name.starts_with("weights.")));
    assert_eq!(column(&data, "_timestamp")[0], Some(Value::Float(1700000001.25)));
    assert_eq!(column(&data, "_runtime")[0], Some(Value::Float(1.25)));
    // Rows without _runtime get it from the run's start.
    assert_eq!(column(&data, "_runtime")[1], Some(Value::Float(1.0)));
    let path_of = |name: &str| data.columns.iter().find(|c| c.name == name).unwrap().path.clone();
    assert_eq!(path_of("train.lr"), vec!["train", "lr"]);

    let only = store.history(&path, &HistoryRequest { keys: Some(vec!["acc".into()]), limit: 100, ..Default::default() }).unwrap();
    assert_eq!(only.steps, vec![0, 7]);
    assert_eq!(only.columns.len(), 1);
    let both = store.history(&path, &HistoryRequest { keys: Some(vec!["acc".into(), "flag".into()]), require_all: true, limit: 100, ..Default::default() }).unwrap();
    assert!(both.steps.is_empty());
    let err = store.history(&path, &HistoryRequest { keys: Some(vec!["nope".into()]), ..Default::default() }).unwrap_err();
    assert_eq!(err.code, ErrorCode::KeyNotFound);
    assert!(err.message.contains("loss"), "{}", err.message);
    let keys: Vec<String> = store.list_keys(&path).unwrap().into_iter().map(|k| k.name).collect();
    assert_eq!(keys, ["acc", "empty", "flag", "loss", "note", "train.lr", "train.phase", "weights"]);
}

pub fn history_pages(store: &impl Store) {
    let path = RunPath::new("e", "p", "pages");
    new_run(store, &path);
    for i in 0..30 {
        store.ingest(&path, rows(i * 1000, 1000), secs(2)).unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = Some(0);
    while let Some(min_step) = cursor {
        let page = store.history(&path, &HistoryRequest { keys: Some(vec!["loss".into()]), min_step: Some(min_step), limit: 7000, ..Default::default() }).unwrap();
        assert!(page.steps.len() <= 7000);
        seen.extend(page.steps);
        cursor = page.next_step;
    }
    assert_eq!(seen, (0..30_000).collect::<Vec<i64>>());
    let window = store.history(&path, &HistoryRequest { min_step: Some(100), max_step: Some(110), limit: 1000, ..Default::default() }).unwrap();
    assert_eq!(window.steps, (100..110).collect::<Vec<i64>>());
    assert_eq!(window.next_step, None);
}

pub fn steps_must_grow(store: &impl Store) {
    let path = RunPath::new("e", "p", "steps");
    new_run(store, &path);
    store.ingest(&path, rows(0, 10), secs(2)).unwrap();
    let bad = json_batch(json!({"history": {"offset": 10, "rows": [{"_step": 10, "x": 1}, {"_step": 10, "x": 2}]}}));
    let err = store.ingest(&path, bad, secs(3)).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidStep);
    assert!(err.message.contains("10"), "{}", err.message);
    let back = json_batch(json!({"history": {"offset": 10, "rows": [{"_step": 3, "x": 1}]}}));
    assert_eq!(store.ingest(&path, back, secs(3)).unwrap_err().code, ErrorCode::InvalidStep);
    // The refused batches stored nothing.
    assert_eq!(store.get_run(&path).unwrap().offsets.history, 10);
    assert!(store.list_keys(&path).unwrap().iter().all(|k| k.name != "x"));
    // A gap in steps is fine.
    store.ingest(&path, json_batch(json!({"history": {"offset": 10, "rows": [{"_step": 1000, "x": 1}]}})), secs(3)).unwrap();
    assert_eq!(store.get_run(&path).unwrap().last_step, Some(1000));
}

pub fn series_buckets_keep_spikes(store: &impl Store) {
    let path = RunPath::new("e", "p", "spike");
    new_run(store, &path);
    let n = 60_000u64;
    for start in (0..n).step_by(10_000) {
        let rows: Vec<serde_json::Value> = (start..start + 10_000).map(|i| json!({"_step": i, "loss": if i == 43_210 { 1000.0 } else { (i % 10) as f64 }})).collect();
        store.ingest(&path, json_batch(json!({"history": {"offset": start, "rows": rows}})), secs(2)).unwrap();
    }
    for buckets in [1u32, 7, 100, 1000] {
        let result = series_of(store, &path, &SeriesQuery { keys: "loss".into(), buckets: Some(buckets), ..Default::default() }).unwrap();
        let b = &result.series[0].buckets;
        assert!(b.len() <= buckets as usize);
        assert_eq!(b.count.iter().sum::<u64>(), n);
        assert_eq!(b.max.iter().cloned().fold(f64::MIN, f64::max), 1000.0, "{buckets} buckets");
        assert_eq!(b.min.iter().cloned().fold(f64::MAX, f64::min), 0.0);
    }
    // Zooming re-buckets: one point per bucket around the spike.
    let zoom = series_of(store, &path, &SeriesQuery { keys: "loss".into(), buckets: Some(11), x_min: Some(43_205.0), x_max: Some(43_215.0), ..Default::default() }).unwrap();
    let b = &zoom.series[0].buckets;
    assert_eq!(b.x, (43_205..=43_215).map(|s| s as f64).collect::<Vec<_>>());
    assert_eq!(b.max[5], 1000.0);
    assert_eq!(b.mean[0], 5.0);
    let err = series_of(store, &path, &SeriesQuery { keys: "loss".into(), buckets: Some(0), ..Default::default() }).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidQuery);
    let err = series_of(store, &path, &SeriesQuery { keys: "nope".into(), ..Default::default() }).unwrap_err();
    assert_eq!(err.code, ErrorCode::KeyNotFound);
}

pub fn series_on_other_axes(store: &impl Store) {
    let path = RunPath::new("e", "p", "axes");
    new_run(store, &path);
    let rows: Vec<serde_json::Value> = (0..100).map(|i| json!({"_step": i, "_timestamp": (T0.0 / 1_000_000) as f64 + 2.0 * i as f64, "epoch": i / 10, "acc": i as f64})).collect();
    store.ingest(&path, json_batch(json!({"history": {"offset": 0, "rows": rows}})), secs(2)).unwrap();
    let by_runtime = series_of(store, &path, &SeriesQuery { keys: "acc".into(), x: Some("_runtime".into()), buckets: Some(10), ..Default::default() }).unwrap();
    assert_eq!(by_runtime.grid.x_min, Some(0.0));
    assert_eq!(by_runtime.grid.x_max, Some(198.0));
    assert_eq!(by_runtime.series[0].buckets.count.iter().sum::<u64>(), 100);
    let by_epoch = series_of(store, &path, &SeriesQuery { keys: "acc".into(), x: Some("epoch".into()), buckets: Some(10), ..Default::default() }).unwrap();
    let b = &by_epoch.series[0].buckets;
    assert_eq!(b.len(), 10);
    assert_eq!(b.min[3], 30.0);
    assert_eq!(b.max[3], 39.0);
    assert_eq!(b.last[3], 39.0);
    let by_time = series_of(store, &path, &SeriesQuery { keys: "acc".into(), x: Some("_timestamp".into()), buckets: Some(1), ..Default::default() }).unwrap();
    assert_eq!(by_time.grid.x_min, Some(T0.as_secs_f64()));
}

pub fn summary_and_config(store: &impl Store) {
    let path = RunPath::new("e", "p", "summary");
    new_run(store, &path);
    store
        .ingest(
            &path,
            json_batch(json!({
                "events": {"offset": 0, "events": [{"type": "define_metric", "name": "val/*", "summary": "min,max"}]},
                "config": {"offset": 0, "updates": [{"set": {"lr": 0.1, "layers": [64, 64]}}, {"set": {"lr": 0.2}, "remove": ["layers"]}]},
                "history": {"offset": 0, "rows": [
                    {"_step": 0, "loss": 3.0, "val/loss": 5.0, "nested": {"a": {"b": 1}}},
                    {"_step": 1, "loss": 2.0, "val/loss": 1.0},
                    {"_step": 2, "loss": 4.0, "val/loss": 3.0}
                ]}
            })),
            secs(2),
        )
        .unwrap();
    let run = store.get_run(&path).unwrap();
    assert_eq!(run.summary["loss"], Value::Float(4.0));
    assert_eq!(run.summary["nested"], Value::Map(map! {"a" => Value::Map(map! {"b" => 1})}));
    assert_eq!(run.summary["val/loss"], Value::Map(map! {"min" => 1.0, "max" => 5.0}));
    assert_eq!(run.config, map! {"lr" => 0.2});
    // Explicit summary updates override; later history overrides again.
    store.ingest(&path, json_batch(json!({"summary": {"offset": 0, "updates": [{"set": {"loss": 0.5, "best": "yes"}}]}})), secs(3)).unwrap();
    assert_eq!(store.get_run(&path).unwrap().summary["loss"], Value::Float(0.5));
    store.ingest(&path, json_batch(json!({"history": {"offset": 3, "rows": [{"_step": 3, "loss": 9.0}]}})), secs(4)).unwrap();
    let run = store.get_run(&path).unwrap();
    assert_eq!(run.summary["loss"], Value::Float(9.0));
    assert_eq!(run.summary["best"], Value::from("yes"));
}

/// Runtime is the wall clock from start to end; Duration adds up the active sessions, so the
/// pause between a finish and a resume counts in the first only.
pub fn duration_leaves_out_pauses(store: &impl Store) {
    let path = RunPath::new("e", "dur", "r");
    new_run(store, &path);
    store.heartbeat(&path, secs(10)).unwrap();
    let run = store.get_run(&path).unwrap();
    assert_eq!((run.runtime_secs, run.duration_secs), (10.0, 10.0));
    let run = store.finish_run(&path, FinishRequest { exit_code: Some(0), ..Default::default() }, secs(30)).unwrap();
    assert_eq!((run.runtime_secs, run.duration_secs), (30.0, 30.0));
    // Resumed 70 s later, active for 20 s more.
    let resume = UpsertRunRequest { entity: Some("e".into()), project: Some("dur".into()), run_id: "r".into(), resume: ResumeMode::Allow, ..Default::default() };
    store.upsert_run(resume.clone(), secs(100)).unwrap();
    store.heartbeat(&path, secs(110)).unwrap();
    assert_eq!(store.get_run(&path).unwrap().duration_secs, 40.0);
    let run = store.finish_run(&path, FinishRequest { exit_code: Some(0), ..Default::default() }, secs(120)).unwrap();
    assert_eq!((run.runtime_secs, run.duration_secs), (120.0, 50.0));
    // A session that crashed (no finish) counts to its last heartbeat.
    store.upsert_run(resume, secs(200)).unwrap();
    store.heartbeat(&path, secs(205)).unwrap();
    assert_eq!(store.get_run(&path).unwrap().duration_secs, 55.0);
    // Both filter and sort.
    let other = RunPath::new("e", "dur", "short");
    new_run(store, &other);
    store.finish_run(&other, FinishRequest { exit_code: Some(0), ..Default::default() }, secs(52)).unwrap();
    let ids = |filter: serde_json::Value, sort: &str| -> Vec<String> {
        let search = RunSearch { filter: Some(filter), sort: vec![sort.to_owned()], limit: Some(10), offset: None };
        search_of(store, "e", "dur", &search).unwrap().runs.into_iter().map(|r| r.run_id).collect()
    };
    assert_eq!(ids(json!({"duration": {"$gt": 54}}), "duration"), ["r"]);
    assert_eq!(ids(json!({"runtime": {"$gt": 54}}), "runtime"), ["r"]);
    assert_eq!(ids(json!({"duration": {"$gt": 0}}), "duration"), ["short", "r"]);
    assert_eq!(ids(json!({"duration": {"$gt": 0}}), "-runtime"), ["r", "short"]);
}

/// A bare name that is both a config and a summary key is refused with both named; an empty
/// text matches a field that is empty or unset.
pub fn bare_names_and_empty_text(store: &impl Store) {
    for (id, notes, group) in [("a", "", None), ("b", "tuned", Some("g1")), ("c", "", Some(""))] {
        store
            .upsert_run(
                UpsertRunRequest {
                    entity: Some("e".into()),
                    project: Some("bare".into()),
                    run_id: id.into(),
                    notes: Some(notes.into()),
                    group: group.map(str::to_owned),
                    config: Some(Value::Map(map! {"loss" => 1, "nested" => Value::Map(map! {"depth" => 3})})),
                    ..Default::default()
                },
                T0,
            )
            .unwrap();
        let path = RunPath::new("e", "bare", id);
        store.ingest(&path, json_batch(json!({"history": {"offset": 0, "rows": [{"_step": 0, "loss": 0.5, "val/acc": 0.7}]}})), T0).unwrap();
    }
    let search = |filter: serde_json::Value| search_of(store, "e", "bare", &RunSearch { filter: Some(filter), sort: vec!["run_id".into()], ..Default::default() });
    let ids = |filter: serde_json::Value| -> Vec<String> { search(filter).unwrap().runs.into_iter().map(|r| r.run_id).collect() };
    let err = search(json!({"loss": 0.5})).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidFilter);
    assert!(err.message.contains("summary.loss") && err.message.contains("config.loss"), "{}", err.message);
    assert_eq!(ids(json!({"val/acc": {"$gt": 0.6}})), ["a", "b", "c"]);
    assert_eq!(ids(json!({"nested.depth": 3})), ["a", "b", "c"]);
    assert_eq!(ids(json!({"notes": ""})), ["a", "c"]);
    assert_eq!(ids(json!({"notes": {"$ne": ""}})), ["b"]);
    assert_eq!(ids(json!({"group": ""})), ["a", "c"]);
    assert_eq!(ids(json!({"group": {"$ne": ""}})), ["b"]);
    assert_eq!(ids(json!({"notes": {"$exists": false}})), ["a", "c"]);
    // Sorting and grouping take bare names too.
    let page = search_of(store, "e", "bare", &RunSearch { sort: vec!["-val/acc".into()], ..Default::default() }).unwrap();
    assert_eq!(page.total, 3);
    let groups = group_of(store, "e", "bare", &GroupQuery { by: "nested.depth".into(), columns: vec!["val/acc".into()], ..Default::default() }).unwrap();
    assert_eq!(groups.groups.len(), 1);
}

pub fn lifecycle_states(store: &impl Store) {
    let cases: [(&str, FinishRequest, RunState, Option<i32>); 4] = [
        ("ok", FinishRequest { exit_code: Some(0), ..Default::default() }, RunState::Finished, Some(0)),
        ("bad", FinishRequest { exit_code: Some(3), ..Default::default() }, RunState::Failed, Some(3)),
        ("kill", FinishRequest { state: Some(RunState::Killed), exit_code: Some(130), ..Default::default() }, RunState::Killed, Some(130)),
        ("plain", FinishRequest::default(), RunState::Finished, Some(0)),
    ];
    for (id, request, state, exit_code) in cases {
        let path = RunPath::new("e", "p", id);
        new_run(store, &path);
        let run = store.finish_run(&path, request, secs(30)).unwrap();
        assert_eq!((run.state, run.exit_code), (state, exit_code), "{id}");
        assert_eq!(run.finished_at, Some(secs(30)));
        assert_eq!(run.runtime_secs, 30.0);
    }
    let path = RunPath::new("e", "p", "stopme");
    new_run(store, &path);
    assert!(!store.heartbeat(&path, secs(1)).unwrap().stop);
    assert!(store.request_stop(&path).unwrap().stop_requested);
    let reply = store.heartbeat(&path, secs(2)).unwrap();
    assert!(reply.stop);
    let ack = store.ingest(&path, rows(0, 1), secs(3)).unwrap();
    assert!(ack.stop);
    let run = store.finish_run(&path, FinishRequest { state: Some(RunState::Killed), ..Default::default() }, secs(4)).unwrap();
    assert_eq!(run.state, RunState::Killed);
    assert!(!run.stop_requested);
    assert_eq!(store.request_stop(&path).unwrap_err().code, ErrorCode::RunFinished);
    let err = store.finish_run(&path, FinishRequest { state: Some(RunState::Running), ..Default::default() }, secs(5)).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidValue);
    // Finishing through the events stream works the same way.
    let path = RunPath::new("e", "p", "evfinish");
    new_run(store, &path);
    store.ingest(&path, json_batch(json!({"events": {"offset": 0, "events": [{"type": "finish", "exit_code": 2}]}})), secs(6)).unwrap();
    let run = store.get_run(&path).unwrap();
    assert_eq!((run.state, run.exit_code), (RunState::Failed, Some(2)));

    // A bad event is left out; the rest of its batch is stored, and the offsets move past it.
    let path = RunPath::new("e", "p", "badevent");
    new_run(store, &path);
    let mut batch = rows(0, 3);
    batch.events = json_batch(json!({"events": {"offset": 0, "events": [
        {"type": "update", "tags": [""]},
        {"type": "finish", "state": "running"},
        {"type": "update", "notes": "kept"}
    ]}}))
    .events;
    let ack = store.ingest(&path, batch, secs(7)).unwrap();
    assert_eq!(ack.offsets.events, 3);
    assert_eq!(ack.offsets.history, 3);
    let run = store.get_run(&path).unwrap();
    assert_eq!(run.notes, "kept");
    assert!(run.tags.is_empty());
    assert_eq!(run.state, RunState::Running);
}

pub fn crash_monitor_and_recovery(store: &impl Store) {
    let quiet = RunPath::new("e", "p", "quiet");
    let alive = RunPath::new("e", "p", "alive");
    new_run(store, &quiet);
    new_run(store, &alive);
    store.heartbeat(&alive, secs(100)).unwrap();
    let crashed = store.mark_crashed(secs(60), secs(0)).unwrap();
    assert_eq!(crashed, vec![quiet.clone()]);
    assert_eq!(store.get_run(&quiet).unwrap().state, RunState::Crashed);
    assert_eq!(store.get_run(&alive).unwrap().state, RunState::Running);
    assert!(store.mark_crashed(secs(60), secs(0)).unwrap().is_empty());
    // A crashed run that sends again is running again.
    store.ingest(&quiet, rows(0, 5), secs(120)).unwrap();
    assert_eq!(store.get_run(&quiet).unwrap().state, RunState::Running);
    store.mark_crashed(secs(200), secs(0)).unwrap();
    store.heartbeat(&quiet, secs(201)).unwrap();
    assert_eq!(store.get_run(&quiet).unwrap().state, RunState::Running);
    // A stop for a crashed run ends it at once.
    store.mark_crashed(secs(300), secs(0)).unwrap();
    assert_eq!(store.request_stop(&quiet).unwrap().state, RunState::Killed);
}

pub fn preempting_runs_get_the_longer_wait(store: &impl Store) {
    let (calm, preempted) = (RunPath::new("e", "pre", "calm"), RunPath::new("e", "pre", "preempted"));
    new_run(store, &calm);
    new_run(store, &preempted);
    store.heartbeat(&calm, secs(100)).unwrap();
    store.heartbeat(&preempted, secs(100)).unwrap();
    // Said by the client, as an event of its stream; the first time counts.
    let batch = |offset: u64| json_batch(json!({"events": {"offset": offset, "events": [{"type": "preempting", "time": 1.7e9}]}}));
    store.ingest(&preempted, batch(0), secs(101)).unwrap();
    store.ingest(&preempted, batch(1), secs(102)).unwrap();
    assert_eq!(store.get_run(&preempted).unwrap().preempting_at, Some(secs(101)));
    assert_eq!(store.get_run(&calm).unwrap().preempting_at, None);
    // Both silent since 100: the normal wait is over for both, the preempting one's is not.
    assert_eq!(store.mark_crashed(secs(150), secs(50)).unwrap(), [calm.clone()]);
    assert_eq!(store.get_run(&preempted).unwrap().state, RunState::Running);
    // Its longer wait ends: crashed, and it still says it was preempting.
    assert_eq!(store.mark_crashed(secs(150), secs(120)).unwrap(), [preempted.clone()]);
    let run = store.get_run(&preempted).unwrap();
    assert_eq!((run.state, run.preempting_at), (RunState::Crashed, Some(secs(101))));
    // Resumed, it is a new session that has not said so.
    let resume = UpsertRunRequest { entity: Some("e".into()), project: Some("pre".into()), run_id: "preempted".into(), resume: ResumeMode::Allow, ..Default::default() };
    let run = store.upsert_run(resume, secs(300)).unwrap();
    assert_eq!((run.state, run.preempting_at), (RunState::Running, None));
    // The store's own call (the official client's file_stream flag) does the same.
    assert_eq!(store.mark_preempting(&preempted, secs(301)).unwrap().preempting_at, Some(secs(301)));
    assert_eq!(store.mark_preempting(&preempted, secs(302)).unwrap().preempting_at, Some(secs(301)));
    store.finish_run(&preempted, FinishRequest { exit_code: Some(0), ..Default::default() }, secs(303)).unwrap();
    let err = store.mark_preempting(&preempted, secs(304)).unwrap_err();
    assert_eq!(err.code, ErrorCode::RunFinished);
    assert!(err.message.contains("finished"), "{}", err.message);
    assert_eq!(store.mark_preempting(&RunPath::new("e", "pre", "nobody"), secs(304)).unwrap_err().code, ErrorCode::RunNotFound);
}

pub fn search_filters_and_sorts(store: &impl Store) {
    for i in 0..20i64 {
        let run_id = format!("run{i:02}");
        let run = store
            .upsert_run(
                UpsertRunRequest {
                    entity: Some("team".into()),
                    project: Some("sweep".into()),
                    run_id: run_id.clone(),
                    name: Some(if i % 2 == 0 { format!("even-{i}") } else { format!("odd-{i}") }),
                    tags: Some(if i % 3 == 0 { vec!["three".into()] } else { vec![] }),
                    group: (i < 10).then(|| "low".to_owned()),
                    config: Some(Value::Map(if i == 19 {
                        map! {"lr" => "auto"}
                    } else {
                        map! {"lr" => i as f64 / 100.0, "opt" => if i % 2 == 0 { "adam" } else { "sgd" }}
                    })),
                    ..Default::default()
                },
                secs(i),
            )
            .unwrap();
        let path = run.path();
        if i != 7 {
            store.ingest(&path, json_batch(json!({"history": {"offset": 0, "rows": [{"_step": 0, "acc": i as f64 / 20.0}]}})), secs(i)).unwrap();
        }
        if i % 4 == 0 {
            store.finish_run(&path, FinishRequest { exit_code: Some(0), ..Default::default() }, secs(i + 1)).unwrap();
        }
    }
    let ids = |filter: serde_json::Value, sort: &[&str]| -> Vec<String> {
        search_of(store, "team", "sweep", &RunSearch { filter: Some(filter), sort: sort.iter().map(|s| s.to_string()).collect(), limit: Some(100), offset: None })
            .unwrap()
            .runs
            .into_iter()
            .map(|r| r.run_id)
            .collect()
    };
    assert_eq!(ids(json!({"config.lr": {"$gte": 0.15}}), &["config.lr"]), ["run15", "run16", "run17", "run18"]);
    assert_eq!(ids(json!({"config.lr": "auto"}), &[]), ["run19"]);
    assert_eq!(ids(json!({"summary.acc": {"$gt": 0.8}}), &["-summary.acc"]), ["run19", "run18", "run17"]);
    assert_eq!(ids(json!({"summary.acc": {"$exists": false}}), &[]), ["run07"]);
    assert_eq!(ids(json!({"state": "finished"}), &["run_id"]), ["run00", "run04", "run08", "run12", "run16"]);
    assert_eq!(ids(json!({"tags": "three", "config.opt": "sgd"}), &["run_id"]), ["run03", "run09", "run15"]);
    assert_eq!(ids(json!({"$or": [{"name": {"$regex": "^odd-1[13]$"}}, {"run_id": "run02"}]}), &["run_id"]), ["run02", "run11", "run13"]);
    assert_eq!(ids(json!({"group": {"$ne": "low"}, "config.lr": {"$lt": 0.13}}), &["run_id"]), ["run10", "run11", "run12"]);
    assert_eq!(ids(json!({"created_at": {"$lt": secs(2).to_rfc3339()}}), &["created_at"]), ["run00", "run01"]);
    assert_eq!(ids(json!({"config.opt": {"$nin": ["adam"]}, "run_id": {"$in": ["run18", "run19", "run17"]}}), &["-run_id"]), ["run19", "run17"]);
    assert_eq!(ids(json!({"tags": {"$exists": true}, "config.lr": {"$lte": 0.03}}), &[]), ["run00", "run03"].iter().rev().cloned().collect::<Vec<_>>());
    // Default order: newest first.
    assert_eq!(ids(json!({}), &[])[0], "run19");
    // Sorting puts missing values last, in both directions.
    assert_eq!(ids(json!({}), &["summary.acc"]).last().unwrap(), "run07");
    assert_eq!(ids(json!({}), &["-summary.acc"]).last().unwrap(), "run07");
    // Pagination with a total.
    let page = search_of(store, "team", "sweep", &RunSearch { sort: vec!["run_id".into()], limit: Some(5), offset: Some(5), ..Default::default() }).unwrap();
    assert_eq!(page.total, 20);
    assert_eq!(page.runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), ["run05", "run06", "run07", "run08", "run09"]);
    // Bad filters are clear errors.
    let bad = |filter: serde_json::Value| search_of(store, "team", "sweep", &RunSearch { filter: Some(filter), ..Default::default() }).unwrap_err();
    assert!(bad(json!({"name": {"$regex": "("}})).message.contains("regex"));
    assert_eq!(bad(json!({"bogus": 1})).code, ErrorCode::InvalidFilter);
    assert!(bad(json!({"bogus": 1})).message.contains("no run of this project has a summary or config key"));
    // Bare names, as W&B takes them: a metric is summary.<key>, a parameter config.<key>.
    assert_eq!(ids(json!({"acc": {"$gt": 0.8}}), &["-acc"]), ["run19", "run18", "run17"]);
    assert_eq!(ids(json!({"lr": {"$gte": 0.15}}), &["lr"]), ["run15", "run16", "run17", "run18"]);
    assert_eq!(ids(json!({"opt": "sgd", "lr": {"$lt": 0.04}}), &["run_id"]), ["run01", "run03"]);
    assert_eq!(bad(json!({"tags": {"$gt": "a"}})).code, ErrorCode::InvalidFilter);
    assert_eq!(search_of(store, "team", "nope", &RunSearch::default()).unwrap_err().code, ErrorCode::ProjectNotFound);
}

pub fn console_rewrites(store: &impl Store) {
    let path = RunPath::new("e", "p", "console");
    new_run(store, &path);
    store
        .ingest(
            &path,
            json_batch(json!({"console": {"offset": 0, "lines": [
                {"line": 0, "text": "epoch 1"},
                {"line": 1, "text": "progress 10%"},
                {"line": 1, "text": "progress 50%"},
                {"line": 2, "text": "oops", "stream": "stderr"},
                {"line": 1, "text": "progress 100%"}
            ]}})),
            secs(2),
        )
        .unwrap();
    let page = store.console(&path, 0, 100).unwrap();
    let texts: Vec<(&str, &str)> = page.lines.iter().map(|l| (l.text.as_str(), l.stream.as_str())).collect();
    assert_eq!(texts, [("epoch 1", "stdout"), ("progress 100%", "stdout"), ("oops", "stderr")]);
    let first = store.console(&path, 0, 2).unwrap();
    assert_eq!(first.next_line, Some(2));
    assert_eq!(store.get_run(&path).unwrap().offsets.console, 5);
}

pub fn files_are_recorded(store: &impl Store) {
    let path = RunPath::new("e", "p", "files");
    new_run(store, &path);
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("upload-test");
    std::fs::write(&tmp, b"checkpoint bytes").unwrap();
    let blob = store.blobs().put_file(&tmp).unwrap();
    store.put_run_file(&path, FileInfo { path: "model.pt".into(), size: blob.size, sha256: blob.sha256.clone(), updated_at: secs(1) }).unwrap();
    let files = store.list_run_files(&path).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].size, 16);
    let mut content = String::new();
    store.blobs().open(&files[0].sha256).unwrap().read_to_string(&mut content).unwrap();
    assert_eq!(content, "checkpoint bytes");
    assert_eq!(store.get_run_file(&path, "other").unwrap_err().code, ErrorCode::FileNotFound);

    // Files under a prefix go together; a name with LIKE's wildcards is only itself.
    for name in ["staging/a", "staging/b/c", "staging_x", "staging%/d"] {
        store.put_run_file(&path, FileInfo { path: name.into(), size: blob.size, sha256: blob.sha256.clone(), updated_at: secs(2) }).unwrap();
    }
    assert_eq!(store.remove_run_files(&path, "staging/").unwrap(), 2);
    let mut left: Vec<String> = store.list_run_files(&path).unwrap().into_iter().map(|f| f.path).collect();
    left.sort();
    assert_eq!(left, ["model.pt", "staging%/d", "staging_x"]);
    assert_eq!(store.remove_run_files(&path, "").unwrap_err().code, ErrorCode::InvalidValue);
    // The content is still named by model.pt: it stays.
    assert!(store.blobs().open(&blob.sha256).is_ok());
}

use std::io::Read as _;

pub fn entities_and_projects_count_runs(store: &impl Store) {
    for (entity, project, run_id) in [("a", "p1", "r1"), ("a", "p1", "r2"), ("a", "p2", "r3"), ("b", "p1", "r4")] {
        new_run(store, &RunPath::new(entity, project, run_id));
    }
    let entities = store.list_entities().unwrap();
    let summary: Vec<(String, u64, u64)> = entities.iter().map(|e| (e.name.clone(), e.project_count, e.run_count)).collect();
    assert_eq!(summary, [("a".into(), 2, 3), ("b".into(), 1, 1)]);
    let projects = store.list_projects("a").unwrap();
    assert_eq!(projects.len(), 2);
    assert_eq!(store.get_project("a", "p1").unwrap().run_count, 2);
    assert!(store.get_project("a", "p1").unwrap().last_activity_at.is_some());
    assert_eq!(store.get_entity("zz").unwrap_err().code, ErrorCode::EntityNotFound);
    assert_eq!(store.get_project("a", "zz").unwrap_err().code, ErrorCode::ProjectNotFound);
    store.delete_run(&RunPath::new("a", "p1", "r1")).unwrap();
    assert_eq!(store.get_project("a", "p1").unwrap().run_count, 1);
    assert_eq!(store.get_run(&RunPath::new("a", "p1", "r1")).unwrap_err().code, ErrorCode::RunNotFound);
    store.update_run(&RunPath::new("a", "p1", "r2"), RunPatch { notes: Some("hello <b>".into()), tags: Some(vec!["x".into()]), ..Default::default() }).unwrap();
    let run = store.get_run(&RunPath::new("a", "p1", "r2")).unwrap();
    assert_eq!((run.notes.as_str(), run.tags.as_slice()), ("hello <b>", ["x".to_owned()].as_slice()));
}

pub fn big_values_are_stored(store: &impl Store) {
    let path = RunPath::new("e", "p", "big");
    new_run(store, &path);
    let huge = "y".repeat(1 << 20);
    let mut row = serde_json::Map::new();
    row.insert("_step".into(), json!(0));
    for i in 0..10_000 {
        row.insert(format!("k{i:05}"), json!(i));
    }
    row.insert("huge".into(), json!(huge));
    store.ingest(&path, json_batch(json!({"history": {"offset": 0, "rows": [row]}})), secs(2)).unwrap();
    let keys = store.list_keys(&path).unwrap();
    assert_eq!(keys.len(), 10_001);
    let data = history_all(store, &path);
    assert_eq!(column(&data, "huge")[0], Some(Value::Str(huge)));
    assert_eq!(column(&data, "k09999")[0], Some(Value::Int(9999)));
    assert_eq!(store.get_run(&path).unwrap().summary.len(), 10_001);
}

pub fn system_metrics(store: &impl Store) {
    let path = RunPath::new("e", "p", "sys");
    new_run(store, &path);
    let rows: Vec<serde_json::Value> = (0..20).map(|i| json!({"_timestamp": T0.as_secs_f64() + 10.0 * i as f64, "system.cpu": 10.0 + i as f64})).collect();
    store.ingest(&path, json_batch(json!({"system": {"offset": 0, "rows": rows}})), secs(2)).unwrap();
    let keys = store.list_keys(&path).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!((keys[0].name.as_str(), keys[0].stream.as_str()), ("system.cpu", "system"));
    let series = series_of(store, &path, &SeriesQuery { keys: "system.cpu".into(), x: Some("_runtime".into()), buckets: Some(20), ..Default::default() }).unwrap();
    let b = &series.series[0].buckets;
    assert_eq!(b.len(), 20);
    assert_eq!(b.x[19], 190.0);
    assert_eq!(b.last[19], 29.0);
    let history = store.history(&path, &HistoryRequest { stream: KeyStream::System, limit: 100, ..Default::default() }).unwrap();
    assert_eq!(history.steps.len(), 20);
    // A run's summary is not made of system metrics.
    assert!(store.get_run(&path).unwrap().summary.is_empty());
}

pub fn binary_batches_with_amendments(store: &impl Store) {
    let path = RunPath::new("e", "p", "binary");
    new_run(store, &path);
    let mut batch = BatchWriter::new();
    let mut p = Vec::new();
    let mut frame = |batch: &mut BatchWriter, build: &dyn Fn(&mut Vec<u8>)| {
        p.clear();
        build(&mut p);
        batch.push_payload(&p);
    };
    frame(&mut batch, &|p| payload::key_def(p, 1, KeyStream::History, &["acc"]));
    frame(&mut batch, &|p| payload::key_def(p, 2, KeyStream::History, &["loss"]));
    frame(&mut batch, &|p| {
        payload::history_head(p, 0, 5, 0, T0.0 + 1, 1, 1);
        payload::history_float_field(p, 1, 0.5);
    });
    frame(&mut batch, &|p| {
        payload::history_head(p, 0, 5, 1, T0.0 + 2, 2, 2);
        payload::history_float_field(p, 2, 0.25);
        payload::history_float_field(p, 1, 0.75);
    });
    frame(&mut batch, &|p| payload::updates(p, RecordType::Config, 0, &map! {"x" => 1}, &[]));
    let body = batch.finish();
    let decoded = cairn_types::wire::decode_batch(&body).unwrap();
    store.ingest(&path, decoded.clone(), secs(2)).unwrap();
    store.ingest(&path, decoded, secs(3)).unwrap();
    let data = history_all(store, &path);
    assert_eq!(data.steps, vec![5]);
    assert_eq!(column(&data, "acc"), &[Some(Value::Float(0.75))]);
    assert_eq!(column(&data, "loss"), &[Some(Value::Float(0.25))]);
    let run = store.get_run(&path).unwrap();
    assert_eq!(run.offsets.history, 1);
    assert_eq!(run.config["x"], Value::Int(1));
}

pub fn project_keys_columns_and_series(store: &impl Store) {
    for (i, run_id) in ["a", "b", "c"].into_iter().enumerate() {
        let path = RunPath::new("e", "proj", run_id);
        store
            .upsert_run(
                UpsertRunRequest {
                    entity: Some("e".into()),
                    project: Some("proj".into()),
                    run_id: run_id.into(),
                    config: Some(Value::Map(map! {"lr" => 0.1, "model" => Value::Map(map! {"depth" => i as i64})})),
                    started_at: Some(T0),
                    ..Default::default()
                },
                T0,
            )
            .unwrap();
        let n = 100 * (i as u64 + 1);
        let rows: Vec<serde_json::Value> =
            (0..n).map(|s| if run_id == "b" { json!({"_step": s, "loss": s as f64, "only_b": "text"}) } else { json!({"_step": s, "loss": s as f64}) }).collect();
        store.ingest(&path, json_batch(json!({"history": {"offset": 0, "rows": rows}})), secs(2)).unwrap();
    }
    let keys: Vec<(String, u64, bool)> = store.project_keys("e", "proj").unwrap().into_iter().map(|k| (k.name, k.runs, k.numeric)).collect();
    assert_eq!(keys, [("loss".into(), 3, true), ("only_b".into(), 1, false)]);
    let columns = store.project_columns("e", "proj").unwrap();
    assert_eq!(columns.config, ["lr", "model.depth"]);
    assert_eq!(columns.summary, ["loss", "only_b"]);
    let result = project_series_of(
        store,
        "e",
        "proj",
        &ProjectSeriesQuery { run_ids: vec!["a".into(), "ghost".into(), "c".into()], keys: vec!["loss".into(), "nope".into()], buckets: Some(10), ..Default::default() },
    )
    .unwrap();
    assert_eq!((result.grid.x_min, result.grid.x_max), (Some(0.0), Some(299.0)));
    assert_eq!(result.runs.len(), 2);
    assert_eq!(result.runs[0].run_id, "a");
    // One shared grid: run a's 100 points fall in the first 4 of the 10 buckets.
    assert_eq!(result.runs[0].series[0].buckets.index, vec![0, 1, 2, 3]);
    assert_eq!(result.runs[1].series[0].buckets.count.iter().sum::<u64>(), 300);
    let err = project_series_of(store, "e", "proj", &ProjectSeriesQuery::default()).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidQuery);
    assert_eq!(store.project_keys("e", "ghost").unwrap_err().code, ErrorCode::ProjectNotFound);
}

pub fn grouping_with_distributions(store: &impl Store) {
    for i in 0..9i64 {
        let path = RunPath::new("e", "groups", format!("r{i}"));
        store
            .upsert_run(
                UpsertRunRequest {
                    entity: Some("e".into()),
                    project: Some("groups".into()),
                    run_id: path.run_id.clone(),
                    config: Some(Value::Map(if i == 8 {
                        map! {}
                    } else {
                        map! {"opt" => if i % 2 == 0 { "adam" } else { "sgd" }}
                    })),
                    ..Default::default()
                },
                T0,
            )
            .unwrap();
        store.ingest(&path, json_batch(json!({"history": {"offset": 0, "rows": [{"_step": 0, "acc": i as f64}]}})), secs(1)).unwrap();
    }
    let page = group_of(store, "e", "groups", &GroupQuery { by: "config.opt".into(), columns: vec!["summary.acc".into()], bins: Some(4), ..Default::default() }).unwrap();
    let summary: Vec<(Value, u64)> = page.groups.iter().map(|g| (g.value.clone(), g.count)).collect();
    // Runs without the value come last.
    assert_eq!(summary, [(Value::from("adam"), 4), (Value::from("sgd"), 4), (Value::Null, 1)]);
    assert_eq!(page.ranges["summary.acc"], (0.0, 8.0));
    let adam = &page.groups[0].columns["summary.acc"];
    assert_eq!((adam.count, adam.min, adam.max, adam.mean), (4, Some(0.0), Some(6.0), Some(3.0)));
    assert_eq!(adam.histogram, vec![1, 1, 1, 1]);
    let filtered = group_of(store, "e", "groups", &GroupQuery { by: "config.opt".into(), filter: Some(json!({"summary.acc": {"$gte": 5}})), ..Default::default() }).unwrap();
    assert_eq!(filtered.groups.iter().map(|g| g.count).sum::<u64>(), 4);
    let err = group_of(store, "e", "groups", &GroupQuery { by: "tags".into(), ..Default::default() }).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidQuery);
}

pub fn delete_then_purge(store: &impl Store) {
    let path = RunPath::new("e", "p", "gone");
    let keep = RunPath::new("e", "p", "kept");
    new_run(store, &path);
    new_run(store, &keep);
    store.ingest(&path, json_batch(json!({"history": {"offset": 0, "rows": [{"_step": 0, "loss": 1.0}]}})), secs(1)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tmp = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        store.blobs().put_file(&p).unwrap()
    };
    let own = tmp("purge-own", b"only the purged run names this");
    let shared = tmp("purge-shared", b"both runs name this");
    for (run, blob, name) in [(&path, &own, "own.bin"), (&path, &shared, "shared.bin"), (&keep, &shared, "shared.bin")] {
        store.put_run_file(run, FileInfo { path: name.into(), size: blob.size, sha256: blob.sha256.clone(), updated_at: secs(1) }).unwrap();
    }
    store.delete_run(&path).unwrap();
    assert_eq!(store.get_run(&path).unwrap_err().code, ErrorCode::RunNotFound);
    assert_eq!(store.deleted_before(secs(0)).unwrap(), []);
    assert_eq!(store.deleted_before(Timestamp(i64::MAX)).unwrap(), [path.clone()]);
    // The id stays taken until the run is purged.
    let again =
        UpsertRunRequest { entity: Some("e".into()), project: Some("p".into()), run_id: "gone".into(), started_at: Some(T0), resume: ResumeMode::Allow, ..Default::default() };
    assert_eq!(store.upsert_run(again.clone(), secs(2)).unwrap_err().code, ErrorCode::RunDeleted);
    let orphans = store.purge_run(&path).unwrap();
    assert_eq!(orphans, [own.sha256.clone()]);
    assert!(store.blobs().exists(&own.sha256).unwrap(), "removed by the collection, not by the purge");
    assert_eq!(store.collect_blobs(Some(&orphans)).unwrap(), [own.sha256.clone()]);
    assert!(!store.blobs().exists(&own.sha256).unwrap());
    assert!(store.blobs().exists(&shared.sha256).unwrap(), "the kept run still names it");
    assert_eq!(store.deleted_before(Timestamp(i64::MAX)).unwrap(), []);
    assert_eq!(store.purge_run(&path).unwrap_err().code, ErrorCode::RunNotFound);
    // The id is free again, and the new run starts empty.
    let info = store.upsert_run(again, secs(3)).unwrap();
    assert_eq!(info.last_step, None);
    assert!(store.list_keys(&path).unwrap().iter().all(|k| k.name != "loss"));
    assert!(store.list_run_files(&path).unwrap().is_empty());
    assert_eq!(store.list_run_files(&keep).unwrap().len(), 1);
}

pub fn move_all_or_nothing(store: &impl Store) {
    let a = RunPath::new("e", "src", "a");
    let b = RunPath::new("e", "src", "b");
    let taken = RunPath::new("other", "dst", "b");
    for path in [&a, &b, &taken] {
        new_run(store, path);
        store.finish_run(path, FinishRequest { exit_code: Some(0), ..Default::default() }, secs(1)).unwrap();
    }
    store.ingest(&a, json_batch(json!({"history": {"offset": 0, "rows": [{"_step": 0, "loss": 1.5}]}})), secs(1)).unwrap();
    // b's id is taken in the target: nothing moves, a included.
    let err = store.move_runs(&[a.clone(), b.clone()], "other", "dst", secs(2)).unwrap_err();
    assert_eq!(err.code, ErrorCode::RunAlreadyExists);
    assert!(err.message.contains("\"b\"") && err.message.contains("nothing was moved"), "{}", err.message);
    assert!(store.get_run(&a).is_ok() && store.get_run(&b).is_ok());
    // A deleted run keeps its id in the target too.
    store.delete_run(&taken).unwrap();
    assert!(store.move_runs(&[b.clone()], "other", "dst", secs(2)).unwrap_err().message.contains("deleted"));
    // To a new entity and project: everything goes with the run.
    let moved = store.move_runs(&[a.clone(), b.clone()], "team", "new", secs(3)).unwrap();
    assert_eq!(moved, [RunPath::new("team", "new", "a"), RunPath::new("team", "new", "b")]);
    assert_eq!(store.get_run(&a).unwrap_err().code, ErrorCode::RunNotFound);
    let run = store.get_run(&moved[0]).unwrap();
    assert_eq!(run.summary.get("loss"), Some(&Value::Float(1.5)));
    assert_eq!(column(&history_all(store, &moved[0]), "loss"), [Some(Value::Float(1.5))]);
    assert_eq!(store.get_project("team", "new").unwrap().run_count, 2);
    assert_eq!(store.get_project("e", "src").unwrap().run_count, 0);
    // A running run does not move.
    let live = RunPath::new("e", "src", "live");
    new_run(store, &live);
    assert!(store.move_runs(&[live], "team", "new", secs(4)).unwrap_err().message.contains("running"));
    assert_eq!(store.move_runs(&[], "team", "new", secs(4)).unwrap_err().code, ErrorCode::InvalidValue);
}

pub fn alerts_are_recorded_once_per_title(store: &impl Store) {
    let path = RunPath::new("e", "p", "alerts");
    new_run(store, &path);
    let alert = |title: &str, at: f64, wait: f64| json!({"type": "alert", "title": title, "text": "t", "level": "WARN", "time": at, "wait_duration": wait});
    let t0 = T0.0 as f64 / 1e6;
    let events =
        json!({"events": {"offset": 0, "events": [alert("nan", t0, 60.0), alert("nan", t0 + 30.0, 60.0), alert("other", t0 + 31.0, 60.0), alert("nan", t0 + 61.0, 60.0)]}});
    store.ingest(&path, json_batch(events.clone()), secs(1)).unwrap();
    // Sent again (a replay by `cairn sync`): stored once.
    store.ingest(&path, json_batch(events), secs(2)).unwrap();
    let alerts = store.list_alerts(&path).unwrap();
    let titles: Vec<&str> = alerts.iter().map(|a| a.title.as_str()).collect();
    assert_eq!(titles, ["nan", "other", "nan"]);
    assert!(alerts.iter().all(|a| a.delivery == "pending" && a.level == cairn_types::api::AlertLevel::Warn));
    let lease = std::time::Duration::from_secs(60);
    let due = store.claim_due_alerts(secs(1_000), lease, 10).unwrap();
    assert_eq!(due.len(), 3);
    assert_eq!(due[0].0, path);
    // Claimed: another server looking now finds none, until the claim lapses.
    assert!(store.claim_due_alerts(secs(1_030), lease, 10).unwrap().is_empty());
    store.record_alert_delivery(alerts[0].id, "delivered", &["webhook".into(), "email".into()], None, None).unwrap();
    store.record_alert_delivery(alerts[1].id, "pending", &["email".into()], Some("HTTP 500".into()), Some(Timestamp(i64::MAX - 1))).unwrap();
    // The third was claimed and never recorded (its server died): it is due again.
    let due: Vec<i64> = store.claim_due_alerts(secs(100_000), lease, 10).unwrap().iter().map(|d| d.2.id).collect();
    assert_eq!(due, [alerts[2].id]);
    let after = store.list_alerts(&path).unwrap();
    assert_eq!((after[0].delivery.as_str(), after[0].attempts), ("delivered", 1));
    assert_eq!(after[1].last_error.as_deref(), Some("HTTP 500"));
    assert_eq!((after[0].delivered_to.len(), after[1].delivered_to.as_slice()), (2, ["email".to_owned()].as_slice()));
    let bad = json!({"events": {"offset": 4, "events": [{"type": "alert", "title": "x", "level": "LOUD"}]}});
    assert!(store.ingest(&path, json_batch(bad), secs(3)).is_ok(), "a bad event is skipped, not the batch");
    assert_eq!(store.list_alerts(&path).unwrap().len(), 3);
}

fn loss_points(store: &impl Store, path: &RunPath) -> Vec<(i64, f64)> {
    let data = history_all(store, path);
    data.steps.iter().zip(column(&data, "loss")).filter_map(|(s, v)| v.and_then(|v| v.as_f64()).map(|v| (*s, v))).collect()
}

pub fn fork_shares_history_and_rewind_archives_it(store: &impl Store) {
    let src = RunPath::new("e", "p", "src");
    new_run(store, &src);
    // 20,000 steps: two full chunks and a partial one; loss = step * 0.5.
    store.ingest(&src, rows(0, 20_000), secs(1)).unwrap();
    let fork = |run_id: &str, step: i64| UpsertRunRequest {
        entity: Some("e".into()),
        project: Some("p".into()),
        run_id: run_id.into(),
        fork_from: Some(cairn_types::api::StepRef { run_id: "src".into(), step }),
        config: Some(Value::Map(map! {"extra" => 1})),
        ..Default::default()
    };
    // At step N inside the second chunk, at 0, and beyond the last step (an error).
    let forked = store.upsert_run(fork("f1", 12_345), secs(2)).unwrap();
    assert_eq!(forked.last_step, Some(12_345));
    let f1 = RunPath::new("e", "p", "f1");
    let points = loss_points(store, &f1);
    assert_eq!(points.len(), 12_346);
    assert_eq!(points.last(), Some(&(12_345, 6_172.5)));
    assert_eq!(forked.summary.get("loss"), Some(&Value::Float(6_172.5)));
    assert_eq!(forked.metadata.get("fork"), Some(&Value::Map(map! {"run_id" => "src", "step" => 12_345})));
    assert_eq!(forked.config.get("extra"), Some(&Value::Int(1)));
    assert_eq!(store.upsert_run(fork("f0", 0), secs(2)).unwrap().last_step, Some(0));
    assert_eq!(loss_points(store, &RunPath::new("e", "p", "f0")), [(0, 0.0)]);
    let err = store.upsert_run(fork("f2", 20_000), secs(2)).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidStep);
    assert!(err.message.contains("beyond") && err.message.contains("19999"), "{}", err.message);
    assert_eq!(store.list_forks(&src).unwrap(), ["f1", "f0"]);
    // The fork goes on by itself; bucketed series see the shared and the own chunks alike.
    store.ingest(&f1, json_batch(json!({"history": {"offset": 0, "rows": [{"_step": 12_346, "loss": -1.0}]}})), secs(3)).unwrap();
    let series = series_of(store, &f1, &SeriesQuery { keys: "loss".into(), x: None, buckets: Some(4), x_min: None, x_max: None }).unwrap();
    let b = &series.series[0].buckets;
    assert_eq!(b.count.iter().sum::<u64>(), 12_347);
    assert_eq!(b.min.iter().copied().fold(f64::INFINITY, f64::min), -1.0);

    // Rewind the source to 9,000: what came after goes to an archive run, the fork keeps its
    // history (it shared a chunk that now lives in the archive).
    let rewind = UpsertRunRequest {
        entity: Some("e".into()),
        project: Some("p".into()),
        run_id: "src".into(),
        resume: ResumeMode::Must,
        resume_from: Some(cairn_types::api::StepRef { run_id: "src".into(), step: 9_000 }),
        ..Default::default()
    };
    let rewound = store.upsert_run(rewind.clone(), secs(4)).unwrap();
    assert_eq!(rewound.last_step, Some(9_000));
    assert_eq!(rewound.summary.get("loss"), Some(&Value::Float(4_500.0)));
    assert_eq!(loss_points(store, &src).len(), 9_001);
    let Some(Value::List(rewinds)) = rewound.metadata.get("rewinds") else { panic!("{:?}", rewound.metadata) };
    let archive_id = rewinds[0].as_map().unwrap()["archive"].as_str().unwrap().to_owned();
    assert_eq!(archive_id, "src-rewind-1");
    let archive = RunPath::new("e", "p", &archive_id);
    let archived = loss_points(store, &archive);
    assert_eq!((archived.first(), archived.len()), (Some(&(9_001, 4_500.5)), 10_999));
    assert_eq!(loss_points(store, &f1).len(), 12_347);
    assert_eq!(loss_points(store, &f1)[10_000], (10_000, 5_000.0));
    // The archive is reachable by its path but is not listed with the project's runs.
    let listed: Vec<String> = search_of(store, "e", "p", &RunSearch::default()).unwrap().runs.into_iter().map(|r| r.run_id).collect();
    assert!(!listed.contains(&archive_id) && listed.contains(&"src".to_owned()), "{listed:?}");
    assert_eq!(store.get_project("e", "p").unwrap().run_count, 3);
    // Rewinding beyond the last step is refused; purging the source keeps the forks whole.
    let mut beyond = rewind;
    beyond.resume_from = Some(cairn_types::api::StepRef { run_id: "src".into(), step: 9_001 });
    assert_eq!(store.upsert_run(beyond, secs(5)).unwrap_err().code, ErrorCode::InvalidStep);
    store.delete_run(&src).unwrap();
    store.purge_run(&src).unwrap();
    assert_eq!(store.get_run(&archive).unwrap_err().code, ErrorCode::RunNotFound);
    assert_eq!(loss_points(store, &f1).len(), 12_347);
    assert_eq!(loss_points(store, &f1)[12_000], (12_000, 6_000.0));
}

pub fn forking_an_archive_and_explicit_summary_values(store: &impl Store) {
    let src = RunPath::new("e", "p", "long");
    new_run(store, &src);
    store.ingest(&src, rows(0, 30_000), secs(1)).unwrap();
    store.ingest(&src, json_batch(json!({"summary": {"offset": 0, "updates": [{"set": {"best_epoch": 7}}]}})), secs(1)).unwrap();
    let at = |run_id: &str, step| Some(cairn_types::api::StepRef { run_id: run_id.into(), step });
    let rewound = store
        .upsert_run(
            UpsertRunRequest {
                entity: Some("e".into()),
                project: Some("p".into()),
                run_id: "long".into(),
                resume: ResumeMode::Must,
                resume_from: at("long", 9_000),
                ..Default::default()
            },
            secs(2),
        )
        .unwrap();
    // What the user set stays; what came from history is recomputed.
    assert_eq!(rewound.summary.get("best_epoch"), Some(&Value::Int(7)));
    assert_eq!(rewound.summary.get("loss"), Some(&Value::Float(4_500.0)));
    // The archive starts with the partial chunk cut at 9,000, then a full chunk: a fork of it
    // inside the full chunk's range reads every step once, in order.
    let forked = store
        .upsert_run(
            UpsertRunRequest { entity: Some("e".into()), project: Some("p".into()), run_id: "of-archive".into(), fork_from: at("long-rewind-1", 25_000), ..Default::default() },
            secs(3),
        )
        .unwrap();
    assert_eq!(forked.last_step, Some(25_000));
    let points = loss_points(store, &RunPath::new("e", "p", "of-archive"));
    let steps: Vec<i64> = points.iter().map(|p| p.0).collect();
    assert_eq!(steps, (9_001..=25_000).collect::<Vec<_>>());
    assert!(points.iter().all(|(s, v)| *v == *s as f64 * 0.5));
    let series = series_of(store, &RunPath::new("e", "p", "of-archive"), &SeriesQuery { keys: "loss".into(), buckets: Some(3), ..Default::default() }).unwrap();
    assert_eq!(series.series[0].buckets.count.iter().sum::<u64>(), 16_000);
}

/// Chunk rows of `run`'s keys: how many, and their bytes; `shared` picks the rows that name
/// another key's chunk.
fn chunk_bytes(store: &crate::sql::SqlStore, run: &str, shared: bool) -> (i64, i64) {
    store
        .read(|db| {
            let r = db.row(
                "SELECT count(*), coalesce(sum(length(c.data)), 0) FROM chunks c JOIN run_keys k ON k.key_pk = c.key_pk
                 JOIN runs r ON r.run_pk = k.run_pk WHERE r.run_id = ?1 AND (c.shared_key IS NOT NULL) = ?2",
                crate::sql::args![run, shared],
            )?;
            Ok((r.i64(0)?, r.i64(1)?))
        })
        .unwrap()
}

pub fn a_fork_shares_its_sources_full_chunks(store: &crate::sql::SqlStore) {
    let src = RunPath::new("e", "p", "big");
    new_run(store, &src);
    for i in 0..10 {
        store.ingest(&src, rows(i * 10_000, 10_000), Timestamp::now()).unwrap();
    }
    let fork = UpsertRunRequest {
        entity: Some("e".into()),
        project: Some("p".into()),
        run_id: "fork".into(),
        fork_from: Some(cairn_types::api::StepRef { run_id: "big".into(), step: 90_000 }),
        ..Default::default()
    };
    store.upsert_run(fork, Timestamp::now()).unwrap();
    let (source_chunks, source_bytes) = chunk_bytes(store, "big", false);
    let (shared_chunks, shared_bytes) = chunk_bytes(store, "fork", true);
    let (own_chunks, own_bytes) = chunk_bytes(store, "fork", false);
    // 90,001 points of 3 keys (loss, _timestamp, _runtime): 10 full chunks each are shared,
    // one partial chunk per key is the fork's own.
    assert_eq!(shared_chunks, 30);
    assert_eq!(shared_bytes, 0);
    assert_eq!(own_chunks, 3);
    assert!(own_bytes * 5 < source_bytes, "the fork wrote {own_bytes} bytes; its source holds {source_bytes} in {source_chunks} chunks");
}

pub fn concurrent_writers_each_get_every_batch(store: &crate::sql::SqlStore) {
    std::thread::scope(|scope| {
        for t in 0..8 {
            scope.spawn(move || {
                let path = RunPath::new("e", "p", format!("t{t}"));
                new_run(store, &path);
                for i in 0..20 {
                    store.ingest(&path, rows(i * 10, 10), Timestamp::now()).unwrap();
                }
            });
        }
    });
    for t in 0..8 {
        let run = store.get_run(&RunPath::new("e", "p", format!("t{t}"))).unwrap();
        assert_eq!(run.offsets.history, 200);
    }
}

pub fn leases_are_held_by_one_holder(store: &impl Store) {
    let ttl = std::time::Duration::from_secs(10);
    assert!(store.try_lease("monitor", "a", secs(0), ttl).unwrap());
    assert!(!store.try_lease("monitor", "b", secs(5), ttl).unwrap(), "a's lease runs");
    assert!(store.try_lease("monitor", "a", secs(8), ttl).unwrap(), "a renews");
    assert!(store.holds("monitor", "a", secs(9)).unwrap() && !store.holds("monitor", "b", secs(9)).unwrap());
    assert!(!store.holds("nothing", "a", secs(9)).unwrap());
    assert!(!store.try_lease("monitor", "b", secs(15), ttl).unwrap(), "renewed until 18");
    assert!(store.try_lease("monitor", "b", secs(19), ttl).unwrap(), "lapsed: b takes it");
    assert!(store.try_lease("purge", "a", secs(19), ttl).unwrap(), "another name is another lease");
    store.release("monitor", "a").unwrap();
    assert!(!store.try_lease("monitor", "a", secs(20), ttl).unwrap(), "a cannot release b's lease");
    store.release("monitor", "b").unwrap();
    assert!(store.try_lease("monitor", "a", secs(20), ttl).unwrap());
}

/// Heartbeats, stop requests and batches of one run from many threads at once (on PostgreSQL,
/// many connections): every batch's records are stored exactly once, the offsets never go back,
/// and the stop request survives the heartbeats and ingests that race it.
pub fn a_heartbeat_racing_an_ingest_loses_nothing(store: &(impl Store + Sync)) {
    let path = RunPath::new("e", "p", "race");
    new_run(store, &path);
    std::thread::scope(|scope| {
        let ingest = scope.spawn(|| {
            for i in 0..50 {
                let batch = rows(i * 20, 20);
                // Retried once, as a client whose answer was lost would.
                store.ingest(&path, batch.clone(), Timestamp::now()).unwrap();
                store.ingest(&path, batch, Timestamp::now()).unwrap();
            }
        });
        for _ in 0..3 {
            scope.spawn(|| {
                for _ in 0..60 {
                    let reply = store.heartbeat(&path, Timestamp::now()).unwrap();
                    assert_eq!(reply.state, RunState::Running);
                }
            });
        }
        scope.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            store.request_stop(&path).unwrap();
        });
        ingest.join().unwrap();
    });
    let run = store.get_run(&path).unwrap();
    assert_eq!(run.offsets.history, 1000);
    assert!(run.stop_requested, "the stop request was written over");
    let data = history_all(store, &path);
    assert_eq!(data.steps, (0..1000).collect::<Vec<i64>>());
}

/// What a run reads back as, through every query: the run, its keys, all its history and
/// system metrics, its console, files (with their bytes), alerts and forks.
fn everything(store: &impl Store, path: &RunPath) -> serde_json::Value {
    let mut run = serde_json::to_value(store.get_run(path).unwrap()).unwrap();
    run.as_object_mut().unwrap().remove("seq");
    let history = |stream| {
        let data = store.history(path, &HistoryRequest { stream, limit: 1_000_000, ..Default::default() }).unwrap();
        format!("{data:?}")
    };
    let files: Vec<(String, Vec<u8>)> = store
        .list_run_files(path)
        .unwrap()
        .into_iter()
        .map(|f| {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut store.blobs().open(&f.sha256).unwrap(), &mut bytes).unwrap();
            (f.path, bytes)
        })
        .collect();
    json!({
        "run": run,
        "keys": serde_json::to_value(store.list_keys(path).unwrap()).unwrap(),
        "history": history(KeyStream::History),
        "system": history(KeyStream::System),
        "console": serde_json::to_value(store.console(path, 0, 100_000).unwrap()).unwrap(),
        "files": format!("{files:?}"),
        "alerts": serde_json::to_value(store.list_alerts(path).unwrap()).unwrap(),
        "forks": store.list_forks(path).unwrap(),
    })
}

/// `cairn migrate`: an embedded store with forks, a rewind and its archive, console, system
/// metrics, files, alerts and a deleted run, copied in two steps (as if stopped once), reads back
/// the same in the target, and the target's forks still share their sources' chunks.
pub fn a_copy_in_steps_reads_back_the_same(target: &crate::sql::SqlStore) {
    let dir = tempfile::tempdir().unwrap();
    let source = crate::sqlite::open(dir.path(), crate::StoreConfig { default_entity: "e".into() }).unwrap();
    let src = RunPath::new("e", "p", "src");
    new_run(&source, &src);
    source.ingest(&src, rows(0, 20_000), secs(1)).unwrap();
    let events = json!({
        "console": {"offset": 0, "lines": [{"line": 0, "text": "epoch 1"}, {"line": 1, "text": "oops", "stream": "stderr"}]},
        "system": {"offset": 0, "rows": [{"_timestamp": 1.7e9, "gpu.0.util": 50.0}, {"_timestamp": 1.7e9 + 10.0, "gpu.0.util": 70.0}]},
        "events": {"offset": 0, "events": [{"type": "alert", "title": "nan", "text": "loss is nan", "level": "ERROR", "time": 1.7e9}]},
    });
    source.ingest(&src, json_batch(events), secs(2)).unwrap();
    let file = dir.path().join("ckpt");
    std::fs::write(&file, b"weights of the source run").unwrap();
    let blob = source.blobs().put_file(&file).unwrap();
    source.put_run_file(&src, FileInfo { path: "model.pt".into(), size: blob.size, sha256: blob.sha256, updated_at: secs(3) }).unwrap();
    let fork = |run_id: &str, from: &str, step: i64| UpsertRunRequest {
        entity: Some("e".into()),
        project: Some("p".into()),
        run_id: run_id.into(),
        fork_from: Some(cairn_types::api::StepRef { run_id: from.into(), step }),
        ..Default::default()
    };
    source.upsert_run(fork("f1", "src", 17_000), secs(4)).unwrap();
    source.mark_preempting(&RunPath::new("e", "p", "f1"), secs(4)).unwrap();
    // The source rewound below the fork's step: the fork's shared chunks follow into the archive.
    let rewind = UpsertRunRequest {
        entity: Some("e".into()),
        project: Some("p".into()),
        run_id: "src".into(),
        resume_from: Some(cairn_types::api::StepRef { run_id: "src".into(), step: 5_000 }),
        ..Default::default()
    };
    source.upsert_run(rewind, secs(5)).unwrap();
    source.ingest(&src, rows_from(5_001, 20_000, 100), secs(6)).unwrap();
    source.finish_run(&src, FinishRequest { exit_code: Some(0), ..Default::default() }, secs(7)).unwrap();
    // A fork of the archive, and a deleted run.
    let archive = source.get_run(&src).unwrap().metadata["rewinds"].clone();
    let archive_id = match &archive {
        Value::List(list) => match &list[0] {
            Value::Map(m) => m["archive"].as_str().unwrap().to_owned(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    source.upsert_run(fork("f2", &archive_id, 12_000), secs(8)).unwrap();
    let gone = RunPath::new("e", "q", "gone");
    new_run(&source, &gone);
    source.delete_run(&gone).unwrap();

    // Accounts go along: a password, a team role, a key (by hash), a public project, the log.
    use crate::AccountStore as _;
    source.create_user("ana", true, secs(1)).unwrap();
    source.set_password("ana", "correct horse").unwrap();
    source.create_team("e", secs(1)).unwrap();
    source.set_role("e", "ana", Some(crate::Role::Member)).unwrap();
    let (_, key) = source.create_api_key("ana", "laptop", None, secs(2)).unwrap();
    source.set_visibility("e", "p", crate::Visibility::Public).unwrap();
    crate::WorkspaceStore::save_workspace(&source, "e", "p", "ana", &json!({"version": 1, "sections": []}), secs(2)).unwrap();
    let sweep = crate::SweepStore::create_sweep(&source, "e", "p", &json!({"method": "grid", "parameters": {"a": {"values": [1, 2]}}}), secs(2)).unwrap();
    ask(&source, &sweep.sweep_id, "agent", secs(2));
    source.record_audit("ana", "key.create", "ana", "laptop", secs(2)).unwrap();
    // And artifacts: numbers, aliases, lineage and contents.
    use crate::ArtifactStore as _;
    let weights = artifact_file(&source, "w.bin", b"artifact weights");
    source.commit_artifact("e", "p", commit_request("net", "model", vec![weights.clone()], &["best"], Some("src")), secs(3)).unwrap();
    source.use_artifact(&RunPath::new("e", "p", "f1"), &cairn_types::artifacts::ArtifactRef::parse("net:best").unwrap()).ok();

    let runs = [src.clone(), RunPath::new("e", "p", "f1"), RunPath::new("e", "p", &archive_id), RunPath::new("e", "p", "f2")];
    let mut seen = Vec::new();
    let first = crate::sql::copy::copy_store(&source, target, Some(2), &mut |p| seen.push(p.done)).unwrap();
    assert_eq!((first.runs, first.done, first.already), (5, 2, 0));
    let second = crate::sql::copy::copy_store(&source, target, None, &mut |_| {}).unwrap();
    assert_eq!((second.runs, second.done, second.already), (5, 5, 2));
    for path in &runs {
        assert_eq!(everything(target, path), everything(&source, path), "{path} reads back differently");
    }
    assert!(target.get_run(&gone).is_err(), "a deleted run stays deleted");
    assert_eq!(target.get_run(&runs[1]).unwrap().preempting_at, Some(secs(4)), "a preempting run stays so");
    assert_eq!(crate::sql::copy::Counts::of(target).unwrap(), crate::sql::copy::Counts::of(&source).unwrap());
    // Shared, not copied: the forks' rows that name another key's chunk hold no data.
    let shared = |store: &crate::sql::SqlStore| {
        store
            .read(|db| db.row("SELECT count(*), coalesce(sum(length(data)), 0) FROM chunks WHERE shared_key IS NOT NULL", &[]).map(|r| (r.i64(0).unwrap(), r.i64(1).unwrap())))
            .unwrap()
    };
    assert_eq!(shared(target), shared(&source));
    assert!(shared(target).0 > 0);
    // Copying again finds nothing to do.
    let third = crate::sql::copy::copy_store(&source, target, None, &mut |_| {}).unwrap();
    assert_eq!((third.done, third.already), (5, 5));
    let ana = target.check_password("ana", "correct horse").unwrap().expect("the password came along");
    assert_eq!((ana.admin, ana.teams), (true, vec![("e".to_owned(), crate::Role::Member)]));
    assert_eq!(target.authenticate(&key, secs(3)).unwrap().unwrap().user, "ana");
    assert_eq!(target.public_projects().unwrap(), [("e".to_owned(), "p".to_owned())]);
    assert_eq!(crate::WorkspaceStore::workspace(target, "e", "p", "ana").unwrap(), Some(json!({"version": 1, "sections": []})), "layouts come along");
    let copied = crate::SweepStore::get_sweep(target, "e", "p", &sweep.sweep_id, secs(3)).unwrap();
    assert_eq!((copied.trials, copied.grid_size), (1, Some(2)), "sweeps and their trials come along, once");
    assert_eq!(target.list_audit(10, None).unwrap().len(), 1, "the log is copied once");
    let net = target.get_artifact("e", "p", "net", "best").unwrap();
    assert_eq!((net.version.as_str(), net.logged_by.as_deref(), net.aliases.clone()), ("v0", Some("e/p/src"), vec!["best".to_owned(), "latest".to_owned()]));
    assert!(target.blobs().exists(&weights.digest).unwrap());
    assert_eq!(target.artifact_manifest("e", "p", "net", "v0").unwrap(), [weights]);
}

/// A content that a purge leaves unnamed, named again by another run before, during or after its
/// collection: either the content stays, or naming it fails; never a name without its content.
pub fn a_content_named_during_a_purge_is_never_lost(store: &(impl Store + Sync)) {
    let dir = tempfile::tempdir().unwrap();
    let content = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        store.blobs().put_file(&p).unwrap()
    };
    let file = |blob: &crate::BlobRef, name: &str| FileInfo { path: name.into(), size: blob.size, sha256: blob.sha256.clone(), updated_at: secs(1) };
    let keep = RunPath::new("e", "p", "keeper");
    new_run(store, &keep);

    // Named again before the collection: it stays.
    let a = content("a", b"content a");
    let purged = RunPath::new("e", "p", "purged-a");
    new_run(store, &purged);
    store.put_run_file(&purged, file(&a, "a.bin")).unwrap();
    let orphans = store.purge_run(&purged).unwrap();
    store.put_run_file(&keep, file(&a, "a.bin")).unwrap();
    assert!(store.collect_blobs(Some(&orphans)).unwrap().is_empty());
    assert!(store.blobs().exists(&a.sha256).unwrap());

    // Named after it: refused, so the client sends it again.
    let b = content("b", b"content b");
    let purged = RunPath::new("e", "p", "purged-b");
    new_run(store, &purged);
    store.put_run_file(&purged, file(&b, "b.bin")).unwrap();
    let orphans = store.purge_run(&purged).unwrap();
    assert_eq!(store.collect_blobs(Some(&orphans)).unwrap(), [b.sha256.clone()]);
    assert_eq!(store.put_run_file(&keep, file(&b, "b.bin")).unwrap_err().code, ErrorCode::FileNotFound);

    // At the same time, many times over.
    for round in 0..10 {
        let c = content("c", format!("content c, round {round}").as_bytes());
        let purged = RunPath::new("e", "p", format!("purged-c{round}"));
        new_run(store, &purged);
        store.put_run_file(&purged, file(&c, "c.bin")).unwrap();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let orphans = store.purge_run(&purged).unwrap();
                store.collect_blobs(Some(&orphans)).unwrap();
            });
            scope.spawn(|| {
                for i in 0..5 {
                    match store.put_run_file(&keep, file(&c, &format!("c{round}-{i}.bin"))) {
                        Ok(()) => {}
                        Err(e) => assert_eq!(e.code, ErrorCode::FileNotFound, "{}", e.message),
                    }
                }
            });
        });
        let named = store.list_run_files(&keep).unwrap().iter().any(|f| f.sha256 == c.sha256);
        assert!(!named || store.blobs().exists(&c.sha256).unwrap(), "round {round}: a run names a content that was removed");
    }
    // Nothing is left for a later pass.
    assert!(store.collect_blobs(None).unwrap().is_empty());
}

/// The workspace's query over many runs (bucketed on two threads) gives each run the buckets
/// that its own series query gives, on the same grid.
pub fn project_series_of_many_runs_match_each_run(store: &impl Store) {
    let mut ids = Vec::new();
    for r in 0..12i64 {
        let path = RunPath::new("e", "many", format!("r{r:02}"));
        new_run(store, &path);
        let rows: Vec<serde_json::Value> = (0..(500 + r * 100)).map(|i| json!({"_step": i, "a": (i * r) as f64, "b": (i % 7) as f64 + r as f64})).collect();
        store.ingest(&path, json_batch(json!({"history": {"offset": 0, "rows": rows}})), secs(1)).unwrap();
        ids.push(path.run_id);
    }
    let query = ProjectSeriesQuery { run_ids: ids.clone(), keys: vec!["a".into(), "b".into()], buckets: Some(50), ..Default::default() };
    let all = project_series_of(store, "e", "many", &query).unwrap();
    assert_eq!(all.runs.len(), 12);
    let (lo, hi) = (all.grid.x_min.unwrap(), all.grid.x_max.unwrap());
    assert_eq!((lo, hi), (0.0, 1599.0));
    for (run, id) in all.runs.iter().zip(&ids) {
        assert_eq!(&run.run_id, id);
        let one = series_of(store, &RunPath::new("e", "many", id), &SeriesQuery { keys: "a,b".into(), buckets: Some(50), x_min: Some(lo), x_max: Some(hi), ..Default::default() })
            .unwrap();
        assert_eq!(run.series, one.series, "run {id}");
    }
}

/// A NUL character in a console line, a config value or a summary key (PostgreSQL holds none)
/// is stored, and the batches after it go on.
pub fn a_nul_character_does_not_stop_a_run(store: &impl Store) {
    let path = RunPath::new("e", "p", "nul");
    new_run(store, &path);
    let batch = json!({
        "config": {"offset": 0, "updates": [{"set": {"note": "a\u{0}b"}}]},
        "console": {"offset": 0, "lines": [{"line": 0, "text": "bad\u{0}byte"}]},
        "history": {"offset": 0, "rows": [{"_step": 0, "x\u{0}y": 1.0, "loss": 0.5}]},
    });
    store.ingest(&path, json_batch(batch), secs(1)).unwrap();
    store.ingest(&path, rows_from(1, 5, 1), secs(2)).unwrap();
    let run = store.get_run(&path).unwrap();
    assert_eq!(run.offsets.history, 6);
    let note = run.config["note"].as_str().unwrap().to_owned();
    assert!(note == "a\u{0}b" || note == "a\u{fffd}b", "{note:?}");
    let line = &store.console(&path, 0, 10).unwrap().lines[0].text;
    assert!(line == "bad\u{0}byte" || line == "bad\u{fffd}byte", "{line:?}");
}

pub fn accounts_teams_and_api_keys(store: &impl Store) {
    use crate::Role;
    // A user takes over the entity its runs made; names are checked; one account per name.
    new_run(store, &RunPath::new("ana", "p", "r1"));
    assert!(store.create_user("ana", true, secs(1)).unwrap().admin);
    store.create_user("bo", false, secs(1)).unwrap();
    store.create_team("lab", secs(1)).unwrap();
    assert_eq!(store.create_user("lab", false, secs(2)).unwrap_err().code, ErrorCode::AccountExists);
    assert_eq!(store.create_team("bad name", secs(2)).unwrap_err().code, ErrorCode::InvalidName);
    let names: Vec<(String, bool)> = store.list_accounts().unwrap().into_iter().map(|a| (a.name, a.team)).collect();
    assert_eq!(names, [("ana".into(), false), ("bo".into(), false), ("lab".into(), true)]);

    store.set_role("lab", "bo", Some(Role::Viewer)).unwrap();
    store.set_role("lab", "ana", Some(Role::Member)).unwrap();
    store.set_role("lab", "ana", Some(Role::Admin)).unwrap();
    assert_eq!(store.members("lab").unwrap(), [("ana".into(), Role::Admin), ("bo".into(), Role::Viewer)]);
    assert_eq!(store.set_role("bo", "ana", Some(Role::Member)).unwrap_err().code, ErrorCode::InvalidValue, "bo is a user, not a team");
    assert_eq!(store.set_role("lab", "ghost", Some(Role::Member)).unwrap_err().code, ErrorCode::EntityNotFound);

    // Keys: shown once, listed without the key, found by the key, refused once revoked or expired.
    let (listed, key) = store.create_api_key("bo", "laptop", None, secs(10)).unwrap();
    assert!(key.starts_with("cairn-") && key.len() == 46, "{key}");
    assert!(key.starts_with(&listed.prefix) && listed.prefix.len() < key.len());
    let who = store.authenticate(&key, secs(11)).unwrap().expect("a good key");
    assert_eq!((who.user.as_str(), who.admin, who.teams.clone()), ("bo", false, vec![("lab".to_owned(), Role::Viewer)]));
    assert_eq!(store.list_api_keys("bo").unwrap()[0].last_used_at, Some(secs(11)));
    assert_eq!(store.authenticate("cairn_not-a-key-at-all-xxxxxxxxxxxxxxxxxxxxx", secs(11)).unwrap(), None);
    assert_eq!(store.authenticate("", secs(11)).unwrap(), None);
    let (_, expiring) = store.create_api_key("bo", "ci", Some(secs(100)), secs(10)).unwrap();
    assert!(store.authenticate(&expiring, secs(99)).unwrap().is_some());
    assert_eq!(store.authenticate(&expiring, secs(100)).unwrap(), None, "expired");
    assert_eq!(store.create_api_key("bo", "past", Some(secs(5)), secs(10)).unwrap_err().code, ErrorCode::InvalidValue);
    let revoked = store.revoke_api_key(&key, secs(20)).unwrap();
    assert_eq!((revoked.id, revoked.revoked_at), (listed.id, Some(secs(20))));
    assert_eq!(store.authenticate(&key, secs(21)).unwrap(), None, "revoked");
    let by_id = store.list_api_keys("bo").unwrap()[1].id;
    assert!(store.revoke_api_key(&by_id.to_string(), secs(22)).unwrap().revoked_at.is_some());
    assert_eq!(store.revoke_api_key("999999", secs(22)).unwrap_err().code, ErrorCode::ApiKeyNotFound);
    assert_eq!(store.list_api_keys("bo").unwrap().len(), 2);
    store.set_role("lab", "bo", None).unwrap();
    assert_eq!(store.members("lab").unwrap(), [("ana".into(), Role::Admin)]);
}

/// Asks for the next trial as a new agent each time (an agent that asks again without starting
/// its trial's run gets that trial back).
fn ask(store: &impl Store, sweep: &str, agent: &str, at: Timestamp) -> cairn_types::sweep::NextTrial {
    static ASKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = ASKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let request = cairn_types::sweep::NextTrialRequest { agent: format!("{agent}#{n}"), last: None };
    crate::SweepStore::next_trial(store, "e", "p", sweep, &request, at).unwrap()
}

/// Plays a trial: its run starts, logs `loss`, and ends as `state`.
fn play_trial(store: &impl Store, path: &RunPath, loss: f64, state: RunState) {
    new_run(store, path);
    store.ingest(path, json_batch(json!({"history": {"offset": 0, "rows": [{"_step": 0, "loss": loss}]}})), secs(2)).unwrap();
    if state == RunState::Crashed {
        // Its process died: the crash monitor finds it silent (the only run that is running).
        assert_eq!(store.mark_crashed(secs(1_000), secs(0)).unwrap(), [path.clone()]);
    } else {
        store.finish_run(path, FinishRequest { state: Some(state), ..Default::default() }, secs(3)).unwrap();
    }
}

pub fn a_grid_sweep_hands_out_every_point_once_and_again_after_a_crash(store: &impl Store) {
    use cairn_types::sweep::{NextTrial, SweepState};
    let bad = store.create_sweep("e", "p", &json!({"method": "grid", "parameters": {"lr": {"min": 0.1, "max": 0.01}}}), secs(1)).unwrap_err();
    assert_eq!(bad.code, ErrorCode::InvalidSweep);
    assert!(bad.message.contains("parameter \"lr\": min 0.1 must be below max 0.01"), "{}", bad.message);
    let config = json!({"method": "grid", "metric": {"name": "loss", "goal": "minimize"}, "parameters": {"a": {"values": [1, 2, 3]}, "b": {"values": ["x", "y"]}}});
    let sweep = store.create_sweep("e", "p", &config, secs(1)).unwrap();
    assert_eq!((sweep.state, sweep.grid_size, sweep.trials), (SweepState::Running, Some(6), 0));
    assert_eq!(store.list_sweeps("e", "p", secs(1)).unwrap().len(), 1);
    let id = sweep.sweep_id.clone();
    // Three agents asking at once, from threads: six distinct points, then waits.
    let sid = id.as_str();
    let handed: Vec<NextTrial> = std::thread::scope(|scope| {
        let agents: Vec<_> = (0..3).map(|a| scope.spawn(move || (0..3).map(|_| ask(store, sid, &format!("agent-{a}"), secs(2))).collect::<Vec<_>>())).collect();
        agents.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let runs: Vec<(String, serde_json::Value)> =
        handed.iter().filter_map(|n| if let NextTrial::Run { run_id, config, .. } = n { Some((run_id.clone(), config.clone())) } else { None }).collect();
    assert_eq!(runs.len(), 6, "{handed:?}");
    let points: std::collections::BTreeSet<String> = runs.iter().map(|(_, c)| c.to_string()).collect();
    assert_eq!(points.len(), 6, "every point once");
    assert!(handed.iter().filter(|n| matches!(n, NextTrial::Wait { .. })).count() == 3, "{handed:?}");
    // The trials run: one crashes, the others finish. The crashed point comes back.
    for (i, (run_id, _)) in runs.iter().enumerate() {
        let state = if i == 2 { RunState::Crashed } else { RunState::Finished };
        play_trial(store, &RunPath::new("e", "p", run_id.as_str()), 1.0 + i as f64, state);
    }
    let again = ask(store, &id, "agent-0", secs(4));
    let NextTrial::Run { run_id, config: point, .. } = again else { panic!("the crashed point again: {again:?}") };
    assert_eq!(point, runs[2].1);
    play_trial(store, &RunPath::new("e", "p", run_id.as_str()), 0.5, RunState::Finished);
    let done = ask(store, &id, "agent-1", secs(5));
    assert!(matches!(&done, NextTrial::Stop { reason } if reason.contains("6 grid points")), "{done:?}");
    let info = store.get_sweep("e", "p", &id, secs(5)).unwrap();
    assert_eq!((info.state, info.trials, info.finished, info.crashed), (SweepState::Finished, 7, 6, 1));
    assert_eq!(info.best.map(|b| (b.run_id, b.value)), Some((run_id.clone(), 0.5)));
    let trials = store.sweep_trials("e", "p", &id, secs(5)).unwrap();
    assert_eq!(trials.len(), 7);
    let crashed = trials.iter().find(|t| t.run_id == runs[2].0).unwrap();
    assert_eq!(crashed.state, "crashed");
    assert_eq!(trials[6].grid_index, crashed.grid_index);
    assert_eq!(trials[6].run_id, run_id);
    assert_eq!(store.sweep_of_run("e", "p", &run_id).unwrap(), Some((id.clone(), None)));
    assert_eq!(store.sweep_of_run("e", "p", "nope").unwrap(), None);
    // An agent that asks again before its trial's run started (the answer was lost) gets the
    // same trial back; once it says it ran that trial (its program failed before init), a new one.
    let r = store.create_sweep("e", "p", &json!({"method": "random", "parameters": {"x": {"min": 0.0, "max": 1.0}}}), secs(6)).unwrap().sweep_id;
    let asked = |last: Option<&str>| {
        let request = cairn_types::sweep::NextTrialRequest { agent: "steady".into(), last: last.map(str::to_owned) };
        match crate::SweepStore::next_trial(store, "e", "p", &r, &request, secs(7)).unwrap() {
            NextTrial::Run { run_id, .. } => run_id,
            other => panic!("{other:?}"),
        }
    };
    let first = asked(None);
    assert_eq!(asked(None), first, "handed back");
    let second = asked(Some(&first));
    assert_ne!(second, first);
    assert_eq!(store.sweep_trials("e", "p", &r, secs(7)).unwrap().len(), 2);
    // A finished sweep stays finished.
    assert_eq!(store.set_sweep_state("e", "p", &id, SweepState::Running, secs(6)).unwrap_err().code, ErrorCode::SweepOver);
    assert_eq!(store.get_sweep("e", "p", "nope", secs(6)).unwrap_err().code, ErrorCode::SweepNotFound);
}

pub fn sweeps_stop_at_their_cap_target_and_state(store: &impl Store) {
    use cairn_types::sweep::{NextTrial, SweepState};
    // Random, capped at 3: three trials, then a wait while they run, then stop.
    let config = json!({"method": "random", "run_cap": 3, "parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1}}});
    let id = store.create_sweep("e", "p", &config, secs(1)).unwrap().sweep_id;
    let mut handed = Vec::new();
    for _ in 0..3 {
        match ask(store, &id, "a", secs(2)) {
            NextTrial::Run { run_id, config, .. } => {
                let lr = config["lr"].as_f64().unwrap();
                assert!((1e-4..=1e-1).contains(&lr), "{lr}");
                handed.push(run_id);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(ask(store, &id, "a", secs(2)), NextTrial::Wait { .. }));
    for run_id in &handed {
        play_trial(store, &RunPath::new("e", "p", run_id.as_str()), 1.0, RunState::Finished);
    }
    assert!(matches!(ask(store, &id, "a", secs(3)), NextTrial::Stop { reason } if reason.contains("run cap")));
    // A target ends the sweep once a finished trial reaches it.
    let target = json!({"method": "random", "metric": {"name": "loss", "goal": "minimize", "target": 0.2}, "parameters": {"x": {"min": 0.0, "max": 1.0}}});
    let t = store.create_sweep("e", "p", &target, secs(1)).unwrap().sweep_id;
    let NextTrial::Run { run_id, .. } = ask(store, &t, "a", secs(2)) else { panic!() };
    play_trial(store, &RunPath::new("e", "p", run_id.as_str()), 0.1, RunState::Finished);
    assert!(matches!(ask(store, &t, "a", secs(3)), NextTrial::Stop { reason } if reason.contains("target")));
    // Paused: agents wait; resumed: trials again; canceled: the running trials are named to stop.
    let s = store.create_sweep("e", "p", &json!({"method": "random", "parameters": {"x": {"values": [1, 2]}}}), secs(1)).unwrap().sweep_id;
    let NextTrial::Run { run_id, .. } = ask(store, &s, "a", secs(2)) else { panic!() };
    new_run(store, &RunPath::new("e", "p", run_id.as_str()));
    store.set_sweep_state("e", "p", &s, SweepState::Paused, secs(3)).unwrap();
    assert!(matches!(ask(store, &s, "a", secs(3)), NextTrial::Wait { reason, .. } if reason.contains("paused")));
    store.set_sweep_state("e", "p", &s, SweepState::Running, secs(3)).unwrap();
    assert!(matches!(ask(store, &s, "a", secs(3)), NextTrial::Run { .. }));
    let (info, to_stop) = store.set_sweep_state("e", "p", &s, SweepState::Canceled, secs(4)).unwrap();
    assert_eq!((info.state, to_stop), (SweepState::Canceled, vec![run_id]));
    assert!(matches!(ask(store, &s, "a", secs(4)), NextTrial::Stop { reason } if reason.contains("canceled")));
    let bayes = store.create_sweep("e", "p", &json!({"method": "bayes", "parameters": {"x": {"min": 0.0, "max": 1.0}}}), secs(1)).unwrap_err();
    assert_eq!((bayes.code, bayes.message.as_str()), (ErrorCode::InvalidSweep, "a bayes sweep needs a metric to optimize"));
}

pub fn bayes_learns_and_hyperband_stops_the_trials_it_should(store: &impl Store) {
    use cairn_types::sweep::NextTrial;
    // Bayes on a parabola with its minimum at 0.3: after the first draws, trials gather there.
    let config = json!({"method": "bayes", "metric": {"name": "loss", "goal": "minimize"}, "parameters": {"x": {"min": 0.0, "max": 1.0}}});
    let id = store.create_sweep("e", "p", &config, secs(1)).unwrap().sweep_id;
    let mut xs = Vec::new();
    for _ in 0..14 {
        let NextTrial::Run { run_id, config, .. } = ask(store, &id, "a", secs(2)) else { panic!("a trial") };
        let x = config["x"].as_f64().unwrap();
        play_trial(store, &RunPath::new("e", "p", run_id.as_str()), (x - 0.3).powi(2), RunState::Finished);
        xs.push(x);
    }
    assert!(xs[8..].iter().filter(|x| (**x - 0.3).abs() < 0.1).count() >= 4, "{xs:?}");
    assert!(store.get_sweep("e", "p", &id, secs(3)).unwrap().best.unwrap().value < 0.005, "{xs:?}");

    // Hyperband judged at iterations 2 and 4, keeping the top half. a finished; b, c and d run.
    let config = json!({"method": "random", "metric": {"name": "loss", "goal": "minimize"},
        "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2, "s": 2}, "parameters": {"x": {"min": 0.0, "max": 1.0}}});
    let id = store.create_sweep("e", "p", &config, secs(1)).unwrap().sweep_id;
    let mut runs = Vec::new();
    for losses in [vec![5.0, 4.0, 3.0, 2.0, 1.0], vec![5.0, 4.5, 4.4, 4.3], vec![5.0, 4.2, 2.5, 2.4], vec![9.0]] {
        let NextTrial::Run { run_id, .. } = ask(store, &id, "a", secs(2)) else { panic!("a trial") };
        let path = RunPath::new("e", "p", run_id.as_str());
        new_run(store, &path);
        let rows: Vec<serde_json::Value> = losses.iter().enumerate().map(|(i, l)| json!({"_step": i, "loss": l, "other": 1})).collect();
        store.ingest(&path, json_batch(json!({"history": {"offset": 0, "rows": rows}})), secs(2)).unwrap();
        runs.push(path);
    }
    store.finish_run(&runs[0], FinishRequest { state: Some(RunState::Finished), ..Default::default() }, secs(3)).unwrap();
    assert_eq!(store.early_terminate(secs(4)).unwrap(), [runs[1].clone()], "b ranks last at iteration 2");
    assert!(store.get_run(&runs[1]).unwrap().stop_requested);
    assert!(!store.get_run(&runs[2]).unwrap().stop_requested && !store.get_run(&runs[3]).unwrap().stop_requested);
    let made = store.sweep_decisions("e", "p", &id).unwrap();
    let view: Vec<(String, u64, bool)> = made.iter().map(|d| (d.run_id.clone(), d.bracket, d.stopped)).collect();
    let name = |i: usize| runs[i].run_id.to_string();
    assert_eq!(view.len(), 3, "{view:?}");
    for want in [(name(1), 2, true), (name(2), 2, false), (name(2), 4, false)] {
        assert!(view.contains(&want), "{want:?} in {view:?}");
    }
    let (sweep_id, reason) = store.sweep_of_run("e", "p", &name(1)).unwrap().unwrap();
    assert_eq!(sweep_id, id);
    assert_eq!(reason.as_deref(), Some("stopped by hyperband at iteration 2: loss 4.5 ranks 3 of the 3 trials that reached it, below the top 1/2 (the 2 kept reach 4.2)"));
    assert_eq!(store.sweep_of_run("e", "p", &name(2)).unwrap().unwrap().1, None);
    // Judged once: the next pass stops nothing more, and d reaching iteration 2 is judged then.
    assert_eq!(store.early_terminate(secs(5)).unwrap(), Vec::<RunPath>::new());
    store.ingest(&runs[3], json_batch(json!({"history": {"offset": 1, "rows": [{"_step": 1, "loss": 8.0}]}})), secs(6)).unwrap();
    assert_eq!(store.early_terminate(secs(7)).unwrap(), [runs[3].clone()], "d is last of 4 at iteration 2");
    assert_eq!(store.sweep_decisions("e", "p", &id).unwrap().len(), 4);

    // Trials of a local sweep, given at sync: the sweep is made (finished), a trial given again
    // changes nothing, another machine's trial 0 comes after, a newer judgement wins, and the
    // sweep's configuration must match.
    use cairn_types::sweep::{BracketDecision, ImportTrial};
    let local = json!({"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [1, 2]}}});
    let decision = |stopped: bool, at: i64| BracketDecision {
        run_id: "ignored".into(),
        bracket: 2,
        value: 1.0,
        threshold: 0.5,
        rank: 2,
        reached: 2,
        kept: 1,
        stopped,
        decided_at: Some(secs(at)),
    };
    let trial = |run_id: &str, decisions: Vec<BracketDecision>| ImportTrial {
        sweep_config: local.clone(),
        seq: 0,
        run_id: run_id.into(),
        config: json!({"x": 1}),
        grid_index: Some(0),
        agent: "node".into(),
        assigned_at: secs(1),
        decisions,
    };
    new_run(store, &RunPath::new("e", "p", "loc1"));
    new_run(store, &RunPath::new("e", "p", "loc2"));
    let made = store.import_trial("e", "p", "local1", &trial("loc1", vec![decision(false, 5)]), secs(9)).unwrap();
    assert_eq!((made.state, made.trials, made.method.as_str()), (cairn_types::sweep::SweepState::Finished, 1, "grid"));
    assert_eq!(store.import_trial("e", "p", "local1", &trial("loc1", vec![decision(true, 6)]), secs(9)).unwrap().trials, 1, "given again");
    assert_eq!(store.import_trial("e", "p", "local1", &trial("loc2", vec![]), secs(9)).unwrap().trials, 2, "the same seq from another machine");
    let seqs: Vec<(String, u64)> = store.sweep_trials("e", "p", "local1", secs(9)).unwrap().into_iter().map(|t| (t.run_id, t.seq)).collect();
    assert_eq!(seqs, [("loc1".to_owned(), 0), ("loc2".to_owned(), 1)]);
    let judged = store.sweep_decisions("e", "p", "local1").unwrap();
    assert_eq!((judged.len(), judged[0].stopped, judged[0].run_id.as_str()), (1, true, "loc1"), "the newer judgement, under the trial's own run");
    store.import_trial("e", "p", "local1", &trial("loc1", vec![decision(false, 4)]), secs(9)).unwrap();
    assert!(store.sweep_decisions("e", "p", "local1").unwrap()[0].stopped, "an older one does not win");
    let other = ImportTrial { sweep_config: json!({"method": "random", "parameters": {"x": {"min": 0, "max": 1}}}), ..trial("loc1", vec![]) };
    let refused = store.import_trial("e", "p", "local1", &other, secs(9)).unwrap_err();
    assert!(refused.message.contains("exists with another configuration"), "{}", refused.message);
}

pub fn workspaces_are_kept_per_project_and_viewer(store: &impl Store) {
    new_run(store, &RunPath::new("ana", "p", "r1"));
    new_run(store, &RunPath::new("ana", "q", "r2"));
    assert_eq!(store.workspace("ana", "p", "ana").unwrap(), None, "automatic until arranged");
    let mine = json!({"version": 1, "sections": [{"id": "s", "name": "Mine", "panels": []}]});
    store.save_workspace("ana", "p", "ana", &mine, secs(1)).unwrap();
    store.save_workspace("ana", "p", "bo", &json!({"version": 1, "sections": []}), secs(2)).unwrap();
    assert_eq!(store.workspace("ana", "p", "ana").unwrap(), Some(mine.clone()));
    assert_eq!(store.workspace("ana", "q", "ana").unwrap(), None, "per project");
    assert_eq!(store.workspace("ana", "p", "bo").unwrap(), Some(json!({"version": 1, "sections": []})), "per viewer");
    // Saved again: replaced.
    let renamed = json!({"version": 1, "sections": [{"id": "s", "name": "Renamed", "panels": []}]});
    store.save_workspace("ana", "p", "ana", &renamed, secs(3)).unwrap();
    assert_eq!(store.workspace("ana", "p", "ana").unwrap(), Some(renamed));
    assert!(store.reset_workspace("ana", "p", "ana").unwrap());
    assert!(!store.reset_workspace("ana", "p", "ana").unwrap());
    assert_eq!(store.workspace("ana", "p", "ana").unwrap(), None);
    assert_eq!(store.workspace("ana", "p", "bo").unwrap().unwrap()["version"], 1, "the other viewer's stays");
    // Bad input is refused with its reason, and a missing project is named.
    assert_eq!(store.save_workspace("ana", "p", "ana", &json!([1]), secs(4)).unwrap_err().code, ErrorCode::InvalidBody);
    let huge = json!({"x": "y".repeat(2 << 20)});
    assert!(store.save_workspace("ana", "p", "ana", &huge, secs(4)).unwrap_err().message.contains("at most"));
    assert_eq!(store.save_workspace("ana", "nope", "ana", &mine, secs(4)).unwrap_err().code, ErrorCode::ProjectNotFound);
}

pub fn passwords_sessions_visibility_and_audit(store: &impl Store) {
    use crate::Visibility;
    assert!(!store.has_users().unwrap());
    store.create_team("lab", secs(1)).unwrap();
    assert!(!store.has_users().unwrap(), "a team is not a user");
    store.create_user("ana", false, secs(1)).unwrap();
    assert!(store.has_users().unwrap());

    // A secret of the deployment: made once, the same on every read, one per name.
    let secret = store.server_secret("signing").unwrap();
    assert!(secret.len() >= 40, "{secret}");
    assert_eq!(store.server_secret("signing").unwrap(), secret);
    assert_ne!(store.server_secret("other").unwrap(), secret);

    // Passwords: stored hashed, checked, never matched when unset or wrong.
    assert_eq!(store.check_password("ana", "whatever-it-is").unwrap(), None, "no password yet");
    assert_eq!(store.set_password("ana", "short").unwrap_err().code, ErrorCode::InvalidValue);
    assert_eq!(store.set_password("ghost", "long enough").unwrap_err().code, ErrorCode::EntityNotFound);
    store.set_password("ana", "correct horse").unwrap();
    assert_eq!(store.check_password("ana", "correct horse").unwrap().unwrap().user, "ana");
    assert_eq!(store.check_password("ana", "wrong horse!").unwrap(), None);
    assert_eq!(store.check_password("ghost", "correct horse").unwrap(), None);
    assert_eq!(store.check_password("lab", "correct horse").unwrap(), None, "a team cannot sign in");

    // Sessions: found by token until they expire or end; the principal has the teams of now.
    let token = store.create_session("ana", secs(100), secs(10)).unwrap();
    assert!(token.len() >= 40);
    store.set_role("lab", "ana", Some(crate::Role::Member)).unwrap();
    let who = store.session_principal(&token, secs(50)).unwrap().unwrap();
    assert_eq!((who.user.as_str(), who.teams.clone()), ("ana", vec![("lab".to_owned(), crate::Role::Member)]));
    assert_eq!(store.principal("ana").unwrap(), Some(who));
    assert_eq!(store.principal("lab").unwrap(), None);
    assert_eq!(store.session_principal(&token, secs(100)).unwrap(), None, "expired");
    assert_eq!(store.session_principal("cairns_forged", secs(50)).unwrap(), None);
    store.end_session(&token).unwrap();
    assert_eq!(store.session_principal(&token, secs(50)).unwrap(), None, "ended");
    let other = store.create_session("ana", secs(100), secs(10)).unwrap();
    store.set_password("ana", "battery staple").unwrap();
    assert_eq!(store.session_principal(&other, secs(50)).unwrap(), None, "a new password signs browsers out");
    assert_eq!(store.create_team("shell", secs(1)).unwrap_err().code, ErrorCode::InvalidName, "reserved");

    // Visibility: private by default; a public project is listed as such.
    let (mine, theirs) = (RunPath::new("ana", "p", "r1"), RunPath::new("lab", "q", "r2"));
    new_run(store, &mine);
    new_run(store, &theirs);
    assert_eq!(store.get_project("lab", "q").unwrap().visibility, Visibility::Private);
    store.set_visibility("lab", "q", Visibility::Public).unwrap();
    assert_eq!(store.get_project("lab", "q").unwrap().visibility, Visibility::Public);
    assert_eq!(store.public_projects().unwrap(), [("lab".to_owned(), "q".to_owned())]);
    assert_eq!(store.set_visibility("lab", "nope", Visibility::Public).unwrap_err().code, ErrorCode::ProjectNotFound);
    store.set_visibility("lab", "q", Visibility::Private).unwrap();

    // A content is readable by whoever can read a run that names it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w"), b"weights").unwrap();
    let blob = store.blobs().put_file(&dir.path().join("w")).unwrap();
    let file = |path: &str| FileInfo { path: path.into(), size: blob.size, sha256: blob.sha256.clone(), updated_at: secs(5) };
    store.put_run_file(&theirs, file("model.bin")).unwrap();
    let ana = ["ana".to_owned()];
    assert!(!store.content_readable(&blob.sha256, Some(&ana)).unwrap());
    assert!(store.content_readable(&blob.sha256, Some(&["lab".to_owned()])).unwrap());
    assert!(store.content_readable(&blob.sha256, None).unwrap());
    store.set_visibility("lab", "q", Visibility::Public).unwrap();
    assert!(store.content_readable(&blob.sha256, Some(&ana)).unwrap(), "public");
    assert!(!store.content_readable(&"0".repeat(64), None).unwrap());

    // The audit log, newest first, in pages.
    for i in 0..3 {
        store.record_audit("ana", "run.delete", &format!("ana/p/r{i}"), "", secs(20 + i)).unwrap();
    }
    let log = store.list_audit(2, None).unwrap();
    assert_eq!(log.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["ana/p/r2", "ana/p/r1"]);
    assert_eq!((log[0].actor.as_str(), log[0].action.as_str(), log[0].at), ("ana", "run.delete", secs(22)));
    let older = store.list_audit(10, Some(log[1].id)).unwrap();
    assert_eq!(older.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["ana/p/r0"]);
}

/// Puts `bytes` in the store's blobs; returns its manifest entry at `path`.
fn artifact_file(store: &impl Store, path: &str, bytes: &[u8]) -> cairn_types::artifacts::ManifestEntry {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), bytes).unwrap();
    let blob = store.blobs().put_file(&dir.path().join("f")).unwrap();
    cairn_types::artifacts::ManifestEntry { path: path.into(), digest: blob.sha256, size: blob.size, reference: None }
}

fn commit_request(name: &str, kind: &str, entries: Vec<cairn_types::artifacts::ManifestEntry>, aliases: &[&str], run_id: Option<&str>) -> cairn_types::artifacts::CommitArtifact {
    cairn_types::artifacts::CommitArtifact {
        name: name.into(),
        kind: kind.into(),
        description: Some("digits".into()),
        metadata: map! {"rows" => 60_000},
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        entries,
        run_id: run_id.map(str::to_owned),
    }
}

pub fn artifacts_versions_aliases_and_lineage(store: &impl Store) {
    use cairn_types::artifacts::{ArtifactRef, ManifestEntry};
    let producer = RunPath::new("e", "p", "producer");
    let consumer = RunPath::new("e", "p", "consumer");
    new_run(store, &producer);
    new_run(store, &consumer);
    let train = artifact_file(store, "train/images.bin", b"train images");
    let labels = artifact_file(store, "labels.csv", b"0,1,2");
    let reference = ManifestEntry { path: "raw.tar".into(), digest: "\"etag-1\"".into(), size: 1 << 30, reference: Some("s3://bucket/raw.tar".into()) };
    let v0 =
        store.commit_artifact("e", "p", commit_request("mnist", "dataset", vec![train.clone(), labels.clone(), reference.clone()], &["best"], Some("producer")), secs(10)).unwrap();
    assert_eq!((v0.version.as_str(), v0.version_index, v0.file_count, v0.kind.as_str()), ("v0", 0, 3, "dataset"));
    assert_eq!(v0.size, train.size + labels.size + (1 << 30));
    assert_eq!(v0.aliases, ["best", "latest"]);
    assert_eq!(v0.logged_by.as_deref(), Some("e/p/producer"));
    assert_eq!(v0.metadata["rows"], Value::Int(60_000));
    assert_eq!(v0.digest, cairn_types::artifacts::manifest_digest(&[labels.clone(), reference.clone(), train.clone()]));

    // The same content again is the same version; the aliases given move to it.
    let again = store.commit_artifact("e", "p", commit_request("mnist", "dataset", vec![reference.clone(), labels.clone(), train.clone()], &["prod"], None), secs(11)).unwrap();
    assert_eq!((again.version.as_str(), again.aliases.clone()), ("v0", vec!["best".to_owned(), "latest".to_owned(), "prod".to_owned()]));
    // New content: v1, which takes `latest`; `prod` moves when given.
    let changed = artifact_file(store, "labels.csv", b"0,1,2,3");
    let v1 = store.commit_artifact("e", "p", commit_request("mnist", "dataset", vec![train.clone(), changed.clone()], &["prod"], Some("producer")), secs(12)).unwrap();
    assert_eq!((v1.version.as_str(), v1.aliases.clone()), ("v1", vec!["latest".to_owned(), "prod".to_owned()]));
    assert_eq!(store.get_artifact("e", "p", "mnist", "v0").unwrap().aliases, ["best"]);
    assert_eq!(store.get_artifact("e", "p", "mnist", "latest").unwrap().version, "v1");
    assert_eq!(store.get_artifact("e", "p", "mnist", "best").unwrap().version, "v0");
    assert_eq!(store.get_artifact("e", "p", "mnist", "v7").unwrap_err().code, ErrorCode::ArtifactNotFound);
    assert_eq!(store.get_artifact("e", "p", "mnist", "nope").unwrap_err().code, ErrorCode::ArtifactNotFound);
    let manifest = store.artifact_manifest("e", "p", "mnist", "v0").unwrap();
    assert_eq!(manifest.iter().map(|m| m.path.as_str()).collect::<Vec<_>>(), ["labels.csv", "raw.tar", "train/images.bin"]);
    assert_eq!(manifest[1], reference);

    // Bad input, refused with what was wrong; nothing is made.
    let wrong_kind = store.commit_artifact("e", "p", commit_request("mnist", "model", vec![train.clone()], &[], None), secs(13)).unwrap_err();
    assert!(wrong_kind.message.contains("is a \"dataset\""), "{}", wrong_kind.message);
    let missing = ManifestEntry { path: "gone.bin".into(), digest: "0".repeat(64), size: 3, reference: None };
    assert_eq!(store.commit_artifact("e", "p", commit_request("mnist", "dataset", vec![missing], &[], None), secs(13)).unwrap_err().code, ErrorCode::FileNotFound);
    assert_eq!(store.commit_artifact("e", "p", commit_request("bad name", "dataset", vec![], &[], None), secs(13)).unwrap_err().code, ErrorCode::InvalidName);
    assert_eq!(store.commit_artifact("e", "p", commit_request("mnist", "dataset", vec![train.clone()], &["v9"], None), secs(13)).unwrap_err().code, ErrorCode::InvalidName);
    assert_eq!(store.list_artifact_versions("e", "p", "mnist").unwrap().iter().map(|v| v.version.as_str()).collect::<Vec<_>>(), ["v1", "v0"]);

    // Collections and types.
    let model = artifact_file(store, "model.pt", b"weights");
    store.commit_artifact("e", "p", commit_request("resnet", "model", vec![model.clone()], &[], Some("consumer")), secs(14)).unwrap();
    let names = |kind: Option<&str>| store.list_collections("e", "p", kind).unwrap().into_iter().map(|c| (c.name, c.version_count)).collect::<Vec<_>>();
    assert_eq!(names(None), [("mnist".to_owned(), 2), ("resnet".to_owned(), 1)]);
    assert_eq!(names(Some("model")), [("resnet".to_owned(), 1)]);
    assert_eq!(store.artifact_types("e", "p").unwrap(), ["dataset", "model"]);

    // Lineage, both ways.
    assert_eq!(store.use_artifact(&consumer, &ArtifactRef::parse("mnist:best").unwrap()).unwrap().version, "v0");
    store.use_artifact(&consumer, &ArtifactRef::parse("e/p/mnist:best").unwrap()).unwrap();
    assert_eq!(store.use_artifact(&consumer, &ArtifactRef::parse("mnist:nope").unwrap()).unwrap_err().code, ErrorCode::ArtifactNotFound);
    let used = store.run_artifacts(&consumer).unwrap();
    assert_eq!(used.inputs.iter().map(|a| a.qualified()).collect::<Vec<_>>(), ["e/p/mnist:v0"]);
    assert_eq!(used.outputs.iter().map(|a| a.qualified()).collect::<Vec<_>>(), ["e/p/resnet:v0"]);
    let made = store.run_artifacts(&producer).unwrap();
    assert_eq!(made.outputs.iter().map(|a| a.version.as_str()).collect::<Vec<_>>(), ["v0", "v1"]);
    let lineage = store.artifact_lineage("e", "p", "mnist", "v0").unwrap();
    assert_eq!((lineage.logged_by.as_deref(), lineage.used_by.clone()), (Some("e/p/producer"), vec!["e/p/consumer".to_owned()]));

    // Aliases set exactly; one version per alias.
    let moved = store.set_artifact_aliases("e", "p", "mnist", "v1", vec!["best".into(), "latest".into()]).unwrap();
    assert_eq!(moved.aliases, ["best", "latest"]);
    assert_eq!(store.get_artifact("e", "p", "mnist", "v0").unwrap().aliases, Vec::<String>::new());

    // Purging the run that logged a version keeps the version and its contents.
    store.purge_run(&producer).unwrap();
    store.collect_blobs(None).unwrap();
    let kept = store.get_artifact("e", "p", "mnist", "v1").unwrap();
    assert_eq!(kept.logged_by, None);
    assert!(store.blobs().exists(&changed.digest).unwrap() && store.blobs().exists(&train.digest).unwrap());

    // Deleting: refused while aliased; then `latest` goes back; contents nothing names are collected.
    assert_eq!(store.delete_artifact_version("e", "p", "mnist", "v1", false).unwrap_err().code, ErrorCode::InvalidValue);
    let orphans = store.delete_artifact_version("e", "p", "mnist", "v1", true).unwrap();
    assert_eq!(orphans, [changed.digest.clone()], "train is still in v0");
    assert_eq!(store.get_artifact("e", "p", "mnist", "latest").unwrap().version, "v0");
    store.collect_blobs(Some(&orphans)).unwrap();
    assert!(!store.blobs().exists(&changed.digest).unwrap() && store.blobs().exists(&train.digest).unwrap());
    // A new version after a deletion takes the next number, never a reused one.
    let v2 = store.commit_artifact("e", "p", commit_request("mnist", "dataset", vec![changed], &[], None), secs(20));
    assert_eq!(v2.unwrap_err().code, ErrorCode::FileNotFound, "its content was collected");
    let v2 = store.commit_artifact("e", "p", commit_request("mnist", "dataset", vec![model], &[], None), secs(20)).unwrap();
    assert_eq!(v2.version, "v1", "numbers follow the highest that remains");
}

/// Five writers committing one collection at once: distinct versions, no duplicate number, no
/// lost alias.
pub fn artifacts_committed_at_once_get_distinct_versions(store: &(impl Store + Sync)) {
    let entries: Vec<_> = (0..5).map(|i| artifact_file(store, &format!("part{i}"), format!("content {i}").as_bytes())).collect();
    let versions: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let alias = format!("writer{i}");
                s.spawn(move || store.commit_artifact("e", "p", commit_request("shared", "dataset", vec![e.clone()], &[alias.as_str()], None), secs(i as i64)).unwrap().version)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut sorted = versions.clone();
    sorted.sort();
    assert_eq!(sorted, ["v0", "v1", "v2", "v3", "v4"]);
    for (i, version) in versions.iter().enumerate() {
        assert_eq!(&store.get_artifact("e", "p", "shared", &format!("writer{i}")).unwrap().version, version);
    }
    assert_eq!(store.get_artifact("e", "p", "shared", "latest").unwrap().version, "v4");
}

use crate::blob::suite::content as noise;

fn sha_of(bytes: &[u8]) -> String {
    crate::blob::sha256_reader(bytes).unwrap().0
}

/// Stores the parts as chunks (in one pack, last first: a pack of them in order would be the
/// whole content itself) and returns the chunk list and the whole.
fn put_chunks(store: &impl Store, parts: &[&[u8]]) -> (Vec<cairn_types::api::ChunkRef>, Vec<u8>) {
    let framed: Vec<(String, &[u8])> = parts.iter().map(|p| (sha_of(p), *p)).collect();
    store.store_chunks(&framed.iter().rev().cloned().collect::<Vec<_>>()).unwrap();
    let chunks = framed.iter().map(|(sha, p)| cairn_types::api::ChunkRef { sha256: sha.clone(), size: p.len() as u64 }).collect();
    (chunks, parts.concat())
}

fn read_content(store: &impl Store, sha256: &str) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut store.open_content(sha256).unwrap(), &mut out).unwrap();
    out
}

pub fn chunked_contents_share_chunks_and_go_chunk_by_chunk(store: &crate::sql::SqlStore) {
    let (a, b, c, d) = (noise(70_000, 1), noise(50_000, 2), noise(90_000, 3), noise(64_000, 4));
    let (x_chunks, x) = put_chunks(store, &[&a, &b, &c]);
    let (y_chunks, y) = put_chunks(store, &[&a, &d, &c, &a]);
    let (x_sha, y_sha) = (sha_of(&x), sha_of(&y));
    let never_sent = sha_of(b"never sent");
    let asked = vec![x_chunks[0].sha256.clone(), never_sent.clone(), x_chunks[0].sha256.clone()];
    assert_eq!(store.missing_chunks(&asked).unwrap(), [never_sent.clone()]);
    assert_eq!(store.missing_chunks(&["NOT-A-SHA".into()]).unwrap_err().code, ErrorCode::InvalidValue);

    // Refused, with what was wrong, and nothing is kept.
    let mut short = x_chunks.clone();
    short.push(cairn_types::api::ChunkRef { sha256: never_sent.clone(), size: 10 });
    let e = store.compose_content(&x_sha, x.len() as u64 + 10, &short, secs(1)).unwrap_err();
    assert_eq!(e.code, ErrorCode::ChunksMissing, "{}", e.message);
    assert!(e.message.contains("1 of its 4 chunks"), "{}", e.message);
    let e = store.compose_content(&x_sha, x.len() as u64 + 1, &x_chunks, secs(1)).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidValue, "{}", e.message);
    let e = store.compose_content(&y_sha, x.len() as u64, &x_chunks, secs(1)).unwrap_err();
    assert_eq!(e.code, ErrorCode::ContentMismatch, "{}", e.message);
    let mut wrong_size = x_chunks.clone();
    wrong_size[0].size -= 1;
    wrong_size[1].size += 1;
    assert_eq!(store.compose_content(&x_sha, x.len() as u64, &wrong_size, secs(1)).unwrap_err().code, ErrorCode::ContentMismatch);
    assert_eq!(store.compose_content(&x_sha, 0, &[], secs(1)).unwrap_err().code, ErrorCode::InvalidValue);
    assert_eq!(store.content_size(&x_sha).unwrap(), None);
    assert_eq!(store.open_content(&x_sha).err().unwrap().code, ErrorCode::FileNotFound);

    // Composed: it reads back whole, and its chunks count as held.
    assert_eq!(store.compose_content(&x_sha, x.len() as u64, &x_chunks, secs(2)).unwrap().size, x.len() as u64);
    assert_eq!(store.compose_content(&x_sha, x.len() as u64, &x_chunks, secs(2)).unwrap().size, x.len() as u64, "again: the same");
    store.compose_content(&y_sha, y.len() as u64, &y_chunks, secs(2)).unwrap();
    assert_eq!(store.content_size(&x_sha).unwrap(), Some(x.len() as u64));
    assert_eq!(read_content(store, &x_sha), x);
    assert_eq!(read_content(store, &y_sha), y);
    assert!(!store.blobs().exists(&x_sha).unwrap(), "stored as chunks, not whole");

    // Named by a run and by an artifact like any content.
    let run = RunPath::new("e", "p", "chunked");
    new_run(store, &run);
    store.put_run_file(&run, FileInfo { path: "ckpt.pt".into(), size: x.len() as u64, sha256: x_sha.clone(), updated_at: secs(3) }).unwrap();
    let entry = cairn_types::artifacts::ManifestEntry { path: "model.pt".into(), digest: y_sha.clone(), size: y.len() as u64, reference: None };
    store.commit_artifact("e", "p", commit_request("model", "model", vec![entry], &[], None), secs(3)).unwrap();

    // Copied to another store, chunk by chunk.
    let dir = tempfile::tempdir().unwrap();
    let target = crate::sqlite::open(dir.path(), crate::StoreConfig { default_entity: "e".into() }).unwrap();
    crate::sql::copy::copy_store(store, &target, None, &mut |_| {}).unwrap();
    assert_eq!(read_content(&target, &x_sha), x);
    assert_eq!(read_content(&target, &y_sha), y);
    assert!(!target.blobs().exists(&x_sha).unwrap());
    assert!(target.missing_chunks(&x_chunks.iter().map(|c| c.sha256.clone()).collect::<Vec<_>>()).unwrap().is_empty());

    // Purging the run lets go of X; of its chunks only b is X's alone.
    let blobs_before = bytes_in(store);
    let orphans = store.purge_run(&run).unwrap();
    assert_eq!(orphans, [x_sha.clone()]);
    let mut removed = store.collect_blobs(Some(&orphans)).unwrap();
    removed.sort();
    let mut expected = vec![x_sha.clone(), x_chunks[1].sha256.clone()];
    expected.sort();
    assert_eq!(removed, expected, "X and b, its chunk alone");
    assert_eq!(store.content_size(&x_sha).unwrap(), None);
    assert_eq!(read_content(store, &y_sha), y, "Y keeps a and c");
    assert_eq!(store.missing_chunks(&x_chunks.iter().map(|c| c.sha256.clone()).collect::<Vec<_>>()).unwrap(), [x_chunks[1].sha256.clone()]);
    assert_eq!(bytes_in(store), blobs_before, "b's pack holds a and c too: it stays whole");

    // Deleting the version lets go of Y, then of every chunk, then of the packs.
    let orphans = store.delete_artifact_version("e", "p", "model", "v0", true).unwrap();
    store.collect_blobs(Some(&orphans)).unwrap();
    let all: Vec<String> = x_chunks.iter().chain(&y_chunks).map(|c| c.sha256.clone()).collect();
    assert_eq!(store.missing_chunks(&all).unwrap().len(), 4);
    assert_eq!(bytes_in(store), 0, "no pack is left");
    assert!(store.collect_blobs(None).unwrap().is_empty(), "nothing left for a later pass");

    // A compose its server never finished gives its chunks back after a while.
    let (z_chunks, z) = put_chunks(store, &[&b, &d]);
    let (z_sha, list) = (sha_of(&z), z_chunks.iter().map(|c| crate::BlobRef { sha256: c.sha256.clone(), size: c.size }).collect::<Vec<_>>());
    let z_size = z.len() as u64;
    store.write(move |db| crate::sql::chunks::write_list(db, &z_sha, z_size, &list, secs(4))).unwrap();
    assert_eq!(store.content_size(&sha_of(&z)).unwrap(), None, "not verified: not there");
    assert!(store.drop_stale_composes(secs(4)).unwrap().is_empty(), "not stale yet");
    let queued = store.drop_stale_composes(secs(5)).unwrap();
    assert_eq!(queued.len(), 2);
    store.collect_blobs(Some(&queued)).unwrap();
    assert_eq!(store.missing_chunks(&[z_chunks[0].sha256.clone()]).unwrap().len(), 1);
    assert_eq!(bytes_in(store), 0);

    // Chunks sent for a compose that never comes go with their pack after a while; a pack with
    // a chunk that some content lists by then stays.
    let (lone, _) = put_chunks(store, &[&noise(30_000, 7), &noise(20_000, 8)]);
    assert!(store.collect_blobs(None).unwrap().is_empty(), "not yet");
    assert!(bytes_in(store) > 0);
    let later = Timestamp::now().micros() + 2 * crate::sql::chunks::STALE_COMPOSE.as_micros() as i64;
    assert_eq!(store.collect_due(Timestamp(later)).unwrap().len(), 1, "the pack");
    assert_eq!(store.missing_chunks(&[lone[0].sha256.clone()]).unwrap().len(), 1);
    assert_eq!(bytes_in(store), 0);
    let (kept, kept_whole) = put_chunks(store, &[&noise(30_000, 9), &noise(20_000, 10)]);
    store.compose_content(&sha_of(&kept_whole), kept_whole.len() as u64, &kept, secs(6)).unwrap();
    assert!(store.collect_due(Timestamp(later)).unwrap().is_empty());
    assert_eq!(read_content(store, &sha_of(&kept_whole)), kept_whole);

    // A compose of a content that another compose is listing is refused while that one is
    // under way, and the other's list is left as it is.
    let (mine, whole) = put_chunks(store, &[&noise(30_000, 11), &noise(25_000, 12)]);
    let (theirs, _) = put_chunks(store, &[&noise(55_000, 13)]);
    let (w, size) = (sha_of(&whole), whole.len() as u64);
    let list = theirs.iter().map(|c| crate::BlobRef { sha256: c.sha256.clone(), size: c.size }).collect::<Vec<_>>();
    let shadow = w.clone();
    store.write(move |db| crate::sql::chunks::write_list(db, &shadow, size, &list, Timestamp::now())).unwrap();
    assert_eq!(store.compose_content(&w, size, &mine, Timestamp::now()).unwrap_err().code, ErrorCode::UploadInProgress);
    assert_eq!(store.content_size(&w).unwrap(), None, "neither list is verified");
    // Abandoned, it is replaced.
    let later_now = Timestamp(Timestamp::now().micros() + 2 * crate::sql::chunks::STALE_COMPOSE.as_micros() as i64);
    store.compose_content(&w, size, &mine, later_now).unwrap();
    assert_eq!(read_content(store, &w), whole);

    // A compose that fails gives its chunks back, after the time a client has to send again.
    let (lying, _) = put_chunks(store, &[&noise(31_000, 14)]);
    let e = store.compose_content(&sha_of(b"something else"), lying[0].size, &lying, Timestamp::now()).unwrap_err();
    assert_eq!(e.code, ErrorCode::ContentMismatch);
    assert!(store.collect_due(Timestamp::now()).unwrap().is_empty());
    assert!(store.missing_chunks(&[lying[0].sha256.clone()]).unwrap().is_empty(), "kept for a while");
    store.collect_due(Timestamp(later)).unwrap();
    assert_eq!(store.missing_chunks(&[lying[0].sha256.clone()]).unwrap().len(), 1);

    // Cutting a content that is not there records nothing.
    assert_eq!(store.index_chunks(&sha_of(b"not stored")).unwrap(), 0);

    // A chunk that is not what it claims is refused, and nothing of its batch is kept.
    let lie = vec![(sha_of(b"first"), &b"first"[..]), (sha_of(b"claimed"), &b"other bytes"[..])];
    assert_eq!(store.store_chunks(&lie).unwrap_err().code, ErrorCode::ContentMismatch);
    assert_eq!(store.missing_chunks(&[sha_of(b"first")]).unwrap().len(), 1);
    let again = store.store_chunks(&lie[..1]).unwrap();
    assert_eq!((again.stored.len(), store.store_chunks(&lie[..1]).unwrap().present.len()), (1, 1));
}

/// Bytes of the blob store, by what a walk over it finds (zero for stores that are not local).
fn bytes_in(store: &crate::sql::SqlStore) -> u64 {
    fn walk(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| {
                let meta = e.metadata().unwrap();
                if meta.is_dir() { if e.file_name() == "staging" { 0 } else { walk(&e.path()) } } else { meta.len() }
            })
            .sum()
    }
    store.blobs().scratch_dir().and_then(|d| d.parent().map(walk)).unwrap_or(0)
}

/// A content composed of a chunk while the last content that had it is collected: either the
/// compose is refused (and the client sends the chunk again) or the chunk stays.
pub fn a_chunk_composed_during_a_collection_is_never_lost(store: &crate::sql::SqlStore) {
    let keep = RunPath::new("e", "p", "keeper");
    new_run(store, &keep);
    for round in 0..8u64 {
        let shared = noise(40_000, 100 + round);
        let (old_chunks, old) = put_chunks(store, &[&shared, &noise(30_000, 200 + round)]);
        let (new_chunks, new) = put_chunks(store, &[&shared, &noise(20_000, 300 + round)]);
        let (old_sha, new_sha) = (sha_of(&old), sha_of(&new));
        store.compose_content(&old_sha, old.len() as u64, &old_chunks, secs(1)).unwrap();
        let purged = RunPath::new("e", "p", format!("purged-{round}"));
        new_run(store, &purged);
        store.put_run_file(&purged, FileInfo { path: "old.pt".into(), size: old.len() as u64, sha256: old_sha.clone(), updated_at: secs(1) }).unwrap();
        let composed = std::thread::scope(|scope| {
            scope.spawn(|| {
                let orphans = store.purge_run(&purged).unwrap();
                store.collect_blobs(Some(&orphans)).unwrap();
            });
            scope.spawn(|| store.compose_content(&new_sha, new.len() as u64, &new_chunks, secs(2))).join().unwrap()
        });
        match composed {
            Ok(_) => {
                store.put_run_file(&keep, FileInfo { path: format!("new-{round}.pt"), size: new.len() as u64, sha256: new_sha.clone(), updated_at: secs(2) }).unwrap();
                assert_eq!(read_content(store, &new_sha), new, "round {round}: a composed content lost a chunk");
            }
            Err(e) => assert_eq!(e.code, ErrorCode::ChunksMissing, "round {round}: {}", e.message),
        }
    }
    store.collect_blobs(None).unwrap();
    for f in store.list_run_files(&keep).unwrap() {
        assert_eq!(read_content(store, &f.sha256).len() as u64, f.size);
    }
}
