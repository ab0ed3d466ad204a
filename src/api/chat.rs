//! Chat in a board's rooms, as the caller: a room's history, sending a message, typing,
//! who is online and types, and a virtual user's presence ([`crate::chat`]).

use axum::{
    Json,
    extract::{Path, State},
    http::HeaderMap,
};
use ruma::{
    OwnedEventId, OwnedTransactionId, OwnedUserId, TransactionId, owned_event_id, owned_user_id,
    presence::PresenceState,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{
    IntoParams, ToSchema,
    openapi::schema::{Object, ObjectBuilder, Type},
};

use super::{
    ApiBody, ApiQuery, ApiState,
    auth::Caller,
    route::{Documented, serialized},
};
use crate::{
    chat::{history, presence, send, typing},
    domain::op::{BoardRef, Request},
    error::Error,
};

/// `?from=&limit=`
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct HistoryQuery {
    /// The `next_batch` of the previous page (absent: the newest messages).
    #[param(nullable = false)]
    pub from: Option<String>,
    /// At most this many messages (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100, default = 20, nullable = false)]
    pub limit: Option<usize>,
}

/// One message of a room.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Message {
    /// Its event id.
    #[schema(value_type = String)]
    pub event_id: OwnedEventId,
    /// Who sent it.
    #[schema(value_type = String)]
    pub sender: OwnedUserId,
    /// The sender's display name in the room, if they set one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub display_name: Option<String>,
    /// Its text (the latest edit's); absent once redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub body: Option<String>,
    /// Its HTML (`org.matrix.custom.html`) as the sender wrote it, when it has one:
    /// sanitize it before showing it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub formatted_body: Option<String>,
    /// When it was sent (ms since the epoch, the homeserver's clock).
    pub ts: u64,
    /// The root of the thread it is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, nullable = false)]
    pub thread_root: Option<OwnedEventId>,
    /// Edited since it was sent (`body` is the latest text).
    pub edited: bool,
    /// Redacted (no text left).
    pub redacted: bool,
}

impl From<history::Message> for Message {
    fn from(m: history::Message) -> Self {
        Message {
            event_id: m.event_id,
            sender: m.sender,
            display_name: m.display_name,
            body: m.body,
            formatted_body: m.formatted_body,
            ts: m.ts,
            thread_root: m.thread_root,
            edited: m.edited,
            redacted: m.redacted,
        }
    }
}

/// A page of a room's history.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HistoryPage {
    /// Newest first. A page may hold fewer than `limit` (edits are folded into the
    /// messages they edit) and still be followed by more.
    pub messages: Vec<Message>,
    /// Pass as `from` for the next (older) page; absent at the start of the room.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_batch: Option<String>,
}

impl Documented for HistoryPage {
    fn examples() -> Vec<Value> {
        serialized(&[
            HistoryPage {
                messages: vec![
                    Message {
                        event_id: owned_event_id!("$reply:example.org"),
                        sender: owned_user_id!("@bob:example.org"),
                        display_name: Some("Bob".into()),
                        body: Some("On it, Alice".into()),
                        formatted_body: Some(
                            "On it, <a href=\"https://matrix.to/#/@alice:example.org\">Alice</a>"
                                .into(),
                        ),
                        ts: 1_767_225_660_000,
                        thread_root: Some(owned_event_id!("$question:example.org")),
                        edited: true,
                        redacted: false,
                    },
                    Message {
                        event_id: owned_event_id!("$question:example.org"),
                        sender: owned_user_id!("@alice:example.org"),
                        display_name: None,
                        body: None,
                        formatted_body: None,
                        ts: 1_767_225_600_000,
                        thread_root: None,
                        edited: false,
                        redacted: true,
                    },
                ],
                next_batch: Some("t47-1093_0_0_0_0_0_0_0_0_0".into()),
            },
            HistoryPage { messages: Vec::new(), next_batch: None },
        ])
    }
}

