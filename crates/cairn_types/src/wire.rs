//! The binary record format: what the client's write-ahead log holds, and what its uploader sends.
//!
//! A *frame* is `len: u32 LE | crc32: u32 LE | payload`, where `payload[0]` is the record type and
//! the CRC covers the payload. A zero length marks the end of written data (a fresh WAL segment is
//! zero-filled); a CRC mismatch marks a torn write. Both end a scan, so a reader recovers exactly the
//! records that were completely written.
//!
//! A batch sent to the server (`application/x-cairn-batch`) is
//! `"CRNB" | version | frames... | "CRNE" | frame count: u32 LE`. The trailer makes a body cut at a
//! frame boundary detectable. A batch is self-contained: it carries a `KeyDef` for every key id its
//! records use.
//!
//! Each record of a stream carries its offset in that stream (`seq`). History rows may be amended
//! (W&B's `commit=False`): an amendment repeats the row's `seq` and `step` and adds fields.

use std::collections::HashMap;

use crate::error::{CodedError, ErrorCode};
use crate::value::{Map, Value};

pub const BATCH_MAGIC: &[u8; 4] = b"CRNB";
pub const BATCH_TRAILER: &[u8; 4] = b"CRNE";
pub const WIRE_VERSION: u8 = 1;
pub const BATCH_CONTENT_TYPE: &str = "application/x-cairn-batch";
pub const FRAME_HEADER_LEN: usize = 8;
/// The largest record accepted: 256 MiB.
pub const MAX_RECORD_LEN: usize = 256 << 20;
/// Values nested deeper than this are refused, so that decoding cannot exhaust the stack.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    RunStart = 1,
    KeyDef = 2,
    History = 3,
    Summary = 4,
    Config = 5,
    System = 6,
    Console = 7,
    Event = 8,
}

impl RecordType {
    pub fn from_u8(b: u8) -> Option<RecordType> {
        Some(match b {
            1 => RecordType::RunStart,
            2 => RecordType::KeyDef,
            3 => RecordType::History,
            4 => RecordType::Summary,
            5 => RecordType::Config,
            6 => RecordType::System,
            7 => RecordType::Console,
            8 => RecordType::Event,
            _ => return None,
        })
    }
}

/// The streams of a run that are addressed by offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    History = 0,
    Summary = 1,
    Config = 2,
    System = 3,
    Console = 4,
    Events = 5,
}

impl Stream {
    pub const ALL: [Stream; 6] = [Stream::History, Stream::Summary, Stream::Config, Stream::System, Stream::Console, Stream::Events];

    pub fn name(self) -> &'static str {
        match self {
            Stream::History => "history",
            Stream::Summary => "summary",
            Stream::Config => "config",
            Stream::System => "system",
            Stream::Console => "console",
            Stream::Events => "events",
        }
    }

    pub fn of_record(t: RecordType) -> Option<Stream> {
        Some(match t {
            RecordType::History => Stream::History,
            RecordType::Summary => Stream::Summary,
            RecordType::Config => Stream::Config,
            RecordType::System => Stream::System,
            RecordType::Console => Stream::Console,
            RecordType::Event => Stream::Events,
            RecordType::RunStart | RecordType::KeyDef => return None,
        })
    }
}

/// Which row stream a key belongs to: history keys and system-metric keys live apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyStream {
    History = 0,
    System = 1,
}

impl KeyStream {
    pub fn from_u8(b: u8) -> Option<KeyStream> {
        match b {
            0 => Some(KeyStream::History),
            1 => Some(KeyStream::System),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyStream::History => "history",
            KeyStream::System => "system",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsoleStream {
    Stdout = 0,
    Stderr = 1,
}

impl ConsoleStream {
    pub fn name(self) -> &'static str {
        match self {
            ConsoleStream::Stdout => "stdout",
            ConsoleStream::Stderr => "stderr",
        }
    }

    pub fn parse(s: &str) -> Option<ConsoleStream> {
        match s {
            "stdout" => Some(ConsoleStream::Stdout),
            "stderr" => Some(ConsoleStream::Stderr),
            _ => None,
        }
    }
}

/// A key's path: `["train", "loss"]` for `{"train": {"loss": ...}}`. Its display name joins the
/// segments with `.`.
pub type KeyPath = Vec<String>;

pub fn key_name(path: &[impl AsRef<str>]) -> String {
    let mut name = String::new();
    for (i, segment) in path.iter().enumerate() {
        if i > 0 {
            name.push('.');
        }
        name.push_str(segment.as_ref());
    }
    name
}

/// History rows have this flag when they will not be amended any more.
pub const HISTORY_SEALED: u8 = 1;
/// The record holds media that the client has staged but not stored yet (client-side only).
pub const HISTORY_PENDING_MEDIA: u8 = 2;

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

#[inline]
pub fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

#[inline]
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub mod tag {
    pub const NULL: u8 = 0;
    pub const FALSE: u8 = 1;
    pub const TRUE: u8 = 2;
    pub const INT: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const STR: u8 = 5;
    pub const LIST: u8 = 6;
    pub const MAP: u8 = 7;
    /// Counts, then edges: `varint n`, `n + 1` f64 edges, `n` f64 counts.
    pub const HISTOGRAM: u8 = 8;
    /// `varint columns`, the names, `varint rows`, then each row's cells as values.
    pub const TABLE: u8 = 9;
    /// The HTML as a string.
    pub const HTML: u8 = 10;
    /// Kind, title, `varint fields` pairs of names, then the table as a value.
    pub const PLOT: u8 = 11;
    /// An image, audio or video reference (see `Media::put`).
    pub const MEDIA: u8 = 12;
}

#[inline]
pub fn put_float_value(out: &mut Vec<u8>, f: f64) {
    out.push(tag::FLOAT);
    put_f64(out, f);
}

pub fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(tag::NULL),
        Value::Bool(false) => out.push(tag::FALSE),
        Value::Bool(true) => out.push(tag::TRUE),
        Value::Int(i) => {
            out.push(tag::INT);
            put_varint(out, zigzag(*i));
        }
        Value::Float(f) => put_float_value(out, *f),
        Value::Str(s) => {
            out.push(tag::STR);
            put_str(out, s);
        }
        Value::List(items) => {
            out.push(tag::LIST);
            put_varint(out, items.len() as u64);
            for item in items {
                put_value(out, item);
            }
        }
        Value::Map(map) => {
            out.push(tag::MAP);
            put_varint(out, map.len() as u64);
            for (k, v) in map {
                put_str(out, k);
                put_value(out, v);
            }
        }
        Value::Histogram(h) => {
            out.push(tag::HISTOGRAM);
            put_varint(out, h.counts.len() as u64);
            for x in h.bins.iter().chain(&h.counts) {
                put_f64(out, *x);
            }
        }
        Value::Html(h) => {
            out.push(tag::HTML);
            put_str(out, h);
        }
        Value::Media(m) => {
            out.push(tag::MEDIA);
            m.put(out);
        }
        Value::Plot(p) => {
            out.push(tag::PLOT);
            put_str(out, &p.kind);
            put_str(out, &p.title);
            put_varint(out, p.fields.len() as u64);
            for (k, v) in &p.fields {
                put_str(out, k);
                put_str(out, v);
            }
            put_value(out, &Value::Table(Box::new(p.table.clone())));
        }
        Value::Table(t) => {
            out.push(tag::TABLE);
            put_varint(out, t.columns.len() as u64);
            for c in &t.columns {
                put_str(out, c);
            }
            put_varint(out, t.rows.len() as u64);
            for row in &t.rows {
                for cell in row {
                    put_value(out, cell);
                }
            }
        }
    }
}

