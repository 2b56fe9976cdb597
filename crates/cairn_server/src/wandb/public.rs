//! The public `wandb.Api()` against cairn: `runs` (W&B's Mongo-like filters and orders, mapped
//! onto cairn's), `run`, `history` and `scan_history` (full, sampled and paged), the history's
//! keys, files, and `update`, `delete` and `stop`.

use cairn_store::HistoryRequest;
use cairn_types::RunPath;
use cairn_types::api::{RunInfo, RunSearch};
use cairn_types::error::{CodedError, ErrorCode};
use serde_json::{Value as Json, json};

use super::graphql::{history_rows, text};
use super::{config_to_wandb, storage_id};
use crate::AppState;
use crate::auth::{Caller, Need};
use crate::service::blocking;

fn bad(message: impl Into<String>) -> CodedError {
    CodedError::new(ErrorCode::InvalidBody, message)
}

/// A project's number, as the client reads `internalId` (an integer): stable, from its path.
fn internal_id(entity: &str, project: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in entity.bytes().chain([b'/']).chain(project.bytes()) {
        h = (h ^ b as u32).wrapping_mul(0x0100_0193);
    }
    (h & 0x7fff_ffff).to_string()
}

/// W&B's time format: `2026-12-01T08:18:48`, UTC.
fn wandb_time(t: cairn_types::Timestamp) -> String {
    t.to_rfc3339().chars().take(19).collect()
}

/// A field of W&B's runs filters and orders as cairn names it.
fn field(name: &str) -> String {
    let name = name.trim_start_matches(['+', '-']);
    if let Some(rest) = name.strip_prefix("summary_metrics.") {
        return format!("summary.{rest}");
    }
    if let Some(rest) = name.strip_prefix("config.") {
        return format!("config.{}", rest.strip_suffix(".value").unwrap_or(rest));
    }
    match name {
        "display_name" | "displayName" => "name".into(),
        "createdAt" => "created_at".into(),
        "heartbeatAt" => "heartbeat_at".into(),
        "jobType" => "job_type".into(),
        "name" => "run_id".into(),
        other => other.into(),
    }
}

/// W&B's filter with its fields renamed (operators, values and structure stay).
pub(crate) fn filter(f: &Json) -> Json {
    match f {
        Json::Object(o) => Json::Object(o.iter().map(|(k, v)| (if k.starts_with('$') { k.clone() } else { field(k) }, filter(v))).collect()),
        Json::Array(a) => Json::Array(a.iter().map(filter).collect()),
        other => other.clone(),
    }
}

/// W&B's order (`-created_at`, `+summary_metrics.acc`, `config.lr.value`) as a cairn sort key.
pub(crate) fn order(o: &str) -> String {
    let desc = o.starts_with('-');
    format!("{}{}", if desc { "-" } else { "" }, field(o))
}

async fn keys(state: &AppState, path: &RunPath) -> Result<Vec<cairn_types::api::KeyInfo>, CodedError> {
    let (store, path) = (state.store.clone(), path.clone());
    blocking(move || store.list_keys(&path)).await
}

/// `historyKeys`: each history key with how many values it has, and the last step (-1: none).
async fn history_keys(state: &AppState, run: &RunInfo) -> Result<Json, CodedError> {
    let mut out = serde_json::Map::new();
    for k in keys(state, &run.path()).await?.into_iter().filter(|k| k.stream == "history") {
        let kind = if k.numeric_count == k.count { "number" } else { "string" };
        out.insert(k.name, json!({"typeCounts": [{"type": kind, "count": k.count}]}));
    }
    Ok(json!({"keys": out, "lastStep": run.last_step.unwrap_or(-1)}))
}

