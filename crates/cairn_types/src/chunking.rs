//! Content-defined chunking (FastCDC), the same on both sides: a client cuts a big file before
//! it sends only the chunks the server lacks, and the server cuts a content that arrived whole,
//! so that a later version sent in chunks finds its unchanged ones. The cut points depend on the
//! bytes around them, not on their offsets: a few scattered edits and an insertion near the
//! start change a few chunks, not the rest of the file.

use std::io::Read;

use sha2::{Digest, Sha256};

use crate::api::ChunkRef;

/// The smallest chunk (but the last).
pub const MIN_CHUNK: usize = 16 << 10;
/// The size chunks have on average: an edit costs about this much.
pub const AVG_CHUNK: usize = 64 << 10;
/// The biggest chunk.
pub const MAX_CHUNK: usize = 256 << 10;

/// Bytes read and cut at a time; the chunks of one block are hashed in parallel.
const BLOCK: usize = 16 << 20;

/// Fills `buf` from `file` up to `want` bytes; true at the end.
fn fill(file: &mut impl Read, buf: &mut Vec<u8>, want: usize) -> std::io::Result<bool> {
    let start = buf.len();
    buf.resize(want.max(start), 0);
    let mut at = start;
    while at < buf.len() {
        match file.read(&mut buf[at..]) {
            Ok(0) => {
                buf.truncate(at);
                return Ok(true);
            }
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Cuts what `file` yields into content-defined chunks and hashes each (in parallel). The chunks
/// are those a chunker over the whole content finds: a block's last chunk, which its end may
/// have cut short, is cut again with the next block.
pub fn chunk_reader(mut file: impl Read) -> std::io::Result<Vec<ChunkRef>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
    let mut buf: Vec<u8> = Vec::with_capacity(BLOCK + MAX_CHUNK);
    let mut out = Vec::new();
    loop {
        let end = fill(&mut file, &mut buf, BLOCK + MAX_CHUNK)?;
        let mut cuts: Vec<(usize, usize)> = fastcdc::v2020::FastCDC::new(&buf, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK).map(|c| (c.offset, c.length)).collect();
        if !end {
            cuts.pop();
        }
        let per = cuts.len().div_ceil(threads).max(1);
        let hashed: Vec<String> = std::thread::scope(|scope| {
            let parts: Vec<_> = cuts
                .chunks(per)
                .map(|part| {
                    let buf = &buf;
                    scope.spawn(move || part.iter().map(|&(at, len)| hex(&Sha256::digest(&buf[at..at + len]))).collect::<Vec<_>>())
                })
                .collect();
            parts.into_iter().flat_map(|p| p.join().expect("a hashing thread panicked")).collect()
        });
        out.extend(hashed.into_iter().zip(&cuts).map(|(sha256, &(_, len))| ChunkRef { sha256, size: len as u64 }));
        let consumed = cuts.last().map_or(0, |&(at, len)| at + len);
        buf.drain(..consumed);
        if end {
            return Ok(out);
        }
    }
}

/// Bytes (a digest) as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<u8> {
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

    #[test]
    fn blocks_cut_where_one_pass_over_the_whole_file_cuts() {
        let bytes = noise(BLOCK * 2 + 12_345, 7);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, &bytes).unwrap();
        let chunks = chunk_reader(std::fs::File::open(&path).unwrap()).unwrap();
        let whole: Vec<u64> = fastcdc::v2020::FastCDC::new(&bytes, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK).map(|c| c.length as u64).collect();
        assert_eq!(chunks.iter().map(|c| c.size).collect::<Vec<_>>(), whole);
        let mut at = 0usize;
        for c in &chunks {
            assert_eq!(c.sha256, hex(&Sha256::digest(&bytes[at..at + c.size as usize])));
            at += c.size as usize;
        }
        assert_eq!(at, bytes.len());
    }

    #[test]
    fn an_insertion_and_scattered_edits_change_few_chunks() {
        let old = noise(8 << 20, 3);
        let mut new = old.clone();
        for i in 0..16 {
            let at = (i * 7919 * 64 + 100_000) % (new.len() - 100);
            new[at] ^= 0xff;
        }
        new.splice(1000..1000, noise(100, 9));
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, &old).unwrap();
        std::fs::write(&b, &new).unwrap();
        let before: std::collections::HashSet<String> = chunk_reader(std::fs::File::open(&a).unwrap()).unwrap().into_iter().map(|c| c.sha256).collect();
        let after = chunk_reader(std::fs::File::open(&b).unwrap()).unwrap();
        let fresh: u64 = after.iter().filter(|c| !before.contains(&c.sha256)).map(|c| c.size).sum();
        // 17 edits, each costing a chunk or two of about 64 KiB.
        assert!(fresh < 17 * 2 * MAX_CHUNK as u64 && fresh > 0, "{fresh} new bytes");
    }

    #[test]
    fn empty_and_tiny_files_make_at_most_one_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"").unwrap();
        assert!(chunk_reader(std::fs::File::open(&path).unwrap()).unwrap().is_empty());
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(chunk_reader(std::fs::File::open(&path).unwrap()).unwrap().len(), 1);
    }
}
