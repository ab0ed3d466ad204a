//! `!task new`: a task is a thread root in the board's `tasks` room with its
//! `dev.boardroom.task` state event; its number is reserved before anything is sent.

use ruma::{
    OwnedEventId, RoomId,
    events::{Mentions, room::message::RoomMessageEventContent},
};

use super::{
    render::{feed_entry, render_root, thread_link},
    send_state, writable_tasks_room,
};
use crate::{
    boards::access,
    context::Context,
    domain::{
        action::derived_txn_id,
        board::BoardRecord,
        now_ms,
        op::{BoardRef, Done, OpResult, OpSpec, Permission, Request},
        task::{TaskEventContent, TaskRecord},
    },
};

/// `!task new`.
pub(crate) const NEW: OpSpec =
    OpSpec { permission: Permission::BoardMember, doing: "create tasks" };

/// The task, created.
#[derive(Debug, Clone)]
pub(crate) struct TaskCreated {
    /// The board's slug.
    pub slug: String,
    /// The task.
    pub fields: TaskEventContent,
    /// A link to its thread.
    pub link: String,
}

/// Creates a task titled `title` on the board `at`, in its first column. The same request
/// run again answers as the first time.
pub(crate) async fn create(
    ctx: &Context,
    req: &Request<'_>,
    at: BoardRef<'_>,
    title: &str,
) -> OpResult<Done<TaskCreated>> {
    let board = access::board(ctx, req.actor, at, &NEW)?;
    let room = writable_tasks_room(ctx, &board.slug)?;
    let lock = ctx.task_locks.get(&board.slug);
    let guard = lock.lock().await;
    // The same request run again after a crash: its task exists; answer as the first time.
    let fields = match ctx.store.task_created_by(req.cause)? {
        Some(done) => done.fields,
        None => create_task(ctx, req, &board, &room, title).await?,
    };
    drop(guard);
    let number = fields.number;
    let link = thread_link(ctx, &room, &fields.root_event_id);
    let feed = feed_entry(
        &room,
        &fields.root_event_id,
        None,
        format!("{} created {}#{number}", req.actor.user_id(), board.slug),
        &[],
        req.cause,
        1,
    );
    Ok(Done { value: TaskCreated { slug: board.slug, fields, link }, actions: vec![feed] })
}

/// Makes the board's next task: its root in the tasks room, its state event, its record.
/// Runs under the board's lock.
async fn create_task(
    ctx: &Context,
    req: &Request<'_>,
    board: &BoardRecord,
    room: &RoomId,
    title: &str,
) -> OpResult<TaskEventContent> {
    let (number, reserved_before) = ctx.store.reserve_task_number(&board.slug, req.cause)?;
    match make_task(ctx, req, board, room, title, number, reserved_before).await {
        Ok(fields) => Ok(fields),
        Err(e) => {
            // Failed for good (a crash leaves the reservation for the command's next run).
            if let Err(se) = ctx.store.release_task_number(&board.slug, req.cause, number) {
                tracing::error!(board = %board.slug, number, error = %se, "cannot hand back a reserved task number");
            }
            Err(e)
        }
    }
}

/// [`create_task`] with its number reserved; `reserved_before` says the command ran before
/// (and may have sent the root already).
async fn make_task(
    ctx: &Context,
    req: &Request<'_>,
    board: &BoardRecord,
    room: &RoomId,
    title: &str,
    number: u64,
    reserved_before: bool,
) -> OpResult<TaskEventContent> {
    let column = board.columns.first().cloned().unwrap_or_else(|| "todo".into());
    let mut fields = TaskEventContent {
        number,
        title: title.to_owned(),
        status: column,
        assignees: Vec::new(),
        labels: Vec::new(),
        due: None,
        root_event_id: OwnedEventId::try_from("$pending")
            .map_err(|e| crate::Error::Internal(e.to_string()))?,
        created_by: req.actor.user_id.clone(),
        created_at: now_ms(),
        deleted: false,
    };
    let (plain, html) = render_root(&board.slug, &fields);
    let mut root = RoomMessageEventContent::notice_html(plain, html);
    root.mentions = Some(Mentions::new());
    // Derived from the command and the number: a run again after a crash sends the same
    // root, which the homeserver deduplicates, or finds it in the room if the homeserver
    // restarted meanwhile and forgot the transaction id.
    let txn_id = derived_txn_id(&format!("{}/task/{number}", req.cause), 100);
    fields.root_event_id =
        ctx.client.send_message(room, &txn_id, &root, None, reserved_before).await?;
    send_state(ctx, room, &fields).await?;
    ctx.store.put_created_task(
        &TaskRecord { board: board.slug.clone(), fields: fields.clone(), last_command: None },
        req.cause,
    )?;
    Ok(fields)
}
