//! Who a message mentions: `body`, `formatted_body` and `m.mentions` against a room of
//! members with arbitrary names, resolved through the store's name index.
#![no_main]

use arbitrary::Arbitrary;
use boardroom::fuzzing::{Member, mentions};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    body: String,
    formatted: Option<String>,
    explicit: Vec<String>,
    members: Vec<(String, Option<String>)>,
}

fuzz_target!(|input: Input| {
    let members: Vec<Member> = input
        .members
        .into_iter()
        .take(16)
        .map(|(localpart, display_name)| Member { localpart, display_name })
        .collect();
    mentions(&input.body, input.formatted.as_deref(), &input.explicit, &members);
});
