//! A board's rooms: the list (private rooms only for those in them) and a new room, the
//! same operation as `!board room`.

use axum::{
    Json,
    extract::{Path, State},
};
use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, owned_room_alias_id, owned_room_id};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{
    ToSchema,
    openapi::schema::{Object, ObjectBuilder, Type},
};

use super::{
    ApiBody, ApiState,
    auth::Caller,
    route::{Created, Documented, serialized},
};
use crate::{
    boards::rooms::{self, NewRoom},
    domain::{
        board::RoomKind,
        op::{BoardRef, Request},
    },
    error::Error,
};

/// A room of the board.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Room {
    /// Its short name in the board (`general`): the `{room}` of the chat routes.
    pub name: String,
    /// Its room id.
    #[schema(value_type = String)]
    pub room_id: OwnedRoomId,
    /// Its alias.
    #[schema(value_type = String)]
    pub alias: OwnedRoomAliasId,
    /// chat, or tasks (the room holding the board's task threads).
    #[schema(schema_with = kind_schema)]
    pub kind: &'static str,
    /// Invite-only, for its members.
    pub private: bool,
}

/// [`Room::kind`].
fn kind_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([kind_name(RoomKind::Chat), kind_name(RoomKind::Tasks)]))
        .build()
}

fn kind_name(kind: RoomKind) -> &'static str {
    match kind {
        RoomKind::Chat => "chat",
        RoomKind::Tasks => "tasks",
    }
}

/// The board's rooms.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Rooms {
    /// By name; private rooms only when the caller is in them (joined or invited).
    pub rooms: Vec<Room>,
}

impl Documented for Rooms {
    fn examples() -> Vec<Value> {
        serialized(&[Rooms {
            rooms: vec![
                Room {
                    name: "general".into(),
                    room_id: owned_room_id!("!general:example.org"),
                    alias: owned_room_alias_id!("#boardroom_launch-general:example.org"),
                    kind: "chat",
                    private: false,
                },
                Room {
                    name: "tasks".into(),
                    room_id: owned_room_id!("!tasks:example.org"),
                    alias: owned_room_alias_id!("#boardroom_launch-tasks:example.org"),
                    kind: "tasks",
                    private: false,
                },
            ],
        }])
    }
}

/// `GET /boards/{slug}/rooms`
pub(crate) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> Result<Json<Rooms>, Error> {
    let actor = caller.actor();
    let cause = ruma::event_id!("$api.rooms");
    let req = Request { actor: &actor, cause, seq: 0, room: None, thread: None };
    let rooms = rooms::list(&state.ctx, &req, BoardRef::Slug(&slug))?
        .into_iter()
        .map(|r| Room {
            name: r.name,
            room_id: r.room_id,
            alias: r.alias,
            kind: kind_name(r.kind),
            private: r.private,
        })
        .collect();
    Ok(Json(Rooms { rooms }))
}

/// A new room (the request body).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRoomBody {
    /// Its short name: lowercase letters, digits and `-`, as for `!board room`.
    pub name: String,
    /// Invite-only, for the caller and `members` (default: open to the board's members).
    #[serde(default)]
    pub private: bool,
    /// Board members to invite to a private room.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub members: Vec<OwnedUserId>,
}

impl Documented for NewRoomBody {
    fn examples() -> Vec<Value> {
        vec![
            json!({ "name": "design" }),
            json!({ "name": "leads", "private": true, "members": ["@bob:example.org"] }),
        ]
    }
}

/// `POST /boards/{slug}/rooms`: [`crate::boards::rooms::add_room`], as the caller.
pub(crate) async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
    body: ApiBody<NewRoomBody>,
) -> Result<Created<Room>, Error> {
    let NewRoomBody { name, private, members } = body.parse()?;
    let actor = caller.actor();
    let cause = ruma::event_id!("$api.rooms.create");
    let req = Request { actor: &actor, cause, seq: 0, room: None, thread: None };
    let input = NewRoom { name: name.clone(), private, members };
    let added = rooms::add_room(&state.request_ctx(), &req, BoardRef::Slug(&slug), &input).await?;
    Ok(Created(Room {
        name,
        room_id: added.room_id,
        alias: added.alias,
        kind: kind_name(RoomKind::Chat),
        private: added.private,
    }))
}

impl Documented for Room {
    fn examples() -> Vec<Value> {
        serialized(&[Room {
            name: "design".into(),
            room_id: owned_room_id!("!design:example.org"),
            alias: owned_room_alias_id!("#boardroom_launch-design:example.org"),
            kind: "chat",
            private: false,
        }])
    }
}
