//! Turning the write-ahead log into batches, and sending them: the background uploader of a live
//! run and `cairn sync` share this code.
//!
//! A batch holds whole history rows only. A row that may still be amended (logged with an explicit
//! step or `commit=False`, and not followed by a later row) stays behind until it is closed, or
//! until the run ends; records of other streams go on without it. The server stores each stream
//! by offset, so records that are sent again are ignored: nothing is stored twice.

use std::io;
use std::path::Path;

use cairn_types::RunPath;
use cairn_types::api::{IngestAck, StreamOffsets};
use cairn_types::error::ErrorCode;
use cairn_types::wire::{self, BatchWriter, HISTORY_SEALED, KeyStream, Record, RecordType, Stream};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::http::{ApiClient, CallError};
use crate::wal::WalReader;

/// Batches are cut near this size.
pub const MAX_BATCH_BYTES: usize = 8 << 20;

/// At most this many records with staged media are stored (encoded, written) for one batch: a
/// batch then goes out, and `finish` sees progress, however many images wait.
pub const MAX_MEDIA_RECORDS: usize = 64;

pub struct Batch {
    pub body: Vec<u8>,
    /// Where the next batch starts once this one is acknowledged.
    pub next: u64,
    pub records: usize,
    /// The batch was cut short (by size, or by the media it may store): more is ready to go.
    pub full: bool,
}

pub struct Sender {
    reader: WalReader,
    /// The run directory, where pending media is staged.
    run_dir: std::path::PathBuf,
    keys: FxHashMap<u64, (KeyStream, Vec<String>)>,
    keys_known_to: u64,
    /// Everything before this position is stored on the server.
    pub acked: u64,
    /// The server's offsets, from its last answer.
    pub server_offsets: StreamOffsets,
}

impl Sender {
    pub fn new(wal_dir: &Path, acked: u64, server_offsets: StreamOffsets) -> Sender {
        let run_dir = wal_dir.parent().unwrap_or(wal_dir).to_owned();
        Sender { reader: WalReader::new(wal_dir), run_dir, keys: FxHashMap::default(), keys_known_to: 0, acked, server_offsets }
    }

    fn learn_keys(&mut self, upto: u64) -> io::Result<()> {
        if self.keys_known_to >= upto {
            return Ok(());
        }
        let keys = &mut self.keys;
        let end = self.reader.scan(self.keys_known_to, upto, |_, _, payload| {
            if let Ok(Record::KeyDef { key_id, stream, path }) = wire::decode_record(payload) {
                keys.entry(key_id).or_insert((stream, path));
            }
            true
        })?;
        self.keys_known_to = self.keys_known_to.max(end);
        Ok(())
    }

