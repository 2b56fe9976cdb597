//! Run files: `run.save(glob, policy)`, and the files the client writes itself (`output.log`,
//! `diff.patch`, `requirements.txt`).
//!
//! What to upload is recorded in the run directory (`saves.jsonl`, one line per `save`), so
//! `cairn sync` uploads the same files after a crash. Uploads are content-addressed and
//! resumable: the client hashes the file as a stream, asks the server how much of that content
//! it holds (nothing to send when another run saved it before), and sends the rest in parts of
//! [`PART_BYTES`], each streamed from disk. A broken connection or a restarted server costs at
//! most the part in flight: the next attempt continues from what the server holds. Memory stays
//! flat whatever the file's size.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cairn_types::RunPath;
use cairn_types::error::ErrorCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ClientError, ErrorKind, Result};
use crate::http::{ApiClient, CallError};

/// Each upload request carries at most this much: a request's timeout bounds a part, not a file.
pub const PART_BYTES: u64 = 64 << 20;

/// When a saved file is uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Now, and again whenever it changes, and at the end.
    Live,
    /// Once, now.
    Now,
    /// When the run ends.
    End,
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy> {
        match text {
            "live" => Ok(Policy::Live),
            "now" => Ok(Policy::Now),
            "end" => Ok(Policy::End),
            _ => Err(ClientError::new(ErrorKind::InvalidValue, format!("policy {text:?} must be \"live\", \"now\" or \"end\""))),
        }
    }
}

/// One `save`: a glob (absolute), the folder that names are relative to, and the policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Save {
    pub glob: String,
    pub base: PathBuf,
    pub policy: Policy,
    /// `glob` is a path, not a pattern (the client's own files, whose folders may hold `[`).
    #[serde(default)]
    pub literal: bool,
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

impl Save {
    /// `glob` relative to the working directory; `base` defaults to the folder before the first
    /// wildcard, so `save("ckpt/*.pt")` names files `a.pt`, and `save("ckpt/*.pt", base=".")`
    /// names them `ckpt/a.pt`.
    pub fn new(glob: &str, base: Option<&Path>, policy: Policy) -> Result<Save> {
        if glob.is_empty() {
            return Err(ClientError::new(ErrorKind::InvalidValue, "save needs a path or glob, not \"\""));
        }
        let cwd = std::env::current_dir().map_err(|e| ClientError::io("read the working directory", Path::new("."), e))?;
        let absolute = if Path::new(glob).is_absolute() { PathBuf::from(glob) } else { cwd.join(glob) };
        let absolute = absolute.to_string_lossy().into_owned();
        // A path that names an existing file is that file, even with `[` in a folder's name.
        let literal = Path::new(&absolute).is_file();
        if !literal {
            glob::Pattern::new(&absolute).map_err(|e| ClientError::new(ErrorKind::InvalidValue, format!("glob {glob:?} is invalid: {e}")))?;
        }
        let base = match base {
            Some(b) if b.is_absolute() => b.to_owned(),
            Some(b) => cwd.join(b),
            None => {
                let mut prefix = PathBuf::new();
                for part in Path::new(&absolute).components() {
                    if has_wildcard(&part.as_os_str().to_string_lossy()) {
                        break;
                    }
                    prefix.push(part);
                }
                if prefix.as_os_str() == absolute.as_str() { prefix.parent().map(Path::to_owned).unwrap_or(prefix) } else { prefix }
            }
        };
        if !Path::new(&absolute).starts_with(&base) {
            return Err(ClientError::new(ErrorKind::InvalidValue, format!("{glob:?} is not inside base path {}: file names are relative to it", base.display())));
        }
        Ok(Save { glob: absolute, base, policy, literal })
    }

    /// One file by its path, taken as it is (no pattern), named relative to `base`.
    pub fn literal(path: &Path, base: &Path, policy: Policy) -> Result<Save> {
        if !path.starts_with(base) {
            return Err(ClientError::new(ErrorKind::InvalidValue, format!("{} is not inside base path {}: file names are relative to it", path.display(), base.display())));
        }
        Ok(Save { glob: path.to_string_lossy().into_owned(), base: base.to_owned(), policy, literal: true })
    }