/// The run as the public API's `RunFragment` reads it.
async fn fragment(state: &AppState, run: &RunInfo, full: bool) -> Result<Json, CodedError> {
    let commit = match run.metadata.get("git") {
        Some(cairn_types::Value::Map(git)) => git.get("commit").map(|c| c.to_json()),
        _ => None,
    };
    let mut summary = serde_json::Map::new();
    for (k, v) in &run.summary {
        summary.insert(k.clone(), v.to_json());
    }
    if let Some(step) = run.last_step {
        summary.insert("_step".into(), json!(step));
    }
    summary.insert("_runtime".into(), json!(run.runtime_secs));
    let mut out = json!({
        "id": storage_id(&run.path()),
        "projectId": internal_id(&run.entity, &run.project),
        "name": run.run_id.to_string(),
        "displayName": run.name,
        "tags": run.tags,
        "sweepName": run.sweep_id,
        "state": run.state.as_str(),
        "group": run.group,
        "jobType": run.job_type,
        "commit": commit,
        "readOnly": false,
        "createdAt": wandb_time(run.created_at),
        "heartbeatAt": wandb_time(run.heartbeat_at.unwrap_or(run.started_at)),
        "description": run.notes,
        "notes": run.notes,
        "historyLineCount": run.offsets.history,
        "user": {"name": run.entity, "username": run.entity},
        "config": config_to_wandb(&run.config).to_string(),
        "summaryMetrics": Json::Object(summary).to_string(),
        "systemMetrics": "{}",
    });
    if full {
        out["historyKeys"] = history_keys(state, run).await?;
    }
    Ok(out)
}

/// The run a public query names (its history pages call it `run` or `runName`).
async fn find_run(state: &AppState, caller: &Caller, vars: &Json) -> Result<Option<RunInfo>, CodedError> {
    let path = super::graphql::named_run(state, caller, vars, ["entity", "project"], &["name", "run", "runName"], Need::Read).await?;
    super::graphql::get_run(state, &path).await
}

/// `query Run` / `RunState` / `RunHistoryKeys`: the run under its project.
pub(crate) async fn run(state: &AppState, caller: &Caller, vars: &Json) -> Result<Json, CodedError> {
    let run = find_run(state, caller, vars).await?;
    Ok(json!({"project": {"run": match run {
        Some(run) => fragment(state, &run, true).await?,
        None => Json::Null,
    }}}))
}

