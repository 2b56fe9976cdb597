//! Blobs in a local directory: `<root>/<sha[0..2]>/<sha>`, uploads in progress in
//! `<root>/staging/upload-<sha>.part`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use cairn_types::error::{CodedError, ErrorCode};

use super::{BlobRef, BlobStore, io_err, mismatch, offset_error, sha256_file, valid_sha};
use crate::Result;

pub struct LocalBlobStore {
    root: PathBuf,
    staging: PathBuf,
}

impl LocalBlobStore {
    pub fn open(root: &Path) -> Result<LocalBlobStore> {
        let staging = root.join("staging");
        std::fs::create_dir_all(&staging).map_err(|e| io_err("create", &staging, e))?;
        Ok(LocalBlobStore { root: root.to_owned(), staging })
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join(&sha256[..2]).join(sha256)
    }

    fn open_file(&self, sha256: &str) -> Result<File> {
        valid_sha(sha256)?;
        let path = self.blob_path(sha256);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => CodedError::new(ErrorCode::FileNotFound, format!("blob {sha256} not found")),
            _ => io_err("open", &path, e),
        })
    }

    fn partial_path(&self, sha256: &str) -> PathBuf {
        self.staging.join(format!("upload-{sha256}.part"))
    }
}

impl BlobStore for LocalBlobStore {
    fn put_hashed(&self, path: &Path, blob: BlobRef) -> Result<BlobRef> {
        valid_sha(&blob.sha256)?;
        let BlobRef { sha256, size } = blob;
        let target = self.blob_path(&sha256);
        if !target.exists() {
            let dir = target.parent().expect("blob paths have a parent");
            std::fs::create_dir_all(dir).map_err(|e| io_err("create", dir, e))?;
            // Rename when the file is ours to move (same file system); copy otherwise.
            if std::fs::rename(path, &target).is_err() {
                let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io_err("create a file in", dir, e))?;
                std::fs::copy(path, tmp.path()).map_err(|e| io_err("copy", path, e))?;
                tmp.as_file().sync_all().map_err(|e| io_err("sync", tmp.path(), e))?;
                tmp.persist(&target).map_err(|e| io_err("store", &target, e.error))?;
            }
        }
        Ok(BlobRef { sha256, size })
    }

    fn open(&self, sha256: &str) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(self.open_file(sha256)?))
    }

    fn open_range(&self, sha256: &str, offset: u64, len: u64) -> Result<Box<dyn Read + Send>> {
        use std::io::Seek as _;
        let mut file = self.open_file(sha256)?;
        file.seek(io::SeekFrom::Start(offset)).map_err(|e| io_err("read", &self.blob_path(sha256), e))?;
        Ok(Box::new(file.take(len)))
    }

    fn size(&self, sha256: &str) -> Result<Option<u64>> {
        valid_sha(sha256)?;
        match std::fs::metadata(self.blob_path(sha256)) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &self.blob_path(sha256), e)),
        }
    }

    fn remove(&self, sha256: &str) -> Result<()> {
        valid_sha(sha256)?;
        let path = self.blob_path(sha256);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &path, e)),
        }
    }

    fn upload_received(&self, sha256: &str) -> Result<u64> {
        valid_sha(sha256)?;
        match std::fs::metadata(self.partial_path(sha256)) {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_err("read", &self.partial_path(sha256), e)),
        }
    }

    fn upload_append(&self, sha256: &str, offset: u64, bytes: &[u8]) -> Result<u64> {
        valid_sha(sha256)?;
        let path = self.partial_path(sha256);
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io_err("open", &path, e))?;
        let held = file.metadata().map_err(|e| io_err("read", &path, e))?.len();
        if held != offset {
            return Err(offset_error(sha256, held, offset));
        }
        file.write_all(bytes).map_err(|e| io_err("write", &path, e))?;
        Ok(held + bytes.len() as u64)
    }

    fn upload_finish(&self, sha256: &str) -> Result<BlobRef> {
        valid_sha(sha256)?;
        let path = self.partial_path(sha256);
        // An empty content arrives with no bytes, so nothing was appended.
        if !path.exists() {
            File::create(&path).map_err(|e| io_err("create", &path, e))?;
        }
        let (actual, size) = sha256_file(&path)?;
        if actual != sha256 {
            let _ = std::fs::remove_file(&path);
            return Err(mismatch(sha256, &actual));
        }
        let stored = self.put_hashed(&path, BlobRef { sha256: actual, size });
        let _ = std::fs::remove_file(&path);
        stored
    }

    fn upload_discard(&self, sha256: &str) -> Result<()> {
        valid_sha(sha256)?;
        match std::fs::remove_file(self.partial_path(sha256)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &self.partial_path(sha256), e)),
            _ => Ok(()),
        }
    }

    fn describe(&self) -> String {
        format!("blobs in {}", self.root.display())
    }

    fn scratch_dir(&self) -> Option<PathBuf> {
        Some(self.staging.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::blob_test_suite!({
        let dir = tempfile::tempdir().unwrap();
        (LocalBlobStore::open(dir.path()).unwrap(), LocalBlobStore::open(dir.path()).unwrap(), dir)
    });
}
