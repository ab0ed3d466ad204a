//! One inbound entry → the actions it calls for. A bad event is logged and skipped.

use ruma::{
    events::{
        AnyMessageLikeEvent, AnyStateEvent, AnyTimelineEvent, MessageLikeEvent, StateEvent,
        StaticEventContent,
        receipt::ReceiptEvent,
        room::{member::MembershipState, redaction::RoomRedactionEvent},
    },
    serde::Raw,
};

use super::peek::{Peek, Plain, plain_message};
use crate::{
    boards::{index, upgrade},
    commands::dispatch::{self, ChatCommand},
    context::Context,
    crypto::DeviceUpdates,
    domain::board::{BoardEventContent, BoardRoomEventContent, RoomRecord},
    domain::inbox::Notification,
    domain::message::RoomMessage,
    domain::task::TaskEventContent,
    domain::{
        Action,
        action::derived_txn_id,
        bot::{self, InviteDecision},
    },
    notifications::notify,
    store::{
        inbound::{EntryKind, PendingEntry},
        inbox::Message,
        live::{LogAppend, Once},
    },
    stream,
    tasks::{self, comments, moves::move_tasks},
};

/// What handling an entry came to.
#[derive(Debug, Default)]
pub(crate) struct Handled {
    /// The actions it calls for, to queue in the outbox.
    pub(crate) actions: Vec<Action>,
    /// Whether its own write took it off the inbound queue (a message, logged with the
    /// entries it makes): nothing is left to mark it processed.
    pub(crate) off_the_queue: bool,
}

impl From<Vec<Action>> for Handled {
    fn from(actions: Vec<Action>) -> Self {
        Self { actions, off_the_queue: false }
    }
}

/// Where an entry stands: its seq, and whether it is on the inbound queue (then a message's
/// write takes it off, and that keeps a replay from logging it twice; handed in directly, a
/// mark under the event's id does).
#[derive(Debug, Clone, Copy)]
struct At {
    seq: u64,
    queued: bool,
}

/// Handles one entry handed in directly (not read from the inbound queue, which it leaves
/// as it is).
pub async fn handle(ctx: &Context, entry: &PendingEntry) -> Vec<Action> {
    handle_at(ctx, entry, At { seq: entry.seq, queued: false }).await.actions
}

/// Handles one entry read from the inbound queue.
pub(crate) async fn handle_queued(ctx: &Context, entry: &PendingEntry) -> Handled {
    handle_at(ctx, entry, At { seq: entry.seq, queued: true }).await
}

