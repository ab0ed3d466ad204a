//! `PUT /_matrix/app/v1/transactions/{txn}` bodies through the appservice router into
//! the durable inbound queue of a real RocksDB store. The first line is the transaction
//! id, the rest the body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (txn, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"1"[..], data),
    };
    let Ok(txn) = std::str::from_utf8(txn) else { return };
    boardroom::fuzzing::transaction(txn, body);
});
