//! MLflow tracking stores: an `mlruns` directory (the file store) or an MLflow SQLite database.
//!
//! An experiment becomes a project (its name, with the characters cairn does not allow in names
//! replaced by `-`); a run keeps its id. Params become the config (numbers and booleans as such,
//! since MLflow keeps every param as text), metrics the history, the last value of each metric the
//! summary, user tags cairn tags (`key=value`), MLflow's own tags (`mlflow.*`) the name, notes
//! and metadata, artifacts the run's files, and the status the state. Runs MLflow marks deleted
//! are left out.
//!
//! History: MLflow keeps each metric's points with their own step and timestamp; cairn keeps rows
//! by step. Points of one step share a row, stamped with the latest of their times. A metric
//! logged more than once at one step (MLflow's default step is 0) cannot share a row: then the
//! run's rows go in (step, time) order with `_step` counting them, and MLflow's step is kept as the
//! metric `mlflow_step`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cairn_types::Timestamp;
use cairn_types::api::RunState;
use cairn_types::value::{Map, Value};

use crate::{ImportError, ImportedRun};

/// One metric point.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    key: String,
    value: f64,
    timestamp_ms: i64,
    step: i64,
}

/// A run as MLflow keeps it, before it is put in cairn's terms.
#[derive(Debug, Default)]
struct MlflowRun {
    run_id: String,
    experiment: String,
    name: Option<String>,
    status: String,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
    params: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
    metrics: Vec<Point>,
    artifacts: Artifacts,
    artifact_uri: String,
}

/// Where a run's artifacts are.
#[derive(Debug, Default)]
enum Artifacts {
    #[default]
    None,
    Here(PathBuf),
    /// Not on this machine (`s3://`, `mlflow-artifacts:`).
    Elsewhere,
}

/// Every run in a store: `path` is an `mlruns` directory, an MLflow SQLite file, or a
/// `sqlite:///path` URI. Returns the runs and how many MLflow marks deleted (left out).
pub fn read_store(path: &str) -> Result<(Vec<ImportedRun>, usize), ImportError> {
    // `sqlite:///relative.db`, `sqlite:////absolute.db`, as MLflow writes them.
    let file = PathBuf::from(path.strip_prefix("sqlite:///").unwrap_or(path));
    let (runs, deleted) = if file.is_dir() {
        read_file_store(&file)?
    } else if file.is_file() {
        read_sqlite(&file)?
    } else {
        return Err(ImportError(format!("{path} is neither an mlruns directory nor an MLflow SQLite database")));
    };
    Ok((runs.into_iter().map(|r| convert(r, &file)).collect(), deleted))
}

fn yaml(path: &Path) -> Result<serde_norway::Value, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|e| ImportError(format!("cannot read {}: {e}", path.display())))?;
    serde_norway::from_str(&text).map_err(|e| ImportError(format!("{} is not YAML: {e}", path.display())))
}