async fn handle_at(ctx: &Context, entry: &PendingEntry, at: At) -> Handled {
    match entry.kind {
        EntryKind::Timeline => {
            // Most events are parsed once, straight from the stored bytes; those about
            // encryption (and any that do not parse) take the slower path below.
            // Checked as UTF-8 once: neither pass checks each string again.
            let text = std::str::from_utf8(&entry.json).ok();
            let peek = text.and_then(Peek::of_str);
            let room = match peek.as_ref().map(|p| plain_message(&ctx.store, p)) {
                Some(Plain::ElsewhereThanABoard) => return Handled::default(),
                Some(Plain::InBoardRoom(room)) => Some(room),
                Some(Plain::Unknown) | None => None,
            };
            match text.map(|text| parse_peeked(text, peek)) {
                Some(Ok(event)) if !about_encryption(&event) => {
                    handle_timeline(ctx, &entry.json, event, at, room).await
                }
                _ => handle_raw(ctx, entry, at).await,
            }
        }
        EntryKind::Device => {
            match serde_json::from_slice::<DeviceUpdates>(&entry.json) {
                Ok(updates) => device_updates(ctx, &updates).await,
                Err(e) => tracing::warn!(error = %e, "skipping device updates that do not parse"),
            }
            Handled::default()
        }
        EntryKind::Receipt => {
            match serde_json::from_slice::<ReceiptEvent>(&entry.json) {
                Ok(receipt) => {
                    if let Err(e) = notify::on_receipt(ctx, &receipt) {
                        tracing::error!(error = %e, "cannot apply a read receipt");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "skipping a receipt that does not parse"),
            }
            Handled::default()
        }
    }
}

/// A timeline event from its JSON. ruma's `AnyTimelineEvent` finds an event's kind by
/// reading it again at each level of its enums (five passes over the JSON, two copies);
/// the two kinds most events are (a message, a membership) are read here in two passes:
/// their type, then their own struct. Anything else (or either of them that does not parse
/// that way) goes through `AnyTimelineEvent`, with its errors.
#[cfg(test)]
fn parse_timeline(json: &[u8]) -> serde_json::Result<AnyTimelineEvent> {
    let text =
        std::str::from_utf8(json).map_err(<serde_json::Error as serde::de::Error>::custom)?;
    parse_peeked(text, Peek::of_str(text))
}

/// [`parse_timeline`] with the event already peeked (`None`: the peek failed).
fn parse_peeked(json: &str, peek: Option<Peek<'_>>) -> serde_json::Result<AnyTimelineEvent> {
    use ruma::events::room::{member::RoomMemberEventContent, message::RoomMessageEventContent};
    if let Some(peek) = peek
        && !peek.redacted()
    {
        use ruma::events::{OriginalMessageLikeEvent, OriginalStateEvent};
        let parsed = match (peek.ty.as_ref(), peek.state_key.is_some()) {
            ("m.room.message", false) => {
                serde_json::from_str::<OriginalMessageLikeEvent<RoomMessageEventContent>>(json)
                    .ok()
                    .map(|ev| AnyMessageLikeEvent::RoomMessage(MessageLikeEvent::Original(ev)))
                    .map(AnyTimelineEvent::MessageLike)
            }
            ("m.room.member", true) => {
                serde_json::from_str::<OriginalStateEvent<RoomMemberEventContent>>(json)
                    .ok()
                    .map(|ev| AnyStateEvent::RoomMember(StateEvent::Original(ev)))
                    .map(AnyTimelineEvent::State)
            }
            _ => None,
        };
        if let Some(event) = parsed {
            return Ok(event);
        }
    }
    serde_json::from_str::<AnyTimelineEvent>(json)
}

/// Whether the handler must look at `event` before it reads it: an encrypted event, or a
/// room's encryption being turned on.
fn about_encryption(event: &AnyTimelineEvent) -> bool {
    matches!(
        event,
        AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomEncrypted(_))
            | AnyTimelineEvent::State(AnyStateEvent::RoomEncryption(_))
    )
}

/// A timeline event read as raw JSON first: decrypted when it is encrypted, and skipped
/// (logged) when it does not parse.
async fn handle_raw(ctx: &Context, entry: &PendingEntry, at: At) -> Handled {
    let raw: Raw<AnyTimelineEvent> = match serde_json::from_slice(&entry.json) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "skipping an event that is not JSON");
            return Handled::default();
        }
    };
    let raw = match encrypted(ctx, &raw, &entry.room_id).await {
        Decrypted::Plain => raw,
        Decrypted::Clear(clear) => clear,
        Decrypted::Unreadable => return Handled::default(),
        Decrypted::CannotRead(why) => return tell_once(ctx, &raw, why).into(),
    };
    match raw.deserialize() {
        Ok(event) => handle_timeline(ctx, raw.json().get().as_bytes(), event, at, None).await,
        Err(e) => {
            let event_id = raw.get_field::<String>("event_id").ok().flatten();
            tracing::warn!(error = %e, event_id, "skipping an event that does not parse");
            Handled::default()
        }
    }
}

