#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| eventum_core::fuzzing::envelope(data));
