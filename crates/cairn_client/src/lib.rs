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

pub mod artifacts;
pub mod chunks;
pub mod console;
mod core;
pub mod credentials;
pub mod error;
pub mod files;
pub mod http;
pub mod media;
pub mod metadata;
pub mod report;
mod run;
pub mod rundir;
pub mod settings;
pub mod sweep;
pub mod sync;
pub mod system;
pub mod upload;
pub mod wal;

pub use crate::core::{KeyId, LogOutcome, RowFields};
pub use cairn_types::api::{ResumeMode, RunPatch, RunState};
pub use cairn_types::map;
pub use cairn_types::value::{Histogram, Map, Value};
pub use error::{ClientError, ErrorKind};
pub use files::Policy;
pub use run::{FinishReport, Run, init};
pub use settings::{Console, Mode, Settings};

#[cfg(test)]
mod tests {
    use super::*;

    fn offline(dir: &std::path::Path) -> Settings {
        Settings::new().mode(Mode::Offline).dir(dir.to_owned()).silent(true)
    }

    #[test]
    fn bad_input_is_refused_with_named_values() {
        let dir = tempfile::tempdir().unwrap();
        let err = init(offline(dir.path()).run_id("a/b")).err().unwrap();
        assert_eq!(err.kind, ErrorKind::InvalidRunId);
        assert!(err.message.contains("a/b"));
        let err = init(offline(dir.path()).project("p:q")).err().unwrap();
        assert!(err.message.contains("p:q"), "{}", err.message);
        assert!(!dir.path().join("cairn").exists() || std::fs::read_dir(dir.path().join("cairn")).unwrap().count() == 0);

        let run = init(offline(dir.path())).unwrap();
        let err = run.log([("_step", 1.0)]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidValue);
        let err = run.define_metric("loss", None, Some("best"), false).unwrap_err();
        assert!(err.message.contains("best"));
        run.log([("nan", f64::NAN), ("inf", f64::INFINITY)]).unwrap();
        assert!(matches!(run.summary()["nan"], Value::Float(f) if f.is_nan()));
        let weights = Histogram::of(&[0.5, 1.5, 1.7, 3.0], 3).unwrap();
        run.log([("weights", Value::from(weights.clone()))]).unwrap();
        assert_eq!(run.summary()["weights"], Value::from(weights), "a histogram is kept whole, as the last value");
        let report = run.finish(None).unwrap();
        assert_eq!(report.state, RunState::Finished);
        assert!(report.lines.iter().any(|l| l.contains("cairn sync")));
        let log = std::fs::read_to_string(run.dir().unwrap().join("logs/debug.log")).unwrap();
        assert!(log.contains("mode=offline") && log.contains("finished as finished"), "{log}");
        assert_eq!(run.log([("x", 1.0)]).unwrap_err().kind, ErrorKind::Finished);
    }

    #[test]
    fn disabled_runs_do_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let run = init(Settings::new().mode(Mode::Disabled).dir(dir.path().to_owned())).unwrap();
        assert_eq!(run.log([("loss", 1.0)]).unwrap(), LogOutcome::Disabled);
        run.finish(None).unwrap();
        assert!(!dir.path().join("cairn").exists());
    }
}