/// `json` is the event as it came (or as decrypted), for the fields its parsed form does
/// not keep; `room`, its room's record when the first pass read it already.
async fn handle_timeline(
    ctx: &Context,
    json: &[u8],
    event: AnyTimelineEvent,
    at: At,
    room: Option<RoomRecord>,
) -> Handled {
    let seq = at.seq;
    match event {
        AnyTimelineEvent::State(state) => handle_state(ctx, json, state).await.into(),
        AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(
            MessageLikeEvent::Original(ev),
        )) => {
            let ev = RoomMessage::from(ev);
            let command = bot::command_text(&ctx.settings, &ev.sender, &ev.content);
            // The message reaches its board's stream before what it causes (a task, a
            // comment, a notification); a task comment goes there as a comment, with its
            // index write (a command in a task's thread is no comment).
            let Some(text) = command else {
                // Anything else counts only in a board room: logged for its stream,
                // indexed as a comment, notifying whom it mentions.
                let room = match room.map_or_else(|| ctx.store.room(&ev.room_id), |r| Ok(Some(r))) {
                    Ok(Some(room)) => room,
                    Ok(None) => return Handled::default(),
                    Err(e) => {
                        tracing::error!(error = %e, event_id = %ev.event_id, "cannot read a message's room");
                        return Handled::default();
                    }
                };
                return on_message(ctx, &room, &ev, at).await;
            };
            log_message(ctx, &ev);
            tracing::info!(event_id = %ev.event_id, sender = %ev.sender, "answering a command");
            let outcome = dispatch::run(
                ctx,
                &ChatCommand {
                    text,
                    event_id: &ev.event_id,
                    sender: &ev.sender,
                    room_id: &ev.room_id,
                    thread: comments::thread_root(&ev.content),
                    seq,
                },
            )
            .await;
            let (reply, mut actions) = (outcome.reply, outcome.actions);
            if let Some(reply) = reply {
                let content = bot::reply(
                    &ev.event_id,
                    ev.content.relates_to.as_ref(),
                    reply.plain,
                    reply.html,
                );
                actions.insert(
                    0,
                    Action::SendMessage {
                        room_id: ev.room_id.clone(),
                        as_user: None,
                        txn_id: derived_txn_id(ev.event_id.as_str(), 0),
                        content: Box::new(content),
                    },
                );
            }
            actions.into()
        }
        AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomRedaction(
            RoomRedactionEvent::Original(ev),
        )) => {
            if let Some(redacts) = ev.content.redacts.as_ref().or(ev.redacts.as_ref()) {
                let ts = u64::from(ev.origin_server_ts.0);
                let logged = stream::events::redaction(
                    ctx,
                    &ev.room_id,
                    &ev.event_id,
                    &ev.sender,
                    ts,
                    redacts,
                )
                .and_then(|log| ctx.store.log_once(&ev.event_id, log));
                if let Err(e) = logged {
                    tracing::error!(error = %e, "cannot log a redaction for the live stream");
                }
            }
            // It takes away what the redacted event made only when both are in one room:
            // `redacts` can name any event id.
            if let Some(redacts) = ev.content.redacts.as_ref().or(ev.redacts.as_ref())
                && let Err(e) =
                    comments::index_redaction(ctx, &ev.room_id, redacts).and_then(|()| {
                        ctx.store.remove_notifications_of(&ev.room_id, redacts).map(|_| ())
                    })
            {
                tracing::error!(error = %e, "cannot apply a redaction");
            }
            Handled::default()
        }
        _ => Handled::default(),
    }
}

/// An event as the handler reads it.
enum Decrypted {
    /// Not encrypted (or encryption is off): as it came.
    Plain,
    /// Decrypted by the bot's device.
    Clear(Raw<AnyTimelineEvent>),
    /// Encrypted, and not decrypted: skipped (logged).
    Unreadable,
    /// Encrypted, and the bot cannot read it, for a reason its room is told once.
    CannotRead(CannotRead),
}

/// Why the bot cannot read an encrypted event.
#[derive(Debug, Clone, Copy)]
enum CannotRead {
    /// `[encryption]` is off.
    EncryptionOff,
    /// Its room key never reached the bot's device.
    NoRoomKey,
}

