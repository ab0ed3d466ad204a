//! `!task assign|unassign|status|rename|label|due|delete`: a change to one task, written to
//! its state event and record under the board's lock, then shown in its root and thread.

use ruma::{EventId, OwnedUserId};

use super::{
    render::{feed_entry, root_edit, thread_link},
    send_state, writable_tasks_room,
};
use crate::{
    boards::access,
    context::Context,
    domain::{
        board::ADMIN_POWER,
        op::{BoardRef, Done, OpResult, OpSpec, Permission, Refusal, Request},
        task::{AppliedCommand, Change, apply},
    },
    notifications::notify,
};

/// Changing a task.
pub(crate) const CHANGE: OpSpec =
    OpSpec { permission: Permission::BoardMember, doing: "change its tasks" };

/// Which task.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TaskRef<'a> {
    /// Task `number` of the board `at`.
    Number {
        /// The board.
        at: BoardRef<'a>,
        /// The task's number.
        number: u64,
    },
    /// The task whose thread this is.
    Thread(&'a EventId),
}

/// The task, changed.
#[derive(Debug, Clone)]
pub(crate) struct TaskChanged {
    /// The thread's feed entry: who changed what.
    pub feed_text: String,
    /// The feed entry answers the request (it was written in the task's thread).
    pub in_thread: bool,
    /// A link to the task's thread.
    pub link: String,
}

/// Applies `change` to the task `which`. Deleting needs the task's creator or a board
/// admin. The same request run again answers as the first time.
pub(crate) async fn change(
    ctx: &Context,
    req: &Request<'_>,
    which: TaskRef<'_>,
    change: &Change,
) -> OpResult<Done<TaskChanged>> {
    let (task, board) = match which {
        TaskRef::Number { at, number } => {
            let board = access::board(ctx, req.actor, at, &CHANGE)?;
            let task = ctx.store.task(&board.slug, number)?.ok_or_else(|| {
                Refusal::not_found(format!("There is no task #{number} on this board."))
            })?;
            (task, board)
        }
        TaskRef::Thread(root) => {
            let task = ctx.store.task_by_root(root)?.ok_or_else(|| {
                Refusal::not_found("There is no task this thread's task on this board.")
            })?;
            let board = ctx
                .store
                .board(&task.board)?
                .ok_or_else(|| Refusal::not_found("The task's board is gone."))?;
            access::check(ctx, req.actor, &board, &CHANGE)?;
            (task, board)
        }
    };
    let sender = req.actor.user_id();
    match change {
        Change::Delete
            if task.fields.created_by != sender
                && !board.power_of(sender).at_least(ADMIN_POWER) =>
        {
            return Err(Refusal::forbidden(
                "Only the task's creator or a board admin (power 50) can delete it.",
            ));
        }
        Change::Status(c) if !board.columns.contains(c) => {
            return Err(Refusal::invalid(format!(
                "There is no column {c}; the columns are: {}.",
                board.columns.join(", ")
            )));
        }
        Change::Assign(users) => {
            for u in users {
                if !ctx.store.is_board_member(&board.slug, u)? {
                    return Err(Refusal::invalid(format!(
                        "{u} is not a member of the board {}.",
                        board.slug
                    )));
                }
            }
        }
        _ => {}
    }
    if task.fields.deleted && *change != Change::Delete {
        return Err(Refusal::conflict(format!(
            "{}#{} is deleted.",
            board.slug, task.fields.number
        )));
    }
    let room = writable_tasks_room(ctx, &board.slug)?;

    let lock = ctx.task_locks.get(&board.slug);
    let guard = lock.lock().await;
    // Read again under the lock: another room may have changed it meanwhile.
    let Some(mut record) = ctx.store.task(&board.slug, task.fields.number)? else {
        return Err(Refusal::not_found("The task is gone."));
    };
    if let Change::Status(c) = change
        && let Some(now) = ctx.store.board(&board.slug)?
        && !now.columns.contains(c)
    {
        return Err(Refusal::invalid(format!(
            "There is no column {c}; the columns are: {}.",
            now.columns.join(", ")
        )));
    }
    let (said, notify) = match record.last_command.as_ref().filter(|c| c.event_id == req.cause) {
        // The same request run again after a crash: answer as the first time.
        Some(done) => (done.said.clone(), done.notify.clone()),
        None => {
            let before = record.fields.assignees.clone();
            let said = apply(&mut record.fields, change)
                .map_err(|why| Refusal::conflict(format!("Nothing changed: {why}.")))?;
            // Only the newly assigned hear of it.
            let notify: Vec<OwnedUserId> = match change {
                Change::Assign(users) => {
                    users.iter().filter(|u| !before.contains(u) && *u != sender).cloned().collect()
                }
                _ => Vec::new(),
            };
            send_state(ctx, &room, &record.fields).await?;
            record.last_command = Some(AppliedCommand {
                event_id: req.cause.to_owned(),
                said: said.clone(),
                notify: notify.clone(),
            });
            ctx.store.put_task(&record)?;
            (said, notify)
        }
    };
    drop(guard);
    let slug = &board.slug;
    let n = record.fields.number;
    let root = record.fields.root_event_id.clone();
    if !notify.is_empty() {
        let text = format!("{sender} assigned you {slug}#{n}: {}", record.fields.title);
        notify::on_assignment(ctx, req, slug, &room, &root, &notify, &text)?;
    }
    let in_thread = req.thread == Some(root.as_ref()) && req.room == Some(room.as_ref());
    let feed_text = format!("{sender} {said} ({slug}#{n})");
    let actions = vec![
        root_edit(&room, slug, &record.fields, req.cause, 1),
        feed_entry(
            &room,
            &root,
            in_thread.then_some(req.cause),
            feed_text.clone(),
            &notify,
            req.cause,
            2,
        ),
    ];
    let link = thread_link(ctx, &room, &root);
    Ok(Done { value: TaskChanged { feed_text, in_thread, link }, actions })
}
