//! The client's errors. Each has a kind, which the Python package maps to an exception class.

use cairn_types::error::{CodedError, ErrorCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A run id with forbidden characters, say.
    InvalidRunId,
    /// A value that cannot be logged, or a bad argument.
    InvalidValue,
    /// A setting or environment variable with a bad value.
    InvalidSetting,
    /// A config key changed without `allow_val_change`.
    Config,
    /// The run (or what was asked for) does not exist.
    NotFound,
    /// The run exists when it must not.
    Conflict,
    /// The run was deleted: its id is taken until the run is purged.
    Deleted,
    /// The run has finished or was stopped; it takes no more data.
    Finished,
    /// The server could not be reached.
    Network,
    /// The server needs a valid API key: none was given, or it is unknown, revoked or expired.
    Unauthorized,
    /// The key is valid, but its user lacks the role the request needs.
    Forbidden,
    /// The server refused or failed.
    Server,
    /// The run directory could not be written.
    Io,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ClientError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ClientError {
        ClientError { kind, message: message.into() }
    }

    pub fn io(what: &str, path: &std::path::Path, e: std::io::Error) -> ClientError {
        ClientError::new(ErrorKind::Io, format!("cannot {what} {}: {e}", path.display()))
    }
}

impl From<CodedError> for ClientError {
    fn from(e: CodedError) -> ClientError {
        let kind = match e.code {
            ErrorCode::InvalidRunId => ErrorKind::InvalidRunId,
            ErrorCode::InvalidConfig => ErrorKind::Config,
            ErrorCode::InvalidName
            | ErrorCode::InvalidValue
            | ErrorCode::InvalidStep
            | ErrorCode::InvalidFilter
            | ErrorCode::InvalidQuery
            | ErrorCode::InvalidSweep
            | ErrorCode::InvalidBody => ErrorKind::InvalidValue,
            ErrorCode::EntityNotFound
            | ErrorCode::ProjectNotFound
            | ErrorCode::RunNotFound
            | ErrorCode::KeyNotFound
            | ErrorCode::FileNotFound
            | ErrorCode::ArtifactNotFound
            | ErrorCode::SweepNotFound => ErrorKind::NotFound,
            ErrorCode::RunAlreadyExists | ErrorCode::SweepOver => ErrorKind::Conflict,
            ErrorCode::RunDeleted => ErrorKind::Deleted,
            ErrorCode::RunFinished => ErrorKind::Finished,
            ErrorCode::ShuttingDown | ErrorCode::BackendUnavailable => ErrorKind::Network,
            ErrorCode::Unauthorized => ErrorKind::Unauthorized,
            ErrorCode::Forbidden => ErrorKind::Forbidden,
            _ => ErrorKind::Server,
        };
        ClientError::new(kind, e.message)
    }
}

impl From<crate::http::CallError> for ClientError {
    fn from(e: crate::http::CallError) -> ClientError {
        match e {
            crate::http::CallError::Transport(message) => ClientError::new(ErrorKind::Network, message),
            crate::http::CallError::Api { error, .. } => error.into(),
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