impl CannotRead {
    fn kind(self) -> &'static str {
        match self {
            CannotRead::EncryptionOff => "encrypted",
            CannotRead::NoRoomKey => "undecryptable",
        }
    }

    fn sentence(self) -> &'static str {
        match self {
            CannotRead::EncryptionOff => {
                "This room is end-to-end encrypted and Boardroom's encryption is off, so I cannot read anything written here: commands, task comments and mentions in this room go unseen. An admin can turn on [encryption] in Boardroom's configuration; until then, use a room that is not encrypted."
            }
            CannotRead::NoRoomKey => {
                "I could not decrypt a message here: its key never reached my device. If a command got no answer, send it again. If this repeats, make sure your client shares keys with unverified devices (my device is not verified)."
            }
        }
    }
}

/// Tells the room of `raw`, once, why the bot cannot read what is written there (and logs
/// a warning each time).
fn tell_once(ctx: &Context, raw: &Raw<AnyTimelineEvent>, why: CannotRead) -> Vec<Action> {
    let room = raw.get_field::<ruma::OwnedRoomId>("room_id").ok().flatten();
    let sender = raw.get_field::<ruma::OwnedUserId>("sender").ok().flatten();
    let (Some(room), Some(sender)) = (room, sender) else { return Vec::new() };
    if ctx.settings.is_ours(&sender) {
        return Vec::new();
    }
    tracing::warn!(room_id = %room, reason = why.kind(), "cannot read an encrypted event");
    match ctx.store.note_once(&room, why.kind()) {
        Ok(true) => {
            let mut content =
                ruma::events::room::message::RoomMessageEventContent::notice_plain(why.sentence());
            content.mentions = Some(ruma::events::Mentions::new());
            vec![Action::SendMessage {
                room_id: room.clone(),
                as_user: None,
                txn_id: derived_txn_id(&format!("notice.{}.{room}", why.kind()), 0),
                content: Box::new(content),
            }]
        }
        Ok(false) => Vec::new(),
        Err(e) => {
            tracing::error!(error = %e, "cannot record a notice");
            Vec::new()
        }
    }
}

