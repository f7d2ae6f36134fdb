-- Catalog schema, version 1.
--
-- Portable on purpose (SQLite now, PostgreSQL later): ids are TEXT (hyphenated lower-case
-- UUIDs, whose text order is their byte order), integers are BIGINT, and `data` is TEXT
-- holding the serde_json of the whole model value. The other columns exist only to look up,
-- order or keep unique; the model can gain fields without touching this schema.
--
-- Timestamps used for ordering are split into whole seconds since the Unix epoch
-- (`created_secs`, floor) and nanoseconds within that second (`created_nanos`, 0..1e9), so
-- that ordering keeps the model's full precision for any date.
--
-- There are no foreign keys between tables: snapshot rows, downloads and key envelopes may be
-- recorded before (or without) their account row, as the in-memory reference allows;
-- deleting an account removes its rows explicitly, in one transaction.
--
-- The only SQLite-specific token is BLOB (PostgreSQL spells it BYTEA).

CREATE TABLE organizations (
    id    TEXT   NOT NULL PRIMARY KEY,
    login TEXT   NOT NULL,
    data  TEXT   NOT NULL,
    CONSTRAINT organizations_login_unique UNIQUE (login)
);

CREATE TABLE accounts (
    id       TEXT NOT NULL PRIMARY KEY,
    username TEXT NOT NULL,
    data     TEXT NOT NULL
);
CREATE INDEX accounts_username ON accounts (username, id);

CREATE TABLE tags (
    id   TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX tags_name ON tags (name, id);

CREATE TABLE priority_groups (
    id   TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX priority_groups_name ON priority_groups (name, id);

CREATE TABLE destinations (
    id   TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    CONSTRAINT destinations_name_unique UNIQUE (name)
);

CREATE TABLE jobs (
    id   TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX jobs_name ON jobs (name, id);

CREATE TABLE snapshots (
    id            TEXT   NOT NULL PRIMARY KEY,
    account_id    TEXT   NOT NULL,
    created_secs  BIGINT NOT NULL,
    created_nanos BIGINT NOT NULL,
    data          TEXT   NOT NULL
);
CREATE INDEX snapshots_account_created
    ON snapshots (account_id, created_secs, created_nanos, id);

CREATE TABLE key_envelopes (
    account_id TEXT NOT NULL PRIMARY KEY,
    envelope   BLOB NOT NULL
);

CREATE TABLE downloads (
    id            TEXT   NOT NULL PRIMARY KEY,
    account_id    TEXT   NOT NULL,
    created_secs  BIGINT NOT NULL,
    created_nanos BIGINT NOT NULL,
    data          TEXT   NOT NULL
);
CREATE INDEX downloads_account_created
    ON downloads (account_id, created_secs, created_nanos, id);