    /// The files it matches now: `(name in the run, path)`.
    pub fn matches(&self) -> Vec<(String, PathBuf)> {
        let paths: Vec<PathBuf> = if self.literal {
            vec![PathBuf::from(&self.glob)]
        } else {
            match glob::glob(&self.glob) {
                Ok(paths) => paths.filter_map(|p| p.ok()).collect(),
                Err(_) => return Vec::new(),
            }
        };
        paths
            .into_iter()
            .filter(|p| p.is_file())
            .filter_map(|p| {
                let name = p.strip_prefix(&self.base).ok()?.to_string_lossy().replace('\\', "/");
                (!name.is_empty()).then_some((name, p))
            })
            .collect()
    }
}

/// `saves.jsonl` in the run directory.
pub fn saves_path(run_dir: &Path) -> PathBuf {
    run_dir.join("saves.jsonl")
}

pub fn record_save(run_dir: &Path, save: &Save) -> Result<()> {
    let path = saves_path(run_dir);
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| ClientError::io("open", &path, e))?;
    let mut line = serde_json::to_vec(save).expect("saves serialize");
    line.push(b'\n');
    file.write_all(&line).map_err(|e| ClientError::io("write", &path, e))
}

pub fn read_saves(run_dir: &Path) -> Vec<Save> {
    let Ok(file) = File::open(saves_path(run_dir)) else { return Vec::new() };
    std::io::BufReader::new(file).lines().map_while(|l| l.ok()).filter_map(|l| serde_json::from_str(&l).ok()).collect()
}

/// Hex SHA-256 and size of a file, read as a stream.
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    hash_file_with(path, &mut |_| {})
}

/// Bytes between two progress reports, while hashing or sending: `finish` waits on an upload as
/// long as it reports progress, so a big file must report often.
const PROGRESS_BYTES: u64 = 8 << 20;

/// [`hash_file`], calling `progress(bytes read)` every [`PROGRESS_BYTES`].
pub fn hash_file_with(path: &Path, progress: &mut dyn FnMut(u64)) -> std::io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    let mut reported = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
        if size - reported >= PROGRESS_BYTES {
            reported = size;
            progress(size);
        }
    }
    Ok((cairn_types::hex(&hasher.finalize()), size))
}

/// A reader that reports how much went through it, every [`PROGRESS_BYTES`].
struct Reporting<'a, R> {
    inner: R,
    read: u64,
    reported: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for Reporting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read - self.reported >= PROGRESS_BYTES {
            self.reported = self.read;
            (self.progress)(self.read);
        }
        Ok(n)
    }
}

/// Why an upload stopped.
#[derive(Debug)]
pub enum UploadError {
    /// Worth trying again later (the server is away).
    Retry(String),
    /// Will not work as it is (the file is unreadable, the server refused it).
    Fatal(String),
}

impl std::fmt::Display for UploadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadError::Retry(m) | UploadError::Fatal(m) => f.write_str(m),
        }
    }
}

fn call_error(what: &str, e: CallError) -> UploadError {
    if e.is_retryable() || matches!(e.code(), Some(ErrorCode::UploadInProgress | ErrorCode::UploadOffset)) {
        UploadError::Retry(format!("{what}: {e}"))
    } else {
        UploadError::Fatal(format!("{what}: {e}"))
    }
}

/// What one upload did, for tests and the debug log.
#[derive(Debug, Clone, PartialEq)]
pub struct Uploaded {
    pub sha256: String,
    pub size: u64,
    /// Bytes this call sent (less than `size` when the server held some already).
    pub sent: u64,
    /// Where this call started: non-zero when it resumed an earlier attempt.
    pub resumed_from: u64,
}

