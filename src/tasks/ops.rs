//! Runs `!task …` and `!board columns`, indexes task comments, and guards the canonical
//! task state. Task numbers are handed out under a per-board lock: `!task new` reserves its
//! number (a synced write of command → number that also moves the board's counter) before
//! it sends the task's root, and the reservation ends in the synced write that records the
//! task. A command interrupted by a crash runs again (its inbound event is still pending)
//! with its reserved number, whatever other commands ran meanwhile, and the same
//! transaction ids (the root's carries the number); one that fails for good hands its
//! number back. So numbers stay unique and gap-free, and a root says its task's number.

use ruma::{
    EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId,
    api::client::state::send_state_event,
    events::{
        Mentions, StaticEventContent,
        relation::{Replacement, Thread},
        room::message::{
            Relation, RoomMessageEventContent, RoomMessageEventContentWithoutRelation,
        },
    },
};

use super::render::render_root;
use crate::{
    boards::ops::Invocation,
    commands::{LISTING_BUDGET, Listing, Reply, task as cmd, task::TaskCommand},
    context::Context,
    domain::board::{ADMIN_POWER, BoardEventContent, BoardRecord, RoomKind},
    domain::task::{AppliedCommand, Change, Comment, TaskEventContent, TaskRecord, apply},
    domain::{Action, action::derived_txn_id, now_ms},
    matrix::{HsError, html::escape_html},
};

/// What a task command produced: its answer, and messages for the task's thread.
#[derive(Debug, Default)]
pub struct TaskOutcome {
    /// The reply to the command; `None` when a feed entry in the command's thread answers.
    pub reply: Option<Reply>,
    /// Further messages (root edit, feed entry).
    pub actions: Vec<Action>,
}

fn text(plain: String) -> Reply {
    Reply { html: escape_html(&plain).replace('\n', "<br>"), plain }
}

fn refusal(why: String, usage: &str) -> TaskOutcome {
    TaskOutcome { reply: Some(text(format!("{why}\nUsage: {usage}"))), actions: Vec::new() }
}

fn board_here(ctx: &Context, room: &RoomId) -> crate::Result<Option<BoardRecord>> {
    if let Some(b) = ctx.store.board_by_space(room)? {
        return Ok(Some(b));
    }
    match ctx.store.room(room)? {
        Some(r) => ctx.store.board(&r.board),
        None => Ok(None),
    }
}

/// The board's tasks room, where tasks can be written now; otherwise the refusal to give.
fn writable_tasks_room(
    ctx: &Context,
    slug: &str,
    usage: &str,
) -> crate::Result<Result<OwnedRoomId, TaskOutcome>> {
    match ctx.store.tasks_room_of(slug)? {
        None => Ok(Err(refusal(format!("The board {slug} has no tasks room."), usage))),
        Some((_, record)) if record.pending_move_from.is_some() => Ok(Err(refusal(
            format!(
                "The tasks room of {slug} was upgraded, and Boardroom needs power 100 in the \
                 new room before tasks can be created or changed: an admin can give it with \
                 /op {} 100 there (in Element), or in the room's power levels.",
                ctx.settings.bot_user_id
            ),
            usage,
        ))),
        Some((room, _)) => Ok(Ok(room)),
    }
}

/// A link to a task's thread.
pub fn thread_link(ctx: &Context, room: &RoomId, root: &EventId) -> String {
    format!("https://matrix.to/#/{room}/{root}?via={}", ctx.settings.server_name)
}

/// Runs a `!task` command. `thread_root` is the thread the command was written in, if any.
pub async fn run(
    ctx: &Context,
    inv: &Invocation<'_>,
    thread_root: Option<&EventId>,
    command: TaskCommand,
) -> TaskOutcome {
    let result = match command {
        TaskCommand::New(title) => new_task(ctx, inv, &title).await,
        TaskCommand::Change { number, change, usage } => {
            change_task(ctx, inv, thread_root, number, change, usage).await
        }
        TaskCommand::List(column) => list(ctx, inv, column.as_deref()),
    };
    match result {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "a task command failed");
            let msg = match e {
                crate::Error::Homeserver(h) => format!("The homeserver refused: {h}"),
                _ => "Something went wrong inside Boardroom; the admin can find the details in its log.".into(),
            };
            TaskOutcome { reply: Some(text(msg)), actions: Vec::new() }
        }
    }
}

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