/// How long an encrypted event waits for its room key (which may come in a later
/// transaction, or be handled on the device's lane after the event) before it is skipped.
const ROOM_KEY_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Decrypts an `m.room.encrypted` event with the bot's device; notes an
/// `m.room.encryption` state event (the room's messages will be encrypted).
async fn encrypted(ctx: &Context, raw: &Raw<AnyTimelineEvent>, room_id: &str) -> Decrypted {
    let ty = raw.get_field::<std::borrow::Cow<'_, str>>("type").ok().flatten().unwrap_or_default();
    if ty == "m.room.encryption" {
        if let Some(crypto) = ctx.crypto.get() {
            crypto.mark_encrypted(room_id);
        }
        return Decrypted::Plain;
    }
    if ty != "m.room.encrypted" {
        return Decrypted::Plain;
    }
    if !ctx.settings.raw.encryption.enabled {
        return Decrypted::CannotRead(CannotRead::EncryptionOff);
    }
    // The device is being made at start-up: the event waits for it.
    let crypto = loop {
        if let Some(c) = ctx.crypto.get() {
            break c;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let event_id = raw.get_field::<String>("event_id").ok().flatten().unwrap_or_default();
    let Ok(json) = serde_json::from_str::<serde_json::Value>(raw.json().get()) else {
        return Decrypted::Unreadable;
    };
    let deadline = tokio::time::Instant::now() + ROOM_KEY_WAIT;
    loop {
        match crypto.decrypt(&json, room_id).await {
            Ok(Some(clear)) => {
                return match serde_json::value::to_raw_value(&clear) {
                    Ok(r) => Decrypted::Clear(Raw::from_json(r)),
                    Err(_) => Decrypted::Unreadable,
                };
            }
            Ok(None) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Ok(None) => {
                tracing::warn!(%event_id, %room_id, "no room key for an encrypted event; skipped");
                return Decrypted::CannotRead(CannotRead::NoRoomKey);
            }
            Err(e) => {
                tracing::warn!(error = %e, %event_id, %room_id, "cannot decrypt an event; skipped");
                return Decrypted::Unreadable;
            }
        }
    }
}

/// Feeds a transaction's device updates to the bot's device, once the start-up has made
/// it (the entry waits, pending, until then). A homeserver that fails is retried, as the
/// outbox does; past that the updates are logged and dropped: the machine asks again for
/// what it misses (keys are queried anew, one-time keys uploaded at the next count).
async fn device_updates(ctx: &Context, updates: &DeviceUpdates) {
    let crypto = loop {
        if let Some(c) = ctx.crypto.get() {
            break c;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let mut backoff = crate::matrix::backoff::Backoff::new(crate::matrix::RetryPolicy::BACKGROUND);
    loop {
        match crypto.receive(updates).await {
            Ok(()) => return,
            Err(e) => match backoff.next_delay(None, true) {
                Ok(pause) => {
                    tracing::warn!(error = %e, "cannot apply device updates; retrying");
                    tokio::time::sleep(pause).await;
                }
                Err(_) => {
                    tracing::error!(error = %e, "cannot apply device updates; dropped");
                    return;
                }
            },
        }
    }
}

/// A message (not a command) in the board room recorded as `room`: a comment is indexed
/// (and goes to the stream as one); anything else goes to the stream as a message, in one
/// write with the inbox entries it makes.
async fn on_message(ctx: &Context, room: &RoomRecord, ev: &RoomMessage, at: At) -> Handled {
    let (message, notifications) = prepare_message(ctx, room, ev, at.seq).await;
    let once = match at.queued {
        true => Once::Entry(at.seq),
        false => Once::Event(&ev.event_id),
    };
    match ctx.store.log_once_and_notify(Some((once, message)), notifications) {
        Ok(logged) => Handled { actions: Vec::new(), off_the_queue: logged.off_the_queue },
        Err(e) => {
            tracing::error!(error = %e, event_id = %ev.event_id, "cannot log a message or record its notifications");
            Handled::default()
        }
    }
}

/// What [`on_message`] writes, made ready: a comment indexed (its own write), the
/// message's entries in its board's log (none for a comment: it went there with its index
/// write), and the inbox entries it makes.
async fn prepare_message(
    ctx: &Context,
    room: &RoomRecord,
    ev: &RoomMessage,
    seq: u64,
) -> (LogAppend, Vec<Notification>) {
    let ts = u64::from(ev.origin_server_ts.0);
    let comment = comments::index_message(ctx, room, &ev.sender, &ev.event_id, ts, &ev.content)
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, event_id = %ev.event_id, "cannot index a comment");
            false
        });
    let notifications = notify::for_message(ctx, seq, room, ev).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, event_id = %ev.event_id, "cannot work out notifications");
        Vec::new()
    });
    // The message reaches its board's stream before what it causes (a notification); a
    // comment went there as a comment, with its index write.
    let message = match comment {
        true => Vec::new(),
        false => stream::events::message(ctx, room, ev).unwrap_or_else(|e| {
            tracing::error!(error = %e, event_id = %ev.event_id, "cannot log a message for the live stream");
            Vec::new()
        }),
    };
    (message, notifications)
}

/// A queued entry made ready for a write shared with the entries after it in its lane's
/// turn, when it is a message that is not a command, not an edit, in a board room: its
/// log entries and inbox entries, and its removal from the queue ([`Once::FirstEntry`]), for
/// [`crate::store::Store::log_messages_and_notify`]. `None`: it is handled on its own
/// ([`handle_queued`]), after what was made ready before it is written.
pub(crate) async fn prepare_in_turn(
    ctx: &Context,
    entry: &PendingEntry,
) -> Option<Message<'static>> {
    use ruma::events::room::message::Relation;
    // Ingest's first pass said whether it is a message that cannot be a command, in the
    // room the entry names (an entry that does not say is handled on its own, in full).
    if entry.kind != EntryKind::Timeline || !entry.plain {
        return None;
    }
    let room = <&ruma::RoomId>::try_from(entry.room_id.as_str()).ok()?;
    let room = ctx.store.room(room).ok().flatten()?;
    let text = std::str::from_utf8(&entry.json).ok()?;
    // One pass over the usual shapes (`message::read`), ruma's parse for the rest.
    let ev = crate::domain::message::parse(text).ok()?;
    // An edit reads what its original made (who it notified), which may be in this turn.
    if matches!(ev.content.relates_to, Some(Relation::Replacement(_))) {
        return None;
    }
    let (log, notifications) = prepare_message(ctx, &room, &ev, entry.seq).await;
    Some(Message { once: Some(Once::FirstEntry(entry.seq)), log, notifications })
}

