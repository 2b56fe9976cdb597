//! Artifacts from the client: a draft of files, directories and references, logged as a version
//! (contents hashed and uploaded in parallel, resumably, each once), used by a run, and
//! downloaded with every file's digest checked (files already there with the same content are
//! kept).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cairn_types::artifacts::{ArtifactInfo, CommitArtifact, ManifestEntry, validate_entries};
use cairn_types::value::Map;

use crate::error::{ClientError, ErrorKind, Result};
use crate::files::{UploadError, hash_file, send_content};
use crate::http::ApiClient;

/// Bytes of small contents per batch request.
const BATCH_BYTES: u64 = 8 << 20;

/// An artifact being put together before it is logged.
#[derive(Debug, Clone, Default)]
pub struct ArtifactDraft {
    pub name: String,
    pub kind: String,
    pub description: Option<String>,
    pub metadata: Map,
    /// `(path in the artifact, file on disk)`.
    pub files: Vec<(String, PathBuf)>,
    /// Entries that point elsewhere; not uploaded.
    pub references: Vec<ManifestEntry>,
}

fn io(path: &Path, e: std::io::Error) -> ClientError {
    ClientError::new(ErrorKind::Io, format!("cannot read {}: {e}", path.display()))
}

impl ArtifactDraft {
    pub fn new(name: &str, kind: &str) -> Result<ArtifactDraft> {
        cairn_types::artifacts::validate_artifact_name(name).map_err(ClientError::from)?;
        Ok(ArtifactDraft { name: name.to_owned(), kind: kind.to_owned(), ..Default::default() })
    }

    /// Adds a file as `name` (its file name by default).
    pub fn add_file(&mut self, path: &Path, name: Option<&str>) -> Result<()> {
        if !path.is_file() {
            return Err(ClientError::new(ErrorKind::InvalidValue, format!("{} is not a file", path.display())));
        }
        let name = match name {
            Some(n) => n.to_owned(),
            None => path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        self.files.push((name, path.to_owned()));
        Ok(())
    }

    /// Adds every file under `dir`, at their relative paths (under `prefix`, if given).
    pub fn add_dir(&mut self, dir: &Path, prefix: Option<&str>) -> Result<()> {
        if !dir.is_dir() {
            return Err(ClientError::new(ErrorKind::InvalidValue, format!("{} is not a directory", dir.display())));
        }
        let mut stack = vec![dir.to_owned()];
        let mut found = Vec::new();
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).map_err(|e| io(&d, e))? {
                let entry = entry.map_err(|e| io(&d, e))?;
                let path = entry.path();
                let kind = entry.file_type().map_err(|e| io(&path, e))?;
                if kind.is_dir() {
                    stack.push(path);
                } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
                    let rel = path.strip_prefix(dir).expect("under the directory").components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/");
                    let name = match prefix.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
                        Some(p) => format!("{p}/{rel}"),
                        None => rel,
                    };
                    found.push((name, path));
                }
            }
        }
        found.sort();
        self.files.extend(found);
        Ok(())
    }

    /// Adds a reference: recorded with its digest and size, never uploaded.
    pub fn add_reference(&mut self, entry: ManifestEntry) {
        self.references.push(entry);
    }
}

/// How far a log or a download is, for a progress bar: the phase, and bytes done of the total.
/// Updated by the worker threads; read by whoever draws it.
#[derive(Debug, Default)]
pub struct Progress {
    pub phase: std::sync::Mutex<&'static str>,
    pub done: std::sync::atomic::AtomicU64,
    pub total: std::sync::atomic::AtomicU64,
}

impl Progress {
    fn start(&self, phase: &'static str, total: u64) {
        *self.phase.lock().expect("progress") = phase;
        self.done.store(0, std::sync::atomic::Ordering::Relaxed);
        self.total.store(total, std::sync::atomic::Ordering::Relaxed);
    }

