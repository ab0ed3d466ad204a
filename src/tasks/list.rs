//! `!task list`: a board's tasks by column, with whole counts.

use crate::{
    boards::access,
    context::Context,
    domain::op::{BoardRef, OpResult, OpSpec, Permission, Refusal, Request},
};

use super::render::thread_link;

/// `!task list`.
pub(crate) const LIST: OpSpec =
    OpSpec { permission: Permission::BoardMember, doing: "list its tasks" };

/// A board's tasks, column by column.
#[derive(Debug, Clone)]
pub(crate) struct TaskList {
    /// The board's display name.
    pub board_name: String,
    /// The columns shown, in the board's order.
    pub columns: Vec<ColumnTasks>,
}

/// One column.
#[derive(Debug, Clone)]
pub(crate) struct ColumnTasks {
    /// Its name.
    pub name: String,
    /// How many tasks it holds (all of them, also those not read).
    pub count: u64,
    /// The tasks read, by number.
    pub tasks: Vec<TaskLine>,
}

/// One task in a list.
#[derive(Debug, Clone)]
pub(crate) struct TaskLine {
    /// Its number.
    pub number: u64,
    /// Its title.
    pub title: String,
    /// A link to its thread (empty when the board has no tasks room).
    pub link: String,
}

/// The tasks of the board `at` (of `column` only, when given): the counts are whole; at
/// most `limit` tasks are read, in one pass by number, so a board of any size costs the
/// same.
pub(crate) fn list(
    ctx: &Context,
    req: &Request<'_>,
    at: BoardRef<'_>,
    column: Option<&str>,
    limit: usize,
) -> OpResult<TaskList> {
    let board = access::board(ctx, req.actor, at, &LIST)?;
    if let Some(c) = column
        && !board.columns.iter().any(|b| b == c)
    {
        return Err(Refusal::invalid(format!(
            "There is no column {c}; the columns are: {}.",
            board.columns.join(", ")
        )));
    }
    // Links lead to the threads where they are: the old room while a move waits for power.
    let room =
        ctx.store.tasks_room_of(&board.slug)?.map(|(id, r)| r.pending_move_from.unwrap_or(id));
    let mut columns = Vec::new();
    for c in board.columns.iter().filter(|c| column.is_none_or(|x| x == c.as_str())) {
        let count = ctx.store.column_count(&board.slug, c)?;
        columns.push(ColumnTasks { name: c.clone(), count, tasks: Vec::new() });
    }
    let mut read = 0;
    ctx.store.tasks_while(&board.slug, |t| {
        let Some(col) = columns.iter_mut().find(|c| c.name == t.fields.status) else {
            return true;
        };
        if t.fields.deleted {
            return true;
        }
        let link =
            room.as_ref().map(|r| thread_link(ctx, r, &t.fields.root_event_id)).unwrap_or_default();
        col.tasks.push(TaskLine { number: t.fields.number, title: t.fields.title.clone(), link });
        read += 1;
        read < limit
    })?;
    Ok(TaskList { board_name: board.name, columns })
}