/// `GET /boards/{slug}/rooms/{room}/messages`
pub(crate) async fn history(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, room)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<HistoryPage>, Error> {
    let actor = caller.actor();
    let cause = ruma::event_id!("$api.history");
    let req = Request { actor: &actor, cause, seq: 0, room: None, thread: None };
    let limit = query.limit.unwrap_or(history::DEFAULT_PAGE);
    let page = history::page(
        &state.request_ctx(),
        &req,
        BoardRef::Slug(&slug),
        &room,
        query.from.as_deref(),
        limit,
    )
    .await?;
    Ok(Json(HistoryPage {
        messages: page.messages.into_iter().map(Message::from).collect(),
        next_batch: page.next_batch,
    }))
}

/// A new message (the request body).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewMessage {
    /// The text: not blank, at most 16,000 bytes of UTF-8; `@name` mentions of the room's
    /// members notify and highlight them.
    #[schema(min_length = 1)]
    pub body: String,
    /// Send it in the thread of this message of the room.
    #[serde(default)]
    #[schema(value_type = Option<String>, nullable = false)]
    pub thread_root: Option<OwnedEventId>,
}

impl Documented for NewMessage {
    fn examples() -> Vec<Value> {
        vec![
            json!({ "body": "Release notes are up, @alice" }),
            json!({ "body": "Looks good", "thread_root": "$question:example.org" }),
        ]
    }
}

/// The message, sent (the answer).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Sent {
    /// Its event id.
    #[schema(value_type = String)]
    pub event_id: OwnedEventId,
}

impl Documented for Sent {
    fn examples() -> Vec<Value> {
        serialized(&[Sent { event_id: owned_event_id!("$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq") }])
    }
}

/// `POST /boards/{slug}/rooms/{room}/messages`
pub(crate) async fn post(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, room)): Path<(String, String)>,
    headers: HeaderMap,
    body: ApiBody<NewMessage>,
) -> Result<Json<Sent>, Error> {
    let NewMessage { body: text, thread_root } = body.parse()?;
    let actor = caller.actor();
    let client = actor.client.as_ref().map_or("", |c| c.name.as_str());
    // A client retrying with the same Idempotency-Key gets the same event. The homeserver
    // keeps an appservice's transaction ids per appservice and path, not per user: the
    // sender is part of the id, or two virtual users using one key would share an event.
    let user = actor.user_id().localpart().to_owned();
    let txn_id: OwnedTransactionId = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 128)
        .map(|k| format!("api.{client}.{user}.{slug}.{room}.{k}").into())
        .unwrap_or_else(TransactionId::new);
    let cause = ruma::event_id!("$api.send");
    let req = Request { actor: &actor, cause, seq: 0, room: None, thread: None };
    let ctx = state.request_ctx();
    let event_id = send::send(
        &ctx,
        &req,
        BoardRef::Slug(&slug),
        &room,
        &text,
        thread_root.as_deref(),
        &txn_id,
    )
    .await?;
    Ok(Json(Sent { event_id }))
}

/// Typing (the request body).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TypingBody {
    /// Typing, or stopped.
    pub typing: bool,
    /// How long it lasts unless renewed or stopped (ms, 1 to 120,000, default 30,000).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 120_000, nullable = false)]
    pub timeout_ms: Option<u64>,
}

impl Documented for TypingBody {
    fn examples() -> Vec<Value> {
        vec![json!({ "typing": true, "timeout_ms": 10_000 }), json!({ "typing": false })]
    }
}

/// Done (an empty answer).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Done {}

impl Documented for Done {
    fn examples() -> Vec<Value> {
        serialized(&[Done {}])
    }
}

/// `PUT /boards/{slug}/rooms/{room}/typing`
pub(crate) async fn set_typing(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, room)): Path<(String, String)>,
    body: ApiBody<TypingBody>,
) -> Result<Json<Done>, Error> {
    let TypingBody { typing: on, timeout_ms } = body.parse()?;
    let actor = caller.actor();
    let cause = ruma::event_id!("$api.typing");
    let req = Request { actor: &actor, cause, seq: 0, room: None, thread: None };
    let room_id =
        typing::set(&state.request_ctx(), &req, BoardRef::Slug(&slug), &room, on, timeout_ms)
            .await?;
    crate::stream::events::typing(&state.ctx, &room_id);
    Ok(Json(Done {}))
}

/// A presence state's name.
fn presence_name(p: &PresenceState) -> &'static str {
    match p {
        PresenceState::Online => "online",
        PresenceState::Unavailable => "unavailable",
        _ => "offline",
    }
}

