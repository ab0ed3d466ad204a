//! `GET /_matrix/app/v1/rooms/{roomAlias}` ([spec])
//!
//! Boardroom never creates a room because someone asked for an alias: board aliases exist
//! from the moment their board is created. Every query is answered 404 `M_NOT_FOUND`.
//!
//! [spec]: https://spec.matrix.org/v1.11/application-service-api/#get_matrixappv1roomsroomalias

use ruma::api::appservice::query::query_room_alias::v1::Request;

use super::extract::Ruma;
use crate::error::Error;

/// Handles an alias query.
pub(crate) async fn handle(Ruma { request, .. }: Ruma<Request>) -> Error {
    Error::NotFound(format!("{} is not a Boardroom board", request.room_alias))
}
