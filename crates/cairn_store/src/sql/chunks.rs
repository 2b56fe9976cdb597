//! Contents stored as content-defined chunks. A client that sends a big file in chunks sends
//! only the chunks the server lacks, then composes the content: the server reads the chunks
//! back, checks the whole content's SHA-256 and size, and keeps the list (`content_chunks`).
//! A chunk is shared by every content that has it, so a new version of a checkpoint stores only
//! what changed.
//!
//! Chunks live in packs: the new chunks of one upload request, checked one by one against
//! their hashes, are written as one blob (named by its own hash), and `stored_chunks` says where
//! each is. A gigabyte is then a hundred files or objects, not sixteen thousand (an inode or a
//! PUT each). A big content that arrived whole is a pack too: the server cuts it as a client
//! would ([`FileStore::index_chunks`](crate::FileStore::index_chunks)) when a client first sends
//! its next version in chunks, which then finds the unchanged ones; a first upload goes whole, at
//! full speed.
//!
//! Who may remove what: a chunk is named by the lists that have it, and a pack by the chunks in
//! it (both count in `referrers`). The collector takes a content, a chunk or a pack only when
//! nothing names it, under its content lock; a compose takes the chunks' locks and lists them
//! before it reads them, so a chunk it reads stays until the compose is done. A chunk that no
//! list names yet (uploaded for a compose to come) is kept. Only a verified content exists; one
//! whose compose never finished (its server died) is dropped after [`STALE_COMPOSE`]. A pack
//! stays whole while any chunk in it is named: its dead chunks are not reclaimed before.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};

use cairn_types::Timestamp;
use cairn_types::api::{ChunkRef, UPLOAD_BATCH_FILE_MAX, UploadBatchResult};
use cairn_types::error::{CodedError, ErrorCode};
use sha2::{Digest, Sha256};

use super::runs::{lock_content, queue_unnamed, queue_unnamed_at, referrers};
use super::{Db, Dialect, Param, SqlStore, args};
use crate::Result;
use crate::blob::{BlobRef, ChunkedReader, Piece, coalesce, hex, valid_sha};

/// A compose unfinished for this long was abandoned: its list is dropped and its chunks may go.
pub const STALE_COMPOSE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Rows per statement when a list is written or read in parts.
const ROWS_PER_STATEMENT: usize = 200;

/// The longest range read from a pack at once.
const READ_RANGE: u64 = 8 << 20;

/// The size of `sha256` when it is a verified chunked content.
pub(crate) fn chunked_size(db: &dyn Db, sha256: &str) -> Result<Option<u64>> {
    Ok(db.opt_row("SELECT size FROM chunked_contents WHERE sha256 = ?1 AND verified_at IS NOT NULL", args![sha256])?.map(|r| r.i64(0)).transpose()?.map(|s| s as u64))
}

/// Whether the blob store or the chunk lists hold `sha256`.
pub(crate) fn content_exists(db: &dyn Db, blobs: &dyn crate::BlobStore, sha256: &str) -> Result<bool> {
    Ok(chunked_size(db, sha256)?.is_some() || blobs.exists(sha256)?)
}

/// A chunk of a content: its hash, and where it is.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    pub sha256: String,
    pub piece: Piece,
}

/// The chunks of `sha256` in order, where they are (empty when it is not chunked). A chunk that
/// is in no pack (collected meanwhile) is left out: the caller compares the sizes.
pub(crate) fn located(db: &dyn Db, sha256: &str) -> Result<Vec<Located>> {
    db.query(
        "SELECT c.chunk, k.pack, k.pack_offset, k.size FROM content_chunks c JOIN stored_chunks k ON k.sha256 = c.chunk
         WHERE c.sha256 = ?1 ORDER BY c.seq",
        args![sha256],
    )?
    .iter()
    .map(located_from_row)
    .collect()
}

