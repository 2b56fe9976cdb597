//! Shared model of cairn: identifiers, logged values, time, the binary record format used by the
//! client's write-ahead log and by ingest, the REST API's request and response types, the runs
//! filter language, and the table of error codes.
//!
//! This crate sits at the bottom of the layering: it never depends on tokio, axum, SQL or pyo3.

pub mod accounts;
pub mod api;
pub mod artifacts;
#[cfg(feature = "search")]
pub mod bayes;
pub mod chunking;
pub mod error;
pub mod filter;
pub mod ids;
pub mod media;
pub mod names;
pub mod summary;
pub mod sweep;
pub mod time;
pub mod value;
pub mod wire;

pub use chunking::hex;
pub use error::{ErrorBody, ErrorCode};
pub use ids::{RunPath, validate_name, validate_run_id};
pub use time::Timestamp;
pub use value::Value;
