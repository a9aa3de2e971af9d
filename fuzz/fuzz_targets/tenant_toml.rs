#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| manage::tenant::fuzz_tenant_toml(data));
