//! A board's rooms: creating them (idempotently: a room is found again by its alias, so a
//! request interrupted by a crash is simply run again), linking them into the space, and
//! the `!board room` operation.

use ruma::{
    OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, RoomVersionId,
    api::client::{
        alias::get_alias,
        discovery::get_capabilities,
        room::{Visibility, create_room},
        state::{get_state_event_for_key, send_state_event},
    },
    events::{
        AnyInitialStateEvent, InitialStateEvent, StateEventType, StaticEventContent,
        room::join_rules::{AllowRule, RoomJoinRulesEventContent},
        space::{child::SpaceChildEventContent, parent::SpaceParentEventContent},
    },
    room::RoomType,
    serde::Raw,
};

use super::{access, index};
use crate::{
    context::Context,
    domain::{
        board::{
            BoardRoomEventContent, RoomKind, RoomRecord, creators_privileged, power_levels,
            room_alias_localpart, validate_room_name,
        },
        op::{BoardRef, OpResult, OpSpec, Permission, Refusal, Request},
    },
    matrix::{HsError, html::strip_bidi_controls},
};

/// `!board room`: add a chat room to the board.
pub(crate) const ADD_ROOM: OpSpec =
    OpSpec { permission: Permission::BoardMember, doing: "add rooms" };

/// A room to add.
#[derive(Debug, Clone)]
pub(crate) struct NewRoom {
    /// Short name (validated here).
    pub name: String,
    /// Invite-only, for the listed members.
    pub private: bool,
    /// Members of a private room besides the actor; each must be a board member.
    pub members: Vec<OwnedUserId>,
}

/// The room, added.
#[derive(Debug, Clone)]
pub(crate) struct AddedRoom {
    /// Its room id.
    pub room_id: OwnedRoomId,
    /// Its alias.
    pub alias: OwnedRoomAliasId,
    /// Invite-only.
    pub private: bool,
    /// The board's display name.
    pub board_name: String,
}

/// Adds a chat room to the board `at`: public rooms are open to the board's members,
/// private ones invite-only for the listed members.
pub(crate) async fn add_room(
    ctx: &Context,
    req: &Request<'_>,
    at: BoardRef<'_>,
    input: &NewRoom,
) -> OpResult<AddedRoom> {
    let board = access::board(ctx, req.actor, at, &ADD_ROOM)?;
    // Its first messages are stored, whatever ingest knows of it meanwhile.
    let _changing = ctx.backlog.changing_rooms(1);
    let (name, private, sender) = (input.name.as_str(), input.private, req.actor.user_id());
    if let Err(why) = validate_room_name(name) {
        return Err(Refusal::invalid(format!("Cannot add the room: {why}.")));
    }
    for m in &input.members {
        if !ctx.store.is_board_member(&board.slug, m)? {
            return Err(Refusal::invalid(format!(
                "{m} is not a member of the board {}.",
                board.slug
            )));
        }
    }
    let prefix = &ctx.settings.raw.appservice.namespace_prefix;
    let room_alias = alias(ctx, &room_alias_localpart(prefix, &board.slug, name))?;
    if ctx.store.rooms_of(&board.slug)?.iter().any(|(_, r)| r.name == name) {
        return Err(Refusal::conflict(format!(
            "The board already has a room named {name} ({room_alias})."
        )));
    }
    let record = BoardRoomEventContent {
        board: board.slug.clone(),
        name: name.to_owned(),
        kind: RoomKind::Chat,
        private,
    };
    let mut invite = vec![sender.to_owned()];
    invite.extend(input.members.iter().filter(|m| *m != sender).cloned());
    if !private && board.created_by != sender {
        invite.push(board.created_by.clone());
    }
    let version = default_room_version(ctx).await?;
    let (room_id, _) = ensure_room(
        ctx,
        RoomSpec {
            alias_localpart: room_alias_localpart(prefix, &board.slug, name),
            name: format!("{} · {name}", board.name),
            topic: format!(
                "{} room of the board {}.",
                if private { "A private" } else { "A" },
                board.name
            ),
            space: false,
            initial_state: room_initial_state(&board.space_id, &ctx.settings, &record),
            invite,
            owner: board.created_by.clone(),
            version,
        },
    )
    .await?;
    let found: Option<BoardRoomEventContent> = own_state_content(ctx, &room_id).await;
    if found.as_ref().map(|r| r.board.as_str()) != Some(board.slug.as_str()) {
        return Err(Refusal::conflict(format!("The alias {room_alias} is in use.")));
    }
    link_child(ctx, &board.space_id, &room_id, true).await?;
    ctx.store.put_room(
        &room_id,
        &RoomRecord {
            board: board.slug.clone(),
            name: name.to_owned(),
            kind: RoomKind::Chat,
            private,
            pending_move_from: None,
        },
    )?;
    index_created_members(ctx, &room_id, None).await?;
    Ok(AddedRoom { room_id, alias: room_alias, private, board_name: board.name })
}