async fn new_task(ctx: &Context, inv: &Invocation<'_>, title: &str) -> crate::Result<TaskOutcome> {
    let Some(board) = board_here(ctx, inv.room_id)? else {
        return Ok(refusal(
            "This room is not part of a board: create tasks in one of its rooms.".into(),
            cmd::NEW.usage,
        ));
    };
    if !ctx.store.is_board_member(&board.slug, inv.sender)? {
        return Ok(refusal(
            format!("Only members of the board {} can create tasks.", board.slug),
            cmd::NEW.usage,
        ));
    }
    let room = match writable_tasks_room(ctx, &board.slug, cmd::NEW.usage)? {
        Ok(room) => room,
        Err(refused) => return Ok(refused),
    };
    let lock = ctx.task_locks.get(&board.slug);
    let _guard = lock.lock().await;
    // The same command run again after a crash: its task exists; answer as the first time.
    let fields = match ctx.store.task_created_by(inv.event_id)? {
        Some(done) => done.fields,
        None => create_task(ctx, inv, &board, &room, title).await?,
    };
    drop(_guard);
    let number = fields.number;
    let title = &fields.title;

    let link = thread_link(ctx, &room, &fields.root_event_id);
    let feed = feed_entry(
        &room,
        &fields.root_event_id,
        None,
        format!("{} created {}#{number}", inv.sender, board.slug),
        &[],
        inv.event_id,
        1,
    );
    let reply = Reply {
        plain: format!("Created {}#{number} “{title}”: {link}", board.slug),
        html: format!(
            "Created <a href=\"{link}\">{}#{number}</a> “{}”",
            board.slug,
            escape_html(title)
        ),
    };
    Ok(TaskOutcome { reply: Some(reply), actions: vec![feed] })
}

