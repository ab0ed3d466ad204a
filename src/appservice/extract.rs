//! Parses a request into a ruma request type: the body (bounded by
//! [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES)), the path arguments, and the query.
//! Non-JSON bodies map to `M_NOT_JSON`, JSON of the wrong shape to `M_BAD_JSON`.

use axum::{
    body::{Body, Bytes},
    extract::{FromRequest, RawPathParams, Request},
};
use ruma::api::{
    IncomingRequest, IncomingRequestExt,
    error::{DeserializationError, FromHttpRequestError},
};

use super::MAX_BODY_BYTES;
use crate::error::Error;

/// A ruma request and the raw body it was parsed from.
#[derive(Debug)]
pub(crate) struct Ruma<R> {
    /// The parsed request.
    pub request: R,
    /// The body as received.
    pub body: Bytes,
}

impl<R, S> FromRequest<S> for Ruma<R>
where
    R: IncomingRequest,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let params = <RawPathParams as axum::extract::FromRequestParts<S>>::from_request_parts(
            &mut parts, state,
        )
        .await
        .map_err(|e| Error::InvalidParam(e.to_string()))?;
        let args: Vec<String> = params.iter().map(|(_, v)| v.to_owned()).collect();
        let bytes = axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES).await.map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Error::TooLarge
            } else {
                Error::BadJson(format!("cannot read the body: {e}"))
            }
        })?;
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let http_req = http::Request::from_parts(parts, bytes.as_ref());
        let request = R::try_from_http_request(http_req, &arg_refs).map_err(map_error)?;
        Ok(Ruma { request, body: bytes })
    }
}

/// Maps ruma's parse failure to the Matrix error the caller should see.
pub(crate) fn map_error(e: FromHttpRequestError) -> Error {
    match e {
        FromHttpRequestError::Deserialization(DeserializationError::Json(j)) => {
            if j.is_syntax() || j.is_eof() {
                Error::NotJson(j.to_string())
            } else {
                Error::BadJson(j.to_string())
            }
        }
        FromHttpRequestError::Deserialization(DeserializationError::Utf8(u)) => {
            Error::NotJson(u.to_string())
        }
        FromHttpRequestError::Deserialization(other) => Error::InvalidParam(other.to_string()),
        FromHttpRequestError::MethodMismatch { .. } => Error::Unrecognized,
        other => Error::BadJson(other.to_string()),
    }
}
