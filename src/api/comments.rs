//! `POST /boards/{slug}/tasks/{number}/comments`: a task app adds a comment to a task, as
//! its virtual user, with mentions resolved so that the mentioned are notified.

use axum::{
    Json,
    extract::{Path, State},
    http::HeaderMap,
};
use ruma::{
    OwnedEventId, OwnedTransactionId, RoomId, TransactionId, UserId,
    api::client::membership::{invite_user, join_room_by_id},
    events::{
        Mentions,
        relation::Thread,
        room::{
            member::MembershipState,
            message::{Relation, RoomMessageEventContent},
        },
    },
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{
    ApiBody, ApiState,
    auth::Caller,
    route::{Documented, serialized},
};
use crate::{domain::mention, error::Error, notifications::notify};

/// A new comment (the request body).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    /// The comment's text: not blank, at most 16,000 bytes of UTF-8; `@name` mentions of
    /// board members notify them.
    #[schema(min_length = 1)]
    pub body: String,
}

impl Documented for NewComment {
    fn examples() -> Vec<Value> {
        vec![json!({ "body": "Shipped in 1.4, thanks @alice" })]
    }
}

/// The comment, sent (the answer).
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    /// The comment's event id.
    #[schema(value_type = String)]
    pub event_id: OwnedEventId,
}

impl Documented for Created {
    fn examples() -> Vec<Value> {
        serialized(&[Created {
            event_id: ruma::owned_event_id!("$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"),
        }])
    }
}

/// The longest comment text, in bytes (UTF-8).
pub const MAX_COMMENT_BYTES: usize = 16_000;

/// Adds a comment.
pub async fn add(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, number)): Path<(String, String)>,
    headers: HeaderMap,
    body: ApiBody<NewComment>,
) -> Result<Json<Created>, Error> {
    let Some(client) = &caller.client else {
        return Err(Error::Forbidden(
            "comments through the API need a client token; Matrix users comment from their client"
                .into(),
        ));
    };
    if !client.may_act_on(&slug) {
        return Err(Error::Forbidden(format!(
            "the client {} may not act on the board {slug}",
            client.name
        )));
    }
    let NewComment { body: text } = body.parse()?;
    if text.trim().is_empty() {
        return Err(Error::InvalidParam("body must not be empty".into()));
    }
    // The message carries the text twice (body and formatted_body, with pills) and must
    // stay under the 65,536 bytes a Matrix event may have.
    if text.len() > MAX_COMMENT_BYTES {
        return Err(Error::InvalidParam(format!(
            "body has {} bytes; a comment has at most {MAX_COMMENT_BYTES}",
            text.len()
        )));
    }
    let n: u64 = number
        .parse()
        .map_err(|_| Error::InvalidParam(format!("`{number}` is not a task number")))?;
    let ctx = &state.ctx;
    let board =
        ctx.store.board(&slug)?.ok_or_else(|| Error::NotFound(format!("no board {slug}")))?;
    let task = ctx
        .store
        .task(&slug, n)?
        .filter(|t| !t.fields.deleted)
        .ok_or_else(|| Error::NotFound(format!("no task {slug}#{n}")))?;
    let (room, record) = ctx
        .store
        .tasks_room_of(&slug)?
        .ok_or_else(|| Error::NotFound(format!("the board {slug} has no tasks room")))?;
    if record.pending_move_from.is_some() {
        return Err(Error::Forbidden(format!(
            "the tasks room of {slug} was upgraded and its tasks wait for a room admin to give \
             Boardroom power there; comments can be added once they have moved"
        )));
    }

    ensure_joined(&state, &board.space_id, &room, &caller.user_id).await?;

    let mut mentioned =
        mention::resolve(&[], None, &text, &notify::RoomAudience::new(&ctx.store, &room))?;
    mentioned.remove(&caller.user_id);
    // Pills name people by their display names too: read those of the mentioned only.
    let mut named = Vec::with_capacity(mentioned.len());
    for u in &mentioned {
        let display_name = ctx.store.member(&room, u)?.and_then(|(_, name)| name);
        named.push(mention::Candidate { user_id: u.clone(), display_name });
    }
    let html = mention::with_pills(&text, &mentioned, &named);
    let mut content = RoomMessageEventContent::text_html(text, html);
    content.mentions = Some(Mentions::with_user_ids(mentioned));
    let root = task.fields.root_event_id.clone();
    content.relates_to = Some(Relation::Thread(Thread::plain(root.clone(), root)));

    // A client retrying with the same Idempotency-Key gets the same event.
    let txn_id: OwnedTransactionId = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 128)
        .map(|k| format!("api.{}.{slug}.{n}.{k}", client.name).into())
        .unwrap_or_else(TransactionId::new);
    // A retry after a connection that broke mid-send looks for the comment first: the
    // homeserver may have stored it and then forgotten the transaction id (a restart).
    let event_id =
        state.hs().send_message(&room, &txn_id, &content, Some(&caller.user_id), false).await?;
    tracing::info!(board = %slug, task = n, user_id = %caller.user_id, event_id = %event_id, "comment added through the API");
    Ok(Json(Created { event_id }))
}

/// The virtual user joins the board (its space, invited by the bot) and its tasks room.
async fn ensure_joined(
    state: &ApiState,
    space: &RoomId,
    room: &RoomId,
    user: &UserId,
) -> Result<(), Error> {
    let ctx = &state.ctx;
    if ctx.store.membership(space, user)? != Some(MembershipState::Join) {
        if ctx.store.membership(space, user)? != Some(MembershipState::Invite) {
            let req = invite_user::v3::Request::new(
                space.to_owned(),
                invite_user::v3::InvitationRecipient::UserId(invite_user::v3::InviteUserId::new(
                    user.to_owned(),
                )),
            );
            if let Err(e) = state.hs().send(req, None).await {
                // Already invited or joined: the join below tells.
                tracing::debug!(error = %e, "inviting a virtual user");
            }
        }
        state.hs().send(join_room_by_id::v3::Request::new(space.to_owned()), Some(user)).await?;
    }
    if ctx.store.membership(room, user)? != Some(MembershipState::Join) {
        state.hs().send(join_room_by_id::v3::Request::new(room.to_owned()), Some(user)).await?;
    }
    Ok(())
}
