#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| natsd::fuzz::js_api_json(data));
