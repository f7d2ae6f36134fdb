//! cargo-fuzz target: see [`backup_fuzz::key_envelope`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| backup_fuzz::key_envelope(data));
