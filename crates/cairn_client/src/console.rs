//! Console capture at the file-descriptor level: what the program, its C extensions and its child
//! processes write to fd 1 and fd 2 is caught, shown on the terminal unchanged, and logged.
//!
//! Each of fd 1 and fd 2 is pointed at a pipe (a pseudo-terminal when the original was a
//! terminal, so that programs still see one and keep line buffering and colours). One thread
//! waits on both with `poll`, writes every byte it reads to the original descriptor at once (the
//! terminal sees the same bytes, in the same order, undelayed), and cuts the stream into lines:
//!
//! - `\n` ends a line;
//! - `\r` starts the line over: a progress bar (tqdm) is one line, rewritten in place. Rewrites are
//!   logged at most every [`REWRITE_INTERVAL`], and the last state always, so a bar of thousands
//!   of updates costs a handful of records;
//! - a partial line (a prompt) is logged after [`IDLE_FLUSH`] without output, and rewritten as
//!   it grows.
//!
//! Lines carry their stream and the time they were read. stdout and stderr are two pipes, so
//! their relative order is the order in which the thread saw them; within one stream it is exact.

use std::io::Write;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cairn_types::wire::ConsoleStream;

/// How often a line that is being rewritten (`\r`) is logged.
pub const REWRITE_INTERVAL: Duration = Duration::from_millis(500);
/// How long a partial line waits for its end before it is logged as it stands.
pub const IDLE_FLUSH: Duration = Duration::from_millis(250);
/// Whether a capture is running in this process.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// A line longer than this is cut: memory stays bounded whatever the program writes.
pub const MAX_LINE: usize = 64 << 10;

/// Receives the lines: `(line to rewrite, stream, text)`, and returns the line's number. A line
/// that is done is passed with `done = true`.
pub trait Sink: Send {
    fn line(&mut self, rewrite: Option<u64>, stream: ConsoleStream, text: &str, done: bool) -> Option<u64>;
}

/// One stream's line being assembled.
#[derive(Default)]
struct LineState {
    buf: Vec<u8>,
    /// The number of the line once logged: later states rewrite it.
    number: Option<u64>,
    /// A `\r` was read: the next character starts the line over.
    carriage_return: bool,
    /// Changed since it was last logged.
    dirty: bool,
    last_logged: Option<Instant>,
    last_input: Option<Instant>,
}

/// Cuts one stream's bytes into lines (no I/O: tested on its own).
pub struct Lines {
    stream: ConsoleStream,
    state: LineState,
}

impl Lines {
    pub fn new(stream: ConsoleStream) -> Lines {
        Lines { stream, state: LineState::default() }
    }

    fn emit(&mut self, sink: &mut dyn Sink, done: bool) {
        let s = &mut self.state;
        let text = String::from_utf8_lossy(&s.buf);
        let number = sink.line(s.number, self.stream, &text, done);
        s.number = if done { None } else { number.or(s.number) };
        s.dirty = false;
        s.last_logged = Some(Instant::now());
        if done {
            s.buf.clear();
            s.carriage_return = false;
            s.last_logged = None;
        }
    }

    pub fn feed(&mut self, bytes: &[u8], now: Instant, sink: &mut dyn Sink) {
        self.state.last_input = Some(now);
        let mut rest = bytes;
        while !rest.is_empty() {
            // Copy the run of ordinary bytes in one go.
            let plain = rest.iter().position(|&b| b == b'\n' || b == b'\r').unwrap_or(rest.len());
            if plain > 0 {
                if self.state.carriage_return {
                    self.state.buf.clear();
                    self.state.carriage_return = false;
                }
                let take = plain.min(MAX_LINE - self.state.buf.len());
                self.state.buf.extend_from_slice(&rest[..take]);
                self.state.dirty = true;
                rest = &rest[take..];
                if self.state.buf.len() >= MAX_LINE {
                    self.emit(sink, true);
                }
                continue;
            }
            match rest[0] {
                b'\n' => {
                    // A line ends as it stands, `\r\n` included.
                    self.state.carriage_return = false;
                    self.emit(sink, true);
                }
                _ => {
                    // `\r`: the state before it is worth logging if the last one is old enough.
                    self.state.carriage_return = true;
                    if rest.get(1) == Some(&b'\n') {
                        rest = &rest[1..];
                        continue; // `\r\n`: the line just ends
                    }
                    let due = self.state.last_logged.is_none_or(|t| now.duration_since(t) >= REWRITE_INTERVAL);
                    if self.state.dirty && due && !self.state.buf.is_empty() {
                        self.emit(sink, false);
                    }
                }
            }
            rest = &rest[1..];
        }
    }

