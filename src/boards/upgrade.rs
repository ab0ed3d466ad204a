//! Room upgrades: a board room replaced by a new room (its tombstone followed only when the
//! new room names it as predecessor) keeps its place in the board; Boardroom's own state
//! moves there once the bot has the power to write it; and the room state guard.

use ruma::{
    EventId, OwnedRoomId, RoomId, UserId,
    api::client::{
        membership::{join_room_by_id, leave_room},
        state::send_state_event,
    },
    events::{
        Mentions,
        room::{
            create::RoomCreateEventContent, message::RoomMessageEventContent,
            power_levels::RoomPowerLevelsEventContent,
        },
        space::parent::SpaceParentEventContent,
    },
};

use super::{
    index,
    rooms::{link_child, own_state_content, state_content},
};
use crate::{
    context::Context,
    domain::{
        Action,
        action::derived_txn_id,
        board::{BoardRecord, BoardRoomEventContent, RoomKind, RoomRecord},
    },
    matrix::HsError,
};

/// What following an upgrade calls for.
#[derive(Debug, Default)]
pub(crate) struct Upgrade {
    /// Messages to send (a notice asking for power).
    pub actions: Vec<Action>,
    /// A `tasks` room settled in its new room: its tasks move there next.
    pub tasks_move: Option<TasksMove>,
}

/// The tasks of a board's upgraded `tasks` room, to move from `from` to `to`; once moved,
/// the room's record loses its `pending_move_from`.
#[derive(Debug, Clone)]
pub(crate) struct TasksMove {
    /// The board.
    pub board: BoardRecord,
    /// The room the tasks are in.
    pub from: OwnedRoomId,
    /// The room they move to.
    pub to: OwnedRoomId,
    /// `to`'s record.
    pub record: RoomRecord,
}

/// A board room was upgraded: the bot joins the new room, which takes the old one's place
/// in the board (the space's `m.space.child` and the index), and Boardroom's own state
/// moves there ([`settle_room`]); a `tasks` room's tasks move after ([`Upgrade::tasks_move`]). `cause` is the tombstone event.
pub(crate) async fn follow_upgrade(
    ctx: &Context,
    old: &RoomId,
    new: &RoomId,
    cause: &EventId,
) -> crate::Result<Upgrade> {
    let Some(record) = ctx.store.room(old)? else { return Ok(Upgrade::default()) };
    let Some(board) = ctx.store.board(&record.board)? else { return Ok(Upgrade::default()) };
    // A room already in the index (another board room, a board's space) is never adopted.
    if new == old || ctx.store.room(new)?.is_some() || ctx.store.board_by_space(new)?.is_some() {
        tracing::warn!(board = %board.slug, old = %old, new = %new, "not following a tombstone that points to an indexed room");
        return Ok(Upgrade::default());
    }
    tracing::info!(board = %board.slug, old = %old, new = %new, "following a room upgrade");
    if let Err(e) = ctx.client.send(join_room_by_id::v3::Request::new(new.to_owned()), None).await {
        tracing::error!(error = %e, room_id = %new, "cannot join the upgraded room");
    }
    // The replacement must say it replaced this room (its `m.room.create` predecessor):
    // a tombstone alone does not make a room part of a board. Its memberships from before
    // the bot joined never reach it as events: they are read from the same state.
    let state = index::fetch_state(&ctx.client, new).await?;
    if !index::replaces(&state, old) {
        tracing::warn!(board = %board.slug, old = %old, new = %new, "not following a tombstone: the room it names does not replace this one");
        if let Err(e) = ctx.client.send(leave_room::v3::Request::new(new.to_owned()), None).await {
            tracing::warn!(error = %e, room_id = %new, "cannot leave a room that is no upgrade");
        }
        return Ok(Upgrade::default());
    }
    index::index_members_from_state(&ctx.store, new, &state)?;
    link_child(ctx, &board.space_id, new, true).await?;
    link_child(ctx, &board.space_id, old, false).await?;
    ctx.store.remove_room(old)?;
    ctx.store.put_room(new, &record)?;
    // Where the tasks are: the old room, or the room before it when the old one never got
    // them (upgraded again while waiting for power).
    let from = record.pending_move_from.clone().unwrap_or_else(|| old.to_owned());
    match settle_room(ctx, &board, new, &record, &from).await? {
        Some(tasks_move) => Ok(Upgrade { actions: Vec::new(), tasks_move }),
        None => {
            // Room version 12: the upgrader is the new room's only creator and the bot has
            // no power there. Say what an admin must do; the move completes when they do.
            let waiting = RoomRecord { pending_move_from: Some(from), ..record.clone() };
            ctx.store.put_room(new, &waiting)?;
            tracing::warn!(board = %board.slug, room_id = %new, "no power to write board state into the upgraded room; asked an admin");
            let bot = &ctx.settings.bot_user_id;
            let plain = format!(
                "This room replaced a room of the board {slug}. Boardroom needs power 100 here to \
                 keep it part of the board{tasks}: an admin can give it with /op {bot} 100 (in \
                 Element), or by setting {bot} to 100 in the room's power levels.",
                slug = board.slug,
                tasks =
                    if record.kind == RoomKind::Tasks { " and to move its tasks here" } else { "" },
            );
            let mut content = RoomMessageEventContent::notice_plain(plain);
            content.mentions = Some(Mentions::new());
            let notice = Action::SendMessage {
                room_id: new.to_owned(),
                as_user: None,
                txn_id: derived_txn_id(cause.as_str(), 0),
                content: Box::new(content),
            };
            Ok(Upgrade { actions: vec![notice], tasks_move: None })
        }
    }
}

