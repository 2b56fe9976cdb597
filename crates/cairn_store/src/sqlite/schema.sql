-- cairn's embedded store. Times are microseconds since the Unix epoch; JSON columns hold text.

CREATE TABLE IF NOT EXISTS entities (
    entity_pk   INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS projects (
    project_pk        INTEGER PRIMARY KEY,
    entity_pk         INTEGER NOT NULL REFERENCES entities (entity_pk),
    name              TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    last_activity_at  INTEGER,
    run_seq           INTEGER NOT NULL DEFAULT 0,
    visibility        TEXT NOT NULL DEFAULT 'private',
    UNIQUE (entity_pk, name)
);

CREATE TABLE IF NOT EXISTS runs (
    run_pk          INTEGER PRIMARY KEY,
    project_pk      INTEGER NOT NULL REFERENCES projects (project_pk),
    run_id          TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    name            TEXT NOT NULL,
    state           TEXT NOT NULL,
    config          TEXT NOT NULL DEFAULT '{}',
    summary         TEXT NOT NULL DEFAULT '{}',
    tags            TEXT NOT NULL DEFAULT '[]',
    notes           TEXT NOT NULL DEFAULT '',
    grp             TEXT,
    job_type        TEXT,
    metadata        TEXT NOT NULL DEFAULT '{}',
    metric_defs     TEXT NOT NULL DEFAULT '{}',
    created_at      INTEGER NOT NULL,
    started_at      INTEGER NOT NULL,
    heartbeat_at    INTEGER,
    finished_at     INTEGER,
    exit_code       INTEGER,
    last_step       INTEGER,
    stop_requested  INTEGER NOT NULL DEFAULT 0,
    off_history     INTEGER NOT NULL DEFAULT 0,
    off_summary     INTEGER NOT NULL DEFAULT 0,
    off_config      INTEGER NOT NULL DEFAULT 0,
    off_system      INTEGER NOT NULL DEFAULT 0,
    off_console     INTEGER NOT NULL DEFAULT 0,
    off_events      INTEGER NOT NULL DEFAULT 0,
    deleted_at      INTEGER,
    -- The active time of the sessions before the current one, and when the current one began
    -- (NULL: at started_at). Duration is their sum with the current session's span.
    active_us       INTEGER NOT NULL DEFAULT 0,
    session_at      INTEGER,
    -- When the run said it may be preempted (mark_preempting); NULL otherwise.
    preempting_at   INTEGER,
    UNIQUE (project_pk, run_id)
);
CREATE INDEX IF NOT EXISTS runs_by_project_created ON runs (project_pk, created_at);
CREATE INDEX IF NOT EXISTS runs_running ON runs (heartbeat_at) WHERE state = 'running';

-- One row per logged key of a run, with totals over all its points. Stream 0 is history, 1 system.
CREATE TABLE IF NOT EXISTS run_keys (
    key_pk       INTEGER PRIMARY KEY,
    run_pk       INTEGER NOT NULL REFERENCES runs (run_pk),
    stream       INTEGER NOT NULL,
    name         TEXT NOT NULL,
    path         TEXT NOT NULL,
    count        INTEGER NOT NULL,
    num_count    INTEGER NOT NULL,
    nan_count    INTEGER NOT NULL,
    min          REAL,
    max          REAL,
    sum          REAL,
    first_step   INTEGER NOT NULL,
    last_step    INTEGER NOT NULL,
    first_value  BLOB NOT NULL,
    last_value   BLOB NOT NULL,
    UNIQUE (run_pk, stream, name)
);

-- Points of a key, in chunks of up to 8192, pco-compressed, with their aggregates beside them.
CREATE TABLE IF NOT EXISTS chunks (
    key_pk      INTEGER NOT NULL,
    start_step  INTEGER NOT NULL,
    end_step    INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    num_count   INTEGER NOT NULL,
    nan_count   INTEGER NOT NULL,
    min         REAL,
    max         REAL,
    sum         REAL,
    last        REAL,
    data        BLOB NOT NULL,
    PRIMARY KEY (key_pk, start_step)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS console_lines (
    run_pk  INTEGER NOT NULL,
    line    INTEGER NOT NULL,
    stream  INTEGER NOT NULL,
    ts      INTEGER NOT NULL,
    text    TEXT NOT NULL,
    PRIMARY KEY (run_pk, line)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS run_files (
    run_pk      INTEGER NOT NULL,
    path        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (run_pk, path)
) WITHOUT ROWID;

-- Alerts raised by runs (run.alert), and their delivery to the server's targets.
CREATE TABLE IF NOT EXISTS alerts (
    alert_pk         INTEGER PRIMARY KEY,
    run_pk           INTEGER NOT NULL,
    time             INTEGER NOT NULL,
    title            TEXT NOT NULL,
    text             TEXT NOT NULL,
    level            TEXT NOT NULL,
    delivery         TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    delivered_to     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alerts_by_run ON alerts (run_pk, title, time);
CREATE INDEX IF NOT EXISTS alerts_pending ON alerts (next_attempt_at) WHERE delivery = 'pending';

-- Work that one server does at a time (version 4): the holder and when its lease lapses.
CREATE TABLE IF NOT EXISTS leases (
    name    TEXT PRIMARY KEY,
    holder  TEXT NOT NULL,
    until   INTEGER NOT NULL
);

-- Contents that nothing names any more, to remove from the blob store (version 5).
CREATE TABLE IF NOT EXISTS blob_gc (
    sha256  TEXT PRIMARY KEY,
    since   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS run_files_by_sha ON run_files (sha256);

-- Accounts (version 6): an entity that is a user or a team, team roles, and API keys, stored as
-- the SHA-256 of the key.
CREATE TABLE IF NOT EXISTS accounts (
    entity_pk      INTEGER PRIMARY KEY REFERENCES entities (entity_pk),
    kind           TEXT NOT NULL,
    admin          INTEGER NOT NULL DEFAULT 0,
    password_hash  TEXT,
    created_at     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS memberships (
    team_pk  INTEGER NOT NULL,
    user_pk  INTEGER NOT NULL,
    role     TEXT NOT NULL,
    PRIMARY KEY (team_pk, user_pk)
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_pk        INTEGER PRIMARY KEY,
    user_pk       INTEGER NOT NULL,
    name          TEXT NOT NULL,
    prefix        TEXT NOT NULL,
    hash          TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    last_used_at  INTEGER,
    revoked_at    INTEGER
);
CREATE INDEX IF NOT EXISTS api_keys_by_user ON api_keys (user_pk);

-- Version 7: signed-in sessions (the SHA-256 of their tokens), the audit log, and project
-- visibility (`projects.visibility`).
CREATE TABLE IF NOT EXISTS sessions (
    hash        TEXT PRIMARY KEY,
    user_pk     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_log (
    audit_pk  INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    detail    TEXT NOT NULL
);

-- Version 8: artifacts. Collections per project, versions numbered at commit and unique by
-- manifest digest, entries (stored contents are blob SHA-256s, references have a URI), aliases
-- (one version each), and lineage edges between runs and versions.
CREATE TABLE IF NOT EXISTS artifact_collections (
    collection_pk  INTEGER PRIMARY KEY,
    project_pk     INTEGER NOT NULL,
    name           TEXT NOT NULL,
    kind           TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (project_pk, name)
);
CREATE TABLE IF NOT EXISTS artifact_versions (
    version_pk     INTEGER PRIMARY KEY,
    collection_pk  INTEGER NOT NULL,
    version_index  INTEGER NOT NULL,
    digest         TEXT NOT NULL,
    size           INTEGER NOT NULL,
    file_count     INTEGER NOT NULL,
    description    TEXT,
    metadata       TEXT NOT NULL DEFAULT '{}',
    created_at     INTEGER NOT NULL,
    logged_by      INTEGER,
    UNIQUE (collection_pk, version_index),
    UNIQUE (collection_pk, digest)
);
CREATE TABLE IF NOT EXISTS artifact_entries (
    version_pk  INTEGER NOT NULL,
    path        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    ref         TEXT,
    PRIMARY KEY (version_pk, path)
);
CREATE INDEX IF NOT EXISTS artifact_entries_by_digest ON artifact_entries (digest);
CREATE TABLE IF NOT EXISTS artifact_aliases (
    collection_pk  INTEGER NOT NULL,
    alias          TEXT NOT NULL,
    version_pk     INTEGER NOT NULL,
    PRIMARY KEY (collection_pk, alias)
);
CREATE INDEX IF NOT EXISTS artifact_aliases_by_version ON artifact_aliases (version_pk);
CREATE TABLE IF NOT EXISTS artifact_usage (
    version_pk  INTEGER NOT NULL,
    run_pk      INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    PRIMARY KEY (version_pk, run_pk, kind)
);
CREATE INDEX IF NOT EXISTS artifact_usage_by_run ON artifact_usage (run_pk);

-- Version 9: contents stored as content-defined chunks. A content's chunks, in order, shared
-- by every content that has them; the content exists once it is verified (its chunks read back
-- and hashed). Chunks are kept in packs, blobs of the chunks that arrived in one request, so a
-- gigabyte is a hundred files or objects, not sixteen thousand.
CREATE TABLE IF NOT EXISTS chunked_contents (
    sha256       TEXT PRIMARY KEY,
    size         INTEGER NOT NULL,
    chunk_count  INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    verified_at  INTEGER
);
CREATE TABLE IF NOT EXISTS content_chunks (
    sha256  TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    chunk   TEXT NOT NULL,
    size    INTEGER NOT NULL,
    PRIMARY KEY (sha256, seq)
);
CREATE INDEX IF NOT EXISTS content_chunks_by_chunk ON content_chunks (chunk);
CREATE TABLE IF NOT EXISTS stored_chunks (
    sha256       TEXT PRIMARY KEY,
    pack         TEXT NOT NULL,
    pack_offset  INTEGER NOT NULL,
    size         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS stored_chunks_by_pack ON stored_chunks (pack);

-- Version 10: workspace layouts, per project and viewer (a user's name; '' without accounts).
CREATE TABLE IF NOT EXISTS workspaces (
    project_pk  INTEGER NOT NULL REFERENCES projects (project_pk),
    viewer      TEXT NOT NULL,
    layout      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (project_pk, viewer)
);

-- Version 11: sweeps and their trials (each the run an agent was handed, with its parameters).
CREATE TABLE IF NOT EXISTS sweeps (
    sweep_pk    INTEGER PRIMARY KEY,
    project_pk  INTEGER NOT NULL REFERENCES projects (project_pk),
    sweep_id    TEXT NOT NULL,
    config      TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (project_pk, sweep_id)
);
CREATE TABLE IF NOT EXISTS sweep_trials (
    sweep_pk     INTEGER NOT NULL REFERENCES sweeps (sweep_pk),
    seq          INTEGER NOT NULL,
    run_id       TEXT NOT NULL,
    grid_index   INTEGER,
    params       TEXT NOT NULL,
    agent        TEXT NOT NULL,
    assigned_at  INTEGER NOT NULL,
    PRIMARY KEY (sweep_pk, seq),
    UNIQUE (sweep_pk, run_id)
);

-- Version 12: hyperband's judgements of a sweep's trials, one per trial and bracket.
CREATE TABLE IF NOT EXISTS sweep_decisions (
    sweep_pk    INTEGER NOT NULL REFERENCES sweeps (sweep_pk),
    run_id      TEXT NOT NULL,
    bracket     INTEGER NOT NULL,
    value       REAL NOT NULL,
    threshold   REAL NOT NULL,
    rank        INTEGER NOT NULL,
    reached     INTEGER NOT NULL,
    kept        INTEGER NOT NULL,
    stopped     INTEGER NOT NULL,
    decided_at  INTEGER NOT NULL,
    PRIMARY KEY (sweep_pk, run_id, bracket)
);

-- Version 13: secrets of the deployment (what signs upload URLs), made on first use.
CREATE TABLE IF NOT EXISTS server_secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
