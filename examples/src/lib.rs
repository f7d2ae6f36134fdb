//! The reference wiring of the backup crates, shared by the `quickstart` example and the
//! `backupctl` example CLI: [`StateDir`] assembles a [`backup_core::service::Server`] over a
//! state directory (SQLite catalog, master-key vault, stat caches) and the URL resolver.
//! Every rule (commit order, keys, settings, leases) is the server's; this crate only wires
//! and prints.
//!
//! Integrators (a hosting panel, an MSP portal) do the same wiring with their own catalog,
//! account sources and notifiers.

// The README's library example is compiled as a doc test here.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod compare;
mod progress;
mod sample;
mod state;

pub use compare::{TreeDifference, compare_trees};
pub use progress::BarProgress;
pub use sample::{SampleAccount, change_some_files, generate_sample_account};
pub use state::StateDir;
