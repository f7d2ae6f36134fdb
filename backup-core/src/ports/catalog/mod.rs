//! The catalog port: the fast, queryable copy of what the repositories hold, plus settings.
//!
//! One trait per capability, so that a component can be handed only what it needs (a report
//! that reads usage, a key manager that sees envelopes), and one umbrella trait,
//! [`Catalog`], that every full backend implements through its parts and that most of the
//! engine holds as `Arc<dyn Catalog>`.
//!
//! The conventions every implementation keeps are on [`Catalog`].

use std::fmt::Debug;

mod account;
mod destination;
mod download;
mod job;
mod key;
mod organization;
mod priority_group;
mod settings;
mod snapshot;
mod tag;
mod usage;

pub use account::AccountStore;
pub use destination::DestinationStore;
pub use download::DownloadStore;
pub use job::JobStore;
pub use key::KeyStore;
pub use organization::OrganizationStore;
pub use priority_group::PriorityGroupStore;
pub use settings::SettingsStore;
pub use snapshot::SnapshotStore;
pub use tag::TagStore;
pub use usage::UsageStore;

/// Persistence of everything the model has: every capability trait in one.
///
/// Implemented automatically for any type that implements all the capability traits
/// ([`OrganizationStore`], [`AccountStore`], [`TagStore`], [`PriorityGroupStore`],
/// [`DestinationStore`], [`JobStore`], [`SnapshotStore`], [`KeyStore`], [`SettingsStore`],
/// [`UsageStore`], [`DownloadStore`]): implement those, not this one. An `Arc<dyn Catalog>`
/// coerces to any one capability (`Arc<dyn KeyStore>`).
///
/// To call a capability's methods on a concrete type (`MemoryCatalog`, `SqliteCatalog`),
/// bring its trait into scope (`use backup_core::ports::AccountStore`); through
/// `dyn Catalog` or a `C: Catalog` bound every method is reachable with `Catalog` alone.
///
/// # Contract
///
/// Conventions every implementation keeps (the conformance suite in `backup-catalog` checks
/// them):
///
/// - `put_*` inserts or replaces by id;
/// - a unique-name clash (organization login, destination name) is
///   [`crate::Error::AlreadyExists`];
/// - `get_*` returns `Ok(None)` when absent;
/// - `delete_*` returns whether something was deleted;
/// - lists are ordered: snapshots and downloads oldest first, usage and orphans by account
///   id, everything else by name, then id (names compare by bytes, like `str`);
/// - deleting an account deletes its snapshots' rows, its key envelope and its downloads;
/// - the settings read back as [`Settings::default`](crate::model::Settings) until stored;
/// - a deleted or replaced key envelope is not kept where it can be read back (see
///   [`KeyStore`] for what each implementation leaves).
pub trait Catalog:
    OrganizationStore
    + AccountStore
    + TagStore
    + PriorityGroupStore
    + DestinationStore
    + JobStore
    + SnapshotStore
    + KeyStore
    + SettingsStore
    + UsageStore
    + DownloadStore
    + Send
    + Sync
    + Debug
    + 'static
{
}

impl<T> Catalog for T where
    T: OrganizationStore
        + AccountStore
        + TagStore
        + PriorityGroupStore
        + DestinationStore
        + JobStore
        + SnapshotStore
        + KeyStore
        + SettingsStore
        + UsageStore
        + DownloadStore
{
}
