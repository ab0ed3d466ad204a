//! The store's key codec: decode(encode(v)) == v, encode(decode(x)) == x, prefixes and
//! integer order.
//!
//! Input: a byte with the number of parts (mod 8), a byte whose bit i makes part i a
//! `u64` (else a string), then key bytes. The parts' values are read leniently from the
//! key bytes (a string up to the next 0xFF, lossily UTF-8; eight bytes, zero-padded, for
//! an integer); the key bytes are also decoded strictly.
#![no_main]

use boardroom::fuzzing::{KeyPart, key_codec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [n, kinds, bytes @ ..] = data else { return };
    let mut rest = bytes;
    let mut parts = Vec::new();
    for i in 0..(n % 8) {
        if i > 0
            && let [0xFF, tail @ ..] = rest
        {
            rest = tail;
        }
        if kinds >> i & 1 == 1 {
            let mut b = [0u8; 8];
            let take = rest.len().min(8);
            b[..take].copy_from_slice(&rest[..take]);
            rest = &rest[take..];
            parts.push(KeyPart::U64(u64::from_be_bytes(b)));
        } else {
            let end = rest.iter().position(|&b| b == 0xFF).unwrap_or(rest.len());
            parts.push(KeyPart::Str(String::from_utf8_lossy(&rest[..end]).into_owned()));
            rest = &rest[end..];
        }
    }
    key_codec(&parts, bytes);
});