/// Logs a board room's message for its board's live stream (once: a replay logs nothing).
fn log_message(ctx: &Context, ev: &RoomMessage) {
    let logged = ctx.store.room(&ev.room_id).and_then(|room| match room {
        Some(room) => stream::events::message(ctx, &room, ev)
            .and_then(|log| ctx.store.log_once(&ev.event_id, log)),
        None => Ok(()),
    });
    if let Err(e) = logged {
        tracing::error!(error = %e, event_id = %ev.event_id, "cannot log a message for the live stream");
    }
}

async fn handle_state(ctx: &Context, json: &[u8], state: AnyStateEvent) -> Vec<Action> {
    // The content of Boardroom's own state events, as sent (it may not parse: then it is
    // put back).
    let content = || -> Option<Raw<AnyTimelineEvent>> { serde_json::from_slice(json).ok() };
    let settings = &ctx.settings;
    let mut actions = Vec::new();
    if let AnyStateEvent::RoomMember(StateEvent::Original(ev)) = &state
        && ev.state_key == settings.bot_user_id
        && ev.content.membership == MembershipState::Invite
    {
        let member_of_a_board =
            ctx.store.boards_of(&ev.sender).map(|b| !b.is_empty()).unwrap_or(false);
        actions.push(match bot::on_invite(settings, &ev.sender, member_of_a_board) {
            InviteDecision::Accept => {
                tracing::info!(room_id = %ev.room_id, inviter = %ev.sender, "accepting invite");
                Action::JoinRoom { room_id: ev.room_id.clone(), as_user: None }
            }
            InviteDecision::Decline(reason) => {
                tracing::info!(room_id = %ev.room_id, inviter = %ev.sender, "declining invite");
                Action::LeaveRoom {
                    room_id: ev.room_id.clone(),
                    as_user: None,
                    reason: Some(reason),
                }
            }
        });
    }
    if let Some(new_room) = index::tombstone_target(&state) {
        match upgrade::follow_upgrade(ctx, state.room_id(), &new_room, state.event_id()).await {
            Ok(up) => actions.extend(settle_upgrade(ctx, up).await),
            Err(e) => tracing::error!(error = %e, "cannot follow a room upgrade"),
        }
    }
    if let AnyStateEvent::RoomPowerLevels(StateEvent::Original(ev)) = &state {
        match upgrade::on_power_levels(ctx, &ev.room_id, &ev.content).await {
            Ok(up) => actions.extend(settle_upgrade(ctx, up).await),
            Err(e) => tracing::error!(error = %e, "cannot settle an upgraded board room"),
        }
    }
    if state.event_type().to_string() == BoardEventContent::TYPE
        && state.state_key().is_empty()
        && let Err(e) =
            tasks::columns::follow_board_event(ctx, state.room_id(), state.sender(), || {
                content()
                    .and_then(|raw| raw.get_field::<BoardEventContent>("content").ok().flatten())
            })
            .await
    {
        tracing::error!(error = %e, "cannot follow a change of a board's state");
    }
    if state.event_type().to_string() == BoardRoomEventContent::TYPE
        && let Err(e) =
            upgrade::guard_room_state(ctx, state.room_id(), state.sender(), state.state_key()).await
    {
        tracing::error!(error = %e, "cannot put back a board room's state");
    }
    if state.event_type().to_string() == TaskEventContent::TYPE {
        // Content that does not parse is a change too: it gets put back. Read only once the
        // guard has checked the sender and the room (the bot's own echoes are not read).
        let fields = || {
            content().and_then(|raw| raw.get_field::<TaskEventContent>("content").ok().flatten())
        };
        match tasks::guard::guard_task_state(
            ctx,
            state.room_id(),
            state.sender(),
            state.event_id(),
            state.state_key(),
            fields,
        )
        .await
        {
            Ok(more) => actions.extend(more),
            Err(e) => tracing::error!(error = %e, "cannot guard a task's state"),
        }
    }
    match index::apply_state_event(ctx, &state).await {
        Ok(more) => actions.extend(more),
        Err(e) => {
            tracing::error!(error = %e, event_id = %state.event_id(), "cannot index a state event")
        }
    }
    actions
}

