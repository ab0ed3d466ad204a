//! HTML for `formatted_body`: escaping text, and links and pills built on ruma's
//! `matrix_to_uri` helpers (which percent-encode what must be); and the last step before
//! a message goes out, which takes the bidi controls out of it ([`without_bidi_controls`]).
//! See "Hostile content" in docs/SECURITY.md.

use std::borrow::Cow;

use ruma::{
    EventId, RoomAliasId, RoomId, ServerName, UserId,
    events::room::message::{MessageType, Relation, RoomMessageEventContent},
};

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

/// Whether `c` is an explicit bidi embedding, override or isolate control (U+202A–U+202E,
/// U+2066–U+2069): a character that reorders the text after it, up to the end of the
/// paragraph when nothing closes it.
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` without its bidi controls ([`is_bidi_control`]).
pub(crate) fn strip_bidi_controls(s: &str) -> Cow<'_, str> {
    if s.chars().any(is_bidi_control) {
        Cow::Owned(s.chars().filter(|c| !is_bidi_control(*c)).collect())
    } else {
        Cow::Borrowed(s)
    }
}

fn strip_in_place(s: &mut String) {
    if let Cow::Owned(clean) = strip_bidi_controls(s) {
        *s = clean;
    }
}

fn strip_msgtype(m: &mut MessageType) {
    let (body, formatted) = match m {
        MessageType::Text(t) => (&mut t.body, t.formatted.as_mut()),
        MessageType::Notice(t) => (&mut t.body, t.formatted.as_mut()),
        MessageType::Emote(t) => (&mut t.body, t.formatted.as_mut()),
        _ => return,
    };
    strip_in_place(body);
    if let Some(f) = formatted {
        strip_in_place(&mut f.body);
    }
}

/// `content` without bidi controls in its `body` and `formatted_body`, nor in those of the
/// new content of an edit. Boardroom's own words have none, so this takes out exactly those
/// of the user text in it (titles, labels, names, comments, echoed arguments), the same in
/// both forms, and none can reorder the words around it. Every message Boardroom sends goes
/// through it (`matrix::client::Client::send_message`).
pub(crate) fn without_bidi_controls(
    content: &RoomMessageEventContent,
) -> Cow<'_, RoomMessageEventContent> {
    let has = |m: &MessageType| {
        m.body().chars().any(is_bidi_control)
            || formatted_body(m).is_some_and(|f| f.chars().any(is_bidi_control))
    };
    let in_edit = match &content.relates_to {
        Some(Relation::Replacement(r)) => has(&r.new_content.msgtype),
        _ => false,
    };
    if !has(&content.msgtype) && !in_edit {
        return Cow::Borrowed(content);
    }
    let mut clean = content.clone();
    strip_msgtype(&mut clean.msgtype);
    if let Some(Relation::Replacement(r)) = &mut clean.relates_to {
        strip_msgtype(&mut r.new_content.msgtype);
    }
    Cow::Owned(clean)
}

fn formatted_body(m: &MessageType) -> Option<&str> {
    match m {
        MessageType::Text(t) => t.formatted.as_ref().map(|f| f.body.as_str()),
        MessageType::Notice(t) => t.formatted.as_ref().map(|f| f.body.as_str()),
        MessageType::Emote(t) => t.formatted.as_ref().map(|f| f.body.as_str()),
        _ => None,
    }
}

/// Hostile strings, and a formatted body read as a Matrix client would, for the tests of
/// every renderer.
#[cfg(test)]
pub(crate) mod hostile {
    use ruma::events::room::message::RoomMessageEventContent;
    use ruma_html::{Html, NodeData, NodeRef};

    use super::{formatted_body, is_bidi_control, without_bidi_controls};

    /// Text people may give: markup, links with a `javascript:` or `data:` target, quotes
    /// that would close an attribute, entities, bidi controls and zero-width characters.
    /// One line each, and no more than a title's 256 characters.
    pub(crate) const STRINGS: &[&str] = &[
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "<a href=\"javascript:alert(1)\">click</a>",
        "javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "\"><b onmouseover=\"alert(1)\">bold</b>",
        "' onclick='alert(1)' x='",
        "&lt;b&gt; &amp;amp; &#60;i&#62;",
        "<!-- c --><![CDATA[x]]></p></li></ul>",
        "[link](javascript:alert(1)) <https://evil.example>",
        "gnp.\u{202E}exe.txt\u{202C} and \u{2067}RLI\u{2069} \u{202D}LRO\u{202A}LRE\u{202B}RLE",
        "close\u{2069}\u{2069}\u{202C} early",
        "zero\u{200B}width\u{200C}non\u{200D}joiner\u{2060}\u{FEFF}",
        "\u{200B}!task delete #1",
        "@room <a href=\"https://matrix.to/#/@mallory:x\">@alice</a>",
    ];

    /// The elements the Matrix specification allows in `formatted_body`.
    pub(crate) const ALLOWED_TAGS: &[&str] = &[
        "del",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "p",
        "a",
        "ul",
        "ol",
        "sup",
        "sub",
        "li",
        "b",
        "i",
        "u",
        "strong",
        "em",
        "s",
        "code",
        "hr",
        "br",
        "div",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "caption",
        "pre",
        "span",
        "img",
        "details",
        "summary",
        "mx-reply",
    ];

    /// A formatted body as a client shows it.
    #[derive(Debug, Default)]
    pub(crate) struct Rendered {
        /// The text shown.
        pub text: String,
        /// The elements, by name.
        pub tags: Vec<String>,
        /// Every attribute, `element.name=value`.
        pub attrs: Vec<String>,
        /// The link targets.
        pub hrefs: Vec<String>,
    }

    fn walk(node: &NodeRef, out: &mut Rendered) {
        match node.data() {
            NodeData::Text(t) => out.text.push_str(&t.borrow()),
            NodeData::Element(e) => {
                let name = e.name.local.to_string();
                for a in e.attrs.borrow().iter() {
                    let (key, value) = (a.name.local.to_string(), a.value.to_string());
                    if name == "a" && key == "href" {
                        out.hrefs.push(value.clone());
                    }
                    out.attrs.push(format!("{name}.{key}={value}"));
                }
                out.tags.push(name);
            }
            NodeData::Other => out.tags.push("#other".into()),
            _ => {}
        }
        for child in node.children() {
            walk(&child, out);
        }
    }

    /// `html` parsed as HTML.
    pub(crate) fn render(html: &str) -> Rendered {
        let mut out = Rendered::default();
        for child in Html::parse(html).children() {
            walk(&child, &mut out);
        }
        out
    }

    /// `hostile` as a message shows it: without bidi controls.
    pub(crate) fn shown(hostile: &str) -> String {
        hostile.chars().filter(|c| !is_bidi_control(*c)).collect()
    }

    /// Asserts that `content`, as Boardroom sends it, shows each of `wants` as text in both
    /// bodies: the formatted body has only allowed elements, only `matrix.to` links and
    /// `href` its only attribute, and no bidi control is left in either body.
    pub(crate) fn assert_inert(content: &RoomMessageEventContent, wants: &[&str]) {
        let sent = without_bidi_controls(content);
        let body = sent.msgtype.body();
        let html = formatted_body(&sent.msgtype).expect("a formatted body");
        let r = render(html);
        for tag in &r.tags {
            assert!(ALLOWED_TAGS.contains(&tag.as_str()), "element <{tag}> in {html}");
        }
        for attr in &r.attrs {
            assert!(attr.starts_with("a.href="), "attribute {attr} in {html}");
        }
        for href in &r.hrefs {
            assert!(href.starts_with("https://matrix.to/#/"), "link to {href} in {html}");
        }
        for want in wants {
            let want = shown(want);
            assert!(r.text.contains(&want), "{want:?} not shown as text in {html:?}: {:?}", r.text);
            assert!(body.contains(&want), "{want:?} not in the body {body:?}");
        }
        assert!(!r.text.chars().any(is_bidi_control), "a bidi control in {html:?}");
        assert!(!html.chars().any(is_bidi_control), "a bidi control in {html:?}");
        assert!(!body.chars().any(is_bidi_control), "a bidi control in {body:?}");
    }
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

    #[test]
    fn escaped_text_renders_as_the_same_text_and_nothing_else() {
        for h in hostile::STRINGS {
            let r = hostile::render(&format!("<p>{}</p>", escape_html(h)));
            assert_eq!(r.tags, ["p"], "{h}");
            assert_eq!(r.text, *h);
        }
    }

    #[test]
    fn bidi_controls_leave_both_bodies_and_edits() {
        let hostile = "a\u{202E}b\u{2066}c\u{2069}";
        let new = ruma::events::room::message::RoomMessageEventContentWithoutRelation::notice_html(
            hostile,
            format!("<b>{hostile}</b>"),
        );
        let mut edit = RoomMessageEventContent::notice_html(hostile, format!("<b>{hostile}</b>"));
        edit.relates_to = Some(Relation::Replacement(ruma::events::relation::Replacement::new(
            ruma::owned_event_id!("$root"),
            new,
        )));
        let sent = without_bidi_controls(&edit);
        assert_eq!(sent.msgtype.body(), "abc");
        assert_eq!(formatted_body(&sent.msgtype), Some("<b>abc</b>"));
        let Some(Relation::Replacement(r)) = &sent.relates_to else { panic!("an edit") };
        assert_eq!(r.new_content.msgtype.body(), "abc");
        assert_eq!(formatted_body(&r.new_content.msgtype), Some("<b>abc</b>"));
        // Nothing to take out: the content as it is.
        let plain = RoomMessageEventContent::notice_plain("abc");
        assert!(matches!(without_bidi_controls(&plain), Cow::Borrowed(_)));
    }
}
