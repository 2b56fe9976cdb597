//! cairn's client core, for Rust programs and for the Python package.
//!
//! ```no_run
//! let run = cairn_client::init(
//!     cairn_client::Settings::new().project("awesome-project").config(cairn_types::map! {"lr" => 0.01}),
//! )?;
//! for epoch in 0..10 {
//!     run.log([("accuracy", 0.9), ("loss", 0.1)])?;
//! }
//! run.finish(None)?;
//! # Ok::<(), cairn_client::ClientError>(())
//! ```
//!
//! `log` writes to the run directory's write-ahead log and returns; a background thread uploads.
//! Data that `log` accepted survives a crash of the process and is uploaded by `cairn sync`.

mod core;
pub mod error;
pub mod http;
pub mod metadata;
pub mod report;
mod run;
pub mod rundir;
pub mod settings;
pub mod sync;
pub mod upload;
pub mod wal;

pub use crate::core::{LogOutcome, RowFields};
pub use error::{ClientError, ErrorKind};
pub use run::{FinishReport, Run, init};
pub use settings::{Mode, Settings};
pub use cairn_types::api::{ResumeMode, RunPatch, RunState};
pub use cairn_types::value::{Map, Value};
pub use cairn_types::map;
