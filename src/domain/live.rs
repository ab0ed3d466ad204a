//! Who is typing where and who is online, as the homeserver reports through ephemeral
//! events, and as API callers show by what they do (typing set over the API, the presence
//! a client sets for its virtual user, their requests). Kept in memory: it is current
//! state, not history.

use std::{
    collections::{HashMap, HashSet},
    sync::RwLock,
};

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
    /// Typing set over the API: room → user → until when (ms since the epoch). The
    /// homeserver does not report Boardroom's own users' typing back to it.
    api_typing: RwLock<HashMap<OwnedRoomId, HashMap<OwnedUserId, u64>>>,
    /// Each API caller's last request (ms since the epoch).
    active: RwLock<HashMap<OwnedUserId, u64>>,
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

    /// `user_id` types in `room_id` until `until_ms` (ms since the epoch), or stopped
    /// (`None`), as set over the API.
    pub fn set_api_typing(&self, room_id: &RoomId, user_id: &UserId, until_ms: Option<u64>) {
        if let Ok(mut t) = self.api_typing.write() {
            let now = super::now_ms();
            let room = t.entry(room_id.to_owned()).or_default();
            room.retain(|_, until| *until > now);
            match until_ms {
                Some(until) => {
                    room.insert(user_id.to_owned(), until);
                }
                None => {
                    room.remove(user_id);
                }
            }
            if room.is_empty() {
                t.remove(room_id);
            }
        }
    }

    /// Who types in `room_id` at `now_ms`: as the homeserver reports, and as set over the
    /// API (until its timeout), each once.
    pub fn typing_at(&self, room_id: &RoomId, now_ms: u64) -> Vec<OwnedUserId> {
        let mut users = self.typing(room_id);
        if let Ok(t) = self.api_typing.read()
            && let Some(room) = t.get(room_id)
        {
            for (user, until) in room {
                if *until > now_ms && !users.contains(user) {
                    users.push(user.clone());
                }
            }
        }
        users.sort();
        users
    }

    /// `user_id` made an API request now.
    pub fn touch(&self, user_id: &UserId) {
        let now = super::now_ms();
        if let Ok(mut a) = self.active.write() {
            match a.get_mut(user_id) {
                Some(at) => *at = now,
                None => {
                    a.insert(user_id.to_owned(), now);
                }
            }
        }
    }

    /// When `user_id` last made an API request (ms since the epoch).
    pub fn last_active(&self, user_id: &UserId) -> Option<u64> {
        self.active.read().ok().and_then(|a| a.get(user_id).copied())
    }

    /// Everyone with a presence or an API request on record.
    pub fn known_users(&self) -> Vec<OwnedUserId> {
        let mut users: HashSet<OwnedUserId> =
            self.presence.read().map(|p| p.keys().cloned().collect()).unwrap_or_default();
        if let Ok(a) = self.active.read() {
            users.extend(a.keys().cloned());
        }
        users.into_iter().collect()
    }
}
