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
pub mod priority;
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

    /// The niceness of this process's threads named `name` (Linux's `/proc`, field 19 of `stat`).
    #[cfg(target_os = "linux")]
    fn niceness_of(name: &str) -> Vec<i64> {
        let mut out = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == name {
                let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
                let after_name = stat.rsplit_once(')').unwrap().1;
                out.push(after_name.split_whitespace().nth(16).unwrap().parse().unwrap());
            }
        }
        out
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn helper_threads_run_below_the_program_and_the_program_stays_where_it_was() {
        let own = || std::fs::read_to_string("/proc/thread-self/stat").unwrap().rsplit_once(')').unwrap().1.split_whitespace().nth(16).unwrap().parse::<i64>().unwrap();
        let before = own();
        let dir = tempfile::tempdir().unwrap();
        let run = init(offline(dir.path()).stats_interval(std::time::Duration::from_secs(60))).unwrap();
        // Past the first 64 KiB of log, the page-faulting helper starts.
        for step in 0..4000 {
            run.log([("loss", step as f64), ("acc", 0.5), ("lr", 1e-3), ("m3", 3.0), ("m4", 4.0)]).unwrap();
        }
        let expected = (before + crate::priority::DEFAULT_NICE as i64).min(19);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while niceness_of("cairn-wal-prefa").is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // Other tests' runs may have threads of these names too: all are alike.
        let all = |name: &str, nice: i64| {
            let found = niceness_of(name);
            assert!(!found.is_empty() && found.iter().all(|&n| n == nice), "{name}: {found:?}, expected {nice}");
        };
        all("cairn-stats", expected);
        all("cairn-wal-prefa", expected);
        // The console thread is not lowered (a program that prints waits for it); whether this
        // process captures its console here depends on the other tests, so it is not checked.
        assert_eq!(own(), before, "the thread that logs keeps its priority");
        run.finish(None).unwrap();
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
