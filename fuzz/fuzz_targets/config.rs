//! See `abproxy::fuzzing::config` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| abproxy::fuzzing::config(data));