/// Makes the board's next task: its root in the tasks room, its state event, its record.
/// Runs under the board's lock.
async fn create_task(
    ctx: &Context,
    inv: &Invocation<'_>,
    board: &BoardRecord,
    room: &RoomId,
    title: &str,
) -> crate::Result<TaskEventContent> {
    let (number, reserved_before) = ctx.store.reserve_task_number(&board.slug, inv.event_id)?;
    match make_task(ctx, inv, board, room, title, number, reserved_before).await {
        Ok(fields) => Ok(fields),
        Err(e) => {
            // Failed for good (a crash leaves the reservation for the command's next run).
            if let Err(se) = ctx.store.release_task_number(&board.slug, inv.event_id, number) {
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
    inv: &Invocation<'_>,
    board: &BoardRecord,
    room: &RoomId,
    title: &str,
    number: u64,
    reserved_before: bool,
) -> crate::Result<TaskEventContent> {
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
        created_by: inv.sender.to_owned(),
        created_at: now_ms(),
        deleted: false,
    };
    let (plain, html) = render_root(&board.slug, &fields);
    let mut root = RoomMessageEventContent::notice_html(plain, html);
    root.mentions = Some(Mentions::new());
    // Derived from the command and the number: a run again after a crash sends the same
    // root, which the homeserver deduplicates, or finds it in the room if the homeserver
    // restarted meanwhile and forgot the transaction id.
    let txn_id = derived_txn_id(&format!("{}/task/{number}", inv.event_id), 100);
    fields.root_event_id =
        ctx.client.send_message(room, &txn_id, &root, None, reserved_before).await?;
    send_state(ctx, room, &fields).await?;
    ctx.store.put_created_task(
        &TaskRecord { board: board.slug.clone(), fields: fields.clone(), last_command: None },
        inv.event_id,
    )?;
    Ok(fields)
}

/// A board's `tasks` room `old` was replaced by `new`: every task whose state is not in
/// `new` yet gets it there. A task that is not deleted also gets a new root in `new` (its
/// thread continues there), a feed entry in the new thread linking the old one, and one
/// in the old thread linking the new. Its comments stay indexed under its number, and its
/// old root still finds it. Safe to run again: tasks already in `new` are skipped.
pub async fn move_tasks(
    ctx: &Context,
    board: &BoardRecord,
    old: &RoomId,
    new: &RoomId,
) -> crate::Result<Vec<Action>> {
    let lock = ctx.task_locks.get(&board.slug);
    let _guard = lock.lock().await;
    let present: std::collections::HashSet<String> =
        crate::boards::index::fetch_state(&ctx.client, new)
            .await?
            .iter()
            .filter(|r| {
                r.get_field::<String>("type").ok().flatten().as_deref()
                    == Some(TaskEventContent::TYPE)
            })
            .filter_map(|r| r.get_field::<String>("state_key").ok().flatten())
            .collect();
    let mut actions = Vec::new();
    let mut moved = 0usize;
    for mut record in ctx.store.tasks_of(&board.slug)? {
        let n = record.fields.number;
        if present.contains(&n.to_string()) {
            continue;
        }
        if !record.fields.deleted {
            let old_root = record.fields.root_event_id.clone();
            let (plain, html) = render_root(&board.slug, &record.fields);
            let mut root = RoomMessageEventContent::notice_html(plain, html);
            root.mentions = Some(Mentions::new());
            let txn_id = derived_txn_id(&format!("move/{new}/{n}"), 0);
            let new_root = ctx.client.send_message(new, &txn_id, &root, None, false).await?;
            record.fields.root_event_id = new_root.clone();
            let slug = &board.slug;
            actions.push(feed_entry(
                new,
                &new_root,
                None,
                format!("{slug}#{n} continues here from {}", thread_link(ctx, old, &old_root)),
                &[],
                &new_root,
                1,
            ));
            actions.push(feed_entry(
                old,
                &old_root,
                None,
                format!("{slug}#{n} moved to {}", thread_link(ctx, new, &new_root)),
                &[],
                &new_root,
                2,
            ));
        }
        send_state(ctx, new, &record.fields).await?;
        ctx.store.put_task(&record)?;
        moved += 1;
    }
    tracing::info!(board = %board.slug, old = %old, new = %new, moved, "tasks moved to the upgraded tasks room");
    Ok(actions)
}

/// A reply in the task's thread saying who changed what. Quiet (`m.notice`) unless it
/// names people to notify: then `m.text` with `m.mentions` and pills.
fn feed_entry(
    room: &RoomId,
    root: &EventId,
    reply_to: Option<&EventId>,
    plain: String,
    notify: &[OwnedUserId],
    cause: &EventId,
    index: usize,
) -> Action {
    let mut content = if notify.is_empty() {
        RoomMessageEventContent::notice_html(plain.clone(), escape_html(&plain))
    } else {
        let mut html = escape_html(&plain);
        for u in notify {
            html = html.replace(
                &escape_html(u.as_str()),
                &format!("<a href=\"https://matrix.to/#/{u}\">{}</a>", escape_html(u.as_str())),
            );
        }
        RoomMessageEventContent::text_html(plain, html)
    };
    content.relates_to = Some(Relation::Thread(match reply_to {
        Some(r) => Thread::reply(root.to_owned(), r.to_owned()),
        None => Thread::plain(root.to_owned(), root.to_owned()),
    }));
    content.mentions = Some(Mentions::with_user_ids(notify.iter().cloned()));
    Action::SendMessage {
        room_id: room.to_owned(),
        as_user: None,
        txn_id: derived_txn_id(cause.as_str(), index),
        content: Box::new(content),
    }
}

fn root_edit(
    room: &RoomId,
    slug: &str,
    fields: &TaskEventContent,
    cause: &EventId,
    index: usize,
) -> Action {
    let (plain, html) = render_root(slug, fields);
    let mut new = RoomMessageEventContentWithoutRelation::notice_html(plain.clone(), html.clone());
    new.mentions = Some(Mentions::new());
    let mut edit = RoomMessageEventContent::notice_html(format!("* {plain}"), format!("* {html}"));
    edit.relates_to =
        Some(Relation::Replacement(Replacement::new(fields.root_event_id.clone(), new)));
    edit.mentions = Some(Mentions::new());
    Action::SendMessage {
        room_id: room.to_owned(),
        as_user: None,
        txn_id: derived_txn_id(cause.as_str(), index),
        content: Box::new(edit),
    }
}

async fn change_task(
    ctx: &Context,
    inv: &Invocation<'_>,
    thread_root: Option<&EventId>,
    number: Option<u64>,
    change: Change,
    usage: &'static str,
) -> crate::Result<TaskOutcome> {
    let task = match (number, thread_root) {
        (Some(n), _) => match board_here(ctx, inv.room_id)? {
            Some(b) => ctx.store.task(&b.slug, n)?,
            None => {
                return Ok(refusal("This room is not part of a board.".into(), usage));
            }
        },
        (None, Some(root)) => ctx.store.task_by_root(root)?,
        (None, None) => {
            return Ok(refusal(
                "Name the task as #n, or write the command in the task's thread.".into(),
                usage,
            ));
        }
    };
    let Some(task) = task else {
        let which = number.map_or("this thread's task".to_owned(), |n| format!("#{n}"));
        return Ok(refusal(format!("There is no task {which} on this board."), usage));
    };
    let Some(board) = ctx.store.board(&task.board)? else {
        return Ok(refusal("The task's board is gone.".into(), usage));
    };
    if !ctx.store.is_board_member(&board.slug, inv.sender)? {
        return Ok(refusal(
            format!("Only members of the board {} can change its tasks.", board.slug),
            usage,
        ));
    }
    match &change {
        Change::Delete
            if task.fields.created_by != inv.sender
                && !board.power_of(inv.sender).at_least(ADMIN_POWER) =>
        {
            return Ok(refusal(
                "Only the task's creator or a board admin (power 50) can delete it.".into(),
                usage,
            ));
        }
        Change::Status(c) if !board.columns.contains(c) => {
            return Ok(refusal(
                format!("There is no column {c}; the columns are: {}.", board.columns.join(", ")),
                usage,
            ));
        }
        Change::Assign(users) => {
            for u in users {
                if !ctx.store.is_board_member(&board.slug, u)? {
                    return Ok(refusal(
                        format!("{u} is not a member of the board {}.", board.slug),
                        usage,
                    ));
                }
            }
        }
        _ => {}
    }
    if task.fields.deleted && change != Change::Delete {
        return Ok(refusal(format!("{}#{} is deleted.", board.slug, task.fields.number), usage));
    }
    let room = match writable_tasks_room(ctx, &board.slug, usage)? {
        Ok(room) => room,
        Err(refused) => return Ok(refused),
    };

    let lock = ctx.task_locks.get(&board.slug);
    let _guard = lock.lock().await;
    // Read again under the lock: another room may have changed it meanwhile.
    let Some(mut record) = ctx.store.task(&board.slug, task.fields.number)? else {
        return Ok(refusal("The task is gone.".into(), usage));
    };
    if let Change::Status(c) = &change
        && let Some(now) = ctx.store.board(&board.slug)?
        && !now.columns.contains(c)
    {
        return Ok(refusal(
            format!("There is no column {c}; the columns are: {}.", now.columns.join(", ")),
            usage,
        ));
    }
    let (said, notify) = match record.last_command.as_ref().filter(|c| c.event_id == inv.event_id) {
        // The same command run again after a crash: answer as the first time.
        Some(done) => (done.said.clone(), done.notify.clone()),
        None => {
            let before = record.fields.assignees.clone();
            let said = match apply(&mut record.fields, &change) {
                Ok(s) => s,
                Err(why) => return Ok(refusal(format!("Nothing changed: {why}."), usage)),
            };
            // Only the newly assigned hear of it.
            let notify: Vec<OwnedUserId> = match &change {
                Change::Assign(users) => users
                    .iter()
                    .filter(|u| !before.contains(u) && *u != inv.sender)
                    .cloned()
                    .collect(),
                _ => Vec::new(),
            };
            send_state(ctx, &room, &record.fields).await?;
            record.last_command = Some(AppliedCommand {
                event_id: inv.event_id.to_owned(),
                said: said.clone(),
                notify: notify.clone(),
            });
            ctx.store.put_task(&record)?;
            (said, notify)
        }
    };
    drop(_guard);
    if !notify.is_empty() {
        let text = format!(
            "{} assigned you {}#{}: {}",
            inv.sender, board.slug, record.fields.number, record.fields.title
        );
        crate::notifications::notify::on_assignment(
            ctx,
            inv,
            &board.slug,
            &room,
            &record.fields.root_event_id,
            &notify,
            &text,
        )?;
    }

    let slug = &board.slug;
    let n = record.fields.number;
    let root = record.fields.root_event_id.clone();
    let in_thread = thread_root == Some(root.as_ref()) && inv.room_id == room;
    let feed_text = format!("{} {said} ({slug}#{n})", inv.sender);
    let mut actions = vec![root_edit(&room, slug, &record.fields, inv.event_id, 1)];
    actions.push(feed_entry(
        &room,
        &root,
        in_thread.then_some(inv.event_id),
        feed_text.clone(),
        &notify,
        inv.event_id,
        2,
    ));
    let reply = if in_thread {
        None
    } else {
        let link = thread_link(ctx, &room, &root);
        Some(Reply {
            plain: format!("{feed_text}: {link}"),
            html: format!("{} (<a href=\"{link}\">thread</a>)", escape_html(&feed_text)),
        })
    };
    Ok(TaskOutcome { reply, actions })
}

fn list(ctx: &Context, inv: &Invocation<'_>, column: Option<&str>) -> crate::Result<TaskOutcome> {
    let Some(board) = board_here(ctx, inv.room_id)? else {
        return Ok(refusal("This room is not part of a board.".into(), cmd::LIST.usage));
    };
    if !ctx.store.is_board_member(&board.slug, inv.sender)? {
        return Ok(refusal(
            format!("Only members of the board {} can list its tasks.", board.slug),
            cmd::LIST.usage,
        ));
    }
    if let Some(c) = column
        && !board.columns.iter().any(|b| b == c)
    {
        return Ok(refusal(
            format!("There is no column {c}; the columns are: {}.", board.columns.join(", ")),
            cmd::LIST.usage,
        ));
    }
    // Links lead to the threads where they are: the old room while a move waits for power.
    let room =
        ctx.store.tasks_room_of(&board.slug)?.map(|(id, r)| r.pending_move_from.unwrap_or(id));
    let shown: Vec<&String> =
        board.columns.iter().filter(|c| column.is_none_or(|x| x == c.as_str())).collect();
    let mut counts = Vec::with_capacity(shown.len());
    for c in &shown {
        counts.push(ctx.store.column_count(&board.slug, c)?);
    }
    // One pass over the tasks by number, each line into its column, stopping once the lines
    // alone would fill the reply: a board of any size costs one message's worth of reads.
    let mut lines: Vec<Vec<(String, String)>> = vec![Vec::new(); shown.len()];
    let mut bytes = 0;
    ctx.store.tasks_while(&board.slug, |t| {
        let Some(i) = shown.iter().position(|c| **c == t.fields.status) else { return true };
        if t.fields.deleted {
            return true;
        }
        let link =
            room.as_ref().map(|r| thread_link(ctx, r, &t.fields.root_event_id)).unwrap_or_default();
        let plain = format!("\n  #{} {} {link}", t.fields.number, t.fields.title);
        let html = format!(
            "<li><a href=\"{link}\">#{}</a> {}</li>",
            t.fields.number,
            escape_html(&t.fields.title)
        );
        bytes += plain.len() + html.len();
        lines[i].push((plain, html));
        bytes <= LISTING_BUDGET
    })?;
    let mut listing = Listing::new(
        format!("Tasks of {}:", board.name),
        format!("<p>Tasks of <b>{}</b>:</p>", escape_html(&board.name)),
    );
    let mut unread = 0;
    for ((c, count), column_lines) in shown.iter().zip(&counts).zip(&lines) {
        listing.always(
            &format!("\n{c} ({count})"),
            &format!("<p><b>{}</b> ({count})</p><ul>", escape_html(c)),
        );
        for (plain, html) in column_lines {
            listing.item(plain, html);
        }
        unread += count.saturating_sub(column_lines.len() as u64);
        listing.always("", "</ul>");
    }
    let n = listing.left_out() as u64 + unread;
    if n > 0 {
        let more = match column {
            None => format!("{n} more tasks are not shown; !task list <column> lists one column."),
            Some(c) => format!("{n} more tasks in {c} are not shown: one message holds no more."),
        };
        listing.always(&format!("\n{more}"), &format!("<p>{}</p>", escape_html(&more)));
    }
    Ok(TaskOutcome { reply: Some(listing.into_reply()), actions: Vec::new() })
}

/// Tasks of `slug` whose column is not in `columns`, as `#n (column)`.
fn stranded(ctx: &Context, slug: &str, columns: &[String]) -> crate::Result<Vec<String>> {
    // The counts say whether any task would be stranded; only then are the tasks read.
    if ctx.store.column_counts(slug)?.iter().all(|(c, n)| *n == 0 || columns.contains(c)) {
        return Ok(Vec::new());
    }
    Ok(ctx
        .store
        .tasks_of(slug)?
        .into_iter()
        .filter(|t| !t.fields.deleted && !columns.contains(&t.fields.status))
        .map(|t| format!("#{} ({})", t.fields.number, t.fields.status))
        .collect())
}

async fn send_board_state(ctx: &Context, board: &BoardRecord) -> crate::Result<()> {
    let content = BoardEventContent {
        slug: board.slug.clone(),
        name: board.name.clone(),
        created_by: board.created_by.clone(),
        created_by_event: board.created_by_event.clone(),
        columns: board.columns.clone(),
    };
    let req = send_state_event::v3::Request::new(
        board.space_id.clone(),
        &ruma::events::EmptyStateKey,
        &content,
    )
    .map_err(|e| crate::Error::Internal(e.to_string()))?;
    ctx.client.send(req, None).await?;
    Ok(())
}

/// A `dev.boardroom.board` event in an indexed board's space, sent by someone other than
/// the bot (an admin's client): its name and columns are followed when they are valid and
/// strand no task, and the bot writes them again as its own (only the bot's board state
/// counts, for `boardroom reindex` too); anything else (another slug, creator, bad or
/// stranding columns, content that does not parse) is put back from the index. Such an
/// event anywhere but an indexed board's space changes nothing.
pub async fn follow_board_event(
    ctx: &Context,
    space: &RoomId,
    sender: &UserId,
    content: Option<BoardEventContent>,
) -> crate::Result<()> {
    if sender == ctx.settings.bot_user_id {
        return Ok(());
    }
    let Some(board) = ctx.store.board_by_space(space)? else { return Ok(()) };
    let lock = ctx.task_locks.get(&board.slug);
    let _guard = lock.lock().await;
    let Some(mut board) = ctx.store.board(&board.slug)? else { return Ok(()) };
    let acceptable = content.filter(|c| {
        c.slug == board.slug
            && c.created_by == board.created_by
            && c.created_by_event == board.created_by_event
            && !c.name.trim().is_empty()
            && cmd::parse_columns(&[c.columns.join(",").as_str()]).ok().as_ref() == Some(&c.columns)
    });
    match acceptable {
        Some(c) if stranded(ctx, &board.slug, &c.columns)?.is_empty() => {
            if board.name != c.name || board.columns != c.columns {
                tracing::info!(board = %board.slug, sender = %sender, columns = ?c.columns, "following a change of the board's state");
                board.name = c.name;
                board.columns = c.columns;
                ctx.store.put_board(&board)?;
            }
            send_board_state(ctx, &board).await?;
        }
        _ => {
            tracing::warn!(board = %board.slug, sender = %sender, "putting back a change of the board's state");
            send_board_state(ctx, &board).await?;
        }
    }
    Ok(())
}

/// `!board columns a,b,…`
pub async fn set_columns(ctx: &Context, inv: &Invocation<'_>, columns: Vec<String>) -> Reply {
    let outcome = async {
        let Some(board) = board_here(ctx, inv.room_id)? else {
            return Ok(text(format!("This room is not part of a board.\nUsage: {}", cmd::COLUMNS.usage)));
        };
        // Under the board's lock: no task moves to a column being dropped meanwhile.
        let lock = ctx.task_locks.get(&board.slug);
        let _guard = lock.lock().await;
        let Some(mut board) = ctx.store.board(&board.slug)? else {
            return Ok(text("The board is gone.".into()));
        };
        if !board.power_of(inv.sender).at_least(ADMIN_POWER) {
            return Ok(text(format!(
                "Only board admins (power {ADMIN_POWER} or more) can change the columns.\nUsage: {}",
                cmd::COLUMNS.usage
            )));
        }
        let stranded = stranded(ctx, &board.slug, &columns)?;
        if !stranded.is_empty() {
            return Ok(text(format!(
                "Those columns would drop a column that still holds tasks: move {} first.\nUsage: {}",
                stranded.join(", "),
                cmd::COLUMNS.usage
            )));
        }
        board.columns = columns.clone();
        send_board_state(ctx, &board).await?;
        ctx.store.put_board(&board)?;
        Ok::<Reply, crate::Error>(text(format!("The columns of {} are now: {}.", board.name, columns.join(", "))))
    }
    .await;
    outcome.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "!board columns failed");
        text(format!("That did not work: {e}"))
    })
}

