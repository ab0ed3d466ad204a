//! `Last-Event-ID` and `?last_event_id=` of the live stream, and the `from` / `limit`
//! pagination tokens of the HTTP API's paged reads, through the real router over a
//! populated board. First byte: the endpoint; then the query; after a line break, the
//! `Last-Event-ID` header.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&endpoint, rest)) = data.split_first() else { return };
    let (query, header) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let Ok(query) = std::str::from_utf8(query) else { return };
    boardroom::fuzzing::cursors(endpoint, query, header);
});
