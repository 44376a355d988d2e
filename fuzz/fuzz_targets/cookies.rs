//! See `abproxy::fuzzing::cookies` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| abproxy::fuzzing::cookies(data));
