//! The run directory's write-ahead log.
//!
//! Records are appended to memory-mapped segment files (`wal/00000000.seg`, ...). A write into a
//! shared file mapping lands in the kernel's page cache at once, so what `log` accepted survives a
//! SIGKILL of the process without a system call per record; `flush` makes it durable on disk too.
//!
//! A position in the log is `(segment << 40) | byte offset`. Records never span segments: a record
//! that does not fit starts the next segment. A segment file is zero-filled past its data, so a
//! reader stops at a zero length, and at a CRC mismatch (a write that a crash cut off).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use cairn_types::wire::{FRAME_HEADER_LEN, Frame, MAX_RECORD_LEN, frame_header, read_frame};
use memmap2::{Mmap, MmapMut};

mod pack;
pub use pack::{PackReport, pack_log};

/// Size of a new segment file (sparse until written).
pub const SEGMENT_BYTES: usize = 64 << 20;
const OFFSET_BITS: u32 = 40;

pub fn position(segment: u64, offset: usize) -> u64 {
    (segment << OFFSET_BITS) | offset as u64
}

pub fn split_position(position: u64) -> (u64, usize) {
    (position >> OFFSET_BITS, (position & ((1 << OFFSET_BITS) - 1)) as usize)
}

pub fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:08}.seg"))
}

/// Pages are made ready up to this far ahead of the write position, in steps of `PREFAULT_STEP`:
/// the look-ahead is what the segment holds already (at least one step), so that a short log
/// populates about twice what it wrote, not this much. The helper starts once the log passes
/// `PREFAULT_START`, so that a short run pays nothing for it.
const PREFAULT_AHEAD: usize = 4 << 20;
const PREFAULT_STEP: usize = 256 << 10;
const PREFAULT_START: usize = 64 << 10;
/// Disk blocks are reserved this far at a time (`fallocate`), ahead of the writer: a full disk then
/// fails `log` with an error, instead of killing the process with SIGBUS when it writes a page of
/// the sparse mapping that the file system cannot back.
const ALLOCATE_STEP: usize = 1 << 20;

/// A helper thread that faults in the log's pages ahead of the writer (`MADV_POPULATE_WRITE`), so
/// that `log` does not pay for the kernel zeroing fresh pages. Threads share the address space:
/// populating the writer's mapping here makes its pages present for the writer too.
struct Prefaulter {
    base: AtomicUsize,
    len: AtomicUsize,
    target: AtomicUsize,
    stop: AtomicBool,
    /// Held while populating and while the writer swaps segments, so that a mapping is never
    /// populated after it was unmapped.
    lock: Mutex<usize>,
    wake: Condvar,
}

impl Prefaulter {
    fn new(base: usize, len: usize) -> Arc<Prefaulter> {
        Arc::new(Prefaulter {
            base: AtomicUsize::new(base),
            len: AtomicUsize::new(len),
            target: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            lock: Mutex::new(0),
            wake: Condvar::new(),
        })
    }

    fn spawn(self: &Arc<Prefaulter>) -> Option<JoinHandle<()>> {
        let worker = self.clone();
        std::thread::Builder::new()
            .name("cairn-wal-prefault".into())
            .spawn(move || {
                // Pages faulted ahead spare the writer the kernel's work; they are not worth its core.
                crate::priority::lower_this_thread();
                worker.run()
            })
            .ok()
    }

