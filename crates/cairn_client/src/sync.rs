//! `cairn sync`: uploads what a run directory holds that the server lacks, exactly once.

use std::path::Path;
use std::time::Duration;

use cairn_types::RunPath;
use cairn_types::api::ResumeMode;
use cairn_types::wire::{self, Record};

use crate::error::{ClientError, ErrorKind, Result};
use crate::http::ApiClient;
use crate::run::{run_start_continues, upsert_from_run_start};
use crate::rundir::{RunDir, UploadFile};
use crate::settings::{DEFAULT_BASE_URL, env};
use crate::upload::{MAX_BATCH_BYTES, Sender};
use crate::wal::{WalReader, scan_end};

/// Where an earlier process left a run's log: a resumed offline run continues its streams from
/// here, since the server keeps records by offset and an offset must never be used twice.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogEnd {
    pub offsets: cairn_types::api::StreamOffsets,
    pub last_step: Option<i64>,
    pub runtime_us: i64,
    pub config: cairn_types::value::Map,
}

pub(crate) fn log_end(wal_dir: &Path) -> Result<LogEnd> {
    let end = scan_end(wal_dir).map_err(|e| ClientError::io("read", wal_dir, e))?;
    let mut out = LogEnd::default();
    let mut bad = None;
    WalReader::new(wal_dir)
        .scan(0, end, |_, _, payload| {
            let record = match wire::decode_record(payload) {
                Ok(record) => record,
                Err(e) => {
                    bad = Some(e.to_string());
                    return false;
                }
            };
            let o = &mut out.offsets;
            match record {
                Record::RunStart(value) => {
                    if let Ok(request) = upsert_from_run_start(&value)
                        && let Some(cairn_types::value::Value::Map(config)) = request.config
                    {
                        out.config.extend(config);
                    }
                }
                Record::History { seq, step, runtime_us, .. } => {
                    o.history = o.history.max(seq + 1);
                    out.last_step = Some(out.last_step.map_or(step, |s| s.max(step)));
                    out.runtime_us = out.runtime_us.max(runtime_us);
                }
                Record::Config { seq, set, remove } => {
                    o.config = o.config.max(seq + 1);
                    for key in remove {
                        out.config.remove(&key);
                    }
                    out.config.extend(set);
                }
                Record::Summary { seq, .. } => o.summary = o.summary.max(seq + 1),
                Record::System { seq, .. } => o.system = o.system.max(seq + 1),
                Record::Console { seq, .. } => o.console = o.console.max(seq + 1),
                Record::Event { seq, .. } => o.events = o.events.max(seq + 1),
                Record::KeyDef { .. } => {}
            }
            true
        })
        .map_err(|e| ClientError::io("read", wal_dir, e))?;
    if let Some(e) = bad {
        return Err(ClientError::new(ErrorKind::Io, format!("{}: unreadable record: {e}", wal_dir.display())));
    }
    Ok(out)
}

/// Syncs the directories of the same run that were written before `dir`, beside it.
fn sync_earlier_siblings(dir: &Path, run_id: &str, base_url: &str, api_key: Option<String>) -> Result<()> {
    let Some(base) = dir.parent().and_then(Path::parent) else { return Ok(()) };
    let me = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let dirs = crate::rundir::dirs_of_run(base, run_id);
    let earlier: Vec<_> = dirs.iter().take_while(|d| d.canonicalize().unwrap_or_else(|_| d.to_path_buf()) != me).collect();
    if earlier.len() == dirs.len() {
        return Ok(()); // `dir` is not where the listing looked: nothing is known to be earlier
    }
    for d in earlier {
        sync_if_incomplete(d, run_id, base_url, api_key.clone())?;
    }
    Ok(())
}

fn sync_if_incomplete(dir: &Path, run_id: &str, base_url: &str, api_key: Option<String>) -> Result<()> {
    let upload = RunDir::open(dir)?.read_upload_file();
    if upload.complete {
        return Ok(());
    }
    sync_run_dir(dir, Some(base_url), api_key, &mut |_, _| {})
        .map_err(|e| ClientError::new(e.kind, format!("cannot upload what an earlier process left in {} before resuming run {run_id}: {}", dir.display(), e.message)))?;
    Ok(())
}

