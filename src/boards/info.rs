//! `!board info`: a board's rooms, members and roles, and its tasks per column.

use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, events::room::member::MembershipState};

use super::{access, rooms::alias};
use crate::{
    context::Context,
    domain::{
        board::{BoardRecord, Role, RoomKind, room_alias_localpart},
        op::{Actor, BoardRef, OpResult, OpSpec, Permission, Request},
    },
};

/// `!board info`.
pub(crate) const INFO: OpSpec = OpSpec { permission: Permission::BoardMember, doing: "see it" };

/// A board, as its members see it.
#[derive(Debug, Clone)]
pub(crate) struct BoardInfo {
    /// Its record.
    pub board: BoardRecord,
    /// Its rooms: name, kind, private, alias.
    pub rooms: Vec<RoomInfo>,
    /// Its members and invitees (Boardroom's own users left out), by role then id.
    pub members: Vec<MemberInfo>,
    /// Tasks per column, in the board's column order.
    pub columns: Vec<(String, u64)>,
}

/// One of a board's rooms.
#[derive(Debug, Clone)]
pub(crate) struct RoomInfo {
    /// Its short name.
    pub name: String,
    /// Chat or tasks.
    pub kind: RoomKind,
    /// Invite-only.
    pub private: bool,
    /// Its alias.
    pub alias: OwnedRoomAliasId,
    /// Its id.
    pub room_id: OwnedRoomId,
}

/// One of a board's members.
#[derive(Debug, Clone)]
pub(crate) struct MemberInfo {
    /// Who.
    pub user_id: OwnedUserId,
    /// Their role, from the space's power levels.
    pub role: Role,
    /// Invited, not joined yet.
    pub invited: bool,
}

/// The board `at`, for a member.
pub(crate) fn info(ctx: &Context, req: &Request<'_>, at: BoardRef<'_>) -> OpResult<BoardInfo> {
    let board = access::board(ctx, req.actor, at, &INFO)?;
    let prefix = &ctx.settings.raw.appservice.namespace_prefix;
    let mut rooms = Vec::new();
    for (room_id, r) in ctx.store.rooms_of(&board.slug)? {
        let alias = alias(ctx, &room_alias_localpart(prefix, &board.slug, &r.name))?;
        rooms.push(RoomInfo { name: r.name, kind: r.kind, private: r.private, alias, room_id });
    }
    let mut members: Vec<MemberInfo> = ctx
        .store
        .members(&board.space_id)?
        .into_iter()
        .filter(|(u, m)| {
            !ctx.settings.is_ours(u) && matches!(m, MembershipState::Join | MembershipState::Invite)
        })
        .map(|(u, m)| MemberInfo {
            role: board.role_of(&u),
            user_id: u,
            invited: m == MembershipState::Invite,
        })
        .collect();
    members.sort_by(|a, b| b.role.cmp(&a.role).then(a.user_id.cmp(&b.user_id)));
    // Tasks per column, in the board's column order, from the counts kept with the tasks.
    let mut columns = Vec::with_capacity(board.columns.len());
    for c in &board.columns {
        columns.push((c.clone(), ctx.store.column_count(&board.slug, c)?));
    }
    Ok(BoardInfo { board, rooms, members, columns })
}

/// The boards `actor` is on, with their role: a Matrix user's joined boards; a client's
/// boards within its scope.
pub(crate) fn mine(ctx: &Context, actor: &Actor) -> OpResult<Vec<(BoardRecord, Role)>> {
    let boards = match &actor.client {
        None => {
            let mut out = Vec::new();
            for slug in ctx.store.boards_of(&actor.user_id)? {
                if let Some(b) = ctx.store.board(&slug)? {
                    out.push(b);
                }
            }
            out
        }
        Some(c) => ctx.store.boards()?.into_iter().filter(|b| c.may_act_on(&b.slug)).collect(),
    };
    Ok(boards
        .into_iter()
        .map(|b| {
            let role = b.role_of(&actor.user_id);
            (b, role)
        })
        .collect())
}
