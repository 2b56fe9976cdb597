//! Readers of other trackers' stores, into cairn's model: W&B offline run directories
//! ([`wandb`]) and MLflow tracking stores ([`mlflow`]). They read files and build
//! [`ImportedRun`]s; sending them to a server is the CLI's part (`cairn import`).

pub mod leveldb;
pub mod mlflow;
pub mod wandb;
mod wandb_proto;

use std::path::PathBuf;

use cairn_types::Timestamp;
use cairn_types::api::{JsonConsoleLine, RunState};
use cairn_types::value::Map;

/// One run read from another tracker, in cairn's terms.
#[derive(Debug, Clone)]
pub struct ImportedRun {
    /// What it was read from, for messages.
    pub source: PathBuf,
    pub entity: Option<String>,
    pub project: Option<String>,
    pub run_id: String,
    pub name: Option<String>,
    pub notes: Option<String>,
    pub tags: Vec<String>,
    pub group: Option<String>,
    pub job_type: Option<String>,
    pub started_at: Option<Timestamp>,
    pub config: Map,
    pub summary: Map,
    pub metadata: Map,
    /// Rows with `_step` (growing), `_timestamp` and `_runtime` (seconds) and the values.
    pub history: Vec<Map>,
    /// Rows with `_timestamp` and `system.*` numbers.
    pub system: Vec<Map>,
    pub console: Vec<JsonConsoleLine>,
    /// Run files: the name in the run, and the file on disk.
    pub files: Vec<(String, PathBuf)>,
    /// How it ended: `finished`, `failed`, `killed`, `crashed` (it ended without a word), or
    /// `running` (as far as its store knows, it still runs).
    pub state: RunState,
    pub exit_code: Option<i32>,
    pub finished_at: Option<Timestamp>,
    /// What could not be read, said once per kind.
    pub warnings: Vec<String>,
}

/// Every file under `dir`, by its path below it with `/` between folders, in order.
pub(crate) fn files_under(dir: &std::path::Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file()
                && let Ok(rel) = p.strip_prefix(dir)
            {
                out.push((rel.to_string_lossy().replace('\\', "/"), p));
            }
        }
    }
    out.sort();
    out
}

/// A source that cannot be read at all; the message names it and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError(pub String);

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ImportError {}

/// A JSON value as W&B and MLflow write it, where `NaN`, `Infinity` and `-Infinity` may appear
/// bare (Python's `json` writes them so); they become the strings cairn's values read as floats.
pub fn parse_loose_json(text: &str) -> Result<serde_json::Value, serde_json::Error> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(e) => {
            let mut out = String::with_capacity(text.len() + 8);
            let mut in_string = false;
            let mut escaped = false;
            let mut rest = text;
            while let Some(c) = rest.chars().next() {
                if in_string {
                    out.push(c);
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        in_string = false;
                    }
                    rest = &rest[c.len_utf8()..];
                    continue;
                }
                if c == '"' {
                    in_string = true;
                }
                let token = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t));
                match token {
                    Some(t) => {
                        out.push('"');
                        out.push_str(t);
                        out.push('"');
                        rest = &rest[t.len()..];
                    }
                    None => {
                        out.push(c);
                        rest = &rest[c.len_utf8()..];
                    }
                }
            }
            serde_json::from_str(&out).map_err(|_| e)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bare_non_finite_numbers_read_as_cairn_reads_them() {
        let v = super::parse_loose_json(r#"{"a": NaN, "b": [-Infinity, 1], "c": "NaN in a string", "d": Infinity}"#).unwrap();
        assert_eq!(v["a"], "NaN");
        assert_eq!(v["b"][0], "-Infinity");
        assert_eq!(v["c"], "NaN in a string");
        assert_eq!(v["d"], "Infinity");
        assert!(super::parse_loose_json("{nope").is_err());
    }
}
