//! Benchmarks of the backup engine: criterion micro-benchmarks of the primitives
//! (`benches/primitives.rs`); the end-to-end runner against restic and borg comes with the
//! performance work.
