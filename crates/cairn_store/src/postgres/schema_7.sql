-- Version 7: contents stored as content-defined chunks. A content's chunks, in order, shared
-- by every content that has them; the content exists once it is verified (its chunks read back
-- and hashed). Chunks are kept in packs, blobs of the chunks that arrived in one request, so a
-- gigabyte is a hundred files or objects, not sixteen thousand.
CREATE TABLE chunked_contents (
    sha256       TEXT PRIMARY KEY,
    size         BIGINT NOT NULL,
    chunk_count  BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    verified_at  BIGINT
);
CREATE TABLE content_chunks (
    sha256  TEXT NOT NULL,
    seq     BIGINT NOT NULL,
    chunk   TEXT NOT NULL,
    size    BIGINT NOT NULL,
    PRIMARY KEY (sha256, seq)
);
CREATE INDEX content_chunks_by_chunk ON content_chunks (chunk);
CREATE TABLE stored_chunks (
    sha256       TEXT PRIMARY KEY,
    pack         TEXT NOT NULL,
    pack_offset  BIGINT NOT NULL,
    size         BIGINT NOT NULL
);
CREATE INDEX stored_chunks_by_pack ON stored_chunks (pack);
