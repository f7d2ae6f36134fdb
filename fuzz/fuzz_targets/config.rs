//! cargo-fuzz target: see [`backup_fuzz::config`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| backup_fuzz::config(data));
