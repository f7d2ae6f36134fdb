//! Benchmarks of the backup engine:
//! - `benches/primitives.rs`: criterion micro-benchmarks of the per-blob primitives;
//! - `src/bin/e2e.rs`: the end-to-end runner against restic, borg and rustic on one dataset
//!   (see the README);
//! - [`dataset`]: the deterministic dataset it backs up.

pub mod dataset;
pub mod night;
pub mod retention;
