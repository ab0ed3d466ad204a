//! The stream events of what the homeserver sends and the store does not log by itself:
//! messages and redactions (logged when their inbound entry is completed), typing and
//! presence (published live, never logged).

use ruma::{EventId, RoomId, UserId, events::room::message::Relation};

use crate::{
    chat::history::formatted,
    context::Context,
    domain::{
        board::RoomRecord,
        now_ms,
        stream::{MessageEvent, PresenceEvent, StreamData, StreamEvent, TypingEvent},
    },
    store::live::LogAppend,
};

/// A message (or an edit of one) in the board room recorded as `room`, for its board's log.
pub(crate) fn message(
    ctx: &Context,
    room: &RoomRecord,
    ev: &crate::domain::message::RoomMessage,
) -> crate::Result<LogAppend> {
    let display_name = ctx.store.member(&ev.room_id, &ev.sender)?.and_then(|(_, name)| name);
    let (msgtype, replaces, thread_root) = match &ev.content.relates_to {
        Some(Relation::Replacement(r)) => (&r.new_content.msgtype, Some(r.event_id.clone()), None),
        Some(Relation::Thread(t)) => (&ev.content.msgtype, None, Some(t.event_id.clone())),
        _ => (&ev.content.msgtype, None, None),
    };
    let mut event = StreamEvent::public(StreamData::Message(MessageEvent {
        room: room.name.clone(),
        room_id: ev.room_id.clone(),
        event_id: ev.event_id.clone(),
        sender: ev.sender.clone(),
        display_name,
        msgtype: Some(msgtype.msgtype().to_owned()),
        body: Some(msgtype.body().to_owned()),
        formatted_body: formatted(msgtype).map(str::to_owned),
        ts: u64::from(ev.origin_server_ts.0),
        thread_root,
        replaces,
        redacts: None,
    }));
    if room.private {
        event.private_room = Some(ev.room_id.clone());
    }
    Ok(vec![(room.board.clone(), event)])
}

/// A redaction in a board room, for its board's log.
pub(crate) fn redaction(
    ctx: &Context,
    room_id: &RoomId,
    event_id: &EventId,
    sender: &UserId,
    ts: u64,
    redacts: &EventId,
) -> crate::Result<LogAppend> {
    let Some(room) = ctx.store.room(room_id)? else { return Ok(LogAppend::new()) };
    let display_name = ctx.store.member(room_id, sender)?.and_then(|(_, name)| name);
    let mut event = StreamEvent::public(StreamData::Message(MessageEvent {
        room: room.name.clone(),
        room_id: room_id.to_owned(),
        event_id: event_id.to_owned(),
        sender: sender.to_owned(),
        display_name,
        msgtype: None,
        body: None,
        formatted_body: None,
        ts,
        thread_root: None,
        replaces: None,
        redacts: Some(redacts.to_owned()),
    }));
    if room.private {
        event.private_room = Some(room_id.to_owned());
    }
    Ok(vec![(room.board, event)])
}

/// Publishes who types in `room_id` now (the homeserver's and the API's typing), if it is
/// a board room.
pub(crate) fn typing(ctx: &Context, room_id: &RoomId) {
    let publish = || -> crate::Result<()> {
        let Some(room) = ctx.store.room(room_id)? else { return Ok(()) };
        let mut event = StreamEvent::public(StreamData::Typing(TypingEvent {
            room: room.name.clone(),
            room_id: room_id.to_owned(),
            user_ids: ctx.live.typing_at(room_id, now_ms()),
        }));
        if room.private {
            event.private_room = Some(room_id.to_owned());
        }
        ctx.store.live_publish(&room.board, event)
    };
    if let Err(e) = publish() {
        tracing::warn!(error = %e, room_id = %room_id, "cannot publish typing");
    }
}

/// Publishes `user`'s presence on every board they belong to.
pub(crate) fn presence(ctx: &Context, user: &UserId, state: &ruma::presence::PresenceState) {
    let publish = || -> crate::Result<()> {
        for slug in ctx.store.boards_of(user)? {
            let event = StreamEvent::public(StreamData::Presence(PresenceEvent {
                user_id: user.to_owned(),
                presence: state.clone(),
            }));
            ctx.store.live_publish(&slug, event)?;
        }
        Ok(())
    };
    if let Err(e) = publish() {
        tracing::warn!(error = %e, user_id = %user, "cannot publish presence");
    }
}