fn yaml_str(v: &serde_norway::Value, key: &str) -> Option<String> {
    match v.get(key)? {
        serde_norway::Value::String(s) => Some(s.clone()),
        serde_norway::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn yaml_i64(v: &serde_norway::Value, key: &str) -> Option<i64> {
    v.get(key)?.as_i64()
}

fn read_file_store(root: &Path) -> Result<(Vec<MlflowRun>, usize), ImportError> {
    let mut runs = Vec::new();
    let mut deleted = 0;
    let entries = std::fs::read_dir(root).map_err(|e| ImportError(format!("cannot read {}: {e}", root.display())))?;
    let mut experiments: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.join("meta.yaml").is_file()).collect();
    experiments.sort();
    if experiments.is_empty() {
        return Err(ImportError(format!("{} holds no MLflow experiment (no <id>/meta.yaml under it)", root.display())));
    }
    for exp_dir in experiments {
        let meta = yaml(&exp_dir.join("meta.yaml"))?;
        let experiment = yaml_str(&meta, "name").unwrap_or_else(|| exp_dir.file_name().unwrap_or_default().to_string_lossy().into_owned());
        let exp_deleted = yaml_str(&meta, "lifecycle_stage").as_deref() == Some("deleted");
        let mut run_dirs: Vec<PathBuf> = std::fs::read_dir(&exp_dir).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.join("meta.yaml").is_file()).collect();
        run_dirs.sort();
        for dir in run_dirs {
            let meta = yaml(&dir.join("meta.yaml"))?;
            if exp_deleted || yaml_str(&meta, "lifecycle_stage").as_deref() == Some("deleted") {
                deleted += 1;
                continue;
            }
            let run_id = yaml_str(&meta, "run_id").or_else(|| yaml_str(&meta, "run_uuid")).unwrap_or_else(|| dir.file_name().unwrap_or_default().to_string_lossy().into_owned());
            let status = match yaml_i64(&meta, "status") {
                Some(1) => "RUNNING",
                Some(2) => "SCHEDULED",
                Some(3) => "FINISHED",
                Some(4) => "FAILED",
                Some(5) => "KILLED",
                _ => "UNKNOWN",
            };
            let read_values = |sub: &str| -> BTreeMap<String, String> {
                crate::files_under(&dir.join(sub)).into_iter().filter_map(|(k, p)| Some((k, std::fs::read_to_string(p).ok()?))).collect()
            };
            let mut metrics = Vec::new();
            for (key, file) in crate::files_under(&dir.join("metrics")) {
                let text = std::fs::read_to_string(&file).map_err(|e| ImportError(format!("cannot read {}: {e}", file.display())))?;
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    let mut parts = line.split_whitespace();
                    let (Some(ts), Some(value)) = (parts.next().and_then(|t| t.parse().ok()), parts.next()) else {
                        return Err(ImportError(format!("{}: the line {line:?} is not \"<timestamp> <value> <step>\"", file.display())));
                    };
                    let value = match value {
                        "nan" | "NaN" => f64::NAN,
                        "inf" | "Infinity" => f64::INFINITY,
                        "-inf" | "-Infinity" => f64::NEG_INFINITY,
                        v => v.parse().map_err(|_| ImportError(format!("{}: {v:?} is not a number", file.display())))?,
                    };
                    let step = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                    metrics.push(Point { key: key.clone(), value, timestamp_ms: ts, step });
                }
            }
            let artifact_uri = yaml_str(&meta, "artifact_uri").unwrap_or_default();
            let local = dir.join("artifacts");
            runs.push(MlflowRun {
                run_id,
                experiment: experiment.clone(),
                name: yaml_str(&meta, "run_name").filter(|n| !n.is_empty()),
                status: status.to_owned(),
                start_ms: yaml_i64(&meta, "start_time"),
                end_ms: yaml_i64(&meta, "end_time"),
                params: read_values("params"),
                tags: read_values("tags"),
                metrics,
                artifacts: if local.is_dir() { Artifacts::Here(local) } else { artifact_dir(&artifact_uri, root) },
                artifact_uri,
            });
        }
    }
    Ok((runs, deleted))
}

/// Where a run's artifacts are on this machine: `file://` URIs and paths (relative to the store).
fn artifact_dir(uri: &str, store: &Path) -> Artifacts {
    if uri.is_empty() {
        return Artifacts::None;
    }
    let path = if let Some(p) = uri.strip_prefix("file://") {
        PathBuf::from(p)
    } else if uri.contains("://") || uri.starts_with("mlflow-artifacts:") {
        return Artifacts::Elsewhere;
    } else {
        let p = PathBuf::from(uri);
        if p.is_absolute() { p } else { store.parent().unwrap_or(Path::new(".")).join(p) }
    };
    if path.is_dir() { Artifacts::Here(path) } else { Artifacts::None }
}

