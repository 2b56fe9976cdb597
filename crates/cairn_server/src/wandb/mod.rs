//! The official `wandb` client's protocol, as adapters over the service layer: `POST /graphql`
//! (the operations the client sends, taken from the query text, since the client sends
//! `operationName` empty or not at all) and `POST /files/{entity}/{project}/{run}/file_stream`
//! (history, summary, system metrics and console lines by offset, and the run's end). What a run
//! is and how it changes is the service's and the store's; this module only translates shapes:
//! W&B's `{"key": {"value": v}}` config, its whole-summary lines, its `output.log` lines.

pub mod artifacts;
pub mod filestream;
pub mod graphql;
mod public;
pub mod uploads;

pub use filestream::file_stream;
pub use graphql::graphql;
pub use uploads::upload;

use cairn_types::api::RunInfo;
use cairn_types::value::Map;
use cairn_types::{RunPath, Value};
use serde_json::{Value as Json, json};

/// The run's id as the client keeps it between calls (W&B's "storage id"): its path.
pub(crate) fn storage_id(path: &RunPath) -> String {
    format!("{}/{}/{}", path.entity, path.project, path.run_id)
}

pub(crate) fn parse_storage_id(id: &str) -> Option<RunPath> {
    let mut parts = id.splitn(3, '/');
    let (entity, project, run_id) = (parts.next()?, parts.next()?, parts.next()?);
    let path = RunPath::new(entity, project, run_id);
    path.validate().ok().map(|_| path)
}

/// W&B's config (`{"lr": {"value": 0.1}, "_wandb": {"value": {...}}}`) as cairn's, and the
/// client's own `_wandb` part apart.
pub(crate) fn config_from_wandb(config: &Json) -> (Map, Option<Json>) {
    let mut out = Map::new();
    let mut internal = None;
    if let Some(obj) = config.as_object() {
        for (key, entry) in obj {
            let value = match entry.as_object().and_then(|o| o.get("value")) {
                Some(v) => v,
                None => entry,
            };
            if key == "_wandb" {
                internal = Some(value.clone());
            } else {
                out.insert(key.clone(), Value::from_json(value));
            }
        }
    }
    (out, internal)
}

/// cairn's config in W&B's shape.
pub(crate) fn config_to_wandb(config: &Map) -> Json {
    Json::Object(config.iter().map(|(k, v)| (k.clone(), json!({"value": v.to_json()}))).collect())
}

/// The run as `UpsertBucket`, `RunResumeStatus` and the public API's run fragments answer it.
pub(crate) fn bucket(run: &RunInfo) -> Json {
    let path = run.path();
    json!({
        "id": storage_id(&path),
        "name": run.run_id.to_string(),
        "displayName": run.name,
        "description": run.notes,
        "notes": run.notes,
        "config": config_to_wandb(&run.config).to_string(),
        "sweepName": run.sweep_id,
        "tags": run.tags,
        "group": run.group,
        "jobType": run.job_type,
        "state": run.state.as_str(),
        "historyLineCount": run.offsets.history,
        "eventsLineCount": run.offsets.system,
        "project": project(&run.entity, &run.project),
    })
}

pub(crate) fn project(entity: &str, project: &str) -> Json {
    json!({"id": format!("{entity}/{project}"), "name": project, "entity": {"id": entity, "name": entity}})
}
