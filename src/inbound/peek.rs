//! The first pass over a timeline event's JSON, borrowed from its bytes: the ids, the type,
//! whether it is state, whether it is redacted, and what a command needs of a message's
//! content. Ingest reads it to store an event (or leave a message that calls for nothing);
//! the handler, to choose how to parse it.

use std::borrow::Cow;

use ruma::UserId;

use crate::{config::Settings, domain::board::RoomRecord, store::Store};

/// What the first pass reads of a timeline event.
#[derive(serde::Deserialize)]
pub(crate) struct Peek<'a> {
    #[serde(borrow)]
    pub(crate) event_id: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    pub(crate) ty: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) state_key: Option<Cow<'a, str>>,
    pub(crate) unsigned: Option<PeekUnsigned>,
    #[serde(borrow)]
    pub(crate) room_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<PeekContent<'a>>,
}

#[derive(serde::Deserialize)]
pub(crate) struct PeekUnsigned {
    pub(crate) redacted_because: Option<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct PeekContent<'a> {
    #[serde(borrow)]
    msgtype: Option<Cow<'a, str>>,
    #[serde(borrow)]
    body: Option<Cow<'a, str>>,
}

impl<'a> Peek<'a> {
    /// The first pass over `json`; `None` when it does not read so (the event is then read
    /// in full, with its errors).
    pub(crate) fn of(json: &'a [u8]) -> Option<Self> {
        std::str::from_utf8(json).ok().and_then(Self::of_str)
    }

    /// [`Peek::of`] text known to be UTF-8 (an event as the request's parse delimited it):
    /// its strings are not checked again.
    pub(crate) fn of_str(json: &'a str) -> Option<Self> {
        serde_json::from_str(json).ok()
    }
}

impl Peek<'_> {
    /// Its room id, when it has a valid one.
    pub(crate) fn room(&self) -> Option<&ruma::RoomId> {
        self.room_id.as_deref().and_then(|r| <&ruma::RoomId>::try_from(r).ok())
    }

    /// Whether it is redacted (`unsigned.redacted_because`).
    pub(crate) fn redacted(&self) -> bool {
        self.unsigned.as_ref().is_some_and(|u| u.redacted_because.is_some())
    }

    /// A message (not state, not redacted) that cannot be a command: not text, or a text
    /// without a `!` anywhere in its body.
    pub(crate) fn cannot_be_a_command(&self) -> bool {
        if self.ty != "m.room.message" || self.state_key.is_some() || self.redacted() {
            return false;
        }
        match &self.content {
            Some(c) => {
                c.msgtype.as_deref() != Some("m.text")
                    || !c.body.as_deref().unwrap_or("").contains('!')
            }
            None => false,
        }
    }

    /// Another user's membership (not the bot's, not a virtual user's): it counts only in
    /// a board's space or rooms, where the index keeps who is a member.
    pub(crate) fn others_membership(&self, settings: &Settings) -> bool {
        self.ty == "m.room.member"
            && self
                .state_key
                .as_deref()
                .and_then(|k| <&UserId>::try_from(k).ok())
                .is_some_and(|u| !settings.is_ours(u))
    }

    /// Whether handling it can make a room a board's: any state event but another
    /// user's membership (a tombstone, Boardroom's own state, the bot or a virtual user
    /// joining or invited), and any message that can be a command (`!board create`
    /// records its rooms). While such an event waits to be processed, ingest stores every
    /// message, whatever room it is in.
    pub(crate) fn may_change_rooms(&self, settings: &Settings) -> bool {
        match &self.state_key {
            Some(key) => {
                self.ty != "m.room.member"
                    || <&UserId>::try_from(key.as_ref()).map_or(true, |u| settings.is_ours(u))
            }
            None => match self.ty.as_ref() {
                "m.room.message" => !self.cannot_be_a_command(),
                // It may hold a command.
                "m.room.encrypted" => true,
                _ => false,
            },
        }
    }
}

/// What the first pass says of a message that cannot be a command (not text, or without a
/// `!` anywhere in its body).
pub(crate) enum Plain {
    /// Not such a message, or in doubt (no room id, a redacted event, a room that cannot be
    /// read): read and handled in full.
    Unknown,
    /// In a room that is no board's: it calls for nothing, and is not read further.
    ElsewhereThanABoard,
    /// In the board room recorded so: read once here, not again by the handler.
    InBoardRoom(RoomRecord),
}

pub(crate) fn plain_message(store: &Store, peek: &Peek<'_>) -> Plain {
    if !peek.cannot_be_a_command() {
        return Plain::Unknown;
    }
    let Some(room) = peek.room() else {
        return Plain::Unknown;
    };
    match store.room(room) {
        Ok(None) => Plain::ElsewhereThanABoard,
        Ok(Some(record)) => Plain::InBoardRoom(record),
        Err(_) => Plain::Unknown,
    }
}

/// Whether the event calls for nothing, wherever it is handled: a message that cannot be
/// a command, in a room that is no board's; another user's membership in a room that is
/// neither a board's room nor its space. In doubt (a room that cannot be read), it may
/// call for something.
pub(crate) fn calls_for_nothing(store: &Store, settings: &Settings, peek: &Peek<'_>) -> bool {
    let message = peek.cannot_be_a_command();
    if !message && !peek.others_membership(settings) {
        return false;
    }
    let Some(room) = peek.room() else { return false };
    if !matches!(store.room(room), Ok(None)) {
        return false;
    }
    message || matches!(store.slug_of_space(room), Ok(None))
}

/// [`Peek::may_change_rooms`] of `json`; an event the first pass cannot read may.
pub(crate) fn may_change_rooms(json: &[u8], settings: &Settings) -> bool {
    Peek::of(json).is_none_or(|p| p.may_change_rooms(settings))
}
