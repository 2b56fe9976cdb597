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
use std::io::{self, BufRead, Read, Seek, Write};
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
        let file_len = file.metadata()?.len();
        if file_len == 0 {
            continue;
        }
        // Read, not mapped, and streamed through small buffers both ways: a finishing training
        // process neither maps its log once more (its resident memory would count those pages
        // again) nor holds a copy of it.
        let Some(scan) = scan(&file)? else { continue };
        let used = scan.used;
        report.bytes_before += used;
        if used < PACK_MIN_BYTES as u64 {
            if used > 0 && file_len > used {
                OpenOptions::new().write(true).open(&path)?.set_len(used)?;
            }
            report.trimmed += 1;
            report.bytes_after += used;
            continue;
        }
        let target = pack_path(dir, segment);
        let tmp = target.with_extension("pack.tmp");
        let packed_len = {
            let out = std::io::BufWriter::with_capacity(STAGE_BYTES, File::create(&tmp)?);
            let mut out = encode(frames(&file)?, &scan, out)?.into_inner().map_err(|e| e.into_error())?;
            out.flush()?;
            out.sync_all()?;
            out.metadata()?.len()
        };
        // Nothing is removed that the pack does not give back exactly.
        let mut original = frames(&file)?;
        let same = decode_each(File::open(&tmp)?, |frame| Ok(original.next_frame()? == Some(frame)))?;
        if !same || original.at != used {
            let _ = std::fs::remove_file(&tmp);
            return Err(io::Error::other(format!("the pack of {} does not read back as the segment", path.display())));
        }
        std::fs::rename(&tmp, &target)?;
        sync_dir(dir);
        std::fs::remove_file(&path)?;
        report.packed += 1;
        report.bytes_after += packed_len;
    }
    Ok(report)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Bytes after the last record that must be zeros for a segment to be packed: as far as a torn
/// or damaged write would reach (the whole tail is `cairn sync`'s to check).
const TAIL_CHECK_BYTES: usize = 64 << 10;

/// A segment's frames, read in order through a buffer.
struct Frames<'a> {
    reader: io::BufReader<&'a File>,
    /// Bytes of complete frames read.
    at: u64,
    frame: Vec<u8>,
    /// The read stopped at a frame that does not check out (not at the zeros of the tail).
    torn: bool,
}

/// Reads `file`'s frames from its start (the handle's offset is shared by every reader of it).
fn frames(mut file: &File) -> io::Result<Frames<'_>> {
    file.seek(io::SeekFrom::Start(0))?;
    Ok(Frames { reader: io::BufReader::with_capacity(STAGE_BYTES, file), at: 0, frame: Vec::new(), torn: false })
}

impl Frames<'_> {
    /// The next complete frame (header and payload), or None at the end of the records.
    fn next_frame(&mut self) -> io::Result<Option<&[u8]>> {
        let mut header = [0u8; FRAME_HEADER_LEN];
        if !read_full(&mut self.reader, &mut header)? {
            return Ok(None);
        }
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        if len == 0 {
            self.torn = header.iter().any(|&b| b != 0);
            return Ok(None);
        }
        if len > cairn_types::wire::MAX_RECORD_LEN {
            self.torn = true;
            return Ok(None);
        }
        self.frame.clear();
        self.frame.extend_from_slice(&header);
        self.frame.resize(FRAME_HEADER_LEN + len, 0);
        if !read_full(&mut self.reader, &mut self.frame[FRAME_HEADER_LEN..])? || !matches!(read_frame(&self.frame), Frame::Record(_)) {
            self.torn = true;
            return Ok(None);
        }
        self.at += self.frame.len() as u64;
        Ok(Some(&self.frame))
    }
}

/// Fills `buf`, or returns false at the end of the file.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// What a first read of a segment found.
struct Scan {
    used: u64,
    records: u64,
    crc: u32,
}

/// Reads a segment's records, or None when something other than zeros follows them.
fn scan(file: &File) -> io::Result<Option<Scan>> {
    let mut frames = frames(file)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut records = 0;
    while let Some(frame) = frames.next_frame()? {
        hasher.update(frame);
        records += 1;
    }
    if frames.torn {
        return Ok(None);
    }
    let mut tail = vec![0u8; TAIL_CHECK_BYTES];
    let mut filled = 0;
    loop {
        match frames.reader.read(&mut tail[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                if filled == tail.len() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if tail[..filled].iter().any(|&b| b != 0) {
        return Ok(None);
    }
    Ok(Some(Scan { used: frames.at, records, crc: hasher.finalize() }))
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

/// Bytes gathered before they go to the compressor, and read from the decompressor at a time.
const STAGE_BYTES: usize = 64 << 10;

/// Writes the pack of the records that `frames` reads (`scan` found them) to `out`, and returns
/// `out`.
fn encode<W: Write>(mut frames: Frames<'_>, scan: &Scan, mut out: W) -> io::Result<W> {
    out.write_all(MAGIC)?;
    out.write_all(&[VERSION])?;
    out.write_all(&scan.used.to_le_bytes())?;
    out.write_all(&scan.records.to_le_bytes())?;
    out.write_all(&scan.crc.to_le_bytes())?;
    // The fastest level: a packed log is read rarely, and the rows' differences do most of the
    // work (level 6 saves a few percent more at four times the time).
    let mut encoder = DeflateEncoder::new(out, Compression::fast());
    let mut stage = Vec::with_capacity(STAGE_BYTES + 64);
    let mut prev = Head::default();
    while let Some(frame) = frames.next_frame()? {
        let payload = &frame[FRAME_HEADER_LEN..];
        put_varint(&mut stage, payload.len() as u64);
        match parse_history(payload) {
            Some((head, flags, rest)) => {
                stage.push(PACKED_HISTORY);
                put_varint(&mut stage, zigzag(head.seq.wrapping_sub(prev.seq) as i64));
                put_varint(&mut stage, zigzag(head.step.wrapping_sub(prev.step)));
                stage.push(flags);
                put_varint(&mut stage, zigzag(head.timestamp.wrapping_sub(prev.timestamp)));
                put_varint(&mut stage, zigzag(head.runtime.wrapping_sub(prev.runtime)));
                stage.extend_from_slice(rest);
                prev = head;
            }
            None => stage.extend_from_slice(payload),
        }
        if stage.len() >= STAGE_BYTES {
            encoder.write_all(&stage)?;
            stage.clear();
        }
    }
    encoder.write_all(&stage)?;
    encoder.finish()
}

fn damaged(why: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("a packed segment is damaged: {why}"))
}

fn read_u8(r: &mut impl BufRead) -> io::Result<u8> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b).map_err(|_| damaged("it ends inside a record"))?;
    Ok(b[0])
}

fn read_varint(r: &mut impl BufRead) -> io::Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = read_u8(r)?;
        v |= ((b & 0x7f) as u64) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(damaged("a number in it is too long"))
}