/// Uploads `source` as the run's file `name`. `progress` is called after each part.
/// `hashed`: the file's SHA-256 and size when known (a retry does not read it twice). `base`:
/// the content of the version uploaded before (a big file then goes in chunks; see
/// [`send_content`]).
pub fn upload(
    api: &ApiClient,
    run: &RunPath,
    name: &str,
    source: &Path,
    hashed: Option<(String, u64)>,
    base: Option<&str>,
    progress: &mut dyn FnMut(u64),
) -> std::result::Result<Uploaded, UploadError> {
    let (sha256, size) = match hashed {
        Some(h) => h,
        None => hash_file(source).map_err(|e| UploadError::Fatal(format!("cannot read {}: {e}", source.display())))?,
    };
    let (held, mut sent, resumed_from) = send_content(api, source, &sha256, size, base, progress)?;
    match api.link_file(run, name, &sha256) {
        Ok(_) => {}
        // The server holds the content, but only in runs this caller cannot read: knowing the
        // hash is not enough, so the bytes go along.
        Err(e) if e.code() == Some(ErrorCode::Forbidden) && held => {
            let mut file = File::open(source).map_err(|e| UploadError::Fatal(format!("cannot read {}: {e}", source.display())))?;
            api.put_file(run, name, &mut file, size).map_err(|e| call_error(&format!("uploading {}", source.display()), e))?;
            sent = size;
            progress(sent);
        }
        // The content was removed between the two requests (the last run naming it was purged):
        // the next attempt sends it again.
        Err(e) if e.code() == Some(ErrorCode::FileNotFound) => {
            return Err(UploadError::Retry(format!("naming {name}: its content went away; sending it again")));
        }
        Err(e) => return Err(call_error(&format!("naming {name}"), e)),
    }
    Ok(Uploaded { sha256, size, sent, resumed_from })
}

/// Sends the content of `source` (`sha256`, `size`) to the server's blob store, resuming from
/// what it holds. Returns whether the server held it whole already, the bytes sent, and where
/// this call started.
///
/// `base`: an earlier version the server holds (of the same checkpoint, say). A big content
/// then goes in chunks, of which the server has most ([`crate::chunks`]); otherwise it goes
/// whole, as fast as the disk and the network allow.
pub fn send_content(
    api: &ApiClient,
    source: &Path,
    sha256: &str,
    size: u64,
    base: Option<&str>,
    progress: &mut dyn FnMut(u64),
) -> std::result::Result<(bool, u64, u64), UploadError> {
    let status = api.upload_status(sha256).map_err(|e| call_error("asking what the server holds", e))?;
    // An upload begun whole goes on whole.
    if base.is_some_and(|b| b != sha256) && !status.complete && status.received == 0 && size >= cairn_types::api::CHUNKED_MIN {
        let report = crate::chunks::send_chunked(api, source, sha256, size, base, progress)?;
        return Ok((false, report.sent_bytes, size - report.sent_bytes));
    }
    let resumed_from = if status.complete { size } else { status.received };
    let mut received = resumed_from;
    let mut sent = 0;
    if !status.complete {
        let mut file = File::open(source).map_err(|e| UploadError::Fatal(format!("cannot read {}: {e}", source.display())))?;
        loop {
            let length = PART_BYTES.min(size - received);
            file.seek(SeekFrom::Start(received)).map_err(|e| UploadError::Fatal(format!("cannot read {}: {e}", source.display())))?;
            let mut part = Reporting { inner: (&mut file).take(length), read: 0, reported: 0, progress: &mut *progress };
            match api.upload_part(sha256, received, size, &mut part, length) {
                Ok(status) => {
                    sent += status.received.saturating_sub(received);
                    received = status.received;
                    progress(sent);
                    if status.complete {
                        break;
                    }
                }
                Err(CallError::Api { error, .. }) if error.code == ErrorCode::ContentMismatch => {
                    // The file changed while it was read: a later attempt hashes it again.
                    return Err(UploadError::Retry(format!("{} changed during its upload", source.display())));
                }
                Err(e) => return Err(call_error(&format!("uploading {}", source.display()), e)),
            }
        }
    }
    Ok((status.complete, sent, resumed_from))
}

/// The state of one file: the version uploaded last, by size and modification time.
type Version = (u64, Option<SystemTime>);

fn version_of(path: &Path) -> Option<Version> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()))
}

/// Decides which files to upload, pass after pass. The caller uploads.
#[derive(Default)]
pub struct Tracker {
    uploaded: BTreeMap<String, Version>,
    /// The content each file had when it was uploaded last.
    contents: BTreeMap<String, String>,
    /// `now` files seen once are not uploaded again.
    done_now: std::collections::BTreeSet<String>,
}

impl Tracker {
    /// The files due: `(name, path)`. `end`: the run is ending, so `end` and changed `live`
    /// files are due too.
    pub fn due(&mut self, saves: &[Save], end: bool) -> Vec<(String, PathBuf, Version)> {
        let mut due: BTreeMap<String, (PathBuf, Version)> = BTreeMap::new();
        for save in saves {
            for (name, path) in save.matches() {
                let Some(version) = version_of(&path) else { continue };
                let changed = self.uploaded.get(&name) != Some(&version);
                let wanted = match save.policy {
                    Policy::Live => changed,
                    Policy::Now => !self.done_now.contains(&name),
                    Policy::End => end && changed,
                };
                if wanted {
                    due.insert(name, (path, version));
                }
            }
        }
        due.into_iter().map(|(name, (path, version))| (name, path, version)).collect()
    }

