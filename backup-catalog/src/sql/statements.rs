//! The SQL statements, one set per table (see `migrations/` for the schema), the same text for
//! SQLite and PostgreSQL.
//!
//! Both accept `$n` placeholders and `INSERT … ON CONFLICT (id) DO UPDATE` upserts (atomic
//! under concurrent writers on both). The upsert names only the id as its conflict target, so
//! a clash on another unique column (login, destination name) still fails with a unique
//! violation instead of replacing the other row.

/// Statements of a table keyed by id and ordered by one text column (name, login, username).
#[derive(Debug)]
pub(crate) struct Named {
    /// What a row is, for error messages.
    pub(crate) entity: &'static str,
    /// Upsert: `$1` id, `$2` key column, `$3` data.
    pub(crate) put: &'static str,
    /// `$1` id → (id, data).
    pub(crate) get: &'static str,
    /// `$1` key → (id, data) rows, by id.
    pub(crate) find: &'static str,
    /// Every (id, data), by key then id.
    pub(crate) list: &'static str,
    /// `$1` id.
    pub(crate) delete: &'static str,
}

macro_rules! named {
    ($entity:literal, $table:literal, $key:literal) => {
        Named {
            entity: $entity,
            put: concat!(
                "INSERT INTO ",
                $table,
                " (id, ",
                $key,
                ", data) VALUES ($1, $2, $3) ",
                "ON CONFLICT (id) DO UPDATE SET ",
                $key,
                " = excluded.",
                $key,
                ", data = excluded.data"
            ),
            get: concat!("SELECT id, data FROM ", $table, " WHERE id = $1"),
            find: concat!(
                "SELECT id, data FROM ",
                $table,
                " WHERE ",
                $key,
                " = $1 ORDER BY id"
            ),
            list: concat!("SELECT id, data FROM ", $table, " ORDER BY ", $key, ", id"),
            delete: concat!("DELETE FROM ", $table, " WHERE id = $1"),
        }
    };
}

pub(crate) const ORGANIZATIONS: Named = named!("organization", "organizations", "login");
pub(crate) const ACCOUNTS: Named = named!("account", "accounts", "username");
pub(crate) const TAGS: Named = named!("tag", "tags", "name");
pub(crate) const PRIORITY_GROUPS: Named = named!("priority group", "priority_groups", "name");
pub(crate) const DESTINATIONS: Named = named!("destination", "destinations", "name");
pub(crate) const JOBS: Named = named!("job", "jobs", "name");

/// Statements of a table of per-account rows ordered by creation time (snapshots, downloads).
#[derive(Debug)]
pub(crate) struct Timed {
    /// What a row is, for error messages.
    pub(crate) entity: &'static str,
    /// Upsert: `$1` id, `$2` account id, `$3` created seconds, `$4` created nanos, `$5` data;
    /// snapshots also `$6` bytes stored.
    pub(crate) put: &'static str,
    /// `$1` id → (id, data).
    pub(crate) get: &'static str,
    /// `$1` account id → (id, data) rows, oldest first, then by id.
    pub(crate) list: &'static str,
    /// `$1` id.
    pub(crate) delete: &'static str,
    /// `$1` account id: every row of the account.
    pub(crate) delete_account: &'static str,
}

macro_rules! timed {
    ($entity:literal, $table:literal, put: $put:expr) => {
        Timed {
            entity: $entity,
            put: $put,
            get: concat!("SELECT id, data FROM ", $table, " WHERE id = $1"),
            list: concat!(
                "SELECT id, data FROM ",
                $table,
                " WHERE account_id = $1 ORDER BY created_secs, created_nanos, id"
            ),
            delete: concat!("DELETE FROM ", $table, " WHERE id = $1"),
            delete_account: concat!("DELETE FROM ", $table, " WHERE account_id = $1"),
        }
    };
}

