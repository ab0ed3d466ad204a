//! Task comments: replies in a task's thread are indexed as its comments (edits and
//! redactions follow), and the comment operation posts one as an API client's virtual
//! user, with mentions resolved so that the mentioned are notified.

use ruma::{
    EventId, OwnedEventId, RoomId, TransactionId, UserId,
    events::{
        Mentions,
        relation::Thread,
        room::{
            member::MembershipState,
            message::{Relation, RoomMessageEventContent},
        },
    },
};

use super::writable_tasks_room;
use crate::{
    boards::access,
    context::Context,
    domain::{
        mention,
        op::{Actor, BoardRef, OpResult, OpSpec, Permission, Refusal, Request},
        task::Comment,
    },
    matrix::Intent,
    notifications::notify::RoomAudience,
};

/// Commenting on a task.
pub(crate) const COMMENT: OpSpec =
    OpSpec { permission: Permission::BoardMember, doing: "comment on its tasks" };

/// The longest comment text, in bytes (UTF-8): the message carries the text twice (body
/// and formatted_body, with pills) and must stay under the 65,536 bytes of a Matrix event.
pub(crate) const MAX_COMMENT_BYTES: usize = 16_000;

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
    if text.trim().is_empty() {
        return Err(Refusal::invalid("body must not be empty"));
    }
    if text.len() > MAX_COMMENT_BYTES {
        return Err(Refusal::invalid(format!(
            "body has {} bytes; a comment has at most {MAX_COMMENT_BYTES}",
            text.len()
        )));
    }
    let board = access::board(ctx, req.actor, at, &COMMENT)?;
    let slug = &board.slug;
    let task = ctx
        .store
        .task(slug, number)?
        .filter(|t| !t.fields.deleted)
        .ok_or_else(|| Refusal::not_found(format!("no task {slug}#{number}")))?;
    let room = writable_tasks_room(ctx, slug)?;
    let user = req.actor.user_id();
    let intent = ctx.intent_of(req.actor).ok_or_else(|| {
        Refusal::forbidden("Boardroom can comment only as a virtual user or with your own token")
    })?;
    ensure_joined(ctx, req.actor, &intent, &board.space_id, &room).await?;

    let mut mentioned = mention::resolve(&[], None, text, &RoomAudience::new(&ctx.store, &room))?;
    mentioned.remove(user);
    // Pills name people by their display names too: read those of the mentioned only.
    let mut named = Vec::with_capacity(mentioned.len());
    for u in &mentioned {
        let display_name = ctx.store.member(&room, u)?.and_then(|(_, name)| name);
        named.push(mention::Candidate { user_id: u.clone(), display_name });
    }
    let html = mention::with_pills(text, &mentioned, &named);
    let mut content = RoomMessageEventContent::text_html(text, html);
    content.mentions = Some(Mentions::with_user_ids(mentioned));
    let root = task.fields.root_event_id.clone();
    content.relates_to = Some(Relation::Thread(Thread::plain(root.clone(), root)));
    // A retry after a connection that broke mid-send looks for the comment first: the
    // homeserver may have stored it and then forgotten the transaction id (a restart).
    let event_id = intent.send_message(&room, txn_id, &content, false).await?;
    tracing::info!(board = %slug, task = number, user_id = %user, event_id = %event_id, "comment added");
    Ok(event_id)
}

/// The actor joins `room` of the board whose space is `space`: a virtual user joins the
/// space first (invited by the bot); a Matrix user is a member of the space already (the
/// rights check said so) and joins the room with their own token.
async fn ensure_joined(
    ctx: &Context,
    actor: &Actor,
    intent: &Intent,
    space: &RoomId,
    room: &RoomId,
) -> OpResult<()> {
    let user = actor.user_id();
    if actor.client.is_some() && ctx.store.membership(space, user)? != Some(MembershipState::Join) {
        if ctx.store.membership(space, user)? != Some(MembershipState::Invite)
            && let Err(e) = Intent::bot(ctx.client.clone()).invite(space, user).await
        {
            // Already invited or joined: the join below tells.
            tracing::debug!(error = %e, "inviting a virtual user");
        }
        intent.join(space).await?;
    }
    if ctx.store.membership(room, user)? != Some(MembershipState::Join) {
        intent.join(room).await?;
    }
    Ok(())
}

/// A message in a tasks room: a reply in a task's thread (not from the bot) is a comment;
/// an edit of a comment changes its text.
pub(crate) fn index_message(
    ctx: &Context,
    sender: &UserId,
    event_id: &EventId,
    ts: u64,
    content: &RoomMessageEventContent,
) -> crate::Result<()> {
    if sender == ctx.settings.bot_user_id {
        return Ok(());
    }
    match &content.relates_to {
        Some(Relation::Thread(thread)) => {
            let Some(task) = ctx.store.task_by_root(&thread.event_id)? else { return Ok(()) };
            let comment = Comment {
                event_id: event_id.to_owned(),
                author: sender.to_owned(),
                body: content.body().to_owned(),
                ts,
            };
            ctx.store.put_comment(&task.board, task.fields.number, &comment)?;
        }
        Some(Relation::Replacement(r)) => {
            if let Some(mut comment) = ctx.store.comment(&r.event_id)?
                && comment.author == sender
            {
                comment.body = r.new_content.msgtype.body().to_owned();
                ctx.store.update_comment(&comment)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A redaction: a redacted comment leaves the index.
pub(crate) fn index_redaction(ctx: &Context, redacts: &EventId) -> crate::Result<()> {
    if ctx.store.remove_comment(redacts)? {
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
