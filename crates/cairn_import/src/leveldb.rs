//! The record log of a W&B offline run (`run-<id>.wandb`): LevelDB's log format with a W&B header.
//!
//! The file starts with `:W&B`, the magic `0xBEE1` (little-endian) and a version byte. From there
//! it is cut into 32 KiB blocks, counted from the start of the file, each holding tightly packed
//! chunks: a 4-byte checksum (CRC-32, IEEE, over the chunk type and the payload), a 2-byte length,
//! a type byte (full, first, middle, last) and the payload. A record is one full chunk or a first,
//! middles and a last. Fewer than 7 bytes left in a block are zero padding.
//!
//! A file whose writer was killed ends inside a record. [`Records`] yields every whole record
//! before the damage and then stops, saying where and why in [`Records::damage`]: nothing after a
//! bad checksum is trusted. It reads a block at a time, so a log of any size takes 32 KiB.

/// The size of a block.
pub const BLOCK: usize = 32 * 1024;
const CHUNK_HEADER: usize = 7;
const IDENT: &[u8; 4] = b":W&B";
const MAGIC: u16 = 0xBEE1;
const FILE_HEADER: usize = 7;

const FULL: u8 = 1;
const FIRST: u8 = 2;
const MIDDLE: u8 = 3;
const LAST: u8 = 4;

/// Where reading stopped before the end of the file, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The byte offset of the first record that could not be read.
    pub offset: u64,
    pub reason: String,
}

/// The records of a log, in order, read a block at a time from any reader.
#[derive(Debug)]
pub struct Records<R> {
    source: R,
    /// The current block and where it starts in the file.
    block: Vec<u8>,
    block_start: u64,
    /// The next chunk's offset in the block.
    pos: usize,
    damage: Option<Damage>,
    /// Set once a short block was read: it was the last.
    ended: bool,
}

/// Fills `buf` as far as the source goes; returns how much it read.
fn read_full(source: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl<R: std::io::Read> Records<R> {
    /// Checks the W&B header; the error says what the file is not.
    pub fn new(mut source: R) -> Result<Records<R>, String> {
        let mut block = vec![0u8; BLOCK];
        let n = read_full(&mut source, &mut block).map_err(|e| format!("cannot read it: {e}"))?;
        block.truncate(n);
        if n < FILE_HEADER || &block[..4] != IDENT {
            return Err("not a W&B run log: it does not start with \":W&B\"".to_owned());
        }
        let magic = u16::from_le_bytes([block[4], block[5]]);
        if magic != MAGIC {
            return Err(format!("not a W&B run log: its magic number is {magic:#06x}, not {MAGIC:#06x}"));
        }
        if block[6] != 0 {
            return Err(format!("a W&B run log of version {}, which this reader does not know (it reads version 0)", block[6]));
        }
        let ended = n < BLOCK;
        Ok(Records { source, block, block_start: 0, pos: FILE_HEADER, damage: None, ended })
    }

    /// Set once reading stopped short of the end of the file.
    pub fn damage(&self) -> Option<&Damage> {
        self.damage.as_ref()
    }

    /// The byte offset just past the last chunk read.
    pub fn offset(&self) -> u64 {
        self.block_start + self.pos as u64
    }

    fn stop(&mut self, offset: u64, reason: impl Into<String>) -> Option<Vec<u8>> {
        self.damage = Some(Damage { offset, reason: reason.into() });
        None
    }

    /// Moves to the next block; false at the end of the file.
    fn next_block(&mut self) -> Result<bool, String> {
        if self.ended {
            return Ok(false);
        }
        self.block_start += BLOCK as u64;
        self.block.resize(BLOCK, 0);
        let n = read_full(&mut self.source, &mut self.block).map_err(|e| format!("cannot read past byte {}: {e}", self.block_start))?;
        self.block.truncate(n);
        self.pos = 0;
        self.ended = n < BLOCK;
        Ok(n > 0)
    }
}

impl<R: std::io::Read> Iterator for Records<R> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.damage.is_some() {
            return None;
        }
        let start = self.offset();
        let mut assembled: Option<Vec<u8>> = None;
        loop {
            // Fewer bytes than a header left in a full block are padding.
            if self.pos + CHUNK_HEADER > self.block.len() {
                let short = self.block.len() < BLOCK;
                if short && self.pos < self.block.len() {
                    return self.stop(start, "the file ends inside a chunk header");
                }
                match self.next_block() {
                    Ok(true) => continue,
                    Ok(false) => {
                        return match assembled {
                            Some(_) => self.stop(start, "the file ends inside a record"),
                            None => None,
                        };
                    }
                    Err(e) => return self.stop(start, e),
                }
            }
            let pos = self.pos;
            let at = self.block_start + pos as u64;
            let header = &self.block[pos..pos + CHUNK_HEADER];
            let checksum = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let length = u16::from_le_bytes([header[4], header[5]]) as usize;
            let kind = header[6];
            if checksum == 0 && length == 0 && kind == 0 {
                // Zeros where a chunk would start: space the writer never filled. The rest of the
                // block is unused; a record cannot be cut by it.
                if assembled.is_some() {
                    return self.stop(start, format!("zeros at byte {at} inside a record"));
                }
                if self.block[pos..].iter().any(|&b| b != 0) {
                    return self.stop(at, "zeros where a chunk should start");
                }
                self.pos = self.block.len().max(BLOCK);
                continue;
            }
            if pos + CHUNK_HEADER + length > BLOCK {
                return self.stop(start, format!("a chunk at byte {at} is longer than its block"));
            }
            let end = pos + CHUNK_HEADER + length;
            if end > self.block.len() {
                return self.stop(start, "the file ends inside a record");
            }
            let payload = &self.block[pos + CHUNK_HEADER..end];
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&[kind]);
            hasher.update(payload);
            if hasher.finalize() != checksum {
                return self.stop(start, format!("the chunk at byte {at} fails its checksum"));
            }
            self.pos = end;
            match (kind, assembled.as_mut()) {
                (FULL, None) => return Some(payload.to_vec()),
                (FIRST, None) => assembled = Some(payload.to_vec()),
                (MIDDLE, Some(record)) => record.extend_from_slice(payload),
                (LAST, Some(record)) => {
                    record.extend_from_slice(payload);
                    return assembled;
                }
                (FULL | FIRST, Some(_)) => return self.stop(start, format!("a record starts at byte {at} before the one before it ended")),
                (MIDDLE | LAST, None) => return self.stop(at, format!("a record continues at byte {at} that never started")),
                (other, _) => return self.stop(at, format!("the chunk at byte {at} has the unknown type {other}")),
            }
        }
    }
}

