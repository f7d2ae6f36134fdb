-- Catalog schema, version 1 (PostgreSQL).
--
-- The same tables, columns and indexes as `../sqlite/0001_catalog.sql` (read it for the
-- layout), in PostgreSQL's spelling:
--
-- - every TEXT column that is compared, ordered or kept unique is `COLLATE "C"`, so that
--   names sort by bytes like Rust's `str` (and ids like the UUIDs they hold) whatever the
--   database's default collation is;
-- - the key envelope is BYTEA (SQLite's BLOB).

CREATE TABLE organizations (
    id    TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    login TEXT COLLATE "C" NOT NULL,
    data  TEXT             NOT NULL,
    CONSTRAINT organizations_login_unique UNIQUE (login)
);

CREATE TABLE accounts (
    id       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    username TEXT COLLATE "C" NOT NULL,
    data     TEXT             NOT NULL
);
CREATE INDEX accounts_username ON accounts (username, id);

CREATE TABLE tags (
    id   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL,
    data TEXT             NOT NULL
);
CREATE INDEX tags_name ON tags (name, id);

CREATE TABLE priority_groups (
    id   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL,
    data TEXT             NOT NULL
);
CREATE INDEX priority_groups_name ON priority_groups (name, id);

CREATE TABLE destinations (
    id   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL,
    data TEXT             NOT NULL,
    CONSTRAINT destinations_name_unique UNIQUE (name)
);

CREATE TABLE jobs (
    id   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL,
    data TEXT             NOT NULL
);
CREATE INDEX jobs_name ON jobs (name, id);

CREATE TABLE snapshots (
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    account_id    TEXT COLLATE "C" NOT NULL,
    created_secs  BIGINT           NOT NULL,
    created_nanos BIGINT           NOT NULL,
    data          TEXT             NOT NULL
);
CREATE INDEX snapshots_account_created
    ON snapshots (account_id, created_secs, created_nanos, id);

CREATE TABLE key_envelopes (
    account_id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    envelope   BYTEA            NOT NULL
);

CREATE TABLE downloads (
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    account_id    TEXT COLLATE "C" NOT NULL,
    created_secs  BIGINT           NOT NULL,
    created_nanos BIGINT           NOT NULL,
    data          TEXT             NOT NULL
);
CREATE INDEX downloads_account_created
    ON downloads (account_id, created_secs, created_nanos, id);