/// Appends a frame (header and payload) to `out`.
pub fn put_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Writes a frame header for `payload` into `header`.
pub fn frame_header(payload: &[u8]) -> [u8; FRAME_HEADER_LEN] {
    let mut header = [0u8; FRAME_HEADER_LEN];
    header[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    header
}

/// Payload builders. Each starts with the record type byte.
pub mod payload {
    use super::*;

    pub fn run_start(out: &mut Vec<u8>, info: &Value) {
        out.push(RecordType::RunStart as u8);
        put_value(out, info);
    }

    pub fn key_def(out: &mut Vec<u8>, key_id: u64, stream: KeyStream, path: &[impl AsRef<str>]) {
        out.push(RecordType::KeyDef as u8);
        put_varint(out, key_id);
        out.push(stream as u8);
        put_varint(out, path.len() as u64);
        for segment in path {
            put_str(out, segment.as_ref());
        }
    }

    /// Starts a history record; append `nfields` fields with [`history_field`] afterwards.
    pub fn history_head(out: &mut Vec<u8>, seq: u64, step: i64, flags: u8, timestamp_us: i64, runtime_us: i64, nfields: usize) {
        // The type, three varints of at most 10 bytes, the flags and two i64s.
        const MAX_HEAD: usize = 1 + 3 * 10 + 1 + 16;
        out.reserve(MAX_HEAD);
        let base = out.as_mut_ptr();
        let mut len = out.len();
        // SAFETY: the reservation holds MAX_HEAD more bytes, and this writes at most that many.
        unsafe {
            *base.add(len) = RecordType::History as u8;
            len += 1;
            len = write_varint(base, len, seq);
            len = write_varint(base, len, zigzag(step));
            *base.add(len) = flags;
            len += 1;
            std::ptr::copy_nonoverlapping(timestamp_us.to_le_bytes().as_ptr(), base.add(len), 8);
            std::ptr::copy_nonoverlapping(runtime_us.to_le_bytes().as_ptr(), base.add(len + 8), 8);
            len = write_varint(base, len + 16, nfields as u64);
            out.set_len(len);
        }
    }

    /// Writes `v` as a varint at `base + len` and returns the length after it.
    ///
    /// # Safety
    /// `base + len` must have room for 10 bytes.
    #[inline(always)]
    unsafe fn write_varint(base: *mut u8, mut len: usize, mut v: u64) -> usize {
        // SAFETY: the caller gives room for the longest varint.
        unsafe {
            while v >= 0x80 {
                *base.add(len) = (v as u8) | 0x80;
                len += 1;
                v >>= 7;
            }
            *base.add(len) = v as u8;
        }
        len + 1
    }

    #[inline]
    pub fn history_field(out: &mut Vec<u8>, key_id: u64, value: &Value) {
        put_varint(out, key_id);
        put_value(out, value);
    }

    /// The fields of a row of floats, `(key id, value)` each: the same bytes as
    /// [`history_float_field`] for each, written with one reservation.
    pub fn history_float_fields(out: &mut Vec<u8>, fields: impl ExactSizeIterator<Item = (u64, f64)>) {
        // A field is at most 10 bytes of varint, the tag and 8 bytes of value.
        const MAX_FIELD: usize = 19;
        out.reserve(fields.len() * MAX_FIELD);
        let base = out.as_mut_ptr();
        let mut len = out.len();
        for (id, value) in fields.take(out.capacity().saturating_sub(len) / MAX_FIELD) {
            // SAFETY: the reservation holds MAX_FIELD more bytes for each field taken, and this
            // writes at most that many.
            unsafe {
                len = write_varint(base, len, id);
                *base.add(len) = tag::FLOAT;
                std::ptr::copy_nonoverlapping(value.to_le_bytes().as_ptr(), base.add(len + 1), 8);
                len += 9;
            }
        }
        // SAFETY: every byte up to `len` was written above.
        unsafe { out.set_len(len) };
    }

    #[inline]
    pub fn history_float_field(out: &mut Vec<u8>, key_id: u64, value: f64) {
        put_varint(out, key_id);
        put_float_value(out, value);
    }

    pub fn updates(out: &mut Vec<u8>, record: RecordType, seq: u64, set: &Map, remove: &[String]) {
        debug_assert!(matches!(record, RecordType::Summary | RecordType::Config));
        out.push(record as u8);
        put_varint(out, seq);
        put_varint(out, set.len() as u64);
        for (k, v) in set {
            put_str(out, k);
            put_value(out, v);
        }
        put_varint(out, remove.len() as u64);
        for k in remove {
            put_str(out, k);
        }
    }

    pub fn system(out: &mut Vec<u8>, seq: u64, timestamp_us: i64, fields: &[(u64, f64)]) {
        out.push(RecordType::System as u8);
        put_varint(out, seq);
        put_i64(out, timestamp_us);
        put_varint(out, fields.len() as u64);
        for (key_id, value) in fields {
            put_varint(out, *key_id);
            put_f64(out, *value);
        }
    }

    pub fn console(out: &mut Vec<u8>, seq: u64, line: u64, stream: ConsoleStream, timestamp_us: i64, text: &str) {
        out.push(RecordType::Console as u8);
        put_varint(out, seq);
        put_varint(out, line);
        out.push(stream as u8);
        put_i64(out, timestamp_us);
        put_str(out, text);
    }

    pub fn event(out: &mut Vec<u8>, seq: u64, event: &Value) {
        out.push(RecordType::Event as u8);
        put_varint(out, seq);
        put_value(out, event);
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

impl From<WireError> for CodedError {
    fn from(e: WireError) -> CodedError {
        CodedError::new(ErrorCode::InvalidBody, format!("invalid batch: {}", e.0))
    }
}

fn truncated() -> WireError {
    WireError("record is truncated".into())
}

/// A cursor over a payload.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    #[inline]
    pub fn u8(&mut self) -> Result<u8, WireError> {
        let b = *self.buf.get(self.pos).ok_or_else(truncated)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return Err(WireError("varint overflows 64 bits".into()));
            }
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(WireError("varint is too long".into()));
            }
        }
    }

    #[inline]
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(truncated)?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    #[inline]
    pub fn i64(&mut self) -> Result<i64, WireError> {
        Ok(i64::from_le_bytes(self.bytes(8)?.try_into().expect("8 bytes")))
    }

    #[inline]
    pub fn f64(&mut self) -> Result<f64, WireError> {
        Ok(f64::from_le_bytes(self.bytes(8)?.try_into().expect("8 bytes")))
    }

    /// A length read from the input, checked against what is left so that a corrupt length cannot
    /// make us allocate gigabytes.
    fn len(&mut self, min_item_bytes: usize) -> Result<usize, WireError> {
        let n = self.varint()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_item_bytes.max(1) as u64) > left {
            return Err(WireError(format!("length {n} exceeds the {left} bytes left in the record")));
        }
        Ok(n as usize)
    }

    pub fn str(&mut self) -> Result<&'a str, WireError> {
        let n = self.len(1)?;
        std::str::from_utf8(self.bytes(n)?).map_err(|_| WireError("string is not valid UTF-8".into()))
    }

    pub fn value(&mut self) -> Result<Value, WireError> {
        self.value_at(0)
    }

    fn value_at(&mut self, depth: usize) -> Result<Value, WireError> {
        if depth > MAX_DEPTH {
            return Err(WireError(format!("value is nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(match self.u8()? {
            tag::NULL => Value::Null,
            tag::FALSE => Value::Bool(false),
            tag::TRUE => Value::Bool(true),
            tag::INT => Value::Int(unzigzag(self.varint()?)),
            tag::FLOAT => Value::Float(self.f64()?),
            tag::STR => Value::Str(self.str()?.to_owned()),
            tag::LIST => {
                let n = self.len(1)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value_at(depth + 1)?);
                }
                Value::List(items)
            }
            tag::MAP => {
                let n = self.len(2)?;
                let mut map = Map::new();
                for _ in 0..n {
                    let key = self.str()?.to_owned();
                    let value = self.value_at(depth + 1)?;
                    map.insert(key, value);
                }
                Value::Map(map)
            }
            tag::HISTOGRAM => {
                let n = self.len(16)?;
                let bins = (0..=n).map(|_| self.f64()).collect::<Result<Vec<_>, _>>()?;
                let counts = (0..n).map(|_| self.f64()).collect::<Result<Vec<_>, _>>()?;
                Value::Histogram(Box::new(crate::value::Histogram::new(bins, counts).map_err(|e| WireError(format!("bad histogram: {e}")))?))
            }
            tag::PLOT => {
                let kind = self.str()?.to_owned();
                let title = self.str()?.to_owned();
                let mut fields = std::collections::BTreeMap::new();
                for _ in 0..self.len(2)? {
                    let k = self.str()?.to_owned();
                    fields.insert(k, self.str()?.to_owned());
                }
                let Value::Table(table) = self.value_at(depth + 1)? else {
                    return Err(WireError("a chart's table is not a table".into()));
                };
                Value::Plot(Box::new(crate::value::Plot::new(kind, title, fields, *table).map_err(|e| WireError(format!("bad chart: {e}")))?))
            }
            tag::HTML => {
                let html = self.str()?;
                if html.len() > crate::value::MAX_HTML_BYTES {
                    return Err(WireError(format!("HTML of {} bytes is over the limit", html.len())));
                }
                Value::Html(Box::new(html.to_owned()))
            }
            tag::MEDIA => Value::Media(Box::new(crate::media::Media::read(self)?)),
            tag::TABLE => {
                let n = self.len(1)?;
                let columns = (0..n).map(|_| self.str().map(str::to_owned)).collect::<Result<Vec<_>, _>>()?;
                let rows_n = self.len(n.max(1))?;
                let mut rows = Vec::with_capacity(rows_n);
                for _ in 0..rows_n {
                    rows.push((0..n).map(|_| self.value_at(depth + 1)).collect::<Result<Vec<_>, _>>()?);
                }
                Value::Table(Box::new(crate::value::Table::new(columns, rows).map_err(|e| WireError(format!("bad table: {e}")))?))
            }
            other => return Err(WireError(format!("unknown value tag {other}"))),
        })
    }

    /// Skips a value without building it.
    pub fn skip_value(&mut self) -> Result<(), WireError> {
        self.skip_value_at(0)
    }

    fn skip_value_at(&mut self, depth: usize) -> Result<(), WireError> {
        if depth > MAX_DEPTH {
            return Err(WireError(format!("value is nested deeper than {MAX_DEPTH} levels")));
        }
        match self.u8()? {
            tag::NULL | tag::FALSE | tag::TRUE => {}
            tag::INT => {
                self.varint()?;
            }
            tag::FLOAT => {
                self.bytes(8)?;
            }
            tag::STR => {
                let n = self.len(1)?;
                self.bytes(n)?;
            }
            tag::LIST => {
                for _ in 0..self.len(1)? {
                    self.skip_value_at(depth + 1)?;
                }
            }
            tag::MAP => {
                for _ in 0..self.len(2)? {
                    let n = self.len(1)?;
                    self.bytes(n)?;
                    self.skip_value_at(depth + 1)?;
                }
            }
            tag::HISTOGRAM => {
                let n = self.len(16)?;
                self.bytes((2 * n + 1) * 8)?;
            }
            tag::HTML => {
                let n = self.len(1)?;
                self.bytes(n)?;
            }
            tag::MEDIA => crate::media::Media::skip(self)?,
            tag::PLOT => {
                for _ in 0..2 {
                    let n = self.len(1)?;
                    self.bytes(n)?;
                }
                for _ in 0..self.len(2)? * 2 {
                    let n = self.len(1)?;
                    self.bytes(n)?;
                }
                self.skip_value_at(depth + 1)?;
            }
            tag::TABLE => {
                let n = self.len(1)?;
                for _ in 0..n {
                    let len = self.len(1)?;
                    self.bytes(len)?;
                }
                for _ in 0..self.len(n.max(1))? * n {
                    self.skip_value_at(depth + 1)?;
                }
            }
            other => return Err(WireError(format!("unknown value tag {other}"))),
        }
        Ok(())
    }
}

