//! Keeps the board index current from the state events the homeserver sends, and builds
//! it from a room's full state (when a board or board room is first seen, and for
//! `boardroom reindex`). The index is a fold of Matrix room state: every write here is
//! idempotent, so replaying an event is harmless.

use ruma::{
    OwnedRoomId, RoomId, UserId,
    api::client::state::get_state_events,
    events::{
        AnyStateEvent, StateEvent, StaticEventContent,
        room::{create::RoomCreateEventContent, member::MembershipState},
    },
    serde::Raw,
};

use crate::domain::board::{
    BoardEventContent, BoardRecord, BoardRoomEventContent, RoomRecord, creators_privileged,
};
use crate::{
    context::Context,
    domain::{Action, EVENT_TYPE_PREFIX},
    error::Result,
    matrix::{HomeserverClient, HsError},
    store::Store,
};

/// Applies one state event of `room_id` to the index; returns the actions it calls for
/// (kicks from private rooms when someone leaves a board). Boards and rooms seen for the
/// first time are indexed from their full state, fetched from the homeserver.
pub(crate) async fn apply_state_event(ctx: &Context, event: &AnyStateEvent) -> Result<Vec<Action>> {
    let room_id = event.room_id();
    let store = &ctx.store;
    let ty = event.event_type().to_string();
    let bot = &ctx.settings.bot_user_id;
    if ty.starts_with(EVENT_TYPE_PREFIX) && event.sender() != bot {
        // Boardroom's own state counts only when the bot wrote it (see the trust model in
        // docs/SECURITY.md): anyone else's is never indexed. Changes in a board's own
        // rooms are put back by the handler.
        tracing::debug!(room_id = %room_id, sender = %event.sender(), r#type = %ty, "ignoring Boardroom state not written by the bot");
        return Ok(Vec::new());
    }
    // A board or board room not yet indexed: index it from its whole state.
    if (ty == BoardEventContent::TYPE && store.board_by_space(room_id)?.is_none())
        || (ty == BoardRoomEventContent::TYPE && store.room(room_id)?.is_none())
    {
        match fetch_state(&ctx.client, room_id).await {
            Ok(state) => {
                apply_room_state(store, bot, room_id, &state)?;
            }
            Err(e) => {
                tracing::error!(room_id = %room_id, error = %e, "cannot read the state of a new board room")
            }
        }
        return Ok(Vec::new());
    }

    let board = store.board_by_space(room_id)?;
    let room = store.room(room_id)?;
    if board.is_none() && room.is_none() {
        return Ok(Vec::new());
    }
    let mut actions = Vec::new();
    match event {
        AnyStateEvent::RoomMember(StateEvent::Original(ev)) => {
            let user = &ev.state_key;
            let membership = &ev.content.membership;
            let space_of = board.as_ref().map(|b| b.slug.as_str());
            store.set_membership(
                room_id,
                user,
                membership,
                ev.content.displayname.as_deref(),
                space_of,
            )?;
            // Leaving (or being removed from) a board takes you out of its private rooms.
            if let Some(b) = &board
                && matches!(membership, MembershipState::Leave | MembershipState::Ban)
                && !ctx.settings.is_ours(user)
            {
                for (private_room, rec) in store.rooms_of(&b.slug)? {
                    let m = store.membership(&private_room, user)?;
                    if rec.private
                        && matches!(m, Some(MembershipState::Join | MembershipState::Invite))
                    {
                        actions.push(Action::Kick {
                            room_id: private_room,
                            user_id: user.clone(),
                            reason: Some(format!("no longer a member of the board {}", b.slug)),
                        });
                    }
                }
            }
        }
        AnyStateEvent::RoomPowerLevels(StateEvent::Original(ev)) => {
            if let Some(mut b) = board {
                b.power_users =
                    ev.content.users.iter().map(|(u, l)| (u.clone(), i64::from(*l))).collect();
                b.users_default = i64::from(ev.content.users_default);
                store.put_board(&b)?;
            }
        }
        AnyStateEvent::SpaceChild(StateEvent::Original(ev)) => {
            if let Some(b) = &board
                && ev.content.via.is_empty()
                && store.room(&ev.state_key)?.is_some_and(|r| r.board == b.slug)
            {
                tracing::info!(board = %b.slug, room_id = %ev.state_key, "room unlinked from its board");
                store.remove_room(&ev.state_key)?;
            }
        }
        _ => {}
    }
    Ok(actions)
}

/// Reads a room's whole current state.
pub(crate) async fn fetch_state(
    client: &HomeserverClient,
    room_id: &RoomId,
) -> Result<Vec<Raw<AnyStateEvent>>, HsError> {
    Ok(client.send(get_state_events::v3::Request::new(room_id.to_owned()), None).await?.room_state)
}

/// Indexes a room from its whole state: a board (its space: record, roles, members) or a
/// board room (record, members). Only Boardroom's own state counts: a
/// `dev.boardroom.board` or `dev.boardroom.room` (empty state key) that `bot` sent; a
/// board whose slug is bound to another space (or a space bound to another slug) is
/// left alone. A board room replaced by an upgrade is not indexed; what it was is
/// returned so the caller can carry it over to its replacement, once it has checked that
/// the replacement names this room as its predecessor ([`replaces`]).
pub(crate) fn apply_room_state(
    store: &Store,
    bot: &UserId,
    room_id: &RoomId,
    state: &[Raw<AnyStateEvent>],
) -> Result<Indexed> {
    let events: Vec<AnyStateEvent> = state.iter().filter_map(|r| r.deserialize().ok()).collect();
    let find = |ty: &str| {
        state.iter().find(|r| {
            r.get_field::<String>("type").ok().flatten().as_deref() == Some(ty)
                && r.get_field::<String>("state_key").ok().flatten().as_deref() == Some("")
                && sent_by(r, bot)
        })
    };
    let content_of =
        |raw: &Raw<AnyStateEvent>| raw.get_field::<serde_json::Value>("content").ok().flatten();

    if let Some(raw) = find(BoardEventContent::TYPE)
        && let Some(content) = content_of(raw)
        && let Ok(board) = serde_json::from_value::<BoardEventContent>(content)
    {
        let elsewhere = store.board(&board.slug)?.filter(|b| b.space_id != room_id);
        let other = store.board_by_space(room_id)?.filter(|b| b.slug != board.slug);
        if elsewhere.is_some() || other.is_some() {
            tracing::warn!(room_id = %room_id, board = %board.slug, "not indexing a board whose slug or space is bound elsewhere");
            return Ok(Indexed::Nothing);
        }
        let mut record = BoardRecord {
            slug: board.slug.clone(),
            space_id: room_id.to_owned(),
            name: board.name,
            created_by: board.created_by,
            created_by_event: board.created_by_event,
            creators: Vec::new(),
            power_users: Default::default(),
            users_default: 0,
            columns: board.columns,
        };
        for e in &events {
            match e {
                AnyStateEvent::RoomCreate(StateEvent::Original(ev)) => {
                    record.creators = creators(&ev.content, &ev.sender);
                }
                AnyStateEvent::RoomPowerLevels(StateEvent::Original(ev)) => {
                    record.power_users =
                        ev.content.users.iter().map(|(u, l)| (u.clone(), i64::from(*l))).collect();
                    record.users_default = i64::from(ev.content.users_default);
                }
                _ => {}
            }
        }
        store.put_board(&record)?;
        index_members(store, room_id, &events, Some(&board.slug))?;
        return Ok(Indexed::Board(board.slug));
    }
    if let Some(raw) = find(BoardRoomEventContent::TYPE)
        && let Some(content) = content_of(raw)
        && let Ok(room) = serde_json::from_value::<BoardRoomEventContent>(content)
    {
        let record = RoomRecord {
            board: room.board,
            name: room.name,
            kind: room.kind,
            private: room.private,
            pending_move_from: None,
        };
        if let Some(new) = events.iter().find_map(tombstone_target) {
            return Ok(Indexed::Replaced { by: new, record });
        }
        store.put_room(room_id, &record)?;
        index_members(store, room_id, &events, None)?;
        return Ok(Indexed::Room(record.board));
    }
    Ok(Indexed::Nothing)
}

/// Whether `raw` was sent by `user`.
pub(crate) fn sent_by(raw: &Raw<AnyStateEvent>, user: &UserId) -> bool {
    raw.get_field::<String>("sender").ok().flatten().as_deref() == Some(user.as_str())
}

/// Whether the room whose state this is replaced `old`: its `m.room.create` names `old` as
/// its predecessor. An upgrade is followed only then — a tombstone alone (whoever sent it)
/// cannot point a board room at some other room.
pub(crate) fn replaces(state: &[Raw<AnyStateEvent>], old: &RoomId) -> bool {
    state.iter().filter_map(|r| r.deserialize().ok()).any(|e| match e {
        AnyStateEvent::RoomCreate(StateEvent::Original(ev)) => {
            ev.content.predecessor.is_some_and(|p| p.room_id == old)
        }
        _ => false,
    })
}

/// What [`apply_room_state`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Indexed {
    /// A board's space.
    Board(String),
    /// A room of this board.
    Room(String),
    /// A board room replaced by an upgrade: its record belongs to `by`.
    Replaced {
        /// The replacement room.
        by: OwnedRoomId,
        /// The board room it was.
        record: RoomRecord,
    },
    /// Not Boardroom's.
    Nothing,
}

