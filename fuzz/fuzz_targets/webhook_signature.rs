//! Signed webhook deliveries: arbitrary headers and body against a key, sometimes with
//! the key's real signature.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    seed: [u8; 32],
    sign: bool,
    /// How far the clock is from the time in the fuzzed timestamp header: the checks
    /// run at 1.78e12 ms plus this.
    clock: i32,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let now_ms = 1_780_000_000_000u64.wrapping_add_signed(i64::from(input.clock));
    boardroom::fuzzing::webhook_signature(
        input.seed,
        &input.headers,
        &input.body,
        now_ms,
        input.sign,
    );
});
