//! Mention autocomplete: a board's members whose localpart or display name starts with `q`.

use axum::{
    Json,
    extract::{Path, State},
};
use ruma::{OwnedUserId, events::room::member::MembershipState};
use serde::{Deserialize, Serialize};

use super::{ApiQuery, ApiState, auth::Caller};
use crate::error::Error;

/// `?q=`
#[derive(Debug, Deserialize)]
pub struct Q {
    /// The prefix typed so far (with or without `@`).
    #[serde(default)]
    pub q: String,
}

/// One match.
#[derive(Debug, Serialize)]
pub struct Member {
    /// Who.
    pub user_id: OwnedUserId,
    /// Their display name in the board's space.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// owner, admin or member.
    pub role: &'static str,
}

/// The matches.
#[derive(Debug, Serialize)]
pub struct Members {
    /// At most 20, by user id.
    pub members: Vec<Member>,
}

/// `GET /boards/{slug}/members?q=`
pub async fn autocomplete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
    ApiQuery(Q { q }): ApiQuery<Q>,
) -> Result<Json<Members>, Error> {
    let store = &state.ctx.store;
    let board = store.board(&slug)?;
    let Some(board) = board.filter(|_| caller.may_see(&state, &slug).unwrap_or(false)) else {
        // The same answer whether the board exists or not: nothing leaks to outsiders.
        return Err(Error::Forbidden(format!("you are not a member of the board {slug}")));
    };
    let q = q.trim_start_matches('@').to_lowercase();
    let mut members: Vec<Member> = store
        .members_with_names(&board.space_id)?
        .into_iter()
        .filter(|(u, m, _)| *m == MembershipState::Join && *u != state.ctx.settings.bot_user_id)
        .filter(|(u, _, name)| {
            u.localpart().to_lowercase().starts_with(&q)
                || name.as_ref().is_some_and(|n| n.to_lowercase().starts_with(&q))
        })
        .map(|(user_id, _, display_name)| Member {
            role: board.role_of(&user_id).as_str(),
            user_id,
            display_name,
        })
        .collect();
    members.truncate(20);
    Ok(Json(Members { members }))
}