/// `query Runs`: a page of the project's runs, filtered and ordered.
pub(crate) async fn runs(state: &AppState, caller: &Caller, vars: &Json) -> Result<Json, CodedError> {
    let entity = super::graphql::entity_of(state, caller, text(vars, "entity"));
    let project = text(vars, "project").ok_or_else(|| bad("Runs needs the project"))?.to_owned();
    state.authorize(caller, &entity, Some(&project), Need::Read).await?;
    let filters = match vars.get("filters") {
        Some(Json::String(s)) => serde_json::from_str::<Json>(s).map_err(|e| bad(format!("filters is not JSON: {e}")))?,
        Some(v @ Json::Object(_)) => v.clone(),
        _ => json!({}),
    };
    let offset: usize = text(vars, "cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let per_page = vars.get("perPage").and_then(Json::as_u64).unwrap_or(50).clamp(1, 1000) as usize;
    let search = RunSearch {
        filter: (filters.as_object().is_some_and(|o| !o.is_empty())).then(|| filter(&filters)),
        sort: vec![order(text(vars, "order").unwrap_or("-created_at"))],
        limit: Some(per_page),
        offset: Some(offset),
    };
    let query = cairn_store::RunQuery::from_search(&search)?;
    let (store, e, p) = (state.store.clone(), entity.clone(), project.clone());
    let page = match blocking(move || store.search_runs(&e, &p, &query)).await {
        Ok(page) => page,
        Err(err) if err.code == ErrorCode::ProjectNotFound || err.code == ErrorCode::EntityNotFound => return Ok(json!({"project": null})),
        Err(err) => return Err(err),
    };
    let lazy = vars.get("lazy").and_then(Json::as_bool).unwrap_or(false);
    let mut edges = Vec::new();
    for (i, run) in page.runs.iter().enumerate() {
        edges.push(json!({"node": fragment(state, run, !lazy).await?, "cursor": (offset + i + 1).to_string()}));
    }
    let end = offset + page.runs.len();
    Ok(json!({"project": {
        "internalId": internal_id(&entity, &project),
        "runCount": page.total,
        "readOnly": false,
        "runs": {"edges": edges, "pageInfo": {"endCursor": end.to_string(), "hasNextPage": (end as u64) < page.total}},
    }}))
}

/// Every `step`-th row, keeping the first and the last: `samples` rows of a run's history.
fn sample(rows: Vec<Json>, samples: usize) -> Vec<Json> {
    if samples == 0 || rows.len() <= samples {
        return rows;
    }
    let n = rows.len();
    let picks: Vec<usize> = (0..samples).map(|i| if samples == 1 { n - 1 } else { i * (n - 1) / (samples - 1) }).collect();
    let mut out = Vec::with_capacity(samples);
    let mut rows: Vec<Option<Json>> = rows.into_iter().map(Some).collect();
    for i in picks {
        if let Some(row) = rows[i].take() {
            out.push(row);
        }
    }
    out
}

/// Rows of a run's history between steps, with only `keys` (and rows that have all of them)
/// when keys are given.
async fn read_rows(state: &AppState, path: &RunPath, keys: Option<Vec<String>>, min_step: Option<i64>, max_step: Option<i64>, limit: usize) -> Result<Vec<Json>, CodedError> {
    let keys = keys.map(|k| k.into_iter().filter(|k| !k.starts_with('_')).collect::<Vec<_>>()).filter(|k| !k.is_empty());
    let require_all = keys.is_some();
    let request = HistoryRequest { keys, min_step, max_step, limit, require_all, ..Default::default() };
    let (store, path) = (state.store.clone(), path.clone());
    let data = blocking(move || store.history(&path, &request)).await?;
    Ok(history_rows(&data))
}

/// The most rows one history answer holds.
const MAX_ROWS: usize = 100_000;

fn spec(v: &Json) -> Result<Json, CodedError> {
    match v {
        Json::String(s) => serde_json::from_str(s).map_err(|e| bad(format!("a history spec is not JSON: {e}"))),
        other => Ok(other.clone()),
    }
}

fn spec_keys(spec: &Json) -> Option<Vec<String>> {
    spec.get("keys").and_then(Json::as_array).map(|a| a.iter().filter_map(|k| k.as_str().map(str::to_owned)).collect())
}

/// `RunFullHistory`, `RunSampledHistory`, `HistoryPage` and `SampledHistoryPage`.
pub(crate) async fn history(state: &AppState, caller: &Caller, op: &str, vars: &Json) -> Result<Json, CodedError> {
    let Some(run) = find_run(state, caller, vars).await? else {
        return Ok(json!({"project": {"run": null}}));
    };
    let path = run.path();
    let answer = match op {
        "RunFullHistory" => {
            let samples = vars.get("samples").and_then(Json::as_u64).unwrap_or(500) as usize;
            let rows = sample(read_rows(state, &path, None, None, None, MAX_ROWS).await?, samples);
            json!({"history": rows.iter().map(|r| r.to_string()).collect::<Vec<_>>()})
        }
        "HistoryPage" => {
            // maxStep is exclusive here, as cairn's.
            let min = vars.get("minStep").and_then(Json::as_i64);
            let max = vars.get("maxStep").and_then(Json::as_i64);
            let size = vars.get("pageSize").and_then(Json::as_u64).unwrap_or(1000).min(MAX_ROWS as u64) as usize;
            let rows = read_rows(state, &path, None, min, max, size).await?;
            json!({"history": rows.iter().map(|r| r.to_string()).collect::<Vec<_>>()})
        }
        _ => {
            // RunSampledHistory (specs) and SampledHistoryPage (spec): a list of rows per spec.
            let specs: Vec<Json> = match vars.get("specs") {
                Some(Json::Array(a)) => a.iter().map(spec).collect::<Result<_, _>>()?,
                _ => vec![spec(vars.get("spec").ok_or_else(|| bad("a sampled history needs its spec"))?)?],
            };
            let mut lists = Vec::new();
            for s in specs {
                let samples = s.get("samples").and_then(Json::as_u64).unwrap_or(500) as usize;
                // A spec's maxStep is inclusive.
                let (min, max) = (s.get("minStep").and_then(Json::as_i64), s.get("maxStep").and_then(Json::as_i64).map(|m| m.saturating_add(1)));
                let rows = read_rows(state, &path, spec_keys(&s), min, max, MAX_ROWS).await?;
                lists.push(Json::Array(sample(rows, samples)));
            }
            json!({"sampledHistory": lists})
        }
    };
    Ok(json!({"project": {"run": answer}}))
}

/// `RunFiles`: the run's files, with URLs to read them from.
pub(crate) async fn files(state: &AppState, caller: &Caller, vars: &Json, base: &str) -> Result<Json, CodedError> {
    let Some(run) = find_run(state, caller, vars).await? else {
        return Ok(json!({"project": {"run": null}}));
    };
    let path = run.path();
    let (store, p) = (state.store.clone(), path.clone());
    let mut all = blocking(move || store.list_run_files(&p)).await?;
    let names: Vec<String> = vars.get("fileNames").and_then(Json::as_array).map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect()).unwrap_or_default();
    if !names.is_empty() {
        all.retain(|f| names.contains(&f.path));
    }
    let count = all.len();
    let after: usize = text(vars, "fileCursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let limit = vars.get("fileLimit").and_then(Json::as_u64).unwrap_or(50).clamp(1, 1000) as usize;
    let edges: Vec<Json> = all
        .iter()
        .enumerate()
        .skip(after)
        .take(limit)
        .map(|(i, f)| {
            let url = format!("{base}/api/v1/runs/{}/{}/{}/files/{}", path.entity, path.project, path.run_id, f.path);
            json!({"node": {"id": format!("{}/{}", storage_id(&path), f.path), "name": f.path, "url": url, "directUrl": url, "sizeBytes": f.size,
                "mimetype": null, "updatedAt": wandb_time(f.updated_at), "md5": null}, "cursor": (i + 1).to_string()})
        })
        .collect();
    let end = (after + edges.len()).min(count);
    Ok(json!({"project": {"internalId": internal_id(&path.entity, &path.project), "run": {
        "fileCount": count,
        "files": {"edges": edges, "pageInfo": {"endCursor": end.to_string(), "hasNextPage": end < count}},
    }}}))
}

fn run_by_id(vars: &Json) -> Result<RunPath, CodedError> {
    text(vars, "id").and_then(super::parse_storage_id).ok_or_else(|| bad("the mutation needs the run's id, as cairn gave it"))
}

/// `DeleteRun`: the run is deleted (purged after the retention window, as cairn's own).
pub(crate) async fn delete(state: &AppState, caller: &Caller, vars: &Json) -> Result<Json, CodedError> {
    let path = run_by_id(vars)?;
    state.authorize(caller, &path.entity, Some(&path.project), Need::Write).await?;
    state.delete_run(caller, path).await?;
    Ok(json!({"deleteRun": {"clientMutationId": null}}))
}

/// `StopRun`: the run's client is asked to stop.
pub(crate) async fn stop(state: &AppState, caller: &Caller, vars: &Json) -> Result<Json, CodedError> {
    let path = run_by_id(vars)?;
    state.authorize(caller, &path.entity, Some(&path.project), Need::Write).await?;
    state.stop_run(path).await?;
    Ok(json!({"stopRun": {"success": true}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wandb_filters_and_orders_name_cairns_fields() {
        let f = json!({"$and": [{"config.lr.value": {"$gt": 0.01}}, {"summary_metrics.acc": {"$gte": 0.5}}, {"display_name": {"$regex": "^a"}}, {"state": "finished"}, {"tags": {"$in": ["x"]}}]});
        assert_eq!(
            filter(&f),
            json!({"$and": [{"config.lr": {"$gt": 0.01}}, {"summary.acc": {"$gte": 0.5}}, {"name": {"$regex": "^a"}}, {"state": "finished"}, {"tags": {"$in": ["x"]}}]})
        );
        assert_eq!(order("-created_at"), "-created_at");
        assert_eq!(order("+summary_metrics.loss"), "summary.loss");
        assert_eq!(order("config.lr.value"), "config.lr");
        assert_eq!(order("-heartbeatAt"), "-heartbeat_at");
    }

    #[test]
    fn sampling_keeps_the_ends() {
        let rows: Vec<Json> = (0..10).map(|i| json!(i)).collect();
        assert_eq!(sample(rows.clone(), 4), [json!(0), json!(3), json!(6), json!(9)]);
        assert_eq!(sample(rows.clone(), 20).len(), 10);
        assert_eq!(sample(rows, 1), [json!(9)]);
    }
}