/// What a followed upgrade calls for: its messages, and for a `tasks` room, moving its
/// tasks (a failure leaves the move pending: it runs again on the next power change).
async fn settle_upgrade(ctx: &Context, up: upgrade::Upgrade) -> Vec<Action> {
    let mut actions = up.actions;
    if let Some(tasks_move) = up.tasks_move {
        match move_tasks(ctx, &tasks_move).await {
            Ok(more) => actions.extend(more),
            Err(e) => tracing::error!(error = %e, "cannot move tasks to an upgraded tasks room"),
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The short path reads every event as `AnyTimelineEvent` would: the same value, or an
    /// error where it gives one.
    #[test]
    fn events_parse_as_any_timeline_event_reads_them() {
        let base = |ty: &str, content: serde_json::Value| {
            json!({
                "type": ty, "content": content, "event_id": "$e:x", "sender": "@a:x",
                "room_id": "!r:x", "origin_server_ts": 1, "unsigned": { "age": 3 },
            })
        };
        let state = |ty: &str, key: &str, content: serde_json::Value| {
            let mut v = base(ty, content);
            v["state_key"] = json!(key);
            v
        };
        let mut redacted = base("m.room.message", json!({}));
        redacted["unsigned"] = json!({ "redacted_because": {
            "type": "m.room.redaction", "content": {}, "redacts": "$e:x", "event_id": "$r:x",
            "sender": "@a:x", "room_id": "!r:x", "origin_server_ts": 2,
        }});
        let events = [
            base("m.room.message", json!({ "msgtype": "m.text", "body": "hi" })),
            base(
                "m.room.message",
                json!({ "msgtype": "m.text", "body": "in a thread", "m.mentions": { "user_ids": ["@b:x"] },
                        "m.relates_to": { "rel_type": "m.thread", "event_id": "$root:x" } }),
            ),
            base("m.room.message", json!({ "msgtype": "m.text" })),
            base("m.room.message", json!("not an object")),
            redacted,
            state("m.room.member", "@b:x", json!({ "membership": "join", "displayname": "B" })),
            state("m.room.member", "not a user id", json!({ "membership": "join" })),
            state("m.room.member", "@b:x", json!({ "membership": 7 })),
            base("m.room.member", json!({ "membership": "join" })),
            state("m.room.message", "", json!({ "msgtype": "m.text", "body": "as state" })),
            state("m.room.topic", "", json!({ "topic": "t" })),
            base("m.room.encrypted", json!({ "algorithm": "m.megolm.v1.aes-sha2" })),
            base(
                "m.reaction",
                json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": "$e:x", "key": "👍" } }),
            ),
            json!({ "content": {} }),
        ];
        for ev in events {
            let bytes = serde_json::to_vec(&ev).expect("json");
            let ours = parse_timeline(&bytes).map(|e| format!("{e:?}"));
            let ruma = serde_json::from_slice::<AnyTimelineEvent>(&bytes).map(|e| format!("{e:?}"));
            match (ours, ruma) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{ev}"),
                (Err(_), Err(_)) => {}
                (a, b) => panic!("{ev}: {a:?} against {b:?}"),
            }
        }
    }
}
