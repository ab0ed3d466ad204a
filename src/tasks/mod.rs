//! Tasks: the operations ([`create`], [`change`], [`list`], [`columns`], [`comments`]),
//! each taking an actor and checking its rights in [`crate::boards::access`]; the guard of
//! the canonical task state ([`guard`]); moving tasks to an upgraded tasks room
//! ([`moves`]); and how a task looks in the room ([`render`]). The record and the state
//! event are in [`crate::domain::task`].
//!
//! Task numbers are handed out under a per-board lock: creating a task reserves its number
//! (a synced write of cause → number that also moves the board's counter) before it sends
//! the task's root, and the reservation ends in the synced write that records the task. A
//! request interrupted by a crash runs again with its reserved number, whatever ran
//! meanwhile, and the same transaction ids (the root's carries the number); one that fails
//! for good hands its number back. So numbers stay unique and gap-free, and a root says its
//! task's number.

use ruma::{OwnedRoomId, RoomId, api::client::state::send_state_event};

use crate::{
    context::Context,
    domain::{
        op::{OpResult, Refusal},
        task::TaskEventContent,
    },
    matrix::HsError,
};

pub(crate) mod change;
pub(crate) mod columns;
pub(crate) mod comments;
pub(crate) mod create;
pub(crate) mod guard;
pub(crate) mod list;
pub(crate) mod moves;
pub(crate) mod render;

/// The board's tasks room, where tasks can be written now; otherwise the refusal.
fn writable_tasks_room(ctx: &Context, slug: &str) -> OpResult<OwnedRoomId> {
    match ctx.store.tasks_room_of(slug)? {
        None => Err(Refusal::conflict(format!("The board {slug} has no tasks room."))),
        Some((_, record)) if record.pending_move_from.is_some() => Err(Refusal::conflict(format!(
            "The tasks room of {slug} was upgraded, and Boardroom needs power 100 in the \
             new room before tasks can be created or changed: an admin can give it with \
             /op {} 100 there (in Element), or in the room's power levels.",
            ctx.settings.bot_user_id
        ))),
        Some((room, _)) => Ok(room),
    }
}

/// Writes a task's `dev.boardroom.task` state (its number is the state key), as the bot.
async fn send_state(
    ctx: &Context,
    room: &RoomId,
    fields: &TaskEventContent,
) -> Result<(), HsError> {
    let req =
        send_state_event::v3::Request::new(room.to_owned(), &fields.number.to_string(), fields)
            .map_err(|e| HsError::Protocol {
                endpoint: "send_state_event",
                message: e.to_string(),
            })?;
    ctx.client.send(req, None).await?;
    Ok(())
}