    pub fn mark(&mut self, name: &str, version: Version) {
        self.uploaded.insert(name.to_owned(), version);
        self.done_now.insert(name.to_owned());
    }
}

/// Streams `fetch`'s bytes into a file beside `target`, hashing them as they come (`progress`
/// hears of each write), checks the SHA-256 against `want` (`mismatch` makes the error from
/// what came), and renames it over `target`: a cut-off or damaged download leaves nothing under
/// the real name. Returns the bytes written.
pub fn download_to(
    target: &Path,
    want: Option<&str>,
    progress: &dyn Fn(u64),
    fetch: impl FnOnce(&mut dyn Write) -> std::result::Result<u64, CallError>,
    mismatch: impl FnOnce(&str) -> ClientError,
) -> Result<u64> {
    struct Hashing<'a, W> {
        inner: W,
        hasher: Sha256,
        progress: &'a dyn Fn(u64),
    }
    impl<W: Write> Write for Hashing<'_, W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.hasher.update(&buf[..n]);
            (self.progress)(n as u64);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| ClientError::io("create", dir, e))?;
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.part-{}-{:x}", std::process::id(), fastrand::u64(..)));
    let file = File::create(&tmp).map_err(|e| ClientError::io("write", &tmp, e))?;
    let mut writer = Hashing { inner: std::io::BufWriter::new(file), hasher: Sha256::new(), progress };
    let written = fetch(&mut writer).map_err(ClientError::from).and_then(|n| writer.inner.flush().map(|_| n).map_err(|e| ClientError::io("write", &tmp, e)));
    let got = cairn_types::hex(&writer.hasher.finalize());
    let written = match written {
        Ok(n) if want.is_none_or(|w| w == got) => n,
        Ok(_) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(mismatch(&got));
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, target).map_err(|e| ClientError::io("write", target, e))?;
    Ok(written)
}

/// Downloads a run file to `target`, checked against `sha256` when given.
pub fn download_run_file(api: &ApiClient, run: &RunPath, name: &str, target: &Path, sha256: Option<&str>) -> Result<u64> {
    download_to(
        target,
        sha256,
        &|_| {},
        |out| api.download_run_file(run, name, out),
        |got| ClientError::new(ErrorKind::Io, format!("{name}: the server sent content with sha256 {got}, not {}", sha256.unwrap_or_default())),
    )
}

