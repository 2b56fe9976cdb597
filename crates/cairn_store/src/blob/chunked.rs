//! Reading a content stored as chunks: the chunks are ranges of packs (blobs of many chunks),
//! read ahead in parallel (an object store answers each request after a round trip) and handed
//! out in order.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::{Arc, Condvar, Mutex};

use super::BlobStore;

/// How many pieces are read ahead of the one being handed out, at most.
const WINDOW: usize = 16;

/// Bytes of one blob, from `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub blob: String,
    pub offset: u64,
    pub size: u64,
}

/// Joins pieces that follow each other in one blob, up to `max` bytes a piece: one request
/// reads what was stored together.
pub fn coalesce(pieces: impl IntoIterator<Item = Piece>, max: u64) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    for piece in pieces {
        if let Some(last) = out.last_mut()
            && last.blob == piece.blob
            && last.offset + last.size == piece.offset
            && last.size + piece.size <= max
        {
            last.size += piece.size;
            continue;
        }
        out.push(piece);
    }
    out
}

struct Window {
    /// Chunks read and not yet handed out, by index.
    ready: BTreeMap<usize, io::Result<Vec<u8>>>,
    /// The next chunk a worker takes.
    next: usize,
    /// The next chunk the reader hands out.
    consumed: usize,
    /// The reader was dropped: the workers stop.
    stopped: bool,
}

struct Shared {
    blobs: Arc<dyn BlobStore>,
    chunks: Vec<Piece>,
    window: Mutex<Window>,
    changed: Condvar,
}

/// The bytes of `pieces`, in order, as one stream. A piece that is missing or shorter than
/// recorded is an error of the read that reaches it.
pub struct ChunkedReader {
    shared: Arc<Shared>,
    current: Vec<u8>,
    at: usize,
}

impl ChunkedReader {
    /// Starts `workers` threads that read ahead (at least one).
    pub fn new(blobs: Arc<dyn BlobStore>, chunks: Vec<Piece>, workers: usize) -> ChunkedReader {
        let workers = workers.clamp(1, WINDOW).min(chunks.len().max(1));
        let shared = Arc::new(Shared { blobs, chunks, window: Mutex::new(Window { ready: BTreeMap::new(), next: 0, consumed: 0, stopped: false }), changed: Condvar::new() });
        for _ in 0..workers {
            let shared = shared.clone();
            std::thread::Builder::new().name("cairn-chunks".into()).spawn(move || work(&shared)).expect("spawn a chunk reader");
        }
        ChunkedReader { shared, current: Vec::new(), at: 0 }
    }
}

fn work(shared: &Shared) {
    loop {
        let index = {
            let mut w = shared.window.lock().expect("chunk window");
            while !w.stopped && w.next < shared.chunks.len() && w.next >= w.consumed + WINDOW {
                w = shared.changed.wait(w).expect("chunk window");
            }
            if w.stopped || w.next >= shared.chunks.len() {
                return;
            }
            w.next += 1;
            w.next - 1
        };
        let chunk = &shared.chunks[index];
        let bytes = read_chunk(shared.blobs.as_ref(), chunk);
        let mut w = shared.window.lock().expect("chunk window");
        w.ready.insert(index, bytes);
        shared.changed.notify_all();
    }
}

fn read_chunk(blobs: &dyn BlobStore, piece: &Piece) -> io::Result<Vec<u8>> {
    let mut reader = blobs.open_range(&piece.blob, piece.offset, piece.size).map_err(|e| io::Error::other(format!("blob {}: {}", piece.blob, e.message)))?;
    let mut bytes = Vec::with_capacity(piece.size as usize);
    reader.read_to_end(&mut bytes)?;
    if bytes.len() as u64 != piece.size {
        return Err(io::Error::other(format!("blob {} holds {} bytes from {}, not {}", piece.blob, bytes.len(), piece.offset, piece.size)));
    }
    Ok(bytes)
}

impl Read for ChunkedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            let mut w = self.shared.window.lock().expect("chunk window");
            if w.consumed == self.shared.chunks.len() {
                return Ok(0);
            }
            let index = w.consumed;
            let bytes = loop {
                if let Some(bytes) = w.ready.remove(&index) {
                    break bytes;
                }
                w = self.shared.changed.wait(w).expect("chunk window");
            };
            w.consumed += 1;
            self.shared.changed.notify_all();
            drop(w);
            self.current = bytes?;
            self.at = 0;
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Drop for ChunkedReader {
    fn drop(&mut self) {
        let mut w = self.shared.window.lock().expect("chunk window");
        w.stopped = true;
        w.ready.clear();
        self.shared.changed.notify_all();
    }
}
