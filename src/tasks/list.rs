//! `!task list`: a board's tasks by column, with whole counts; and the queries of the HTTP
//! API: tasks by filter, one task, a task's comments.

use ruma::OwnedUserId;

use crate::{
    boards::access,
    context::Context,
    domain::{
        op::{BoardRef, OpResult, OpSpec, Permission, Refusal, Request},
        task::{Comment, TaskRecord, validate_due},
    },
    store::tasks::Facet,
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
/// most `limit` tasks are read, by number from the column index, so a board of any size
/// costs the same, and so does a column of few tasks on a large board.
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
    // The first `limit` tasks of the columns shown, by number, from the column index:
    // only those are read, however many tasks the board has in other columns.
    let shown: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    for t in ctx.store.tasks_in_columns(&board.slug, &shown, limit)? {
        let Some(col) = columns.iter_mut().find(|c| c.name == t.fields.status) else {
            continue;
        };
        let link =
            room.as_ref().map(|r| thread_link(ctx, r, &t.fields.root_event_id)).unwrap_or_default();
        col.tasks.push(TaskLine { number: t.fields.number, title: t.fields.title.clone(), link });
    }
    Ok(TaskList { board_name: board.name, columns })
}

/// Which tasks a query returns: each `Some` must hold.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskFilter {
    /// In this column.
    pub status: Option<String>,
    /// Assigned to this user.
    pub assignee: Option<OwnedUserId>,
    /// With this label.
    pub label: Option<String>,
    /// Due before this day (`YYYY-MM-DD`); tasks without a due date are left out.
    pub due_before: Option<String>,
}

/// Records read at most for one page of a query: a page may come short, with a cursor,
/// when the filter skips many.
pub(crate) const QUERY_SCAN_BUDGET: usize = 1000;

/// A page of a query.
#[derive(Debug, Clone)]
pub(crate) struct TaskPage {
    /// The tasks, by number, each with its comment count.
    pub tasks: Vec<(TaskRecord, u64)>,
    /// Resume after this number; `None` on the last page.
    pub next: Option<u64>,
}

/// Tasks of the board `at` that `filter` accepts, by number, after number `after`: at
/// most `limit` (1 to 100). Deleted tasks are left out.
pub(crate) fn query(
    ctx: &Context,
    req: &Request<'_>,
    at: BoardRef<'_>,
    filter: &TaskFilter,
    after: u64,
    limit: usize,
) -> OpResult<TaskPage> {
    let board = access::board(ctx, req.actor, at, &LIST)?;
    if !(1..=100).contains(&limit) {
        return Err(Refusal::invalid("limit is 1 to 100"));
    }
    if let Some(c) = &filter.status
        && !board.columns.contains(c)
    {
        return Err(Refusal::invalid(format!(
            "There is no column {c}; the columns are: {}.",
            board.columns.join(", ")
        )));
    }
    let due_before = match &filter.due_before {
        Some(d) => Some(validate_due(d).map_err(|why| Refusal::invalid(format!("{why}.")))?),
        None => None,
    };
    let keep = |t: &TaskRecord| {
        let f = &t.fields;
        !f.deleted
            && filter.status.as_ref().is_none_or(|s| *s == f.status)
            && filter.assignee.as_ref().is_none_or(|u| f.assignees.contains(u))
            && filter.label.as_ref().is_none_or(|l| f.labels.contains(l))
            && due_before.as_ref().is_none_or(|d| f.due.as_ref().is_some_and(|due| due < d))
    };
    // The most selective index at hand: a column, an assignee or a label; else every task.
    let facet = if let Some(s) = &filter.status {
        Some(Facet::Status(s.clone()))
    } else if let Some(a) = &filter.assignee {
        Some(Facet::Assignee(a.to_string()))
    } else {
        filter.label.clone().map(Facet::Label)
    };
    let (tasks, stopped) = match &facet {
        Some(f) => {
            ctx.store.tasks_page_by(&board.slug, f, after, limit + 1, QUERY_SCAN_BUDGET, keep)?
        }
        None => ctx.store.tasks_page(&board.slug, after, limit + 1, QUERY_SCAN_BUDGET, keep)?,
    };
    let (tasks, next) = if tasks.len() > limit {
        let tasks: Vec<TaskRecord> = tasks.into_iter().take(limit).collect();
        let next = tasks.last().map(|t| t.fields.number);
        (tasks, next)
    } else {
        (tasks, stopped)
    };
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        let comments = ctx.store.comment_count(&board.slug, t.fields.number)?;
        out.push((t, comments));
    }
    Ok(TaskPage { tasks: out, next })
}

/// One task of the board `at`, with its comment count; a deleted task is none.
pub(crate) fn get(
    ctx: &Context,
    req: &Request<'_>,
    at: BoardRef<'_>,
    number: u64,
) -> OpResult<(TaskRecord, u64)> {
    let board = access::board(ctx, req.actor, at, &LIST)?;
    let task =
        ctx.store.task(&board.slug, number)?.filter(|t| !t.fields.deleted).ok_or_else(|| {
            Refusal::not_found(format!("There is no task #{number} on this board."))
        })?;
    let comments = ctx.store.comment_count(&board.slug, number)?;
    Ok((task, comments))
}

/// A task's comments, oldest first: `limit` (1 to 100) after the first `skip`, and how
/// many to skip for the next page (`None` on the last).
pub(crate) fn comments(
    ctx: &Context,
    req: &Request<'_>,
    at: BoardRef<'_>,
    number: u64,
    skip: usize,
    limit: usize,
) -> OpResult<(Vec<Comment>, Option<usize>)> {
    let (task, _) = get(ctx, req, at, number)?;
    if !(1..=100).contains(&limit) {
        return Err(Refusal::invalid("limit is 1 to 100"));
    }
    let mut page = ctx.store.comments_page(&task.board, number, skip, limit + 1)?;
    let next = skip.checked_add(limit).filter(|_| page.len() > limit);
    page.truncate(limit);
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    use ruma::{RoomId, events::room::member::MembershipState, owned_event_id, owned_user_id};

    use super::*;
    use crate::{
        Config,
        app::App,
        domain::{board::BoardRecord, op::Actor},
    };

    /// Found with the `cursors` fuzz target (`GET /boards/launch/tasks/1/comments` with
    /// `from=18446744073709551615`): `skip + limit` overflowed.
    #[tokio::test]
    async fn a_skip_past_every_comment_is_an_empty_last_page() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config::offline(&dir.path().join("db"), "").expect("config");
        let app = App::new(config.validate().expect("valid")).expect("app");
        let space = RoomId::parse("!space:localhost").expect("room id");
        let alice = owned_user_id!("@alice:localhost");
        let store = &app.ctx.store;
        store.put_board(&BoardRecord::example("launch", &space, &alice)).expect("board");
        store
            .set_membership(&space, &alice, &MembershipState::Join, None, Some("launch"))
            .expect("member");
        store.put_task(&TaskRecord::example("launch", 1, owned_event_id!("$root"))).expect("task");
        let comment = Comment {
            event_id: owned_event_id!("$comment"),
            author: alice.clone(),
            body: "first".into(),
            ts: 1,
        };
        store.put_comment("launch", 1, &comment).expect("comment");
        let actor = Actor::user(alice);
        let at = BoardRef::Slug("launch");
        let skip = usize::try_from(18_446_744_073_709_551_615u64).expect("64-bit");
        let (page, next) =
            comments(&app.ctx, &Request::read(&actor), at, 1, skip, 20).expect("a page");
        assert!(page.is_empty());
        assert_eq!(next, None);
    }
}
