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
    /// What keeps the bot from acting there, when something does.
    pub problem: Option<&'static str>,
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
        let problem = if r.pending_move_from.is_some() {
            Some("waits for an admin to give Boardroom power 100 there")
        } else if ctx.store.noted(&room_id, "encrypted")? && !ctx.settings.raw.encryption.enabled {
            Some("end-to-end encrypted, and Boardroom's encryption is off: it reads nothing there")
        } else if ctx.store.noted(&room_id, "undecryptable")? {
            Some("a message there could not be decrypted")
        } else if ctx.store.noted(&room_id, crate::store::boards::REFUSED_NOTE)? {
            Some(
                "the homeserver refused one of Boardroom's requests there: see `boardroom dead-letters`",
            )
        } else {
            None
        };
        rooms.push(RoomInfo {
            name: r.name,
            kind: r.kind,
            private: r.private,
            alias,
            room_id,
            problem,
        });
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

#[cfg(test)]
mod tests {
    use ruma::{RoomId, owned_user_id};

    use super::*;
    use crate::{
        Config,
        app::App,
        domain::board::{BoardRecord, RoomRecord},
    };

    #[test]
    fn info_flags_a_room_the_bot_said_it_cannot_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config::offline(&dir.path().join("db"), "").expect("config");
        let app = App::new(config.validate().expect("valid")).expect("app");
        let store = &app.ctx.store;
        let alice = owned_user_id!("@alice:localhost");
        let space = RoomId::parse("!space:localhost").expect("room id");
        let general = RoomId::parse("!general:localhost").expect("room id");
        store.put_board(&BoardRecord::example("launch", &space, &alice)).expect("board");
        let record = RoomRecord {
            board: "launch".into(),
            name: "general".into(),
            kind: RoomKind::Chat,
            private: false,
            pending_move_from: None,
        };
        store.put_room(&general, &record).expect("room");
        store
            .set_membership(&space, &alice, &MembershipState::Join, None, Some("launch"))
            .expect("member");
        let actor = Actor { user_id: alice, client: None, token: None };
        let req = Request {
            actor: &actor,
            cause: ruma::event_id!("$info"),
            seq: 0,
            room: None,
            thread: None,
        };
        let problem = |app: &App| {
            info(&app.ctx, &req, BoardRef::Slug("launch")).expect("info").rooms[0].problem
        };
        assert_eq!(problem(&app), None);
        // The bot told the room it cannot read it (encryption off): `!board info` says so.
        assert!(store.note_once(&general, "encrypted").expect("note"));
        assert!(!store.note_once(&general, "encrypted").expect("note"), "once");
        assert!(problem(&app).is_some_and(|p| p.contains("encryption is off")));
    }
}
