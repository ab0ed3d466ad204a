//! A room's history, newest first, a page at a time, read as the caller: what the
//! homeserver shows that user (history visibility, membership) is what they get. Edits are
//! folded into the message they edit (its latest text, marked edited); a redacted message
//! keeps its place without its text.

use std::collections::HashMap;

use ruma::{
    OwnedEventId, OwnedUserId, RoomId, UInt,
    api::client::message::get_message_events,
    events::{
        AnyTimelineEvent, MessageLikeEvent,
        room::message::{MessageType, Relation, RoomMessageEvent},
    },
    serde::Raw,
};

use super::{intent_in, refused};
use crate::{
    boards::access,
    context::Context,
    domain::op::{BoardRef, OpResult, OpSpec, Permission, Refusal, Request},
};

/// Reading a room's history.
pub(crate) const READ_HISTORY: OpSpec =
    OpSpec { permission: Permission::BoardMember, doing: "read its rooms" };

/// Messages in a page, by default.
pub(crate) const DEFAULT_PAGE: usize = 20;
/// Messages in a page, at most.
pub(crate) const MAX_PAGE: usize = 100;
/// The longest `from` token taken (the homeserver's are far shorter).
const MAX_TOKEN_BYTES: usize = 512;

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    /// Its event id.
    pub event_id: OwnedEventId,
    /// Who sent it.
    pub sender: OwnedUserId,
    /// Their display name in the room, if they set one.
    pub display_name: Option<String>,
    /// Its text (the latest edit's); `None` once redacted.
    pub body: Option<String>,
    /// Its HTML, when it has one, as the sender wrote it (not sanitized).
    pub formatted_body: Option<String>,
    /// When it was sent (the homeserver's `origin_server_ts`, ms since the epoch).
    pub ts: u64,
    /// The thread it is in.
    pub thread_root: Option<OwnedEventId>,
    /// Edited since it was sent.
    pub edited: bool,
    /// Redacted.
    pub redacted: bool,
}

/// A page of history.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    /// Newest first.
    pub messages: Vec<Message>,
    /// The token of the next (older) page; `None` at the start of the room.
    pub next_batch: Option<String>,
}

/// Up to `limit` messages of the room `room` (its name in the board) of the board `at`,
/// newest first, before `from` (a previous page's `next_batch`), read as the actor. A
/// page may hold fewer than `limit` messages (edits are folded into what they edit) and
/// still be followed by more: only a missing `next_batch` ends the history.
pub(crate) async fn page(
    ctx: &Context,
    req: &Request<'_>,
    at: BoardRef<'_>,
    room: &str,
    from: Option<&str>,
    limit: usize,
) -> OpResult<Page> {
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Refusal::invalid(format!("limit must be between 1 and {MAX_PAGE}")));
    }
    if from.is_some_and(|f| f.is_empty() || f.len() > MAX_TOKEN_BYTES) {
        return Err(Refusal::invalid("`from` is not a next_batch token of this room"));
    }
    let board = access::board(ctx, req.actor, at, &READ_HISTORY)?;
    let (room_id, _) = access::room(ctx, req.actor, &board, room)?;
    let intent = intent_in(ctx, req.actor, &board, &room_id).await?;
    let mut request = get_message_events::v3::Request::backward(room_id.clone());
    request.from = from.map(str::to_owned);
    request.limit = UInt::try_from(limit).unwrap_or(UInt::MIN);
    request.filter.types = Some(vec!["m.room.message".to_owned()]);
    let response = intent.send(request).await.map_err(|e| {
        if from.is_some() && e.status() == Some(400) {
            Refusal::invalid("`from` is not a next_batch token of this room")
        } else {
            refused(e, req.actor, room, "read")
        }
    })?;
    let messages = messages_of(ctx, &room_id, &response.chunk)?;
    let next_batch = response.end.filter(|_| !response.chunk.is_empty());
    Ok(Page { messages, next_batch })
}

/// The messages of a page of `m.room.message` events, in their order; edits themselves
/// are left out (their originals carry them), as is what does not parse.
pub(crate) fn messages_of(
    ctx: &Context,
    room: &RoomId,
    chunk: &[Raw<AnyTimelineEvent>],
) -> OpResult<Vec<Message>> {
    let mut names: HashMap<OwnedUserId, Option<String>> = HashMap::new();
    let mut out = Vec::with_capacity(chunk.len());
    for raw in chunk {
        // The page holds messages only (its filter): parsed as one straight away, without
        // the detour through every event type.
        if raw.get_field::<&str>("type").ok().flatten() != Some("m.room.message") {
            continue;
        }
        let event = match raw.deserialize_as_unchecked::<RoomMessageEvent>() {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(room_id = %room, error = %e, "skipping a message that does not parse");
                continue;
            }
        };
        let mut message = match event {
            MessageLikeEvent::Original(m) => {
                if matches!(m.content.relates_to, Some(Relation::Replacement(_))) {
                    continue;
                }
                let thread_root = match &m.content.relates_to {
                    Some(Relation::Thread(t)) => Some(t.event_id.clone()),
                    _ => None,
                };
                let latest = m.unsigned.relations.replace.as_ref().and_then(|edit| {
                    match &edit.content.relates_to {
                        Some(Relation::Replacement(r)) => Some(&r.new_content.msgtype),
                        _ => None,
                    }
                });
                let msgtype = latest.unwrap_or(&m.content.msgtype);
                Message {
                    event_id: m.event_id,
                    sender: m.sender,
                    display_name: None,
                    body: Some(msgtype.body().to_owned()),
                    formatted_body: formatted(msgtype).map(str::to_owned),
                    ts: m.origin_server_ts.get().into(),
                    thread_root,
                    edited: latest.is_some(),
                    redacted: false,
                }
            }
            MessageLikeEvent::Redacted(r) => Message {
                event_id: r.event_id,
                sender: r.sender,
                display_name: None,
                body: None,
                formatted_body: None,
                ts: r.origin_server_ts.get().into(),
                thread_root: None,
                edited: false,
                redacted: true,
            },
        };
        message.display_name = match names.get(&message.sender) {
            Some(name) => name.clone(),
            None => {
                let name = ctx.store.member(room, &message.sender)?.and_then(|(_, n)| n);
                names.insert(message.sender.clone(), name.clone());
                name
            }
        };
        out.push(message);
    }
    Ok(out)
}

/// The HTML of a message, when it has one.
pub(crate) fn formatted(msgtype: &MessageType) -> Option<&str> {
    match msgtype {
        MessageType::Text(t) => t.formatted.as_ref().map(|f| f.body.as_str()),
        MessageType::Notice(n) => n.formatted.as_ref().map(|f| f.body.as_str()),
        MessageType::Emote(e) => e.formatted.as_ref().map(|f| f.body.as_str()),
        _ => None,
    }
}