/// Listing a board's rooms.
pub(crate) const LIST_ROOMS: OpSpec =
    OpSpec { permission: Permission::BoardMember, doing: "list its rooms" };

/// A room of a board, as a member sees it.
#[derive(Debug, Clone)]
pub(crate) struct RoomInfo {
    /// Its short name (`general`).
    pub name: String,
    /// Its room id.
    pub room_id: OwnedRoomId,
    /// Its alias.
    pub alias: OwnedRoomAliasId,
    /// Chat or tasks.
    pub kind: RoomKind,
    /// Invite-only.
    pub private: bool,
}

/// The rooms of the board `at` that the actor may see (private rooms only when in them:
/// [`access::may_see_room`]), by name.
pub(crate) fn list(ctx: &Context, req: &Request<'_>, at: BoardRef<'_>) -> OpResult<Vec<RoomInfo>> {
    let board = access::board(ctx, req.actor, at, &LIST_ROOMS)?;
    let prefix = &ctx.settings.raw.appservice.namespace_prefix;
    let mut out = Vec::new();
    for (room_id, record) in ctx.store.rooms_of(&board.slug)? {
        if !access::may_see_room(ctx, req.actor, &room_id, &record)? {
            continue;
        }
        out.push(RoomInfo {
            alias: alias(ctx, &room_alias_localpart(prefix, &board.slug, &record.name))?,
            name: record.name,
            room_id,
            kind: record.kind,
            private: record.private,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub(super) fn alias(ctx: &Context, localpart: &str) -> OpResult<OwnedRoomAliasId> {
    RoomAliasId::parse(format!("#{localpart}:{}", ctx.settings.server_name))
        .map_err(|e| Refusal::Failed(crate::Error::Internal(format!("alias: {e}"))))
}

pub(super) async fn default_room_version(ctx: &Context) -> Result<RoomVersionId, HsError> {
    ctx.room_version
        .get_or_try_init(|| async {
            let caps = ctx.client.send(get_capabilities::v3::Request::new(), None).await?;
            Ok(caps.capabilities.room_versions.default)
        })
        .await
        .cloned()
}

/// What to create.
pub(super) struct RoomSpec {
    pub(super) alias_localpart: String,
    pub(super) name: String,
    pub(super) topic: String,
    pub(super) space: bool,
    pub(super) initial_state: Vec<Raw<AnyInitialStateEvent>>,
    pub(super) invite: Vec<OwnedUserId>,
    pub(super) owner: OwnedUserId,
    pub(super) version: RoomVersionId,
}

/// Creates a room, or finds the one a previous run of the same command created.
pub(super) async fn ensure_room(ctx: &Context, spec: RoomSpec) -> OpResult<(OwnedRoomId, bool)> {
    let mut req = create_room::v3::Request::new();
    req.room_alias_name = Some(spec.alias_localpart.clone());
    // Names and topics carry board names people chose: no bidi control in them either
    // (docs/SECURITY.md, "Hostile content").
    req.name = Some(strip_bidi_controls(&spec.name).into_owned());
    req.topic = Some(strip_bidi_controls(&spec.topic).into_owned());
    req.preset = Some(create_room::v3::RoomPreset::PrivateChat);
    req.visibility = Visibility::Private;
    req.invite = spec.invite;
    req.initial_state = spec.initial_state;
    req.room_version = Some(spec.version.clone());
    let mut creation = create_room::v3::CreationContent::new();
    if spec.space {
        creation.room_type = Some(RoomType::Space);
    }
    let bot = &ctx.settings.bot_user_id;
    if creators_privileged(&spec.version) && spec.owner != *bot {
        creation.additional_creators = vec![spec.owner.clone()];
    }
    req.creation_content = Some(
        Raw::new(&creation).map_err(|e| Refusal::Failed(crate::Error::Internal(e.to_string())))?,
    );
    if let Some(pl) = power_levels(&spec.version, bot, &spec.owner) {
        req.power_level_content_override = Some(
            Raw::new(&create_room::RoomPowerLevelsContentOverride::from(pl))
                .map_err(|e| Refusal::Failed(crate::Error::Internal(e.to_string())))?,
        );
    }
    match ctx.client.send(req, None).await {
        Ok(resp) => Ok((resp.room_id, true)),
        Err(e) if e.is_room_in_use() => {
            let alias = alias(ctx, &spec.alias_localpart)?;
            let found = ctx.client.send(get_alias::v3::Request::new(alias), None).await?;
            Ok((found.room_id, false))
        }
        Err(e) => Err(e.into()),
    }
}

/// Indexes the members of a room Boardroom has just created and recorded, from its whole
/// state: its first membership events may have been handled in the room's own lane before
/// the record existed (rooms are handled in parallel), and were then not indexed. Only
/// memberships the index does not hold are written.
pub(super) async fn index_created_members(
    ctx: &Context,
    room: &RoomId,
    space_of: Option<&str>,
) -> OpResult<()> {
    let state = index::fetch_state(&ctx.client, room).await?;
    index::index_missing_members(&ctx.store, room, &state, space_of)?;
    Ok(())
}

/// The content of the state event `T` (empty state key) in `room`, whoever sent it.
pub(super) async fn state_content<T: serde::de::DeserializeOwned + StaticEventContent>(
    ctx: &Context,
    room: &RoomId,
) -> Option<T> {
    let req = get_state_event_for_key::v3::Request::new(
        room.to_owned(),
        StateEventType::from(T::TYPE),
        String::new(),
    );
    let resp = ctx.client.send(req, None).await.ok()?;
    serde_json::from_str(resp.event_or_content.get()).ok()
}

/// The content of Boardroom's own state event `T` in `room`: `None` when there is none,
/// or when someone other than the bot wrote the current one (it does not count).
pub(super) async fn own_state_content<T: serde::de::DeserializeOwned + StaticEventContent>(
    ctx: &Context,
    room: &RoomId,
) -> Option<T> {
    let mut req = get_state_event_for_key::v3::Request::new(
        room.to_owned(),
        StateEventType::from(T::TYPE),
        String::new(),
    );
    req.format = get_state_event_for_key::v3::StateEventFormat::Event;
    let event = ctx.client.send(req, None).await.ok()?.into_event();
    if !index::sent_by(&event, &ctx.settings.bot_user_id) {
        return None;
    }
    event.get_field::<T>("content").ok().flatten()
}

pub(super) async fn link_child(
    ctx: &Context,
    space: &RoomId,
    child: &RoomId,
    linked: bool,
) -> Result<(), HsError> {
    let via = if linked { vec![ctx.settings.server_name.clone()] } else { Vec::new() };
    let mut content = SpaceChildEventContent::new(via);
    content.suggested = linked;
    let req = send_state_event::v3::Request::new(space.to_owned(), &child.to_owned(), &content)
        .map_err(|e| HsError::Protocol { endpoint: "send_state_event", message: e.to_string() })?;
    ctx.client.send(req, None).await?;
    Ok(())
}

/// A board room's initial state: its Boardroom state, its space, who may join; encrypted
/// when `[encryption] encrypt_new_rooms` says so.
pub(super) fn room_initial_state(
    space: &RoomId,
    settings: &crate::config::Settings,
    record: &BoardRoomEventContent,
) -> Vec<Raw<AnyInitialStateEvent>> {
    let server = &settings.server_name;
    let mut parent = SpaceParentEventContent::new(vec![server.to_owned()]);
    parent.canonical = true;
    let join_rules = if record.private {
        RoomJoinRulesEventContent::new(ruma::room::JoinRule::Invite)
    } else {
        RoomJoinRulesEventContent::restricted(vec![AllowRule::room_membership(space.to_owned())])
    };
    let mut state = vec![
        InitialStateEvent::with_empty_state_key(record.clone()).to_raw_any(),
        InitialStateEvent::new(space.to_owned(), parent).to_raw_any(),
        InitialStateEvent::with_empty_state_key(join_rules).to_raw_any(),
    ];
    if settings.raw.encryption.encrypt_new_rooms {
        let encryption =
            ruma::events::room::encryption::RoomEncryptionEventContent::with_recommended_defaults();
        state.push(InitialStateEvent::with_empty_state_key(encryption).to_raw_any());
    }
    state
}
