//! The reference assembly of the backup crates, shared by the `quickstart` example and the
//! `backupctl` example CLI: a [`Service`] holding a catalog and the server master key, that
//! opens destinations, creates accounts with their keys, backs up, restores and verifies.
//!
//! Integrators (a hosting panel, an MSP portal) do the same wiring with their own catalog,
//! account sources and notifiers.

// The README's library example is compiled as a doc test here.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod admin;
mod compare;
mod progress;
mod sample;
mod service;

pub use admin::RebuildReport;
pub use compare::{TreeDifference, compare_trees};
pub use progress::BarProgress;
pub use sample::{SampleAccount, change_some_files, generate_sample_account};
pub use service::{AccountKeysOutput, RestoreRequest, Service, StoreLayer};
