#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| natsd::fuzz::client_protocol(data));
