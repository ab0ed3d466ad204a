//! A failed request to the homeserver, keeping what ruma read of its Matrix error code.

use std::{borrow::Cow, time::Duration};

use ruma::api::error::ErrorKind;

/// Whether a failure is worth retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryKind {
    /// Try again, after at least this long if the server said so.
    Transient(Option<Duration>),
    /// Trying again will fail the same way.
    Permanent,
}

/// A failed request to the homeserver.
#[derive(Debug, thiserror::Error)]
pub enum HsError {
    /// The homeserver could not be reached or the connection broke.
    #[error("{endpoint}: cannot reach the homeserver: {message}")]
    Connection {
        endpoint: &'static str,
        message: String,
        /// The connection broke after the request went out: the homeserver may have
        /// carried it out, so its outcome is unknown. `false` when no connection was made.
        sent: bool,
    },
    /// The homeserver answered with an error.
    #[error("{endpoint}: homeserver answered {status} {}: {message}", errcode_text(kind.as_ref()))]
    Status {
        endpoint: &'static str,
        status: u16,
        /// What the Matrix error code (`errcode`) says, as ruma reads it; `None` when the
        /// body is not a standard Matrix error (a UIAA answer, or no JSON at all).
        kind: Option<ErrorKind>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// We could not build the request, or could not read the answer.
    #[error("{endpoint}: {message}")]
    Protocol { endpoint: &'static str, message: String },
}

impl HsError {
    /// Transient (retry) or permanent.
    pub fn retry_kind(&self) -> RetryKind {
        match self {
            HsError::Connection { .. } => RetryKind::Transient(None),
            HsError::Status { status, retry_after, .. } if *status == 429 || *status >= 500 => {
                RetryKind::Transient(*retry_after)
            }
            // Our token refused: the homeserver has not (re)loaded the registration yet.
            // Nothing works until it does, so wait rather than drop requests.
            HsError::Status { status: 401, .. } => RetryKind::Transient(None),
            HsError::Status { .. } | HsError::Protocol { .. } => RetryKind::Permanent,
        }
    }

    /// What the homeserver's Matrix error code says, if it gave one.
    pub fn kind(&self) -> Option<&ErrorKind> {
        match self {
            HsError::Status { kind, .. } => kind.as_ref(),
            _ => None,
        }
    }

    /// `M_FORBIDDEN`, or any 403: the homeserver will not let us (a missing power level, a
    /// room we may not join).
    pub fn is_forbidden(&self) -> bool {
        matches!(self.kind(), Some(ErrorKind::Forbidden)) || self.status() == Some(403)
    }

    /// `M_NOT_FOUND`, or any 404: what was asked for does not exist. Synapse answers a
    /// profile it has no row for with 404 `M_UNKNOWN`.
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind(), Some(ErrorKind::NotFound)) || self.status() == Some(404)
    }

    /// `M_ROOM_IN_USE`: a room already has the alias asked for.
    pub fn is_room_in_use(&self) -> bool {
        matches!(self.kind(), Some(ErrorKind::RoomInUse))
    }

    /// `M_USER_IN_USE`: the user id asked for is registered already.
    pub fn is_user_in_use(&self) -> bool {
        matches!(self.kind(), Some(ErrorKind::UserInUse))
    }

    /// `M_UNKNOWN_TOKEN`, `M_MISSING_TOKEN`, or any 401: the access token was refused.
    pub fn is_unknown_token(&self) -> bool {
        matches!(self.kind(), Some(ErrorKind::UnknownToken(_) | ErrorKind::MissingToken))
            || self.status() == Some(401)
    }

    /// The homeserver could not give an answer: it could not be reached, it answered with a
    /// server error (5xx), or its answer could not be read.
    pub fn is_unavailable(&self) -> bool {
        self.status().is_none_or(|s| s >= 500)
    }

    /// The HTTP status, if the homeserver answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            HsError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the homeserver answered with a server error (5xx).
    pub fn is_server_error(&self) -> bool {
        self.status().is_some_and(|s| s >= 500)
    }

    /// A server error the homeserver itself wrote (a Matrix error body), not a gateway's in
    /// front of it: about a user on another server, it says ours could not reach theirs.
    pub fn is_homeservers_own_server_error(&self) -> bool {
        self.is_server_error() && self.kind().is_some()
    }

    /// Whether the request may have been carried out although it failed: the connection
    /// broke after it went out, or a gateway in front of the homeserver answered 502 or 504
    /// (it lost the homeserver while waiting for its answer).
    pub fn outcome_unknown(&self) -> bool {
        match self {
            HsError::Connection { sent, .. } => *sent,
            HsError::Status { status, .. } => matches!(status, 502 | 504),
            HsError::Protocol { .. } => false,
        }
    }
}

/// The error code's text in messages: `(none)` for a body that is not a standard error.
fn errcode_text(kind: Option<&ErrorKind>) -> Cow<'static, str> {
    kind.map_or(Cow::Borrowed("(none)"), |k| Cow::Owned(k.errcode().to_string()))
}
