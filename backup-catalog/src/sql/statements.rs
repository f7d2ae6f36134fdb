//! The SQL statements, one set per table (see `migrations/` for the schema).
//!
//! Written to be accepted by PostgreSQL as well: `$n` placeholders, `INSERT … ON CONFLICT (id)
//! DO UPDATE` upserts. The upsert names only the id as its conflict target, so a clash on
//! another unique column (login, destination name) still fails with a unique violation
//! instead of replacing the other row.

/// Statements of a table keyed by id and ordered by one text column (name, login, username).
#[derive(Debug)]
pub(super) struct Named {
    /// What a row is, for error messages.
    pub(super) entity: &'static str,
    /// Upsert: `$1` id, `$2` key column, `$3` data.
    pub(super) put: &'static str,
    /// `$1` id → (id, data).
    pub(super) get: &'static str,
    /// `$1` key → (id, data) rows, by id.
    pub(super) find: &'static str,
    /// Every (id, data), by key then id.
    pub(super) list: &'static str,
    /// `$1` id.
    pub(super) delete: &'static str,
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

pub(super) const ORGANIZATIONS: Named = named!("organization", "organizations", "login");
pub(super) const ACCOUNTS: Named = named!("account", "accounts", "username");
pub(super) const TAGS: Named = named!("tag", "tags", "name");
pub(super) const PRIORITY_GROUPS: Named = named!("priority group", "priority_groups", "name");
pub(super) const DESTINATIONS: Named = named!("destination", "destinations", "name");
pub(super) const JOBS: Named = named!("job", "jobs", "name");

/// Statements of a table of per-account rows ordered by creation time (snapshots, downloads).
#[derive(Debug)]
pub(super) struct Timed {
    /// What a row is, for error messages.
    pub(super) entity: &'static str,
    /// Upsert: `$1` id, `$2` account id, `$3` created seconds, `$4` created nanos, `$5` data.
    pub(super) put: &'static str,
    /// `$1` id → (id, data).
    pub(super) get: &'static str,
    /// `$1` account id → (id, data) rows, oldest first, then by id.
    pub(super) list: &'static str,
    /// `$1` id.
    pub(super) delete: &'static str,
    /// `$1` account id: every row of the account.
    pub(super) delete_account: &'static str,
}

macro_rules! timed {
    ($entity:literal, $table:literal) => {
        Timed {
            entity: $entity,
            put: concat!(
                "INSERT INTO ",
                $table,
                " (id, account_id, created_secs, created_nanos, data) VALUES ($1, $2, $3, $4, $5) ",
                "ON CONFLICT (id) DO UPDATE SET account_id = excluded.account_id, ",
                "created_secs = excluded.created_secs, created_nanos = excluded.created_nanos, ",
                "data = excluded.data"
            ),
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

pub(super) const SNAPSHOTS: Timed = timed!("snapshot", "snapshots");
pub(super) const DOWNLOADS: Timed = timed!("download", "downloads");

/// Upsert a key envelope: `$1` account id, `$2` bytes.
pub(super) const PUT_KEY: &str = "INSERT INTO key_envelopes (account_id, envelope) VALUES ($1, $2) \
     ON CONFLICT (account_id) DO UPDATE SET envelope = excluded.envelope";
/// `$1` account id → envelope.
pub(super) const GET_KEY: &str = "SELECT envelope FROM key_envelopes WHERE account_id = $1";
/// `$1` account id.
pub(super) const DELETE_KEY: &str = "DELETE FROM key_envelopes WHERE account_id = $1";
