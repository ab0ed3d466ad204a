//! The one error enum and its mapping to Matrix error codes.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use ruma::api::error::{ErrorKind, UnknownTokenErrorData};

mod homeserver;

pub use homeserver::{HsError, RetryKind};

/// Why a request was refused by a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// What it names does not exist (or the actor may not know of it): 404 `M_NOT_FOUND`.
    NotFound,
    /// The actor may not do this: 403 `M_FORBIDDEN`.
    Forbidden,
    /// The input is wrong: 400 `M_INVALID_PARAM`.
    Invalid,
    /// The board's state does not allow it now (a name in use, a column still holding
    /// tasks, a room waiting for power): 409.
    Conflict,
    /// Another homeserver, which the request is about (a user's), could not be reached:
    /// 502 `M_UNKNOWN`, with the sentence (it tells of no fault of Boardroom's).
    Unreachable,
}

impl RuleKind {
    /// The HTTP status and Matrix error kind of this refusal.
    pub fn status_and_kind(self) -> (StatusCode, ErrorKind) {
        match self {
            RuleKind::NotFound => (StatusCode::NOT_FOUND, ErrorKind::NotFound),
            RuleKind::Forbidden => (StatusCode::FORBIDDEN, ErrorKind::Forbidden),
            RuleKind::Invalid => (StatusCode::BAD_REQUEST, ErrorKind::InvalidParam),
            RuleKind::Conflict => (StatusCode::CONFLICT, ErrorKind::Unknown),
            RuleKind::Unreachable => (StatusCode::BAD_GATEWAY, ErrorKind::Unknown),
        }
    }
}

