//! Blobs in an S3-compatible object store (`object_store`): `<prefix>/blobs/<sha[0..2]>/<sha>`.
//!
//! An upload in progress is a set of objects `<prefix>/uploads/<sha>/<offset>`, one per piece
//! that arrived, so any server instance can tell what is held and continue it. Finishing reads the
//! pieces back in order, hashes them while it writes the blob as a multipart upload, and
//! completes that upload only when the hash is right: a wrong content is never visible.
//!
//! The trait is blocking; the store drives `object_store` on a small runtime of its own, so it is
//! called from `spawn_blocking` threads, tests and command-line tools alike.

use std::io::Read;
use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use cairn_types::error::{CodedError, ErrorCode};
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};

use super::{BlobRef, BlobStore, hex, mismatch, offset_error, valid_sha};
use crate::Result;

/// Pieces of an upload and of a multipart write are at most this big.
const PIECE: usize = 8 << 20;

pub struct S3BlobStore {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: String,
    /// Shared with the readers it hands out, which may outlive the store.
    runtime: Arc<OwnRuntime>,
}

/// The store's runtime, shut down without blocking when the last user drops it (a drop may
/// happen on an async thread).
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    fn get(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("the runtime lives until drop")
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Requests may take as long as a big blob takes to stream (no overall timeout), but a connection
/// that stops sending for a minute is dead. These options replace the builder's, `allow_http`
/// included, so it is set here.
fn client_options(allow_http: bool) -> object_store::ClientOptions {
    object_store::ClientOptions::new()
        .with_allow_http(allow_http)
        .with_timeout_disabled()
        .with_connect_timeout(std::time::Duration::from_secs(10))
        .with_read_timeout(std::time::Duration::from_secs(60))
}

/// Maps an object store error: a missing object is the caller's to handle; a refusal that a
/// retry cannot cure (credentials, permissions, an unsupported call) is an internal error that
/// says so; the rest means the store cannot be reached now, which a retry may cure.
fn unavailable(what: &str, e: object_store::Error) -> CodedError {
    use object_store::Error as E;
    let code = match e {
        E::PermissionDenied { .. } | E::Unauthenticated { .. } | E::NotSupported { .. } | E::NotImplemented { .. } | E::InvalidPath { .. } => ErrorCode::Internal,
        _ => ErrorCode::BackendUnavailable,
    };
    CodedError::new(code, format!("the object store cannot {what}: {e}"))
}

/// The part size of a multipart write of `size` bytes: S3 takes at most 10,000 parts.
fn part_size(size: u64) -> usize {
    let needed = size.div_ceil(9_000) as usize;
    needed.max(PIECE).next_multiple_of(1 << 20)
}

/// rustls needs one process-wide crypto provider before an HTTP client is built; ring is the one
/// the tree already has. Call it before building an `object_store` S3 client.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl S3BlobStore {
    /// Connects to `bucket` with the standard AWS variables; `AWS_ENDPOINT_URL` names another
    /// S3-compatible service (plain `http://` is allowed for it).
    pub fn from_env(bucket: &str, prefix: &str) -> Result<S3BlobStore> {
        install_crypto();
        let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
        let allow_http = endpoint.as_deref().is_some_and(|e| e.starts_with("http://")) || std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v == "true" || v == "1");
        let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket).with_client_options(client_options(allow_http));
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
            builder = builder.with_region("us-east-1");
        }
        let store = builder.build().map_err(|e| CodedError::new(ErrorCode::InvalidValue, format!("cannot use the S3 bucket {bucket:?}: {e}")))?;
        let store = S3BlobStore::new(Arc::new(store), bucket, prefix)?;
        // A wrong bucket or key fails here, clearly, not later as missing files.
        store.check()?;
        Ok(store)
    }

    /// Lists the prefix once: the bucket exists and the credentials may read it.
    pub fn check(&self) -> Result<()> {
        let prefix = self.key("blobs");
        self.block_on(self.store.list_with_delimiter(Some(&prefix))).map(|_| ()).map_err(|e| {
            let message = format!("cannot use s3://{}/{}: {e}", self.bucket, self.prefix);
            // A missing bucket comes back from a listing as a plain 404 with S3's code in it.
            let missing = matches!(e, object_store::Error::NotFound { .. }) || message.contains("NoSuchBucket");
            let code = if missing { ErrorCode::InvalidValue } else { unavailable("list", e).code };
            CodedError::new(code, message)
        })
    }

    /// The bytes of every blob under the prefix (for tools and tests: it lists them all).
    pub fn stored_bytes(&self) -> Result<u64> {
        let dir = self.key("blobs");
        self.block_on(async {
            let mut total = 0;
            let mut stream = self.store.list(Some(&dir));
            while let Some(meta) = stream.next().await {
                total += meta.map_err(|e| unavailable("list the blobs", e))?.size;
            }
            Ok(total)
        })
    }

    /// Connects to `bucket` at `endpoint` with a static key (tests and tools; servers use
    /// [`S3BlobStore::from_env`]).
    pub fn connect(bucket: &str, prefix: &str, endpoint: &str, access_key: &str, secret: &str) -> Result<S3BlobStore> {
        install_crypto();
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(endpoint)
            .with_client_options(client_options(endpoint.starts_with("http://")))
            .with_region("us-east-1")
            .with_access_key_id(access_key)
            .with_secret_access_key(secret)
            .build()
            .map_err(|e| CodedError::new(ErrorCode::InvalidValue, format!("cannot use the S3 bucket {bucket:?}: {e}")))?;
        S3BlobStore::new(Arc::new(store), bucket, prefix)
    }

    pub fn new(store: Arc<dyn ObjectStore>, bucket: &str, prefix: &str) -> Result<S3BlobStore> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-s3")
            .enable_all()
            .build()
            .map_err(|e| CodedError::new(ErrorCode::Internal, format!("cannot start the S3 client's threads: {e}")))?;
        Ok(S3BlobStore { store, bucket: bucket.to_owned(), prefix: prefix.to_owned(), runtime: Arc::new(OwnRuntime(Some(runtime))) })
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.get().block_on(future)
    }

    fn key(&self, rest: &str) -> Path {
        if self.prefix.is_empty() { Path::from(rest) } else { Path::from(format!("{}/{rest}", self.prefix)) }
    }

    fn blob_key(&self, sha256: &str) -> Path {
        self.key(&format!("blobs/{}/{sha256}", &sha256[..2]))
    }

    fn upload_dir(&self, sha256: &str) -> Path {
        self.key(&format!("uploads/{sha256}"))
    }

    /// The pieces of an upload that follow each other from offset 0, in order, and where they
    /// end. Pieces that overlap hold the same bytes (they are of one content), so the overlap of
    /// each is skipped; a piece after a gap is not counted.
    fn pieces(&self, sha256: &str) -> Result<(Vec<(Path, u64, u64)>, u64)> {
        let dir = self.upload_dir(sha256);
        let listed: Vec<object_store::ObjectMeta> = self.block_on(async {
            let mut out = Vec::new();
            let mut stream = self.store.list(Some(&dir));
            while let Some(meta) = stream.next().await {
                out.push(meta.map_err(|e| unavailable("list an upload", e))?);
            }
            Ok::<_, CodedError>(out)
        })?;
        let mut pieces: Vec<(Path, u64, u64)> = listed
            .into_iter()
            .filter_map(|m| {
                let offset = m.location.filename()?.parse::<u64>().ok()?;
                Some((m.location, offset, m.size))
            })
            .collect();
        pieces.sort_by_key(|p| p.1);
        let mut end = 0;
        let mut used = Vec::new();
        for (path, offset, size) in pieces {
            if offset > end {
                break;
            }
            if offset + size > end {
                end = offset + size;
                used.push((path, offset, size));
            }
        }
        Ok((used, end))
    }

    fn clear_upload(&self, sha256: &str) -> Result<()> {
        let dir = self.upload_dir(sha256);
        self.block_on(async {
            let mut stream = self.store.list(Some(&dir));
            while let Some(meta) = stream.next().await {
                let meta = meta.map_err(|e| unavailable("list an upload", e))?;
                match self.store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(unavailable("remove an upload's piece", e)),
                }
            }
            Ok(())
        })
    }

    /// Writes what `next` yields as the blob `sha256`, completing the write only when the bytes
    /// hash to it.
    fn write_checked(&self, sha256: &str, size_hint: u64, mut next: impl FnMut() -> Result<Option<Bytes>>) -> Result<BlobRef> {
        let key = self.blob_key(sha256);
        let upload = self.block_on(self.store.put_multipart(&key)).map_err(|e| unavailable("start a write", e))?;
        // The writer spawns its part uploads: it needs the runtime as its context.
        let _context = self.runtime.get().enter();
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size(size_hint));
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let result = (|| {
            while let Some(bytes) = next()? {
                hasher.update(&bytes);
                size += bytes.len() as u64;
                self.block_on(writer.wait_for_capacity(4)).map_err(|e| unavailable("write", e))?;
                writer.put(bytes);
            }
            Ok::<_, CodedError>(())
        })();
        let actual = hex(&hasher.finalize());
        if let Err(e) = result {
            let _ = self.block_on(writer.abort());
            return Err(e);
        }
        if actual != sha256 {
            let _ = self.block_on(writer.abort());
            return Err(mismatch(sha256, &actual));
        }
        self.block_on(writer.finish()).map_err(|e| unavailable("complete a write", e))?;
        Ok(BlobRef { sha256: actual, size })
    }
}

