//! A board's live stream: what its events say and who may see each. Most are logged (in
//! the per-board event log, in the same write as the change they tell of); typing and
//! presence are live only.

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, events::room::member::MembershipState};
use serde::{Deserialize, Serialize};

use super::{inbox::Notification, task::Comment, task::TaskRecord};

/// One event of a board's stream.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct StreamEvent {
    /// When it was logged (ms since the epoch): retention counts from here.
    pub ts: u64,
    /// Seen only by the joined members of this room (a private room's messages and
    /// typing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_room: Option<OwnedRoomId>,
    /// Seen only by this user (their notifications).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<OwnedUserId>,
    /// What happened.
    pub data: StreamData,
}

impl StreamEvent {
    /// An event for every board member.
    pub fn public(data: StreamData) -> Self {
        Self { ts: super::now_ms(), private_room: None, only: None, data }
    }

    /// Whether it is kept in the log (typing and presence are not).
    pub fn is_logged(&self) -> bool {
        !matches!(self.data, StreamData::Typing(_) | StreamData::Presence(_))
    }

    /// The event type subscribers see (`event:` in Server-Sent Events).
    pub fn kind(&self) -> &'static str {
        match self.data {
            StreamData::Message(_) => "message",
            StreamData::Comment(_) => "comment",
            StreamData::Task(_) => "task",
            StreamData::Membership(_) => "membership",
            StreamData::Notification(_) => "notification",
            StreamData::Typing(_) => "typing",
            StreamData::Presence(_) => "presence",
        }
    }
}

/// What happened.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StreamData {
    /// A message in a board room (not a task comment), an edit of one, or a redaction.
    Message(MessageEvent),
    /// A task comment: new, edited or removed.
    Comment(CommentEvent),
    /// A task created, changed or deleted.
    Task(TaskEvent),
    /// Someone joined, left, was invited to or banned from the board, or their role or
    /// display name changed.
    Membership(MembershipEvent),
    /// A new entry in someone's inbox, or entries of theirs read.
    Notification(NotificationEvent),
    /// Who types in a room now (live only).
    Typing(TypingEvent),
    /// Someone's presence (live only).
    Presence(PresenceEvent),
}

/// A message in a board room.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct MessageEvent {
    /// The room's name in the board (`general`).
    pub room: String,
    /// The room.
    pub room_id: OwnedRoomId,
    /// The event.
    pub event_id: OwnedEventId,
    /// Who sent it.
    pub sender: OwnedUserId,
    /// Their display name in the room, if they set one.
    pub display_name: Option<String>,
    /// `m.text`, `m.notice`, `m.emote`, …; `None` for a redaction.
    pub msgtype: Option<String>,
    /// Its text (an edit's new text); `None` for a redaction.
    pub body: Option<String>,
    /// Its HTML, if it has one, as the sender wrote it (not sanitized).
    pub formatted_body: Option<String>,
    /// When it was sent (the homeserver's `origin_server_ts`).
    pub ts: u64,
    /// The thread it is in.
    pub thread_root: Option<OwnedEventId>,
    /// The message this edits.
    pub replaces: Option<OwnedEventId>,
    /// The message this redacts (then the event is the redaction).
    pub redacts: Option<OwnedEventId>,
}

/// What became of a comment.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CommentChange {
    /// Written.
    New,
    /// Its author edited it.
    Edited,
    /// Redacted: gone from the task.
    Removed,
}

/// A task comment.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct CommentEvent {
    /// The task's number.
    pub task: u64,
    /// What became of it.
    pub change: CommentChange,
    /// The comment (for `removed`, as it was).
    pub comment: Comment,
    /// The author's display name in the tasks room.
    pub display_name: Option<String>,
}

/// What became of a task.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TaskChange {
    /// Created.
    Created,
    /// Changed (fields, or its root after a room upgrade).
    Changed,
    /// Deleted.
    Deleted,
}

/// A task, whole, as it is now.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct TaskEvent {
    /// What became of it.
    pub change: TaskChange,
    /// The task after the change.
    pub task: TaskRecord,
}

/// What changed about a member.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MembershipChange {
    /// Their membership of the board's space (joined, left, invited, banned, knocking).
    Membership,
    /// Their role (power in the space).
    Role,
    /// Their display name in the space.
    DisplayName,
}

/// A member of the board.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct MembershipEvent {
    /// Who.
    pub user_id: OwnedUserId,
    /// What changed.
    pub change: MembershipChange,
    /// Their membership now (`leave` once gone).
    pub membership: MembershipState,
    /// Their role now: `owner`, `admin` or `member`.
    pub role: String,
    /// Their display name in the space.
    pub display_name: Option<String>,
}

impl MembershipEvent {
    /// Whether it takes `user` out of the board.
    pub fn removes(&self, user: &ruma::UserId) -> bool {
        self.user_id == user
            && self.change == MembershipChange::Membership
            && self.membership != MembershipState::Join
    }
}

/// A new entry in someone's inbox, or entries of theirs read.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct NotificationEvent {
    /// The new entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<Notification>,
    /// The ids of entries marked read (by a read receipt, or over the API).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<u64>,
    /// Their unread count after it (all boards).
    pub unread_count: u64,
    /// In the log only: the new entry's id, stored there in place of the entry (which
    /// the owner's inbox holds), and put back by [`crate::store::Store::live_read`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<u64>,
}

/// Who types in a room.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct TypingEvent {
    /// The room's name in the board.
    pub room: String,
    /// The room.
    pub room_id: OwnedRoomId,
    /// Who types now (empty: nobody).
    pub user_ids: Vec<OwnedUserId>,
}

/// Someone's presence.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct PresenceEvent {
    /// Who.
    pub user_id: OwnedUserId,
    /// `online`, `unavailable` or `offline`.
    pub presence: ruma::presence::PresenceState,
}
