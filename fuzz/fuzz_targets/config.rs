//! Config loading: TOML text and `BOARDROOM__…` overrides into `Config`, then validation.
//! The text comes first; lines after a line `---` are overrides `NAME=value`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (toml, env) = text.split_once("\n---\n").unwrap_or((text, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    boardroom::fuzzing::config(toml, &env);
});
