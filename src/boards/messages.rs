//! Speaking in a board's rooms as an actor: a virtual user joins the board and the room
//! first ([`ensure_joined`]), and a message's text is checked ([`check_text`]) and composed
//! with its mentions resolved ([`compose`]: `m.mentions` and pills, so the mentioned are
//! notified and highlighted). Task comments and chat messages are written the same way.

use ruma::{
    RoomId, UserId,
    events::{
        Mentions,
        room::{member::MembershipState, message::RoomMessageEventContent},
    },
};

use crate::{
    context::Context,
    domain::{
        mention,
        op::{OpResult, Refusal},
    },
    matrix::Intent,
    notifications::notify::RoomAudience,
};

/// The longest message text, in bytes (UTF-8): the message carries the text twice (body
/// and formatted_body, with pills) and must stay under the 65,536 bytes of a Matrix event.
pub(crate) const MAX_TEXT_BYTES: usize = 16_000;

/// Refuses a blank text, or one over [`MAX_TEXT_BYTES`] (`what` names it: "a comment").
pub(crate) fn check_text(text: &str, what: &str) -> OpResult<()> {
    if text.trim().is_empty() {
        return Err(Refusal::invalid("body must not be empty"));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(Refusal::invalid(format!(
            "body has {} bytes; {what} has at most {MAX_TEXT_BYTES}",
            text.len()
        )));
    }
    Ok(())
}

/// The virtual user joins the board (its space, invited by the bot) and `room`.
pub(crate) async fn ensure_joined(
    ctx: &Context,
    intent: &Intent,
    space: &RoomId,
    room: &RoomId,
    user: &UserId,
) -> OpResult<()> {
    if ctx.store.membership(space, user)? != Some(MembershipState::Join) {
        if ctx.store.membership(space, user)? != Some(MembershipState::Invite)
            && let Err(e) = Intent::bot(ctx.client.clone()).invite(space, user).await
        {
            // Already invited or joined: the join below tells.
            tracing::debug!(error = %e, "inviting a virtual user");
        }
        intent.join(space).await?;
    }
    if ctx.store.membership(room, user)? != Some(MembershipState::Join) {
        intent.join(room).await?;
    }
    Ok(())
}

/// `text` by `author` in `room` as a message: the room's joined members it mentions (by
/// user id, localpart or display name, as [`mention::resolve`] reads them; never the
/// author) in `m.mentions`, and as pills in the formatted body.
pub(crate) fn compose(
    ctx: &Context,
    room: &RoomId,
    author: &UserId,
    text: &str,
) -> OpResult<RoomMessageEventContent> {
    let mut mentioned = mention::resolve(&[], None, text, &RoomAudience::new(&ctx.store, room))?;
    mentioned.remove(author);
    // Pills name people by their display names too: read those of the mentioned only.
    let mut named = Vec::with_capacity(mentioned.len());
    for u in &mentioned {
        let display_name = ctx.store.member(room, u)?.and_then(|(_, name)| name);
        named.push(mention::Candidate { user_id: u.clone(), display_name });
    }
    let html = mention::with_pills(text, &mentioned, &named);
    let mut content = RoomMessageEventContent::text_html(text, html);
    content.mentions = Some(Mentions::with_user_ids(mentioned));
    check_size(&content)?;
    Ok(content)
}

/// The most bytes a composed message's content may have as JSON. Escaping makes the
/// formatted body up to six times as long as the text (`"` is `&quot;`), so a text within
/// [`MAX_TEXT_BYTES`] can still make too large an event; the rest of the 65,536 bytes of
/// an event is left for its relation and what the homeserver adds.
pub(crate) const MAX_CONTENT_BYTES: usize = 60_000;

/// Refuses a message whose content, once formatted, would not fit in one event.
pub(crate) fn check_size(content: &RoomMessageEventContent) -> OpResult<()> {
    let bytes = serde_json::to_vec(content)
        .map_err(|e| Refusal::Failed(crate::Error::Internal(e.to_string())))?
        .len();
    if bytes > MAX_CONTENT_BYTES {
        return Err(Refusal::invalid(format!(
            "body is too long once formatted: the message would have {bytes} bytes, and one has at most {MAX_CONTENT_BYTES} (HTML escaping makes <, >, & and quotes several bytes each)"
        )));
    }
    Ok(())
}

/// Refuses to speak for an API caller in an end-to-end encrypted room: Boardroom has an
/// encryption device for its bot only, so what it sent as a virtual user (or with a Matrix
/// user's token) would go out in the clear into a room its members expect to be private.
pub(crate) async fn refuse_if_encrypted(
    ctx: &Context,
    room_id: &ruma::RoomId,
    room: &str,
) -> crate::domain::op::OpResult<()> {
    if ctx.room_encrypted(room_id).await? {
        return Err(crate::domain::op::Refusal::conflict(format!(
            "The room {room} is end-to-end encrypted, and Boardroom has no encryption device for its callers: it cannot write there for you. Write from a Matrix client that encrypts, or in a room that is not encrypted."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn composed(text: &str) -> RoomMessageEventContent {
        RoomMessageEventContent::text_html(text, mention::with_pills(text, &BTreeSet::new(), &[]))
    }

    #[test]
    fn a_text_within_the_limit_that_escaping_makes_too_large_for_an_event_is_refused() {
        for c in ['"', '<', '&', '\''] {
            let text = c.to_string().repeat(MAX_TEXT_BYTES);
            check_text(&text, "a comment").expect("within the text limit");
            let content = composed(&text);
            let bytes = serde_json::to_vec(&content).expect("serializes").len();
            assert!(bytes > 65_536, "{c}: {bytes} bytes");
            let err = check_size(&content).expect_err("too large once formatted");
            assert!(err.sentence().contains("too long once formatted"), "{}", err.sentence());
        }
        // Text that escaping leaves alone fits at the limit.
        check_size(&composed(&"é".repeat(MAX_TEXT_BYTES / 2))).expect("fits");
        check_size(&composed(&"<".repeat(MAX_TEXT_BYTES / 4))).expect("fits");
    }
}