    fn run(&self) {
        let mut done = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            let target = self.target.load(Ordering::Acquire).min(self.len.load(Ordering::Acquire));
            if target <= *done {
                done = self.wake.wait_timeout(done, Duration::from_millis(50)).unwrap_or_else(|e| e.into_inner()).0;
                continue;
            }
            let base = self.base.load(Ordering::Acquire);
            // One step at a time, so that a stop is seen soon.
            let end = target.min(*done + PREFAULT_STEP);
            // SAFETY: [base + done, base + end) lies inside the current segment's mapping, which
            // the writer only unmaps while holding `lock` (held here). Populating pages does not
            // change their contents.
            let result = unsafe { libc::madvise((base + *done) as *mut libc::c_void, end - *done, libc::MADV_POPULATE_WRITE) };
            if result != 0 {
                // Not supported by this kernel: the writer just faults pages in itself.
                return;
            }
            *done = end;
        }
    }

    /// Asks for the pages before `wanted` to be made ready.
    fn request(&self, wanted: usize) {
        if wanted > self.target.load(Ordering::Relaxed) {
            self.target.store(wanted, Ordering::Release);
            self.wake.notify_one();
        }
    }
}

/// Appends records. Not thread-safe by itself: the run holds it under a lock.
pub struct WalWriter {
    dir: PathBuf,
    segment: u64,
    file: File,
    map: MmapMut,
    offset: usize,
    /// Bytes of the segment file that have disk blocks reserved.
    allocated: usize,
    /// The end of complete records, published for the uploader.
    committed: Arc<AtomicU64>,
    prefault: Arc<Prefaulter>,
    prefault_thread: Option<JoinHandle<()>>,
    next_request: usize,
    /// Nothing more is appended: the log may be packed under the mapping.
    sealed: bool,
}

impl Drop for WalWriter {
    fn drop(&mut self) {
        self.stop_prefaulting();
    }
}

/// Creates and maps a segment file; a file that could not be set up is removed again, so that the
/// next attempt starts clean.
fn create_segment(dir: &Path, segment: u64, size: usize) -> io::Result<(File, MmapMut)> {
    let path = segment_path(dir, segment);
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
    let setup = || -> io::Result<MmapMut> {
        file.set_len(size as u64)?;
        reserve_blocks(&file, 0, ALLOCATE_STEP.min(size))?;
        // SAFETY: the file is ours alone to write: the run directory is locked by this process,
        // and readers only read below the published `committed` position.
        let map = unsafe { MmapMut::map_mut(&file)? };
        // Without this, the first write into the sparse file faults in (and zeroes) a large
        // folio: about 2 ms on ext4, paid by `init`. Pages ahead are prefaulted anyway.
        let _ = map.advise(memmap2::Advice::Random);
        Ok(map)
    };
    match setup() {
        Ok(map) => Ok((file, map)),
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

/// Reserves disk blocks for `[from, to)` of the file. File systems that cannot (or a platform
/// without `fallocate`) leave the file sparse: writes then work as before.
fn reserve_blocks(file: &File, from: usize, to: usize) -> io::Result<()> {
    if to <= from {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: plain system call on a file descriptor we own; mode 0 only allocates.
            let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, from as libc::off_t, (to - from) as libc::off_t) };
            if r == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => return Ok(()),
                _ => return Err(e),
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        Ok(())
    }
}

impl WalWriter {
    /// Starts a new log in `dir`, which must not hold one yet.
    pub fn create(dir: &Path) -> io::Result<WalWriter> {
        std::fs::create_dir_all(dir)?;
        Self::start_segment(dir, 0, 0)
    }

    /// A writer at the start of a new segment `segment`; `end` is where the log ends before it.
    fn start_segment(dir: &Path, segment: u64, end: u64) -> io::Result<WalWriter> {
        let (file, map) = create_segment(dir, segment, SEGMENT_BYTES)?;
        let prefault = Prefaulter::new(map.as_ptr() as usize, map.len());
        Ok(WalWriter {
            dir: dir.to_owned(),
            segment,
            file,
            map,
            offset: 0,
            allocated: ALLOCATE_STEP.min(SEGMENT_BYTES),
            committed: Arc::new(AtomicU64::new(end)),
            prefault,
            prefault_thread: None,
            next_request: PREFAULT_START,
            sealed: false,
        })
    }

