//! A room message as processing reads it: its ids, its time and ruma's
//! [`RoomMessageEventContent`], read from the event's JSON in one pass when it has the
//! usual shape, and through ruma's own parse otherwise.
//!
//! ruma's parse of a message's content reads it five times (a copy of it, then the
//! relation, the mentions, the message type and the text, the relation and the text
//! through serde's buffering of flattened fields): for the plain messages, mentions and
//! thread replies that make up most of a board's traffic, that was the largest single
//! share of processing's CPU (`docs/PERFORMANCE.md`). [`read`] reads the event once and
//! builds the same ruma values with ruma's constructors, for the shapes it knows whole:
//! an `m.text`, `m.notice` or `m.emote` with its body, an optional formatted body, optional
//! `m.mentions`, and no relation, a reply or a thread. Anything else (an edit, another
//! message type, a relation of another kind, a field of an unexpected type, a repeated
//! field) it leaves to ruma ([`parse`]), so that what it returns is always what ruma's
//! parse returns; and since ruma decodes every value of the content but the body in full,
//! the content's values are decoded once more, kept nowhere, so that one the pass skips
//! (an unknown field's) cannot make it read what ruma refuses. The unit tests below and
//! the `message` fuzz target check that law.

use std::borrow::Cow;

use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId,
    events::{
        Mentions, MessageLikeUnsigned, OriginalMessageLikeEvent,
        relation::{InReplyTo, Reply, Thread},
        room::message::{
            EmoteMessageEventContent, FormattedBody, MessageFormat, MessageType,
            NoticeMessageEventContent, OriginalRoomMessageEvent, Relation, RoomMessageEventContent,
            RoomMessageEventContentWithoutRelation, TextMessageEventContent,
        },
    },
};
use serde::{Deserialize, de::IgnoredAny};

/// An unredacted `m.room.message` event: what processing uses of it.
#[derive(Clone, Debug)]
pub(crate) struct RoomMessage {
    pub(crate) event_id: OwnedEventId,
    pub(crate) sender: OwnedUserId,
    pub(crate) room_id: OwnedRoomId,
    pub(crate) origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub(crate) content: RoomMessageEventContent,
}

impl From<OriginalRoomMessageEvent> for RoomMessage {
    fn from(ev: OriginalRoomMessageEvent) -> Self {
        Self {
            event_id: ev.event_id,
            sender: ev.sender,
            room_id: ev.room_id,
            origin_server_ts: ev.origin_server_ts,
            content: ev.content,
        }
    }
}

/// `json`, an unredacted `m.room.message` event (not state), read in one pass when it has
/// a shape [`read`] knows, else by ruma; ruma's error when it does not parse.
pub(crate) fn parse(json: &str) -> serde_json::Result<RoomMessage> {
    match read(json) {
        Some(message) => Ok(message),
        None => {
            Ok(serde_json::from_str::<OriginalMessageLikeEvent<RoomMessageEventContent>>(json)?
                .into())
        }
    }
}

/// The one pass: `None` when `json` is not an `m.room.message` of a shape it knows whole
/// (the caller then asks ruma, which may still read it, or say why not).
pub(crate) fn read(json: &str) -> Option<RoomMessage> {
    let ev: EventView<'_> = serde_json::from_str(json).ok()?;
    if ev.ty != "m.room.message" || ev.state_key.is_some() {
        return None;
    }
    let c: ContentView<'_> = serde_json::from_str(ev.content.get()).ok()?;
    // ruma buffers every field of the content but the body in serde's `Content` (the text's
    // flattened formatted body), which decodes each string and number in full: a value the
    // one pass skips (an unknown field's) must decode too, or ruma refuses the event.
    serde_json::from_str::<Decodes>(ev.content.get()).ok()?;
    if c.new_content.is_some() {
        return None;
    }
    let formatted = match (c.format, c.formatted_body) {
        (Some(format), Some(body)) => {
            Some(FormattedBody { format: MessageFormat::from(format.as_ref()), body })
        }
        (None, None) => None,
        // ruma leaves out a formatted body that lacks one of its two fields: let it.
        _ => return None,
    };
    let msgtype = match c.msgtype.as_ref() {
        "m.text" => {
            let mut t = TextMessageEventContent::plain(c.body);
            t.formatted = formatted;
            MessageType::Text(t)
        }
        "m.notice" => {
            let mut t = NoticeMessageEventContent::plain(c.body);
            t.formatted = formatted;
            MessageType::Notice(t)
        }
        "m.emote" => {
            let mut t = EmoteMessageEventContent::plain(c.body);
            t.formatted = formatted;
            MessageType::Emote(t)
        }
        _ => return None,
    };
    let relates_to = match c.relates_to {
        None => None,
        Some(r) => Some(r.relation()?),
    };
    let mut content = RoomMessageEventContent::new(msgtype);
    content.relates_to = relates_to;
    content.mentions = c.mentions;
    Some(RoomMessage {
        event_id: ev.event_id,
        sender: ev.sender,
        room_id: ev.room_id,
        origin_server_ts: ev.origin_server_ts,
        content,
    })
}

