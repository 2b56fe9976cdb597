//! Crash points, for the fault-injection tests. A debug build started with
//! `CAIRN_CRASH_AT=<name>` kills itself with SIGKILL when it reaches the point of that name, as a
//! `kill -9` from outside would at that instant: no destructor, no rollback, no flush runs.
//! Release builds have no crash points, and the variable does nothing there.
//!
//! The points sit where a crash is worst: inside a write transaction after its statements and
//! before its commit, and between a commit and the work that follows it.

/// Dies here if `CAIRN_CRASH_AT` names this point (debug builds on Unix only).
#[inline]
pub fn point(name: &str) {
    #[cfg(all(debug_assertions, unix))]
    {
        static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        if AT.get_or_init(|| std::env::var("CAIRN_CRASH_AT").ok()).as_deref() == Some(name) {
            eprintln!("cairn: CAIRN_CRASH_AT={name}: killing this process (SIGKILL)");
            // SAFETY: signals this very process; SIGKILL cannot be caught and never returns.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
    }
    #[cfg(not(all(debug_assertions, unix)))]
    let _ = name;
}
