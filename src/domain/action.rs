//! Outbound requests the domain wants sent. They are stored in the outbox (as JSON) before
//! anything is sent, so they survive a crash, and carry deterministic transaction ids so a
//! replay after a crash is deduplicated by the homeserver.

use ruma::{
    OwnedRoomId, OwnedTransactionId, OwnedUserId, events::room::message::RoomMessageEventContent,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One request for the homeserver.
#[derive(Clone, Debug, Serialize, Deserialize)]
// Externally tagged: ruma's content types do not deserialize from serde's buffered
// content, which internal tagging needs.
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Join a room (accept an invite).
    JoinRoom {
        /// The room.
        room_id: OwnedRoomId,
        /// A virtual user to act as; `None` is the bot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        as_user: Option<OwnedUserId>,
    },
    /// Leave a room or decline an invite.
    LeaveRoom {
        /// The room.
        room_id: OwnedRoomId,
        /// A virtual user to act as; `None` is the bot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        as_user: Option<OwnedUserId>,
        /// Shown to the room's members.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Remove someone from a room.
    Kick {
        /// The room.
        room_id: OwnedRoomId,
        /// Who.
        user_id: OwnedUserId,
        /// Shown to the room's members.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Send an `m.room.message`.
    SendMessage {
        /// The room.
        room_id: OwnedRoomId,
        /// A virtual user to act as; `None` is the bot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        as_user: Option<OwnedUserId>,
        /// Deterministic: the same cause always yields the same id.
        txn_id: OwnedTransactionId,
        /// The message.
        content: Box<RoomMessageEventContent>,
    },
}

impl Action {
    /// The room this action is about.
    pub fn room_id(&self) -> &OwnedRoomId {
        match self {
            Action::JoinRoom { room_id, .. }
            | Action::LeaveRoom { room_id, .. }
            | Action::Kick { room_id, .. }
            | Action::SendMessage { room_id, .. } => room_id,
        }
    }
}

/// A transaction id derived from what caused the request (an event id) and its index among
/// the requests that cause produced. Event ids are unique, so the id is never reused, even
/// after the database is lost.
pub fn derived_txn_id(cause: &str, index: usize) -> OwnedTransactionId {
    let mut h = Sha256::new();
    h.update(cause.as_bytes());
    h.update([0]);
    h.update(index.to_be_bytes());
    let digest = h.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    OwnedTransactionId::from(format!("br.{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_ids_are_deterministic_and_distinct() {
        assert_eq!(derived_txn_id("$a", 0), derived_txn_id("$a", 0));
        assert_ne!(derived_txn_id("$a", 0), derived_txn_id("$a", 1));
        assert_ne!(derived_txn_id("$a", 0), derived_txn_id("$b", 0));
    }

    #[test]
    fn actions_round_trip_through_json() {
        let a = Action::SendMessage {
            room_id: ruma::owned_room_id!("!r:x"),
            as_user: None,
            txn_id: derived_txn_id("$a", 0),
            content: Box::new(RoomMessageEventContent::notice_plain("hi")),
        };
        let json = serde_json::to_vec(&a).expect("serialize");
        let back: Action = serde_json::from_slice(&json).expect("deserialize");
        assert_eq!(serde_json::to_vec(&back).expect("serialize"), json);
        assert!(String::from_utf8_lossy(&json).starts_with("{\"send_message\":"));
    }
}
