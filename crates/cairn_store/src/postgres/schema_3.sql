-- Version 3: contents that nothing names any more, to remove from the blob store.
CREATE TABLE blob_gc (
    sha256  TEXT PRIMARY KEY,
    since   BIGINT NOT NULL
);
