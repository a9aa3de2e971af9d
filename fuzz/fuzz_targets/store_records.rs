#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| natsd::fuzz::store_records(data));
