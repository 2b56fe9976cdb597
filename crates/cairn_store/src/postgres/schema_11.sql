-- Version 11: secrets of the deployment (what signs upload URLs), made on first use.
CREATE TABLE server_secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