/// Writes Boardroom's own state into board room `room` (a replacement of `old`): its
/// `dev.boardroom.room` and canonical `m.space.parent`, and for a `tasks` room, the board's
/// tasks (the move it returns, for the caller to run). `None` when the bot lacks the power to
/// write state there.
pub(crate) async fn settle_room(
    ctx: &Context,
    board: &BoardRecord,
    room: &RoomId,
    record: &RoomRecord,
    old: &RoomId,
) -> crate::Result<Option<Option<TasksMove>>> {
    match send_room_state(ctx, room, record).await {
        Ok(()) => {}
        Err(e) if e.is_forbidden() => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut parent = SpaceParentEventContent::new(vec![ctx.settings.server_name.clone()]);
    parent.canonical = true;
    let req = send_state_event::v3::Request::new(room.to_owned(), &board.space_id, &parent)
        .map_err(|e| crate::Error::Internal(e.to_string()))?;
    ctx.client.send(req, None).await?;
    if record.kind == RoomKind::Tasks {
        return Ok(Some(Some(TasksMove {
            board: board.clone(),
            from: old.to_owned(),
            to: room.to_owned(),
            record: record.clone(),
        })));
    }
    if record.pending_move_from.is_some() {
        ctx.store.put_room(room, &RoomRecord { pending_move_from: None, ..record.clone() })?;
    }
    Ok(Some(None))
}

/// A `dev.boardroom.room` event that the bot did not send: it never counts (the index
/// ignores it). In an indexed board room (empty state key), the bot's record is written
/// back, so that the room's current board state is always Boardroom's own.
pub(crate) async fn guard_room_state(
    ctx: &Context,
    room: &RoomId,
    sender: &UserId,
    state_key: &str,
) -> crate::Result<()> {
    if sender == ctx.settings.bot_user_id || !state_key.is_empty() {
        return Ok(());
    }
    let Some(record) = ctx.store.room(room)? else { return Ok(()) };
    if record.pending_move_from.is_some() {
        // The bot has no power here yet; settling the room writes its state.
        return Ok(());
    }
    tracing::warn!(board = %record.board, room_id = %room, sender = %sender, "putting back a board room's state");
    send_room_state(ctx, room, &record).await?;
    Ok(())
}

/// Writes a board room's `dev.boardroom.room` from its record, as the bot.
async fn send_room_state(ctx: &Context, room: &RoomId, record: &RoomRecord) -> Result<(), HsError> {
    let req = send_state_event::v3::Request::new(
        room.to_owned(),
        &ruma::events::EmptyStateKey,
        &record.content(),
    )
    .map_err(|e| HsError::Protocol { endpoint: "send_state_event", message: e.to_string() })?;
    ctx.client.send(req, None).await?;
    Ok(())
}

/// New power levels in a board room: when they give the bot the power to write state and
/// the room lacks its board state (an upgraded room the bot could not settle before), the
/// move completes now.
pub(crate) async fn on_power_levels(
    ctx: &Context,
    room: &RoomId,
    content: &RoomPowerLevelsEventContent,
) -> crate::Result<Upgrade> {
    let Some(record) = ctx.store.room(room)? else { return Ok(Upgrade::default()) };
    let bot = &ctx.settings.bot_user_id;
    let level = content.users.get(bot).copied().unwrap_or(content.users_default);
    if level < content.state_default {
        return Ok(Upgrade::default());
    }
    if own_state_content::<BoardRoomEventContent>(ctx, room).await.is_some() {
        return Ok(Upgrade::default());
    }
    let Some(board) = ctx.store.board(&record.board)? else { return Ok(Upgrade::default()) };
    let old = match &record.pending_move_from {
        Some(from) => from.clone(),
        None => {
            let create = state_content::<RoomCreateEventContent>(ctx, room).await;
            let Some(old) = create.and_then(|c| c.predecessor).map(|p| p.room_id) else {
                return Ok(Upgrade::default());
            };
            old
        }
    };
    tracing::info!(board = %board.slug, room_id = %room, "the bot got power in an upgraded board room; settling it");
    let tasks_move = settle_room(ctx, &board, room, &record, &old).await?.flatten();
    Ok(Upgrade { actions: Vec::new(), tasks_move })
}
