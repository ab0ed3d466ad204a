//! Who a message mentions: `m.mentions.user_ids`, pills (`https://matrix.to/#/@user:server`
//! links) in `formatted_body`, and plain `@name` text where `name` is a member's localpart
//! or display name (case-insensitive; the longest match wins; unknown names are ignored).
//! Only users who can see the room are candidates: nobody else is ever notified.
//!
//! What one message costs is bounded whatever members call themselves: at most
//! [`MAX_MENTION_CANDIDATES`] `@`s of a message are looked up, and past each only the
//! first [`MAX_NAME_ENDS`] places a name could end, within [`MAX_NAME_BYTES`] ([`name_ends`]):
//! with the board index, at most two seeks each.

use std::collections::BTreeSet;

use ruma::{OwnedUserId, UserId};

use crate::matrix::html::{escape_html, user_pill};

/// At most this many `@`s at a word start are looked up as names in one message; the
/// ones after them mention nobody (pills and `m.mentions` still do).
pub const MAX_MENTION_CANDIDATES: usize = 64;

/// How far past an `@` a name is looked for, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// How many places a name may end past an `@` are tried: a name must end at one of the
/// first this many word boundaries (the end of the text counts as one), so a name of more
/// than this many words (or of this many non-word characters, such as `@@@…`) cannot be
/// mentioned as plain text.
pub const MAX_NAME_ENDS: usize = 16;

/// Where a name following an `@` may end in `text` (lowercase, what follows the `@`):
/// the byte offsets of its word boundaries (before a character that is not a letter, digit
/// or `_`, and the end of the text), ascending, at most [`MAX_NAME_ENDS`] of them, none
/// past [`MAX_NAME_BYTES`]. Reads at most [`MAX_NAME_BYTES`] of `text`.
pub fn name_ends(text: &str) -> impl Iterator<Item = usize> + '_ {
    text.char_indices()
        .filter(|(_, c)| !is_word(*c))
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .take_while(|&p| p <= MAX_NAME_BYTES)
        .filter(|&p| p > 0)
        .take(MAX_NAME_ENDS)
}

/// Someone who can see the room.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Who.
    pub user_id: OwnedUserId,
    /// Their display name, if they set one.
    pub display_name: Option<String>,
}

/// Who can be mentioned in a room: who can see it, and who goes by which name.
pub trait Audience {
    /// Whether `user` has joined the room.
    fn can_see(&self, user: &UserId) -> crate::Result<bool>;
    /// The longest name (lowercase localpart or display name) of someone in the room that
    /// `text` (lowercase, what follows an `@`) starts with, ending at one of
    /// [`name_ends`]`(text)`: its length in bytes and who it is.
    fn name_at(&self, text: &str) -> crate::Result<Option<(usize, OwnedUserId)>>;
}

/// A room's members as a list: everyone in it can see the room.
impl Audience for [Candidate] {
    fn can_see(&self, user: &UserId) -> crate::Result<bool> {
        Ok(self.iter().any(|c| c.user_id == user))
    }

    fn name_at(&self, text: &str) -> crate::Result<Option<(usize, OwnedUserId)>> {
        let ends: Vec<usize> = name_ends(text).collect();
        let mut best: Option<(usize, &OwnedUserId)> = None;
        for c in self {
            let names = [
                Some(c.user_id.localpart().to_lowercase()),
                c.display_name.as_ref().map(|d| d.to_lowercase()),
            ];
            for name in names.into_iter().flatten() {
                if !ends.contains(&name.len()) || !text.starts_with(&name) {
                    continue;
                }
                if best.is_none_or(|(len, _)| name.len() > len) {
                    best = Some((name.len(), &c.user_id));
                }
            }
        }
        Ok(best.map(|(len, u)| (len, u.clone())))
    }
}

/// Who `body`, `formatted` and `explicit` mention, among those who can see the room.
pub fn resolve<A: Audience + ?Sized>(
    explicit: &[OwnedUserId],
    formatted: Option<&str>,
    body: &str,
    audience: &A,
) -> crate::Result<BTreeSet<OwnedUserId>> {
    let mut out = BTreeSet::new();
    let named = formatted.map(pills).unwrap_or_default();
    for u in explicit.iter().chain(&named) {
        if !out.contains(u) && audience.can_see(u)? {
            out.insert(u.clone());
        }
    }
    out.extend(plain_mentions(body, audience)?);
    Ok(out)
}

/// Whether a message can mention anyone at all: without `m.mentions` user ids, a pill
/// or an `@` it cannot, and nobody's membership needs reading.
pub fn may_mention(explicit: &[OwnedUserId], formatted: Option<&str>, body: &str) -> bool {
    !explicit.is_empty()
        || body.contains('@')
        || formatted.is_some_and(|html| html.contains("https://matrix.to/#/"))
}