    /// Logs a partial or rewritten line that has waited long enough (`force`: now, at the end).
    pub fn flush_idle(&mut self, now: Instant, force: bool, sink: &mut dyn Sink) {
        // At the end, a line logged before as it stood (a prompt, a bar) is ended too, so that
        // output.log gets it.
        let unfinished = force && self.state.number.is_some();
        if (!self.state.dirty && !unfinished) || self.state.buf.is_empty() {
            return;
        }
        let idle = self.state.last_input.is_none_or(|t| now.duration_since(t) >= IDLE_FLUSH);
        if force {
            self.emit(sink, true);
        } else if idle {
            self.emit(sink, false);
        }
    }
}

/// Console capture in progress; [`Capture::stop`] puts the descriptors back.
pub struct Capture {
    saved: Vec<(RawFd, RawFd)>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn last_os_error(what: &str) -> std::io::Error {
    let e = std::io::Error::last_os_error();
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// A pipe, or a pseudo-terminal in raw mode with the original terminal's size: `(read, write)`.
fn channel_for(original: RawFd) -> std::io::Result<(RawFd, RawFd)> {
    // SAFETY: plain libc calls on descriptors this function owns; results are checked.
    unsafe {
        if libc::isatty(original) == 1 {
            let (mut master, mut slave) = (-1, -1);
            let mut size: libc::winsize = std::mem::zeroed();
            let size_ptr = if libc::ioctl(original, libc::TIOCGWINSZ, &mut size) == 0 { &size as *const _ } else { std::ptr::null() };
            if libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), size_ptr) == 0 {
                let mut tio: libc::termios = std::mem::zeroed();
                if libc::tcgetattr(slave, &mut tio) == 0 {
                    // No `\n` → `\r\n` translation, no echo: the bytes go through as written.
                    libc::cfmakeraw(&mut tio);
                    libc::tcsetattr(slave, libc::TCSANOW, &tio);
                }
                libc::fcntl(master, libc::F_SETFD, libc::FD_CLOEXEC);
                libc::fcntl(slave, libc::F_SETFD, libc::FD_CLOEXEC);
                return Ok((master, slave));
            }
        }
        let mut fds = [0; 2];
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(last_os_error("cannot create a pipe for the console"));
        }
        Ok((fds[0], fds[1]))
    }
}

fn write_all(fd: RawFd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: writes from a live slice to a descriptor we hold.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return; // The terminal is gone (a closed pipe): the program goes on, and so does the log.
        }
        bytes = &bytes[n as usize..];
    }
}

impl Capture {
    /// Starts capturing fd 1 and fd 2. On error nothing is changed. One capture at a time per
    /// process: a second run started beside the first is not captured (its restore would undo
    /// the other's).
    pub fn start(sink: Box<dyn Sink>) -> std::io::Result<Capture> {
        if ACTIVE.swap(true, Ordering::AcqRel) {
            return Err(std::io::Error::other("another run of this process captures the console already"));
        }
        let capture = Capture::start_inner(sink);
        if capture.is_err() {
            ACTIVE.store(false, Ordering::Release);
        }
        capture
    }

    fn start_inner(sink: Box<dyn Sink>) -> std::io::Result<Capture> {
        let streams = [(1, ConsoleStream::Stdout), (2, ConsoleStream::Stderr)];
        let mut saved = Vec::new();
        let mut readers = Vec::new();
        let undo = |saved: &[(RawFd, RawFd)], readers: &[(RawFd, ConsoleStream, RawFd)]| {
            // SAFETY: restores and closes descriptors this function created.
            unsafe {
                for &(fd, copy) in saved {
                    libc::dup2(copy, fd);
                    libc::close(copy);
                }
                for &(read, _, _) in readers {
                    libc::close(read);
                }
            }
        };
        let _ = std::io::stdout().flush();
        for (fd, stream) in streams {
            // SAFETY: duplicating the process's own standard descriptors; results are checked.
            let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
            if copy < 0 {
                let e = last_os_error("cannot duplicate the console");
                undo(&saved, &readers);
                return Err(e);
            }
            let (read, write) = match channel_for(copy) {
                Ok(pair) => pair,
                Err(e) => {
                    unsafe { libc::close(copy) };
                    undo(&saved, &readers);
                    return Err(e);
                }
            };
            // SAFETY: as above. After dup2, fd points at the channel; the spare write end closes.
            let ok = unsafe { libc::dup2(write, fd) } >= 0;
            unsafe { libc::close(write) };
            if !ok {
                let e = last_os_error("cannot redirect the console");
                unsafe {
                    libc::close(copy);
                    libc::close(read);
                }
                undo(&saved, &readers);
                return Err(e);
            }
            saved.push((fd, copy));
            readers.push((read, stream, copy));
        }
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let thread = std::thread::Builder::new().name("cairn-console".into()).spawn(move || pump(readers, sink, &stop));
        match thread {
            Ok(thread) => Ok(Capture { saved, stopping, thread: Some(thread) }),
            Err(e) => {
                undo(&saved, &[]);
                Err(e)
            }
        }
    }