/// A message in a tasks room: a reply in a task's thread (not from the bot) is a comment;
/// an edit of a comment changes its text.
pub fn index_message(
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
pub fn index_redaction(ctx: &Context, redacts: &EventId) -> crate::Result<()> {
    if ctx.store.remove_comment(redacts)? {
        tracing::debug!(event_id = %redacts, "comment redacted");
    }
    Ok(())
}

/// A `dev.boardroom.task` change not sent by the bot in a board's tasks room (`fields` is
/// `None` when its content is not a task): every task state Boardroom did not write is put
/// back. Under the key of a task (canonical form), the indexed fields are written again and
/// the thread says so (silently when the content was the same); under any other key (no
/// such task, `01`, not a number), the state is emptied (`{}`). The canonical fields change
/// through commands only.
pub async fn guard_task_state(
    ctx: &Context,
    room: &RoomId,
    sender: &UserId,
    event_id: &EventId,
    state_key: &str,
    fields: Option<&TaskEventContent>,
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
    if fields == Some(&task.fields) {
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

/// The thread a message is in, if any.
pub fn thread_root(content: &RoomMessageEventContent) -> Option<&EventId> {
    match &content.relates_to {
        Some(Relation::Thread(t)) => Some(&t.event_id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use ruma::{events::room::member::MembershipState, owned_event_id, room_id, user_id};

    use super::*;
    use crate::{
        Config, app::App, commands::LISTING_BUDGET, domain::board::RoomRecord,
        domain::task::default_columns,
    };

    /// A board whose every task sits in `todo`, with long titles.
    fn board_with_tasks(dir: &std::path::Path, tasks: u64) -> App {
        let config = Config::offline(&dir.join("db"), "").expect("config");
        let app = App::new(config.validate().expect("valid")).expect("app");
        let store = &app.ctx.store;
        let space = room_id!("!space:localhost");
        store
            .put_board(&BoardRecord {
                slug: "launch".into(),
                space_id: space.to_owned(),
                name: "Launch".into(),
                created_by: user_id!("@alice:localhost").to_owned(),
                created_by_event: owned_event_id!("$create"),
                creators: vec![],
                power_users: Default::default(),
                users_default: 0,
                columns: default_columns(),
            })
            .expect("board");
        let record = RoomRecord {
            board: "launch".into(),
            name: "tasks".into(),
            kind: RoomKind::Tasks,
            private: false,
            pending_move_from: None,
        };
        store.put_room(room_id!("!tasks:localhost"), &record).expect("room");
        store
            .set_membership(
                space,
                user_id!("@alice:localhost"),
                &MembershipState::Join,
                None,
                Some("launch"),
            )
            .expect("member");
        for n in 1..=tasks {
            let root = format!("$root{n}_abcdefghijklmnopqrstuvwxyz0123456789");
            let task = TaskRecord::example("launch", n, root.try_into().expect("event id"));
            store.put_task(&task).expect("task");
        }
        app
    }

    async fn list(app: &App, column: Option<&str>) -> Reply {
        let inv = Invocation {
            event_id: ruma::event_id!("$cmd"),
            sender: user_id!("@alice:localhost"),
            room_id: room_id!("!space:localhost"),
            seq: 1,
        };
        let outcome = run(&app.ctx, &inv, None, TaskCommand::List(column.map(str::to_owned))).await;
        outcome.reply.expect("a reply")
    }

    #[tokio::test]
    async fn a_long_task_list_still_fits_in_one_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = board_with_tasks(dir.path(), 1000);
        for column in [None, Some("todo")] {
            let reply = list(&app, column).await;
            let event = serde_json::to_vec(&RoomMessageEventContent::text_html(
                reply.plain.clone(),
                reply.html.clone(),
            ))
            .expect("json");
            assert!(event.len() < 60_000, "{} bytes", event.len());
            assert!(reply.plain.len() + reply.html.len() <= LISTING_BUDGET + 500);
            assert!(reply.plain.contains("#1 Task number 1 "), "{}", reply.plain);
            assert!(reply.plain.contains("todo (1000)"), "the count is whole: {}", reply.plain);
            assert!(reply.plain.contains("more tasks"), "{}", reply.plain);
            assert!(!reply.plain.contains("#1000 "), "{}", reply.plain);
        }
    }

    #[tokio::test]
    async fn a_short_task_list_is_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = board_with_tasks(dir.path(), 3);
        let reply = list(&app, None).await;
        assert!(reply.plain.contains("#3 Task number 3"), "{}", reply.plain);
        assert!(!reply.plain.contains("more tasks"), "{}", reply.plain);
    }
}
