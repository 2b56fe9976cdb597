//! The run directory: `<dir>/cairn/run-YYYYMMDD_HHMMSS-<run_id>/` with
//! - `wal/`: the write-ahead log (every record `log` accepted),
//! - `run.json`: what the run is and where it uploads to,
//! - `upload.json`: how far the upload got,
//! - `run.lock`: locked while a process writes the run,
//! - `files/` and `logs/`.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ClientError, ErrorKind, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFile {
    pub run_id: String,
    pub entity: Option<String>,
    pub project: Option<String>,
    pub base_url: String,
    pub mode: String,
    pub started_at: i64,
    pub client_version: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UploadFile {
    /// Position in the log up to which the server has everything.
    pub acked: u64,
    /// `entity/project/run_id` on the server, once known.
    pub run_path: Option<String>,
    /// Whether the run ended and all of it was uploaded.
    pub complete: bool,
    /// The last error that stopped the upload, if any.
    pub error: Option<String>,
}

/// `<dir>/cairn/resume.json`: the run that `resume="auto"` continues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeFile {
    pub run_id: String,
    pub run_dir: PathBuf,
}

pub fn resume_file_path(base: &Path) -> PathBuf {
    base.join("cairn").join("resume.json")
}

/// The directories under `<base>/cairn/` that hold a log of run `run_id`, oldest first.
pub fn dirs_of_run(base: &Path, run_id: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(base.join("cairn")) else { return Vec::new() };
    let mut dirs: Vec<(i64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("wal").is_dir())
        .filter_map(|p| {
            let run = read_json::<RunFile>(&p.join("run.json")).ok()?;
            (run.run_id == run_id).then_some((run.started_at, p))
        })
        .collect();
    dirs.sort();
    dirs.into_iter().map(|(_, p)| p).collect()
}

/// `YYYYMMDD_HHMMSS` in local time.
pub fn local_stamp(unix_secs: i64) -> String {
    // SAFETY: localtime_r writes only into `tm`, which we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let t = unix_secs as libc::time_t;
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return format!("{unix_secs}");
    }
    format!("{:04}{:02}{:02}_{:02}{:02}{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
}

pub struct RunDir {
    pub path: PathBuf,
    lock: Option<File>,
    /// The directory's filesystem is read-only (a disk that failed, a read-only mount): it can be
    /// read and synced, and nothing is written to it.
    pub read_only: bool,
}

impl RunDir {
    /// Creates a fresh run directory under `<base>/cairn/` and locks it.
    pub fn create(base: &Path, run_id: &str, started_unix_secs: i64) -> Result<RunDir> {
        let root = base.join("cairn");
        std::fs::create_dir_all(&root).map_err(|e| ClientError::io("create", &root, e))?;
        let stamp = local_stamp(started_unix_secs);
        let mut path = root.join(format!("run-{stamp}-{run_id}"));
        let mut n = 1;
        while path.exists() {
            n += 1;
            path = root.join(format!("run-{stamp}-{run_id}-{n}"));
        }
        for sub in ["", "files", "logs"] {
            let p = path.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| ClientError::io("create", &p, e))?;
        }
        let mut dir = RunDir { path, lock: None, read_only: false };
        dir.lock()?;
        Ok(dir)
    }

    /// Opens an existing run directory (for `cairn sync`), locking it.
    pub fn open(path: &Path) -> Result<RunDir> {
        if !path.join("wal").is_dir() {
            return Err(ClientError::new(ErrorKind::NotFound, format!("{} is not a cairn run directory (it has no wal/ folder)", path.display())));
        }
        let mut dir = RunDir { path: path.to_owned(), lock: None, read_only: false };
        dir.lock()?;
        Ok(dir)
    }

    fn lock(&mut self) -> Result<()> {
        let lock_path = self.path.join("run.lock");
        let file = match OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path) {
            Ok(file) => file,
            // A read-only filesystem: no process writes the run any more, but one may still
            // hold the lock (its disk failed under it), so the lock is taken when the file is
            // there.
            Err(e) if crate::core::Unwritable::of(&e) == Some(crate::core::Unwritable::ReadOnly) => {
                self.read_only = true;
                match File::open(&lock_path) {
                    Ok(file) => file,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(ClientError::io("open", &lock_path, e)),
                }
            }
            Err(e) => return Err(ClientError::io("open", &lock_path, e)),
        };
        match file.try_lock() {
            Ok(()) => {
                self.lock = Some(file);
                Ok(())
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(ClientError::new(ErrorKind::Conflict, format!("{} is in use by a running process; wait for it to finish", self.path.display())))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(ClientError::io("lock", &lock_path, e)),
        }
    }

    pub fn unlock(&mut self) {
        if let Some(file) = self.lock.take() {
            let _ = file.unlock();
        }
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.path.join("wal")
    }

    pub fn write_run_file(&self, run: &RunFile) -> Result<()> {
        write_json(&self.path.join("run.json"), run)
    }

    pub fn read_run_file(&self) -> Result<RunFile> {
        read_json(&self.path.join("run.json"))
    }

    pub fn read_upload_file(&self) -> UploadFile {
        read_json(&self.path.join("upload.json")).unwrap_or_default()
    }

    /// Records how far the upload got; a read-only directory keeps no record (a later sync sends
    /// the log again, and the server keeps only what it does not have).
    pub fn write_upload_file(&self, upload: &UploadFile) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        write_json(&self.path.join("upload.json"), upload)
    }
}

/// Appends a line to the run's `logs/debug.log`: what the client did that the user does not see
/// (where it uploads, retries, failures). Failures to write it are ignored.
pub fn debug_log(run_dir: &Path, message: &str) {
    use std::io::Write;
    let stamp = cairn_types::Timestamp(crate::core::now_micros()).to_rfc3339();
    if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(run_dir.join("logs").join("debug.log")) {
        let _ = writeln!(file, "{stamp} {message}");
    }
}

/// Writes JSON atomically (a temporary file renamed over the target).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(value).expect("serializable");
    std::fs::write(&tmp, text).map_err(|e| ClientError::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ClientError::io("write", path, e))
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| ClientError::io("read", path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::new(ErrorKind::Io, format!("{} is not readable: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_named_and_locked() {
        let base = tempfile::tempdir().unwrap();
        let dir = RunDir::create(base.path(), "abc12345", 1_730_805_006).unwrap();
        let name = dir.path.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with("run-2024110") && name.ends_with("-abc12345"), "{name}");
        assert_eq!(name.len(), "run-20241105_111006-abc12345".len());
        assert!(dir.path.join("logs").is_dir());
        let err = RunDir::open(&dir.path).err().unwrap();
        assert!(err.message.contains("no wal"), "{}", err.message);
        std::fs::create_dir(dir.path.join("wal")).unwrap();
        let err = RunDir::open(&dir.path).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Conflict);
        drop(dir);
        let reopened = RunDir::open(&base.path().join("cairn").join(&name)).unwrap();
        reopened.write_upload_file(&UploadFile { acked: 5, ..Default::default() }).unwrap();
        assert_eq!(reopened.read_upload_file().acked, 5);
    }
}