    fn add(&self, bytes: u64) {
        self.done.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Runs `work` on every item with up to `threads` threads; the results in order, or the first
/// error (the other threads stop taking items then).
fn parallel<T: Sync, R: Send>(items: &[T], threads: usize, work: impl Fn(&T) -> Result<R> + Sync) -> Result<Vec<R>> {
    type Slot<R> = std::sync::Mutex<Option<R>>;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failure: Slot<ClientError> = std::sync::Mutex::new(None);
    let results: Vec<Slot<R>> = items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.min(items.len()).max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    if failure.lock().expect("failure slot").is_some() {
                        break;
                    }
                    match work(item) {
                        Ok(r) => *results[i].lock().expect("result slot") = Some(r),
                        Err(e) => {
                            *failure.lock().expect("failure slot") = Some(e);
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().expect("failure slot") {
        return Err(e);
    }
    Ok(results.into_iter().map(|r| r.into_inner().expect("result slot").expect("every item done")).collect())
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get()).clamp(4, 16)
}

/// Logs `draft` as a version of `entity/project/name`: hashes its files, uploads each content
/// the server lacks (resuming a cut-off upload), then commits the manifest. `run_id` is the
/// run of this project that logs it.
pub fn log_artifact(api: &ApiClient, entity: &str, project: &str, run_id: Option<&str>, draft: &ArtifactDraft, aliases: &[String]) -> Result<ArtifactInfo> {
    log_artifact_with(api, entity, project, run_id, draft, aliases, &Progress::default())
}

/// [`log_artifact`], reporting to `progress` (hashing, then uploading).
pub fn log_artifact_with(
    api: &ApiClient,
    entity: &str,
    project: &str,
    run_id: Option<&str>,
    draft: &ArtifactDraft,
    aliases: &[String],
    progress: &Progress,
) -> Result<ArtifactInfo> {
    let total: u64 = draft.files.iter().map(|(_, p)| std::fs::metadata(p).map_or(0, |m| m.len())).sum();
    progress.start("hashing", total);
    let hashes = parallel(&draft.files, threads(), |(_, path)| {
        let mut last = 0;
        let hashed = crate::files::hash_file_with(path, &mut |n| {
            progress.add(n - last);
            last = n;
        })
        .map_err(|e| io(path, e))?;
        progress.add(hashed.1 - last);
        Ok(hashed)
    })?;
    let mut entries: Vec<ManifestEntry> =
        draft.files.iter().zip(&hashes).map(|((name, _), (sha, size))| ManifestEntry { path: name.clone(), digest: sha.clone(), size: *size, reference: None }).collect();
    entries.extend(draft.references.iter().cloned());
    validate_entries(&entries).map_err(ClientError::from)?;
    // Each content once, in parallel.
    let mut unique: Vec<(String, u64, PathBuf)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for ((_, path), (sha, size)) in draft.files.iter().zip(&hashes) {
        if seen.insert(sha.clone()) {
            unique.push((sha.clone(), *size, path.clone()));
        }
    }
    progress.start("uploading", unique.iter().map(|(_, size, _)| size).sum());
    // Small contents go many to a request (one round trip and one check each, not two); big
    // ones take the resumable path, a part at a time.
    let (small, big): (Vec<_>, Vec<_>) = unique.into_iter().partition(|(_, size, _)| *size <= cairn_types::api::UPLOAD_BATCH_FILE_MAX);
    let mut batches: Vec<Vec<(String, PathBuf)>> = vec![Vec::new()];
    let mut bytes = 0u64;
    for (sha, size, path) in small {
        if bytes + size > BATCH_BYTES && !batches.last().expect("a batch").is_empty() {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        batches.last_mut().expect("a batch").push((sha, path));
    }
    batches.retain(|b| !b.is_empty());
    parallel(&batches, threads(), |batch| {
        let mut contents = Vec::with_capacity(batch.len());
        for (sha, path) in batch {
            contents.push((sha.as_str(), std::fs::read(path).map_err(|e| io(path, e))?));
        }
        let framed: Vec<(&str, &[u8])> = contents.iter().map(|(sha, b)| (*sha, b.as_slice())).collect();
        let body = cairn_types::api::encode_upload_batch(&framed);
        match retrying(|| api.upload_batch(&body)) {
            Ok(_) => {}
            Err(e) if e.message.contains("claims SHA-256") => {
                return Err(ClientError::new(ErrorKind::InvalidValue, format!("a file changed while it was logged: {}", e.message)));
            }
            Err(e) => return Err(e),
        }
        progress.add(contents.iter().map(|(_, b)| b.len() as u64).sum());
        Ok(())
    })?;
    // The collection's latest version likely shares most bytes of its big files with these (the
    // checkpoint before): a file goes in chunks, and only what changed is sent, when that version
    // has a big file of the same path (or else any big file).
    let before: Vec<ManifestEntry> = if big.is_empty() {
        Vec::new()
    } else {
        api.artifact_manifest(entity, project, &draft.name, "latest")
            .map(|m| m.into_iter().filter(|e| e.stored() && e.size >= cairn_types::api::CHUNKED_MIN).collect())
            .unwrap_or_default()
    };
    let path_of: HashMap<&str, &str> = draft.files.iter().zip(&hashes).map(|((name, _), (sha, _))| (sha.as_str(), name.as_str())).collect();
    let base_of = |sha: &str| -> Option<&str> {
        let name = path_of.get(sha)?;
        before.iter().find(|e| e.path == *name).or(before.first()).map(|e| e.digest.as_str())
    };
    let held = parallel(&big, threads(), |(sha, size, path)| {
        let (since, mut attempt) = (std::time::Instant::now(), 0);
        loop {
            let mut last = 0;
            let sent = send_content(api, path, sha, *size, base_of(sha), &mut |n| {
                progress.add(n.saturating_sub(last));
                last = n;
            });
            match sent {
                Ok((held, sent, _)) => {
                    // What the server held already counts as done.
                    progress.add(size.saturating_sub(last.max(sent)));
                    return Ok(held);
                }
                // The server is away or busy: back off, then resume where it stopped.
                Err(UploadError::Retry(_)) if back_off(since, &mut attempt) => {}
                Err(UploadError::Retry(m) | UploadError::Fatal(m)) => return Err(ClientError::new(ErrorKind::Network, m)),
            }
        }
    })?;
    let request = CommitArtifact {
        name: draft.name.clone(),
        kind: draft.kind.clone(),
        description: draft.description.clone(),
        metadata: draft.metadata.clone(),
        aliases: aliases.to_vec(),
        entries,
        run_id: run_id.map(str::to_owned),
    };
    // Committing is idempotent (the same manifest is the same version): a server that went away
    // meanwhile (restarted, failed over) is asked again.
    match retrying(|| api.commit_artifact(entity, project, &request)) {
        // The server held some big contents already, but only where this caller cannot read them:
        // knowing a hash is not enough, so their bytes go after all (as chunks, which the server
        // checks against the content), and the commit is asked again.
        Err(e) if e.kind == ErrorKind::Forbidden && e.message.contains("is in nothing you can read") => {
            let again: Vec<&(String, u64, PathBuf)> = big.iter().zip(&held).filter(|(_, held)| **held).map(|(b, _)| b).collect();
            if again.is_empty() {
                return Err(e);
            }
            parallel(&again, threads(), |(sha, size, path)| {
                crate::chunks::send_chunked(api, path, sha, *size, None, &mut |_| {}).map_err(|e| match e {
                    UploadError::Retry(m) | UploadError::Fatal(m) => ClientError::new(ErrorKind::Network, m),
                })
            })?;
            retrying(|| api.commit_artifact(entity, project, &request))
        }
        other => other,
    }
}

/// How long a call is tried again while the server cannot be reached: longer than a restart,
/// and than the claim a killed server held on an upload (15 s).
const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Backs off after failed attempt `attempt`; false once [`RETRY_FOR`] has passed since `since`.
fn back_off(since: std::time::Instant, attempt: &mut u32) -> bool {
    if since.elapsed() >= RETRY_FOR {
        return false;
    }
    *attempt += 1;
    std::thread::sleep(std::time::Duration::from_millis((200u64 << (*attempt).min(5)).min(5_000)));
    true
}

/// A call, again after a pause while the server cannot be reached (for up to [`RETRY_FOR`]).
fn retrying<T>(mut call: impl FnMut() -> crate::http::CallResult<T>) -> Result<T> {
    let (since, mut attempt) = (std::time::Instant::now(), 0);
    loop {
        match call() {
            Err(e) if e.is_retryable() && back_off(since, &mut attempt) => {}
            other => return other.map_err(ClientError::from),
        }
    }
}

/// Downloads the stored files of a version into `root`, in parallel. A file already there with
/// the same content is kept; every file written is checked against its digest (a content that
/// does not match is an error, and the bad file is not left behind). Returns the files of the
/// manifest, references included, as `(path, local file or None for references)`.
pub fn download_artifact(api: &ApiClient, info: &ArtifactInfo, root: &Path) -> Result<Vec<(String, Option<PathBuf>)>> {
    download_artifact_with(api, info, root, &Progress::default())
}

/// [`download_artifact`], reporting to `progress`.
pub fn download_artifact_with(api: &ApiClient, info: &ArtifactInfo, root: &Path, progress: &Progress) -> Result<Vec<(String, Option<PathBuf>)>> {
    let manifest = retrying(|| api.artifact_manifest(&info.entity, &info.project, &info.name, &info.version))?;
    std::fs::create_dir_all(root).map_err(|e| ClientError::io("create", root, e))?;
    let stored: Vec<&ManifestEntry> = manifest.iter().filter(|e| e.stored()).collect();
    progress.start("downloading", stored.iter().map(|e| e.size).sum());
    parallel(&stored, threads(), |entry| {
        // A broken connection costs the file's attempt, not the download (a damaged content
        // is no network error: it is not tried again).
        let (since, mut attempt) = (std::time::Instant::now(), 0);
        loop {
            match download_one(api, info, entry, root, progress) {
                Err(e) if e.kind == ErrorKind::Network && back_off(since, &mut attempt) => {}
                other => return other,
            }
        }
    })?;
    Ok(manifest
        .into_iter()
        .map(|e| {
            let local = e.stored().then(|| root.join(&e.path));
            (e.path, local)
        })
        .collect())
}

fn download_one(api: &ApiClient, info: &ArtifactInfo, entry: &ManifestEntry, root: &Path, progress: &Progress) -> Result<()> {
    let target = root.join(&entry.path);
    if let Ok(meta) = std::fs::metadata(&target)
        && meta.len() == entry.size
        && hash_file(&target).is_ok_and(|(sha, _)| sha == entry.digest)
    {
        progress.add(entry.size);
        return Ok(());
    }
    // Written beside the target, then renamed over it: a cut-off download leaves no half file
    // under the real name.
    crate::files::download_to(
        &target,
        Some(&entry.digest),
        &|n| progress.add(n),
        |out| api.download_artifact_file(&info.entity, &info.project, &info.name, &info.version, &entry.path, out),
        |got| {
            ClientError::new(
                ErrorKind::Server,
                format!(
                    "{}: the server sent content with SHA-256 {got}, but {} lists {}; the file is damaged in the server's store, and was not written",
                    entry.path,
                    info.qualified(),
                    entry.digest
                ),
            )
        },
    )?;
    Ok(())
}
