//! Mentions, comments on watched tasks and assignments become inbox entries; redactions
//! take them away; read receipts mark them read.

use std::collections::BTreeSet;

use ruma::{
    EventId, OwnedEventId, OwnedUserId, RoomId, UserId,
    api::client::room::get_room_event,
    events::{
        AnyMessageLikeEvent, AnyTimelineEvent, MessageLikeEvent,
        receipt::{ReceiptEvent, ReceiptThread, ReceiptType},
        room::{
            member::MembershipState,
            message::{MessageType, Relation},
        },
    },
};

use crate::{
    context::Context,
    domain::{
        board::RoomRecord,
        inbox::{Kind, Notification, ReceiptScope, excerpt},
        mention::{self, Audience},
    },
    store::{Store, inbound::seq_of_event},
};

/// The people who can see a room, as the board index holds them: looked up one at a time
/// (a membership, a name), never all read.
pub struct RoomAudience<'a> {
    store: &'a Store,
    room: &'a RoomId,
}

impl<'a> RoomAudience<'a> {
    /// The joined members of `room`.
    pub fn new(store: &'a Store, room: &'a RoomId) -> Self {
        Self { store, room }
    }
}

impl Audience for RoomAudience<'_> {
    fn can_see(&self, user: &UserId) -> crate::Result<bool> {
        Ok(self.store.membership(self.room, user)? == Some(MembershipState::Join))
    }

    fn name_at(&self, text: &str) -> crate::Result<Option<(usize, OwnedUserId)>> {
        self.store.name_at(self.room, text)
    }
}

fn formatted(msgtype: &MessageType) -> Option<&str> {
    match msgtype {
        MessageType::Text(t) => t.formatted.as_ref().map(|f| f.body.as_str()),
        MessageType::Notice(t) => t.formatted.as_ref().map(|f| f.body.as_str()),
        MessageType::Emote(t) => t.formatted.as_ref().map(|f| f.body.as_str()),
        _ => None,
    }
}

/// Who `msgtype` (with `explicit` `m.mentions`) mentions, among those who can see `room`.
/// The index is asked only when the message can mention anyone at all.
pub(crate) fn mentioned(
    ctx: &Context,
    room: &RoomId,
    explicit: &[OwnedUserId],
    msgtype: &MessageType,
) -> crate::Result<BTreeSet<OwnedUserId>> {
    let (html, body) = (formatted(msgtype), msgtype.body());
    if !mention::may_mention(explicit, html, body) {
        return Ok(BTreeSet::new());
    }
    mention::resolve(explicit, html, body, &RoomAudience::new(&ctx.store, room))
}

/// A message (not a command) in a board room: the inbox entries it makes, for whom it
/// mentions and for the watchers of the task whose thread it is in (the caller adds them,
/// with the message's own log entry: [`crate::store::Store::log_once_and_notify`]). An edit
/// notifies only the newly mentioned.
pub(crate) async fn for_message(
    ctx: &Context,
    seq: u64,
    room_rec: &RoomRecord,
    ev: &crate::domain::message::RoomMessage,
) -> crate::Result<Vec<Notification>> {
    let (room, event_id, sender, content) = (&*ev.room_id, &*ev.event_id, &*ev.sender, &ev.content);
    let ts = u64::from(ev.origin_server_ts.0);
    if sender == ctx.settings.bot_user_id {
        return Ok(Vec::new());
    }
    let mut entries = Vec::new();
    let entry = |user: OwnedUserId,
                 kind: Kind,
                 event: OwnedEventId,
                 thread: Option<OwnedEventId>,
                 body: &str| Notification {
        id: 0,
        user_id: user,
        kind,
        board: room_rec.board.clone(),
        room_id: room.to_owned(),
        thread_root: thread,
        event_id: event,
        sender: sender.to_owned(),
        excerpt: excerpt(body),
        ts,
        read: false,
        seq,
    };

    if let Some(Relation::Replacement(r)) = &content.relates_to {
        let explicit: Vec<OwnedUserId> = r
            .new_content
            .mentions
            .as_ref()
            .map(|m| m.user_ids.iter().cloned().collect())
            .unwrap_or_default();
        let now = mentioned(ctx, room, &explicit, &r.new_content.msgtype)?;
        let before = ctx.store.notified_by(&r.event_id)?;
        let added: Vec<OwnedUserId> =
            now.into_iter().filter(|u| u != sender && !before.contains(u)).collect();
        if added.is_empty() {
            return Ok(Vec::new());
        }
        // The edit does not say which thread the edited event is in. A comment's thread is
        // its task's, when the task's root is in this room (it is not for a comment from
        // before the tasks room was upgraded); otherwise ask the homeserver, so that a read
        // receipt in that thread covers the entry.
        let thread = match ctx.store.task_of_comment(&r.event_id)? {
            Some(task)
                if ctx.store.tasks_room_of(&room_rec.board)?.is_some_and(|(id, _)| id == room) =>
            {
                Some(task.fields.root_event_id)
            }
            _ => thread_of(ctx, room, &r.event_id).await,
        };
        for u in added {
            entries.push(entry(
                u,
                Kind::Mention,
                r.event_id.clone(),
                thread.clone(),
                r.new_content.msgtype.body(),
            ));
        }
        return Ok(entries);
    }

    let thread = match &content.relates_to {
        Some(Relation::Thread(t)) => Some(t.event_id.clone()),
        _ => None,
    };
    let explicit: Vec<OwnedUserId> =
        content.mentions.as_ref().map(|m| m.user_ids.iter().cloned().collect()).unwrap_or_default();
    let mentioned = mentioned(ctx, room, &explicit, &content.msgtype)?;
    for u in mentioned.iter().filter(|u| *u != sender) {
        entries.push(entry(
            u.clone(),
            Kind::Mention,
            event_id.to_owned(),
            thread.clone(),
            content.body(),
        ));
    }
    if let Some(root) = &thread
        && let Some(task) = ctx.store.task_of_thread(room_rec, root)?
    {
        let audience = RoomAudience::new(&ctx.store, room);
        for w in ctx.store.watchers(&task.board, task.fields.number)? {
            if w != sender && !mentioned.contains(&w) && audience.can_see(&w)? {
                entries.push(entry(
                    w,
                    Kind::Comment,
                    event_id.to_owned(),
                    thread.clone(),
                    content.body(),
                ));
            }
        }
    }
    Ok(entries)
}