/// A row of (chunk, pack, offset, size).
fn located_from_row(r: &super::Row) -> Result<Located> {
    Ok(Located { sha256: r.string(0)?, piece: Piece { blob: r.string(1)?, offset: r.i64(2)? as u64, size: r.i64(3)? as u64 } })
}

/// The chunks of `sha256` in order, as listed (empty when it is not chunked).
pub(crate) fn chunk_list(db: &dyn Db, sha256: &str) -> Result<Vec<BlobRef>> {
    db.query("SELECT chunk, size FROM content_chunks WHERE sha256 = ?1 ORDER BY seq", args![sha256])?
        .iter()
        .map(|r| Ok(BlobRef { sha256: r.string(0)?, size: r.i64(1)? as u64 }))
        .collect()
}

/// Takes the content locks of `shas` (PostgreSQL), in one order whoever asks, so that two
/// transactions that lock overlapping sets never wait on each other in a circle.
fn lock_all(db: &dyn Db, shas: &[&str]) -> Result<()> {
    if db.dialect() == Dialect::Postgres && !shas.is_empty() {
        db.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(x, 0))
             FROM (SELECT DISTINCT x FROM unnest(string_to_array(?1, ',')) AS t(x) ORDER BY x) s",
            args![shas.join(",")],
        )?;
    }
    Ok(())
}

/// Runs `sql` (with `{}` for a list of placeholders) on `shas` in parts; returns the rows.
fn in_parts(db: &dyn Db, sql: &str, shas: &[&str]) -> Result<Vec<super::Row>> {
    let mut out = Vec::new();
    for part in shas.chunks(ROWS_PER_STATEMENT) {
        let marks: Vec<String> = (1..=part.len()).map(|i| format!("?{i}")).collect();
        let params: Vec<Param<'_>> = part.iter().map(|s| Param::Text(s)).collect();
        out.extend(db.query(&sql.replace("{}", &marks.join(", ")), &params)?);
    }
    Ok(out)
}

/// Drops the chunk list of `sha256` (the caller holds its lock) and returns its chunks, once each.
pub(crate) fn drop_list(db: &dyn Db, sha256: &str) -> Result<Vec<String>> {
    let mut chunks = db.column_string("SELECT DISTINCT chunk FROM content_chunks WHERE sha256 = ?1", args![sha256])?;
    chunks.sort();
    db.execute("DELETE FROM content_chunks WHERE sha256 = ?1", args![sha256])?;
    db.execute("DELETE FROM chunked_contents WHERE sha256 = ?1", args![sha256])?;
    Ok(chunks)
}

/// Lists `chunks` as the content `sha256`, unverified.
pub(crate) fn write_list(db: &dyn Db, sha256: &str, size: u64, chunks: &[BlobRef], now: Timestamp) -> Result<()> {
    db.execute(
        "INSERT INTO chunked_contents (sha256, size, chunk_count, created_at, verified_at) VALUES (?1, ?2, ?3, ?4, NULL)",
        args![sha256, size as i64, chunks.len() as i64, now.micros()],
    )?;
    let seqs: Vec<i64> = (0..chunks.len() as i64).collect();
    let sizes: Vec<i64> = chunks.iter().map(|c| c.size as i64).collect();
    for (at, part) in chunks.chunks(ROWS_PER_STATEMENT).enumerate() {
        let base = at * ROWS_PER_STATEMENT;
        let mut sql = String::from("INSERT INTO content_chunks (sha256, seq, chunk, size) VALUES ");
        let mut params: Vec<Param<'_>> = Vec::with_capacity(part.len() * 4);
        for (i, chunk) in part.iter().enumerate() {
            let n = params.len();
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(?{}, ?{}, ?{}, ?{})", n + 1, n + 2, n + 3, n + 4));
            params.extend([Param::Text(sha256), Param::Int(seqs[base + i]), Param::Text(&chunk.sha256), Param::Int(sizes[base + i])]);
        }
        db.execute(&sql, &params)?;
    }
    Ok(())
}