/// The event, as the one pass reads it. Its ids, time and `unsigned` are read by ruma's own
/// types, so that what they refuse is refused here too.
#[derive(Deserialize)]
struct EventView<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    state_key: Option<IgnoredAny>,
    event_id: OwnedEventId,
    sender: OwnedUserId,
    room_id: OwnedRoomId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    #[serde(borrow)]
    content: &'a serde_json::value::RawValue,
    // Read only to refuse what ruma refuses; processing does not use it.
    #[allow(dead_code)]
    #[serde(default)]
    unsigned: MessageLikeUnsigned<RoomMessageEventContent>,
}

/// Any JSON value, read in full (each string unescaped, each number parsed) and kept
/// nowhere: it deserializes where serde's `Content` does.
struct Decodes;

impl<'de> Deserialize<'de> for Decodes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DecodesVisitor)
    }
}

struct DecodesVisitor;

impl<'de> serde::de::Visitor<'de> for DecodesVisitor {
    type Value = Decodes;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Decodes, E> {
        Ok(Decodes)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Decodes, E> {
        Ok(Decodes)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Decodes, E> {
        Ok(Decodes)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Decodes, E> {
        Ok(Decodes)
    }
    fn visit_str<E>(self, _: &str) -> Result<Decodes, E> {
        Ok(Decodes)
    }
    fn visit_unit<E>(self) -> Result<Decodes, E> {
        Ok(Decodes)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Decodes, A::Error> {
        while seq.next_element::<Decodes>()?.is_some() {}
        Ok(Decodes)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Decodes, A::Error> {
        while map.next_entry::<Decodes, Decodes>()?.is_some() {}
        Ok(Decodes)
    }
}

#[derive(Deserialize)]
struct ContentView<'a> {
    #[serde(borrow)]
    msgtype: Cow<'a, str>,
    body: String,
    #[serde(borrow)]
    format: Option<Cow<'a, str>>,
    formatted_body: Option<String>,
    #[serde(rename = "m.mentions")]
    mentions: Option<Mentions>,
    #[serde(rename = "m.relates_to", borrow)]
    relates_to: Option<RelatesToView<'a>>,
    #[serde(rename = "m.new_content")]
    new_content: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct RelatesToView<'a> {
    #[serde(borrow)]
    rel_type: Option<Cow<'a, str>>,
    event_id: Option<OwnedEventId>,
    // Absent is false; anything but a boolean fails the pass (ruma then reads the relation
    // as one of an unknown kind).
    #[serde(default, deserialize_with = "a_boolean")]
    is_falling_back: Option<bool>,
    #[serde(rename = "m.in_reply_to")]
    in_reply_to: Option<InReplyTo>,
}

/// `is_falling_back` when it is there: a boolean, never `null`.
fn a_boolean<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    bool::deserialize(d).map(Some)
}

impl RelatesToView<'_> {
    /// The relation ruma reads from it, when it is one this pass knows whole.
    fn relation(self) -> Option<Relation<RoomMessageEventContentWithoutRelation>> {
        match self.rel_type.as_deref() {
            // A reply: ruma reads any relation without a type that has `m.in_reply_to` so.
            None if self.event_id.is_none() && self.is_falling_back.is_none() => {
                Some(Relation::Reply(Reply::new(self.in_reply_to?)))
            }
            Some("m.thread") => {
                let mut thread = Thread::without_fallback(self.event_id?);
                thread.in_reply_to = self.in_reply_to;
                thread.is_falling_back = self.is_falling_back.unwrap_or(false);
                Some(Relation::Thread(thread))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn ruma(json: &str) -> Option<RoomMessage> {
        serde_json::from_str::<OriginalMessageLikeEvent<RoomMessageEventContent>>(json)
            .ok()
            .map(Into::into)
    }

    fn event(content: Value) -> String {
        json!({
            "type": "m.room.message",
            "event_id": "$abc:example.org",
            "sender": "@alice:example.org",
            "room_id": "!room:example.org",
            "origin_server_ts": 1_780_000_000_000u64,
            "unsigned": { "age": 12, "membership": "join" },
            "content": content,
        })
        .to_string()
    }

    /// What a caller sees of a message, to compare the two reads by.
    fn seen(m: &RoomMessage) -> String {
        format!("{m:?}")
    }

    #[test]
    fn the_usual_shapes_are_read_in_one_pass_as_ruma_reads_them() {
        let shapes = [
            json!({ "msgtype": "m.text", "body": "hello" }),
            json!({ "msgtype": "m.notice", "body": "a notice" }),
            json!({ "msgtype": "m.emote", "body": "waves", "format": "org.matrix.custom.html", "formatted_body": "<b>waves</b>" }),
            json!({ "msgtype": "m.text", "body": "esc \"quoted\" \u{e9}\\n", "format": "org.matrix.custom.html", "formatted_body": "<a href=\"https://matrix.to/#/@bob:example.org\">Bob</a>" }),
            json!({ "msgtype": "m.text", "body": "Bob: look", "m.mentions": { "user_ids": ["@bob:example.org", "@carol:example.org"] } }),
            json!({ "msgtype": "m.text", "body": "everyone", "m.mentions": { "room": true } }),
            json!({ "msgtype": "m.text", "body": "none", "m.mentions": {} }),
            json!({ "msgtype": "m.text", "body": "null mentions", "m.mentions": null, "m.relates_to": null }),
            json!({ "msgtype": "m.text", "body": "in a thread", "m.relates_to": { "rel_type": "m.thread", "event_id": "$root:example.org", "is_falling_back": true, "m.in_reply_to": { "event_id": "$last:example.org" } } }),
            json!({ "msgtype": "m.text", "body": "a reply in a thread", "m.relates_to": { "rel_type": "m.thread", "event_id": "$root:example.org", "is_falling_back": false, "m.in_reply_to": { "event_id": "$other:example.org" } } }),
            json!({ "msgtype": "m.text", "body": "thread, no fallback", "m.relates_to": { "rel_type": "m.thread", "event_id": "$root:example.org" } }),
            json!({ "msgtype": "m.text", "body": "a reply", "m.relates_to": { "m.in_reply_to": { "event_id": "$earlier:example.org" } } }),
            json!({ "msgtype": "m.text", "body": "unknown keys", "x.custom": [1, 2, { "a": null }], "m.relates_to": { "rel_type": "m.thread", "event_id": "$root:example.org", "x": 1 } }),
        ];
        for content in shapes {
            let json = event(content.clone());
            let fast = read(&json).unwrap_or_else(|| panic!("not read in one pass: {content}"));
            let slow = ruma(&json).unwrap_or_else(|| panic!("ruma does not read: {content}"));
            assert_eq!(seen(&fast), seen(&slow), "{content}");
        }
    }

    #[test]
    fn other_shapes_are_left_to_ruma_and_parse_gives_ruma_s_reading() {
        let shapes = [
            // an edit
            json!({ "msgtype": "m.text", "body": "* fixed", "m.new_content": { "msgtype": "m.text", "body": "fixed" }, "m.relates_to": { "rel_type": "m.replace", "event_id": "$abc:example.org" } }),
            // another message type
            json!({ "msgtype": "m.image", "body": "cat.png", "url": "mxc://example.org/cat" }),
            json!({ "msgtype": "org.example.custom", "body": "custom", "extra": 1 }),
            // a relation of another kind, or not whole
            json!({ "msgtype": "m.text", "body": "x", "m.relates_to": { "rel_type": "org.example.rel", "event_id": "$a:example.org" } }),
            json!({ "msgtype": "m.text", "body": "x", "m.relates_to": { "rel_type": "io.element.thread", "event_id": "$a:example.org" } }),
            json!({ "msgtype": "m.text", "body": "x", "m.relates_to": { "rel_type": "m.thread", "event_id": "$a:example.org", "is_falling_back": null, "m.in_reply_to": { "event_id": "$b:example.org" } } }),
            json!({ "msgtype": "m.text", "body": "x", "m.relates_to": { "rel_type": "m.thread", "event_id": "not an id", "m.in_reply_to": { "event_id": "$b:example.org" } } }),
            json!({ "msgtype": "m.text", "body": "x", "m.relates_to": { "event_id": "$a:example.org", "m.in_reply_to": { "event_id": "$b:example.org" } } }),
            json!({ "msgtype": "m.text", "body": "x", "m.relates_to": {} }),
            // a formatted body without its format, or not a string
            json!({ "msgtype": "m.text", "body": "x", "formatted_body": "<b>x</b>" }),
            json!({ "msgtype": "m.text", "body": "x", "format": "org.matrix.custom.html", "formatted_body": 5 }),
        ];
        for content in shapes {
            let json = event(content.clone());
            assert!(read(&json).is_none(), "read in one pass: {content}");
            let slow = ruma(&json).map(|m| seen(&m));
            assert_eq!(parse(&json).ok().map(|m| seen(&m)), slow, "{content}");
        }
        // A repeated field, which ruma's passes over a copy may take differently.
        let repeated = event(json!({ "msgtype": "m.text", "body": "x" }))
            .replace(r#""body":"x""#, r#""body":"x","body":"y""#);
        assert!(read(&repeated).is_none());
        assert_eq!(parse(&repeated).ok().map(|m| seen(&m)), ruma(&repeated).map(|m| seen(&m)));
    }

    #[test]
    fn what_ruma_refuses_is_refused() {
        let bad = [
            event(json!({ "msgtype": "m.text" })),
            event(json!({ "msgtype": "m.text", "body": 5 })),
            event(
                json!({ "msgtype": "m.text", "body": "x", "m.mentions": { "user_ids": ["not a user"] } }),
            ),
            event(json!({ "msgtype": "m.text", "body": "x" }))
                .replace("@alice:example.org", "alice"),
            event(json!({ "msgtype": "m.text", "body": "x" }))
                .replace(r#""age":12"#, r#""age":"old""#),
            r#"{"type":"m.room.message"}"#.to_owned(),
            // Fields neither reads, holding what does not decode: a lone surrogate, a number
            // out of range (the first found by the `message` fuzz target).
            event(
                json!({ "msgtype": "m.text", "body": "x", "m.relates_to": { "rel_type": "m.thread", "event_id": "$root:example.org", "x": "LONE" } }),
            ),
            event(
                json!({ "msgtype": "m.text", "body": "x", "m.relates_to": { "m.in_reply_to": { "event_id": "$a:example.org", "x": ["LONE"] } } }),
            ),
            event(json!({ "msgtype": "m.text", "body": "x", "x.custom": { "y": "LONE" } })),
            event(json!({ "msgtype": "m.text", "body": "x", "x.custom": 1 }))
                .replace(r#""x.custom":1"#, r#""x.custom":1e400"#),
        ];
        let bad = bad.map(|json| json.replace("LONE", r"\udae3"));
        for json in bad {
            assert!(ruma(&json).is_none(), "ruma reads {json}");
            assert!(read(&json).is_none(), "read in one pass: {json}");
            assert!(parse(&json).is_err(), "parsed: {json}");
        }
    }
}