/// New assignees hear of it in their inbox (the feed entry also pushes to their devices).
pub(crate) fn on_assignment(
    ctx: &Context,
    req: &crate::domain::op::Request<'_>,
    board: &str,
    room: &RoomId,
    root: &EventId,
    assignees: &[OwnedUserId],
    text: &str,
) -> crate::Result<()> {
    let ts = crate::domain::now_ms();
    let entries = assignees
        .iter()
        .filter(|u| *u != req.actor.user_id())
        .map(|u| Notification {
            id: 0,
            user_id: u.clone(),
            kind: Kind::Assignment,
            board: board.to_owned(),
            room_id: room.to_owned(),
            thread_root: Some(root.to_owned()),
            event_id: req.cause.to_owned(),
            sender: req.actor.user_id.clone(),
            excerpt: excerpt(text),
            ts,
            read: false,
            seq: req.seq,
        })
        .collect();
    ctx.store.add_notifications(entries)?;
    Ok(())
}

/// The thread `event_id` is in, read from the homeserver; `None` when it is in none or
/// cannot be read (then a receipt for the main timeline or an unthreaded one covers it).
async fn thread_of(ctx: &Context, room: &RoomId, event_id: &EventId) -> Option<OwnedEventId> {
    let req = get_room_event::v3::Request::new(room.to_owned(), event_id.to_owned());
    let client = ctx.client.clone().with_retry(crate::matrix::RetryPolicy::SHORT);
    match client.send(req, None).await {
        Ok(resp) => match resp.event.deserialize().ok()? {
            AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(
                MessageLikeEvent::Original(ev),
            )) => match ev.content.relates_to {
                Some(Relation::Thread(t)) => Some(t.event_id),
                _ => None,
            },
            _ => None,
        },
        Err(e) => {
            tracing::warn!(error = %e, event_id = %event_id, "cannot read an edited event's thread");
            None
        }
    }
}

/// Read receipts (public or private) mark entries read in that room or thread.
pub(crate) fn on_receipt(ctx: &Context, receipt: &ReceiptEvent) -> crate::Result<()> {
    for (event_id, receipts) in &receipt.content.0 {
        let seq = seq_of_event(&ctx.store, event_id.as_str())?;
        for (ty, users) in receipts {
            if !matches!(ty, ReceiptType::Read | ReceiptType::ReadPrivate) {
                continue;
            }
            for (user, r) in users {
                let scope = match &r.thread {
                    ReceiptThread::Main => ReceiptScope::Main,
                    ReceiptThread::Thread(t) => ReceiptScope::Thread(t.clone()),
                    _ => ReceiptScope::Room,
                };
                let ts = r.ts.map_or(u64::MAX, |t| u64::from(t.0));
                let marked = ctx.store.mark_read_up_to(user, &receipt.room_id, &scope, seq, ts)?;
                if marked > 0 {
                    tracing::debug!(user = %user, marked, "read receipt marked notifications read");
                }
            }
        }
    }
    Ok(())
}