fn read_sqlite(file: &Path) -> Result<(Vec<MlflowRun>, usize), ImportError> {
    let fail = |e: rusqlite::Error| ImportError(format!("{}: {e}", file.display()));
    let db = rusqlite::Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(fail)?;
    let tables: BTreeSet<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
        .map_err(|e| ImportError(format!("{} is not an SQLite database: {e}", file.display())))?;
    for needed in ["experiments", "runs", "metrics", "params", "tags"] {
        if !tables.contains(needed) {
            return Err(ImportError(format!("{} is not an MLflow database: it has no {needed} table", file.display())));
        }
    }
    let mut deleted = 0;
    let mut runs = Vec::new();
    let mut stmt = db
        .prepare(
            "SELECT r.run_uuid, e.name, r.name, r.status, r.start_time, r.end_time, r.artifact_uri,
                    r.lifecycle_stage = 'deleted' OR e.lifecycle_stage = 'deleted'
             FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id ORDER BY r.start_time, r.run_uuid",
        )
        .map_err(fail)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, bool>(7)?,
            ))
        })
        .map_err(fail)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    for (run_id, experiment, name, status, start_ms, end_ms, artifact_uri, is_deleted) in rows {
        if is_deleted {
            deleted += 1;
            continue;
        }
        let pairs = |table: &str| -> Result<BTreeMap<String, String>, ImportError> {
            let mut s = db.prepare(&format!("SELECT key, value FROM {table} WHERE run_uuid = ?1")).map_err(fail)?;
            s.query_map([&run_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?.unwrap_or_default()))).map_err(fail)?.collect::<Result<_, _>>().map_err(fail)
        };
        let params = pairs("params")?;
        let tags = pairs("tags")?;
        let mut s = db.prepare("SELECT key, value, timestamp, step, is_nan FROM metrics WHERE run_uuid = ?1").map_err(fail)?;
        let metrics = s
            .query_map([&run_id], |r| {
                let is_nan: bool = r.get::<_, Option<bool>>(4)?.unwrap_or(false);
                Ok(Point {
                    key: r.get(0)?,
                    value: if is_nan { f64::NAN } else { r.get(1)? },
                    timestamp_ms: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                    step: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                })
            })
            .map_err(fail)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        let artifact_uri = artifact_uri.unwrap_or_default();
        runs.push(MlflowRun {
            artifacts: artifact_dir(&artifact_uri, file),
            artifact_uri,
            run_id,
            experiment,
            name: name.filter(|n| !n.is_empty()),
            status: status.unwrap_or_default(),
            start_ms,
            end_ms,
            params,
            tags,
            metrics,
        });
    }
    Ok((runs, deleted))
}

/// A name cairn takes: the characters it does not allow become `-`.
fn project_name(name: &str) -> String {
    let out: String = name.chars().map(|c| if "/\\#?%:".contains(c) || c.is_whitespace() || c.is_control() { '-' } else { c }).collect();
    match out.as_str() {
        "" | "." | ".." => "mlflow".to_owned(),
        _ => out.chars().take(128).collect(),
    }
}

/// MLflow keeps params as text; numbers and booleans read back as such.
fn param_value(text: &str) -> Value {
    let t = text.trim();
    // `007` is a name, not seven.
    let leading_zero = t.trim_start_matches('-').len() > 1 && t.trim_start_matches('-').starts_with('0') && t.trim_start_matches('-').as_bytes()[1].is_ascii_digit();
    if leading_zero {
        return Value::Str(text.to_owned());
    }
    if let Ok(i) = t.parse::<i64>() {
        return Value::Int(i);
    }
    if let Ok(f) = t.parse::<f64>()
        && f.is_finite()
        && t.chars().any(|c| c.is_ascii_digit())
    {
        return Value::Float(f);
    }
    match t {
        "True" | "true" => Value::Bool(true),
        "False" | "false" => Value::Bool(false),
        _ => Value::Str(text.to_owned()),
    }
}

fn ms(t: i64) -> Timestamp {
    Timestamp(t.saturating_mul(1000))
}

