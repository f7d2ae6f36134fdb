//! The conformance suite: the conventions of [`Catalog`], checked against any implementation.
//!
//! A backend's tests call [`empty`] on a new catalog, then [`run`] (or single checks), and let
//! the first broken convention panic with a message naming it:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use backup_core::ports::MemoryCatalog;
//!
//! let catalog = MemoryCatalog::new();
//! backup_catalog::conformance::empty(&catalog).await;
//! backup_catalog::conformance::run(&catalog).await;
//! # });
//! ```
//!
//! What is checked, for every entity: `put` then `get` gives back an equal value; `put` with
//! a known id replaces (also when the name changes); `get` of a missing id is `None`;
//! `delete` returns `true` then `false`; lists are ordered (snapshots and downloads oldest
//! first, at microsecond precision; everything else by name, login or username, then id;
//! names compare by bytes, like Rust's `str`, so `"B"` sorts before `"a"`); organization
//! logins and destination names are unique ([`backup_core::Error::AlreadyExists`] naming the
//! clashing value, on insert and on rename, while re-putting a row with its own name is
//! fine and a rename frees the old name); `find_accounts` returns every account with the
//! username, by id; snapshot and download lists hold only the given account's rows; a
//! snapshot's status (complete or partial) reads back as put, from `get` and lists; key
//! envelopes are stored, replaced (an empty one stays present), read and deleted per
//! account; deleting an account removes its snapshot rows, downloads and key envelope, and
//! nothing of another account; forgetting an account removes its row only (its snapshots
//! become orphans); settings read back as last put; per-account usage (zeros
//! without snapshots) follows every snapshot write and agrees with the list of all usage,
//! ordered by account id; orphans are exactly the snapshot rows without an account row, by
//! account id then oldest first.
//!
//! Each check of [`run`] uses fresh random ids and names and deletes what it created (the
//! settings check puts back the value it found), so the suite can run against a catalog
//! that already holds data (it only adds rows with its own names and checks that whole
//! lists are ordered). The account rows that per-account rows belong to are always put
//! first, so backends with foreign keys pass too. What an empty catalog reads (default
//! settings, no usage) is checked apart, by [`empty`].
//!
//! Whether a deleted key envelope's bytes are erased from a backend's files is not visible
//! through the trait: each backend's own tests check it.
//!
//! The task queue (the [`JobQueue`](backup_core::ports::JobQueue) port, which both of this
//! crate's backends implement beside the catalog) has its own suite: [`queue`].

mod entities;
mod named;
mod per_account;
pub mod queue;
mod settings;
mod usage;

use std::fmt::Display;

use backup_core::ports::Catalog;
use uuid::Uuid;

pub use named::{accounts, destinations, jobs, organizations, priority_groups, tags};
pub use per_account::{account_deletion, account_forgetting, downloads, key_envelopes, snapshots};
pub use settings::settings;
pub use usage::{orphans, usage};

/// Runs every check, in the order of this module's functions; panics on the first failure.
pub async fn run(catalog: &dyn Catalog) {
    organizations(catalog).await;
    accounts(catalog).await;
    tags(catalog).await;
    priority_groups(catalog).await;
    destinations(catalog).await;
    jobs(catalog).await;
    snapshots(catalog).await;
    downloads(catalog).await;
    key_envelopes(catalog).await;
    account_deletion(catalog).await;
    account_forgetting(catalog).await;
    settings(catalog).await;
    usage(catalog).await;
    orphans(catalog).await;
}

/// What a catalog that never stored anything reads: default settings, no usage, no orphans,
/// zeros for any account's usage, and empty lists. Run it on a new catalog ([`run`] leaves
/// nothing of its own behind, so before or after it).
pub async fn empty(catalog: &dyn Catalog) {
    settings::default_settings(catalog).await;
    usage::no_usage(catalog).await;
    let c = catalog;
    let empty = ok(c.list_organizations().await, "list organizations").is_empty()
        && ok(c.list_accounts().await, "list accounts").is_empty()
        && ok(c.list_tags().await, "list tags").is_empty()
        && ok(c.list_priority_groups().await, "list priority groups").is_empty()
        && ok(c.list_destinations().await, "list destinations").is_empty()
        && ok(c.list_jobs().await, "list jobs").is_empty();
    assert!(empty, "conformance: a new catalog should list nothing");
}

/// The value, or a panic naming the step that failed.
#[track_caller]
fn ok<T>(result: backup_core::Result<T>, step: impl Display) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("conformance: {step}: unexpected error: {e}"),
    }
}

/// Asserts that `result` is [`backup_core::Error::AlreadyExists`] naming `key`.
#[track_caller]
fn expect_clash(result: backup_core::Result<()>, key: &str, step: impl Display) {
    match result {
        Err(backup_core::Error::AlreadyExists { what }) => assert!(
            what.contains(key),
            "conformance: {step}: AlreadyExists should name {key:?}, it says {what:?}"
        ),
        Err(other) => panic!("conformance: {step}: expected AlreadyExists, got: {other}"),
        Ok(()) => panic!("conformance: {step}: expected AlreadyExists, the put succeeded"),
    }
}

/// A fresh prefix for the names of one check (lower-case letters and digits).
fn token() -> String {
    let hex = Uuid::new_v4().simple().to_string();
    format!("cf{}", &hex[..12])
}

/// `n` fresh random UUIDs, ascending, so checks can choose how ids compare.
fn ascending_ids<T: From<Uuid>>(n: usize) -> Vec<T> {
    let mut ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    ids.sort();
    ids.into_iter().map(T::from).collect()
}
