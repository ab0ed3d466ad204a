//! Who a message mentions: `body`, `formatted_body` and `m.mentions` against a room of
//! members with arbitrary names, resolved through the store's name index.
//!
//! Input: sections split by lines `--`: the body; the formatted body (absent when the
//! section is missing); the `m.mentions` user ids, one a line; the members, one a line,
//! `localpart` or `localpart display name`.
#![no_main]

use boardroom::fuzzing::{Member, mentions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut sections = text.split("\n--\n");
    let body = sections.next().unwrap_or_default();
    let formatted = sections.next().filter(|f| !f.is_empty());
    let explicit: Vec<String> =
        sections.next().unwrap_or_default().lines().map(str::to_owned).collect();
    let members: Vec<Member> = sections
        .next()
        .unwrap_or_default()
        .lines()
        .take(16)
        .map(|l| match l.split_once(' ') {
            Some((localpart, name)) => {
                Member { localpart: localpart.to_owned(), display_name: Some(name.to_owned()) }
            }
            None => Member { localpart: l.to_owned(), display_name: None },
        })
        .collect();
    mentions(body, formatted, &explicit, &members);
});