/// The outcome of reading one frame.
#[derive(Debug, PartialEq)]
pub enum Frame<'a> {
    /// A complete record: its payload.
    Record(&'a [u8]),
    /// Zero length, or not enough bytes for a header: the end of written data.
    End,
    /// A header whose payload is cut off or fails its CRC: an incomplete write.
    Torn,
}

/// Reads the frame at the start of `buf`.
pub fn read_frame(buf: &[u8]) -> Frame<'_> {
    if buf.len() < FRAME_HEADER_LEN {
        return Frame::End;
    }
    let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    if len == 0 {
        return Frame::End;
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    match buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) {
        Some(payload) if len <= MAX_RECORD_LEN && crc32fast::hash(payload) == crc => Frame::Record(payload),
        _ => Frame::Torn,
    }
}

/// Iterates over the complete frames of `buf`, yielding `(offset, payload)`, and stops at the end
/// of written data or at a torn frame.
pub struct Frames<'a> {
    buf: &'a [u8],
    pos: usize,
    pub torn: bool,
}

impl<'a> Frames<'a> {
    pub fn new(buf: &'a [u8]) -> Frames<'a> {
        Frames { buf, pos: 0, torn: false }
    }

    /// Where the next frame would start: the end of the valid data once iteration has finished.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<(usize, &'a [u8])> {
        match read_frame(&self.buf[self.pos..]) {
            Frame::Record(payload) => {
                let at = self.pos;
                self.pos += FRAME_HEADER_LEN + payload.len();
                Some((at, payload))
            }
            Frame::End => None,
            Frame::Torn => {
                self.torn = true;
                None
            }
        }
    }
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    RunStart(Value),
    KeyDef { key_id: u64, stream: KeyStream, path: KeyPath },
    History { seq: u64, step: i64, flags: u8, timestamp_us: i64, runtime_us: i64, fields: Vec<(u64, Value)> },
    Summary { seq: u64, set: Map, remove: Vec<String> },
    Config { seq: u64, set: Map, remove: Vec<String> },
    System { seq: u64, timestamp_us: i64, fields: Vec<(u64, f64)> },
    Console { seq: u64, line: u64, stream: ConsoleStream, timestamp_us: i64, text: String },
    Event { seq: u64, event: Value },
}

pub fn record_type(payload: &[u8]) -> Result<RecordType, WireError> {
    let b = *payload.first().ok_or_else(|| WireError("empty record".into()))?;
    RecordType::from_u8(b).ok_or_else(|| WireError(format!("unknown record type {b}")))
}

/// The stream and offset of a stream record, without decoding the rest.
pub fn record_seq(payload: &[u8]) -> Result<Option<(Stream, u64)>, WireError> {
    let t = record_type(payload)?;
    match Stream::of_record(t) {
        Some(stream) => Ok(Some((stream, Reader::new(&payload[1..]).varint()?))),
        None => Ok(None),
    }
}

