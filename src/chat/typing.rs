//! Typing in a board room, as the caller: Matrix typing, so Matrix clients show it.

use std::time::Duration;

use ruma::OwnedRoomId;
use ruma::api::client::typing::create_typing_event::{
    self,
    v3::{Typing, TypingInfo},
};

use super::{intent_in, refused};
use crate::{
    boards::access,
    context::Context,
    domain::{
        now_ms,
        op::{BoardRef, OpResult, OpSpec, Permission, Refusal, Request},
    },
};

/// Typing in a board's rooms.
pub(crate) const TYPING: OpSpec =
    OpSpec { permission: Permission::BoardMember, doing: "type in its rooms" };

/// How long typing lasts unless renewed or stopped, by default (ms).
pub(crate) const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// How long typing lasts unless renewed or stopped, at most (ms).
pub(crate) const MAX_TIMEOUT_MS: u64 = 120_000;

/// The actor types (`typing`) in the room `room` of the board `at` for `timeout_ms`, or
/// stops. Returns the room.
pub(crate) async fn set(
    ctx: &Context,
    req: &Request<'_>,
    at: BoardRef<'_>,
    room: &str,
    typing: bool,
    timeout_ms: Option<u64>,
) -> OpResult<OwnedRoomId> {
    let timeout = timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=MAX_TIMEOUT_MS).contains(&timeout) {
        return Err(Refusal::invalid(format!("timeout_ms must be between 1 and {MAX_TIMEOUT_MS}")));
    }
    let board = access::board(ctx, req.actor, at, &TYPING)?;
    let (room_id, _) = access::room(ctx, req.actor, &board, room)?;
    let user = req.actor.user_id();
    let intent = intent_in(ctx, req.actor, &board, &room_id).await?;
    let state = if typing {
        Typing::Yes(TypingInfo::new(Duration::from_millis(timeout)))
    } else {
        Typing::No
    };
    intent
        .send(create_typing_event::v3::Request::new(user.to_owned(), room_id.clone(), state))
        .await
        .map_err(|e| refused(e, req.actor, room, "type"))?;
    ctx.live.set_api_typing(&room_id, user, typing.then(|| now_ms() + timeout));
    Ok(room_id)
}
