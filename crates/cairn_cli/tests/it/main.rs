//! End-to-end tests with the real `cairn` binary on a free port and real client processes.
//!
//! Client processes are this test binary itself, started again with `CAIRN_TEST_CHILD` set: the
//! `child` test then acts the part (log forever, wait for a stop...), and is a no-op otherwise.

mod children;
mod crashes;
mod e2e;
mod faults;
mod keys;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_client::http::ApiClient;

pub const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

pub struct ServerProcess {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
}

impl ServerProcess {
    pub fn start(data_dir: &Path, extra: &[&str]) -> ServerProcess {
        ServerProcess::start_with_env(data_dir, extra, &[])
    }

    pub fn start_with_env(data_dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> ServerProcess {
        ServerProcess::start_on(0, data_dir, extra, envs)
    }

    /// A server on `port` (0: a free one).
    pub fn start_on(port: u16, data_dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> ServerProcess {
        let mut child = Command::new(CAIRN)
            .args(["server", "--port", &port.to_string(), "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .envs(envs.iter().copied())
            .env("CAIRN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cairn server");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().expect("the server prints its URL").unwrap();
        let url = first.rsplit(' ').next().unwrap().to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "{first}");
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ServerProcess { child, url, data_dir: data_dir.to_owned() }
    }

    pub fn api(&self) -> ApiClient {
        ApiClient::new(&self.url, None, Duration::from_secs(30))
    }

    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process that is killed when the test ends, also when it fails.
pub struct Guard(pub Child);

impl std::ops::Deref for Guard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a client process in the role `role`.
pub fn child(role: &str, envs: &[(&str, String)]) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["children::child", "--exact", "--nocapture", "--test-threads=1"]).env("CAIRN_TEST_CHILD", role).env("CAIRN_SILENT", "true");
    for (k, v) in envs {
        command.env(k, v);
    }
    command
}

pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

pub fn cairn(args: &[&str]) -> std::process::Output {
    Command::new(CAIRN).args(args).output().expect("run cairn")
}

/// The one run directory under `<base>/cairn/`.
pub fn run_dir(base: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(base.join("cairn")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}
