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

/// The candidates `body`, `formatted` and `explicit` mention.
pub fn resolve(
    explicit: &[OwnedUserId],
    formatted: Option<&str>,
    body: &str,
    candidates: &[Candidate],
) -> BTreeSet<OwnedUserId> {
    let can_see = |u: &UserId| candidates.iter().any(|c| c.user_id == u);
    let mut out: BTreeSet<OwnedUserId> = explicit.iter().filter(|u| can_see(u)).cloned().collect();
    if let Some(html) = formatted {
        out.extend(pills(html).into_iter().filter(|u| can_see(u)));
    }
    out.extend(plain_mentions(body, candidates));
    out
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
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(h) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(h);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Plain `@name` mentions of candidates in `body`.
pub fn plain_mentions(body: &str, candidates: &[Candidate]) -> BTreeSet<OwnedUserId> {
    let mut out = BTreeSet::new();
    let lower = body.to_lowercase();
    for (i, _) in lower.match_indices('@') {
        // Only at a word start.
        if lower[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let after = &lower[i + 1..];
        let mut best: Option<(usize, &OwnedUserId)> = None;
        for c in candidates {
            let names = [
                Some(c.user_id.localpart().to_lowercase()),
                c.display_name.as_ref().map(|d| d.to_lowercase()),
            ];
            for name in names.into_iter().flatten() {
                if name.is_empty() || !after.starts_with(&name) {
                    continue;
                }
                // The name must end at a word boundary.
                if after[name.len()..]
                    .chars()
                    .next()
                    .is_some_and(|ch| ch.is_alphanumeric() || ch == '_')
                {
                    continue;
                }
                if best.is_none_or(|(len, _)| name.len() > len) {
                    best = Some((name.len(), &c.user_id));
                }
            }
        }
        if let Some((_, u)) = best {
            out.insert(u.clone());
        }
    }
    out
}

/// `body` as HTML with every mention of `users` (as `@localpart`, `@display name` or the
/// full id) turned into a pill.
pub fn with_pills(body: &str, users: &BTreeSet<OwnedUserId>, candidates: &[Candidate]) -> String {
    let mut html = escape_html(body);
    for u in users {
        let pill = format!("<a href=\"https://matrix.to/#/{u}\">{}</a>", escape_html(u.as_str()));
        let display =
            candidates.iter().find(|c| &c.user_id == u).and_then(|c| c.display_name.clone());
        let mut forms = vec![u.to_string(), format!("@{}", u.localpart())];
        if let Some(d) = display {
            forms.push(format!("@{d}"));
        }
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        for f in forms {
            let escaped = escape_html(&f);
            if let Some(pos) = html.to_lowercase().find(&escaped.to_lowercase()) {
                html.replace_range(pos..pos + escaped.len(), &pill);
                break;
            }
        }
    }
    html
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
    fn plain_text_longest_match_case_insensitive() {
        let p = people();
        let ids =
            |s: &str| plain_mentions(s, &p).into_iter().map(|u| u.to_string()).collect::<Vec<_>>();
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
            &p,
        );
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
}
