//! The one table of error codes. Every error the server returns carries one of these codes, the
//! HTTP status that goes with it, and a message that names the bad value. Clients map the code back
//! to a typed error (the Python package raises one exception class per kind).

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($( $variant:ident => ($code:literal, $status:literal, $kind:ident) ),* $(,)?) => {
        /// A stable, machine-readable error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $variant, )*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            /// The code as it appears in the JSON body, for example `run_not_found`.
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $code, )* }
            }

            /// The HTTP status that the server answers with.
            pub fn http_status(self) -> u16 {
                match self { $( ErrorCode::$variant => $status, )* }
            }

            /// The broad class, which the clients use to pick an exception type.
            pub fn kind(self) -> ErrorKind {
                match self { $( ErrorCode::$variant => ErrorKind::$kind, )* }
            }

            pub fn from_code(code: &str) -> Option<ErrorCode> {
                match code { $( $code => Some(ErrorCode::$variant), )* _ => None }
            }
        }
    };
}

error_codes! {
    // No credentials, or credentials that are not (or no longer) valid. Never says whether
    // what was asked for exists.
    Unauthorized => ("unauthorized", 401, Unauthorized),
    // Signed in, but without the role the request needs; the message names the entity and role.
    Forbidden => ("forbidden", 403, Forbidden),
    // The request's Host is not one this server answers to (DNS rebinding).
    HostNotAllowed => ("host_not_allowed", 421, Forbidden),
    // Too many failed sign-ins for this account or address; wait and retry.
    RateLimited => ("rate_limited", 429, Unavailable),
    InvalidRunId => ("invalid_run_id", 400, InvalidInput),
    InvalidName => ("invalid_name", 400, InvalidInput),
    InvalidValue => ("invalid_value", 400, InvalidInput),
    InvalidConfig => ("invalid_config", 400, InvalidInput),
    InvalidFilter => ("invalid_filter", 400, InvalidInput),
    InvalidQuery => ("invalid_query", 400, InvalidInput),
    InvalidBody => ("invalid_body", 400, InvalidInput),
    InvalidStep => ("invalid_step", 400, InvalidInput),
    // A sweep configuration that cannot run; the message names the parameter and the problem.
    InvalidSweep => ("invalid_sweep", 400, InvalidInput),
    UnsupportedMediaType => ("unsupported_media_type", 415, InvalidInput),
    PayloadTooLarge => ("payload_too_large", 413, InvalidInput),
    EntityNotFound => ("entity_not_found", 404, NotFound),
    ProjectNotFound => ("project_not_found", 404, NotFound),
    RunNotFound => ("run_not_found", 404, NotFound),
    KeyNotFound => ("key_not_found", 404, NotFound),
    FileNotFound => ("file_not_found", 404, NotFound),
    ApiKeyNotFound => ("api_key_not_found", 404, NotFound),
    ArtifactNotFound => ("artifact_not_found", 404, NotFound),
    SweepNotFound => ("sweep_not_found", 404, NotFound),
    RouteNotFound => ("route_not_found", 404, NotFound),
    MethodNotAllowed => ("method_not_allowed", 405, InvalidInput),
    RunAlreadyExists => ("run_already_exists", 409, Conflict),
    AccountExists => ("account_exists", 409, Conflict),
    RunDeleted => ("run_deleted", 409, Conflict),
    OffsetGap => ("offset_gap", 409, Conflict),
    RunFinished => ("run_finished", 409, Conflict),
    // A sweep that is over (finished, stopped, canceled) cannot be resumed or paused.
    SweepOver => ("sweep_over", 409, Conflict),
    UploadOffset => ("upload_offset", 409, Conflict),
    UploadInProgress => ("upload_in_progress", 409, Conflict),
    // A content was composed of chunks the server does not hold (never sent, or collected since):
    // the message counts them; send them, then compose again.
    ChunksMissing => ("chunks_missing", 409, Conflict),
    ContentMismatch => ("content_mismatch", 400, InvalidInput),
    ShuttingDown => ("shutting_down", 503, Unavailable),
    // The server's disk (its database or its blob store) is full: nothing of the request was
    // stored; a retry succeeds once space is freed.
    StorageFull => ("storage_full", 507, Unavailable),
    // The database or the object store cannot be reached now; a retry may succeed.
    BackendUnavailable => ("backend_unavailable", 503, Unavailable),
    Internal => ("internal", 500, Internal),
}

/// Whether an I/O error is a full disk (ENOSPC, or a quota: EDQUOT).
pub fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded || matches!(e.raw_os_error(), Some(28 | 122))
}

/// The error of a write that a full disk refused, naming what could not be written.
pub fn storage_full(what: impl std::fmt::Display) -> CodedError {
    CodedError::new(ErrorCode::StorageFull, format!("the server's disk is full: {what} could not be written, and nothing of this request was stored; free space and retry"))
}

/// The broad class of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Unauthorized,
    Forbidden,
    InvalidInput,
    NotFound,
    Conflict,
    Unavailable,
    Internal,
}

/// The JSON body of every error response: `{"code": "...", "message": "..."}`.
///
/// Offset gaps add the offsets the server expects, so a client can resend from there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable machine-readable code, for example `run_not_found`.
    pub code: String,
    /// Human-readable message that names the bad value.
    pub message: String,
    /// For `offset_gap`: the offset the server expects next, per stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_offsets: Option<crate::api::StreamOffsets>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody { code: code.as_str().to_owned(), message: message.into(), expected_offsets: None }
    }

    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(&self.code)
    }
}

/// An error with a code: what the store and the server pass around, and what the client decodes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct CodedError {
    pub code: ErrorCode,
    pub message: String,
    pub expected_offsets: Option<crate::api::StreamOffsets>,
}

impl CodedError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> CodedError {
        CodedError { code, message: message.into(), expected_offsets: None }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code.as_str().to_owned(), message: self.message.clone(), expected_offsets: self.expected_offsets }
    }
}

impl From<ErrorBody> for CodedError {
    fn from(body: ErrorBody) -> CodedError {
        CodedError { code: body.error_code().unwrap_or(ErrorCode::Internal), message: body.message, expected_offsets: body.expected_offsets }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate code {}", code.as_str());
            assert_eq!(ErrorCode::from_code(code.as_str()), Some(code));
            assert!((400..600).contains(&code.http_status()));
        }
        assert_eq!(ErrorCode::from_code("nope"), None);
    }
}
