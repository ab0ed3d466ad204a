//! Chat in a board's rooms, for callers of the HTTP API: reading a room's history
//! ([`history`]), sending a message ([`send`]), typing ([`typing`]), and who is online and
//! who types ([`presence`]). Every operation speaks to the homeserver as its actor, never
//! as the bot: a Matrix user with their own token, a client's virtual user through the
//! appservice's identity assertion (it joins the board and the room first). So what a
//! caller reads and may write is what the homeserver shows and allows that user.

pub(crate) mod history;
pub(crate) mod presence;
pub(crate) mod send;
pub(crate) mod typing;

use ruma::RoomId;

use crate::{
    boards::messages,
    context::Context,
    domain::{
        board::BoardRecord,
        op::{Actor, OpResult, Refusal},
    },
    matrix::{HsError, Intent},
};

/// How `actor` speaks in `room` of `board`: with their own token, or as a virtual user
/// (which joins the board and the room first). A Matrix user without a token of theirs (a
/// chat command's sender) cannot be spoken for.
async fn intent_in(
    ctx: &Context,
    actor: &Actor,
    board: &BoardRecord,
    room: &RoomId,
) -> OpResult<Intent> {
    let Some(intent) = ctx.intent_of(actor) else {
        return Err(Refusal::forbidden(
            "Boardroom speaks in chat only as the caller: with a Matrix user's own access token, or as an API client's virtual user.",
        ));
    };
    if actor.client.is_some() {
        messages::ensure_joined(ctx, &intent, &board.space_id, room, actor.user_id()).await?;
    }
    Ok(intent)
}

/// The homeserver's refusal of a request made as `actor` to `what` (read, write, type) in
/// the room `name`: a 403 is the
/// homeserver's rule (a Matrix user who has not joined the room, say), said as Boardroom's
/// refusal; anything else is a failure.
fn refused(e: HsError, actor: &Actor, name: &str, what: &str) -> Refusal {
    if e.is_forbidden() {
        return Refusal::forbidden(format!(
            "The homeserver does not let {} {what} in the room {name} (has it joined the room?): {e}",
            actor.user_id(),
        ));
    }
    Refusal::from(e)
}
