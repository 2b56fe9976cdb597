//! A run's membership in a sweep that ran without the server (`cairn agent --local`): the agent
//! writes the trial's membership file and names it in `CAIRN_SWEEP_TRIAL`; `init` copies it into
//! the run directory as `sweep.json`, and `cairn sync` gives it to the server after the run, so
//! that the trial lands in its sweep there. Also here: what a local agent reads back from a
//! trial's run directory (its final state, and its metric as logged).

use std::path::Path;

use cairn_types::sweep::ImportTrial;
use cairn_types::wire::{self, KeyStream, Record};
use cairn_types::{RunPath, Value};
use serde::{Deserialize, Serialize};

use crate::error::{ClientError, ErrorKind, Result};
use crate::http::ApiClient;
use crate::settings::env;
use crate::wal::{WalReader, scan_end};

/// The membership file in a run directory.
pub const MEMBERSHIP_FILE: &str = "sweep.json";

/// Which sweep a run is a trial of, and the trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Membership {
    pub sweep_id: String,
    pub trial: ImportTrial,
}

/// At `init`: the agent's membership file, copied into the run directory.
pub fn adopt(run_dir: &Path) -> Result<()> {
    let Some(source) = std::env::var_os(env::SWEEP_TRIAL).filter(|v| !v.is_empty()) else { return Ok(()) };
    let source = Path::new(&source);
    std::fs::copy(source, run_dir.join(MEMBERSHIP_FILE)).map_err(|e| ClientError::io("copy the sweep's trial file", source, e))?;
    Ok(())
}

/// Reads a run directory's membership, if it is a trial of a local sweep.
pub fn membership(run_dir: &Path) -> Result<Option<Membership>> {
    let path = run_dir.join(MEMBERSHIP_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| ClientError::new(ErrorKind::Io, format!("{} is not a sweep membership: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ClientError::io("read", &path, e)),
    }
}

/// At `cairn sync`, after the run: the trial, given to the server (again: nothing changes).
pub fn register(api: &ApiClient, run: &RunPath, run_dir: &Path) -> Result<()> {
    let Some(mut m) = membership(run_dir)? else { return Ok(()) };
    m.trial.run_id = run.run_id.to_string();
    let body = serde_json::to_value(&m.trial).map_err(|e| ClientError::new(ErrorKind::Io, e.to_string()))?;
    api.call_json("POST", &format!("/api/v1/sweeps/{}/{}/{}/trials", run.entity, run.project, m.sweep_id), Some(&body)).map(|_| ()).map_err(|e| {
        let e = ClientError::from(e);
        ClientError::new(e.kind, format!("run {run} is synced, but its sweep {} was not told: {}", m.sweep_id, e.message))
    })
}

/// What a trial's run directory holds of its outcome.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    /// The state its finish record gives (`None`: not finished, or killed before it wrote one).
    pub state: Option<String>,
    /// The metric's values in the order they were logged.
    pub values: Vec<f64>,
    /// The metric in the run's summary: set by `summary`, or else its last logged value.
    pub summary: Option<f64>,
}

/// Reads a run directory's log for the state it ended in and the metric `name` (dotted).
pub fn outcome(run_dir: &Path, name: &str) -> Outcome {
    let wal = run_dir.join("wal");
    let mut out = Outcome::default();
    let Ok(end) = scan_end(&wal) else { return out };
    let mut key: Option<u64> = None;
    let mut set: Option<f64> = None;
    let _ = WalReader::new(&wal).scan(0, end, |_, _, payload| {
        match wire::decode_record(payload) {
            Ok(Record::KeyDef { key_id, stream: KeyStream::History, path }) if wire::key_name(&path) == name => key = Some(key_id),
            Ok(Record::History { fields, .. }) => {
                if let Some(k) = key
                    && let Some((_, v)) = fields.iter().find(|(id, _)| *id == k)
                    && let Some(x) = number(v)
                {
                    out.values.push(x);
                }
            }
            Ok(Record::Summary { set: values, .. }) => {
                if let Some(v) = values.get(name).and_then(number) {
                    set = Some(v);
                }
            }
            Ok(Record::Event { event, .. }) => {
                if let Value::Map(m) = &event
                    && m.get("type") == Some(&Value::Str("finish".into()))
                {
                    out.state = match m.get("state") {
                        Some(Value::Str(s)) => Some(s.clone()),
                        _ => Some("finished".into()),
                    };
                }
            }
            _ => {}
        }
        true
    });
    out.summary = set.or_else(|| out.values.last().copied());
    out
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        _ => None,
    }
}