    /// Continues an existing log after its last complete record (a resumed run directory). A log
    /// whose last segment was packed continues in a new segment.
    pub fn open_append(dir: &Path) -> io::Result<WalWriter> {
        let end = scan_end(dir)?;
        let (segment, offset) = split_position(end);
        let file = match OpenOptions::new().read(true).write(true).open(segment_path(dir, segment)) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound && pack::pack_path(dir, segment).exists() => return Self::start_segment(dir, segment + 1, end),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len() as usize;
        if len == 0 {
            return Self::start_segment(dir, segment + 1, end);
        }
        let clear_to = (offset + (1 << 16)).min(len);
        reserve_blocks(&file, offset, clear_to)?;
        // SAFETY: as in `create_segment`.
        let mut map = unsafe { MmapMut::map_mut(&file)? };
        // Clear whatever a torn write left behind, so readers stop at the end.
        map[offset..clear_to].iter_mut().for_each(|b| *b = 0);
        let prefault = Prefaulter::new(map.as_ptr() as usize, map.len());
        Ok(WalWriter {
            dir: dir.to_owned(),
            segment,
            file,
            map,
            offset,
            allocated: clear_to,
            committed: Arc::new(AtomicU64::new(end)),
            prefault,
            prefault_thread: None,
            next_request: offset + PREFAULT_START,
            sealed: false,
        })
    }

    fn stop_prefaulting(&mut self) {
        self.prefault.stop.store(true, Ordering::Release);
        self.prefault.wake.notify_all();
        if let Some(thread) = self.prefault_thread.take() {
            let _ = thread.join();
        }
    }

    /// Ends the log: appends fail from now on, and the segments may be packed ([`pack_log`])
    /// while this writer still maps them. Returns the log's end.
    pub fn seal(&mut self) -> u64 {
        self.stop_prefaulting();
        let _ = self.map.flush_async();
        self.sealed = true;
        self.end()
    }

    pub fn committed(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    pub fn end(&self) -> u64 {
        position(self.segment, self.offset)
    }

    /// Appends one record (its payload; the frame header is added here).
    #[inline]
    pub fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        if payload.len() > MAX_RECORD_LEN {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("a record of {} bytes is over the limit of {MAX_RECORD_LEN} bytes", payload.len())));
        }
        if self.sealed {
            return Err(io::Error::other("the log is sealed: the run has ended"));
        }
        let need = FRAME_HEADER_LEN + payload.len();
        if self.offset + need > self.map.len() {
            self.next_segment(need)?;
        }
        if self.offset + need > self.allocated {
            self.reserve(self.offset + need)?;
        }
        let at = self.offset;
        self.map[at + FRAME_HEADER_LEN..at + need].copy_from_slice(payload);
        self.map[at..at + FRAME_HEADER_LEN].copy_from_slice(&frame_header(payload));
        self.offset += need;
        self.committed.store(position(self.segment, self.offset), Ordering::Release);
        if self.offset >= self.next_request {
            if self.prefault_thread.is_none() {
                self.prefault_thread = self.prefault.spawn();
            }
            let ahead = self.offset.clamp(PREFAULT_STEP, PREFAULT_AHEAD);
            let wanted = (self.offset + ahead).next_multiple_of(PREFAULT_STEP).min(self.map.len());
            // Only pages with disk blocks reserved: populating others would take the file
            // system's space (a tmpfs's) outside the reservation. A reservation refused here
            // leaves the prefaulter where it is; `append` reports a full disk when it gets there.
            if wanted > self.allocated {
                let _ = self.reserve(wanted);
            }
            self.prefault.request(wanted.min(self.allocated));
            self.next_request = self.offset + PREFAULT_STEP;
        }
        Ok(())
    }

    #[cold]
    fn reserve(&mut self, end: usize) -> io::Result<()> {
        let target = end.next_multiple_of(ALLOCATE_STEP).min(self.map.len());
        reserve_blocks(&self.file, self.allocated, target)?;
        self.allocated = target;
        Ok(())
    }

    fn next_segment(&mut self, need: usize) -> io::Result<()> {
        let _ = self.map.flush_async();
        let size = SEGMENT_BYTES.max(need.next_power_of_two());
        let (file, map) = create_segment(&self.dir, self.segment + 1, size)?;
        {
            let mut done = self.prefault.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.prefault.base.store(map.as_ptr() as usize, Ordering::Release);
            self.prefault.len.store(map.len(), Ordering::Release);
            self.prefault.target.store(0, Ordering::Release);
            *done = 0;
            self.map = map;
        }
        self.file = file;
        self.allocated = ALLOCATE_STEP.min(size);
        self.segment += 1;
        self.offset = 0;
        self.next_request = 0;
        Ok(())
    }

    /// Starts writing dirty pages to disk without waiting: for power loss; a crash of the process
    /// loses nothing anyway.
    pub fn flush(&self) -> io::Result<()> {
        if self.sealed {
            return Ok(());
        }
        self.map.flush_async()
    }
}

