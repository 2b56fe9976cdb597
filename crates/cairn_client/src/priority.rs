//! The helper threads' scheduling priority: below the program's, so that on a busy machine the
//! training loop keeps its core when an upload, a heartbeat, a system-metrics sample or the log's
//! page faulting wants one. They need little CPU, and what they do waits safely in the run's log.
//!
//! The console thread is not one of them: a program that prints waits for it once the pipe is
//! full. Nor is the media thread, which makes files that `log` takes.

use std::sync::atomic::{AtomicI32, Ordering};

/// How much lower than the program the helpers run (niceness, 0 to 19), unless
/// `CAIRN_BACKGROUND_NICE` says otherwise.
pub const DEFAULT_NICE: i32 = 10;

/// Set by each `init`; the helpers of the runs of one process share it.
static NICE: AtomicI32 = AtomicI32::new(DEFAULT_NICE);

pub fn set_background_nice(nice: i32) {
    NICE.store(nice.clamp(0, 19), Ordering::Relaxed);
}

/// Lowers the calling thread's priority by the background niceness. Linux keeps a niceness per
/// thread (`nice` changes the caller's only); elsewhere it is the whole process's, and it is left
/// alone. Failing is harmless: the thread then runs at the program's priority.
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        let nice = NICE.load(Ordering::Relaxed);
        if nice > 0 {
            // SAFETY: `nice` only changes the calling thread's scheduling priority.
            unsafe { libc::nice(nice) };
        }
    }
}
