//! Task comments: replies in a task's thread are indexed as its comments (edits and
//! redactions follow), and the comment operation posts one as an API client's virtual
//! user, with mentions resolved so that the mentioned are notified.

use ruma::{
    EventId, OwnedEventId, RoomId, TransactionId, UserId,
    events::{
        relation::Thread,
        room::{
            member::MembershipState,
            message::{Relation, RoomMessageEventContent},
        },
    },
};

use super::writable_tasks_room;
use crate::{
    boards::{access, messages},
    context::Context,
    domain::{
        board::{RoomKind, RoomRecord},
        op::{BoardRef, OpResult, OpSpec, Permission, Refusal, Request},
        task::Comment,
    },
};

/// Commenting on a task.
pub(crate) const COMMENT: OpSpec =
    OpSpec { permission: Permission::BoardMember, doing: "comment on its tasks" };

/// Posts `text` as a comment on task `number` of the board `at`, as the actor: a client's
/// virtual user (it joins the board and its tasks room first), or a Matrix user with their
/// own token (they join the tasks room if they have not). `txn_id` makes a retry post it
/// once.
pub(crate) async fn comment(
    ctx: &Context,
    req: &Request<'_>,
    at: BoardRef<'_>,
    number: u64,
    text: &str,
    txn_id: &TransactionId,
) -> OpResult<OwnedEventId> {
    messages::check_text(text, "a comment")?;
    let board = access::board(ctx, req.actor, at, &COMMENT)?;
    let slug = &board.slug;
    let task = ctx
        .store
        .task(slug, number)?
        .filter(|t| !t.fields.deleted)
        .ok_or_else(|| Refusal::not_found(format!("no task {slug}#{number}")))?;
    let room = writable_tasks_room(ctx, slug)?;
    messages::refuse_if_encrypted(ctx, &room, "tasks").await?;
    let user = req.actor.user_id();
    let intent = ctx.intent_of(req.actor).ok_or_else(|| {
        Refusal::forbidden("Boardroom can comment only as a virtual user or with your own token")
    })?;
    if req.actor.client.is_some() {
        messages::ensure_joined(ctx, &intent, &board.space_id, &room, user).await?;
    } else if ctx.store.membership(&room, user)? != Some(MembershipState::Join) {
        // A Matrix user on the board (the rights check said so) joins the tasks room,
        // with their own token: the homeserver applies its join rule.
        intent.join(&room).await?;
    }

    let mut content = messages::compose(ctx, &room, user, text)?;
    let root = task.fields.root_event_id.clone();
    content.relates_to = Some(Relation::Thread(Thread::plain(root.clone(), root)));
    // A retry after a connection that broke mid-send looks for the comment first: the
    // homeserver may have stored it and then forgotten the transaction id (a restart).
    let event_id = intent.send_message(&room, txn_id, &content, false).await?;
    tracing::info!(board = %slug, task = number, user_id = %user, event_id = %event_id, "comment added");
    Ok(event_id)
}

/// A message in a board room (recorded as `room`): a reply in a task's thread, in that
/// task's board's tasks room and not from the bot, is a comment, indexed; an author's edit
/// of a comment, sent there too, changes its text. Whether it was either (a comment goes
/// to the board's stream as a comment, not as a message).
pub(crate) fn index_message(
    ctx: &Context,
    room: &RoomRecord,
    sender: &UserId,
    event_id: &EventId,
    ts: u64,
    content: &RoomMessageEventContent,
) -> crate::Result<bool> {
    if sender == ctx.settings.bot_user_id || room.kind != RoomKind::Tasks {
        return Ok(false);
    }
    match &content.relates_to {
        Some(Relation::Thread(thread)) => {
            let Some(task) = ctx.store.task_of_thread(room, &thread.event_id)? else {
                return Ok(false);
            };
            let comment = Comment {
                event_id: event_id.to_owned(),
                author: sender.to_owned(),
                body: content.body().to_owned(),
                ts,
            };
            ctx.store.put_comment(&task.board, task.fields.number, &comment)?;
            Ok(true)
        }
        Some(Relation::Replacement(r)) => {
            let Some(mut comment) = ctx.store.comment(&r.event_id)?.filter(|c| c.author == sender)
            else {
                return Ok(false);
            };
            if ctx.store.task_of_comment(&r.event_id)?.is_none_or(|t| t.board != room.board) {
                return Ok(false);
            }
            comment.body = r.new_content.msgtype.body().to_owned();
            ctx.store.update_comment(&comment)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// A redaction in `room`: a redacted comment leaves the index, when `room` is its task's
/// board's tasks room (where the comment is).
pub(crate) fn index_redaction(
    ctx: &Context,
    room: &RoomId,
    redacts: &EventId,
) -> crate::Result<()> {
    let Some(task) = ctx.store.task_of_comment(redacts)? else { return Ok(()) };
    let in_its_room =
        ctx.store.room(room)?.is_some_and(|r| r.kind == RoomKind::Tasks && r.board == task.board);
    if in_its_room && ctx.store.remove_comment(redacts)? {
        tracing::debug!(event_id = %redacts, "comment redacted");
    }
    Ok(())
}

/// The thread a message is in, if any.
pub(crate) fn thread_root(content: &RoomMessageEventContent) -> Option<&EventId> {
    match &content.relates_to {
        Some(Relation::Thread(t)) => Some(&t.event_id),
        _ => None,
    }
}
