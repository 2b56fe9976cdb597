//! Run ids, entity and project names, and run paths (`entity/project/run_id`).

use std::fmt;

use crate::error::{CodedError, ErrorCode};

/// Length of a generated run id.
pub const GENERATED_RUN_ID_LEN: usize = 8;
/// Longest run id, entity or project name that is accepted.
pub const MAX_NAME_LEN: usize = 128;
/// Characters refused in run ids, entity and project names: they break paths and URLs.
pub const FORBIDDEN_CHARS: &[char] = &['/', '\\', '#', '?', '%', ':'];

const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A fresh run id: 8 characters of `[a-z0-9]`.
pub fn generate_run_id() -> String {
    let mut rng = fastrand::Rng::new();
    (0..GENERATED_RUN_ID_LEN).map(|_| ID_ALPHABET[rng.usize(..ID_ALPHABET.len())] as char).collect()
}

fn check_identifier(what: &str, value: &str, code: ErrorCode) -> Result<(), CodedError> {
    if value.is_empty() {
        return Err(CodedError::new(code, format!("{what} must not be empty")));
    }
    if value.chars().count() > MAX_NAME_LEN {
        return Err(CodedError::new(code, format!("{what} {value:?} is longer than {MAX_NAME_LEN} characters")));
    }
    if let Some(bad) = value.chars().find(|c| FORBIDDEN_CHARS.contains(c)) {
        return Err(CodedError::new(code, format!("{what} {value:?} contains {bad:?}; the characters / \\ # ? % : are not allowed")));
    }
    if let Some(bad) = value.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(CodedError::new(code, format!("{what} {value:?} contains the whitespace or control character {bad:?}")));
    }
    if value == "." || value == ".." {
        return Err(CodedError::new(code, format!("{what} {value:?} is not allowed")));
    }
    Ok(())
}

/// Checks a run id given by a user or a client.
pub fn validate_run_id(run_id: &str) -> Result<(), CodedError> {
    check_identifier("run id", run_id, ErrorCode::InvalidRunId)
}

/// Checks an entity or project name. `what` names it in the message ("entity", "project").
pub fn validate_name(what: &str, name: &str) -> Result<(), CodedError> {
    check_identifier(what, name, ErrorCode::InvalidName)
}

/// `entity/project/run_id`, the unique address of a run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunPath {
    pub entity: String,
    pub project: String,
    pub run_id: String,
}

impl RunPath {
    pub fn new(entity: impl Into<String>, project: impl Into<String>, run_id: impl Into<String>) -> RunPath {
        RunPath { entity: entity.into(), project: project.into(), run_id: run_id.into() }
    }

    pub fn validate(&self) -> Result<(), CodedError> {
        validate_name("entity", &self.entity)?;
        validate_name("project", &self.project)?;
        validate_run_id(&self.run_id)
    }

    /// Parses `entity/project/run_id`, also accepting W&B's `entity/project/runs/run_id`.
    pub fn parse(path: &str) -> Result<RunPath, CodedError> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let run_path = match parts.as_slice() {
            [entity, project, run_id] | [entity, project, "runs", run_id] => RunPath::new(*entity, *project, *run_id),
            _ => {
                return Err(CodedError::new(ErrorCode::InvalidRunId, format!("run path {path:?} is not of the form entity/project/run_id")));
            }
        };
        run_path.validate()?;
        Ok(run_path)
    }
}

impl fmt::Display for RunPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.entity, self.project, self.run_id)
    }
}

/// Parses `entity/project`.
pub fn parse_project_path(path: &str) -> Result<(String, String), CodedError> {
    match path.trim_matches('/').split('/').collect::<Vec<_>>().as_slice() {
        [entity, project] => {
            validate_name("entity", entity)?;
            validate_name("project", project)?;
            Ok((entity.to_string(), project.to_string()))
        }
        _ => Err(CodedError::new(ErrorCode::InvalidName, format!("project path {path:?} is not of the form entity/project"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| generate_run_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 8);
            assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{id}");
            validate_run_id(id).unwrap();
        }
    }

    #[test]
    fn forbidden_characters_are_named() {
        for bad in ["a/b", "a\\b", "a#b", "a?b", "a%b", "a:b"] {
            let err = validate_run_id(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidRunId);
            assert!(err.message.contains(&format!("{bad:?}")), "{}", err.message);
        }
        assert!(validate_run_id("").unwrap_err().message.contains("empty"));
        assert!(validate_run_id(&"x".repeat(129)).is_err());
        assert!(validate_run_id("has space").is_err());
        validate_run_id("My-Run_1.0").unwrap();
        validate_run_id("日本語").unwrap();
    }

    #[test]
    fn run_paths_parse() {
        assert_eq!(RunPath::parse("nico/awesome/1jx1ud12").unwrap(), RunPath::new("nico", "awesome", "1jx1ud12"));
        assert_eq!(RunPath::parse("nico/awesome/runs/1jx1ud12").unwrap().run_id, "1jx1ud12");
        assert!(RunPath::parse("nico/awesome").is_err());
        assert!(RunPath::parse("nico/awe:some/x").is_err());
        assert_eq!(parse_project_path("a/b").unwrap(), ("a".into(), "b".into()));
    }
}