/// [`MemberPresence::presence`].
fn present_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["online", "unavailable"]))
        .build()
}

/// A member online or away.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MemberPresence {
    /// Who.
    #[schema(value_type = String)]
    pub user_id: OwnedUserId,
    /// Their display name in the board's space.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub display_name: Option<String>,
    /// online or unavailable (the offline are not listed).
    #[schema(schema_with = present_schema)]
    pub presence: &'static str,
    /// How long ago they were last active (ms).
    pub last_active_ago: u64,
}

/// Who types in one room.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RoomTyping {
    /// The room's name in the board.
    pub room: String,
    /// Who types there.
    #[schema(value_type = Vec<String>)]
    pub users: Vec<OwnedUserId>,
}

/// Who is online on the board, and who types where.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BoardPresence {
    /// The members online or away, by user id.
    pub members: Vec<MemberPresence>,
    /// The rooms someone types in, by name (private rooms only for those in them).
    pub typing: Vec<RoomTyping>,
}

impl Documented for BoardPresence {
    fn examples() -> Vec<Value> {
        serialized(&[BoardPresence {
            members: vec![
                MemberPresence {
                    user_id: owned_user_id!("@alice:example.org"),
                    display_name: Some("Alice".into()),
                    presence: "online",
                    last_active_ago: 1_200,
                },
                MemberPresence {
                    user_id: owned_user_id!("@boardroom_tracker:example.org"),
                    display_name: None,
                    presence: "unavailable",
                    last_active_ago: 240_000,
                },
            ],
            typing: vec![RoomTyping {
                room: "general".into(),
                users: vec![owned_user_id!("@alice:example.org")],
            }],
        }])
    }
}

/// `GET /boards/{slug}/presence`
pub(crate) async fn board_presence(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> Result<Json<BoardPresence>, Error> {
    let actor = caller.actor();
    let cause = ruma::event_id!("$api.presence");
    let req = Request { actor: &actor, cause, seq: 0, room: None, thread: None };
    let found = presence::board(&state.ctx, &req, BoardRef::Slug(&slug))?;
    Ok(Json(BoardPresence {
        members: found
            .members
            .into_iter()
            .map(|m| MemberPresence {
                user_id: m.user_id,
                display_name: m.display_name,
                presence: presence_name(&m.presence),
                last_active_ago: m.last_active_ago,
            })
            .collect(),
        typing: found
            .typing
            .into_iter()
            .map(|t| RoomTyping { room: t.room, users: t.users })
            .collect(),
    }))
}

/// A presence to set (the request body).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PresenceBody {
    /// online, unavailable or offline.
    pub presence: Wanted,
    /// A status message, at most 256 bytes.
    #[serde(default)]
    #[schema(nullable = false, max_length = 256)]
    pub status_msg: Option<String>,
}

/// [`PresenceBody::presence`].
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Wanted {
    /// Online.
    Online,
    /// Away.
    Unavailable,
    /// Offline.
    Offline,
}

impl Documented for PresenceBody {
    fn examples() -> Vec<Value> {
        vec![
            json!({ "presence": "online" }),
            json!({ "presence": "unavailable", "status_msg": "in a meeting" }),
        ]
    }
}

/// `PUT /presence`: a client's virtual user's presence.
pub(crate) async fn set_presence(
    State(state): State<ApiState>,
    caller: Caller,
    body: ApiBody<PresenceBody>,
) -> Result<Json<Done>, Error> {
    let PresenceBody { presence: wanted, status_msg } = body.parse()?;
    let state_of = match wanted {
        Wanted::Online => PresenceState::Online,
        Wanted::Unavailable => PresenceState::Unavailable,
        Wanted::Offline => PresenceState::Offline,
    };
    let actor = caller.actor();
    let cause = ruma::event_id!("$api.presence.set");
    let req = Request { actor: &actor, cause, seq: 0, room: None, thread: None };
    presence::set(&state.request_ctx(), &req, state_of.clone(), status_msg.as_deref()).await?;
    crate::stream::events::presence(&state.ctx, &actor.user_id, &state_of);
    Ok(Json(Done {}))
}