/// One pass: uploads what is due, retrying a broken upload (it resumes) until `give_up` says so.
pub fn upload_due(
    api: &ApiClient,
    run: &RunPath,
    saves: &[Save],
    tracker: &mut Tracker,
    end: bool,
    log: &mut dyn FnMut(&str),
    progress: &mut dyn FnMut(u64),
    give_up: &mut dyn FnMut(u32) -> bool,
) -> std::result::Result<usize, UploadError> {
    let mut count = 0;
    for (name, path, version) in tracker.due(saves, end) {
        let base = tracker.contents.get(&name).cloned();
        let mut failures = 0u32;
        let mut hashed: Option<(String, u64)> = None;
        loop {
            if hashed.is_none() {
                match hash_file_with(&path, progress) {
                    Ok(h) => hashed = Some(h),
                    Err(e) => {
                        log(&format!("file {name} not uploaded: cannot read {}: {e}", path.display()));
                        tracker.mark(&name, version);
                        break;
                    }
                }
            }
            match upload(api, run, &name, &path, hashed.clone(), base.as_deref(), progress) {
                Ok(done) => {
                    if done.resumed_from > 0 && done.resumed_from < done.size {
                        log(&format!("file {name}: resumed at byte {} of {}", done.resumed_from, done.size));
                    }
                    log(&format!("file {name}: {} bytes stored ({} sent), sha256 {}", done.size, done.sent, done.sha256));
                    tracker.mark(&name, version);
                    tracker.contents.insert(name.clone(), done.sha256.clone());
                    count += 1;
                    break;
                }
                Err(UploadError::Fatal(message)) => {
                    log(&format!("file {name} not uploaded: {message}"));
                    tracker.mark(&name, version);
                    break;
                }
                Err(UploadError::Retry(message)) => {
                    if message.ends_with("changed during its upload") {
                        hashed = None;
                    }
                    failures += 1;
                    if failures.is_power_of_two() {
                        log(&format!("file {name}: {message}; retrying ({failures} failures)"));
                    }
                    if give_up(failures) {
                        return Err(UploadError::Retry(message));
                    }
                    std::thread::sleep(Duration::from_millis((100u64 << failures.min(6)).min(5_000)));
                }
            }
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_relative_to_the_base() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ckpt/sub")).unwrap();
        std::fs::write(dir.path().join("ckpt/a.pt"), b"a").unwrap();
        std::fs::write(dir.path().join("ckpt/sub/b.pt"), b"b").unwrap();
        let glob = format!("{}/ckpt/*.pt", dir.path().display());
        let save = Save::new(&glob, None, Policy::Now).unwrap();
        assert_eq!(save.matches().into_iter().map(|m| m.0).collect::<Vec<_>>(), ["a.pt"]);
        let save = Save::new(&format!("{}/ckpt/**/*.pt", dir.path().display()), Some(dir.path()), Policy::Now).unwrap();
        let mut names: Vec<_> = save.matches().into_iter().map(|m| m.0).collect();
        names.sort();
        assert_eq!(names, ["ckpt/a.pt", "ckpt/sub/b.pt"]);
        let single = Save::new(&format!("{}/ckpt/a.pt", dir.path().display()), None, Policy::End).unwrap();
        assert_eq!(single.matches()[0].0, "a.pt");
        let err = Save::new(&glob, Some(&dir.path().join("elsewhere")), Policy::Now).unwrap_err();
        assert!(err.message.contains("not inside"), "{}", err.message);
        assert!(Policy::parse("sometimes").unwrap_err().message.contains("sometimes"));
    }

    #[test]
    fn literal_paths_may_hold_glob_characters() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("exp[lr=0.1]");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("output.log"), b"x").unwrap();
        let save = Save::literal(&folder.join("output.log"), &folder, Policy::End).unwrap();
        assert_eq!(save.matches().into_iter().map(|m| m.0).collect::<Vec<_>>(), ["output.log"]);
        assert!(Save::literal(&folder.join("output.log"), &dir.path().join("elsewhere"), Policy::End).is_err());
    }

    #[test]
    fn the_tracker_follows_the_policies() {
        let dir = tempfile::tempdir().unwrap();
        let path = |n: &str| dir.path().join(n);
        for n in ["live.txt", "now.txt", "end.txt"] {
            std::fs::write(path(n), n).unwrap();
        }
        let saves: Vec<Save> = [("live.txt", Policy::Live), ("now.txt", Policy::Now), ("end.txt", Policy::End)]
            .iter()
            .map(|(n, p)| Save::new(&path(n).to_string_lossy(), None, *p).unwrap())
            .collect();
        let mut tracker = Tracker::default();
        let names = |due: Vec<(String, PathBuf, Version)>, tracker: &mut Tracker| {
            due.into_iter()
                .map(|(n, _, v)| {
                    tracker.mark(&n, v);
                    n
                })
                .collect::<Vec<_>>()
        };
        let first = tracker.due(&saves, false);
        assert_eq!(names(first, &mut tracker), ["live.txt", "now.txt"]);
        assert!(tracker.due(&saves, false).is_empty());
        std::fs::write(path("live.txt"), "changed, longer").unwrap();
        std::fs::write(path("now.txt"), "changed, longer").unwrap();
        let second = tracker.due(&saves, false);
        assert_eq!(names(second, &mut tracker), ["live.txt"]);
        let last = tracker.due(&saves, true);
        assert_eq!(names(last, &mut tracker), ["end.txt"]);
    }

    #[test]
    fn saves_are_recorded_in_the_run_directory() {
        let dir = tempfile::tempdir().unwrap();
        let save = Save::new(&dir.path().join("x").to_string_lossy(), None, Policy::Live).unwrap();
        record_save(dir.path(), &save).unwrap();
        record_save(dir.path(), &save).unwrap();
        assert_eq!(read_saves(dir.path()), [save.clone(), save]);
    }
}
