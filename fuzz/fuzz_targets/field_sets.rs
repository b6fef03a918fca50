#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| custodian_fuzz::field_sets(data));
