//! Content-addressed blobs behind one trait, on a local directory (`file://`) or an S3-compatible
//! object store (`s3://`), chosen by URI in [`open_blobs`]. Resumable uploads live in the blob
//! store too, so that an upload started through one server continues through another.

mod chunked;
mod local;
mod s3;
#[cfg(any(test, feature = "testsuite"))]
pub mod suite;

use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use cairn_types::error::{CodedError, ErrorCode};
use sha2::{Digest, Sha256};

pub use chunked::{ChunkedReader, Piece, coalesce};
pub use local::LocalBlobStore;
pub use s3::S3BlobStore;

use crate::Result;

/// A stored content's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    /// SHA-256, lowercase hex.
    pub sha256: String,
    pub size: u64,
}

/// Content-addressed file contents: a content is stored once, whatever the number of runs that
/// name it. Every method blocks (callers on an async runtime use `spawn_blocking`).
pub trait BlobStore: Send + Sync {
    /// Stores the content of the local file at `path` under its hash. The file is the store's
    /// afterwards: it may be moved away.
    fn put_file(&self, path: &Path) -> Result<BlobRef> {
        let (sha256, size) = sha256_file(path)?;
        self.put_hashed(path, BlobRef { sha256, size })
    }
    /// [`BlobStore::put_file`] for a file whose SHA-256 the caller has just computed: it is not
    /// hashed again.
    fn put_hashed(&self, path: &Path, blob: BlobRef) -> Result<BlobRef>;
    /// Reads a blob, streaming.
    fn open(&self, sha256: &str) -> Result<Box<dyn Read + Send>>;
    /// Reads `len` bytes of a blob from `offset` (fewer when the blob ends first).
    fn open_range(&self, sha256: &str, offset: u64, len: u64) -> Result<Box<dyn Read + Send>> {
        let mut reader = self.open(sha256)?;
        io::copy(&mut (&mut reader).take(offset), &mut io::sink()).map_err(|e| CodedError::new(ErrorCode::Internal, format!("cannot read blob {sha256}: {e}")))?;
        Ok(Box::new(reader.take(len)))
    }
    fn exists(&self, sha256: &str) -> Result<bool> {
        Ok(self.size(sha256)?.is_some())
    }
    /// The size of a stored blob, or `None` when it is not stored.
    fn size(&self, sha256: &str) -> Result<Option<u64>>;
    /// Removes a blob (no error when it is not there).
    fn remove(&self, sha256: &str) -> Result<()>;

    /// How many bytes of an unfinished upload of `sha256` are held (0 when none is).
    fn upload_received(&self, sha256: &str) -> Result<u64>;
    /// Appends `bytes` at `offset` to the upload of `sha256`, which must be what it holds
    /// (`upload_offset` otherwise). Returns what it holds now.
    fn upload_append(&self, sha256: &str, offset: u64, bytes: &[u8]) -> Result<u64>;
    /// Checks that the upload's bytes hash to `sha256` and stores them as that blob. A content
    /// that is not what it claims is dropped whole (`content_mismatch`).
    fn upload_finish(&self, sha256: &str) -> Result<BlobRef>;
    /// Drops what an upload holds.
    fn upload_discard(&self, sha256: &str) -> Result<()>;

    /// Where the blobs are, for the server's banner.
    fn describe(&self) -> String;

    /// A folder for scratch files from which [`BlobStore::put_file`] is cheapest (on the same
    /// disk as the blobs, so storing is a rename); `None`: anywhere will do.
    fn scratch_dir(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// How many requests at once suit this store when many small blobs are read (an object
    /// store answers each after a round trip; a disk needs few).
    fn parallelism(&self) -> usize {
        2
    }
}

/// Opens the blob store that `uri` names: `file:///path` or `s3://bucket/prefix`. S3 settings
/// come from the standard AWS variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_REGION`, `AWS_ENDPOINT_URL`), so MinIO, Ceph, R2 and GCS in S3 mode work too.
pub fn open_blobs(uri: &str) -> Result<Arc<dyn BlobStore>> {
    let bad = |why: &str| CodedError::new(ErrorCode::InvalidValue, format!("blob store {uri:?}: {why}; use file:///path or s3://bucket/prefix"));
    if let Some(path) = uri.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(bad("a file:// path must be absolute"));
        }
        return Ok(Arc::new(LocalBlobStore::open(Path::new(path))?));
    }
    if let Some(rest) = uri.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("the bucket is missing"));
        }
        return Ok(Arc::new(S3BlobStore::from_env(bucket, prefix.trim_matches('/'))?));
    }
    Err(bad("unknown scheme"))
}

pub(crate) fn io_err(what: &str, path: &Path, e: io::Error) -> CodedError {
    if cairn_types::error::is_disk_full(&e) {
        return cairn_types::error::storage_full(format_args!("{} ({what})", path.display()));
    }
    CodedError::new(ErrorCode::Internal, format!("cannot {what} {}: {e}", path.display()))
}

/// Hex SHA-256 of a file, read in blocks.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let file = std::fs::File::open(path).map_err(|e| io_err("open", path, e))?;
    sha256_reader(file).map_err(|e| io_err("read", path, e))
}

/// Hex SHA-256 and length of everything `reader` yields.
pub fn sha256_reader(mut reader: impl Read) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex(&hasher.finalize()), size))
}

pub use cairn_types::hex;

pub fn valid_sha(sha256: &str) -> Result<()> {
    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(CodedError::new(ErrorCode::InvalidValue, format!("{sha256:?} is not a lowercase hex SHA-256")))
    }
}

pub fn offset_error(sha256: &str, held: u64, offset: u64) -> CodedError {
    CodedError::new(ErrorCode::UploadOffset, format!("the server holds {held} bytes of {sha256}; send from offset {held}, not {offset}"))
}

pub(crate) fn mismatch(sha256: &str, actual: &str) -> CodedError {
    CodedError::new(ErrorCode::ContentMismatch, format!("the uploaded content's SHA-256 is {actual}, not {sha256}; upload it again"))
}