/// Writes a log as the W&B client does, for tests.
#[doc(hidden)]
pub fn write_log(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::from(&IDENT[..]);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.push(0);
    for record in records {
        let mut rest = &record[..];
        let mut first = true;
        loop {
            let left_in_block = BLOCK - out.len() % BLOCK;
            if left_in_block < CHUNK_HEADER {
                out.resize(out.len() + left_in_block, 0);
                continue;
            }
            let room = left_in_block - CHUNK_HEADER;
            let take = rest.len().min(room);
            let last = take == rest.len();
            let kind = match (first, last) {
                (true, true) => FULL,
                (true, false) => FIRST,
                (false, false) => MIDDLE,
                (false, true) => LAST,
            };
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&[kind]);
            hasher.update(&rest[..take]);
            out.extend_from_slice(&hasher.finalize().to_le_bytes());
            out.extend_from_slice(&(take as u16).to_le_bytes());
            out.push(kind);
            out.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            first = false;
            if last {
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize) -> Vec<Vec<u8>> {
        // Sizes that put records across block boundaries and leave sub-header tails.
        (0..n).map(|i| vec![(i % 251) as u8; (i * 7919) % 70_000 + 1]).collect()
    }

    #[test]
    fn records_round_trip_across_blocks() {
        let written = records(40);
        let log = write_log(&written);
        let mut read = Records::new(&log[..]).unwrap();
        let got: Vec<Vec<u8>> = read.by_ref().collect();
        assert_eq!(got, written);
        assert_eq!(read.damage(), None);
    }

    #[test]
    fn a_truncated_log_yields_every_whole_record_and_says_where_it_stopped() {
        let written = records(40);
        let log = write_log(&written);
        for cut in [log.len() - 1, log.len() / 2, BLOCK + 3, 20] {
            let mut read = Records::new(&log[..cut]).unwrap();
            let got: Vec<Vec<u8>> = read.by_ref().collect();
            assert!(!got.is_empty() || cut < 100, "cut at {cut}");
            assert_eq!(got[..], written[..got.len()], "cut at {cut}");
            let damage = read.damage().expect("a cut inside a record is damage");
            assert!(damage.offset as usize <= cut, "{damage:?}");
        }
    }

    #[test]
    fn a_flipped_bit_stops_reading_at_the_record_it_is_in() {
        let written = records(10);
        let mut log = write_log(&written);
        let at = log.len() / 2;
        log[at] ^= 0x10;
        let mut read = Records::new(&log[..]).unwrap();
        let got: Vec<Vec<u8>> = read.by_ref().collect();
        assert!(got.len() < written.len());
        assert_eq!(got[..], written[..got.len()]);
        assert!(read.damage().unwrap().reason.contains("checksum"), "{:?}", read.damage());
    }

    #[test]
    fn other_files_are_refused_by_name() {
        assert!(Records::new(&b"SQLite format 3\0"[..]).unwrap_err().contains(":W&B"));
        assert!(Records::new(&b":W&B\x00\x00\x00"[..]).unwrap_err().contains("magic"));
        assert!(Records::new(&b":W&B\xe1\xbe\x07"[..]).unwrap_err().contains("version 7"));
    }
}
