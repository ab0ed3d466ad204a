//! Mention autocomplete: a board's members whose localpart or display name starts with `q`.

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
    ApiQuery, ApiState,
    auth::Caller,
    route::{Documented, serialized},
};
use crate::{
    boards::members,
    domain::{
        board::Role,
        op::{BoardRef, Request},
    },
    error::Error,
};

/// `?q=`
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct Q {
    /// The prefix typed so far (with or without `@`).
    #[serde(default)]
    #[param(required = false)]
    pub q: String,
}

/// One match.
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
}

/// [`Member::role`]: the name of a [`Role`].
fn role_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([Role::Owner, Role::Admin, Role::Member].map(Role::as_str)))
        .build()
}

/// The matches.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Members {
    /// At most 20, by the name that matched (localpart or display name).
    pub members: Vec<Member>,
}

impl Documented for Members {
    fn examples() -> Vec<Value> {
        let member = |user_id: &str, display_name: Option<&str>, role: Role| Member {
            user_id: user_id
                .try_into()
                .unwrap_or_else(|_| ruma::owned_user_id!("@alice:example.org")),
            display_name: display_name.map(str::to_owned),
            role: role.as_str(),
        };
        serialized(&[Members {
            members: vec![
                member("@alice:example.org", Some("Alice"), Role::Owner),
                member("@alfred:example.org", None, Role::Admin),
                member("@alma:example.org", Some("Alma"), Role::Member),
            ],
        }])
    }
}

/// Matches answered at most.
const LIMIT: usize = 20;

/// `GET /boards/{slug}/members?q=`
pub(crate) async fn autocomplete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
    ApiQuery(Q { q }): ApiQuery<Q>,
) -> Result<Json<Members>, Error> {
    let actor = caller.actor();
    let cause = ruma::event_id!("$api.autocomplete");
    let req = Request { actor: &actor, cause, seq: 0, room: None, thread: None };
    let found = members::search(&state.ctx, &req, BoardRef::Slug(&slug), &q, LIMIT)?;
    let members = found
        .into_iter()
        .map(|m| Member { user_id: m.user_id, display_name: m.display_name, role: m.role.as_str() })
        .collect();
    Ok(Json(Members { members }))
}