/// Rebuilds a segment's bytes from a pack, a record's frame at a time: `sink` gets each frame
/// and returns false to stop (then this returns false). The length and the CRC are checked at
/// the end.
fn decode_each(packed: impl Read, mut sink: impl FnMut(&[u8]) -> io::Result<bool>) -> io::Result<bool> {
    let mut packed = io::BufReader::with_capacity(STAGE_BYTES, packed);
    let mut header = [0u8; HEADER_LEN];
    packed.read_exact(&mut header).map_err(|_| damaged("it does not start as a pack"))?;
    if &header[..4] != MAGIC {
        return Err(damaged("it does not start as a pack"));
    }
    if header[4] != VERSION {
        return Err(damaged(format!("version {} is not one this cairn reads (it reads {VERSION})", header[4])));
    }
    let data_len = u64::from_le_bytes(header[5..13].try_into().expect("8 bytes"));
    let records = u64::from_le_bytes(header[13..21].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(header[21..25].try_into().expect("4 bytes"));
    let mut stream = io::BufReader::with_capacity(STAGE_BYTES, DeflateDecoder::new(packed));
    let mut hasher = crc32fast::Hasher::new();
    let mut done = 0u64;
    let mut prev = Head::default();
    let mut frame = Vec::new();
    for _ in 0..records {
        let len = read_varint(&mut stream)? as usize;
        if len == 0 || len > cairn_types::wire::MAX_RECORD_LEN || done + (FRAME_HEADER_LEN + len) as u64 > data_len {
            return Err(damaged("a record runs past the segment's end"));
        }
        frame.clear();
        frame.resize(FRAME_HEADER_LEN, 0);
        let first = read_u8(&mut stream)?;
        if first == PACKED_HISTORY {
            let seq = prev.seq.wrapping_add(unzigzag(read_varint(&mut stream)?) as u64);
            let step = prev.step.wrapping_add(unzigzag(read_varint(&mut stream)?));
            let flags = read_u8(&mut stream)?;
            let timestamp = prev.timestamp.wrapping_add(unzigzag(read_varint(&mut stream)?));
            let runtime = prev.runtime.wrapping_add(unzigzag(read_varint(&mut stream)?));
            frame.push(RecordType::History as u8);
            put_varint(&mut frame, seq);
            put_varint(&mut frame, zigzag(step));
            frame.push(flags);
            frame.extend_from_slice(&timestamp.to_le_bytes());
            frame.extend_from_slice(&runtime.to_le_bytes());
            let head_len = frame.len() - FRAME_HEADER_LEN;
            if len < head_len {
                return Err(damaged("a history row is shorter than its head"));
            }
            frame.resize(FRAME_HEADER_LEN + len, 0);
            stream.read_exact(&mut frame[FRAME_HEADER_LEN + head_len..]).map_err(|_| damaged("it ends inside a record"))?;
            prev = Head { seq, step, timestamp, runtime };
        } else {
            frame.push(first);
            frame.resize(FRAME_HEADER_LEN + len, 0);
            stream.read_exact(&mut frame[FRAME_HEADER_LEN + 1..]).map_err(|_| damaged("it ends inside a record"))?;
        }
        let header = frame_header(&frame[FRAME_HEADER_LEN..]);
        frame[..FRAME_HEADER_LEN].copy_from_slice(&header);
        hasher.update(&frame);
        done += frame.len() as u64;
        if !sink(&frame)? {
            return Ok(false);
        }
    }
    if done != data_len || stream.read(&mut [0u8; 1]).map_err(damaged)? != 0 {
        return Err(damaged("its records do not add up to its length"));
    }
    if hasher.finalize() != crc {
        return Err(damaged("its records do not match their checksum"));
    }
    Ok(true)
}

/// Rebuilds the segment's bytes from a pack, and checks them against its CRC.
pub fn decode(packed: impl Read) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    decode_each(packed, |frame| {
        data.extend_from_slice(frame);
        Ok(true)
    })?;
    Ok(data)
}

/// Reads the pack of `segment` in `dir`, rebuilt as the segment's bytes; None when there is none.
pub fn read_pack(dir: &Path, segment: u64) -> io::Result<Option<Vec<u8>>> {
    let path = pack_path(dir, segment);
    match std::fs::read(&path) {
        Ok(packed) => decode(packed.as_slice()).map(Some).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
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
