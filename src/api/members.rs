//! A board's members over HTTP: every member page by page (with presence), mention
//! autocomplete (`?q=`), and invite / remove with the rights of `!board invite/remove`.

use axum::{
    Json,
    extract::{Path, State},
};
use ruma::OwnedUserId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{
    IntoParams, ToSchema,
    openapi::schema::{Object, ObjectBuilder, Type},
};

use super::{
    ApiQuery, ApiState, Cause,
    auth::Caller,
    route::{Documented, serialized},
};
use crate::{
    boards::members::{self, FoundMember},
    domain::{
        board::Role,
        op::{BoardRef, Request},
    },
    error::Error,
};

/// `?q=&from=&limit=`
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct Q {
    /// The prefix typed so far (with or without `@`): autocomplete, at most 20 matches.
    /// Without it, every member, page by page.
    #[serde(default)]
    #[param(required = false)]
    pub q: String,
    /// The `next_batch` of the previous page (without `q`).
    #[param(nullable = false)]
    pub from: Option<String>,
    /// At most this many (1 to 100, default 50; without `q`).
    #[param(minimum = 1, maximum = 100, default = 50, nullable = false)]
    pub limit: Option<usize>,
}

/// One member.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Member {
    /// Who.
    #[schema(value_type = String)]
    pub user_id: OwnedUserId,
    /// Their display name in the board's space.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub display_name: Option<String>,
    /// owner, admin or member.
    #[schema(schema_with = role_schema)]
    pub role: &'static str,
    /// online, unavailable or offline, as the homeserver last said; absent when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub presence: Option<String>,
}

/// [`Member::role`]: the name of a [`Role`].
fn role_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([Role::Owner, Role::Admin, Role::Member].map(Role::as_str)))
        .build()
}

/// Members.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Members {
    /// With `q`: at most 20, by the name that matched (localpart or display name).
    /// Without: a page, by user id.
    pub members: Vec<Member>,
    /// Pass as `from` for the next page; absent on the last (and with `q`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_batch: Option<String>,
}

impl Documented for Members {
    fn examples() -> Vec<Value> {
        let member =
            |user_id: &str, display_name: Option<&str>, role: Role, p: Option<&str>| Member {
                user_id: user_id
                    .try_into()
                    .unwrap_or_else(|_| ruma::owned_user_id!("@alice:example.org")),
                display_name: display_name.map(str::to_owned),
                role: role.as_str(),
                presence: p.map(str::to_owned),
            };
        serialized(&[
            Members {
                members: vec![
                    member("@alice:example.org", Some("Alice"), Role::Owner, Some("online")),
                    member("@alfred:example.org", None, Role::Admin, None),
                    member("@alma:example.org", Some("Alma"), Role::Member, Some("offline")),
                ],
                next_batch: None,
            },
            Members {
                members: vec![member("@bob:example.org", Some("Bob"), Role::Member, None)],
                next_batch: Some("50".into()),
            },
        ])
    }
}

/// Matches answered at most.
const LIMIT: usize = 20;

fn member(state: &ApiState, m: FoundMember) -> Member {
    let presence = state.ctx.live.presence(&m.user_id).map(|p| p.state.as_str().to_owned());
    Member { user_id: m.user_id, display_name: m.display_name, role: m.role.as_str(), presence }
}

/// `GET /boards/{slug}/members`
pub(crate) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
    ApiQuery(Q { q, from, limit }): ApiQuery<Q>,
) -> Result<Json<Members>, Error> {
    let actor = caller.actor();
    let req = Request::read(&actor);
    let at = BoardRef::Slug(&slug);
    if !q.is_empty() {
        let found = members::search(&state.ctx, &req, at, &q, LIMIT)?;
        let members = found.into_iter().map(|m| member(&state, m)).collect();
        return Ok(Json(Members { members, next_batch: None }));
    }
    let skip = match from {
        Some(f) => f
            .parse::<usize>()
            .map_err(|_| Error::InvalidParam(format!("`{f}` is not a next_batch token")))?,
        None => 0,
    };
    let (page, next) = members::list(&state.ctx, &req, at, skip, limit.unwrap_or(50))?;
    Ok(Json(Members {
        members: page.into_iter().map(|m| member(&state, m)).collect(),
        next_batch: next.map(|n| n.to_string()),
    }))
}

/// What changed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MembershipChange {
    /// Who.
    #[schema(value_type = String)]
    pub user_id: OwnedUserId,
    /// `invite` (invited to the board's space) or `leave` (removed from the board).
    pub membership: String,
}

impl Documented for MembershipChange {
    fn examples() -> Vec<Value> {
        serialized(&[
            MembershipChange {
                user_id: ruma::owned_user_id!("@bob:example.org"),
                membership: "invite".into(),
            },
            MembershipChange {
                user_id: ruma::owned_user_id!("@bob:example.org"),
                membership: "leave".into(),
            },
        ])
    }
}

fn user(u: &str) -> Result<OwnedUserId, Error> {
    OwnedUserId::try_from(u).map_err(|_| {
        Error::InvalidParam(format!("`{u}` is not a user id such as @alice:example.org"))
    })
}

/// `PUT /boards/{slug}/members/{user_id}`: invite, as `!board invite`.
pub(crate) async fn invite(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, user_id)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Result<Json<MembershipChange>, Error> {
    let user_id = user(&user_id)?;
    let actor = caller.actor();
    let cause = Cause::of(&headers, &actor, &format!("{slug}.invite.{user_id}"))?;
    let ctx = state.request_ctx();
    members::invite(&ctx, &cause.request(&actor), BoardRef::Slug(&slug), &user_id).await?;
    Ok(Json(MembershipChange { user_id, membership: "invite".into() }))
}

/// `DELETE /boards/{slug}/members/{user_id}`: remove, as `!board remove`.
pub(crate) async fn remove(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, user_id)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Result<Json<MembershipChange>, Error> {
    let user_id = user(&user_id)?;
    let actor = caller.actor();
    let cause = Cause::of(&headers, &actor, &format!("{slug}.remove.{user_id}"))?;
    let ctx = state.request_ctx();
    members::remove(&ctx, &cause.request(&actor), BoardRef::Slug(&slug), &user_id).await?;
    Ok(Json(MembershipChange { user_id, membership: "leave".into() }))
}
