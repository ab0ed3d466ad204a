//! `!board create`: a board is a space with the rooms `general` and `tasks`. Each step is
//! idempotent (rooms are found again by their alias), so a request interrupted by a crash
//! is simply run again; a slug already taken by another request is refused.

use ruma::{OwnedRoomAliasId, events::InitialStateEvent};

use super::{
    access,
    rooms::{
        RoomSpec, alias, default_room_version, ensure_room, index_created_members, link_child,
        own_state_content, room_initial_state,
    },
};
use crate::{
    context::Context,
    domain::{
        board::{
            BoardEventContent, BoardRecord, BoardRoomEventContent, RoomKind, RoomRecord,
            creators_privileged, default_columns, room_alias_localpart, space_alias_localpart,
            validate_board_name, validate_slug, validate_topic,
        },
        op::{OpResult, OpSpec, Permission, Refusal, Request},
    },
};

/// `!board create`.
pub(crate) const CREATE: OpSpec =
    OpSpec { permission: Permission::BoardCreator, doing: "create boards" };

/// A board to create.
#[derive(Debug, Clone)]
pub(crate) struct NewBoard {
    /// Its slug (validated here).
    pub slug: String,
    /// Its display name.
    pub name: String,
    /// The topic of its space; a default naming the board when `None`.
    pub topic: Option<String>,
}

/// The board, created.
#[derive(Debug, Clone)]
pub(crate) struct CreatedBoard {
    /// Its record.
    pub board: BoardRecord,
    /// Its space's alias.
    pub space_alias: OwnedRoomAliasId,
    /// The alias of its `general` room.
    pub general: OwnedRoomAliasId,
    /// The alias of its `tasks` room.
    pub tasks: OwnedRoomAliasId,
}

/// Creates a board: its space and the rooms `general` and `tasks`, the actor their owner.
pub(crate) async fn create(
    ctx: &Context,
    req: &Request<'_>,
    input: &NewBoard,
) -> OpResult<CreatedBoard> {
    access::may_create_boards(ctx, req.actor)?;
    access::in_scope(req.actor, &input.slug)?;
    // Its rooms' first messages are stored, whatever ingest knows of them meanwhile.
    let _changing = ctx.backlog.changing_rooms(1);
    let settings = &ctx.settings;
    let (slug, name, sender) = (input.slug.as_str(), input.name.as_str(), req.actor.user_id());
    if let Err(why) = validate_slug(slug) {
        return Err(Refusal::invalid(format!("Cannot create the board: {why}.")));
    }
    if let Err(why) = validate_board_name(name) {
        return Err(Refusal::invalid(format!("Cannot create the board: {why}.")));
    }
    if let Some(Err(why)) = input.topic.as_deref().map(validate_topic) {
        return Err(Refusal::invalid(format!("Cannot create the board: {why}.")));
    }
    let prefix = &settings.raw.appservice.namespace_prefix;
    let space_alias = alias(ctx, &space_alias_localpart(prefix, slug))?;
    if let Some(existing) = ctx.store.board(slug)?
        && existing.created_by_event != req.cause
    {
        return Err(Refusal::conflict(format!(
            "The slug `{slug}` is in use by the board {} ({space_alias}). Choose another slug.",
            existing.name
        )));
    }
    let version = default_room_version(ctx).await?;
    let board_state = BoardEventContent {
        slug: slug.to_owned(),
        name: name.to_owned(),
        created_by: sender.to_owned(),
        created_by_event: req.cause.to_owned(),
        columns: default_columns(),
    };
    let (space, _) = ensure_room(
        ctx,
        RoomSpec {
            alias_localpart: space_alias_localpart(prefix, slug),
            name: name.to_owned(),
            topic: input.topic.clone().unwrap_or_else(|| {
                format!(
                    "Task board {name} ({slug}), run by Boardroom. Send !help in any of its rooms."
                )
            }),
            space: true,
            initial_state: vec![
                InitialStateEvent::with_empty_state_key(board_state.clone()).to_raw_any(),
            ],
            invite: vec![sender.to_owned()],
            owner: sender.to_owned(),
            version: version.clone(),
        },
    )
    .await?;
    // Found by its alias: ours only if this very command created it.
    let found: Option<BoardEventContent> = own_state_content(ctx, &space).await;
    if found.as_ref().map(|b| &b.created_by_event) != Some(&board_state.created_by_event) {
        return Err(Refusal::conflict(format!(
            "The slug `{slug}` is in use ({space_alias}). Choose another slug."
        )));
    }

    let mut rooms = Vec::new();
    for (room_name, kind, topic) in [
        ("general", RoomKind::Chat, format!("Chat for the board {name}.")),
        ("tasks", RoomKind::Tasks, format!("The tasks of the board {name}: one thread per task.")),
    ] {
        let record = BoardRoomEventContent {
            board: slug.to_owned(),
            name: room_name.to_owned(),
            kind,
            private: false,
        };
        let (room_id, _) = ensure_room(
            ctx,
            RoomSpec {
                alias_localpart: room_alias_localpart(prefix, slug, room_name),
                name: format!("{name} · {room_name}"),
                topic,
                space: false,
                initial_state: room_initial_state(&space, settings, &record),
                invite: vec![sender.to_owned()],
                owner: sender.to_owned(),
                version: version.clone(),
            },
        )
        .await?;
        link_child(ctx, &space, &room_id, true).await?;
        rooms.push((room_id, record));
    }

    let bot = &settings.bot_user_id;
    let mut record = BoardRecord {
        slug: slug.to_owned(),
        space_id: space.clone(),
        name: name.to_owned(),
        created_by: sender.to_owned(),
        created_by_event: req.cause.to_owned(),
        creators: Vec::new(),
        power_users: Default::default(),
        users_default: 0,
        columns: board_state.columns.clone(),
    };
    if creators_privileged(&version) {
        record.creators = vec![bot.clone(), sender.to_owned()];
    } else {
        record.power_users = [(bot.clone(), 100), (sender.to_owned(), 100)].into_iter().collect();
    }
    // The event stream indexes these too; writing them now makes the board usable at once.
    if ctx.store.board(slug)?.is_none() {
        ctx.store.put_board(&record)?;
    }
    for (room_id, r) in &rooms {
        ctx.store.put_room(
            room_id,
            &RoomRecord {
                board: r.board.clone(),
                name: r.name.clone(),
                kind: r.kind,
                private: false,
                pending_move_from: None,
            },
        )?;
    }
    index_created_members(ctx, &space, Some(slug)).await?;
    for (room_id, _) in &rooms {
        index_created_members(ctx, room_id, None).await?;
    }
    // A client's virtual user, the owner, joins what it was invited to (a Matrix user
    // accepts the invites in their client).
    if req.actor.client.is_some()
        && let Some(intent) = ctx.intent_of(req.actor)
    {
        intent.join(&space).await?;
        for (room_id, _) in &rooms {
            intent.join(room_id).await?;
        }
    }
    let general = alias(ctx, &room_alias_localpart(prefix, slug, "general"))?;
    let tasks = alias(ctx, &room_alias_localpart(prefix, slug, "tasks"))?;
    Ok(CreatedBoard { board: record, space_alias, general, tasks })
}
