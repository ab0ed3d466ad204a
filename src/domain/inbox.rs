//! The notification inbox: what Matrix cannot give an appservice (it cannot read a user's
//! `/notifications`), kept per user by Boardroom.

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};

/// Why someone is notified.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = NotificationKind)]
pub enum Kind {
    /// They were mentioned.
    Mention,
    /// Someone commented on a task they watch.
    Comment,
    /// They were assigned a task.
    Assignment,
}

/// One entry of a user's inbox.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Notification {
    /// Its id, unique across inboxes and growing: newer entries have larger ids.
    pub id: u64,
    /// Whose inbox.
    #[schema(value_type = String)]
    pub user_id: OwnedUserId,
    /// Why.
    pub kind: Kind,
    /// The board's slug.
    pub board: String,
    /// The room.
    #[schema(value_type = String)]
    pub room_id: OwnedRoomId,
    /// The thread, when the event is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, nullable = false)]
    pub thread_root: Option<OwnedEventId>,
    /// The event.
    #[schema(value_type = String)]
    pub event_id: OwnedEventId,
    /// Who sent it.
    #[schema(value_type = String)]
    pub sender: OwnedUserId,
    /// The start of its text.
    pub excerpt: String,
    /// When it was sent (milliseconds since the epoch).
    pub ts: u64,
    /// Read.
    pub read: bool,
    /// The event's place in arrival order (for read receipts).
    pub seq: u64,
}

/// The first 140 characters of `body`, on one line.
pub fn excerpt(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut chars = one_line.chars();
    let head: String = chars.by_ref().take(140).collect();
    if chars.next().is_some() { format!("{head}…") } else { head }
}

/// Which entries a read receipt covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiptScope {
    /// The whole room (an unthreaded receipt).
    Room,
    /// The main timeline only.
    Main,
    /// One thread.
    Thread(OwnedEventId),
}

impl ReceiptScope {
    /// Whether an entry in `thread` falls under this receipt.
    pub fn covers(&self, thread: Option<&OwnedEventId>) -> bool {
        match self {
            ReceiptScope::Room => true,
            ReceiptScope::Main => thread.is_none(),
            ReceiptScope::Thread(t) => thread == Some(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_and_single_line() {
        assert_eq!(excerpt("a\n  b"), "a b");
        let long = "x".repeat(200);
        assert_eq!(excerpt(&long).chars().count(), 141);
    }

    #[test]
    fn receipt_scopes() {
        let t = ruma::owned_event_id!("$t");
        assert!(ReceiptScope::Room.covers(Some(&t)));
        assert!(!ReceiptScope::Main.covers(Some(&t)));
        assert!(ReceiptScope::Main.covers(None));
        assert!(ReceiptScope::Thread(t.clone()).covers(Some(&t)));
        assert!(!ReceiptScope::Thread(t).covers(None));
    }
}