fn convert(mut run: MlflowRun, store: &Path) -> ImportedRun {
    let mut warnings = Vec::new();
    let config: Map = run.params.iter().map(|(k, v)| (k.clone(), param_value(v))).collect();
    let name = run.name.take().or_else(|| run.tags.get("mlflow.runName").cloned());
    let notes = run.tags.get("mlflow.note.content").cloned();
    let mut metadata = Map::new();
    for (tag, key) in [
        ("mlflow.user", "username"),
        ("mlflow.source.name", "program"),
        ("mlflow.source.type", "source_type"),
        ("mlflow.source.git.commit", "git_commit"),
        ("mlflow.parentRunId", "mlflow_parent_run"),
    ] {
        if let Some(v) = run.tags.get(tag) {
            metadata.insert(key.into(), Value::from(v.clone()));
        }
    }
    metadata.insert("imported_from".into(), Value::from(format!("mlflow {}", store.display())));
    let tags = run
        .tags
        .iter()
        .filter(|(k, _)| !k.starts_with("mlflow."))
        .map(|(k, v)| if v.is_empty() { k.clone() } else { format!("{k}={v}") })
        .filter(|t| t.chars().count() <= 256)
        .collect();

    // History: one row per step, unless a metric repeats a step.
    run.metrics.sort_by(|a, b| (a.step, a.timestamp_ms).cmp(&(b.step, b.timestamp_ms)).then_with(|| a.key.cmp(&b.key)));
    let mut seen = BTreeSet::new();
    let repeats = run.metrics.iter().any(|p| !seen.insert((p.key.as_str(), p.step)));
    let mut history: Vec<Map> = Vec::new();
    let start = run.start_ms.or_else(|| run.metrics.iter().map(|p| p.timestamp_ms).min());
    let mut summary = Map::new();
    let mut last_of: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    if repeats {
        warnings.push("a metric was logged more than once at one step, so _step counts the rows and MLflow's step is the metric mlflow_step".to_owned());
    }
    let mut current: Option<(i64, i64, BTreeSet<String>)> = None;
    for p in &run.metrics {
        let new_row = match &current {
            None => true,
            Some((step, ts, keys)) => {
                if repeats {
                    p.step != *step || p.timestamp_ms != *ts || keys.contains(&p.key)
                } else {
                    p.step != *step
                }
            }
        };
        if new_row {
            let mut row = Map::new();
            let step = if repeats { history.len() as i64 } else { p.step };
            row.insert("_step".into(), Value::Int(step));
            if repeats {
                row.insert("mlflow_step".into(), Value::Int(p.step));
            }
            history.push(row);
            current = Some((p.step, p.timestamp_ms, BTreeSet::new()));
        }
        let row = history.last_mut().expect("a row was just made");
        let (_, _, keys) = current.as_mut().expect("set with the row");
        keys.insert(p.key.clone());
        row.insert(p.key.clone(), Value::Float(p.value));
        let secs = p.timestamp_ms as f64 / 1000.0;
        let ts = match row.get("_timestamp") {
            Some(Value::Float(t)) => t.max(secs),
            _ => secs,
        };
        row.insert("_timestamp".into(), Value::Float(ts));
        if let Some(start) = start {
            row.insert("_runtime".into(), Value::Float(((ts * 1000.0 - start as f64) / 1000.0).max(0.0)));
        }
        let order = (p.step, p.timestamp_ms);
        if last_of.get(p.key.as_str()).is_none_or(|o| order >= *o) {
            last_of.insert(&p.key, order);
            summary.insert(p.key.clone(), Value::Float(p.value));
        }
    }
    let (state, exit_code) = match run.status.as_str() {
        "FINISHED" => (RunState::Finished, Some(0)),
        "FAILED" => (RunState::Failed, None),
        "KILLED" => (RunState::Killed, None),
        other => {
            warnings.push(format!("MLflow has the run as {other}: it is imported as crashed"));
            (RunState::Crashed, None)
        }
    };
    let last_metric = run.metrics.iter().map(|p| p.timestamp_ms).max();
    let finished_at = run.end_ms.or(last_metric).or(run.start_ms).map(ms);
    let files = match &run.artifacts {
        Artifacts::Here(dir) => crate::files_under(dir),
        Artifacts::None => Vec::new(),
        Artifacts::Elsewhere => {
            warnings.push(format!("its artifacts at {} are not on this machine: they were left out", run.artifact_uri));
            Vec::new()
        }
    };
    ImportedRun {
        source: store.to_path_buf(),
        entity: None,
        project: Some(project_name(&run.experiment)),
        run_id: run.run_id,
        name,
        notes,
        tags,
        group: run.tags.get("mlflow.parentRunId").cloned(),
        job_type: None,
        started_at: run.start_ms.map(ms),
        config,
        summary,
        metadata,
        history,
        system: Vec::new(),
        console: Vec::new(),
        files,
        state,
        exit_code,
        finished_at,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(key: &str, step: i64, ts: i64, value: f64) -> Point {
        Point { key: key.into(), value, timestamp_ms: ts, step }
    }

    fn run(metrics: Vec<Point>) -> ImportedRun {
        convert(
            MlflowRun { run_id: "r1".into(), experiment: "exp: one/two".into(), status: "FINISHED".into(), start_ms: Some(1000), metrics, ..Default::default() },
            Path::new("/tmp/mlruns"),
        )
    }

    #[test]
    fn points_of_a_step_share_a_row_and_the_summary_is_each_metrics_last() {
        let r = run(vec![point("loss", 0, 2000, 1.0), point("acc", 0, 2500, 0.1), point("loss", 5, 3000, 0.5), point("acc", 7, 4000, 0.9)]);
        let steps: Vec<&Value> = r.history.iter().map(|row| &row["_step"]).collect();
        assert_eq!(steps, [&Value::Int(0), &Value::Int(5), &Value::Int(7)]);
        assert_eq!(r.history[0]["loss"], Value::Float(1.0));
        assert_eq!(r.history[0]["acc"], Value::Float(0.1));
        assert_eq!(r.history[0]["_timestamp"], Value::Float(2.5), "the latest time of the step's points");
        assert_eq!(r.history[0]["_runtime"], Value::Float(1.5));
        assert_eq!((r.summary["loss"].clone(), r.summary["acc"].clone()), (Value::Float(0.5), Value::Float(0.9)));
        assert_eq!(r.project.as_deref(), Some("exp--one-two"));
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn a_metric_repeated_at_one_step_keeps_every_point_in_its_own_row() {
        // MLflow's default step is 0: three points of one metric at step 0.
        let r = run(vec![point("loss", 0, 2000, 3.0), point("loss", 0, 3000, 2.0), point("loss", 0, 4000, 1.0), point("lr", 0, 4000, 0.1)]);
        let losses: Vec<&Value> = r.history.iter().filter_map(|row| row.get("loss")).collect();
        assert_eq!(losses, [&Value::Float(3.0), &Value::Float(2.0), &Value::Float(1.0)]);
        let steps: Vec<i64> = r
            .history
            .iter()
            .map(|row| match row["_step"] {
                Value::Int(s) => s,
                _ => -1,
            })
            .collect();
        assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
        assert!(r.history.iter().all(|row| row["mlflow_step"] == Value::Int(0)));
        assert_eq!(r.summary["loss"], Value::Float(1.0));
        assert_eq!(r.warnings.len(), 1);
    }

    #[test]
    fn params_read_back_as_numbers_where_they_are() {
        assert_eq!(param_value("0.01"), Value::Float(0.01));
        assert_eq!(param_value("32"), Value::Int(32));
        assert_eq!(param_value("1e-3"), Value::Float(0.001));
        assert_eq!(param_value("True"), Value::Bool(true));
        assert_eq!(param_value("007"), Value::Str("007".into()));
        assert_eq!(param_value("adam"), Value::Str("adam".into()));
        assert_eq!(param_value("nan"), Value::Str("nan".into()));
    }
}
