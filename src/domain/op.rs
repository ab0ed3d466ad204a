//! The vocabulary every operation speaks, whichever interface calls it (a chat command,
//! the HTTP API, a webhook): who acts ([`Actor`]), what an operation needs of them
//! ([`Permission`], declared once per operation in an [`OpSpec`]), what started it
//! ([`Request`]), where ([`BoardRef`]), and the one kind of refusal ([`Refusal`]), which
//! carries the sentence a user reads and the Matrix error code and HTTP status an API
//! caller gets.

use http::StatusCode;
use ruma::{EventId, OwnedUserId, RoomId, UserId, api::error::ErrorKind};

use super::Action;
pub use crate::error::RuleKind;
use crate::{
    config::{ApiClient, Secret},
    error::Error,
};

/// Who acts: a Matrix user, or a virtual user of an API client or webhook source (acting
/// only within that client's boards).
#[derive(Debug, Clone)]
pub struct Actor {
    /// The Matrix user the homeserver sees.
    pub user_id: OwnedUserId,
    /// The client acting as [`Actor::user_id`], a virtual user it owns.
    pub client: Option<ClientScope>,
    /// A Matrix user's own access token, when they came with one (the HTTP API): what
    /// Boardroom sends for them goes out with it, as them. `None` for a chat command's
    /// sender (Boardroom answers as the bot) and for a virtual user (the appservice
    /// asserts its identity).
    pub token: Option<Secret>,
}

/// An API client or webhook source, as far as rights go: its name and its boards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientScope {
    /// Its name, for refusals and logs.
    pub name: String,
    /// The board slugs it may act on; `"*"` for every board.
    pub boards: Vec<String>,
    /// Whether it may create boards.
    pub create_boards: bool,
}

impl ClientScope {
    /// Whether it may act on `slug`.
    pub fn may_act_on(&self, slug: &str) -> bool {
        self.boards.iter().any(|b| b == "*" || b == slug)
    }
}

impl From<&ApiClient> for ClientScope {
    fn from(c: &ApiClient) -> Self {
        Self { name: c.name.clone(), boards: c.boards.clone(), create_boards: c.create_boards }
    }
}

impl Actor {
    /// A Matrix user acting for themselves, without a token of theirs (a chat command).
    pub fn user(user_id: OwnedUserId) -> Self {
        Self { user_id, client: None, token: None }
    }

    /// A Matrix user acting with their own access token (the HTTP API).
    pub fn user_with_token(user_id: OwnedUserId, token: Secret) -> Self {
        Self { user_id, client: None, token: Some(token) }
    }

    /// A client acting as its virtual user `user_id`.
    pub fn virtual_user(user_id: OwnedUserId, client: ClientScope) -> Self {
        Self { user_id, client: Some(client), token: None }
    }

    /// Who acts.
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    /// Whether the actor may act on the board `slug` at all: a Matrix user may try any
    /// board (their membership decides), a client only its own boards.
    pub fn in_scope(&self, slug: &str) -> bool {
        self.client.as_ref().is_none_or(|c| c.may_act_on(slug))
    }
}

/// What an operation needs of its actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Anyone who can reach Boardroom.
    Anyone,
    /// Users matched by `permissions.board_creators`.
    BoardCreator,
    /// Members of the board (an API client's virtual user within the client's boards
    /// becomes one when it first acts).
    BoardMember,
    /// Power level 50 or more in the board's space.
    BoardAdmin,
}

impl Permission {
    /// In words, for help texts.
    pub fn describe(self) -> &'static str {
        match self {
            Permission::Anyone => "anyone",
            Permission::BoardCreator => "board creators",
            Permission::BoardMember => "board members",
            Permission::BoardAdmin => "board admins (power 50)",
        }
    }
}

/// An operation, as data: who may run it, and what it does in the words of a refusal
/// ("Only members of the board launch can {doing}.").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpSpec {
    /// Who may run it.
    pub permission: Permission,
    /// What it does, completing "… can {doing}".
    pub doing: &'static str,
}

/// One request to an operation: who asks, and the event or API request that caused it.
/// Everything an operation sends derives its transaction ids from `cause`, so the same
/// request run again (after a crash, or a client's retry) does the same thing once.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Who acts.
    pub actor: &'a Actor,
    /// What caused it: the command's event, or an id the API derives for the request.
    pub cause: &'a EventId,
    /// Its place in arrival order (the inbound queue's sequence number; 0 from the API).
    pub seq: u64,
    /// The room the request was written in (a chat command).
    pub room: Option<&'a RoomId>,
    /// The thread the request was written in (a chat command in a thread).
    pub thread: Option<&'a EventId>,
}