/// Every error a request path or worker can return.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No access token was given.
    #[error("missing access token")]
    MissingToken,
    /// The caller is known but may not do this; the message says why.
    #[error("{0}")]
    Forbidden(String),
    /// An API token that is not known at all.
    #[error("unknown access token")]
    UnknownToken,
    /// A request's own credentials (a webhook's signature and timestamp) are missing or
    /// wrong; the message says which.
    #[error("{0}")]
    Unauthorized(String),
    /// The body is not JSON.
    #[error("request body is not valid JSON: {0}")]
    NotJson(String),
    /// The body is JSON of the wrong shape.
    #[error("request body has the wrong shape: {0}")]
    BadJson(String),
    /// A required parameter is missing.
    #[error("missing parameter: {0}")]
    MissingParam(String),
    /// A parameter is invalid.
    #[error("invalid parameter: {0}")]
    InvalidParam(String),
    /// The body is larger than the limit.
    #[error("request body is too large")]
    TooLarge,
    /// Nothing here by that name.
    #[error("{0}")]
    NotFound(String),
    /// No such endpoint.
    #[error("unrecognized request")]
    Unrecognized,
    /// The endpoint exists, but not with this method.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// The configuration is wrong; names the key.
    #[error("config key `{key}`: {problem}")]
    Config { key: String, problem: String },
    /// RocksDB failed.
    #[error("store: {0}")]
    Store(String),
    /// The database cannot write for now (its disk is full, or another I/O error): nothing
    /// was written, and the store recovers by itself once it can write again. Answered
    /// 503 with `Retry-After`, so that the homeserver keeps a transaction for later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Too many at once (live streams past `[live] max_subscribers`): 429
    /// `M_LIMIT_EXCEEDED`, to be tried again later.
    #[error("{0}")]
    LimitExceeded(String),
    /// The caller sent more requests than its rate allows (`[api] requests_per_second`,
    /// `[webhooks] deliveries_per_second`): 429 `M_LIMIT_EXCEEDED` with `retry_after_ms`
    /// and `Retry-After`: the wait until the next request would pass.
    #[error("too many requests; retry after {} ms", .0.as_millis())]
    RateLimited(std::time::Duration),
    /// An operation's rule refused the request; the sentence says why.
    #[error("{sentence}")]
    Refused {
        /// Which kind of refusal (it sets the status and `errcode`).
        kind: RuleKind,
        /// What was wrong.
        sentence: String,
    },
    /// A request to the homeserver failed.
    #[error("homeserver: {0}")]
    Homeserver(#[from] HsError),
    /// A backup cannot be written or read back (`boardroom export`, `boardroom import`):
    /// the sentence says where and why.
    #[error("{0}")]
    Backup(String),
    /// I/O failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Anything else that is our fault.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The HTTP status and Matrix error kind for this error.
    pub fn status_and_kind(&self) -> (StatusCode, ErrorKind) {
        match self {
            Error::MissingToken => (StatusCode::UNAUTHORIZED, ErrorKind::MissingToken),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorKind::Forbidden),
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, ErrorKind::Unauthorized),
            Error::UnknownToken => {
                (StatusCode::UNAUTHORIZED, ErrorKind::UnknownToken(UnknownTokenErrorData::new()))
            }
            Error::NotJson(_) => (StatusCode::BAD_REQUEST, ErrorKind::NotJson),
            Error::BadJson(_) => (StatusCode::BAD_REQUEST, ErrorKind::BadJson),
            Error::InvalidParam(_) => (StatusCode::BAD_REQUEST, ErrorKind::InvalidParam),
            Error::MissingParam(_) => (StatusCode::BAD_REQUEST, ErrorKind::MissingParam),
            Error::Refused { kind, .. } => kind.status_and_kind(),
            Error::Homeserver(_) => (StatusCode::BAD_GATEWAY, ErrorKind::Unknown),
            Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorKind::Unknown),
            Error::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge),
            Error::LimitExceeded(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorKind::LimitExceeded(ruma::api::error::LimitExceededErrorData::new()),
            ),
            Error::RateLimited(wait) => {
                let mut data = ruma::api::error::LimitExceededErrorData::new();
                data.retry_after = Some(ruma::api::error::RetryAfter::Delay(*wait));
                (StatusCode::TOO_MANY_REQUESTS, ErrorKind::LimitExceeded(data))
            }
            Error::NotFound(_) => (StatusCode::NOT_FOUND, ErrorKind::NotFound),
            Error::Unrecognized => (StatusCode::NOT_FOUND, ErrorKind::Unrecognized),
            Error::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, ErrorKind::Unrecognized),
            Error::Config { .. }
            | Error::Store(_)
            | Error::Backup(_)
            | Error::Io(_)
            | Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Unknown),
        }
    }

    /// The Matrix error body (`{"errcode": …, "error": …}`) for this error.
    pub fn to_matrix(&self) -> ruma::api::error::Error {
        let (status, kind) = self.status_and_kind();
        // Internal details stay in the logs; the caller gets a generic message.
        let message = if matches!(self, Error::Unavailable(_)) {
            UNAVAILABLE_MESSAGE.to_owned()
        } else if let Error::Refused { kind: RuleKind::Unreachable, sentence } = self {
            sentence.clone()
        } else if status.is_server_error() {
            "internal error; see the server log".to_owned()
        } else {
            self.to_string()
        };
        ruma::api::error::Error::new(
            status,
            ruma::api::error::ErrorBody::Standard(ruma::api::error::StandardErrorBody::new(
                kind, message,
            )),
        )
    }
}

/// What a caller is told while the database cannot write.
const UNAVAILABLE_MESSAGE: &str = "temporarily unavailable: the database cannot write; retry later";

/// The `Retry-After` of a 503 while the database cannot write, in seconds: about how
/// often the store looks for room to recover ([`crate::store`]).
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

impl From<rocksdb::Error> for Error {
    /// An I/O error (`No space left on device` among them) is [`Error::Unavailable`]: it
    /// passes once the disk has room. Anything else (corruption, a bad argument) is a
    /// store error.
    fn from(e: rocksdb::Error) -> Self {
        match e.kind() {
            rocksdb::ErrorKind::IOError => Error::Unavailable(e.into_string()),
            _ => Error::Store(e.into_string()),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.status_and_kind().0.is_server_error()
            && !matches!(self, Error::Refused { kind: RuleKind::Unreachable, .. })
        {
            tracing::error!(error = %self, "request failed");
        }
        let mut resp = matrix_error_response(&self.to_matrix());
        if matches!(self, Error::Unavailable(_)) {
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, UNAVAILABLE_RETRY_AFTER_SECS.into());
        }
        resp
    }
}

/// Renders a Matrix error as an HTTP response through ruma's own serializer.
pub fn matrix_error_response(error: &ruma::api::error::Error) -> Response {
    use ruma::api::OutgoingResponseExt;
    match error.clone().try_into_http_response::<Vec<u8>>() {
        Ok(resp) => resp.map(axum::body::Body::from),
        Err(e) => {
            tracing::error!(error = %e, "could not serialize an error response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