/// Records every membership in a room's state.
pub(crate) fn index_members_from_state(
    store: &Store,
    room_id: &RoomId,
    state: &[Raw<AnyStateEvent>],
) -> Result<()> {
    let events: Vec<AnyStateEvent> = state.iter().filter_map(|r| r.deserialize().ok()).collect();
    index_members(store, room_id, &events, None)
}

/// Records the memberships in `state` that the index does not hold yet for `room_id`,
/// leaving the ones it holds alone (the room's lane may have recorded newer ones). For a
/// room Boardroom has just created and recorded: its first events (the bot's join, the
/// invites) may have been handled in the room's lane before the record existed, and were
/// then not indexed.
pub(crate) fn index_missing_members(
    store: &Store,
    room_id: &RoomId,
    state: &[Raw<AnyStateEvent>],
    space_of: Option<&str>,
) -> Result<()> {
    let events: Vec<AnyStateEvent> = state.iter().filter_map(|r| r.deserialize().ok()).collect();
    record_members(store, room_id, &events, space_of, true)
}

fn index_members(
    store: &Store,
    room_id: &RoomId,
    events: &[AnyStateEvent],
    space_of: Option<&str>,
) -> Result<()> {
    record_members(store, room_id, events, space_of, false)
}

/// Records the memberships among `events`; with `missing_only`, only those of users the
/// index holds no membership of in `room_id`.
fn record_members(
    store: &Store,
    room_id: &RoomId,
    events: &[AnyStateEvent],
    space_of: Option<&str>,
    missing_only: bool,
) -> Result<()> {
    for e in events {
        if let AnyStateEvent::RoomMember(StateEvent::Original(ev)) = e
            && !(missing_only && store.membership(room_id, &ev.state_key)?.is_some())
        {
            store.set_membership(
                room_id,
                &ev.state_key,
                &ev.content.membership,
                ev.content.displayname.as_deref(),
                space_of,
            )?;
        }
    }
    Ok(())
}

/// The users with unlimited power: the creator and additional creators, from room
/// version 12 on.
pub(crate) fn creators(
    content: &RoomCreateEventContent,
    sender: &ruma::UserId,
) -> Vec<ruma::OwnedUserId> {
    if !creators_privileged(&content.room_version) {
        return Vec::new();
    }
    let mut c = vec![sender.to_owned()];
    c.extend(content.additional_creators.iter().cloned());
    c
}

/// The room a tombstone points to, if `event` is one.
pub(crate) fn tombstone_target(event: &AnyStateEvent) -> Option<OwnedRoomId> {
    match event {
        AnyStateEvent::RoomTombstone(StateEvent::Original(ev)) => {
            Some(ev.content.replacement_room.clone())
        }
        _ => None,
    }
}
