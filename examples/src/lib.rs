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

/// The `backupctl` example binary cargo builds beside a test executable (for the
/// integration tests that drive the CLI): `target/<profile>/examples/backupctl`. Panics
/// with the command that builds it when it is missing.
pub fn backupctl_path() -> std::path::PathBuf {
    // Integration tests live in target/<profile>/deps; cargo builds examples beside them.
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile> directory");
    let bin = profile_dir.join("examples").join("backupctl");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --example backupctl` (cargo test builds it)",
        bin.display()
    );
    bin
}
