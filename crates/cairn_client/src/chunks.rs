//! A new version of a big content goes to the server in content-defined chunks
//! ([`cairn_types::chunking`]): the client asks which chunks the server lacks (a version it
//! holds already has most of them), sends those, and composes the content; the server reads the
//! chunks back and checks the content's SHA-256 before it keeps it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

pub use cairn_types::chunking::{AVG_CHUNK, MAX_CHUNK, MIN_CHUNK};

use cairn_types::api::{ChunkRef, ComposeContent};
use cairn_types::error::ErrorCode;

use crate::files::UploadError;
use crate::http::{ApiClient, CallError};

/// Chunks sent in one request, by their bytes.
const BATCH_BYTES: usize = 8 << 20;
/// Chunk hashes asked about in one request.
const ASK_PER_REQUEST: usize = 20_000;

fn call_error(what: &str, e: CallError) -> UploadError {
    if e.is_retryable() || matches!(e.code(), Some(ErrorCode::UploadInProgress | ErrorCode::ChunksMissing)) {
        UploadError::Retry(format!("{what}: {e}"))
    } else {
        UploadError::Fatal(format!("{what}: {e}"))
    }
}

/// What a chunked send did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChunkedSend {
    pub chunks: usize,
    /// Chunks the server lacked, and their bytes: what went over the wire.
    pub sent_chunks: usize,
    pub sent_bytes: u64,
    /// Bytes sent beside the chunks: the questions, the chunks' frames and the compose.
    pub list_bytes: u64,
}

/// Sends `source` (`sha256`, `size`) as chunks: only those the server lacks, then the list.
/// `base`: the content it most likely shares chunks with (the version before). `progress` gets
/// the bytes done (held by the server or sent).
pub fn send_chunked(api: &ApiClient, source: &Path, sha256: &str, size: u64, base: Option<&str>, progress: &mut dyn FnMut(u64)) -> Result<ChunkedSend, UploadError> {
    let read_error = |e: std::io::Error| UploadError::Fatal(format!("cannot read {}: {e}", source.display()));
    let chunks = chunk_file(source).map_err(read_error)?;
    let total: u64 = chunks.iter().map(|c| c.size).sum();
    if total != size {
        return Err(UploadError::Retry(format!("{} changed during its upload", source.display())));
    }
    let mut offsets = std::collections::HashMap::with_capacity(chunks.len());
    let mut at = 0u64;
    for c in &chunks {
        offsets.entry(c.sha256.as_str()).or_insert((at, c.size));
        at += c.size;
    }
    let unique: Vec<String> = offsets.keys().map(|s| (*s).to_owned()).collect();
    let mut missing = Vec::new();
    let mut list_bytes = 0u64;
    for (i, part) in unique.chunks(ASK_PER_REQUEST).enumerate() {
        list_bytes += part.iter().map(|s| s.len() as u64 + 3).sum::<u64>() + 12;
        missing.extend(api.missing_chunks(part, if i == 0 { base } else { None }).map_err(|e| call_error("asking which chunks the server lacks", e))?);
    }
    let missing_bytes: u64 = missing.iter().map(|s| offsets[s.as_str()].1).sum();
    let mut done = size - missing_bytes;
    progress(done);
    let mut file = File::open(source).map_err(read_error)?;
    let mut report = ChunkedSend { chunks: chunks.len(), sent_chunks: missing.len(), sent_bytes: 0, list_bytes };
    let mut batch: Vec<(String, Vec<u8>)> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut send = |batch: &mut Vec<(String, Vec<u8>)>, report: &mut ChunkedSend| -> Result<(), UploadError> {
        if batch.is_empty() {
            return Ok(());
        }
        let framed: Vec<(&str, &[u8])> = batch.iter().map(|(s, b)| (s.as_str(), b.as_slice())).collect();
        match api.upload_chunks(&cairn_types::api::encode_upload_batch(&framed)) {
            Ok(_) => {}
            Err(CallError::Api { error, .. }) if error.code == ErrorCode::ContentMismatch => {
                return Err(UploadError::Retry(format!("{} changed during its upload", source.display())));
            }
            Err(e) => return Err(call_error(&format!("uploading chunks of {}", source.display()), e)),
        }
        let bytes: u64 = batch.iter().map(|(_, b)| b.len() as u64).sum();
        report.sent_bytes += bytes;
        // Each chunk's frame: its hash and length.
        report.list_bytes += 72 * batch.len() as u64;
        done += bytes;
        progress(done);
        batch.clear();
        Ok(())
    };
    // In file order: reads go forward.
    let mut order: Vec<(u64, u64, String)> = missing.into_iter().map(|s| (offsets[s.as_str()].0, offsets[s.as_str()].1, s)).collect();
    order.sort();
    for (offset, len, sha) in order {
        let mut bytes = vec![0u8; len as usize];
        file.seek(SeekFrom::Start(offset)).and_then(|_| file.read_exact(&mut bytes)).map_err(read_error)?;
        batch_bytes += bytes.len();
        batch.push((sha, bytes));
        if batch_bytes >= BATCH_BYTES {
            send(&mut batch, &mut report)?;
            batch_bytes = 0;
        }
    }
    send(&mut batch, &mut report)?;
    let request = ComposeContent { size, chunks };
    report.list_bytes += serde_json::to_vec(&request).map_or(0, |b| b.len() as u64);
    match api.compose(sha256, &request) {
        Ok(_) => Ok(report),
        Err(CallError::Api { error, .. }) if error.code == ErrorCode::ContentMismatch => Err(UploadError::Retry(format!("{} changed during its upload", source.display()))),
        Err(e) => Err(call_error(&format!("composing {}", source.display()), e)),
    }
}

/// Cuts the file at `path` into content-defined chunks, each hashed.
pub fn chunk_file(path: &Path) -> std::io::Result<Vec<ChunkRef>> {
    cairn_types::chunking::chunk_reader(File::open(path)?)
}
