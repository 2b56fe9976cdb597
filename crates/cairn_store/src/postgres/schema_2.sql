-- Version 2: work that one server does at a time, the holder and when its lease lapses.
CREATE TABLE leases (
    name    TEXT PRIMARY KEY,
    holder  TEXT NOT NULL,
    until   BIGINT NOT NULL
);