fn updates(r: &mut Reader<'_>) -> Result<(Map, Vec<String>), WireError> {
    let mut set = Map::new();
    for _ in 0..r.len(2)? {
        let key = r.str()?.to_owned();
        set.insert(key, r.value()?);
    }
    let mut remove = Vec::new();
    for _ in 0..r.len(1)? {
        remove.push(r.str()?.to_owned());
    }
    Ok((set, remove))
}

pub fn decode_record(payload: &[u8]) -> Result<Record, WireError> {
    let t = record_type(payload)?;
    let mut r = Reader::new(&payload[1..]);
    let record = match t {
        RecordType::RunStart => Record::RunStart(r.value()?),
        RecordType::KeyDef => {
            let key_id = r.varint()?;
            let stream = KeyStream::from_u8(r.u8()?).ok_or_else(|| WireError("unknown key stream".into()))?;
            let n = r.len(1)?;
            let mut path = Vec::with_capacity(n);
            for _ in 0..n {
                path.push(r.str()?.to_owned());
            }
            if path.is_empty() {
                return Err(WireError(format!("key {key_id} has an empty path")));
            }
            Record::KeyDef { key_id, stream, path }
        }
        RecordType::History => {
            let seq = r.varint()?;
            let step = unzigzag(r.varint()?);
            let flags = r.u8()?;
            let timestamp_us = r.i64()?;
            let runtime_us = r.i64()?;
            let n = r.len(2)?;
            let mut fields = Vec::with_capacity(n);
            for _ in 0..n {
                let key_id = r.varint()?;
                fields.push((key_id, r.value()?));
            }
            Record::History { seq, step, flags, timestamp_us, runtime_us, fields }
        }
        RecordType::Summary | RecordType::Config => {
            let seq = r.varint()?;
            let (set, remove) = updates(&mut r)?;
            if t == RecordType::Summary { Record::Summary { seq, set, remove } } else { Record::Config { seq, set, remove } }
        }
        RecordType::System => {
            let seq = r.varint()?;
            let timestamp_us = r.i64()?;
            let n = r.len(9)?;
            let mut fields = Vec::with_capacity(n);
            for _ in 0..n {
                let key_id = r.varint()?;
                fields.push((key_id, r.f64()?));
            }
            Record::System { seq, timestamp_us, fields }
        }
        RecordType::Console => {
            let seq = r.varint()?;
            let line = r.varint()?;
            let stream = match r.u8()? {
                0 => ConsoleStream::Stdout,
                1 => ConsoleStream::Stderr,
                other => return Err(WireError(format!("unknown console stream {other}"))),
            };
            let timestamp_us = r.i64()?;
            let text = r.str()?.to_owned();
            Record::Console { seq, line, stream, timestamp_us, text }
        }
        RecordType::Event => {
            let seq = r.varint()?;
            Record::Event { seq, event: r.value()? }
        }
    };
    if !r.is_empty() {
        return Err(WireError(format!("{:?} record has trailing bytes", t)));
    }
    Ok(record)
}

