//! The blob-store conformance suite: every backend passes the same cases. `$make` gives two
//! instances over the same storage (as two servers would have) and a guard that keeps it alive.

use std::io::Read;

use cairn_types::error::ErrorCode;

use super::{BlobStore, sha256_reader};

#[macro_export]
macro_rules! blob_test_suite {
    ($make:expr) => {
        $crate::blob_test_suite!(@tests $make;
            stores_once_by_content_and_reads_back,
            refuses_bad_hashes_and_reports_missing_blobs,
            uploads_resume_and_are_checked,
            an_upload_continues_on_another_instance,
            chunks_read_back_in_order_from_many_blobs
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                #[allow(unused_variables)]
                let (a, b, guard) = $make;
                $crate::blob::suite::$name(std::sync::Arc::new(a), std::sync::Arc::new(b));
            }
        )*
    };
}

/// Each case gets two instances over the same storage.
pub type Shared = std::sync::Arc<dyn BlobStore>;

/// `n` pseudo-random bytes (xorshift from `seed`).
pub(crate) fn content(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn sha(bytes: &[u8]) -> String {
    sha256_reader(bytes).unwrap().0
}

fn read_all(store: &dyn BlobStore, sha256: &str) -> Vec<u8> {
    let mut out = Vec::new();
    store.open(sha256).unwrap().read_to_end(&mut out).unwrap();
    out
}

fn put(store: &dyn BlobStore, bytes: &[u8]) -> super::BlobRef {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("content");
    std::fs::write(&path, bytes).unwrap();
    store.put_file(&path).unwrap()
}

pub fn stores_once_by_content_and_reads_back(store: Shared, _other: Shared) {
    let (store, _other) = (store.as_ref(), _other.as_ref());
    let a = put(store, b"hello");
    assert_eq!(a.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    assert_eq!(a.size, 5);
    assert_eq!(put(store, b"hello"), a);
    assert_eq!(read_all(store, &a.sha256), b"hello");
    assert!(store.exists(&a.sha256).unwrap());
    assert_eq!(store.size(&a.sha256).unwrap(), Some(5));
    // Empty, and large enough to take several reads and parts.
    let empty = put(store, b"");
    assert_eq!(read_all(store, &empty.sha256), b"");
    let big = content(11 << 20, 7);
    let stored = put(store, &big);
    assert_eq!(stored.size, big.len() as u64);
    assert!(read_all(store, &stored.sha256) == big);
    store.remove(&a.sha256).unwrap();
    store.remove(&a.sha256).unwrap();
    assert!(!store.exists(&a.sha256).unwrap());
    assert_eq!(store.size(&a.sha256).unwrap(), None);
}

pub fn refuses_bad_hashes_and_reports_missing_blobs(store: Shared, _other: Shared) {
    let (store, _other) = (store.as_ref(), _other.as_ref());
    for bad in ["../etc/passwd", "ABC", &"A".repeat(64)] {
        assert_eq!(store.open(bad).err().unwrap().code, ErrorCode::InvalidValue, "{bad}");
        assert_eq!(store.upload_append(bad, 0, b"x").unwrap_err().code, ErrorCode::InvalidValue);
    }
    let missing = "0".repeat(64);
    let err = store.open(&missing).err().unwrap();
    assert_eq!(err.code, ErrorCode::FileNotFound);
    assert!(err.message.contains(&missing), "{}", err.message);
    assert_eq!(store.upload_received(&missing).unwrap(), 0);
}

pub fn uploads_resume_and_are_checked(store: Shared, _other: Shared) {
    let (store, _other) = (store.as_ref(), _other.as_ref());
    let bytes = content(3 << 20, 11);
    let sha256 = sha(&bytes);
    assert_eq!(store.upload_received(&sha256).unwrap(), 0);
    assert_eq!(store.upload_append(&sha256, 0, &bytes[..1000]).unwrap(), 1000);
    assert_eq!(store.upload_received(&sha256).unwrap(), 1000);
    // Not at what it holds: refused, naming the offset to send from.
    let err = store.upload_append(&sha256, 5000, &bytes[5000..6000]).unwrap_err();
    assert_eq!(err.code, ErrorCode::UploadOffset);
    assert!(err.message.contains("1000"), "{}", err.message);
    assert_eq!(store.upload_append(&sha256, 1000, &bytes[1000..2_000_000]).unwrap(), 2_000_000);
    assert_eq!(store.upload_append(&sha256, 2_000_000, &bytes[2_000_000..]).unwrap(), bytes.len() as u64);
    let blob = store.upload_finish(&sha256).unwrap();
    assert_eq!((blob.sha256.as_str(), blob.size), (sha256.as_str(), bytes.len() as u64));
    assert!(read_all(store, &sha256) == bytes);
    assert_eq!(store.upload_received(&sha256).unwrap(), 0);

    // A content that is not what it claims is dropped whole.
    let claimed = sha(b"the real thing");
    store.upload_append(&claimed, 0, b"something else").unwrap();
    assert_eq!(store.upload_finish(&claimed).unwrap_err().code, ErrorCode::ContentMismatch);
    assert!(!store.exists(&claimed).unwrap());
    assert_eq!(store.upload_received(&claimed).unwrap(), 0);

    // An empty content has nothing to append.
    let empty = sha(b"");
    assert_eq!(store.upload_finish(&empty).unwrap().size, 0);
    assert_eq!(read_all(store, &empty), b"");

    // Discarded: nothing held.
    store.upload_append(&claimed, 0, b"the real").unwrap();
    store.upload_discard(&claimed).unwrap();
    assert_eq!(store.upload_received(&claimed).unwrap(), 0);
}

pub fn an_upload_continues_on_another_instance(store: Shared, other: Shared) {
    let (store, other) = (store.as_ref(), other.as_ref());
    let bytes = content(1 << 20, 23);
    let sha256 = sha(&bytes);
    store.upload_append(&sha256, 0, &bytes[..400_000]).unwrap();
    assert_eq!(other.upload_received(&sha256).unwrap(), 400_000);
    other.upload_append(&sha256, 400_000, &bytes[400_000..]).unwrap();
    other.upload_finish(&sha256).unwrap();
    assert!(read_all(store, &sha256) == bytes);
}

/// A content read as pieces of many blobs (fetched in parallel) comes back in order; a missing
/// or short piece is an error of the read, not wrong bytes.
pub fn chunks_read_back_in_order_from_many_blobs(a: Shared, b: Shared) {
    let mut whole = Vec::new();
    let mut pieces = Vec::new();
    for i in 0..40u64 {
        let bytes = content(3000 + (i as usize * 37) % 900, i + 1);
        let blob = put(a.as_ref(), &bytes);
        // Three pieces of each blob, the middle one twice.
        let third = bytes.len() as u64 / 3;
        for (offset, size) in [(0, third), (third, third), (third, third), (2 * third, bytes.len() as u64 - 2 * third)] {
            whole.extend_from_slice(&bytes[offset as usize..(offset + size) as usize]);
            pieces.push(super::Piece { blob: blob.sha256.clone(), offset, size });
        }
    }
    let read = |pieces: Vec<super::Piece>| {
        let mut out = Vec::new();
        super::ChunkedReader::new(b.clone(), pieces, b.parallelism()).read_to_end(&mut out).map(|_| out)
    };
    let out = read(pieces.clone()).unwrap();
    assert_eq!(out.len(), whole.len());
    assert!(out == whole, "the pieces came back out of order");
    let joined = super::coalesce(pieces.clone(), 1 << 20);
    assert!(joined.len() < pieces.len() && joined.len() >= 40, "{}", joined.len());
    assert!(read(joined).unwrap() == whole, "joined pieces read the same");

    let mut missing = pieces.clone();
    missing[50].blob = sha(b"never stored");
    let e = read(missing).unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
    let mut past = pieces.clone();
    past[7].size += 10_000;
    let e = read(past).unwrap_err();
    assert!(e.to_string().contains("not"), "{e}");
    // Dropped half way: the readers stop.
    let mut reader = super::ChunkedReader::new(b.clone(), pieces, b.parallelism());
    let mut first = [0u8; 10];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(&first, &whole[..10]);
    drop(reader);
}
