//! `GET /_matrix/app/v1/users/{userId}` ([spec])
//!
//! 200 for the users Boardroom owns (the bot); 404 `M_NOT_FOUND` for everything else:
//! virtual users are created by Boardroom when it needs them, never because someone asked.
//!
//! [spec]: https://spec.matrix.org/v1.11/application-service-api/#get_matrixappv1usersuserid

use axum::{extract::State, response::Response};
use ruma::api::{
    OutgoingResponseExt,
    appservice::query::query_user_id::v1::{Request, Response as QueryResponse},
};

use super::{AppState, extract::Ruma};
use crate::error::{Error, Result};

/// Handles a user query.
pub(crate) async fn handle(
    State(state): State<AppState>,
    Ruma { request, .. }: Ruma<Request>,
) -> Result<Response> {
    if request.user_id != state.ctx.settings.bot_user_id {
        return Err(Error::NotFound(format!("{} is not a Boardroom user", request.user_id)));
    }
    QueryResponse::new()
        .try_into_http_response::<Vec<u8>>()
        .map(|r| r.map(axum::body::Body::from))
        .map_err(|e| Error::Internal(e.to_string()))
}
