//! cargo-fuzz target: see [`backup_fuzz::pack_trailer`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| backup_fuzz::pack_trailer(data));
