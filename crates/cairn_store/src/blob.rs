//! Content-addressed blobs in a local directory: `blobs/<sha[0..2]>/<sha>`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use cairn_types::error::{CodedError, ErrorCode};
use sha2::{Digest, Sha256};

use crate::{BlobRef, BlobStore, Result};

pub struct LocalBlobStore {
    root: PathBuf,
    staging: PathBuf,
}

fn io_err(what: &str, path: &Path, e: io::Error) -> CodedError {
    CodedError::new(ErrorCode::Internal, format!("cannot {what} {}: {e}", path.display()))
}

/// Hex SHA-256 of a file, read in blocks.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut file = File::open(path).map_err(|e| io_err("open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| io_err("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex(&hasher.finalize()), size))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn valid_sha(sha256: &str) -> Result<()> {
    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(CodedError::new(ErrorCode::InvalidValue, format!("{sha256:?} is not a lowercase hex SHA-256")))
    }
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

    /// Stores bytes (for small contents and tests).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<BlobRef> {
        let tmp = tempfile::NamedTempFile::new_in(&self.staging).map_err(|e| io_err("create a file in", &self.staging, e))?;
        tmp.as_file().write_all(bytes).map_err(|e| io_err("write", tmp.path(), e))?;
        self.put_file(tmp.path())
    }
}

impl BlobStore for LocalBlobStore {
    fn put_file(&self, path: &Path) -> Result<BlobRef> {
        let (sha256, size) = sha256_file(path)?;
        self.put_hashed(path, BlobRef { sha256, size })
    }

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
        valid_sha(sha256)?;
        let path = self.blob_path(sha256);
        let file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => CodedError::new(ErrorCode::FileNotFound, format!("blob {sha256} not found")),
            _ => io_err("open", &path, e),
        })?;
        Ok(Box::new(file))
    }

    fn exists(&self, sha256: &str) -> Result<bool> {
        valid_sha(sha256)?;
        Ok(self.blob_path(sha256).exists())
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

    fn staging_dir(&self) -> &Path {
        &self.staging
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_once_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path()).unwrap();
        let a = store.put_bytes(b"hello").unwrap();
        let b = store.put_bytes(b"hello").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        let mut out = String::new();
        store.open(&a.sha256).unwrap().read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello");
        assert!(store.exists(&a.sha256).unwrap());
        assert!(store.open("../etc/passwd").is_err());
        assert_eq!(store.open(&"0".repeat(64)).err().unwrap().code, ErrorCode::FileNotFound);
    }
}
