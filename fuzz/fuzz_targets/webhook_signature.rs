//! Signed webhook deliveries: arbitrary headers and body against a key, sometimes with
//! the key's real signature.
//!
//! Input: a first line `sign` (the signature header is replaced by the key's signature
//! over the delivery's timestamp header and body) or anything else, then a space and the
//! clock (ms since 1970; 1780000000000 when absent); header lines `name: value` up to an
//! empty line; the body. The key is the one of the seed `[7; 32]`, as in the unit tests,
//! unless the first line names another seed byte after the clock.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let (first, mut rest) = line(data);
    let first = String::from_utf8_lossy(first);
    let mut words = first.split(' ');
    let sign = words.next() == Some("sign");
    let now_ms = words.next().and_then(|w| w.parse().ok()).unwrap_or(1_780_000_000_000u64);
    let seed = words.next().and_then(|w| w.parse().ok()).unwrap_or(7u8);
    let mut headers = Vec::new();
    loop {
        let (l, tail) = line(rest);
        rest = tail;
        if l.is_empty() {
            break;
        }
        let colon = l.iter().position(|&b| b == b':').unwrap_or(l.len());
        let value = l.get(colon + 1..).unwrap_or_default();
        let value = value.strip_prefix(b" ").unwrap_or(value);
        headers.push((l[..colon].to_vec(), value.to_vec()));
    }
    boardroom::fuzzing::webhook_signature([seed; 32], &headers, rest, now_ms, sign);
});