/// Lists `chunks`, all in packs and checked, as the verified content `sha256`, unless it is
/// listed already (a store copy).
pub(crate) fn write_verified_list(db: &dyn Db, sha256: &str, size: u64, chunks: &[BlobRef]) -> Result<()> {
    let mut locks: Vec<&str> = chunks.iter().map(|c| c.sha256.as_str()).collect();
    locks.push(sha256);
    lock_all(db, &locks)?;
    if chunked_size(db, sha256)?.is_some() {
        return Ok(());
    }
    drop_list(db, sha256)?;
    let now = Timestamp::now();
    write_list(db, sha256, size, chunks, now)?;
    db.execute("UPDATE chunked_contents SET verified_at = ?2 WHERE sha256 = ?1", args![sha256, now.micros()])?;
    Ok(())
}

/// Records chunks as in `pack` at their offsets; those recorded already (in another pack) keep
/// their place. Returns how many were recorded here.
pub(crate) fn record_chunks(db: &dyn Db, pack: &str, chunks: &[(String, u64, u64)]) -> Result<usize> {
    let shas: Vec<&str> = chunks.iter().map(|(s, _, _)| s.as_str()).collect();
    lock_all(db, &shas)?;
    let mut recorded = 0;
    for (sha, offset, size) in chunks {
        recorded += db.execute(
            "INSERT INTO stored_chunks (sha256, pack, pack_offset, size) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (sha256) DO NOTHING",
            args![sha, pack, *offset as i64, *size as i64],
        )? as usize;
    }
    Ok(recorded)
}

fn check_chunks(sha256: &str, size: u64, chunks: &[ChunkRef]) -> Result<Vec<BlobRef>> {
    valid_sha(sha256)?;
    let bad = |why: String| CodedError::new(ErrorCode::InvalidValue, format!("composing {sha256}: {why}"));
    if chunks.is_empty() {
        return Err(bad("no chunks".into()));
    }
    let mut total = 0u64;
    for (i, c) in chunks.iter().enumerate() {
        valid_sha(&c.sha256).map_err(|e| bad(format!("chunk {i}: {}", e.message)))?;
        if c.size == 0 || c.size > UPLOAD_BATCH_FILE_MAX {
            return Err(bad(format!("chunk {i} has {} bytes; a chunk has 1 to {UPLOAD_BATCH_FILE_MAX}", c.size)));
        }
        total += c.size;
    }
    if total != size {
        return Err(bad(format!("the chunks hold {total} bytes, not the {size} of the content")));
    }
    Ok(chunks.iter().map(|c| BlobRef { sha256: c.sha256.clone(), size: c.size }).collect())
}

impl SqlStore {
    pub(crate) fn chunked_content_size(&self, sha256: &str) -> Result<Option<u64>> {
        if let Some(size) = self.blobs.size(sha256)? {
            return Ok(Some(size));
        }
        self.read(|db| chunked_size(db, sha256))
    }

    /// A reader of the content's chunks, with the sizes of the list checked against where the
    /// chunks are: a chunk that went away is `missing`.
    fn chunk_reader(&self, list: &[BlobRef], pieces: Vec<Located>, missing: impl Fn(usize) -> CodedError) -> Result<ChunkedReader> {
        let at: HashMap<&str, &Piece> = pieces.iter().map(|l| (l.sha256.as_str(), &l.piece)).collect();
        let lost: HashSet<&str> = list.iter().filter(|c| at.get(c.sha256.as_str()).is_none_or(|p| p.size != c.size)).map(|c| c.sha256.as_str()).collect();
        if !lost.is_empty() {
            return Err(missing(lost.len()));
        }
        let ranges = coalesce(list.iter().map(|c| at[c.sha256.as_str()].clone()), READ_RANGE);
        Ok(ChunkedReader::new(self.blobs.clone(), ranges, self.blobs.parallelism()))
    }

