//! Sending a message in a board room as the caller, with mentions resolved as for task
//! comments (`m.mentions` and pills), in a thread when asked.

use ruma::{
    EventId, OwnedEventId, TransactionId,
    api::client::room::get_room_event,
    events::{AnyMessageLikeEvent, AnyTimelineEvent, relation::Thread, room::message::Relation},
};

use super::{intent_in, refused};
use crate::{
    boards::{access, messages},
    context::Context,
    domain::op::{BoardRef, OpResult, OpSpec, Permission, Refusal, Request},
    matrix::Intent,
};

/// Writing in a board's rooms.
pub(crate) const SEND: OpSpec =
    OpSpec { permission: Permission::BoardMember, doing: "write in its rooms" };

/// Sends `text` in the room `room` (its name in the board) of the board `at`, as the
/// actor, in the thread of `thread_root` when given (a message of that room, not itself
/// in a thread). `txn_id` makes a retry send it once.
pub(crate) async fn send(
    ctx: &Context,
    req: &Request<'_>,
    at: BoardRef<'_>,
    room: &str,
    text: &str,
    thread_root: Option<&EventId>,
    txn_id: &TransactionId,
) -> OpResult<OwnedEventId> {
    messages::check_text(text, "a message")?;
    let board = access::board(ctx, req.actor, at, &SEND)?;
    let (room_id, _) = access::room(ctx, req.actor, &board, room)?;
    messages::refuse_if_encrypted(ctx, &room_id, room).await?;
    let user = req.actor.user_id();
    let intent = intent_in(ctx, req.actor, &board, &room_id).await?;
    let mut content = messages::compose(ctx, &room_id, user, text)?;
    if let Some(root) = thread_root {
        check_thread_root(&intent, &room_id, root, req, room).await?;
        content.relates_to =
            Some(Relation::Thread(Thread::plain(root.to_owned(), root.to_owned())));
    }
    let event_id = intent
        .send_message(&room_id, txn_id, &content, false)
        .await
        .map_err(|e| refused(e, req.actor, room, "write"))?;
    tracing::info!(board = %board.slug, room = room, user_id = %user, event_id = %event_id, "message sent");
    Ok(event_id)
}

/// Refuses a thread root the actor cannot see in the room, or that is itself a reply in a
/// thread (threads do not nest).
async fn check_thread_root(
    intent: &Intent,
    room_id: &ruma::RoomId,
    root: &EventId,
    req: &Request<'_>,
    room: &str,
) -> OpResult<()> {
    let not_a_root =
        || Refusal::invalid(format!("thread_root {root} is not a message of the room {room}"));
    let found = match intent
        .send(get_room_event::v3::Request::new(room_id.to_owned(), root.to_owned()))
        .await
    {
        Ok(found) => found,
        Err(e) if e.is_not_found() || e.status() == Some(404) => return Err(not_a_root()),
        Err(e) => return Err(refused(e, req.actor, room, "read")),
    };
    match found.event.deserialize() {
        Ok(AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(m))) => {
            let in_thread = m
                .as_original()
                .is_some_and(|o| matches!(o.content.relates_to, Some(Relation::Thread(_))));
            if in_thread {
                return Err(Refusal::invalid(format!(
                    "thread_root {root} is itself in a thread: reply in that thread's root"
                )));
            }
            Ok(())
        }
        _ => Err(not_a_root()),
    }
}
