//! A chat message's text: command detection, `!task …` / `!board …` parsing, and the
//! reply to a message that does not parse.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| boardroom::fuzzing::command(data));