    pub(crate) fn open_chunked(&self, sha256: &str) -> Result<Box<dyn Read + Send>> {
        match self.blobs.open(sha256) {
            Err(e) if e.code == ErrorCode::FileNotFound => {}
            other => return other,
        }
        let (list, pieces) = self.read(|db| {
            if chunked_size(db, sha256)?.is_none() {
                return Err(CodedError::new(ErrorCode::FileNotFound, format!("content {sha256} not found")));
            }
            Ok((chunk_list(db, sha256)?, located(db, sha256)?))
        })?;
        let reader = self.chunk_reader(&list, pieces, |n| CodedError::new(ErrorCode::Internal, format!("content {sha256} lost {n} of its chunks: the store is damaged")))?;
        Ok(Box::new(reader))
    }

    pub(crate) fn chunks_missing(&self, shas: &[String]) -> Result<Vec<String>> {
        for sha in shas {
            valid_sha(sha)?;
        }
        let mut asked: Vec<&str> = shas.iter().map(String::as_str).collect();
        asked.sort();
        asked.dedup();
        let held: HashSet<String> = self.read(|db| in_parts(db, "SELECT sha256 FROM stored_chunks WHERE sha256 IN ({})", &asked)?.iter().map(|r| r.string(0)).collect())?;
        Ok(asked.into_iter().filter(|s| !held.contains(*s)).map(str::to_owned).collect())
    }

