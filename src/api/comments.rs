//! `POST /boards/{slug}/tasks/{number}/comments`: a task app adds a comment to a task, as
//! its virtual user, with mentions resolved so that the mentioned are notified.

use axum::{
    Json,
    extract::{Path, State},
    http::HeaderMap,
};
use ruma::{OwnedEventId, OwnedTransactionId, TransactionId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{
    ApiBody, ApiState,
    auth::Caller,
    route::{Documented, serialized},
};
use crate::{
    domain::op::{BoardRef, Request},
    error::Error,
    tasks::comments,
};

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
    let client = actor.client.as_ref().map_or("", |c| c.name.as_str());
    // A client retrying with the same Idempotency-Key gets the same event.
    let txn_id: OwnedTransactionId = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 128)
        .map(|k| format!("api.{client}.{slug}.{n}.{k}").into())
        .unwrap_or_else(TransactionId::new);
    let cause = api_cause(&txn_id)?;
    let req = Request { actor: &actor, cause: &cause, seq: 0, room: None, thread: None };
    let ctx = state.request_ctx();
    let event_id = comments::comment(&ctx, &req, BoardRef::Slug(&slug), n, &text, &txn_id).await?;
    Ok(Json(Created { event_id }))
}

/// The cause of an API request, for operations that derive ids from their cause.
fn api_cause(txn_id: &TransactionId) -> Result<OwnedEventId, Error> {
    OwnedEventId::try_from(format!("$api.{txn_id}")).map_err(|e| Error::Internal(e.to_string()))
}