/// Calls `f` with every key id that a History or System record uses, without building values.
pub fn for_each_key_id(payload: &[u8], mut f: impl FnMut(u64)) -> Result<(), WireError> {
    let t = record_type(payload)?;
    let mut r = Reader::new(&payload[1..]);
    match t {
        RecordType::History => {
            r.varint()?;
            r.varint()?;
            r.u8()?;
            r.bytes(16)?;
            for _ in 0..r.len(2)? {
                f(r.varint()?);
                r.skip_value()?;
            }
        }
        RecordType::System => {
            r.varint()?;
            r.bytes(8)?;
            for _ in 0..r.len(9)? {
                f(r.varint()?);
                r.bytes(8)?;
            }
        }
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The decoded batch, as the store ingests it
// ---------------------------------------------------------------------------------------------

/// Marks a runtime that the server derives from the run's start time.
pub const RUNTIME_UNKNOWN: i64 = i64::MIN;

#[derive(Debug, Clone, PartialEq)]
pub struct KeyDef {
    pub stream: KeyStream,
    pub path: KeyPath,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryRow {
    pub step: i64,
    pub timestamp_us: i64,
    /// Microseconds since the run started, or [`RUNTIME_UNKNOWN`].
    pub runtime_us: i64,
    /// End (exclusive) of this row's fields in [`HistoryPart::fields`].
    pub fields_end: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistoryPart {
    pub first_offset: u64,
    pub rows: Vec<HistoryRow>,
    /// `(index into IngestBatch::keys, value)`; row `i` owns `fields[rows[i-1].fields_end..rows[i].fields_end]`.
    pub fields: Vec<(u32, Value)>,
}

impl HistoryPart {
    pub fn row_fields(&self, i: usize) -> &[(u32, Value)] {
        let start = if i == 0 { 0 } else { self.rows[i - 1].fields_end as usize };
        &self.fields[start..self.rows[i].fields_end as usize]
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Update {
    pub set: Map,
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpdatesPart {
    pub first_offset: u64,
    pub updates: Vec<Update>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SystemRow {
    pub timestamp_us: i64,
    pub fields_end: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SystemPart {
    pub first_offset: u64,
    pub rows: Vec<SystemRow>,
    pub fields: Vec<(u32, f64)>,
}

impl SystemPart {
    pub fn row_fields(&self, i: usize) -> &[(u32, f64)] {
        let start = if i == 0 { 0 } else { self.rows[i - 1].fields_end as usize };
        &self.fields[start..self.rows[i].fields_end as usize]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleLine {
    pub line: u64,
    pub stream: ConsoleStream,
    pub timestamp_us: i64,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConsolePart {
    pub first_offset: u64,
    pub lines: Vec<ConsoleLine>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventsPart {
    pub first_offset: u64,
    pub events: Vec<Value>,
}

/// One ingest batch, decoded from the binary or the JSON form.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IngestBatch {
    pub keys: Vec<KeyDef>,
    pub history: Option<HistoryPart>,
    pub summary: Option<UpdatesPart>,
    pub config: Option<UpdatesPart>,
    pub system: Option<SystemPart>,
    pub console: Option<ConsolePart>,
    pub events: Option<EventsPart>,
}

impl IngestBatch {
    /// The number of logged values (history fields and system-metric fields).
    pub fn point_count(&self) -> usize {
        self.history.as_ref().map_or(0, |h| h.fields.len()) + self.system.as_ref().map_or(0, |s| s.fields.len())
    }

    pub fn is_empty(&self) -> bool {
        self.history.is_none() && self.summary.is_none() && self.config.is_none() && self.system.is_none() && self.console.is_none() && self.events.is_none()
    }

    /// `(stream, first offset, record count)` for every stream present.
    pub fn stream_ranges(&self) -> Vec<(Stream, u64, u64)> {
        let mut out = Vec::new();
        if let Some(h) = &self.history {
            out.push((Stream::History, h.first_offset, h.rows.len() as u64));
        }
        if let Some(s) = &self.summary {
            out.push((Stream::Summary, s.first_offset, s.updates.len() as u64));
        }
        if let Some(c) = &self.config {
            out.push((Stream::Config, c.first_offset, c.updates.len() as u64));
        }
        if let Some(s) = &self.system {
            out.push((Stream::System, s.first_offset, s.rows.len() as u64));
        }
        if let Some(c) = &self.console {
            out.push((Stream::Console, c.first_offset, c.lines.len() as u64));
        }
        if let Some(e) = &self.events {
            out.push((Stream::Events, e.first_offset, e.events.len() as u64));
        }
        out
    }
}

/// Checks that a stream's records are contiguous; returns the first offset.
struct SeqTracker {
    first: Option<u64>,
    next: u64,
}

impl SeqTracker {
    fn new() -> SeqTracker {
        SeqTracker { first: None, next: 0 }
    }

    fn push(&mut self, stream: Stream, seq: u64) -> Result<(), WireError> {
        match self.first {
            None => {
                self.first = Some(seq);
                self.next = seq + 1;
            }
            Some(_) if seq == self.next => self.next += 1,
            Some(_) => {
                return Err(WireError(format!("{} record at offset {seq} does not follow offset {}", stream.name(), self.next - 1)));
            }
        }
        Ok(())
    }
}

/// Builds a binary batch from frames.
#[derive(Debug, Default)]
pub struct BatchWriter {
    buf: Vec<u8>,
    frames: u32,
}

impl BatchWriter {
    pub fn new() -> BatchWriter {
        let mut buf = BATCH_MAGIC.to_vec();
        buf.push(WIRE_VERSION);
        BatchWriter { buf, frames: 0 }
    }

    pub fn push_payload(&mut self, payload: &[u8]) {
        put_frame(&mut self.buf, payload);
        self.frames += 1;
    }

    /// Appends an already framed record (header included), as read from a WAL.
    pub fn push_frame_bytes(&mut self, frame: &[u8]) {
        self.buf.extend_from_slice(frame);
        self.frames += 1;
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(BATCH_TRAILER);
        self.buf.extend_from_slice(&self.frames.to_le_bytes());
        self.buf
    }
}

/// Decodes a binary batch (`"CRNB" | version | frames | "CRNE" | count`).
/// A batch's key ids, to the places of their definitions in the batch. Clients number a run's
/// keys from 0, so a list indexed by id finds one in a few instructions, where a hash map took
/// about 140 for each field of each row; an id past [`KeyIndex::DENSE`] (from no client of
/// cairn's) goes to a map with a keyed hash, so that crafted ids cannot make a batch slow.
#[derive(Default)]
struct KeyIndex {
    dense: Vec<u32>,
    sparse: HashMap<u64, u32>,
}

impl KeyIndex {
    const DENSE: u64 = 1 << 16;
    const NONE: u32 = u32::MAX;

    #[inline]
    fn get(&self, id: u64) -> Option<u32> {
        if id < Self::DENSE { self.dense.get(id as usize).copied().filter(|&place| place != Self::NONE) } else { self.sparse.get(&id).copied() }
    }

    fn insert(&mut self, id: u64, place: u32) {
        if id < Self::DENSE {
            let id = id as usize;
            if self.dense.len() <= id {
                self.dense.resize(id + 1, Self::NONE);
            }
            self.dense[id] = place;
        } else {
            self.sparse.insert(id, place);
        }
    }
}

pub fn decode_batch(body: &[u8]) -> Result<IngestBatch, WireError> {
    if body.len() < 5 || &body[..4] != BATCH_MAGIC {
        return Err(WireError("body does not start with the CRNB magic".into()));
    }
    if body[4] != WIRE_VERSION {
        return Err(WireError(format!("wire version {} is not supported (expected {WIRE_VERSION})", body[4])));
    }
    if body.len() < 13 || &body[body.len() - 8..body.len() - 4] != BATCH_TRAILER {
        return Err(WireError(format!("batch of {} bytes is truncated: it lacks the CRNE trailer", body.len())));
    }
    let expected_frames = u32::from_le_bytes(body[body.len() - 4..].try_into().expect("4 bytes"));
    let frames_buf = &body[5..body.len() - 8];
    let mut frame_count = 0u32;
    let mut frames = Frames::new(frames_buf);
    let mut batch = IngestBatch::default();
    let mut key_index = KeyIndex::default();
    let mut trackers: [SeqTracker; 6] = std::array::from_fn(|_| SeqTracker::new());
    let map_key =
        |key_index: &KeyIndex, key_id: u64| -> Result<u32, WireError> { key_index.get(key_id).ok_or_else(|| WireError(format!("key id {key_id} is used before its definition"))) };

    for (_, payload) in frames.by_ref() {
        frame_count += 1;
        match decode_record(payload)? {
            Record::RunStart(_) => {}
            Record::KeyDef { key_id, stream, path } => {
                if key_index.get(key_id).is_some() {
                    continue;
                }
                key_index.insert(key_id, batch.keys.len() as u32);
                batch.keys.push(KeyDef { stream, path });
            }
            Record::History { seq, step, flags: _, timestamp_us, runtime_us, fields } => {
                let part = batch.history.get_or_insert_with(HistoryPart::default);
                let tracker = &mut trackers[Stream::History as usize];
                let amends = tracker.first.is_some() && seq + 1 == tracker.next;
                if amends {
                    let last = part.rows.last_mut().expect("a row exists when the tracker has started");
                    if last.step != step {
                        return Err(WireError(format!("history record at offset {seq} amends step {} with step {step}", last.step)));
                    }
                    last.timestamp_us = timestamp_us;
                    last.runtime_us = runtime_us;
                    let row_start = part.rows.len().checked_sub(2).map_or(0, |i| part.rows[i].fields_end as usize);
                    for (key_id, value) in fields {
                        let idx = map_key(&key_index, key_id)?;
                        match part.fields[row_start..].iter_mut().find(|(k, _)| *k == idx) {
                            Some(slot) => slot.1 = value,
                            None => part.fields.push((idx, value)),
                        }
                    }
                    part.rows.last_mut().expect("row").fields_end = part.fields.len() as u32;
                } else {
                    tracker.push(Stream::History, seq)?;
                    if part.rows.is_empty() {
                        part.first_offset = seq;
                    }
                    for (key_id, value) in fields {
                        part.fields.push((map_key(&key_index, key_id)?, value));
                    }
                    part.rows.push(HistoryRow { step, timestamp_us, runtime_us, fields_end: part.fields.len() as u32 });
                }
            }
            Record::Summary { seq, set, remove } | Record::Config { seq, set, remove } => {
                let stream = if matches!(record_type(payload)?, RecordType::Summary) { Stream::Summary } else { Stream::Config };
                trackers[stream as usize].push(stream, seq)?;
                let part = if stream == Stream::Summary { &mut batch.summary } else { &mut batch.config };
                let part = part.get_or_insert_with(|| UpdatesPart { first_offset: seq, updates: Vec::new() });
                part.updates.push(Update { set, remove });
            }
            Record::System { seq, timestamp_us, fields } => {
                trackers[Stream::System as usize].push(Stream::System, seq)?;
                let part = batch.system.get_or_insert_with(|| SystemPart { first_offset: seq, ..Default::default() });
                for (key_id, value) in fields {
                    part.fields.push((map_key(&key_index, key_id)?, value));
                }
                part.rows.push(SystemRow { timestamp_us, fields_end: part.fields.len() as u32 });
            }
            Record::Console { seq, line, stream, timestamp_us, text } => {
                trackers[Stream::Console as usize].push(Stream::Console, seq)?;
                let part = batch.console.get_or_insert_with(|| ConsolePart { first_offset: seq, lines: Vec::new() });
                part.lines.push(ConsoleLine { line, stream, timestamp_us, text });
            }
            Record::Event { seq, event } => {
                trackers[Stream::Events as usize].push(Stream::Events, seq)?;
                let part = batch.events.get_or_insert_with(|| EventsPart { first_offset: seq, events: Vec::new() });
                part.events.push(event);
            }
        }
    }
    if frames.torn || frames.position() != frames_buf.len() {
        return Err(WireError(format!("batch is truncated or corrupt at byte {} of {}", frames.position() + 5, body.len())));
    }
    if frame_count != expected_frames {
        return Err(WireError(format!("batch holds {frame_count} records but its trailer says {expected_frames}")));
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map;

    fn frame(out: &mut BatchWriter, build: impl FnOnce(&mut Vec<u8>)) {
        let mut p = Vec::new();
        build(&mut p);
        out.push_payload(&p);
    }

    #[test]
    fn a_row_of_floats_is_the_same_bytes_as_its_fields_one_by_one() {
        let fields: Vec<(u64, f64)> = vec![(0, 1.5), (127, -0.0), (128, f64::NAN), (300, f64::INFINITY), (u32::MAX as u64, 1e-300), (u64::MAX, 2.0)];
        let mut one_by_one = vec![9u8];
        for &(id, value) in &fields {
            payload::history_float_field(&mut one_by_one, id, value);
        }
        let mut at_once = vec![9u8];
        payload::history_float_fields(&mut at_once, fields.iter().copied());
        assert_eq!(at_once, one_by_one);
        payload::history_float_fields(&mut at_once, std::iter::empty());
        assert_eq!(at_once, one_by_one);
    }

    #[test]
    fn a_history_head_is_its_fields_in_order() {
        for (seq, step, flags, ts, rt, n) in
            [(0u64, 0i64, 0u8, 0i64, 0i64, 0usize), (u64::MAX, i64::MIN, 0xff, i64::MIN, i64::MAX, usize::MAX), (300, -1, 1, 1_700_000_000_000_000, 5, 128)]
        {
            let mut expected = vec![7u8, RecordType::History as u8];
            put_varint(&mut expected, seq);
            put_varint(&mut expected, zigzag(step));
            expected.push(flags);
            put_i64(&mut expected, ts);
            put_i64(&mut expected, rt);
            put_varint(&mut expected, n as u64);
            let mut got = vec![7u8];
            payload::history_head(&mut got, seq, step, flags, ts, rt, n);
            assert_eq!(got, expected);
        }
    }

    fn sample_batch() -> Vec<u8> {
        let mut b = BatchWriter::new();
        frame(&mut b, |p| payload::key_def(p, 7, KeyStream::History, &["loss"]));
        frame(&mut b, |p| payload::key_def(p, 9, KeyStream::History, &["a", "b"]));
        frame(&mut b, |p| payload::key_def(p, 3, KeyStream::System, &["system.cpu"]));
        frame(&mut b, |p| {
            payload::history_head(p, 10, 100, 0, 1_000, 5, 2);
            payload::history_float_field(p, 7, 0.5);
            payload::history_field(p, 9, &Value::from("x"));
        });
        // An amendment of the same row: overrides loss, adds nothing else.
        frame(&mut b, |p| {
            payload::history_head(p, 10, 100, HISTORY_SEALED, 2_000, 6, 1);
            payload::history_float_field(p, 7, f64::NAN);
        });
        frame(&mut b, |p| {
            payload::history_head(p, 11, 105, HISTORY_SEALED, 3_000, 7, 1);
            payload::history_float_field(p, 7, f64::INFINITY);
        });
        frame(&mut b, |p| payload::updates(p, RecordType::Config, 0, &map! {"lr" => 0.1}, &[]));
        frame(&mut b, |p| payload::system(p, 4, 9_000, &[(3, 12.5)]));
        frame(&mut b, |p| payload::console(p, 0, 0, ConsoleStream::Stderr, 1, "hello"));
        frame(&mut b, |p| payload::event(p, 2, &Value::Map(map! {"type" => "finish"})));
        b.finish()
    }

    #[test]
    fn batch_round_trips() {
        let batch = decode_batch(&sample_batch()).unwrap();
        assert_eq!(batch.keys.len(), 3);
        let h = batch.history.as_ref().unwrap();
        assert_eq!(h.first_offset, 10);
        assert_eq!(h.rows.len(), 2);
        assert_eq!(h.rows[0].timestamp_us, 2_000);
        let row0 = h.row_fields(0);
        assert_eq!(row0.len(), 2);
        assert!(matches!(row0[0], (0, Value::Float(f)) if f.is_nan()));
        assert_eq!(row0[1], (1, Value::from("x")));
        assert_eq!(h.row_fields(1), &[(0, Value::Float(f64::INFINITY))]);
        assert_eq!(batch.config.as_ref().unwrap().updates[0].set["lr"], Value::Float(0.1));
        assert_eq!(batch.system.as_ref().unwrap().first_offset, 4);
        assert_eq!(batch.console.as_ref().unwrap().lines[0].text, "hello");
        assert_eq!(batch.events.as_ref().unwrap().first_offset, 2);
        assert_eq!(batch.point_count(), 4);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = sample_batch();
        for cut in 0..full.len() {
            assert!(decode_batch(&full[..cut]).is_err(), "cut at {cut}");
        }
        // Every single-byte corruption is caught (the CRC) or decoded to something else, never a panic.
        for i in 5..full.len() {
            let mut bad = full.clone();
            bad[i] ^= 0x5a;
            let _ = decode_batch(&bad);
        }
    }

    #[test]
    fn gaps_and_unknown_keys_are_refused() {
        let mut b = BatchWriter::new();
        frame(&mut b, |p| payload::console(p, 0, 0, ConsoleStream::Stdout, 1, "a"));
        frame(&mut b, |p| payload::console(p, 2, 1, ConsoleStream::Stdout, 1, "b"));
        assert!(decode_batch(&b.finish()).unwrap_err().0.contains("does not follow"));

        let mut b = BatchWriter::new();
        frame(&mut b, |p| {
            payload::history_head(p, 0, 0, 0, 0, 0, 1);
            payload::history_float_field(p, 42, 1.0);
        });
        assert!(decode_batch(&b.finish()).unwrap_err().0.contains("key id 42"));

        // Ids below and past the dense index's end: each finds its own definition; one never
        // defined is refused though a larger one is, and a second definition keeps the first.
        let ids = [10u64, 65_535, 65_536, u64::MAX];
        let with_use = |used: u64| {
            let mut b = BatchWriter::new();
            for (i, &id) in ids.iter().enumerate() {
                frame(&mut b, |p| payload::key_def(p, id, KeyStream::History, &[format!("k{i}")]));
            }
            frame(&mut b, |p| payload::key_def(p, 10, KeyStream::History, &["again"]));
            frame(&mut b, |p| {
                payload::history_head(p, 0, 0, 0, 0, 0, ids.len() + 1);
                for (i, &id) in ids.iter().enumerate() {
                    payload::history_float_field(p, id, i as f64);
                }
                payload::history_float_field(p, used, 9.0);
            });
            decode_batch(&b.finish())
        };
        let batch = with_use(65_536).unwrap();
        assert_eq!(batch.keys.len(), 4);
        assert_eq!(batch.keys[0].path, vec!["k0".to_owned()]);
        let fields = batch.history.as_ref().unwrap().row_fields(0).to_vec();
        assert_eq!(fields, vec![(0, Value::Float(0.0)), (1, Value::Float(1.0)), (2, Value::Float(2.0)), (3, Value::Float(3.0)), (2, Value::Float(9.0))]);
        for undefined in [5u64, 65_534, 65_537] {
            assert!(with_use(undefined).unwrap_err().0.contains(&format!("key id {undefined} ")), "{undefined}");
        }
    }

    #[test]
    fn values_round_trip_and_depth_is_bounded() {
        let value = Value::Map(map! {
            "i" => -5, "f" => 1.25, "s" => "text", "n" => Value::Null, "b" => true,
            "l" => vec![1, 2], "m" => Value::Map(map! {"x" => i64::MIN}),
        });
        let mut buf = Vec::new();
        put_value(&mut buf, &value);
        assert_eq!(Reader::new(&buf).value().unwrap(), value);
        let mut r = Reader::new(&buf);
        r.skip_value().unwrap();
        assert!(r.is_empty());

        let mut deep = Vec::new();
        for _ in 0..10_000 {
            deep.push(tag::LIST);
            deep.push(1);
        }
        deep.push(tag::NULL);
        assert!(Reader::new(&deep).value().unwrap_err().0.contains("deeper"));
        // A huge claimed length does not allocate.
        let mut huge = vec![tag::LIST];
        put_varint(&mut huge, u64::MAX / 2);
        assert!(Reader::new(&huge).value().is_err());
    }

    #[test]
    fn frames_stop_at_torn_writes() {
        let mut buf = Vec::new();
        put_frame(&mut buf, &[RecordType::Event as u8, 0, tag::NULL]);
        let good = buf.len();
        put_frame(&mut buf, &[RecordType::Event as u8, 1, tag::TRUE]);
        buf.truncate(buf.len() - 1);
        buf.extend_from_slice(&[0; 32]);
        let mut frames = Frames::new(&buf);
        assert_eq!(frames.by_ref().count(), 1);
        assert!(frames.torn);
        assert_eq!(frames.position(), good);
    }
}

// ---------------------------------------------------------------------------------------------
// History columns, binary (`application/x-cairn-columns`): the fast way to read many points back
// ---------------------------------------------------------------------------------------------

pub const COLUMNS_MAGIC: &[u8; 4] = b"CRNC";
pub const COLUMNS_CONTENT_TYPE: &str = "application/x-cairn-columns";
const COLUMN_F64: u8 = 0;
const COLUMN_VALUES: u8 = 1;
const MISSING: u8 = 255;

/// One column of [`Columns`]: values aligned with the steps.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnData {
    pub name: String,
    pub path: Vec<String>,
    pub values: ColumnValues,
}

/// `"CRNC" | version | next_step: i64 (MIN = none) | n: u64 | steps: n × i64 | ncols: varint |
/// columns`, where a column is `name | nseg | segs | kind | data`: kind 0, for columns of floats
/// only, is `n × f64` followed by a presence bitmap; kind 1 is n wire values, with tag 255 for a
/// missing value.
pub fn encode_columns(steps: &[i64], columns: &[ColumnData], next_step: Option<i64>) -> Vec<u8> {
    let n = steps.len();
    let mut out = Vec::with_capacity(16 + n * 8 * (1 + columns.len()));
    out.extend_from_slice(COLUMNS_MAGIC);
    out.push(WIRE_VERSION);
    put_i64(&mut out, next_step.unwrap_or(i64::MIN));
    out.extend_from_slice(&(n as u64).to_le_bytes());
    for step in steps {
        put_i64(&mut out, *step);
    }
    put_varint(&mut out, columns.len() as u64);
    for column in columns {
        put_str(&mut out, &column.name);
        put_varint(&mut out, column.path.len() as u64);
        for segment in &column.path {
            put_str(&mut out, segment);
        }
        match &column.values {
            ColumnValues::Floats(values, present) => {
                out.push(COLUMN_F64);
                for v in values {
                    put_f64(&mut out, *v);
                }
                out.extend_from_slice(&presence_bitmap(present));
            }
            ColumnValues::Values(values) if values.iter().all(|v| matches!(v, None | Some(Value::Float(_)))) => {
                out.push(COLUMN_F64);
                let mut present = Vec::with_capacity(n);
                for value in values {
                    match value {
                        Some(Value::Float(f)) => {
                            put_f64(&mut out, *f);
                            present.push(true);
                        }
                        _ => {
                            put_f64(&mut out, f64::NAN);
                            present.push(false);
                        }
                    }
                }
                out.extend_from_slice(&presence_bitmap(&present));
            }
            ColumnValues::Values(values) => {
                out.push(COLUMN_VALUES);
                for value in values {
                    match value {
                        Some(v) => put_value(&mut out, v),
                        None => out.push(MISSING),
                    }
                }
            }
        }
    }
    out
}

fn presence_bitmap(present: &[bool]) -> Vec<u8> {
    let mut bitmap = vec![0u8; present.len().div_ceil(8)];
    for (i, p) in present.iter().enumerate() {
        if *p {
            bitmap[i / 8] |= 1 << (i % 8);
        }
    }
    bitmap
}

/// Decoded binary columns. Float columns stay as plain `f64` arrays for speed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Columns {
    pub steps: Vec<i64>,
    pub next_step: Option<i64>,
    pub columns: Vec<DecodedColumn>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DecodedColumn {
    pub name: String,
    pub path: Vec<String>,
    pub data: ColumnValues,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValues {
    /// Values and whether each is present.
    Floats(Vec<f64>, Vec<bool>),
    Values(Vec<Option<Value>>),
}

impl ColumnValues {
    pub fn len(&self) -> usize {
        match self {
            ColumnValues::Floats(values, _) => values.len(),
            ColumnValues::Values(values) => values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, i: usize) -> Option<Value> {
        match self {
            ColumnValues::Floats(values, present) => present[i].then(|| Value::Float(values[i])),
            ColumnValues::Values(values) => values[i].clone(),
        }
    }

    pub fn into_values(self) -> Vec<Option<Value>> {
        match self {
            ColumnValues::Floats(values, present) => values.into_iter().zip(present).map(|(v, p)| p.then_some(Value::Float(v))).collect(),
            ColumnValues::Values(values) => values,
        }
    }
}

pub fn decode_columns(body: &[u8]) -> Result<Columns, WireError> {
    if body.len() < 21 || &body[..4] != COLUMNS_MAGIC || body[4] != WIRE_VERSION {
        return Err(WireError("not a CRNC columns body of a known version".into()));
    }
    let mut r = Reader::new(&body[5..]);
    let next = r.i64()?;
    let n = u64::from_le_bytes(r.bytes(8)?.try_into().expect("8 bytes"));
    let n = usize::try_from(n).map_err(|_| WireError("row count overflows".into()))?;
    if n.saturating_mul(8) > body.len() {
        return Err(WireError(format!("{n} rows claimed in {} bytes", body.len())));
    }
    let steps: Vec<i64> = r.bytes(n * 8)?.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8"))).collect();
    let ncols = r.len(3)?;
    let mut columns = Vec::with_capacity(ncols);
    for _ in 0..ncols {
        let name = r.str()?.to_owned();
        let nseg = r.len(1)?;
        let mut path = Vec::with_capacity(nseg);
        for _ in 0..nseg {
            path.push(r.str()?.to_owned());
        }
        let data = match r.u8()? {
            COLUMN_F64 => {
                let values: Vec<f64> = r.bytes(n * 8)?.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8"))).collect();
                let bitmap = r.bytes(n.div_ceil(8))?;
                let present = (0..n).map(|i| bitmap[i / 8] & (1 << (i % 8)) != 0).collect();
                ColumnValues::Floats(values, present)
            }
            COLUMN_VALUES => {
                let mut values = Vec::with_capacity(n);
                for _ in 0..n {
                    if r.buf.get(r.pos) == Some(&MISSING) {
                        r.pos += 1;
                        values.push(None);
                    } else {
                        values.push(Some(r.value()?));
                    }
                }
                ColumnValues::Values(values)
            }
            other => return Err(WireError(format!("unknown column kind {other}"))),
        };
        columns.push(DecodedColumn { name, path, data });
    }
    if !r.is_empty() {
        return Err(WireError("columns body has trailing bytes".into()));
    }
    Ok(Columns { steps, next_step: (next != i64::MIN).then_some(next), columns })
}

#[cfg(test)]
mod column_tests {
    use super::*;

    #[test]
    fn columns_round_trip() {
        let steps = vec![0, 5, 9];
        let mixed = vec![Some(Value::Int(1)), Some(Value::from("x")), None];
        let columns = vec![
            ColumnData { name: "loss".into(), path: vec!["loss".into()], values: ColumnValues::Values(vec![Some(Value::Float(0.5)), None, Some(Value::Float(f64::INFINITY))]) },
            ColumnData { name: "a.b".into(), path: vec!["a".into(), "b".into()], values: ColumnValues::Values(mixed.clone()) },
            ColumnData { name: "f".into(), path: vec!["f".into()], values: ColumnValues::Floats(vec![1.0, 2.0, 3.0], vec![true, true, false]) },
        ];
        let body = encode_columns(&steps, &columns, Some(10));
        let back = decode_columns(&body).unwrap();
        assert_eq!(back.steps, steps);
        assert_eq!(back.next_step, Some(10));
        match &back.columns[0].data {
            ColumnValues::Floats(v, p) => {
                assert_eq!(v[0], 0.5);
                assert_eq!(p, &[true, false, true]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(back.columns[1].data, ColumnValues::Values(mixed));
        assert_eq!(back.columns[2].data.get(1), Some(Value::Float(2.0)));
        assert_eq!(back.columns[2].data.get(2), None);
        for cut in 0..body.len() {
            assert!(decode_columns(&body[..cut]).is_err());
        }
    }
}

/// Property tests: values, batches and columns round-trip; damaged batches are errors, never
/// panics.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>().prop_filter("NaN is not equal to itself", |f| !f.is_nan()).prop_map(Value::Float),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
                prop::collection::btree_map("[a-z_./]{1,8}", inner, 0..6).prop_map(|m| Value::Map(m.into_iter().collect())),
            ]
        })
    }

    /// Rows of (step gap, fields by key 0..3 as floats or values), console lines, events.
    type Rows = Vec<(i64, Vec<(u64, Value)>)>;
    fn batch_parts() -> impl Strategy<Value = (Rows, Vec<String>, Vec<Value>)> {
        let field = (0u64..3, prop_oneof![any::<f64>().prop_map(Value::Float), value()]);
        let row = (1i64..1000, prop::collection::vec(field, 0..5));
        (prop::collection::vec(row, 0..30), prop::collection::vec(".{0,40}", 0..8), prop::collection::vec(value(), 0..4))
    }

    fn encode((rows, lines, events): &(Rows, Vec<String>, Vec<Value>)) -> Vec<u8> {
        let mut b = BatchWriter::new();
        let mut p = Vec::new();
        for (id, name) in ["loss", "acc", "deep.key"].iter().enumerate() {
            p.clear();
            payload::key_def(&mut p, id as u64, KeyStream::History, &name.split('.').collect::<Vec<_>>());
            b.push_payload(&p);
        }
        let mut step = 0;
        for (seq, (gap, fields)) in rows.iter().enumerate() {
            step += gap;
            // One value per key in a row, as a client writes it.
            let mut seen = std::collections::BTreeMap::new();
            for (k, v) in fields {
                seen.insert(*k, v.clone());
            }
            p.clear();
            payload::history_head(&mut p, seq as u64, step, HISTORY_SEALED, 1_000 + seq as i64, seq as i64, seen.len());
            for (k, v) in &seen {
                match v {
                    Value::Float(f) => payload::history_float_field(&mut p, *k, *f),
                    other => payload::history_field(&mut p, *k, other),
                }
            }
            b.push_payload(&p);
        }
        for (i, text) in lines.iter().enumerate() {
            p.clear();
            payload::console(&mut p, i as u64, i as u64, ConsoleStream::Stdout, 5, text);
            b.push_payload(&p);
        }
        for (i, event) in events.iter().enumerate() {
            p.clear();
            payload::event(&mut p, i as u64, event);
            b.push_payload(&p);
        }
        b.finish()
    }

    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
            _ => a == b,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn values_round_trip(v in value()) {
            let mut buf = Vec::new();
            put_value(&mut buf, &v);
            prop_assert_eq!(Reader::new(&buf).value().unwrap(), v);
            let mut r = Reader::new(&buf);
            r.skip_value().unwrap();
            prop_assert!(r.is_empty());
        }

        #[test]
        fn batches_round_trip(parts in batch_parts()) {
            let body = encode(&parts);
            let batch = decode_batch(&body).unwrap();
            let (rows, lines, events) = &parts;
            prop_assert_eq!(batch.keys.len(), 3);
            match &batch.history {
                None => prop_assert!(rows.is_empty()),
                Some(h) => {
                    prop_assert_eq!(h.rows.len(), rows.len());
                    let mut step = 0;
                    for (i, (gap, fields)) in rows.iter().enumerate() {
                        step += gap;
                        prop_assert_eq!(h.rows[i].step, step);
                        let mut want = std::collections::BTreeMap::new();
                        for (k, v) in fields {
                            want.insert(*k as u32, v.clone());
                        }
                        let got = h.row_fields(i);
                        prop_assert_eq!(got.len(), want.len());
                        for (k, v) in got {
                            prop_assert!(same(v, &want[k]), "key {}: {:?} != {:?}", k, v, want[k]);
                        }
                    }
                }
            }
            let got_lines: Vec<&str> = batch.console.as_ref().map(|c| c.lines.iter().map(|l| l.text.as_str()).collect()).unwrap_or_default();
            prop_assert_eq!(got_lines, lines.iter().map(String::as_str).collect::<Vec<_>>());
            prop_assert_eq!(batch.events.as_ref().map_or(0, |e| e.events.len()), events.len());
        }

        #[test]
        fn damaged_batches_are_errors_not_panics(parts in batch_parts(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), bit in 0u8..8) {
            let body = encode(&parts);
            let at = cut.index(body.len());
            prop_assert!(decode_batch(&body[..at]).is_err(), "a batch cut at {} of {} decoded", at, body.len());
            let mut bad = body.clone();
            let i = flip.index(bad.len());
            bad[i] ^= 1 << bit;
            let _ = decode_batch(&bad);
        }

        #[test]
        fn columns_round_trip(raw in prop::collection::vec((1i64..50, any::<f64>(), any::<bool>(), prop::option::of(value())), 1..200)) {
            let mut step = 0;
            let steps: Vec<i64> = raw.iter().map(|(g, ..)| { step += g; step }).collect();
            let floats = ColumnValues::Floats(raw.iter().map(|r| r.1).collect(), raw.iter().map(|r| r.2).collect());
            let values = ColumnValues::Values(raw.iter().map(|r| r.3.clone()).collect());
            let columns = vec![
                ColumnData { name: "f".into(), path: vec!["f".into()], values: floats },
                ColumnData { name: "v.w".into(), path: vec!["v".into(), "w".into()], values },
            ];
            let body = encode_columns(&steps, &columns, None);
            let back = decode_columns(&body).unwrap();
            prop_assert_eq!(&back.steps, &steps);
            for (i, r) in raw.iter().enumerate() {
                match back.columns[0].data.get(i) {
                    Some(Value::Float(f)) => prop_assert!(r.2 && f.to_bits() == r.1.to_bits()),
                    None => prop_assert!(!r.2),
                    other => prop_assert!(false, "{:?}", other),
                }
            }
            // A column may come back in another encoding (all floats as Floats): the same values.
            for (i, r) in raw.iter().enumerate() {
                let got = back.columns[1].data.get(i);
                prop_assert!(match (&got, &r.3) { (Some(a), Some(b)) => same(a, b), (None, None) => true, _ => false }, "row {}: {:?} != {:?}", i, got, r.3);
            }
        }
    }
}
