//! A room message's JSON: processing's one-pass read against ruma's parse.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| boardroom::fuzzing::message(data));
