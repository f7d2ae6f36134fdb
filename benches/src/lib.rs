//! Benchmarks package.