/// A read-only view of one segment: the file mapped, or the bytes rebuilt from its pack.
struct SegmentView {
    index: u64,
    data: SegmentData,
}

enum SegmentData {
    Mapped(Mmap),
    Unpacked(Vec<u8>),
}

impl std::ops::Deref for SegmentData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            SegmentData::Mapped(map) => map,
            SegmentData::Unpacked(bytes) => bytes,
        }
    }
}

/// Whether the log in `dir` has a segment `index`, as written or packed.
fn segment_exists(dir: &Path, index: u64) -> bool {
    segment_path(dir, index).exists() || pack::pack_path(dir, index).exists()
}

/// Reads records from a log, in another thread of the same process or after the process died.
pub struct WalReader {
    dir: PathBuf,
    view: Option<SegmentView>,
}

impl WalReader {
    pub fn new(dir: &Path) -> WalReader {
        WalReader { dir: dir.to_owned(), view: None }
    }

    fn segment(&mut self, index: u64) -> io::Result<Option<&[u8]>> {
        if self.view.as_ref().is_none_or(|v| v.index != index) {
            // The segment first: after a crash between writing a pack and removing its segment,
            // both are there, and the segment is what was written.
            let data = match File::open(segment_path(&self.dir, index)) {
                // SAFETY: segments are only appended to, below which we never read past `end`.
                Ok(file) => SegmentData::Mapped(unsafe { Mmap::map(&file)? }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => match pack::read_pack(&self.dir, index)? {
                    Some(bytes) => SegmentData::Unpacked(bytes),
                    None => return Ok(None),
                },
                Err(e) => return Err(e),
            };
            self.view = Some(SegmentView { index, data });
        }
        Ok(self.view.as_ref().map(|v| &*v.data))
    }

    /// Calls `f(position, frame_bytes, payload)` for each complete record in `[from, end)`, and
    /// returns the position after the last one visited. `f` returns false to stop early (the
    /// record it was given is then not counted as visited).
    pub fn scan(&mut self, from: u64, end: u64, mut f: impl FnMut(u64, &[u8], &[u8]) -> bool) -> io::Result<u64> {
        let mut pos = from;
        loop {
            if pos >= end {
                return Ok(pos);
            }
            let (segment, offset) = split_position(pos);
            let (end_segment, end_offset) = split_position(end);
            let Some(map) = self.segment(segment)? else { return Ok(pos) };
            let limit = if segment == end_segment { end_offset.min(map.len()) } else { map.len() };
            let mut at = offset;
            loop {
                if at >= limit {
                    break;
                }
                match read_frame(&map[at..limit]) {
                    Frame::Record(payload) => {
                        let len = FRAME_HEADER_LEN + payload.len();
                        let frame = &map[at..at + len];
                        if !f(position(segment, at), frame, &frame[FRAME_HEADER_LEN..]) {
                            return Ok(position(segment, at));
                        }
                        at += len;
                    }
                    Frame::End => break,
                    // Damage (or a write a crash cut off): nothing after it is trusted, in this
                    // segment or a later one.
                    Frame::Torn => return Ok(position(segment, at)),
                }
            }
            if segment >= end_segment || !segment_exists(&self.dir, segment + 1) {
                return Ok(position(segment, at));
            }
            pos = position(segment + 1, 0);
        }
    }
}

/// The position after the last complete record of the log in `dir`.
pub fn scan_end(dir: &Path) -> io::Result<u64> {
    let mut reader = WalReader::new(dir);
    reader.scan(0, u64::MAX, |_, _, _| true)
}

/// Where a log stops short of what its files hold: a record there fails its check (a flipped
/// bit, a write a crash cut off, a file cut short), and `bytes_after` bytes of data follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    pub position: u64,
    pub bytes_after: u64,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (segment, offset) = split_position(self.position);
        write!(
            f,
            "the log is damaged at {}, byte {offset}: the record there does not check out, and the {} bytes after it were not read",
            segment_path(Path::new("wal"), segment).display(),
            self.bytes_after
        )
    }
}

