//! Packed segments: a finished run's log, kept in a fraction of the space.
//!
//! While a run logs, its records go into memory-mapped segments, framed one by one (a length and a
//! CRC each), with the row's full clock readings: that is what survives a SIGKILL at any point.
//! Once nothing will be appended, a segment is rewritten as `NNNNNNNN.pack`, a lossless transform
//! of the same bytes: the frames' headers are dropped (one CRC covers the whole segment), a history
//! row's sequence number, step, timestamp and runtime become differences from the row before, and
//! the result is deflated. Readers ([`super::WalReader`]) rebuild the segment's bytes exactly,
//! positions included, so that the uploader and `cairn sync` read a packed log as they read the
//! original.
//!
//! The pack is written to a temporary file, made durable, read back and compared with the segment
//! byte for byte before the segment is removed: a crash at any point leaves the segment, the pack,
//! or both (readers then take the segment). A segment too small to be worth a pack is cut to its
//! records instead (the rest of the file is zeros, and disk blocks reserved ahead of the writer).
//!
//! Layout: `"CRNP" | version: u8 | data length: u64 | records: u64 | crc32 of the data: u32 |
//! deflate(records)`, where each record is `varint(payload length)` followed by the payload, or, for
//! a history row, `0x80 | type` and the differences as zigzag varints, then the rest of the row.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use cairn_types::wire::{FRAME_HEADER_LEN, Frame, RecordType, frame_header, put_varint, read_frame};
use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;

use super::{segment_path, split_position};

const MAGIC: &[u8; 4] = b"CRNP";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 8 + 8 + 4;
/// A history row, transformed.
const PACKED_HISTORY: u8 = 0x80 | RecordType::History as u8;
/// Segments with fewer bytes of records than this are cut to their records, not packed: the pack
/// would save little, and its file's `fsync` costs a short run's `finish` more than the rest.
pub const PACK_MIN_BYTES: usize = 256 << 10;

pub fn pack_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:08}.pack"))
}

