//! `POST /boards/{slug}/tasks/{number}/comments`: a task app adds a comment to a task, as
//! its virtual user, with mentions resolved so that the mentioned are notified.

use axum::{
    Json,
    extract::{Path, State},
    http::HeaderMap,
};
use ruma::OwnedEventId;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{
    ApiBody, ApiState, Cause,
    auth::Caller,
    route::{Documented, serialized},
};
use crate::{domain::op::BoardRef, error::Error, tasks::comments};

/// A new comment (the request body).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewComment {
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
pub(crate) struct Created {
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

/// Adds a comment: [`crate::tasks::comments::comment`], as the caller.
pub(crate) async fn add(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, number)): Path<(String, String)>,
    headers: HeaderMap,
    body: ApiBody<NewComment>,
) -> Result<Json<Created>, Error> {
    let NewComment { body: text } = body.parse()?;
    let n: u64 = number
        .parse()
        .map_err(|_| Error::InvalidParam(format!("`{number}` is not a task number")))?;
    let actor = caller.actor();
    // A client retrying with the same Idempotency-Key gets the same event.
    let cause = Cause::of(&headers, &actor, &format!("{slug}.{n}"))?;
    let req = cause.request(&actor);
    let ctx = state.request_ctx();
    let event_id =
        comments::comment(&ctx, &req, BoardRef::Slug(&slug), n, &text, &cause.txn_id).await?;
    Ok(Json(Created { event_id }))
}
