//! Who a message mentions: `m.mentions.user_ids`, pills (`https://matrix.to/#/@user:server`
//! links) in `formatted_body`, and plain `@name` text where `name` is a member's localpart
//! or display name (case-insensitive; the longest match wins; unknown names are ignored).
//! Only users who can see the room are candidates: nobody else is ever notified.

use std::collections::BTreeSet;

use ruma::{OwnedUserId, UserId};

use crate::commands::escape_html;

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
    /// `text` (lowercase, what follows an `@`) starts with, ending at a word boundary
    /// (not followed by a letter, digit or `_`): its length in bytes and who it is.
    fn name_at(&self, text: &str) -> crate::Result<Option<(usize, OwnedUserId)>>;
}

/// A room's members as a list: everyone in it can see the room.
impl Audience for [Candidate] {
    fn can_see(&self, user: &UserId) -> crate::Result<bool> {
        Ok(self.iter().any(|c| c.user_id == user))
    }

    fn name_at(&self, text: &str) -> crate::Result<Option<(usize, OwnedUserId)>> {
        let mut best: Option<(usize, &OwnedUserId)> = None;
        for c in self {
            let names = [
                Some(c.user_id.localpart().to_lowercase()),
                c.display_name.as_ref().map(|d| d.to_lowercase()),
            ];
            for name in names.into_iter().flatten() {
                if name.is_empty()
                    || !text.starts_with(&name)
                    || text[name.len()..].chars().next().is_some_and(is_word)
                {
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
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let hex = |b: u8| (b as char).to_digit(16);
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(&hi), Some(&lo)) = (bytes.get(i + 1), bytes.get(i + 2))
            && let (Some(hi), Some(lo)) = (hex(hi), hex(lo))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Plain `@name` mentions in `body` of people who can see the room.
pub fn plain_mentions<A: Audience + ?Sized>(
    body: &str,
    audience: &A,
) -> crate::Result<BTreeSet<OwnedUserId>> {
    let mut out = BTreeSet::new();
    let lower = body.to_lowercase();
    for (i, _) in lower.match_indices('@') {
        // Only at a word start.
        if lower[..i].chars().next_back().is_some_and(is_word) {
            continue;
        }
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
        out.push_str(&format!(
            "<a href=\"https://matrix.to/#/{u}\">{}</a>",
            escape_html(u.as_str())
        ));
        at = end;
    }
    out.push_str(&html[at..]);
    out
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The first byte range of `hay` that equals `needle` (which starts with `@`) ignoring
/// case, stands as a whole word and overlaps nothing `claimed`. Ranges are always on
/// character boundaries of `hay`, whatever lowercasing does to lengths.
fn find_mention(
    hay: &str,
    needle: &str,
    claimed: &[(usize, usize, &OwnedUserId)],
) -> Option<(usize, usize)> {
    let target = needle.to_lowercase();
    for (start, _) in hay.match_indices('@') {
        let mut lowered = String::with_capacity(target.len());
        let mut end = start;
        for (j, ch) in hay[start..].char_indices() {
            if lowered.len() >= target.len() {
                break;
            }
            lowered.extend(ch.to_lowercase());
            end = start + j + ch.len_utf8();
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
