//! A board's ordered columns: `!board columns`, and following a change of the board's
//! state made from a client.

use ruma::{RoomId, UserId, api::client::state::send_state_event};

use crate::{
    boards::access,
    context::Context,
    domain::{
        board::{BoardEventContent, BoardRecord, valid_columns, validate_board_name},
        op::{BoardRef, OpResult, OpSpec, Permission, Refusal, Request},
    },
};

/// `!board columns`.
pub(crate) const COLUMNS: OpSpec =
    OpSpec { permission: Permission::BoardAdmin, doing: "change the columns" };

/// The columns, set.
#[derive(Debug, Clone)]
pub(crate) struct ColumnsSet {
    /// The board's display name.
    pub board_name: String,
    /// Its columns now.
    pub columns: Vec<String>,
}

/// Sets the board's ordered columns. A column that still holds tasks cannot be dropped.
pub(crate) async fn set_columns(
    ctx: &Context,
    req: &Request<'_>,
    at: BoardRef<'_>,
    columns: &[String],
) -> OpResult<ColumnsSet> {
    let board = access::board(ctx, req.actor, at, &COLUMNS)?;
    valid_columns(columns)
        .map_err(|why| Refusal::invalid(format!("Those are no columns: {why}.")))?;
    // Under the board's lock: no task moves to a column being dropped meanwhile.
    let lock = ctx.task_locks.get(&board.slug);
    let _guard = lock.lock().await;
    let mut board =
        ctx.store.board(&board.slug)?.ok_or_else(|| Refusal::not_found("The board is gone."))?;
    let stranded = stranded(ctx, &board.slug, columns)?;
    if !stranded.is_empty() {
        return Err(Refusal::conflict(format!(
            "Those columns would drop a column that still holds tasks: move {} first.",
            stranded.join(", ")
        )));
    }
    board.columns = columns.to_vec();
    send_board_state(ctx, &board).await?;
    ctx.store.put_board(&board)?;
    Ok(ColumnsSet { board_name: board.name, columns: board.columns })
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

/// Writes the board's `dev.boardroom.board` state from its record, as the bot.
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
pub(crate) async fn follow_board_event(
    ctx: &Context,
    space: &RoomId,
    sender: &UserId,
    content: impl FnOnce() -> Option<BoardEventContent>,
) -> crate::Result<()> {
    if sender == ctx.settings.bot_user_id {
        return Ok(());
    }
    let Some(board) = ctx.store.board_by_space(space)? else { return Ok(()) };
    let lock = ctx.task_locks.get(&board.slug);
    let _guard = lock.lock().await;
    let Some(mut board) = ctx.store.board(&board.slug)? else { return Ok(()) };
    let acceptable = content().filter(|c| {
        c.slug == board.slug
            && c.created_by == board.created_by
            && c.created_by_event == board.created_by_event
            && validate_board_name(&c.name).is_ok()
            && valid_columns(&c.columns).is_ok()
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