impl<'a> Request<'a> {
    /// A request that only reads: nothing derives from its cause.
    pub fn read(actor: &'a Actor) -> Self {
        Request {
            actor,
            cause: ruma::event_id!("$read.boardroom"),
            seq: 0,
            room: None,
            thread: None,
        }
    }
}

/// Which board an operation acts on.
#[derive(Debug, Clone, Copy)]
pub enum BoardRef<'a> {
    /// The board this room belongs to (one of its rooms, or its space).
    Room(&'a RoomId),
    /// The board with this slug.
    Slug(&'a str),
}

/// What an operation did: its result, and the messages it wants sent (feed entries, root
/// edits), which the caller hands to the durable outbox.
#[derive(Debug)]
pub struct Done<T> {
    /// The result.
    pub value: T,
    /// Requests to send, in order.
    pub actions: Vec<Action>,
}

impl<T> Done<T> {
    /// A result with nothing to send.
    pub fn only(value: T) -> Self {
        Self { value, actions: Vec::new() }
    }
}

/// The one refusal of every operation.
#[derive(Debug)]
pub enum Refusal {
    /// A rule said no; the sentence says which, in words a user reads.
    Rule {
        /// Which kind of no.
        kind: RuleKind,
        /// What was wrong, as a sentence.
        sentence: String,
    },
    /// Boardroom or the homeserver failed; the details go to the log, not to the user.
    Failed(Error),
}

/// The sentence a user reads when Boardroom itself failed.
pub const FAILED_SENTENCE: &str =
    "Something went wrong inside Boardroom; the admin can find the details in its log.";

impl Refusal {
    /// A rule refusal of `kind`.
    pub fn rule(kind: RuleKind, sentence: impl Into<String>) -> Self {
        Refusal::Rule { kind, sentence: sentence.into() }
    }

    /// 404: nothing by that name.
    pub fn not_found(sentence: impl Into<String>) -> Self {
        Self::rule(RuleKind::NotFound, sentence)
    }

    /// 403: not allowed.
    pub fn forbidden(sentence: impl Into<String>) -> Self {
        Self::rule(RuleKind::Forbidden, sentence)
    }

    /// 400: bad input.
    pub fn invalid(sentence: impl Into<String>) -> Self {
        Self::rule(RuleKind::Invalid, sentence)
    }

    /// 409: not in this state.
    pub fn conflict(sentence: impl Into<String>) -> Self {
        Self::rule(RuleKind::Conflict, sentence)
    }

    /// What the user reads.
    pub fn sentence(&self) -> String {
        match self {
            Refusal::Rule { sentence, .. } => sentence.clone(),
            Refusal::Failed(Error::Homeserver(h)) => format!("The homeserver refused: {h}"),
            Refusal::Failed(_) => FAILED_SENTENCE.to_owned(),
        }
    }

    /// The HTTP status and Matrix error code an API caller gets.
    pub fn status_and_kind(&self) -> (StatusCode, ErrorKind) {
        match self {
            Refusal::Rule { kind, .. } => kind.status_and_kind(),
            Refusal::Failed(e) => e.status_and_kind(),
        }
    }

    /// Logs a failure (a rule refusal is no fault, and is not logged).
    pub fn log(&self, what: &str) {
        match self {
            Refusal::Rule { .. } => {}
            Refusal::Failed(e @ Error::Homeserver(_)) => {
                tracing::warn!(error = %e, operation = what, "an operation failed at the homeserver");
            }
            Refusal::Failed(e) => {
                tracing::error!(error = %e, operation = what, "an operation failed")
            }
        }
    }
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        Refusal::Failed(e)
    }
}

impl From<crate::error::HsError> for Refusal {
    fn from(e: crate::error::HsError) -> Self {
        Refusal::Failed(Error::Homeserver(e))
    }
}

impl From<Refusal> for Error {
    /// The API's answer: a rule refusal keeps its sentence as the error message.
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Rule { kind, sentence } => Error::Refused { kind, sentence },
            Refusal::Failed(e) => e,
        }
    }
}

/// An operation's outcome.
pub type OpResult<T> = Result<T, Refusal>;
