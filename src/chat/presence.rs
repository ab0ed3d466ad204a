//! Who is online on a board and who types in which of its rooms, and the presence an API
//! client sets for its virtual user (Matrix presence, so Matrix clients show it).
//!
//! A member's presence is the one last reported for them, if any: by the homeserver (its
//! ephemeral events), or set over the API for a virtual user (which holds for
//! [`API_PRESENCE_HOLDS_MS`], as long as the homeserver keeps a user online that does not
//! sync). Without one, an API request in the last [`ACTIVE_MS`] counts as online.

use std::sync::Arc;

use ruma::{
    OwnedUserId, RoomId, UserId, api::client::presence::set_presence,
    events::room::member::MembershipState, presence::PresenceState,
};

use crate::{
    boards::access,
    context::Context,
    domain::{
        live::{ACTIVE_MS, OnlineMember},
        now_ms,
        op::{BoardRef, OpResult, OpSpec, Permission, Refusal, Request},
    },
};

/// Seeing who is online on a board.
pub(crate) const SEE_PRESENCE: OpSpec =
    OpSpec { permission: Permission::BoardMember, doing: "see who is online" };

/// Setting one's presence (an API client's virtual user).
pub(crate) const SET_PRESENCE: OpSpec =
    OpSpec { permission: Permission::Anyone, doing: "set their presence" };

/// How long a presence set over the API for a virtual user holds (ms): Synapse turns a
/// user that does not sync offline 30 s (its `presence.sync_online_timeout`) after their
/// last presence update, and does not report Boardroom's own users back to it.
pub(crate) const API_PRESENCE_HOLDS_MS: u64 = 30_000;

/// The longest status message taken, in bytes.
pub(crate) const MAX_STATUS_BYTES: usize = 256;

/// A member who is online or away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberPresence {
    /// Who.
    pub user_id: OwnedUserId,
    /// Their display name in the board's space.
    pub display_name: Option<String>,
    /// Online or unavailable.
    pub presence: PresenceState,
    /// How long ago they were last seen active (ms).
    pub last_active_ago: u64,
}

/// Who types in one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoomTyping {
    /// The room's name in the board.
    pub room: String,
    /// Who types there, by user id.
    pub users: Vec<OwnedUserId>,
}

/// A board's presence.
#[derive(Debug, Clone, Default)]
pub(crate) struct BoardPresence {
    /// The members online or away, by user id (the offline are left out).
    pub members: Vec<MemberPresence>,
    /// The rooms someone types in, by name; private rooms only when the actor is in them.
    pub typing: Vec<RoomTyping>,
}

/// Who is online on the board `at`, and who types where. The list of online members is
/// the same for every caller and is reused for
/// [`ONLINE_LIST_TTL_MS`](crate::domain::live::ONLINE_LIST_TTL_MS) unless an API caller
/// changed presence meanwhile ([`crate::domain::live::LiveState::online_list`]); who types
/// is worked out for each caller (private rooms).
pub(crate) fn board(ctx: &Context, req: &Request<'_>, at: BoardRef<'_>) -> OpResult<BoardPresence> {
    let board = access::board(ctx, req.actor, at, &SEE_PRESENCE)?;
    let now = now_ms();
    let online = match ctx.live.online_list(&board.slug, now) {
        Some(list) => list,
        None => {
            let generation = ctx.live.generation();
            let list = Arc::new(online_members(ctx, &board.space_id, now)?);
            ctx.live.remember_online_list(&board.slug, now, generation, list.clone());
            list
        }
    };
    let members = online
        .iter()
        .map(|m| MemberPresence {
            user_id: m.user_id.clone(),
            display_name: m.display_name.clone(),
            presence: m.presence.clone(),
            last_active_ago: now.saturating_sub(m.since_ms),
        })
        .collect();
    let mut typing = Vec::new();
    for (room_id, record) in ctx.store.rooms_of(&board.slug)? {
        let users = ctx.live.typing_at(&room_id, now);
        if !users.is_empty() && access::may_see_room(ctx, req.actor, &room_id, &record)? {
            typing.push(RoomTyping { room: record.name, users });
        }
    }
    typing.sort_by(|a, b| a.room.cmp(&b.room));
    Ok(BoardPresence { members, typing })
}

/// The members of the board's space `space` online or away at `now`, by user id.
fn online_members(ctx: &Context, space: &RoomId, now: u64) -> OpResult<Vec<OnlineMember>> {
    let mut members = Vec::new();
    for user in ctx.live.known_users() {
        let Some((presence, since_ms)) = presence_of(ctx, &user, now) else { continue };
        let Some((MembershipState::Join, display_name)) = ctx.store.member(space, &user)? else {
            continue;
        };
        members.push(OnlineMember { user_id: user, display_name, presence, since_ms });
    }
    members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    Ok(members)
}

/// `user`'s presence at `now` and since when, unless offline (see the module's rules).
fn presence_of(ctx: &Context, user: &UserId, now: u64) -> Option<(PresenceState, u64)> {
    let reported = ctx.live.presence(user).filter(|p| {
        !ctx.settings.is_ours(user) || now.saturating_sub(p.seen_ms) <= API_PRESENCE_HOLDS_MS
    });
    match reported {
        Some(p) if matches!(p.state, PresenceState::Online | PresenceState::Unavailable) => {
            let last = ctx.live.last_active(user).map_or(p.seen_ms, |a| a.max(p.seen_ms));
            Some((p.state, last))
        }
        Some(_) => None,
        None => ctx
            .live
            .last_active(user)
            .filter(|a| now.saturating_sub(*a) <= ACTIVE_MS)
            .map(|a| (PresenceState::Online, a)),
    }
}

/// Sets the presence of the actor, an API client's virtual user, on the homeserver (so
/// Matrix clients show it) and in Boardroom's answer; it holds for
/// [`API_PRESENCE_HOLDS_MS`] unless set again.
pub(crate) async fn set(
    ctx: &Context,
    req: &Request<'_>,
    presence: PresenceState,
    status_msg: Option<&str>,
) -> OpResult<()> {
    access::client(req.actor, &SET_PRESENCE)?;
    if !matches!(
        presence,
        PresenceState::Online | PresenceState::Unavailable | PresenceState::Offline
    ) {
        return Err(Refusal::invalid("presence must be online, unavailable or offline"));
    }
    if status_msg.is_some_and(|m| m.len() > MAX_STATUS_BYTES) {
        return Err(Refusal::invalid(format!("status_msg has at most {MAX_STATUS_BYTES} bytes")));
    }
    let user = req.actor.user_id();
    let Some(intent) = ctx.intent_of(req.actor) else {
        return Err(Refusal::forbidden("Boardroom cannot speak for this caller."));
    };
    let mut request = set_presence::v3::Request::new(user.to_owned(), presence.clone());
    request.status_msg = status_msg.map(str::to_owned);
    intent.send(request).await?;
    ctx.live.set_presence_by_api(user.to_owned(), presence.clone());
    tracing::info!(user_id = %user, presence = %presence, "presence set");
    Ok(())
}
