//! `!task new`: a task is a thread root in the board's `tasks` room with its
//! `dev.boardroom.task` state event; its number is reserved before anything is sent.

use ruma::{
    OwnedEventId, OwnedUserId, RoomId,
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
        op::{BoardRef, Done, OpResult, OpSpec, Permission, Refusal, Request},
        task::{
            MAX_LABELS, TaskEventContent, TaskRecord, validate_due, validate_label, validate_title,
        },
    },
    notifications::notify,
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

/// A task to create: a title, and optionally its column (the board's first otherwise),
/// assignees, labels and due date.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewTask {
    /// Its title.
    pub title: String,
    /// Its column.
    pub status: Option<String>,
    /// Who it is assigned to (each a board member; they are notified).
    pub assignees: Vec<OwnedUserId>,
    /// Its labels.
    pub labels: Vec<String>,
    /// Its due date, `YYYY-MM-DD`.
    pub due: Option<String>,
}

impl NewTask {
    /// A task with a title and nothing else.
    pub(crate) fn titled(title: impl Into<String>) -> Self {
        Self { title: title.into(), ..Self::default() }
    }
}

/// Creates a task on the board `at`. The same request run again answers as the first
/// time.
pub(crate) async fn create(
    ctx: &Context,
    req: &Request<'_>,
    at: BoardRef<'_>,
    input: &NewTask,
) -> OpResult<Done<TaskCreated>> {
    let board = access::board(ctx, req.actor, at, &NEW)?;
    let input = checked(ctx, &board, input)?;
    let room = writable_tasks_room(ctx, &board.slug)?;
    let lock = ctx.task_locks.get(&board.slug);
    let guard = lock.lock().await;
    // The same request run again after a crash: its task exists; answer as the first time.
    let fields = match ctx.store.task_created_by(req.cause)? {
        Some(done) => done.fields,
        None => create_task(ctx, req, &board, &room, &input).await?,
    };
    drop(guard);
    let number = fields.number;
    let link = thread_link(ctx, &room, &fields.root_event_id);
    let sender = req.actor.user_id();
    // The assigned hear of it: in the feed (a mention) and in their inbox.
    let notify: Vec<OwnedUserId> =
        fields.assignees.iter().filter(|u| *u != sender).cloned().collect();
    let mut said = format!("{sender} created {}#{number}", board.slug);
    if !notify.is_empty() {
        let names: Vec<&str> = notify.iter().map(|u| u.as_str()).collect();
        said.push_str(&format!(" and assigned {}", names.join(", ")));
        let text = format!("{sender} assigned you {}#{number}: {}", board.slug, fields.title);
        notify::on_assignment(ctx, req, &board.slug, &room, &fields.root_event_id, &notify, &text)?;
    }
    let feed = feed_entry(&room, &fields.root_event_id, None, said, &notify, req.cause, 1);
    Ok(Done { value: TaskCreated { slug: board.slug, fields, link }, actions: vec![feed] })
}

/// `input` checked against the board: a valid title, an existing column, members as
/// assignees, valid labels and date; labels and assignees without repeats.
fn checked(ctx: &Context, board: &BoardRecord, input: &NewTask) -> OpResult<NewTask> {
    validate_title(&input.title).map_err(|why| Refusal::invalid(format!("{why}.")))?;
    if let Some(c) = &input.status
        && !board.columns.contains(c)
    {
        return Err(Refusal::invalid(format!(
            "There is no column {c}; the columns are: {}.",
            board.columns.join(", ")
        )));
    }
    let mut assignees: Vec<OwnedUserId> = Vec::new();
    for u in &input.assignees {
        if !ctx.store.is_board_member(&board.slug, u)? {
            return Err(Refusal::invalid(format!(
                "{u} is not a member of the board {}.",
                board.slug
            )));
        }
        if !assignees.contains(u) {
            assignees.push(u.clone());
        }
    }
    let mut labels: Vec<String> = Vec::new();
    for l in &input.labels {
        validate_label(l).map_err(|why| Refusal::invalid(format!("{why}.")))?;
        if !labels.contains(l) {
            labels.push(l.clone());
        }
    }
    if labels.len() > MAX_LABELS {
        return Err(Refusal::invalid(format!("A task has at most {MAX_LABELS} labels.")));
    }
    let due = match &input.due {
        Some(d) => Some(validate_due(d).map_err(|why| Refusal::invalid(format!("{why}.")))?),
        None => None,
    };
    Ok(NewTask { title: input.title.clone(), status: input.status.clone(), assignees, labels, due })
}

/// Makes the board's next task: its root in the tasks room, its state event, its record.
/// Runs under the board's lock.
async fn create_task(
    ctx: &Context,
    req: &Request<'_>,
    board: &BoardRecord,
    room: &RoomId,
    input: &NewTask,
) -> OpResult<TaskEventContent> {
    let (number, reserved_before) = ctx.store.reserve_task_number(&board.slug, req.cause)?;
    match make_task(ctx, req, board, room, input, number, reserved_before).await {
        Ok(fields) => Ok(fields),
        Err(e) if req.room.is_none() && may_pass_later(&e) => {
            // An API request or a webhook delivery, and the homeserver (or the disk) failed
            // for now, with the root perhaps landed: the reservation stays, so that the
            // request sent again (the same Idempotency-Key or delivery id) takes the same
            // number and finds that root, instead of leaving it behind claiming a number
            // another task then takes. (A chat command is retried in the background until
            // it succeeds or fails for good; nobody sends the same one again.)
            tracing::warn!(board = %board.slug, number, "task creation failed for now; its number stays reserved for the request's retry");
            Err(e)
        }
        Err(e) => {
            // Failed for good (a crash leaves the reservation for the command's next run).
            if let Err(se) = ctx.store.release_task_number(&board.slug, req.cause, number) {
                tracing::error!(board = %board.slug, number, error = %se, "cannot hand back a reserved task number");
            }
            Err(e)
        }
    }
}

/// Whether a failure may pass if the same request is sent again: the homeserver failed for
/// now (unreachable, 5xx, 429), or the database cannot write for now.
fn may_pass_later(e: &Refusal) -> bool {
    match e {
        Refusal::Failed(crate::Error::Homeserver(h)) => {
            matches!(h.retry_kind(), crate::error::RetryKind::Transient(_))
        }
        Refusal::Failed(crate::Error::Unavailable(_)) => true,
        _ => false,
    }
}

/// [`create_task`] with its number reserved; `reserved_before` says the command ran before
/// (and may have sent the root already).
async fn make_task(
    ctx: &Context,
    req: &Request<'_>,
    board: &BoardRecord,
    room: &RoomId,
    input: &NewTask,
    number: u64,
    reserved_before: bool,
) -> OpResult<TaskEventContent> {
    let first = board.columns.first().cloned().unwrap_or_else(|| "todo".into());
    let mut fields = TaskEventContent {
        number,
        title: input.title.clone(),
        status: input.status.clone().unwrap_or(first),
        assignees: input.assignees.clone(),
        labels: input.labels.clone(),
        due: input.due.clone(),
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
