//! `!task assign|unassign|status|rename|label|due|delete`, and an update of several fields
//! at once (the HTTP API, webhooks): changes to one task, written to its state event and
//! record under the board's lock, then shown in its root (edited once) and its thread.

use ruma::{EventId, OwnedUserId};

use super::{
    render::{feed_entry, root_edit, thread_link},
    send_state, writable_tasks_room,
};
use crate::{
    boards::access,
    context::Context,
    domain::{
        board::{ADMIN_POWER, BoardRecord},
        op::{BoardRef, Done, OpResult, OpSpec, Permission, Refusal, Request},
        task::{
            AppliedCommand, Change, MAX_LABELS, TaskEventContent, TaskRecord, apply, validate_due,
            validate_label, validate_title,
        },
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
    /// The task now.
    pub fields: TaskEventContent,
    /// The thread's feed entry: who changed what.
    pub feed_text: String,
    /// The feed entry answers the request (it was written in the task's thread).
    pub in_thread: bool,
    /// A link to the task's thread.
    pub link: String,
}

/// Several fields at once: each `Some` is the field's new value (`assignees` and `labels`
/// are the full sets; `due: Some(None)` clears it).
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskUpdate {
    /// The new title.
    pub title: Option<String>,
    /// The new column.
    pub status: Option<String>,
    /// Every assignee.
    pub assignees: Option<Vec<OwnedUserId>>,
    /// Every label.
    pub labels: Option<Vec<String>>,
    /// The new due date, or `Some(None)` to clear it.
    pub due: Option<Option<String>>,
}

/// Applies `change` to the task `which`. Deleting needs the task's creator or a board
/// admin. A change that changes nothing is refused. The same request run again answers as
/// the first time.
pub(crate) async fn change(
    ctx: &Context,
    req: &Request<'_>,
    which: TaskRef<'_>,
    change: &Change,
) -> OpResult<Done<TaskChanged>> {
    let (task, board) = find(ctx, req, which)?;
    apply_changes(ctx, req, task, board, std::slice::from_ref(change), true).await
}

/// Applies `update` to the task `which`, as one change: one state event, one edit of the
/// root, one feed entry listing what changed. Fields already as asked change nothing; an
/// update that changes nothing at all answers the task as it is.
pub(crate) async fn update(
    ctx: &Context,
    req: &Request<'_>,
    which: TaskRef<'_>,
    update: &TaskUpdate,
) -> OpResult<Done<TaskChanged>> {
    let (task, board) = find(ctx, req, which)?;
    let now = &task.fields;
    let mut changes = Vec::new();
    if let Some(title) = &update.title {
        changes.push(Change::Rename(title.clone()));
    }
    if let Some(status) = &update.status {
        changes.push(Change::Status(status.clone()));
    }
    if let Some(assignees) = &update.assignees {
        let added: Vec<OwnedUserId> =
            assignees.iter().filter(|u| !now.assignees.contains(u)).cloned().collect();
        if !added.is_empty() {
            changes.push(Change::Assign(added));
        }
        for gone in now.assignees.iter().filter(|u| !assignees.contains(u)) {
            changes.push(Change::Unassign(gone.clone()));
        }
    }
    if let Some(labels) = &update.labels {
        let mut ops: Vec<(bool, String)> =
            labels.iter().filter(|l| !now.labels.contains(l)).map(|l| (true, l.clone())).collect();
        ops.extend(now.labels.iter().filter(|l| !labels.contains(l)).map(|l| (false, l.clone())));
        if !ops.is_empty() {
            changes.push(Change::Label(ops));
        }
    }
    if let Some(due) = &update.due {
        changes.push(Change::Due(due.clone()));
    }
    apply_changes(ctx, req, task, board, &changes, false).await
}

/// The task `which` names and its board, when the actor may change its tasks.
fn find(
    ctx: &Context,
    req: &Request<'_>,
    which: TaskRef<'_>,
) -> OpResult<(TaskRecord, BoardRecord)> {
    match which {
        TaskRef::Number { at, number } => {
            let board = access::board(ctx, req.actor, at, &CHANGE)?;
            let task = ctx.store.task(&board.slug, number)?.ok_or_else(|| {
                Refusal::not_found(format!("There is no task #{number} on this board."))
            })?;
            Ok((task, board))
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
            Ok((task, board))
        }
    }
}

/// Whether `change` may be made to `task` on `board` by `sender`: the rules of each kind
/// of change, checked before anything is written.
fn check_change(
    ctx: &Context,
    board: &BoardRecord,
    task: &TaskRecord,
    sender: &ruma::UserId,
    change: &Change,
) -> OpResult<()> {
    match change {
        Change::Delete
            if task.fields.created_by != sender
                && !board.power_of(sender).at_least(ADMIN_POWER) =>
        {
            Err(Refusal::forbidden(
                "Only the task's creator or a board admin (power 50) can delete it.",
            ))
        }
        Change::Status(c) if !board.columns.contains(c) => Err(Refusal::invalid(format!(
            "There is no column {c}; the columns are: {}.",
            board.columns.join(", ")
        ))),
        Change::Assign(users) => {
            for u in users {
                if !ctx.store.is_board_member(&board.slug, u)? {
                    return Err(Refusal::invalid(format!(
                        "{u} is not a member of the board {}.",
                        board.slug
                    )));
                }
            }
            Ok(())
        }
        Change::Rename(title) => {
            validate_title(title).map_err(|why| Refusal::invalid(format!("{why}.")))
        }
        Change::Label(ops) => {
            for (_, label) in ops {
                validate_label(label).map_err(|why| Refusal::invalid(format!("{why}.")))?;
            }
            Ok(())
        }
        Change::Due(Some(due)) => {
            validate_due(due).map(drop).map_err(|why| Refusal::invalid(format!("{why}.")))
        }
        _ => Ok(()),
    }
}

/// Applies `changes` in order under the board's lock. `strict`: a change that changes
/// nothing refuses the whole request (a chat command); otherwise it is skipped.
async fn apply_changes(
    ctx: &Context,
    req: &Request<'_>,
    task: TaskRecord,
    board: BoardRecord,
    changes: &[Change],
    strict: bool,
) -> OpResult<Done<TaskChanged>> {
    let sender = req.actor.user_id();
    for change in changes {
        check_change(ctx, &board, &task, sender, change)?;
    }
    if task.fields.deleted && changes.iter().any(|c| *c != Change::Delete) {
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
    if let Some(now) = ctx.store.board(&board.slug)? {
        for change in changes {
            if let Change::Status(c) = change
                && !now.columns.contains(c)
            {
                return Err(Refusal::invalid(format!(
                    "There is no column {c}; the columns are: {}.",
                    now.columns.join(", ")
                )));
            }
        }
    }
    let (said, notify) = match record.last_command.as_ref().filter(|c| c.event_id == req.cause) {
        // The same request run again after a crash: answer as the first time.
        Some(done) => (done.said.clone(), done.notify.clone()),
        None => {
            let before = record.fields.assignees.clone();
            let labels_before = record.fields.labels.len();
            let mut said = Vec::new();
            for change in changes {
                match apply(&mut record.fields, change) {
                    Ok(s) => said.push(s),
                    Err(why) if strict => {
                        return Err(Refusal::conflict(format!("Nothing changed: {why}.")));
                    }
                    Err(_) => {}
                }
            }
            let labels = record.fields.labels.len();
            if labels > MAX_LABELS && labels > labels_before {
                return Err(Refusal::invalid(format!(
                    "A task has at most {MAX_LABELS} labels; this would give it {labels}."
                )));
            }
            if said.is_empty() {
                // Nothing to change: the task as it is, and nothing sent.
                drop(guard);
                let root = record.fields.root_event_id.clone();
                return Ok(Done::only(TaskChanged {
                    fields: record.fields,
                    feed_text: String::new(),
                    in_thread: false,
                    link: thread_link(ctx, &room, &root),
                }));
            }
            let said = said.join("; ");
            // Only the newly assigned hear of it.
            let notify: Vec<OwnedUserId> = record
                .fields
                .assignees
                .iter()
                .filter(|u| !before.contains(u) && *u != sender)
                .cloned()
                .collect();
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
    // The feed entry goes first: in the task's thread it is the command's answer, which
    // then does not wait for the root edit's round trip to the homeserver (the two share
    // the tasks room's outbox lane). Their transaction ids come from the indexes, not from
    // the order.
    let actions = vec![
        feed_entry(
            &room,
            &root,
            in_thread.then_some(req.cause),
            feed_text.clone(),
            &notify,
            req.cause,
            2,
        ),
        root_edit(&room, slug, &record.fields, req.cause, 1),
    ];
    let link = thread_link(ctx, &room, &root);
    Ok(Done { value: TaskChanged { fields: record.fields, feed_text, in_thread, link }, actions })
}
