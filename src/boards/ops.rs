//! Runs `!board …` commands against the homeserver and the index, and follows room
//! upgrades. Each step that creates something is idempotent (rooms are found again by
//! their alias), so a command interrupted by a crash is simply run again on restart: its
//! inbound event is still pending.

use ruma::{
    EventId, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, RoomVersionId,
    UserId,
    api::client::{
        alias::get_alias,
        discovery::get_capabilities,
        membership::{invite_user, join_room_by_id, kick_user, leave_room},
        profile::get_profile,
        room::{Visibility, create_room},
        state::{get_state_event_for_key, send_state_event},
    },
    events::{
        AnyInitialStateEvent, InitialStateEvent, Mentions, StateEventType, StaticEventContent,
        room::{
            create::RoomCreateEventContent,
            join_rules::{AllowRule, RoomJoinRulesEventContent},
            member::MembershipState,
            message::RoomMessageEventContent,
            power_levels::RoomPowerLevelsEventContent,
        },
        space::{child::SpaceChildEventContent, parent::SpaceParentEventContent},
    },
    room::RoomType,
    serde::Raw,
};

use super::index;
use crate::domain::board::{
    ADMIN_POWER, BoardEventContent, BoardRecord, BoardRoomEventContent, Role, RoomKind, RoomRecord,
    creators_privileged, power_levels, room_alias_localpart, space_alias_localpart,
    validate_room_name, validate_slug,
};
use crate::{
    commands::{
        Listing, Reply,
        board::{self as cmd, BoardCommand},
    },
    context::Context,
    domain::{Action, action::derived_txn_id},
    matrix::{HsError, html::escape_html},
};

/// Who ran a command, where.
#[derive(Debug, Clone, Copy)]
pub struct Invocation<'a> {
    /// The command's event.
    pub event_id: &'a EventId,
    /// Who sent it.
    pub sender: &'a UserId,
    /// Where.
    pub room_id: &'a RoomId,
    /// The command's place in arrival order.
    pub seq: u64,
}

