//! The canonical task state: every `dev.boardroom.task` state Boardroom did not write is
//! put back (or emptied, under a key that names no task).

use ruma::{
    EventId, RoomId, UserId, api::client::state::send_state_event, events::StaticEventContent,
};

use super::{render::feed_entry, send_state};
use crate::{
    context::Context,
    domain::{Action, board::RoomKind, task::TaskEventContent},
    matrix::HsError,
};

/// A `dev.boardroom.task` change not sent by the bot in a board's tasks room (`fields`
/// reads its content, `None` when it is not a task; read only once the sender and the room
/// are checked, so the bot's own echoes and other rooms' events are never parsed): every task state Boardroom did not write is put
/// back. Under the key of a task (canonical form), the indexed fields are written again and
/// the thread says so (silently when the content was the same); under any other key (no
/// such task, `01`, not a number), the state is emptied (`{}`). The canonical fields change
/// through commands only.
pub(crate) async fn guard_task_state(
    ctx: &Context,
    room: &RoomId,
    sender: &UserId,
    event_id: &EventId,
    state_key: &str,
    fields: impl FnOnce() -> Option<TaskEventContent>,
) -> crate::Result<Vec<Action>> {
    if sender == ctx.settings.bot_user_id {
        return Ok(Vec::new());
    }
    let Some(rec) = ctx.store.room(room)? else { return Ok(Vec::new()) };
    if rec.kind != RoomKind::Tasks {
        return Ok(Vec::new());
    }
    // The state key names the task, whatever the content claims; only its canonical form
    // (`1`, never `01`) is one Boardroom writes.
    let number = state_key.parse::<u64>().ok().filter(|n| n.to_string() == state_key);
    // Under the board's lock, so that a command changing the task meanwhile is not undone.
    let lock = ctx.task_locks.get(&rec.board);
    let _guard = lock.lock().await;
    let task = match number {
        Some(n) => ctx.store.task(&rec.board, n)?,
        None => None,
    };
    let Some(task) = task else {
        // A ghost: a key naming no task (or not in canonical form), where Boardroom wrote
        // nothing. Emptied, so that no client takes it for a task.
        tracing::warn!(board = %rec.board, state_key, sender = %sender, "emptying task state that names no task");
        empty_state(ctx, room, state_key).await?;
        return Ok(Vec::new());
    };
    let number = task.fields.number;
    if fields().as_ref() == Some(&task.fields) {
        // The same fields, but not written by Boardroom: written again as its own, so
        // that the room's current task state is always the bot's (reindex reads only that).
        send_state(ctx, room, &task.fields).await?;
        return Ok(Vec::new());
    }
    tracing::warn!(board = %rec.board, number, sender = %sender, "reverting a direct change of a task's state");
    send_state(ctx, room, &task.fields).await?;
    drop(_guard);
    let note = format!(
        "{sender} changed the state of {}#{number} directly; it was put back. Change tasks with !task commands.",
        rec.board
    );
    Ok(vec![feed_entry(room, &task.fields.root_event_id, None, note, &[], event_id, 0)])
}

/// Sets `dev.boardroom.task` under `state_key` in `room` to empty content.
async fn empty_state(ctx: &Context, room: &RoomId, state_key: &str) -> Result<(), HsError> {
    let req = send_state_event::v3::Request::new_raw(
        room.to_owned(),
        TaskEventContent::TYPE.into(),
        state_key.to_owned(),
        ruma::serde::Raw::new(&serde_json::Map::new())
            .map_err(|e| HsError::Protocol {
                endpoint: "send_state_event",
                message: e.to_string(),
            })?
            .cast_unchecked(),
    );
    ctx.client.send(req, None).await?;
    Ok(())
}