/// Whether the log in `dir` holds data past `end` (what [`scan_end`] found): anything but the
/// zeros of a segment's unwritten tail, or a later segment.
pub fn damage_after(dir: &Path, end: u64) -> io::Result<Option<Damage>> {
    let (segment, offset) = split_position(end);
    let mut bytes_after = 0u64;
    let path = segment_path(dir, segment);
    if path.exists() {
        let data = std::fs::read(&path)?;
        if let Some(last) = data.get(offset..).and_then(|rest| rest.iter().rposition(|&b| b != 0)) {
            bytes_after += last as u64 + 1;
        }
    }
    let mut next = segment + 1;
    while let Ok(meta) = std::fs::metadata(segment_path(dir, next)).or_else(|_| std::fs::metadata(pack::pack_path(dir, next))) {
        bytes_after += meta.len();
        next += 1;
    }
    Ok((bytes_after > 0).then_some(Damage { position: end, bytes_after }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of `map` in memory (Linux's `mincore`).
    #[cfg(target_os = "linux")]
    fn resident(map: &MmapMut) -> usize {
        let page = 4096;
        let mut pages = vec![0u8; map.len().div_ceil(page)];
        // SAFETY: the range is the whole mapping, and `pages` has a byte for each of its pages.
        let rc = unsafe { libc::mincore(map.as_ptr() as *mut libc::c_void, map.len(), pages.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", io::Error::last_os_error());
        pages.iter().filter(|&&p| p & 1 != 0).count() * page
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn pages_are_made_ready_ahead_in_proportion_to_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        // On a tmpfs, reserving blocks allocates the pages themselves: nothing to see there.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        let c_path = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path and a statfs to fill.
        if unsafe { libc::statfs(c_path.as_ptr(), &mut fs) } == 0 && fs.f_type == libc::TMPFS_MAGIC {
            eprintln!("skipped: {} is a tmpfs", dir.path().display());
            return;
        }
        let mut writer = WalWriter::create(&dir.path().join("wal")).unwrap();
        let record = vec![0x08u8; 1000];
        while writer.offset < 300 << 10 {
            assert!(writer.offset < PREFAULT_START + PREFAULT_STEP);
            writer.append(&record).unwrap();
        }
        // One request so far, at `PREFAULT_START`: it makes ready one step past it, not the whole
        // look-ahead.
        let expected = (PREFAULT_START + PREFAULT_STEP).next_multiple_of(PREFAULT_STEP);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while resident(&writer.map) < expected && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        let ready = resident(&writer.map);
        assert!(ready >= writer.offset, "{ready} bytes in memory, {} written", writer.offset);
        assert!(ready <= expected, "{ready} bytes made ready for {} written", writer.offset);
        assert!(expected < PREFAULT_AHEAD);
        // Further on, about twice what was written: the look-ahead grows with the log.
        while writer.offset < 1 << 20 {
            writer.append(&record).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        let ready = resident(&writer.map);
        let bound = (2 * writer.offset).next_multiple_of(PREFAULT_STEP) + PREFAULT_STEP;
        assert!(ready >= writer.offset && ready <= bound, "{ready} bytes made ready for {} written", writer.offset);
    }

    #[test]
    fn records_survive_reopening_and_span_segments() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        let mut writer = WalWriter::create(&wal_dir).unwrap();
        writer.append(b"\x08first").unwrap();
        let big = vec![7u8; SEGMENT_BYTES + 10];
        writer.append(&big).unwrap();
        writer.append(b"\x08third").unwrap();
        let end = writer.end();
        assert_eq!(split_position(end).0, 1);
        drop(writer);

        assert_eq!(scan_end(&wal_dir).unwrap(), end);
        let mut seen = Vec::new();
        WalReader::new(&wal_dir)
            .scan(0, u64::MAX, |_, _, p| {
                seen.push(p.len());
                true
            })
            .unwrap();
        assert_eq!(seen, vec![6, SEGMENT_BYTES + 10, 6]);

        let mut writer = WalWriter::open_append(&wal_dir).unwrap();
        writer.append(b"\x08fourth").unwrap();
        let mut count = 0;
        WalReader::new(&wal_dir)
            .scan(0, u64::MAX, |_, _, _| {
                count += 1;
                true
            })
            .unwrap();
        assert_eq!(count, 4);
    }

    #[test]
    fn damage_stops_the_log_and_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = WalWriter::create(dir.path()).unwrap();
        for i in 0..10u8 {
            writer.append(&[0x08, i, i, i]).unwrap();
        }
        let clean_end = writer.end();
        drop(writer);
        assert_eq!(damage_after(dir.path(), scan_end(dir.path()).unwrap()).unwrap(), None, "a clean log is not damaged");
        // A flipped bit in the fourth record: three are read, and what follows is reported.
        let seg = segment_path(dir.path(), 0);
        let mut bytes = std::fs::read(&seg).unwrap();
        let record = FRAME_HEADER_LEN + 4;
        bytes[3 * record + FRAME_HEADER_LEN + 1] ^= 0x10;
        std::fs::write(&seg, &bytes).unwrap();
        let end = scan_end(dir.path()).unwrap();
        assert_eq!(end, position(0, 3 * record));
        let damage = damage_after(dir.path(), end).unwrap().expect("damage found");
        assert_eq!(damage.bytes_after, (split_position(clean_end).1 - 3 * record) as u64);
        assert!(damage.to_string().contains("00000000.seg, byte 36"), "{damage}");
        // A later segment after damage is not read either.
        std::fs::write(segment_path(dir.path(), 1), b"\x01\x02").unwrap();
        assert_eq!(scan_end(dir.path()).unwrap(), end);
        assert_eq!(damage_after(dir.path(), end).unwrap().unwrap().bytes_after, damage.bytes_after + 2);
    }

    #[test]
    fn a_torn_record_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = WalWriter::create(dir.path()).unwrap();
        writer.append(b"\x08one").unwrap();
        let good_end = writer.end();
        writer.append(b"\x08two!").unwrap();
        drop(writer);
        // Corrupt the last byte of the second record, as a write cut off by a crash would.
        let seg = segment_path(dir.path(), 0);
        let mut bytes = std::fs::read(&seg).unwrap();
        let (_, off) = split_position(good_end);
        bytes[off + FRAME_HEADER_LEN + 3] = 0;
        std::fs::write(&seg, &bytes).unwrap();
        assert_eq!(scan_end(dir.path()).unwrap(), good_end);
        let mut writer = WalWriter::open_append(dir.path()).unwrap();
        assert_eq!(writer.end(), good_end);
        writer.append(b"\x08three").unwrap();
        let mut seen = Vec::new();
        WalReader::new(dir.path())
            .scan(0, u64::MAX, |_, _, p| {
                seen.push(p.to_vec());
                true
            })
            .unwrap();
        assert_eq!(seen, vec![b"\x08one".to_vec(), b"\x08three".to_vec()]);
    }
}
