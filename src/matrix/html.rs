//! HTML for `formatted_body`: escaping text, and links and pills built on ruma's
//! `matrix_to_uri` helpers (which percent-encode what must be).

use ruma::{EventId, RoomAliasId, RoomId, ServerName, UserId};

/// Escapes text for `formatted_body`.
pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A link to `uri` showing `text` (escaped).
pub(crate) fn link(uri: impl std::fmt::Display, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", escape_html(&uri.to_string()), escape_html(text))
}

/// A pill: a link to `user` that clients show as their name and that mentions them.
pub(crate) fn user_pill(user: &UserId) -> String {
    link(user.matrix_to_uri(), user.as_str())
}

/// A link to a room alias, showing the alias.
pub(crate) fn alias_link(alias: &RoomAliasId) -> String {
    link(alias.matrix_to_uri(), alias.as_str())
}

/// The matrix.to URI of `event` in `room`, joinable through `via`.
pub(crate) fn event_uri(room: &RoomId, event: &EventId, via: &ServerName) -> String {
    room.matrix_to_event_uri_via(event.to_owned(), vec![via.to_owned()]).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_ruma_uris_with_escaped_text() {
        let user = ruma::user_id!("@bob:example.org");
        assert_eq!(
            user_pill(user),
            "<a href=\"https://matrix.to/#/@bob:example.org\">@bob:example.org</a>"
        );
        let alias = ruma::room_alias_id!("#launch:example.org");
        assert_eq!(
            alias_link(alias),
            "<a href=\"https://matrix.to/#/%23launch:example.org\">#launch:example.org</a>"
        );
        let uri = event_uri(
            ruma::room_id!("!room:example.org"),
            ruma::event_id!("$ev"),
            ruma::server_name!("example.org"),
        );
        assert_eq!(uri, "https://matrix.to/#/!room:example.org/$ev?via=example.org");
        assert_eq!(
            link("https://x/?a=1&b=2", "<b>"),
            "<a href=\"https://x/?a=1&amp;b=2\">&lt;b&gt;</a>"
        );
    }
}
