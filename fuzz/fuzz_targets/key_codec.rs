//! The store's key codec: decode(encode(v)) == v, encode(decode(x)) == x, prefixes and
//! integer order.
#![no_main]

use arbitrary::Arbitrary;
use boardroom::fuzzing::{KeyPart, key_codec};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Part {
    Str(String),
    U64(u64),
}

#[derive(Debug, Arbitrary)]
struct Input {
    parts: Vec<Part>,
    bytes: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let parts: Vec<KeyPart> = input
        .parts
        .into_iter()
        .map(|p| match p {
            Part::Str(s) => KeyPart::Str(s),
            Part::U64(n) => KeyPart::U64(n),
        })
        .collect();
    key_codec(&parts, &input.bytes);
});