/// A blob's bytes as a blocking reader over the object's stream.
struct StreamReader {
    stream: futures_util::stream::BoxStream<'static, object_store::Result<Bytes>>,
    runtime: Arc<OwnRuntime>,
    current: Bytes,
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.runtime.get().block_on(self.stream.next()) {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(std::io::Error::other(format!("the object store stopped sending: {e}"))),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

impl BlobStore for S3BlobStore {
    fn put_hashed(&self, path: &FsPath, blob: BlobRef) -> Result<BlobRef> {
        valid_sha(&blob.sha256)?;
        if self.exists(&blob.sha256)? {
            return Ok(blob);
        }
        let mut file = std::fs::File::open(path).map_err(|e| super::io_err("open", path, e))?;
        let mut buf = vec![0u8; PIECE];
        // Hashed again while it is sent: a file that changed since it was hashed is refused.
        self.write_checked(&blob.sha256, blob.size, || {
            let mut filled = 0;
            while filled < buf.len() {
                match file.read(&mut buf[filled..]).map_err(|e| super::io_err("read", path, e))? {
                    0 => break,
                    n => filled += n,
                }
            }
            Ok((filled > 0).then(|| Bytes::copy_from_slice(&buf[..filled])))
        })
    }

    fn open(&self, sha256: &str) -> Result<Box<dyn Read + Send>> {
        valid_sha(sha256)?;
        let result = self.block_on(self.store.get(&self.blob_key(sha256))).map_err(|e| match e {
            object_store::Error::NotFound { .. } => CodedError::new(ErrorCode::FileNotFound, format!("blob {sha256} not found")),
            e => unavailable("read a blob", e),
        })?;
        Ok(Box::new(StreamReader { stream: result.into_stream(), runtime: self.runtime.clone(), current: Bytes::new() }))
    }

    fn open_range(&self, sha256: &str, offset: u64, len: u64) -> Result<Box<dyn Read + Send>> {
        valid_sha(sha256)?;
        if len == 0 {
            return Ok(Box::new(std::io::empty()));
        }
        let bytes = self.block_on(self.store.get_range(&self.blob_key(sha256), offset..offset + len)).map_err(|e| match e {
            object_store::Error::NotFound { .. } => CodedError::new(ErrorCode::FileNotFound, format!("blob {sha256} not found")),
            e => unavailable("read a blob", e),
        })?;
        Ok(Box::new(std::io::Cursor::new(bytes)))
    }

    fn size(&self, sha256: &str) -> Result<Option<u64>> {
        valid_sha(sha256)?;
        match self.block_on(self.store.head(&self.blob_key(sha256))) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(unavailable("look up a blob", e)),
        }
    }

    fn remove(&self, sha256: &str) -> Result<()> {
        valid_sha(sha256)?;
        match self.block_on(self.store.delete(&self.blob_key(sha256))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(unavailable("remove a blob", e)),
        }
    }

    fn upload_received(&self, sha256: &str) -> Result<u64> {
        valid_sha(sha256)?;
        Ok(self.pieces(sha256)?.1)
    }

    fn upload_append(&self, sha256: &str, offset: u64, bytes: &[u8]) -> Result<u64> {
        valid_sha(sha256)?;
        let held = self.pieces(sha256)?.1;
        if held != offset {
            return Err(offset_error(sha256, held, offset));
        }
        if bytes.is_empty() {
            return Ok(held);
        }
        let key = self.key(&format!("uploads/{sha256}/{offset:020}"));
        self.block_on(self.store.put(&key, PutPayload::from(bytes.to_vec()))).map_err(|e| unavailable("store an upload's piece", e))?;
        Ok(offset + bytes.len() as u64)
    }

    fn upload_finish(&self, sha256: &str) -> Result<BlobRef> {
        valid_sha(sha256)?;
        let (pieces, end) = self.pieces(sha256)?;
        if let Some(size) = self.size(sha256)? {
            // Finished already (by another instance): what is held is no longer needed.
            self.clear_upload(sha256)?;
            return Ok(BlobRef { sha256: sha256.to_owned(), size });
        }
        let mut pieces = pieces.into_iter();
        let mut at = 0u64;
        let changed = || CodedError::new(ErrorCode::BackendUnavailable, format!("the upload of {sha256} changed while it was finished; retry"));
        let stored = self.write_checked(sha256, end, || {
            let Some((path, offset, listed)) = pieces.next() else { return Ok(None) };
            let bytes = self.block_on(async { self.store.get(&path).await?.bytes().await }).map_err(|e| unavailable("read an upload's piece", e))?;
            // Another instance rewrote this piece since the listing: try again, keeping it all.
            if bytes.len() as u64 != listed || offset > at {
                return Err(changed());
            }
            // Overlapping pieces hold the same bytes: skip what was sent already.
            let skip = ((at - offset) as usize).min(bytes.len());
            at = at.max(offset + listed);
            Ok(Some(bytes.slice(skip..)))
        });
        match stored {
            Err(e) if e.code == ErrorCode::ContentMismatch => {
                self.clear_upload(sha256)?;
                Err(e)
            }
            Err(e) => Err(e),
            Ok(blob) => {
                // Stored: pieces left over are only clutter, not a failure of this request.
                if let Err(e) = self.clear_upload(sha256) {
                    tracing::warn!("cannot remove the pieces of the finished upload {sha256}: {}", e.message);
                }
                Ok(blob)
            }
        }
    }

    fn upload_discard(&self, sha256: &str) -> Result<()> {
        valid_sha(sha256)?;
        self.clear_upload(sha256)
    }

    fn describe(&self) -> String {
        format!("blobs in s3://{}/{}", self.bucket, self.prefix)
    }

    fn parallelism(&self) -> usize {
        16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The S3 suite runs against a real S3 API (`python3 -m moto.server`, which the test script
    /// starts) named by `CAIRN_TEST_S3_ENDPOINT`, in the bucket `CAIRN_TEST_S3_BUCKET`. In CI it
    /// must run: without the endpoint, the tests fail there and are skipped elsewhere.
    fn store() -> Option<(S3BlobStore, S3BlobStore)> {
        let Ok(endpoint) = std::env::var("CAIRN_TEST_S3_ENDPOINT") else {
            assert!(std::env::var_os("CI").is_none(), "CI must run the S3 suite: set CAIRN_TEST_S3_ENDPOINT");
            eprintln!("skipped: CAIRN_TEST_S3_ENDPOINT is not set");
            return None;
        };
        let bucket = std::env::var("CAIRN_TEST_S3_BUCKET").unwrap_or_else(|_| "cairn-test".into());
        let prefix = format!("suite-{}", hex(&fastrand::u64(..).to_le_bytes()));
        let open = || S3BlobStore::connect(&bucket, &prefix, &endpoint, "test", "test").unwrap();
        Some((open(), open()))
    }

    macro_rules! s3_suite {
        ($($name:ident),*) => {$(
            #[test]
            fn $name() {
                if let Some((a, b)) = store() {
                    crate::blob::suite::$name(Arc::new(a), Arc::new(b));
                }
            }
        )*};
    }

    s3_suite!(
        stores_once_by_content_and_reads_back,
        refuses_bad_hashes_and_reports_missing_blobs,
        uploads_resume_and_are_checked,
        an_upload_continues_on_another_instance,
        chunks_read_back_in_order_from_many_blobs
    );

    #[test]
    fn parts_stay_under_the_limit_of_ten_thousand() {
        assert_eq!(part_size(0), PIECE);
        assert_eq!(part_size(1 << 30), PIECE);
        for size in [80u64 << 30, 1 << 40, 5 << 40] {
            let part = part_size(size) as u64;
            assert!(size.div_ceil(part) < 10_000, "{size}: parts of {part}");
            assert_eq!(part % (1 << 20), 0);
        }
    }

    #[test]
    fn a_reader_outlives_its_store_and_a_wrong_bucket_is_named() {
        let Some((a, b)) = store() else { return };
        let bytes: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
        let sha256 = crate::blob::sha256_reader(&bytes[..]).unwrap().0;
        a.upload_append(&sha256, 0, &bytes).unwrap();
        a.upload_finish(&sha256).unwrap();
        let mut reader = a.open(&sha256).unwrap();
        drop(a);
        drop(b);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert!(out == bytes);
        let endpoint = std::env::var("CAIRN_TEST_S3_ENDPOINT").unwrap();
        let wrong = S3BlobStore::connect("no-such-bucket-here", "", &endpoint, "test", "test").unwrap();
        let err = wrong.check().unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidValue, "{}", err.message);
        assert!(err.message.contains("no-such-bucket-here"), "{}", err.message);
    }

    #[test]
    fn an_unreachable_store_is_unavailable_not_missing() {
        // Nothing listens on port 9 of the loopback: every call fails at once, as a 503.
        install_crypto();
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name("b")
            .with_endpoint("http://127.0.0.1:9")
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_retry(object_store::RetryConfig { max_retries: 0, ..Default::default() })
            .build()
            .unwrap();
        let store = S3BlobStore::new(Arc::new(store), "b", "").unwrap();
        let err = store.size(&"0".repeat(64)).unwrap_err();
        assert_eq!(err.code, ErrorCode::BackendUnavailable, "{}", err.message);
        assert_eq!(err.code.http_status(), 503);
    }
}
