//! Who is typing where and who is online, as the homeserver reports through ephemeral
//! events. Kept in memory: it is current state, not history.

use std::{collections::HashMap, sync::RwLock};

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId, presence::PresenceState};

/// A user's last reported presence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    /// online, unavailable or offline.
    pub state: PresenceState,
    /// When Boardroom heard of it (milliseconds since the epoch).
    pub seen_ms: u64,
}

/// Typing and presence.
#[derive(Debug, Default)]
pub struct LiveState {
    typing: RwLock<HashMap<OwnedRoomId, Vec<OwnedUserId>>>,
    presence: RwLock<HashMap<OwnedUserId, Presence>>,
}

impl LiveState {
    /// The users typing in `room_id` now (the homeserver sends the whole list each time).
    pub fn set_typing(&self, room_id: OwnedRoomId, users: Vec<OwnedUserId>) {
        if let Ok(mut t) = self.typing.write() {
            if users.is_empty() {
                t.remove(&room_id);
            } else {
                t.insert(room_id, users);
            }
        }
    }

    /// Who is typing in `room_id`.
    pub fn typing(&self, room_id: &RoomId) -> Vec<OwnedUserId> {
        self.typing.read().ok().and_then(|t| t.get(room_id).cloned()).unwrap_or_default()
    }

    /// Records `user_id`'s presence.
    pub fn set_presence(&self, user_id: OwnedUserId, state: PresenceState) {
        let seen_ms = super::now_ms();
        if let Ok(mut p) = self.presence.write() {
            p.insert(user_id, Presence { state, seen_ms });
        }
    }

    /// `user_id`'s last reported presence.
    pub fn presence(&self, user_id: &UserId) -> Option<Presence> {
        self.presence.read().ok().and_then(|p| p.get(user_id).cloned())
    }
}
