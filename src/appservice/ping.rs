//! `POST /_matrix/app/v1/ping` ([spec]): the homeserver checks that it reaches us.
//!
//! [spec]: https://spec.matrix.org/v1.11/application-service-api/#post_matrixappv1ping

use axum::response::Response;
use ruma::api::{
    OutgoingResponseExt,
    appservice::ping::send_ping::v1::{Request, Response as PingResponse},
};

use super::extract::Ruma;
use crate::error::{Error, Result};

/// Handles a ping.
pub(crate) async fn handle(Ruma { request, .. }: Ruma<Request>) -> Result<Response> {
    tracing::info!(transaction_id = ?request.transaction_id, "pinged by the homeserver");
    PingResponse::new()
        .try_into_http_response::<Vec<u8>>()
        .map(|r| r.map(axum::body::Body::from))
        .map_err(|e| Error::Internal(e.to_string()))
}