/// Uploads what earlier processes left unsent of run `run_id` in `base`, oldest first, so that a
/// resumed run continues after all of it.
pub(crate) fn sync_earlier_dirs(base: &Path, run_id: &str, base_url: &str, api_key: Option<String>) -> Result<()> {
    for dir in crate::rundir::dirs_of_run(base, run_id) {
        sync_if_incomplete(&dir, run_id, base_url, api_key.clone())?;
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncReport {
    pub run_path: RunPath,
    /// Records sent (records the server had already are not counted).
    pub records_sent: usize,
    pub bytes_sent: usize,
    /// Size of the run's log.
    pub log_bytes: u64,
    /// Where the log stopped short of its files, when it did: every whole record before it was
    /// sent, nothing after it.
    pub damage: Option<crate::wal::Damage>,
    /// The directory is on a read-only filesystem: it was synced, and how far is not recorded in it.
    pub read_only: bool,
}

/// Uploads a run directory. `progress(done, total)` is called as batches are acknowledged, in log
/// positions. The server keeps only what it does not have, so syncing twice changes nothing.
pub fn sync_run_dir(dir: &Path, base_url: Option<&str>, api_key: Option<String>, progress: &mut dyn FnMut(u64, u64)) -> Result<SyncReport> {
    let mut run_dir = RunDir::open(dir)?;
    let run_file = run_dir.read_run_file().ok();
    let base = base_url
        .map(str::to_owned)
        .or_else(|| std::env::var(env::BASE_URL).ok().filter(|v| !v.is_empty()))
        .or_else(|| run_file.as_ref().map(|f| f.base_url.clone()))
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
    let api_key = crate::credentials::resolve(api_key, &base);
    let wal_dir = run_dir.wal_dir();
    let end = scan_end(&wal_dir).map_err(|e| ClientError::io("read", &wal_dir, e))?;

    let mut run_start = None;
    WalReader::new(&wal_dir)
        .scan(0, end, |_, _, payload| {
            if let Ok(Record::RunStart(value)) = wire::decode_record(payload) {
                run_start = Some(value);
            }
            false
        })
        .map_err(|e| ClientError::io("read", &wal_dir, e))?;
    let Some(run_start) = run_start else {
        return Err(ClientError::new(ErrorKind::Io, format!("{} has no run in its log", dir.display())));
    };
    let mut request = upsert_from_run_start(&run_start)?;
    let continues = run_start_continues(&run_start);
    if continues {
        // The earlier processes' logs go first, when they are beside this one.
        sync_earlier_siblings(dir, &request.run_id, &base, api_key.clone())?;
    }
    // A run that the server has stays as it is (a finished run stays finished), and one it lacks
    // is created; the log's own finish record sets the final state. A log that continues an
    // earlier one resumes the run, which must exist.
    request.resume = if continues { ResumeMode::Must } else { ResumeMode::Keep };

    let api = ApiClient::new(&base, api_key, Duration::from_secs(120));
    let info = api.upsert_run(&request).map_err(|e| match e {
        crate::http::CallError::Transport(message) => ClientError::new(ErrorKind::Network, format!("cannot reach the server at {base}: {message}")),
        other if continues && other.code() == Some(cairn_types::error::ErrorCode::RunNotFound) => ClientError::new(
            ErrorKind::NotFound,
            format!(
                "{} continues run {:?} from an earlier directory that the server has not received: \
                 sync the run's earlier directories first",
                dir.display(),
                request.run_id
            ),
        ),
        other => other.into(),
    })?;
    let path = info.path();
    let mut sender = Sender::new(&wal_dir, 0, info.offsets);
    let damage = crate::wal::damage_after(&wal_dir, end).map_err(|e| ClientError::io("read", &wal_dir, e))?;
    let mut report = SyncReport { run_path: path.clone(), records_sent: 0, bytes_sent: 0, log_bytes: end, damage, read_only: run_dir.read_only };
    progress(0, end);
    // An offset gap makes the sender start over from the beginning with the server's offsets; a
    // gap that comes back without progress means the log lacks what the server needs.
    let mut gaps = 0;
    while sender.acked < end {
        let before = sender.acked;
        let batch = sender.next_batch(end, true, MAX_BATCH_BYTES).map_err(|e| ClientError::io("read", &wal_dir, e))?;
        let Some(batch) = batch else {
            if sender.acked <= before {
                break;
            }
            continue;
        };
        let mut attempt = 0;
        loop {
            match sender.send(&api, &path, &batch) {
                Ok(_) => {
                    gaps = 0;
                    break;
                }
                Err(e) if e.code() == Some(cairn_types::error::ErrorCode::OffsetGap) => {
                    gaps += 1;
                    if gaps > 2 {
                        let detail = ClientError::from(e).message;
                        return Err(ClientError::new(
                            ErrorKind::Server,
                            format!(
                                "{} continues records that the server does not have yet: sync the run's earlier \
                                 directories first ({detail})",
                                dir.display()
                            ),
                        ));
                    }
                    break;
                }
                Err(e) if e.is_retryable() && attempt < 5 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(200 << attempt));
                }
                Err(e) => return Err(e.into()),
            }
        }
        report.records_sent += batch.records;
        report.bytes_sent += batch.body.len();
        progress(sender.acked.min(end), end);
    }
    let acked = sender.acked.min(end);
    progress(acked, end);
    // Saved files, as they stand now (a crashed run's `live` and `end` files included).
    let saves = crate::files::read_saves(dir);
    if !saves.is_empty() {
        let mut tracker = crate::files::Tracker::default();
        let mut log = |m: &str| crate::rundir::debug_log(dir, &format!("sync: {m}"));
        // Retried for a minute at least: a server that died mid-upload holds the upload's claim
        // until its lease lapses, and another server waits for it.
        let started = std::time::Instant::now();
        let mut give_up = |failures: u32| failures > 5 && started.elapsed() > std::time::Duration::from_secs(60);
        crate::files::upload_due(&api, &path, &saves, &mut tracker, true, &mut log, &mut |_| {}, &mut give_up)
            .map_err(|e| ClientError::new(ErrorKind::Network, format!("cannot upload the files of {}: {e}", dir.display())))?;
    }
    let complete = acked >= end;
    run_dir.write_upload_file(&UploadFile { acked, run_path: Some(path.to_string()), complete, error: None })?;
    if !complete {
        return Err(ClientError::new(ErrorKind::Io, format!("{}: the log could not be read past byte {acked} of {end}", wal_dir.display())));
    }
    // A trial of a local sweep: the server's sweep gets it (and is made, when it is new).
    crate::sweep::register(&api, &path, dir)?;
    run_dir.unlock();
    Ok(report)
}
