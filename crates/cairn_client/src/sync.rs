//! `cairn sync`: uploads what a run directory holds that the server lacks, exactly once.

use std::path::Path;
use std::time::Duration;

use cairn_types::RunPath;
use cairn_types::api::ResumeMode;
use cairn_types::wire::{self, Record};

use crate::error::{ClientError, ErrorKind, Result};
use crate::http::ApiClient;
use crate::rundir::{RunDir, UploadFile};
use crate::run::upsert_from_run_start;
use crate::settings::{DEFAULT_BASE_URL, env};
use crate::upload::{MAX_BATCH_BYTES, Sender};
use crate::wal::{WalReader, scan_end};

#[derive(Debug, Clone, PartialEq)]
pub struct SyncReport {
    pub run_path: RunPath,
    /// Records sent (records the server had already are not counted).
    pub records_sent: usize,
    pub bytes_sent: usize,
    /// Size of the run's log.
    pub log_bytes: u64,
}

/// Uploads a run directory. `progress(done, total)` is called as batches are acknowledged, in log
/// positions. The server keeps only what it does not have, so syncing twice changes nothing.
pub fn sync_run_dir(
    dir: &Path,
    base_url: Option<&str>,
    api_key: Option<String>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SyncReport> {
    let mut run_dir = RunDir::open(dir)?;
    let run_file = run_dir.read_run_file().ok();
    let base = base_url
        .map(str::to_owned)
        .or_else(|| std::env::var(env::BASE_URL).ok().filter(|v| !v.is_empty()))
        .or_else(|| run_file.as_ref().map(|f| f.base_url.clone()))
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
    let api_key = api_key.or_else(|| std::env::var(env::API_KEY).ok().filter(|v| !v.is_empty()));
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
    request.resume = ResumeMode::Allow;

    let api = ApiClient::new(&base, api_key, Duration::from_secs(120));
    let info = api.upsert_run(&request).map_err(|e| match e {
        crate::http::CallError::Transport(message) => {
            ClientError::new(ErrorKind::Network, format!("cannot reach the server at {base}: {message}"))
        }
        other => other.into(),
    })?;
    let path = info.path();
    let mut sender = Sender::new(&wal_dir, 0, info.offsets);
    let mut report = SyncReport { run_path: path.clone(), records_sent: 0, bytes_sent: 0, log_bytes: end };
    progress(0, end);
    loop {
        let Some(batch) = sender.next_batch(end, true, MAX_BATCH_BYTES).map_err(|e| ClientError::io("read", &wal_dir, e))? else {
            break;
        };
        let mut attempt = 0;
        loop {
            match sender.send(&api, &path, &batch) {
                Ok(_) => break,
                Err(e) if e.code() == Some(cairn_types::error::ErrorCode::OffsetGap) => break,
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
    progress(end, end);
    run_dir.write_upload_file(&UploadFile { acked: end, run_path: Some(path.to_string()), complete: true, error: None })?;
    run_dir.unlock();
    Ok(report)
}
