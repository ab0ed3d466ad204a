//! Who is typing where and who is online, as the homeserver reports through ephemeral
//! events, and as API callers show by what they do (typing set over the API, the presence
//! a client sets for its virtual user, their requests). Kept in memory: it is current
//! state, not history.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
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

/// How long an API request counts as being online, for a user of whom no presence is
/// reported (ms).
pub const ACTIVE_MS: u64 = 60_000;

/// How long a board's list of online members is answered again without being worked out
/// anew (ms), unless an API caller changed presence meanwhile: presence the homeserver
/// reports shows within this time.
pub const ONLINE_LIST_TTL_MS: u64 = 1_000;

/// A board member online or away, in a board's list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnlineMember {
    /// Who.
    pub user_id: OwnedUserId,
    /// Their display name in the board's space.
    pub display_name: Option<String>,
    /// Online or unavailable.
    pub presence: PresenceState,
    /// When they were last reported or active (ms since the epoch).
    pub since_ms: u64,
}

/// A board's list of online members, as worked out at `at_ms`.
#[derive(Debug)]
struct OnlineList {
    at_ms: u64,
    generation: u64,
    members: Arc<Vec<OnlineMember>>,
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
    /// Bumped when an API caller changes who is online (sets a presence, or becomes
    /// active): the boards' lists are then worked out anew.
    generation: AtomicU64,
    /// Each board's list of online members, by slug.
    online: RwLock<HashMap<String, OnlineList>>,
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
        let Ok(mut a) = self.active.write() else { return };
        let was_active = match a.get_mut(user_id) {
            Some(at) => {
                let was = now.saturating_sub(*at) <= ACTIVE_MS;
                *at = now;
                was
            }
            None => {
                a.insert(user_id.to_owned(), now);
                false
            }
        };
        if !was_active {
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records the presence an API client set for its virtual user.
    pub fn set_presence_by_api(&self, user_id: OwnedUserId, state: PresenceState) {
        self.set_presence(user_id, state);
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// The list of online members of the board `slug` worked out last, while it holds: less
    /// than [`ONLINE_LIST_TTL_MS`] old at `now_ms`, and no API caller changed presence
    /// since.
    pub fn online_list(&self, slug: &str, now_ms: u64) -> Option<Arc<Vec<OnlineMember>>> {
        let generation = self.generation.load(Ordering::Relaxed);
        let lists = self.online.read().ok()?;
        let list = lists.get(slug)?;
        (list.generation == generation && now_ms.saturating_sub(list.at_ms) < ONLINE_LIST_TTL_MS)
            .then(|| list.members.clone())
    }

    /// What [`LiveState::online_list`] answers from now on, worked out at `at_ms` when the
    /// generation was `generation` ([`LiveState::generation`], read before).
    pub fn remember_online_list(
        &self,
        slug: &str,
        at_ms: u64,
        generation: u64,
        members: Arc<Vec<OnlineMember>>,
    ) {
        if let Ok(mut lists) = self.online.write() {
            lists.insert(slug.to_owned(), OnlineList { at_ms, generation, members });
        }
    }

    /// The current generation of API callers' presence changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
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

#[cfg(test)]
mod tests {
    use ruma::{owned_room_id, owned_user_id};

    use super::*;

    #[test]
    fn typing_set_over_the_api_joins_the_homeservers_and_ends_at_its_timeout() {
        let live = LiveState::default();
        let room = owned_room_id!("!general:localhost");
        let (alice, pm) =
            (owned_user_id!("@alice:localhost"), owned_user_id!("@boardroom_pm:localhost"));
        live.set_typing(room.clone(), vec![alice.clone()]);
        live.set_api_typing(&room, &pm, Some(1_000));
        assert_eq!(live.typing_at(&room, 999), [alice.clone(), pm.clone()]);
        assert_eq!(live.typing_at(&room, 1_000), std::slice::from_ref(&alice), "past its timeout");
        live.set_api_typing(&room, &pm, Some(u64::MAX));
        live.set_api_typing(&room, &pm, None);
        assert_eq!(live.typing_at(&room, 0), [alice], "stopped");
    }

    #[test]
    fn a_boards_online_list_is_worked_out_anew_after_an_api_caller_changes_presence() {
        let live = LiveState::default();
        let pm = owned_user_id!("@boardroom_pm:localhost");
        let list = Arc::new(Vec::new());
        live.remember_online_list("launch", 10_000, live.generation(), list);
        assert!(live.online_list("launch", 10_500).is_some(), "reused within its time");
        assert!(live.online_list("launch", 10_000 + ONLINE_LIST_TTL_MS).is_none(), "too old");
        live.set_presence_by_api(pm.clone(), PresenceState::Online);
        assert!(live.online_list("launch", 10_500).is_none(), "a presence was set");
        live.remember_online_list("launch", 10_000, live.generation(), Arc::new(Vec::new()));
        live.touch(&pm);
        assert!(live.online_list("launch", 10_500).is_none(), "a caller became active");
        live.remember_online_list("launch", 10_000, live.generation(), Arc::new(Vec::new()));
        live.touch(&pm);
        assert!(live.online_list("launch", 10_500).is_some(), "still active: nothing changed");
    }
}