    /// The next batch from `acked` towards `end`, or `None` when there is nothing to send. With
    /// `seal_tail`, a trailing open row is sent too (the run has ended).
    pub fn next_batch(&mut self, end: u64, seal_tail: bool, max_bytes: usize) -> io::Result<Option<Batch>> {
        if self.acked >= end {
            return Ok(None);
        }
        self.learn_keys(self.acked)?;
        let offsets = self.server_offsets;
        let mut body: Vec<u8> = Vec::new();
        let mut frames = 0usize;
        let mut row: Vec<u8> = Vec::new();
        let mut row_frames = 0usize;
        let mut row_seq: Option<u64> = None;
        let mut row_start = 0u64;
        let mut row_sealed = false;
        let mut used: FxHashSet<u64> = FxHashSet::default();
        let keys = &mut self.keys;
        let run_dir = &self.run_dir;
        let mut keys_known_to = self.keys_known_to;
        let mut capped = false;
        let mut media_records = 0usize;
        // The current row waits for a later batch: its media could not be stored yet.
        let mut held = false;

        let stop = self.reader.scan(self.acked, end, |pos, frame, payload| {
            // Cut only once the batch holds something: a single row bigger than the limit must
            // still go out whole, or the uploader would never get past it.
            if frames > 0 && body.len() + row.len() >= max_bytes {
                capped = true;
                return false;
            }
            // Stop before the next row once enough media was stored for this batch.
            if media_records >= MAX_MEDIA_RECORDS && row_seq.is_some() && wire::record_seq(payload).ok().flatten().map(|(_, s)| s) != row_seq {
                capped = true;
                return false;
            }
            keys_known_to = keys_known_to.max(pos + frame.len() as u64);
            let Ok(record_type) = wire::record_type(payload) else { return true };
            match record_type {
                RecordType::KeyDef => {
                    if let Ok(Record::KeyDef { key_id, stream, path }) = wire::decode_record(payload) {
                        keys.entry(key_id).or_insert((stream, path));
                    }
                }
                RecordType::RunStart => {}
                RecordType::History => {
                    let Ok(Some((_, seq))) = wire::record_seq(payload) else { return true };
                    if row_seq != Some(seq) {
                        if row_seq.is_some() {
                            body.extend_from_slice(&row);
                            frames += row_frames;
                        }
                        row.clear();
                        row_frames = 0;
                        row_seq = Some(seq);
                        row_start = pos;
                    }
                    let flags = history_flags(payload);
                    row_sealed = flags & HISTORY_SEALED != 0;
                    if seq >= offsets.history {
                        let _ = wire::for_each_key_id(payload, |id| {
                            used.insert(id);
                        });
                        if flags & wire::HISTORY_PENDING_MEDIA != 0 {
                            // Media the training thread staged: encoded and stored now, and the
                            // record sent with the stored references.
                            media_records += 1;
                            match crate::media::resolve_history(run_dir, payload) {
                                Ok(resolved) => wire::put_frame(&mut row, &resolved),
                                Err(e) => {
                                    crate::rundir::debug_log(run_dir, &format!("history row {seq}: its media is not stored yet ({e}); it waits"));
                                    held = true;
                                    return false;
                                }
                            }
                        } else {
                            row.extend_from_slice(frame);
                        }
                        row_frames += 1;
                    }
                }
                _ => {
                    if let Ok(Some((stream, seq))) = wire::record_seq(payload)
                        && seq >= offsets.get(stream)
                    {
                        if stream == Stream::System {
                            let _ = wire::for_each_key_id(payload, |id| {
                                used.insert(id);
                            });
                        }
                        body.extend_from_slice(frame);
                        frames += 1;
                    }
                }
            }
            true
        })?;
        self.keys_known_to = keys_known_to;

        let mut next = stop;
        if held {
            // The row and everything after it wait.
            next = row_start;
        } else if row_seq.is_some() {
            let complete = row_sealed || (seal_tail && !capped && stop >= end);
            if complete {
                body.extend_from_slice(&row);
                frames += row_frames;
            } else {
                next = row_start;
            }
        }
        if frames == 0 {
            // Only key definitions, or records the server has: nothing to send, but move on.
            if next > self.acked {
                self.acked = next;
            }
            return Ok(None);
        }
        let mut batch = BatchWriter::new();
        let mut def = Vec::new();
        let mut ids: Vec<u64> = used.into_iter().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some((stream, path)) = self.keys.get(&id) {
                def.clear();
                wire::payload::key_def(&mut def, id, *stream, path);
                batch.push_payload(&def);
            }
        }
        let mut at = 0;
        while at < body.len() {
            let len = u32::from_le_bytes(body[at..at + 4].try_into().expect("frame header")) as usize;
            batch.push_frame_bytes(&body[at..at + wire::FRAME_HEADER_LEN + len]);
            at += wire::FRAME_HEADER_LEN + len;
        }
        Ok(Some(Batch { body: batch.finish(), next, records: frames, full: capped }))
    }

    /// Sends a batch and records the server's answer.
    pub fn send(&mut self, api: &ApiClient, path: &RunPath, batch: &Batch) -> Result<IngestAck, CallError> {
        match api.ingest(path, &batch.body) {
            Ok(ack) => {
                self.acked = self.acked.max(batch.next);
                self.server_offsets = ack.offsets;
                Ok(ack)
            }
            Err(CallError::Api { error, status }) if error.code == ErrorCode::OffsetGap => {
                // The server has less than we thought (it was restored from a backup, say): start
                // over from the beginning; it keeps only what it lacks.
                self.acked = 0;
                if let Some(expected) = error.expected_offsets {
                    self.server_offsets = expected;
                }
                Err(CallError::Api { error, status })
            }
            Err(e) => Err(e),
        }
    }
}

fn history_flags(payload: &[u8]) -> u8 {
    let mut r = wire::Reader::new(&payload[1..]);
    let _ = r.varint();
    let _ = r.varint();
    r.u8().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Core;
    use crate::wal::WalWriter;
    use cairn_types::value::{Map, Value};

    fn write(rows: &[(i64, bool, usize)]) -> (tempfile::TempDir, u64) {
        let dir = tempfile::tempdir().unwrap();
        let wal = WalWriter::create(&dir.path().join("wal")).unwrap();
        let committed = wal.committed();
        let mut core = Core::new(wal, StreamOffsets::default(), 0, 0, Map::new());
        for &(step, commit, size) in rows {
            core.log_row(Some(step), Some(commit), |row| row.value("text", Value::from("x".repeat(size)))).unwrap();
        }
        (dir, committed.load(std::sync::atomic::Ordering::Acquire))
    }

    #[test]
    fn a_row_larger_than_a_batch_still_goes_out() {
        // One open row of 5 kB, with batches cut at 1 kB.
        let (dir, end) = write(&[(0, false, 5000)]);
        let mut sender = Sender::new(&dir.path().join("wal"), 0, StreamOffsets::default());
        // While the run goes on, the open row may still change: it waits.
        assert!(sender.next_batch(end, false, 1000).unwrap().is_none());
        // Once the run has ended, it is sent whole.
        let batch = sender.next_batch(end, true, 1000).unwrap().expect("the row is sent");
        assert_eq!(batch.records, 1);
        assert_eq!(batch.next, end);
    }

    #[test]
    fn batches_are_cut_between_rows() {
        let (dir, end) = write(&[(0, true, 600), (1, true, 600), (2, true, 600), (3, true, 600)]);
        let mut sender = Sender::new(&dir.path().join("wal"), 0, StreamOffsets::default());
        let mut rows = 0;
        let mut batches = 0;
        while let Some(batch) = sender.next_batch(end, true, 1000).unwrap() {
            assert!(batch.records <= 2, "{} records", batch.records);
            rows += batch.records;
            batches += 1;
            sender.acked = batch.next;
        }
        assert_eq!(rows, 4);
        assert!(batches >= 2);
        assert_eq!(sender.acked, end);
    }
}