/// The snapshot table and its columns, in the order the upserts bind them.
macro_rules! snapshot_columns {
    () => {
        "snapshots (id, account_id, created_secs, created_nanos, data, bytes_stored)"
    };
}

/// What a snapshot upsert does on a known id.
macro_rules! snapshot_conflict {
    () => {
        " ON CONFLICT (id) DO UPDATE SET account_id = excluded.account_id, \
         created_secs = excluded.created_secs, created_nanos = excluded.created_nanos, \
         data = excluded.data, bytes_stored = excluded.bytes_stored"
    };
}

/// Start of the bulk snapshot upsert: `VALUES (...), (...)` follow, then
/// [`SNAPSHOT_CONFLICT`]. Binds as [`SNAPSHOTS`]' `put`, six per row.
pub(crate) const SNAPSHOT_INSERT: &str = concat!("INSERT INTO ", snapshot_columns!(), " ");
/// End of the bulk snapshot upsert.
pub(crate) const SNAPSHOT_CONFLICT: &str = snapshot_conflict!();

pub(crate) const SNAPSHOTS: Timed = timed!(
    "snapshot",
    "snapshots",
    put: concat!(
        "INSERT INTO ",
        snapshot_columns!(),
        " VALUES ($1, $2, $3, $4, $5, $6)",
        snapshot_conflict!()
    )
);
pub(crate) const DOWNLOADS: Timed = timed!(
    "download",
    "downloads",
    put: "INSERT INTO downloads (id, account_id, created_secs, created_nanos, data) \
          VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET \
          account_id = excluded.account_id, created_secs = excluded.created_secs, \
          created_nanos = excluded.created_nanos, data = excluded.data"
);

/// Upsert a key envelope: `$1` account id, `$2` bytes.
pub(crate) const PUT_KEY: &str = "INSERT INTO key_envelopes (account_id, envelope) VALUES ($1, $2) \
     ON CONFLICT (account_id) DO UPDATE SET envelope = excluded.envelope";
/// `$1` account id → envelope.
pub(crate) const GET_KEY: &str = "SELECT envelope FROM key_envelopes WHERE account_id = $1";
/// `$1` account id.
pub(crate) const DELETE_KEY: &str = "DELETE FROM key_envelopes WHERE account_id = $1";
/// `$1` account id → the length in bytes of its envelope; no row without one.
pub(crate) const KEY_LENGTH: &str =
    "SELECT CAST(length(envelope) AS BIGINT) FROM key_envelopes WHERE account_id = $1";

/// The settings' JSON; no row until they are first stored.
pub(crate) const GET_SETTINGS: &str = "SELECT data FROM settings WHERE id = 1";
/// Upsert the one settings row: `$1` data.
pub(crate) const PUT_SETTINGS: &str = "INSERT INTO settings (id, data) VALUES (1, $1) \
     ON CONFLICT (id) DO UPDATE SET data = excluded.data";

/// Per-account snapshot totals: (account id, snapshot count, bytes stored), by account id.
pub(crate) const USAGE: &str =
    "SELECT account_id, snapshots, bytes_stored FROM account_usage ORDER BY account_id";
/// `$1` account id → its row of [`USAGE`]; none when it has no snapshot rows.
pub(crate) const ACCOUNT_USAGE: &str =
    "SELECT account_id, snapshots, bytes_stored FROM account_usage WHERE account_id = $1";

/// (id, data) of every snapshot whose account has no row: by account id, then oldest first.
/// Walks the per-account totals (one row per account id), then reads only the orphans' rows
/// through the snapshots' account index. (Written as `IN (subquery)`: SQLite plans the join
/// form as a scan of every snapshot.)
pub(crate) const ORPHAN_SNAPSHOTS: &str = "SELECT id, data FROM snapshots \
     WHERE account_id IN (SELECT u.account_id FROM account_usage u \
         WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = u.account_id)) \
     ORDER BY account_id, created_secs, created_nanos, id";