    /// Puts fd 1 and fd 2 back, logs what is left, and waits for the thread. A child process that
    /// still holds the pipe does not hold this up: once no output comes for a moment, it ends.
    pub fn stop(mut self) {
        self.restore();
    }

    fn restore(&mut self) {
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        for &(fd, copy) in &self.saved {
            // SAFETY: the copies are ours; fd goes back to what it was.
            unsafe { libc::dup2(copy, fd) };
        }
        self.stopping.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        for &(_, copy) in &self.saved {
            unsafe { libc::close(copy) };
        }
        self.saved.clear();
        ACTIVE.store(false, Ordering::Release);
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.restore();
        }
    }
}

fn pump(readers: Vec<(RawFd, ConsoleStream, RawFd)>, mut sink: Box<dyn Sink>, stopping: &AtomicBool) {
    let mut lines: Vec<Lines> = readers.iter().map(|&(_, stream, _)| Lines::new(stream)).collect();
    let mut open: Vec<bool> = vec![true; readers.len()];
    let mut buf = vec![0u8; 64 << 10];
    let mut quiet_since_stop: Option<Instant> = None;
    let mut stop_seen: Option<Instant> = None;
    loop {
        let mut fds: Vec<libc::pollfd> =
            readers.iter().zip(&open).map(|(&(fd, _, _), &o)| libc::pollfd { fd: if o { fd } else { -1 }, events: libc::POLLIN, revents: 0 }).collect();
        if !open.iter().any(|&o| o) {
            break;
        }
        let stopping_now = stopping.load(Ordering::Acquire);
        let timeout = if stopping_now { 50 } else { 100 };
        // SAFETY: fds is a live array of pollfd.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        let now = Instant::now();
        if ready < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        let mut got = false;
        for (i, pfd) in fds.iter().enumerate() {
            if !open[i] || pfd.revents == 0 {
                continue;
            }
            let (fd, _, terminal) = readers[i];
            // SAFETY: reads into our buffer from our descriptor.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                let bytes = &buf[..n as usize];
                write_all(terminal, bytes);
                lines[i].feed(bytes, now, sink.as_mut());
                got = true;
            } else if n == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                // End of the stream (every writer closed it); a pty reports EIO instead.
                open[i] = false;
            }
        }
        if stopping_now {
            // Drain what is in flight; stop at the first quiet moment, and after 2 s whatever
            // happens: a child process that outlives the run and keeps printing must not hold
            // `finish` (its later output goes to the pipe's closed end, not to the terminal).
            let since = *stop_seen.get_or_insert(now);
            if got {
                quiet_since_stop = None;
            } else if quiet_since_stop.get_or_insert(now).elapsed() >= Duration::from_millis(50) || ready == 0 {
                break;
            }
            if now.duration_since(since) >= Duration::from_secs(2) {
                break;
            }
        } else if !got {
            for l in &mut lines {
                l.flush_idle(now, false, sink.as_mut());
            }
        }
    }
    let now = Instant::now();
    for l in &mut lines {
        l.flush_idle(now, true, sink.as_mut());
    }
    for (i, (fd, _, terminal)) in readers.into_iter().enumerate() {
        if open[i] {
            // A child process still holds the pipe: keep showing what it writes (closing the read
            // end would kill it with SIGPIPE at its next write), no longer logged.
            // SAFETY: a copy of the terminal descriptor for the forwarder, which owns both.
            let out = unsafe { libc::fcntl(terminal, libc::F_DUPFD_CLOEXEC, 3) };
            if out >= 0 {
                let forwarded = std::thread::Builder::new().name("cairn-console-forward".into()).spawn(move || {
                    let mut buf = vec![0u8; 16 << 10];
                    loop {
                        // SAFETY: reads into our buffer from the descriptor this thread owns.
                        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                        if n > 0 {
                            write_all(out, &buf[..n as usize]);
                        } else if n == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                            break;
                        }
                    }
                    // SAFETY: both are this thread's.
                    unsafe {
                        libc::close(fd);
                        libc::close(out);
                    }
                });
                if forwarded.is_ok() {
                    continue;
                }
                unsafe { libc::close(out) };
            }
        }
        // SAFETY: our read ends.
        unsafe { libc::close(fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Record {
        next: u64,
        /// (number, text, done)
        records: Vec<(u64, String, bool)>,
    }

    impl Sink for Record {
        fn line(&mut self, rewrite: Option<u64>, _stream: ConsoleStream, text: &str, done: bool) -> Option<u64> {
            let number = rewrite.unwrap_or_else(|| {
                self.next += 1;
                self.next - 1
            });
            self.records.push((number, text.to_owned(), done));
            Some(number)
        }
    }

    #[test]
    fn lines_and_crlf() {
        let mut sink = Record::default();
        let mut lines = Lines::new(ConsoleStream::Stdout);
        let t = Instant::now();
        lines.feed(b"one\ntw", t, &mut sink);
        lines.feed(b"o\r\nthree\n", t, &mut sink);
        let texts: Vec<_> = sink.records.iter().map(|r| (r.0, r.1.as_str(), r.2)).collect();
        assert_eq!(texts, [(0, "one", true), (1, "two", true), (2, "three", true)]);
    }

    #[test]
    fn a_progress_bar_is_one_rewritten_line() {
        let mut sink = Record::default();
        let mut lines = Lines::new(ConsoleStream::Stderr);
        let t = Instant::now();
        lines.feed(b"before\n", t, &mut sink);
        for i in 0..=1000 {
            lines.feed(format!("\r{i:4}/1000 [{}]", "#".repeat(i / 100)).as_bytes(), t + Duration::from_micros(i as u64), &mut sink);
        }
        lines.feed(b"\n", t, &mut sink);
        lines.feed(b"after\n", t, &mut sink);
        // The bar is line 1, logged at its first state and its last: not a thousand times.
        let bar: Vec<_> = sink.records.iter().filter(|r| r.0 == 1).collect();
        assert!(bar.len() <= 3, "{}", bar.len());
        assert_eq!(bar.last().unwrap().1, "1000/1000 [##########]");
        assert!(bar.last().unwrap().2);
        assert_eq!(sink.records.last().unwrap().0, 2);
        assert_eq!(sink.records.last().unwrap().1, "after");
    }

    #[test]
    fn partial_lines_are_logged_when_idle_then_completed() {
        let mut sink = Record::default();
        let mut lines = Lines::new(ConsoleStream::Stdout);
        let t = Instant::now();
        lines.feed(b"Password: ", t, &mut sink);
        lines.flush_idle(t + Duration::from_millis(10), false, &mut sink);
        assert!(sink.records.is_empty());
        lines.flush_idle(t + IDLE_FLUSH, false, &mut sink);
        assert_eq!(sink.records, [(0, "Password: ".to_owned(), false)]);
        lines.feed(b"ok\n", t + IDLE_FLUSH, &mut sink);
        assert_eq!(sink.records[1], (0, "Password: ok".to_owned(), true));
        // A line logged when idle and never ended is ended at the stop.
        lines.feed(b"Continue? ", t, &mut sink);
        lines.flush_idle(t + IDLE_FLUSH * 2, false, &mut sink);
        lines.flush_idle(t + IDLE_FLUSH * 3, true, &mut sink);
        assert_eq!(sink.records.last().unwrap(), &(1, "Continue? ".to_owned(), true));
    }

    #[test]
    fn long_lines_are_cut() {
        let mut sink = Record::default();
        let mut lines = Lines::new(ConsoleStream::Stdout);
        lines.feed(&vec![b'x'; MAX_LINE * 2 + 10], Instant::now(), &mut sink);
        lines.flush_idle(Instant::now(), true, &mut sink);
        let lens: Vec<_> = sink.records.iter().map(|r| r.1.len()).collect();
        assert_eq!(lens, [MAX_LINE, MAX_LINE, 10]);
    }
}