/// What [`pack_log`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PackReport {
    pub packed: usize,
    pub trimmed: usize,
    /// Bytes the segments' records took, and what their files take now.
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Packs the log in `dir` whose records end at `end` (nothing may be appended to it any more).
/// A segment that holds anything past its records (damage) is left as it is, for `cairn sync` to
/// report.
pub fn pack_log(dir: &Path, end: u64) -> io::Result<PackReport> {
    let (last, _) = split_position(end);
    let mut report = PackReport::default();
    for segment in 0..=last {
        let path = segment_path(dir, segment);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if file.metadata()?.len() == 0 {
            continue;
        }
        // Mapped, not read: a segment file is 64 MiB, mostly the zeros after its records.
        // SAFETY: nothing writes the log any more (the caller's contract); the file is only read.
        let data = unsafe { memmap2::Mmap::map(&file)? };
        let used = records_end(&data);
        if !ends_clean(&data[used..]) {
            continue;
        }
        report.bytes_before += used as u64;
        if used < PACK_MIN_BYTES {
            if used > 0 && data.len() > used {
                OpenOptions::new().write(true).open(&path)?.set_len(used as u64)?;
            }
            report.trimmed += 1;
            report.bytes_after += used as u64;
            continue;
        }
        let packed = encode(&data[..used])?;
        // Nothing is removed that the pack does not give back exactly.
        if decode(&packed)? != data[..used] {
            return Err(io::Error::other(format!("the pack of {} does not read back as the segment", path.display())));
        }
        let target = pack_path(dir, segment);
        let tmp = target.with_extension("pack.tmp");
        {
            let mut file = File::create(&tmp)?;
            file.write_all(&packed)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &target)?;
        sync_dir(dir);
        std::fs::remove_file(&path)?;
        report.packed += 1;
        report.bytes_after += packed.len() as u64;
    }
    Ok(report)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Whether what follows a segment's last complete record is the zeros of its unwritten tail, as
/// far as a torn or damaged write would reach (the whole tail is `cairn sync`'s to check).
fn ends_clean(tail: &[u8]) -> bool {
    !matches!(read_frame(tail), Frame::Torn) && tail[..tail.len().min(TAIL_CHECK_BYTES)].iter().all(|&b| b == 0)
}

/// Bytes after the last record that must be zeros for a segment to be packed.
const TAIL_CHECK_BYTES: usize = 64 << 10;

/// The end of the complete records at the start of `data`.
fn records_end(data: &[u8]) -> usize {
    let mut at = 0;
    while let Frame::Record(payload) = read_frame(&data[at..]) {
        at += FRAME_HEADER_LEN + payload.len();
    }
    at
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A history row's head: the fields that change little from one row to the next.
#[derive(Clone, Copy, Default)]
struct Head {
    seq: u64,
    step: i64,
    timestamp: i64,
    runtime: i64,
}

/// Splits a history payload into its head, flags and the rest (the fields), or None when it is
/// not one that re-encodes to the same bytes (then it is packed as it is).
fn parse_history(payload: &[u8]) -> Option<(Head, u8, &[u8])> {
    let mut r = cairn_types::wire::Reader::new(payload);
    if r.u8().ok()? != RecordType::History as u8 {
        return None;
    }
    let seq = r.varint().ok()?;
    let step = unzigzag(r.varint().ok()?);
    let flags = r.u8().ok()?;
    let timestamp = r.i64().ok()?;
    let runtime = r.i64().ok()?;
    let rest = &payload[r.position()..];
    Some((Head { seq, step, timestamp, runtime }, flags, rest))
}

fn encode(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = Vec::with_capacity(data.len() / 2);
    let mut prev = Head::default();
    let mut records = 0u64;
    let mut at = 0;
    while let Frame::Record(payload) = read_frame(&data[at..]) {
        at += FRAME_HEADER_LEN + payload.len();
        records += 1;
        put_varint(&mut stream, payload.len() as u64);
        match parse_history(payload) {
            Some((head, flags, rest)) => {
                stream.push(PACKED_HISTORY);
                put_varint(&mut stream, zigzag(head.seq.wrapping_sub(prev.seq) as i64));
                put_varint(&mut stream, zigzag(head.step.wrapping_sub(prev.step)));
                stream.push(flags);
                put_varint(&mut stream, zigzag(head.timestamp.wrapping_sub(prev.timestamp)));
                put_varint(&mut stream, zigzag(head.runtime.wrapping_sub(prev.runtime)));
                stream.extend_from_slice(rest);
                prev = head;
            }
            None => stream.extend_from_slice(payload),
        }
    }
    let mut out = Vec::with_capacity(HEADER_LEN + stream.len() / 4);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&records.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    // The fastest level: a packed log is read rarely, and the rows' differences do most of the
    // work (level 6 saves a few percent more at four times the time).
    let mut encoder = DeflateEncoder::new(out, Compression::fast());
    encoder.write_all(&stream)?;
    encoder.finish()
}

fn damaged(why: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("a packed segment is damaged: {why}"))
}

/// Rebuilds the segment's bytes from a pack, and checks them against its CRC.
pub fn decode(packed: &[u8]) -> io::Result<Vec<u8>> {
    if packed.len() < HEADER_LEN || &packed[..4] != MAGIC {
        return Err(damaged("it does not start as a pack"));
    }
    if packed[4] != VERSION {
        return Err(damaged(format!("version {} is not one this cairn reads (it reads {VERSION})", packed[4])));
    }
    let data_len = u64::from_le_bytes(packed[5..13].try_into().expect("8 bytes"));
    let records = u64::from_le_bytes(packed[13..21].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(packed[21..25].try_into().expect("4 bytes"));
    if data_len > super::SEGMENT_BYTES.max(cairn_types::wire::MAX_RECORD_LEN * 2) as u64 {
        return Err(damaged(format!("it claims {data_len} bytes of records")));
    }
    let mut stream = Vec::new();
    DeflateDecoder::new(&packed[HEADER_LEN..]).take(data_len * 2 + 1024).read_to_end(&mut stream).map_err(damaged)?;
    let mut data = Vec::with_capacity(data_len as usize);
    let mut r = cairn_types::wire::Reader::new(&stream);
    let mut prev = Head::default();
    let mut payload = Vec::new();
    for _ in 0..records {
        let len = r.varint().map_err(damaged)? as usize;
        if len == 0 || data.len() + FRAME_HEADER_LEN + len > data_len as usize {
            return Err(damaged("a record runs past the segment's end"));
        }
        payload.clear();
        let first = r.u8().map_err(damaged)?;
        if first == PACKED_HISTORY {
            let head = Head {
                seq: prev.seq.wrapping_add(unzigzag(r.varint().map_err(damaged)?) as u64),
                step: prev.step.wrapping_add(unzigzag(r.varint().map_err(damaged)?)),
                timestamp: 0,
                runtime: 0,
            };
            let flags = r.u8().map_err(damaged)?;
            let head = Head {
                timestamp: prev.timestamp.wrapping_add(unzigzag(r.varint().map_err(damaged)?)),
                runtime: prev.runtime.wrapping_add(unzigzag(r.varint().map_err(damaged)?)),
                ..head
            };
            payload.push(RecordType::History as u8);
            put_varint(&mut payload, head.seq);
            put_varint(&mut payload, zigzag(head.step));
            payload.push(flags);
            payload.extend_from_slice(&head.timestamp.to_le_bytes());
            payload.extend_from_slice(&head.runtime.to_le_bytes());
            let rest = len.checked_sub(payload.len()).ok_or_else(|| damaged("a history row is shorter than its head"))?;
            payload.extend_from_slice(r.bytes(rest).map_err(damaged)?);
            prev = head;
        } else {
            payload.push(first);
            payload.extend_from_slice(r.bytes(len - 1).map_err(damaged)?);
        }
        data.extend_from_slice(&frame_header(&payload));
        data.extend_from_slice(&payload);
    }
    if data.len() != data_len as usize || !r.is_empty() {
        return Err(damaged("its records do not add up to its length"));
    }
    if crc32fast::hash(&data) != crc {
        return Err(damaged("its records do not match their checksum"));
    }
    Ok(data)
}

/// Reads the pack of `segment` in `dir`, rebuilt as the segment's bytes; None when there is none.
pub fn read_pack(dir: &Path, segment: u64) -> io::Result<Option<Vec<u8>>> {
    let path = pack_path(dir, segment);
    match std::fs::read(&path) {
        Ok(packed) => decode(&packed).map(Some).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{WalReader, WalWriter, position, scan_end};
    use super::*;
    use cairn_types::value::Value;
    use cairn_types::wire::payload;

    fn log_rows(writer: &mut WalWriter, rows: std::ops::Range<i64>) {
        let mut buf = Vec::new();
        for i in rows {
            buf.clear();
            payload::history_head(&mut buf, i as u64, i * 3 - 7, 1, 1_764_000_000_000_000 + i * 1_234 + (i % 7) * 99, i * 1_230, 2);
            payload::history_float_field(&mut buf, 1, (i as f64 * 0.37).sin());
            payload::history_field(&mut buf, 2, &Value::from(format!("row {i}")));
            writer.append(&buf).unwrap();
            if i % 1000 == 0 {
                buf.clear();
                payload::key_def(&mut buf, 100 + i as u64, cairn_types::wire::KeyStream::History, &["a", "b"]);
                writer.append(&buf).unwrap();
            }
        }
    }

    /// A log of `rows` in a new directory, and where it ends.
    fn written_log(rows: std::ops::Range<i64>) -> (tempfile::TempDir, u64) {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = WalWriter::create(dir.path()).unwrap();
        log_rows(&mut writer, rows);
        let end = writer.end();
        (dir, end)
    }

    fn all_records(dir: &Path) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        WalReader::new(dir)
            .scan(0, u64::MAX, |pos, frame, _| {
                out.push((pos, frame.to_vec()));
                true
            })
            .unwrap();
        out
    }

    #[test]
    fn a_packed_log_reads_back_exactly_and_is_small() {
        let (dir, end) = written_log(0..20_000);
        let before = all_records(dir.path());
        let report = pack_log(dir.path(), end).unwrap();
        assert_eq!(report.packed, 1, "{report:?}");
        assert!(!segment_path(dir.path(), 0).exists(), "the segment is replaced by its pack");
        assert!(report.bytes_after * 3 < report.bytes_before, "{report:?}");
        assert_eq!(all_records(dir.path()), before, "the same records at the same positions");
        assert_eq!(scan_end(dir.path()).unwrap(), end);
        // A writer that continues the log starts a new segment after the pack.
        let mut writer = WalWriter::open_append(dir.path()).unwrap();
        writer.append(b"\x08more").unwrap();
        assert_eq!(split_position(writer.end()).0, 1);
        let after = all_records(dir.path());
        assert_eq!(after.len(), before.len() + 1);
        assert_eq!(after.last().unwrap().0, position(1, 0));
    }

    #[test]
    fn a_short_log_is_cut_to_its_records() {
        let (dir, end) = written_log(0..10);
        let before = all_records(dir.path());
        let report = pack_log(dir.path(), end).unwrap();
        assert_eq!((report.packed, report.trimmed), (0, 1));
        assert_eq!(std::fs::metadata(segment_path(dir.path(), 0)).unwrap().len(), split_position(end).1 as u64);
        assert_eq!(all_records(dir.path()), before);
        let mut writer = WalWriter::open_append(dir.path()).unwrap();
        writer.append(b"\x08more").unwrap();
        assert_eq!(all_records(dir.path()).len(), before.len() + 1);
    }

    #[test]
    fn a_damaged_log_is_not_packed_and_a_damaged_pack_is_an_error() {
        let (dir, end) = written_log(0..20_000);
        let seg = segment_path(dir.path(), 0);
        let mut bytes = std::fs::read(&seg).unwrap();
        let (_, used) = split_position(end);
        bytes[used / 2] ^= 0x10;
        std::fs::write(&seg, &bytes).unwrap();
        let report = pack_log(dir.path(), scan_end(dir.path()).unwrap()).unwrap();
        assert_eq!(report.packed, 0, "damage stays where `cairn sync` reports it");
        assert!(seg.exists());

        bytes[used / 2] ^= 0x10;
        std::fs::write(&seg, &bytes).unwrap();
        pack_log(dir.path(), end).unwrap();
        let pack = pack_path(dir.path(), 0);
        let mut packed = std::fs::read(&pack).unwrap();
        let n = packed.len();
        packed[n - 10] ^= 0x01;
        std::fs::write(&pack, &packed).unwrap();
        let err = WalReader::new(dir.path()).scan(0, u64::MAX, |_, _, _| true).unwrap_err();
        assert!(err.to_string().contains("00000000.pack: a packed segment is damaged"), "{err}");
    }

    #[test]
    fn a_crash_between_pack_and_removal_reads_the_segment() {
        let (dir, end) = written_log(0..20_000);
        let seg = segment_path(dir.path(), 0);
        let copy = std::fs::read(&seg).unwrap();
        let before = all_records(dir.path());
        pack_log(dir.path(), end).unwrap();
        // As if the process died after the rename: both files.
        std::fs::write(&seg, &copy).unwrap();
        std::fs::write(pack_path(dir.path(), 0).with_extension("pack.tmp"), b"partial").unwrap();
        assert_eq!(all_records(dir.path()), before);
        // Packing again finishes the job.
        pack_log(dir.path(), end).unwrap();
        assert!(!seg.exists());
        assert_eq!(all_records(dir.path()), before);
    }
}
