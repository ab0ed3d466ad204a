//! `!board invite` and `!board remove`: who is on a board is who is in its space; its
//! rooms follow the space (public rooms are open to the space's members, and removal from
//! the space takes a member out of the private rooms, see [`super::index`]).

use ruma::{
    OwnedUserId, UserId,
    api::client::{membership::kick_user, profile::get_profile},
    events::room::member::MembershipState,
};

use super::access;
use crate::{
    context::Context,
    domain::{
        board::Role,
        op::{BoardRef, OpResult, OpSpec, Permission, Refusal, Request},
    },
    error::RuleKind,
    matrix::{HomeserverClient, HsError, Intent},
};

/// `!board invite`.
pub(crate) const INVITE: OpSpec =
    OpSpec { permission: Permission::BoardAdmin, doing: "invite people to the board" };

/// `!board remove`.
pub(crate) const REMOVE: OpSpec =
    OpSpec { permission: Permission::BoardAdmin, doing: "remove people from the board" };

/// What changed, for the answer.
#[derive(Debug, Clone)]
pub(crate) struct MemberChange {
    /// The user invited or removed.
    pub user: OwnedUserId,
    /// The board's display name.
    pub board_name: String,
}

async fn user_exists(client: &HomeserverClient, user: &UserId) -> Result<bool, HsError> {
    match client.send(get_profile::v3::Request::new(user.to_owned()), None).await {
        Ok(_) => Ok(true),
        // Synapse answers 404 `M_UNKNOWN` ("No row found") for a user it does not know.
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Invites `user` to the board's space; once they join it, they can join its rooms.
pub(crate) async fn invite(
    ctx: &Context,
    req: &Request<'_>,
    at: BoardRef<'_>,
    user: &UserId,
) -> OpResult<MemberChange> {
    let board = access::board(ctx, req.actor, at, &INVITE)?;
    if ctx.settings.is_ours(user) {
        return Err(Refusal::invalid(format!("{user} is Boardroom's own user.")));
    }
    match ctx.store.membership(&board.space_id, user)? {
        Some(MembershipState::Join) => {
            return Err(Refusal::conflict(format!(
                "{user} is already a member of the board {}.",
                board.slug
            )));
        }
        Some(MembershipState::Ban) => {
            return Err(Refusal::conflict(format!(
                "{user} is banned from the board {}.",
                board.slug
            )));
        }
        _ => {}
    }
    // A user on another homeserver is looked up and invited over federation: a server
    // error our homeserver answers then says their server could not be reached, and is
    // answered at once rather than retried while the room's other events wait.
    let remote = user.server_name() != ctx.settings.server_name;
    let client =
        if remote { ctx.client.clone().remote_failures_final() } else { ctx.client.clone() };
    let unreachable = |e: HsError| match remote && e.is_homeservers_own_server_error() {
        true => {
            tracing::warn!(user = %user, error = %e, "another homeserver could not be reached for an invite");
            Refusal::rule(
                RuleKind::Unreachable,
                format!(
                    "{user} could not be invited: their homeserver {} could not be reached. \
                     Try again later.",
                    user.server_name()
                ),
            )
        }
        false => e.into(),
    };
    if !user_exists(&client, user).await.map_err(unreachable)? {
        return Err(Refusal::invalid(format!("There is no user {user}.")));
    }
    match Intent::bot(client).invite(&board.space_id, user).await {
        Ok(()) => {}
        // Already invited (a request run again after a restart): nothing to do.
        Err(e) if ctx.store.membership(&board.space_id, user)? == Some(MembershipState::Invite) => {
            tracing::debug!(error = %e, "invite already pending");
        }
        Err(e) => return Err(unreachable(e)),
    }
    Ok(MemberChange { user: user.to_owned(), board_name: board.name })
}

/// Removes `user` from the board's space (and so from its private rooms). Only members
/// below the actor's power can be removed, and never the board's creator.
pub(crate) async fn remove(
    ctx: &Context,
    req: &Request<'_>,
    at: BoardRef<'_>,
    user: &UserId,
) -> OpResult<MemberChange> {
    let board = access::board(ctx, req.actor, at, &REMOVE)?;
    let sender = req.actor.user_id();
    if ctx.settings.is_ours(user) {
        return Err(Refusal::invalid(format!("{user} is Boardroom's own user.")));
    }
    if user != sender && board.power_of(user) >= board.power_of(sender) {
        return Err(Refusal::forbidden(format!(
            "{user} is a {} of the board: you can only remove members below you.",
            board.role_of(user).as_str()
        )));
    }
    if board.role_of(user) == Role::Owner && board.creators.iter().any(|c| c == user) {
        return Err(Refusal::forbidden(format!("{user} created the board and cannot be removed.")));
    }
    if !matches!(
        ctx.store.membership(&board.space_id, user)?,
        Some(MembershipState::Join | MembershipState::Invite | MembershipState::Knock)
    ) {
        return Err(Refusal::not_found(format!(
            "{user} is not a member of the board {}.",
            board.slug
        )));
    }
    let mut kick = kick_user::v3::Request::new(board.space_id.clone(), user.to_owned());
    kick.reason = Some(format!("removed from the board {} by {sender}", board.slug));
    ctx.client.send(kick, None).await?;
    // Its private rooms follow when the space's membership change arrives (boards::index).
    Ok(MemberChange { user: user.to_owned(), board_name: board.name })
}

/// Mention autocomplete.
pub(crate) const SEARCH: OpSpec =
    OpSpec { permission: Permission::BoardMember, doing: "see its members" };

/// A member found by name.
#[derive(Debug, Clone)]
pub(crate) struct FoundMember {
    /// Who.
    pub user_id: OwnedUserId,
    /// Their display name in the space.
    pub display_name: Option<String>,
    /// Their role.
    pub role: Role,
}

/// Joined members of the board `at` whose localpart or display name starts with `q`
/// (case-insensitive, a leading `@` ignored), at most `limit`: read from the name index,
/// so the cost follows the matches, not the board's size.
pub(crate) fn search(
    ctx: &Context,
    req: &Request<'_>,
    at: BoardRef<'_>,
    q: &str,
    limit: usize,
) -> OpResult<Vec<FoundMember>> {
    let board = access::board(ctx, req.actor, at, &SEARCH)?;
    let q = q.trim_start_matches('@').to_lowercase();
    let mut found = Vec::with_capacity(limit);
    for user_id in ctx.store.members_named(&board.space_id, &q, limit + 1)? {
        if user_id == ctx.settings.bot_user_id || found.len() == limit {
            continue;
        }
        let Some((MembershipState::Join, display_name)) =
            ctx.store.member(&board.space_id, &user_id)?
        else {
            continue;
        };
        found.push(FoundMember { role: board.role_of(&user_id), user_id, display_name });
    }
    Ok(found)
}

/// A page of the board's joined members (Boardroom's own users left out), by user id:
/// `limit` (1 to 100) after the first `skip`, and the `skip` of the next page.
pub(crate) fn list(
    ctx: &Context,
    req: &Request<'_>,
    at: BoardRef<'_>,
    skip: usize,
    limit: usize,
) -> OpResult<(Vec<FoundMember>, Option<usize>)> {
    let board = access::board(ctx, req.actor, at, &SEARCH)?;
    if !(1..=100).contains(&limit) {
        return Err(Refusal::invalid("limit is 1 to 100"));
    }
    let mut joined: Vec<OwnedUserId> = ctx
        .store
        .members(&board.space_id)?
        .into_iter()
        .filter(|(u, m)| *m == MembershipState::Join && !ctx.settings.is_ours(u))
        .map(|(u, _)| u)
        .collect();
    joined.sort();
    let next = skip.checked_add(limit).filter(|&end| joined.len() > end);
    let mut page = Vec::with_capacity(limit);
    for user_id in joined.into_iter().skip(skip).take(limit) {
        let display_name = ctx.store.member(&board.space_id, &user_id)?.and_then(|(_, name)| name);
        page.push(FoundMember { role: board.role_of(&user_id), user_id, display_name });
    }
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    use ruma::{RoomId, owned_user_id};

    use super::*;
    use crate::{
        Config,
        app::App,
        domain::{board::BoardRecord, op::Actor},
    };

    /// Found with the `cursors` fuzz target (`GET /boards/launch/members` with
    /// `from=18446744073709551615`): `skip + limit` overflowed.
    #[tokio::test]
    async fn a_skip_past_every_member_is_an_empty_last_page() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config::offline(&dir.path().join("db"), "").expect("config");
        let app = App::new(config.validate().expect("valid")).expect("app");
        let space = RoomId::parse("!space:localhost").expect("room id");
        let alice = owned_user_id!("@alice:localhost");
        let store = &app.ctx.store;
        store.put_board(&BoardRecord::example("launch", &space, &alice)).expect("board");
        store
            .set_membership(&space, &alice, &MembershipState::Join, None, Some("launch"))
            .expect("member");
        let actor = Actor::user(alice);
        let at = BoardRef::Slug("launch");
        let skip = usize::try_from(18_446_744_073_709_551_615u64).expect("64-bit");
        let (page, next) = list(&app.ctx, &Request::read(&actor), at, skip, 50).expect("a page");
        assert!(page.is_empty());
        assert_eq!(next, None);
    }
}