/// Why a command did not do what it asked.
#[derive(Debug)]
enum Failure {
    /// Refused: what was wrong, and the right form.
    Refused(String, &'static str),
    /// The homeserver refused or failed.
    Homeserver(HsError),
    /// Our own store failed.
    Internal(crate::Error),
}

impl From<HsError> for Failure {
    fn from(e: HsError) -> Self {
        Failure::Homeserver(e)
    }
}

impl From<crate::Error> for Failure {
    fn from(e: crate::Error) -> Self {
        Failure::Internal(e)
    }
}

type Outcome = Result<Reply, Failure>;

fn refuse<T>(why: impl Into<String>, usage: &'static str) -> Result<T, Failure> {
    Err(Failure::Refused(why.into(), usage))
}

fn text(plain: String) -> Reply {
    let html = escape_html(&plain).replace('\n', "<br>");
    Reply { plain, html }
}

/// Runs a `!board` command and says what happened.
pub async fn run(ctx: &Context, inv: &Invocation<'_>, command: BoardCommand) -> Reply {
    let outcome = match command {
        BoardCommand::Create { slug, name } => create(ctx, inv, &slug, &name).await,
        BoardCommand::Invite(user) => invite(ctx, inv, &user).await,
        BoardCommand::Remove(user) => remove(ctx, inv, &user).await,
        BoardCommand::Room { name, private, members } => {
            add_room(ctx, inv, &name, private, &members).await
        }
        BoardCommand::Info => info(ctx, inv).await,
    };
    match outcome {
        Ok(reply) => reply,
        Err(Failure::Refused(why, usage)) => text(format!("{why}\nUsage: {usage}")),
        Err(Failure::Homeserver(e)) => {
            tracing::warn!(error = %e, "a board command failed at the homeserver");
            text(format!("The homeserver refused: {}", e))
        }
        Err(Failure::Internal(e)) => {
            tracing::error!(error = %e, "a board command failed");
            text(
                "Something went wrong inside Boardroom; the admin can find the details in its log."
                    .into(),
            )
        }
    }
}

fn alias(ctx: &Context, localpart: &str) -> Result<OwnedRoomAliasId, Failure> {
    RoomAliasId::parse(format!("#{localpart}:{}", ctx.settings.server_name))
        .map_err(|e| Failure::Internal(crate::Error::Internal(format!("alias: {e}"))))
}

async fn default_room_version(ctx: &Context) -> Result<RoomVersionId, HsError> {
    ctx.room_version
        .get_or_try_init(|| async {
            let caps = ctx.client.send(get_capabilities::v3::Request::new(), None).await?;
            Ok(caps.capabilities.room_versions.default)
        })
        .await
        .cloned()
}

/// What to create.
struct RoomSpec {
    alias_localpart: String,
    name: String,
    topic: String,
    space: bool,
    initial_state: Vec<Raw<AnyInitialStateEvent>>,
    invite: Vec<OwnedUserId>,
    owner: OwnedUserId,
    version: RoomVersionId,
}

/// Creates a room, or finds the one a previous run of the same command created.
async fn ensure_room(ctx: &Context, spec: RoomSpec) -> Result<(OwnedRoomId, bool), Failure> {
    let mut req = create_room::v3::Request::new();
    req.room_alias_name = Some(spec.alias_localpart.clone());
    req.name = Some(spec.name);
    req.topic = Some(spec.topic);
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
        Raw::new(&creation)
            .map_err(|e| Failure::Internal(crate::Error::Internal(e.to_string())))?,
    );
    if let Some(pl) = power_levels(&spec.version, bot, &spec.owner) {
        req.power_level_content_override = Some(
            Raw::new(&create_room::RoomPowerLevelsContentOverride::from(pl))
                .map_err(|e| Failure::Internal(crate::Error::Internal(e.to_string())))?,
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
async fn index_created_members(
    ctx: &Context,
    room: &RoomId,
    space_of: Option<&str>,
) -> Result<(), Failure> {
    let state = index::fetch_state(&ctx.client, room).await?;
    index::index_missing_members(&ctx.store, room, &state, space_of)?;
    Ok(())
}

async fn state_content<T: serde::de::DeserializeOwned>(
    ctx: &Context,
    room: &RoomId,
    ty: &str,
) -> Option<T> {
    let req = get_state_event_for_key::v3::Request::new(
        room.to_owned(),
        StateEventType::from(ty),
        String::new(),
    );
    let resp = ctx.client.send(req, None).await.ok()?;
    serde_json::from_str(resp.event_or_content.get()).ok()
}

/// The content of Boardroom's own state event `T` in `room`: `None` when there is none,
/// or when someone other than the bot wrote the current one (it does not count).
async fn own_state_content<T: serde::de::DeserializeOwned + StaticEventContent>(
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

async fn link_child(
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

fn room_initial_state(
    space: &RoomId,
    server: &ruma::ServerName,
    record: &BoardRoomEventContent,
) -> Vec<Raw<AnyInitialStateEvent>> {
    let mut parent = SpaceParentEventContent::new(vec![server.to_owned()]);
    parent.canonical = true;
    let join_rules = if record.private {
        RoomJoinRulesEventContent::new(ruma::room::JoinRule::Invite)
    } else {
        RoomJoinRulesEventContent::restricted(vec![AllowRule::room_membership(space.to_owned())])
    };
    vec![
        InitialStateEvent::with_empty_state_key(record.clone()).to_raw_any(),
        InitialStateEvent::new(space.to_owned(), parent).to_raw_any(),
        InitialStateEvent::with_empty_state_key(join_rules).to_raw_any(),
    ]
}

async fn create(ctx: &Context, inv: &Invocation<'_>, slug: &str, name: &str) -> Outcome {
    let settings = &ctx.settings;
    if !settings.is_board_creator(inv.sender) {
        return refuse(
            format!(
                "{} may not create boards: only users listed in permissions.board_creators can.",
                inv.sender
            ),
            cmd::CREATE.usage,
        );
    }
    if let Err(why) = validate_slug(slug) {
        return refuse(format!("Cannot create the board: {why}."), cmd::CREATE.usage);
    }
    let prefix = &settings.raw.appservice.namespace_prefix;
    let space_alias = alias(ctx, &space_alias_localpart(prefix, slug))?;
    if let Some(existing) = ctx.store.board(slug)?
        && existing.created_by_event != inv.event_id
    {
        return refuse(
            format!(
                "The slug `{slug}` is in use by the board {} ({space_alias}). Choose another slug.",
                existing.name
            ),
            cmd::CREATE.usage,
        );
    }
    let version = default_room_version(ctx).await?;
    let board_state = BoardEventContent {
        slug: slug.to_owned(),
        name: name.to_owned(),
        created_by: inv.sender.to_owned(),
        created_by_event: inv.event_id.to_owned(),
        columns: crate::domain::task::default_columns(),
    };
    let (space, _) = ensure_room(
        ctx,
        RoomSpec {
            alias_localpart: space_alias_localpart(prefix, slug),
            name: name.to_owned(),
            topic: format!(
                "Task board {name} ({slug}), run by Boardroom. Send !help in any of its rooms."
            ),
            space: true,
            initial_state: vec![
                InitialStateEvent::with_empty_state_key(board_state.clone()).to_raw_any(),
            ],
            invite: vec![inv.sender.to_owned()],
            owner: inv.sender.to_owned(),
            version: version.clone(),
        },
    )
    .await?;
    // Found by its alias: ours only if this very command created it.
    let found: Option<BoardEventContent> = own_state_content(ctx, &space).await;
    if found.as_ref().map(|b| &b.created_by_event) != Some(&board_state.created_by_event) {
        return refuse(
            format!("The slug `{slug}` is in use ({space_alias}). Choose another slug."),
            cmd::CREATE.usage,
        );
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
                initial_state: room_initial_state(&space, &settings.server_name, &record),
                invite: vec![inv.sender.to_owned()],
                owner: inv.sender.to_owned(),
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
        created_by: inv.sender.to_owned(),
        created_by_event: inv.event_id.to_owned(),
        creators: Vec::new(),
        power_users: Default::default(),
        users_default: 0,
        columns: board_state.columns.clone(),
    };
    if creators_privileged(&version) {
        record.creators = vec![bot.clone(), inv.sender.to_owned()];
    } else {
        record.power_users =
            [(bot.clone(), 100), (inv.sender.to_owned(), 100)].into_iter().collect();
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
    let general = alias(ctx, &room_alias_localpart(prefix, slug, "general"))?;
    let tasks = alias(ctx, &room_alias_localpart(prefix, slug, "tasks"))?;
    let plain = format!(
        "Board {name} ({slug}) created: the space {space_alias} with the rooms {general} and {tasks}. \
         {} is its owner and is invited to all three. Invite others with !board invite @user:server in a board room.",
        inv.sender
    );
    let html = format!(
        "Board <b>{}</b> (<code>{slug}</code>) created: the space <a href=\"https://matrix.to/#/{space_alias}\">{space_alias}</a> \
         with the rooms <a href=\"https://matrix.to/#/{general}\">{general}</a> and <a href=\"https://matrix.to/#/{tasks}\">{tasks}</a>. \
         {} is its owner and is invited to all three. Invite others with <code>!board invite @user:server</code> in a board room.",
        escape_html(name),
        escape_html(inv.sender.as_str())
    );
    Ok(Reply { plain, html })
}

/// The board the command's room belongs to (one of its rooms, or its space).
fn board_here(
    ctx: &Context,
    inv: &Invocation<'_>,
    usage: &'static str,
) -> Result<BoardRecord, Failure> {
    if let Some(b) = ctx.store.board_by_space(inv.room_id)? {
        return Ok(b);
    }
    if let Some(r) = ctx.store.room(inv.room_id)?
        && let Some(b) = ctx.store.board(&r.board)?
    {
        return Ok(b);
    }
    refuse("This room is not part of a board: run this command in one of the board's rooms.", usage)
}

fn require_admin(board: &BoardRecord, sender: &UserId, usage: &'static str) -> Result<(), Failure> {
    if board.power_of(sender).at_least(ADMIN_POWER) {
        return Ok(());
    }
    refuse(
        format!(
            "Only board admins (power {ADMIN_POWER} or more in the board's space) can do that; {sender} is a {}.",
            board.role_of(sender).as_str()
        ),
        usage,
    )
}

async fn user_exists(ctx: &Context, user: &UserId) -> Result<bool, HsError> {
    match ctx.client.send(get_profile::v3::Request::new(user.to_owned()), None).await {
        Ok(_) => Ok(true),
        // Synapse answers 404 `M_UNKNOWN` ("No row found") for a user it does not know.
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

async fn invite(ctx: &Context, inv: &Invocation<'_>, user: &UserId) -> Outcome {
    let board = board_here(ctx, inv, cmd::INVITE.usage)?;
    require_admin(&board, inv.sender, cmd::INVITE.usage)?;
    if ctx.settings.is_ours(user) {
        return refuse(format!("{user} is Boardroom's own user."), cmd::INVITE.usage);
    }
    match ctx.store.membership(&board.space_id, user)? {
        Some(MembershipState::Join) => {
            return refuse(
                format!("{user} is already a member of the board {}.", board.slug),
                cmd::INVITE.usage,
            );
        }
        Some(MembershipState::Ban) => {
            return refuse(
                format!("{user} is banned from the board {}.", board.slug),
                cmd::INVITE.usage,
            );
        }
        _ => {}
    }
    if !user_exists(ctx, user).await? {
        return refuse(format!("There is no user {user}."), cmd::INVITE.usage);
    }
    let req = invite_user::v3::Request::new(
        board.space_id.clone(),
        invite_user::v3::InvitationRecipient::UserId(invite_user::v3::InviteUserId::new(
            user.to_owned(),
        )),
    );
    match ctx.client.send(req, None).await {
        Ok(_) => {}
        // Already invited (a command run again after a restart): nothing to do.
        Err(e) if ctx.store.membership(&board.space_id, user)? == Some(MembershipState::Invite) => {
            tracing::debug!(error = %e, "invite already pending");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(text(format!(
        "Invited {user} to the board {}. Once they join its space, they can join its rooms.",
        board.name
    )))
}

async fn remove(ctx: &Context, inv: &Invocation<'_>, user: &UserId) -> Outcome {
    let board = board_here(ctx, inv, cmd::REMOVE.usage)?;
    require_admin(&board, inv.sender, cmd::REMOVE.usage)?;
    if ctx.settings.is_ours(user) {
        return refuse(format!("{user} is Boardroom's own user."), cmd::REMOVE.usage);
    }
    if user != inv.sender && board.power_of(user) >= board.power_of(inv.sender) {
        return refuse(
            format!(
                "{user} is a {} of the board: you can only remove members below you.",
                board.role_of(user).as_str()
            ),
            cmd::REMOVE.usage,
        );
    }
    if board.role_of(user) == Role::Owner && board.creators.iter().any(|c| c == user) {
        return refuse(
            format!("{user} created the board and cannot be removed."),
            cmd::REMOVE.usage,
        );
    }
    if !matches!(
        ctx.store.membership(&board.space_id, user)?,
        Some(MembershipState::Join | MembershipState::Invite | MembershipState::Knock)
    ) {
        return refuse(
            format!("{user} is not a member of the board {}.", board.slug),
            cmd::REMOVE.usage,
        );
    }
    let mut req = kick_user::v3::Request::new(board.space_id.clone(), user.to_owned());
    req.reason = Some(format!("removed from the board {} by {}", board.slug, inv.sender));
    ctx.client.send(req, None).await?;
    // Its private rooms follow when the space's membership change arrives (boards::index).
    Ok(text(format!("Removed {user} from the board {} and its private rooms.", board.name)))
}

async fn add_room(
    ctx: &Context,
    inv: &Invocation<'_>,
    name: &str,
    private: bool,
    members: &[OwnedUserId],
) -> Outcome {
    let board = board_here(ctx, inv, cmd::ROOM.usage)?;
    if !ctx.store.is_board_member(&board.slug, inv.sender)? {
        return refuse(
            format!("Only members of the board {} can add rooms.", board.slug),
            cmd::ROOM.usage,
        );
    }
    if let Err(why) = validate_room_name(name) {
        return refuse(format!("Cannot add the room: {why}."), cmd::ROOM.usage);
    }
    for m in members {
        if !ctx.store.is_board_member(&board.slug, m)? {
            return refuse(
                format!("{m} is not a member of the board {}.", board.slug),
                cmd::ROOM.usage,
            );
        }
    }
    let prefix = &ctx.settings.raw.appservice.namespace_prefix;
    let room_alias = alias(ctx, &room_alias_localpart(prefix, &board.slug, name))?;
    if ctx.store.rooms_of(&board.slug)?.iter().any(|(_, r)| r.name == name) {
        return refuse(
            format!("The board already has a room named {name} ({room_alias})."),
            cmd::ROOM.usage,
        );
    }
    let record = BoardRoomEventContent {
        board: board.slug.clone(),
        name: name.to_owned(),
        kind: RoomKind::Chat,
        private,
    };
    let mut invite = vec![inv.sender.to_owned()];
    invite.extend(members.iter().filter(|m| *m != inv.sender).cloned());
    if !private && board.created_by != inv.sender {
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
            initial_state: room_initial_state(&board.space_id, &ctx.settings.server_name, &record),
            invite,
            owner: board.created_by.clone(),
            version,
        },
    )
    .await?;
    let found: Option<BoardRoomEventContent> = own_state_content(ctx, &room_id).await;
    if found.as_ref().map(|r| r.board.as_str()) != Some(board.slug.as_str()) {
        return refuse(format!("The alias {room_alias} is in use."), cmd::ROOM.usage);
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
    Ok(text(if private {
        format!(
            "Added the private room {room_alias} to the board {}; its members are invited.",
            board.name
        )
    } else {
        format!(
            "Added the room {room_alias} to the board {}; board members can join it from the space.",
            board.name
        )
    }))
}

async fn info(ctx: &Context, inv: &Invocation<'_>) -> Outcome {
    let board = board_here(ctx, inv, cmd::INFO.usage)?;
    if !ctx.store.is_board_member(&board.slug, inv.sender)? {
        return refuse(
            format!("Only members of the board {} can see it.", board.slug),
            cmd::INFO.usage,
        );
    }
    let prefix = &ctx.settings.raw.appservice.namespace_prefix;
    let mut plain = format!("Board {} ({})\nRooms:\n", board.name, board.slug);
    let mut html = format!(
        "<p>Board <b>{}</b> (<code>{}</code>)</p><p>Rooms:</p><ul>",
        escape_html(&board.name),
        board.slug
    );
    for (_, r) in ctx.store.rooms_of(&board.slug)? {
        let a = alias(ctx, &room_alias_localpart(prefix, &board.slug, &r.name))?;
        let kind = match (r.kind, r.private) {
            (RoomKind::Tasks, _) => "tasks",
            (RoomKind::Chat, true) => "private chat",
            (RoomKind::Chat, false) => "chat",
        };
        plain.push_str(&format!("  {} ({kind}) {a}\n", r.name));
        html.push_str(&format!(
            "<li>{} ({kind}) <a href=\"https://matrix.to/#/{a}\">{a}</a></li>",
            escape_html(&r.name)
        ));
    }
    plain.push_str("Members:\n");
    html.push_str("</ul><p>Members:</p><ul>");
    let mut listing = Listing::new(plain, html);
    let mut members: Vec<(Role, OwnedUserId, MembershipState)> = ctx
        .store
        .members(&board.space_id)?
        .into_iter()
        .filter(|(u, m)| {
            !ctx.settings.is_ours(u) && matches!(m, MembershipState::Join | MembershipState::Invite)
        })
        .map(|(u, m)| (board.role_of(&u), u, m))
        .collect();
    members.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (role, user, m) in members {
        let invited = if m == MembershipState::Invite { ", invited" } else { "" };
        listing.item(
            &format!("  {user} ({}{invited})\n", role.as_str()),
            &format!("<li>{} ({}{invited})</li>", escape_html(user.as_str()), role.as_str()),
        );
    }
    if listing.left_out() > 0 {
        let more = format!("  and {} more\n", listing.left_out());
        listing.always(&more, &format!("<li>and {} more</li>", listing.left_out()));
    }
    listing.always("", "</ul>");
    // Tasks per status, in the board's column order, from the counts kept with the tasks.
    let mut counts = Vec::with_capacity(board.columns.len());
    for c in &board.columns {
        counts.push(format!("{c} {}", ctx.store.column_count(&board.slug, c)?));
    }
    listing.always(
        &format!("Tasks: {}\n", counts.join(", ")),
        &format!("<p>Tasks: {}</p>", escape_html(&counts.join(", "))),
    );
    Ok(listing.into_reply())
}

/// A board room was upgraded: the bot joins the new room, which takes the old one's place
/// in the board (the space's `m.space.child` and the index), and Boardroom's own state
/// moves there ([`settle_room`]). `cause` is the tombstone event.
pub async fn follow_upgrade(
    ctx: &Context,
    old: &RoomId,
    new: &RoomId,
    cause: &EventId,
) -> crate::Result<Vec<Action>> {
    let Some(record) = ctx.store.room(old)? else { return Ok(Vec::new()) };
    let Some(board) = ctx.store.board(&record.board)? else { return Ok(Vec::new()) };
    // A room already in the index (another board room, a board's space) is never adopted.
    if new == old || ctx.store.room(new)?.is_some() || ctx.store.board_by_space(new)?.is_some() {
        tracing::warn!(board = %board.slug, old = %old, new = %new, "not following a tombstone that points to an indexed room");
        return Ok(Vec::new());
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
        return Ok(Vec::new());
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
        Some(actions) => Ok(actions),
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
            Ok(vec![Action::SendMessage {
                room_id: new.to_owned(),
                as_user: None,
                txn_id: derived_txn_id(cause.as_str(), 0),
                content: Box::new(content),
            }])
        }
    }
}

/// Writes Boardroom's own state into board room `room` (a replacement of `old`): its
/// `dev.boardroom.room` and canonical `m.space.parent`, and for a `tasks` room, the board's
/// tasks. `None` when the bot lacks the power to write state there.
pub async fn settle_room(
    ctx: &Context,
    board: &BoardRecord,
    room: &RoomId,
    record: &RoomRecord,
    old: &RoomId,
) -> crate::Result<Option<Vec<Action>>> {
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
    let actions = if record.kind == RoomKind::Tasks {
        crate::tasks::ops::move_tasks(ctx, board, old, room).await?
    } else {
        Vec::new()
    };
    if record.pending_move_from.is_some() {
        ctx.store.put_room(room, &RoomRecord { pending_move_from: None, ..record.clone() })?;
    }
    Ok(Some(actions))
}

/// A `dev.boardroom.room` event that the bot did not send: it never counts (the index
/// ignores it). In an indexed board room (empty state key), the bot's record is written
/// back, so that the room's current board state is always Boardroom's own.
pub async fn guard_room_state(
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
pub async fn on_power_levels(
    ctx: &Context,
    room: &RoomId,
    content: &RoomPowerLevelsEventContent,
) -> crate::Result<Vec<Action>> {
    let Some(record) = ctx.store.room(room)? else { return Ok(Vec::new()) };
    let bot = &ctx.settings.bot_user_id;
    let level = content.users.get(bot).copied().unwrap_or(content.users_default);
    if level < content.state_default {
        return Ok(Vec::new());
    }
    if own_state_content::<BoardRoomEventContent>(ctx, room).await.is_some() {
        return Ok(Vec::new());
    }
    let Some(board) = ctx.store.board(&record.board)? else { return Ok(Vec::new()) };
    let old = match &record.pending_move_from {
        Some(from) => from.clone(),
        None => {
            let create = state_content::<RoomCreateEventContent>(ctx, room, "m.room.create").await;
            let Some(old) = create.and_then(|c| c.predecessor).map(|p| p.room_id) else {
                return Ok(Vec::new());
            };
            old
        }
    };
    tracing::info!(board = %board.slug, room_id = %room, "the bot got power in an upgraded board room; settling it");
    Ok(settle_room(ctx, &board, room, &record, &old).await?.unwrap_or_default())
}