    pub(crate) fn store_chunks(&self, chunks: &[(String, &[u8])]) -> Result<UploadBatchResult> {
        let mut result = UploadBatchResult::default();
        for (sha, bytes) in chunks {
            valid_sha(sha)?;
            if bytes.is_empty() || bytes.len() as u64 > UPLOAD_BATCH_FILE_MAX {
                return Err(CodedError::new(ErrorCode::InvalidValue, format!("chunk {sha} has {} bytes; a chunk has 1 to {UPLOAD_BATCH_FILE_MAX}", bytes.len())));
            }
            let got = hex(&Sha256::digest(bytes));
            if &got != sha {
                return Err(CodedError::new(ErrorCode::ContentMismatch, format!("a chunk claims SHA-256 {sha} but has {got}; nothing of the batch was stored")));
            }
        }
        let names: Vec<&str> = chunks.iter().map(|(s, _)| s.as_str()).collect();
        let held: HashSet<String> = self.read(|db| in_parts(db, "SELECT sha256 FROM stored_chunks WHERE sha256 IN ({})", &names)?.iter().map(|r| r.string(0)).collect())?;
        // The new ones, once each, one after the other in a pack.
        let mut scratch = match self.blobs.scratch_dir() {
            Some(dir) => tempfile::NamedTempFile::new_in(dir),
            None => tempfile::NamedTempFile::new(),
        }
        .map_err(|e| CodedError::new(ErrorCode::Internal, format!("cannot create a scratch file: {e}")))?;
        let mut placed: Vec<(String, u64, u64)> = Vec::new();
        let mut seen = HashSet::new();
        let (mut hasher, mut offset) = (Sha256::new(), 0u64);
        {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, scratch.as_file_mut());
            for (sha, bytes) in chunks {
                if held.contains(sha) {
                    result.present.push(sha.clone());
                    continue;
                }
                if !seen.insert(sha.as_str()) {
                    continue;
                }
                out.write_all(bytes).map_err(|e| CodedError::new(ErrorCode::Internal, format!("cannot write a pack: {e}")))?;
                hasher.update(bytes);
                placed.push((sha.clone(), offset, bytes.len() as u64));
                offset += bytes.len() as u64;
                result.stored.push(sha.clone());
            }
            out.flush().map_err(|e| CodedError::new(ErrorCode::Internal, format!("cannot write a pack: {e}")))?;
        }
        if placed.is_empty() {
            return Ok(result);
        }
        let pack = BlobRef { sha256: hex(&hasher.finalize()), size: offset };
        // Listed for collection before it is stored: a server that dies before its chunks are
        // recorded leaves no pack that nothing would ever remove.
        let later = || Timestamp::now().micros() + STALE_COMPOSE.as_micros() as i64;
        {
            let (sha, due) = (pack.sha256.clone(), later());
            self.write(move |db| db.execute("INSERT INTO blob_gc (sha256, since) VALUES (?1, ?2) ON CONFLICT (sha256) DO UPDATE SET since = excluded.since", args![sha, due]))?;
        }
        let pack = self.blobs.put_hashed(scratch.path(), pack)?;
        let recorded = {
            let (pack, placed, blobs, due) = (pack.sha256.clone(), placed.clone(), self.blobs.clone(), later());
            self.write(move |db| {
                lock_content(db, &pack)?;
                // Still listed, for later: chunks sent for a compose that never comes (its client
                // gave up) go with their pack then; chunks that a content lists by then keep it.
                db.execute("INSERT INTO blob_gc (sha256, since) VALUES (?1, ?2) ON CONFLICT (sha256) DO UPDATE SET since = excluded.since", args![pack, due])?;
                if !blobs.exists(&pack)? {
                    return Err(CodedError::new(ErrorCode::UploadInProgress, format!("pack {pack} was collected as it was stored; send the chunks again")));
                }
                let recorded = record_chunks(db, &pack, &placed)?;
                // Every chunk of it arrived meanwhile in another pack: nothing names this one.
                if recorded == 0 {
                    lock_content(db, &pack)?;
                    queue_unnamed(db, vec![pack])?;
                }
                Ok(recorded)
            })?
        };
        if recorded == 0 {
            crate::FileStore::collect_blobs(self, Some(&[pack.sha256]))?;
        }
        Ok(result)
    }

    pub(crate) fn compose(&self, sha256: &str, size: u64, chunks: &[ChunkRef], now: Timestamp) -> Result<BlobRef> {
        let list = check_chunks(sha256, size, chunks)?;
        let distinct = list.iter().map(|c| c.sha256.as_str()).collect::<HashSet<_>>().len();
        // Listed first, under the chunks' locks: from here on no chunk of the list is collected.
        let (fresh, pieces) = {
            let (sha, list, blobs) = (sha256.to_owned(), list.clone(), self.blobs.clone());
            self.write(move |db| {
                let mut locks: Vec<&str> = list.iter().map(|c| c.sha256.as_str()).collect();
                locks.push(&sha);
                lock_all(db, &locks)?;
                let names: Vec<&str> = list.iter().map(|c| c.sha256.as_str()).collect();
                let pieces: Vec<Located> =
                    in_parts(db, "SELECT sha256, pack, pack_offset, size FROM stored_chunks WHERE sha256 IN ({})", &names)?.iter().map(located_from_row).collect::<Result<_>>()?;
                let held: HashSet<&str> = pieces.iter().map(|l| l.sha256.as_str()).collect();
                let absent = names.iter().copied().collect::<HashSet<_>>().iter().filter(|s| !held.contains(**s)).count();
                if absent > 0 {
                    return Err(CodedError::new(
                        ErrorCode::ChunksMissing,
                        format!("composing {sha}: {absent} of its {distinct} chunks are not uploaded; send them (POST /api/v1/chunks), then compose again"),
                    ));
                }
                // Held already (whole or in chunks): the compose only proves the caller has it.
                if content_exists(db, blobs.as_ref(), &sha)? {
                    return Ok((false, pieces));
                }
                // An earlier compose of the same content: one under way (another request, maybe
                // through another server) is left to finish; one abandoned is replaced.
                if let Some(r) = db.opt_row("SELECT created_at FROM chunked_contents WHERE sha256 = ?1 AND verified_at IS NULL", args![sha])?
                    && r.i64(0)? > now.micros() - STALE_COMPOSE.as_micros() as i64
                {
                    return Err(CodedError::new(ErrorCode::UploadInProgress, format!("another compose of {sha} is under way; try again when it is done")));
                }
                drop_list(db, &sha)?;
                write_list(db, &sha, size, &list, now)?;
                for part in names.chunks(ROWS_PER_STATEMENT) {
                    let marks: Vec<String> = (1..=part.len()).map(|i| format!("?{i}")).collect();
                    let params: Vec<Param<'_>> = part.iter().map(|c| Param::Text(c)).collect();
                    db.execute(&format!("DELETE FROM blob_gc WHERE sha256 IN ({})", marks.join(", ")), &params)?;
                }
                Ok((true, pieces))
            })?
        };
        // Our list, and no other: a compose is known by the time it listed its chunks.
        let ours = now.micros();
        let give_up = |error: CodedError| -> Result<BlobRef> {
            if fresh {
                let sha = sha256.to_owned();
                self.write(move |db| {
                    lock_content(db, &sha)?;
                    if db.opt_row("SELECT 1 FROM chunked_contents WHERE sha256 = ?1 AND verified_at IS NULL AND created_at = ?2", args![sha, ours])?.is_some() {
                        // Its chunks go back to the collector, after the time a client has to
                        // send what was missing and compose again.
                        let chunks = drop_list(db, &sha)?;
                        queue_unnamed_at(db, chunks, Timestamp(Timestamp::now().micros() + STALE_COMPOSE.as_micros() as i64))?;
                    }
                    Ok(())
                })?;
            }
            Err(error)
        };
        // Every chunk is where it was recorded, with its size, and the whole reads back as the
        // content.
        let mut reader = match self
            .chunk_reader(&list, pieces, |n| CodedError::new(ErrorCode::ContentMismatch, format!("composing {sha256}: {n} of its chunks have other sizes than the list says")))
        {
            Ok(reader) => reader,
            Err(e) => return give_up(e),
        };
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut read = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(n) => n,
                Err(e) => return give_up(CodedError::new(ErrorCode::ChunksMissing, format!("composing {sha256}: {e}; send it again"))),
            };
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            read += n as u64;
        }
        let actual = hex(&hasher.finalize());
        if actual != sha256 || read != size {
            return give_up(CodedError::new(ErrorCode::ContentMismatch, format!("the chunks make a content of {read} bytes with SHA-256 {actual}, not {sha256}; upload it again")));
        }
        if fresh {
            let sha = sha256.to_owned();
            let verified = self.write(move |db| {
                db.execute(
                    "UPDATE chunked_contents SET verified_at = ?2 WHERE sha256 = ?1 AND verified_at IS NULL AND created_at = ?3",
                    args![sha, Timestamp::now().micros(), ours],
                )
            })?;
            if verified == 0 && self.read(|db| chunked_size(db, sha256))?.is_none() {
                return Err(CodedError::new(ErrorCode::UploadInProgress, format!("the compose of {sha256} was dropped meanwhile; compose it again")));
            }
        }
        Ok(BlobRef { sha256: sha256.to_owned(), size })
    }

    pub(crate) fn index(&self, sha256: &str) -> Result<usize> {
        valid_sha(sha256)?;
        // Cut once: a content that is a pack already (or in chunks) has its chunks recorded.
        if self.read(|db| Ok(db.opt_row("SELECT 1 FROM stored_chunks WHERE pack = ?1 LIMIT 1", args![sha256])?.is_some() || chunked_size(db, sha256)?.is_some()))? {
            return Ok(0);
        }
        let reader = match self.blobs.open(sha256) {
            Err(e) if e.code == ErrorCode::FileNotFound => return Ok(0),
            other => other?,
        };
        let chunks = cairn_types::chunking::chunk_reader(reader).map_err(|e| CodedError::new(ErrorCode::Internal, format!("cannot cut content {sha256} into chunks: {e}")))?;
        let mut placed = Vec::with_capacity(chunks.len());
        let mut offset = 0u64;
        let mut seen = HashSet::new();
        for c in chunks {
            if seen.insert(c.sha256.clone()) {
                placed.push((c.sha256, offset, c.size));
            }
            offset += c.size;
        }
        let (sha, blobs) = (sha256.to_owned(), self.blobs.clone());
        self.write(move |db| {
            // Under the content's lock: a collection of it under way ends first, and one that
            // removed it (or is due to) leaves nothing to index.
            lock_content(db, &sha)?;
            if !db.query("SELECT 1 FROM blob_gc WHERE sha256 = ?1", args![sha])?.is_empty() || !blobs.exists(&sha)? {
                return Ok(0);
            }
            record_chunks(db, &sha, &placed)
        })
    }

    /// [`FileStore::collect_blobs`](crate::FileStore::collect_blobs) of every content listed for
    /// collection by `now`, after the lists of composes abandoned an hour before it.
    pub fn collect_due(&self, now: Timestamp) -> Result<Vec<String>> {
        self.drop_stale_composes(Timestamp(now.micros() - STALE_COMPOSE.as_micros() as i64))?;
        let due = self.read(|db| db.column_string("SELECT sha256 FROM blob_gc WHERE since <= ?1 ORDER BY since LIMIT 1000", args![now.micros()]))?;
        if due.is_empty() {
            return Ok(due);
        }
        crate::FileStore::collect_blobs(self, Some(&due))
    }

    /// Drops the lists of composes abandoned before `deadline`; their chunks are queued for
    /// collection when nothing else names them. Returns the chunks queued.
    pub fn drop_stale_composes(&self, deadline: Timestamp) -> Result<Vec<String>> {
        let stale = self.read(|db| db.column_string("SELECT sha256 FROM chunked_contents WHERE verified_at IS NULL AND created_at < ?1 LIMIT 100", args![deadline.micros()]))?;
        let mut queued = Vec::new();
        for sha in stale {
            queued.extend(self.write(move |db| {
                lock_content(db, &sha)?;
                if db.opt_row("SELECT 1 FROM chunked_contents WHERE sha256 = ?1 AND verified_at IS NULL", args![sha])?.is_none() {
                    return Ok(Vec::new());
                }
                let chunks = drop_list(db, &sha)?;
                queue_unnamed(db, chunks)
            })?);
        }
        Ok(queued)
    }
}