/// User ids linked as pills in HTML.
pub fn pills(html: &str) -> Vec<OwnedUserId> {
    const PREFIX: &str = "https://matrix.to/#/";
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(PREFIX) {
        rest = &rest[i + PREFIX.len()..];
        let end = rest.find(['"', '\'', '?', '<', '>', ' ']).unwrap_or(rest.len());
        let id = percent_decode(&rest[..end]);
        if let Ok(u) = OwnedUserId::try_from(id.as_str()) {
            out.push(u);
        }
    }
    out
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Plain `@name` mentions in `body` of people who can see the room: the names after the
/// first [`MAX_MENTION_CANDIDATES`] `@`s at a word start.
pub fn plain_mentions<A: Audience + ?Sized>(
    body: &str,
    audience: &A,
) -> crate::Result<BTreeSet<OwnedUserId>> {
    let mut out = BTreeSet::new();
    let lower = body.to_lowercase();
    for i in at_word_starts(&lower).take(MAX_MENTION_CANDIDATES) {
        if let Some((_, u)) = audience.name_at(&lower[i + 1..])?
            && audience.can_see(&u)?
        {
            out.insert(u);
        }
    }
    Ok(out)
}

/// `body` as HTML with the first mention of each of `users` (as the full id, `@display
/// name` or `@localpart`, case-insensitive, as whole words) turned into a pill.
pub fn with_pills(body: &str, users: &BTreeSet<OwnedUserId>, candidates: &[Candidate]) -> String {
    let html = escape_html(body);
    let mut claimed: Vec<(usize, usize, &OwnedUserId)> = Vec::new();
    for u in users {
        let display =
            candidates.iter().find(|c| &c.user_id == u).and_then(|c| c.display_name.clone());
        let mut forms = vec![u.to_string(), format!("@{}", u.localpart())];
        if let Some(d) = display {
            forms.push(format!("@{d}"));
        }
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        if let Some((start, end)) =
            forms.iter().find_map(|f| find_mention(&html, &escape_html(f), &claimed))
        {
            claimed.push((start, end, u));
        }
    }
    claimed.sort();
    let mut out = String::with_capacity(html.len() + claimed.len() * 64);
    let mut at = 0;
    for (start, end, u) in claimed {
        out.push_str(&html[at..start]);
        out.push_str(&user_pill(u));
        at = end;
    }
    out.push_str(&html[at..]);
    out
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Byte offsets of the `@`s of `text` that start a word (no letter, digit or `_` before).
fn at_word_starts(text: &str) -> impl Iterator<Item = usize> + '_ {
    text.match_indices('@')
        .map(|(i, _)| i)
        .filter(|&i| !text[..i].chars().next_back().is_some_and(is_word))
}

/// The first byte range of `hay` that equals `needle` (which starts with `@`) ignoring
/// case, stands as a whole word and overlaps nothing `claimed`, at one of the first
/// [`MAX_MENTION_CANDIDATES`] `@`s at a word start (where [`plain_mentions`] looks).
/// Ranges are always on character boundaries of `hay`, whatever lowercasing does to
/// lengths.
fn find_mention(
    hay: &str,
    needle: &str,
    claimed: &[(usize, usize, &OwnedUserId)],
) -> Option<(usize, usize)> {
    let target = needle.to_lowercase();
    for start in at_word_starts(hay).take(MAX_MENTION_CANDIDATES) {
        let mut lowered = String::with_capacity(target.len());
        let mut end = start;
        for (j, ch) in hay[start..].char_indices() {
            if lowered.len() >= target.len() {
                break;
            }
            let before = lowered.len();
            lowered.extend(ch.to_lowercase());
            end = start + j + ch.len_utf8();
            // A mismatch ends the comparison: what it costs is bounded by the match.
            if target.as_bytes().get(before..lowered.len()) != Some(&lowered.as_bytes()[before..]) {
                break;
            }
        }
        if lowered != target
            || hay[..start].chars().next_back().is_some_and(is_word)
            || hay[end..].chars().next().is_some_and(is_word)
            || claimed.iter().any(|&(s, e, _)| start < e && s < end)
        {
            continue;
        }
        return Some((start, end));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn people() -> Vec<Candidate> {
        vec![
            Candidate {
                user_id: ruma::owned_user_id!("@alice:x"),
                display_name: Some("Alice".into()),
            },
            Candidate {
                user_id: ruma::owned_user_id!("@al:x"),
                display_name: Some("Alice Smith".into()),
            },
            Candidate { user_id: ruma::owned_user_id!("@bob:x"), display_name: None },
        ]
    }

    #[test]
    fn only_explicit_ids_pills_or_an_at_sign_can_mention() {
        let alice = ruma::owned_user_id!("@alice:x");
        assert!(!may_mention(&[], None, "just chatting"));
        assert!(!may_mention(&[], Some("<b>just</b> chatting"), "just chatting"));
        assert!(may_mention(&[alice], None, "just chatting"));
        assert!(may_mention(&[], None, "ping @alice"));
        assert!(may_mention(
            &[],
            Some(r#"<a href="https://matrix.to/#/%40alice%3Ax">Alice</a>"#),
            "Alice"
        ));
        // Whatever may_mention rules out, resolve finds nobody in either.
        let everyone =
            [Candidate { user_id: ruma::owned_user_id!("@alice:x"), display_name: None }];
        assert!(
            resolve(&[], Some("<b>Alice</b>"), "Alice, hi", &everyone[..]).expect("ok").is_empty()
        );
    }

    #[test]
    fn plain_text_longest_match_case_insensitive() {
        let p = people();
        let ids = |s: &str| {
            plain_mentions(s, &p[..])
                .expect("ok")
                .into_iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids("hey @ALICE, look"), ["@alice:x"]);
        assert_eq!(ids("hey @alice smith, look"), ["@al:x"], "the longer display name wins");
        assert_eq!(ids("@bob and @carol"), ["@bob:x"], "unknown names are ignored");
        assert_eq!(ids("mail bob@bob.org"), Vec::<String>::new(), "not at a word start");
        assert_eq!(ids("@bobby"), Vec::<String>::new(), "not at a word end");
        assert_eq!(ids("@bob:x please"), ["@bob:x"]);
    }

    #[test]
    fn pills_and_explicit_only_for_those_who_can_see() {
        let p = people();
        let html = r#"<a href="https://matrix.to/#/%40bob%3Ax">bob</a> and <a href="https://matrix.to/#/@mallory:x">m</a>"#;
        let got = resolve(
            &[ruma::owned_user_id!("@eve:x"), ruma::owned_user_id!("@alice:x")],
            Some(html),
            "",
            &p[..],
        )
        .expect("ok");
        let got: Vec<String> = got.into_iter().map(|u| u.to_string()).collect();
        assert_eq!(got, ["@alice:x", "@bob:x"]);
    }

    #[test]
    fn name_ends_are_few_and_near() {
        assert_eq!(name_ends("alice smith, hi").collect::<Vec<_>>(), [5, 11, 12, 15]);
        assert_eq!(name_ends(&"@".repeat(60_000)).count(), MAX_NAME_ENDS);
        assert_eq!(name_ends(&"a".repeat(60_000)).count(), 0, "no end within MAX_NAME_BYTES");
        assert_eq!(name_ends(&"a".repeat(MAX_NAME_BYTES)).collect::<Vec<_>>(), [MAX_NAME_BYTES]);
    }

    #[test]
    fn a_flood_of_at_signs_resolves_only_the_first_candidates() {
        let p = people();
        let flood = "@".repeat(60_000);
        let ids = |s: &str| {
            plain_mentions(s, &p[..])
                .expect("ok")
                .into_iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&format!("@bob {flood} @alice")), ["@bob:x"], "past the candidates: nobody");
        let users: BTreeSet<OwnedUserId> = [ruma::owned_user_id!("@bob:x")].into();
        let html = with_pills(&format!("hi @bob {flood}"), &users, &p);
        assert!(
            html.starts_with("hi <a href=\"https://matrix.to/#/@bob:x\">@bob:x</a> @@@"),
            "{}",
            &html[..80]
        );
    }

    #[test]
    fn pills_are_added() {
        let p = people();
        let users: BTreeSet<OwnedUserId> = [ruma::owned_user_id!("@alice:x")].into();
        let html = with_pills("thanks @Alice <3", &users, &p);
        assert_eq!(html, "thanks <a href=\"https://matrix.to/#/@alice:x\">@alice:x</a> &lt;3");
    }

    #[test]
    fn pills_take_whole_words_and_never_overlap() {
        let p = vec![
            Candidate { user_id: ruma::owned_user_id!("@bob:x"), display_name: None },
            Candidate { user_id: ruma::owned_user_id!("@bobby:x"), display_name: None },
        ];
        let users: BTreeSet<OwnedUserId> =
            [ruma::owned_user_id!("@bob:x"), ruma::owned_user_id!("@bobby:x")].into();
        let html = with_pills("@bobby then @bob", &users, &p);
        assert_eq!(
            html,
            "<a href=\"https://matrix.to/#/@bobby:x\">@bobby:x</a> then \
             <a href=\"https://matrix.to/#/@bob:x\">@bob:x</a>"
        );
    }

    #[test]
    fn non_ascii_text_never_panics_and_pills_land_right() {
        // 'İ' lowercases to two characters of another byte length.
        let p = vec![Candidate {
            user_id: ruma::owned_user_id!("@zoe:x"),
            display_name: Some("Zoë İnce".into()),
        }];
        let users: BTreeSet<OwnedUserId> = [ruma::owned_user_id!("@zoe:x")].into();
        let body = "İİİ ünïcödé @ZOË İNCE, ok";
        assert_eq!(plain_mentions(body, &p[..]).expect("ok").len(), 1);
        let html = with_pills(body, &users, &p);
        assert_eq!(html, "İİİ ünïcödé <a href=\"https://matrix.to/#/@zoe:x\">@zoe:x</a>, ok");
        for s in ["%", "%é", "%zé", "a%2", "%4", "100%é%", "%e9%", "%C3%A9"] {
            let _ = percent_decode(s);
        }
        assert_eq!(percent_decode("%40bob%3Ax"), "@bob:x");
        assert_eq!(percent_decode("%C3%A9%"), "é%");
        let _ = pills("https://matrix.to/#/%é%");
    }
}
