//! libFuzzer entry point for `teewatch_fuzz::sse` (fuzz/src/lib.rs says what it reads).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| teewatch_fuzz::sse(data));