/// For the collector, before it counts the names of `sha256`: takes the locks of the chunks in
/// it, when it is a pack, so that no compose lists one of them meanwhile.
pub(crate) fn lock_pack(db: &dyn Db, sha256: &str) -> Result<()> {
    let inside = db.column_string("SELECT sha256 FROM stored_chunks WHERE pack = ?1", args![sha256])?;
    lock_all(db, &inside.iter().map(String::as_str).collect::<Vec<_>>())
}

/// For the collector, on a content nothing names (the caller holds its lock and the locks of
/// [`lock_pack`]): a chunked content lets go of its chunks, a chunk of its pack, a pack of the
/// chunks in it that no content lists. Returns those that nothing else names, queued for
/// collection.
pub(crate) fn release(db: &dyn Db, sha256: &str) -> Result<Vec<String>> {
    let mut freed = drop_list(db, sha256)?;
    if let Some(pack) = db.opt_row("DELETE FROM stored_chunks WHERE sha256 = ?1 RETURNING pack", args![sha256])? {
        freed.push(pack.string(0)?);
    }
    // A chunk in no list is gone with its pack: a compose that wants it is told to send it.
    db.execute("DELETE FROM stored_chunks WHERE pack = ?1", args![sha256])?;
    if freed.is_empty() {
        return Ok(freed);
    }
    debug_assert_eq!(referrers(db, sha256)?, 0);
    queue_unnamed(db, freed)
}
