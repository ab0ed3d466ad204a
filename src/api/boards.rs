//! Boards over HTTP: the caller's boards, creating one (as `!board create`), and one
//! board with its rooms, columns and the caller's role (as `!board info`).

use axum::{
    Json,
    extract::{Path, State},
    http::HeaderMap,
};
use ruma::{OwnedRoomAliasId, OwnedRoomId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{
    ToSchema,
    openapi::schema::{Object, ObjectBuilder, Type},
};

use super::{
    ApiBody, ApiState, Cause,
    auth::Caller,
    route::{Created, Documented, serialized},
};
use crate::{
    boards::{
        create::{self, NewBoard},
        info,
    },
    domain::{
        board::{BoardRecord, Role, RoomKind},
        op::{BoardRef, Request},
    },
    error::Error,
};

fn role_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([Role::Owner, Role::Admin, Role::Member].map(Role::as_str)))
        .build()
}

/// A board, in a list.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BoardSummary {
    /// Its slug (the `{slug}` of its paths).
    pub slug: String,
    /// Its display name.
    pub name: String,
    /// Its space.
    #[schema(value_type = String)]
    pub space_id: OwnedRoomId,
    /// The caller's role on it: owner, admin or member.
    #[schema(schema_with = role_schema)]
    pub role: &'static str,
}

impl BoardSummary {
    fn of(b: &BoardRecord, role: Role) -> Self {
        Self {
            slug: b.slug.clone(),
            name: b.name.clone(),
            space_id: b.space_id.clone(),
            role: role.as_str(),
        }
    }

    fn example() -> Self {
        Self {
            slug: "launch".into(),
            name: "Product launch".into(),
            space_id: ruma::owned_room_id!("!space:example.org"),
            role: Role::Owner.as_str(),
        }
    }
}

impl Documented for BoardSummary {
    fn examples() -> Vec<Value> {
        serialized(&[BoardSummary::example()])
    }
}

/// The caller's boards.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Boards {
    /// By slug.
    pub boards: Vec<BoardSummary>,
}

impl Documented for Boards {
    fn examples() -> Vec<Value> {
        serialized(&[Boards { boards: vec![BoardSummary::example()] }])
    }
}

/// `GET /boards`: a Matrix user's joined boards; a client's boards within its scope.
pub(crate) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Boards>, Error> {
    let mut boards: Vec<BoardSummary> = info::mine(&state.ctx, &caller.actor())?
        .iter()
        .map(|(b, role)| BoardSummary::of(b, *role))
        .collect();
    boards.sort_by(|a, b| a.slug.cmp(&b.slug));
    Ok(Json(Boards { boards }))
}

/// A board to create (the request body).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewBoardBody {
    /// Its slug: lowercase letters, digits and `-`.
    pub slug: String,
    /// Its display name; the slug when absent.
    #[serde(default)]
    #[schema(nullable = false)]
    pub name: Option<String>,
    /// The topic of its space; a default naming the board when absent.
    #[serde(default)]
    #[schema(nullable = false)]
    pub topic: Option<String>,
}

impl Documented for NewBoardBody {
    fn examples() -> Vec<Value> {
        vec![
            json!({ "slug": "launch" }),
            json!({ "slug": "launch", "name": "Product launch", "topic": "Ship 2.0 in March" }),
        ]
    }
}

/// `POST /boards`: as `!board create`; the caller (a client's virtual user) owns it.
pub(crate) async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: ApiBody<NewBoardBody>,
) -> Result<Created<BoardSummary>, Error> {
    let b = body.parse()?;
    let input =
        NewBoard { name: b.name.unwrap_or_else(|| b.slug.clone()), slug: b.slug, topic: b.topic };
    let actor = caller.actor();
    let cause = Cause::of(&headers, &actor, &format!("board.{}", input.slug))?;
    let ctx = state.request_ctx();
    let created = create::create(&ctx, &cause.request(&actor), &input).await?;
    Ok(Created(BoardSummary::of(&created.board, Role::Owner)))
}

/// One of a board's rooms.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BoardRoom {
    /// Its short name (the `{room}` of its paths).
    pub name: String,
    /// Its id.
    #[schema(value_type = String)]
    pub room_id: OwnedRoomId,
    /// Its alias.
    #[schema(value_type = String)]
    pub alias: OwnedRoomAliasId,
    /// `chat` or `tasks`.
    pub kind: String,
    /// Invite-only.
    pub private: bool,
}

/// A column and how many tasks it holds.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Column {
    /// Its name.
    pub name: String,
    /// Its tasks (deleted ones left out).
    pub tasks: u64,
}

/// A board.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Board {
    /// Its slug.
    pub slug: String,
    /// Its display name.
    pub name: String,
    /// Its space.
    #[schema(value_type = String)]
    pub space_id: OwnedRoomId,
    /// Its rooms (a private one only for its members).
    pub rooms: Vec<BoardRoom>,
    /// Its columns, in order.
    pub columns: Vec<Column>,
    /// The caller's role on it.
    #[schema(schema_with = role_schema)]
    pub role: &'static str,
}

impl Documented for Board {
    fn examples() -> Vec<Value> {
        serialized(&[Board {
            slug: "launch".into(),
            name: "Product launch".into(),
            space_id: ruma::owned_room_id!("!space:example.org"),
            rooms: vec![BoardRoom {
                name: "general".into(),
                room_id: ruma::owned_room_id!("!general:example.org"),
                alias: ruma::owned_room_alias_id!("#boardroom_launch_general:example.org"),
                kind: "chat".into(),
                private: false,
            }],
            columns: vec![Column { name: "todo".into(), tasks: 3 }],
            role: Role::Member.as_str(),
        }])
    }
}

/// `GET /boards/{slug}`
pub(crate) async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> Result<Json<Board>, Error> {
    let actor = caller.actor();
    let i = info::info(&state.ctx, &Request::read(&actor), BoardRef::Slug(&slug))?;
    let me = &actor.user_id;
    let mut rooms = Vec::new();
    for r in i.rooms {
        // A private room is listed to its members only.
        if r.private
            && state.ctx.store.membership(&r.room_id, me)?
                != Some(ruma::events::room::member::MembershipState::Join)
        {
            continue;
        }
        let kind = match r.kind {
            RoomKind::Tasks => "tasks",
            RoomKind::Chat => "chat",
        };
        rooms.push(BoardRoom {
            name: r.name,
            room_id: r.room_id,
            alias: r.alias,
            kind: kind.into(),
            private: r.private,
        });
    }
    Ok(Json(Board {
        slug: i.board.slug.clone(),
        name: i.board.name.clone(),
        space_id: i.board.space_id.clone(),
        rooms,
        columns: i.columns.into_iter().map(|(name, tasks)| Column { name, tasks }).collect(),
        role: i.board.role_of(me).as_str(),
    }))
}
