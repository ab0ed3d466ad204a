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
    /// At most 20, by the name that matched (localpart or display name).
    pub members: Vec<Member>,
}

/// Matches answered at most.
const LIMIT: usize = 20;

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
    // From the name index: the cost follows the matches, not the board's size.
    let mut members = Vec::with_capacity(LIMIT);
    for user_id in store.members_named(&board.space_id, &q, LIMIT + 1)? {
        if user_id == state.ctx.settings.bot_user_id || members.len() == LIMIT {
            continue;
        }
        let Some((MembershipState::Join, display_name)) =
            store.member(&board.space_id, &user_id)?
        else {
            continue;
        };
        members.push(Member { role: board.role_of(&user_id).as_str(), user_id, display_name });
    }
    Ok(Json(Members { members }))
}
