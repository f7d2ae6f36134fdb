//! cargo-fuzz target: see [`backup_fuzz::snapshot`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| backup_fuzz::snapshot(data));
