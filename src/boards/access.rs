//! The one rights check: every operation on a board finds it here and learns here whether
//! its actor may run it. Chat commands and API handlers hold no rule of their own.

use ruma::{OwnedRoomId, RoomId, events::room::member::MembershipState};

use crate::{
    context::Context,
    domain::{
        board::{ADMIN_POWER, BoardRecord, RoomRecord},
        op::{Actor, BoardRef, ClientScope, OpResult, OpSpec, Permission, Refusal},
    },
};

/// The sentence for a request made in a room that is no board's.
pub(crate) const NOT_A_BOARD_ROOM: &str =
    "This room is not part of a board: run this command in one of the board's rooms.";

/// The board `at` names, when `actor` may run `op` on it; otherwise the refusal. Named by
/// slug, a board the actor may not act on is refused the same way whether it exists or
/// not: nothing leaks to outsiders.
pub(crate) fn board(
    ctx: &Context,
    actor: &Actor,
    at: BoardRef<'_>,
    op: &OpSpec,
) -> OpResult<BoardRecord> {
    if let BoardRef::Slug(slug) = at {
        in_scope(actor, slug)?;
        if actor.client.is_none() && !ctx.store.is_board_member(slug, &actor.user_id)? {
            return Err(not_a_member(slug, op));
        }
    }
    let board = find(ctx, at)?;
    check(ctx, actor, &board, op)?;
    Ok(board)
}

fn not_a_member(slug: &str, op: &OpSpec) -> Refusal {
    Refusal::forbidden(format!("Only members of the board {slug} can {}.", op.doing))
}

/// Whether an API client (or webhook source) may act on `slug`; a Matrix user always may.
pub(crate) fn in_scope(actor: &Actor, slug: &str) -> OpResult<()> {
    match &actor.client {
        Some(client) if !client.may_act_on(slug) => Err(Refusal::forbidden(format!(
            "The API client {} may not act on the board {slug}.",
            client.name
        ))),
        _ => Ok(()),
    }
}

/// Finds the board `at` names, without any rights check.
fn find(ctx: &Context, at: BoardRef<'_>) -> OpResult<BoardRecord> {
    match at {
        BoardRef::Room(room) => {
            if let Some(b) = ctx.store.board_by_space(room)? {
                return Ok(b);
            }
            if let Some(r) = ctx.store.room(room)?
                && let Some(b) = ctx.store.board(&r.board)?
            {
                return Ok(b);
            }
            Err(Refusal::not_found(NOT_A_BOARD_ROOM))
        }
        BoardRef::Slug(slug) => ctx
            .store
            .board(slug)?
            .ok_or_else(|| Refusal::not_found(format!("There is no board {slug}."))),
    }
}

/// Whether `actor` may run `op` on `board`.
pub(crate) fn check(
    ctx: &Context,
    actor: &Actor,
    board: &BoardRecord,
    op: &OpSpec,
) -> OpResult<()> {
    let user = actor.user_id();
    in_scope(actor, &board.slug)?;
    match op.permission {
        Permission::Anyone => Ok(()),
        Permission::BoardCreator => may_create_boards(ctx, actor),
        // A client's virtual user within the client's boards joins the board when it
        // first acts there.
        Permission::BoardMember
            if actor.client.is_some() || ctx.store.is_board_member(&board.slug, user)? =>
        {
            Ok(())
        }
        Permission::BoardMember => Err(not_a_member(&board.slug, op)),
        Permission::BoardAdmin if board.power_of(user).at_least(ADMIN_POWER) => Ok(()),
        Permission::BoardAdmin => Err(Refusal::forbidden(format!(
            "Only board admins (power {ADMIN_POWER} or more in the board's space) can {}; {user} is a {}.",
            op.doing,
            board.role_of(user).as_str()
        ))),
    }
}

/// Whether `actor` may create boards: Matrix users matched by
/// `permissions.board_creators`, and clients with `create_boards` (as their virtual user).
pub(crate) fn may_create_boards(ctx: &Context, actor: &Actor) -> OpResult<()> {
    let user = actor.user_id();
    match &actor.client {
        None if ctx.settings.is_board_creator(user) => Ok(()),
        None => Err(Refusal::forbidden(format!(
            "{user} may not create boards: only users listed in permissions.board_creators can."
        ))),
        Some(c) if c.create_boards => Ok(()),
        Some(c) => Err(Refusal::forbidden(format!(
            "The API client {} may not create boards: its create_boards is not set.",
            c.name
        ))),
    }
}

/// Whether `actor` may see the room `room_id` of a board it may act on: every public
/// room, and a private room only when the actor is in it (joined or invited).
pub(crate) fn may_see_room(
    ctx: &Context,
    actor: &Actor,
    room_id: &RoomId,
    record: &RoomRecord,
) -> OpResult<bool> {
    if !record.private {
        return Ok(true);
    }
    Ok(matches!(
        ctx.store.membership(room_id, actor.user_id())?,
        Some(MembershipState::Join | MembershipState::Invite)
    ))
}

/// The room named `name` (its short name: `general`) of `board`, which the actor was let
/// act on ([`board`]), when the actor may see it ([`may_see_room`]). A private room the
/// actor is not in is refused exactly as a room that does not exist: nothing tells an
/// outsider it is there.
pub(crate) fn room(
    ctx: &Context,
    actor: &Actor,
    board: &BoardRecord,
    name: &str,
) -> OpResult<(OwnedRoomId, RoomRecord)> {
    let found = ctx.store.rooms_of(&board.slug)?.into_iter().find(|(_, r)| r.name == name);
    match found {
        Some((id, record)) if may_see_room(ctx, actor, &id, &record)? => Ok((id, record)),
        _ => {
            Err(Refusal::not_found(format!("There is no room {name} on the board {}.", board.slug)))
        }
    }
}

/// The API client acting, for an operation only a client's virtual user may run (a Matrix
/// user does it from their own Matrix client).
pub(crate) fn client<'a>(actor: &'a Actor, op: &OpSpec) -> OpResult<&'a ClientScope> {
    actor.client.as_ref().ok_or_else(|| {
        Refusal::forbidden(format!(
            "Only an API client's virtual users can {} through Boardroom; {} does it from their Matrix client.",
            op.doing,
            actor.user_id()
        ))
    })
}
