//! The board index: boards by slug and by space, rooms → board, memberships, member →
//! boards. Maps: `slug_board`, `spaceid_slug`, `roomid_boardroom`, `slugroomid`,
//! `roomuserid_membership`, `userid_slug`. Everything here is derived from Matrix room
//! state and can be rebuilt by `boardroom reindex`; every write is idempotent.

use rocksdb::{IteratorMode, WriteBatch};
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId, events::room::member::MembershipState};

use super::{
    Store,
    codec::{KeyBuf, KeyReader},
    decode, encode, maps,
};
use crate::{
    domain::board::{BoardRecord, RoomKind, RoomRecord},
    error::{Error, Result},
};

impl Store {
    /// Records (or updates) a board.
    pub fn put_board(&self, board: &BoardRecord) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(maps::SLUG_BOARD)?, board.slug.as_bytes(), encode(board)?);
        batch.put_cf(
            self.cf(maps::SPACEID_SLUG)?,
            board.space_id.as_bytes(),
            board.slug.as_bytes(),
        );
        self.db.write(batch)?;
        Ok(())
    }

    /// The board with this slug.
    pub fn board(&self, slug: &str) -> Result<Option<BoardRecord>> {
        self.db
            .get_pinned_cf(self.cf(maps::SLUG_BOARD)?, slug.as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    /// The board whose space this is.
    pub fn board_by_space(&self, space_id: &RoomId) -> Result<Option<BoardRecord>> {
        let Some(slug) =
            self.db.get_pinned_cf(self.cf(maps::SPACEID_SLUG)?, space_id.as_bytes())?
        else {
            return Ok(None);
        };
        let slug =
            std::str::from_utf8(&slug).map_err(|_| Error::Store("slug is not UTF-8".into()))?;
        self.board(slug)
    }

    /// Every board, by slug.
    pub fn boards(&self) -> Result<Vec<BoardRecord>> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(maps::SLUG_BOARD)?, IteratorMode::Start) {
            let (_, v) = item?;
            out.push(decode(&v)?);
        }
        Ok(out)
    }

    /// Records (or updates) a board room.
    pub fn put_room(&self, room_id: &RoomId, room: &RoomRecord) -> Result<()> {
        let mut batch = WriteBatch::default();
        if let Some(old) = self.room(room_id)?
            && old.board != room.board
        {
            batch.delete_cf(
                self.cf(maps::SLUGROOMID)?,
                KeyBuf::new().str(&old.board).str(room_id.as_str()).build(),
            );
        }
        batch.put_cf(self.cf(maps::ROOMID_BOARDROOM)?, room_id.as_bytes(), encode(room)?);
        batch.put_cf(
            self.cf(maps::SLUGROOMID)?,
            KeyBuf::new().str(&room.board).str(room_id.as_str()).build(),
            [],
        );
        self.db.write(batch)?;
        Ok(())
    }

    /// Removes a room from its board (unlinked from the space, or replaced by an upgrade).
    pub fn remove_room(&self, room_id: &RoomId) -> Result<Option<RoomRecord>> {
        let Some(old) = self.room(room_id)? else { return Ok(None) };
        let mut batch = WriteBatch::default();
        // Its memberships go too: the index knows board rooms only.
        let members = self.cf(maps::ROOMUSERID_MEMBERSHIP)?;
        let prefix = KeyBuf::new().str(room_id.as_str()).prefix();
        for item in self.scan(members, &prefix) {
            let (k, _) = item?;
            batch.delete_cf(members, k);
        }
        batch.delete_cf(self.cf(maps::ROOMID_BOARDROOM)?, room_id.as_bytes());
        batch.delete_cf(
            self.cf(maps::SLUGROOMID)?,
            KeyBuf::new().str(&old.board).str(room_id.as_str()).build(),
        );
        self.db.write(batch)?;
        Ok(Some(old))
    }

    /// The board room record of `room_id`.
    pub fn room(&self, room_id: &RoomId) -> Result<Option<RoomRecord>> {
        self.db
            .get_pinned_cf(self.cf(maps::ROOMID_BOARDROOM)?, room_id.as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    /// A board's rooms.
    pub fn rooms_of(&self, slug: &str) -> Result<Vec<(OwnedRoomId, RoomRecord)>> {
        let prefix = KeyBuf::new().str(slug).prefix();
        let mut out = Vec::new();
        let cf = self.cf(maps::SLUGROOMID)?;
        for item in self.scan(cf, &prefix) {
            let (k, _) = item?;
            let mut r = KeyReader::new(&k);
            r.str()?;
            let room_id: OwnedRoomId =
                r.str()?.try_into().map_err(|_| Error::Store("bad room id in index".into()))?;
            if let Some(rec) = self.room(&room_id)? {
                out.push((room_id, rec));
            }
        }
        Ok(out)
    }

    /// A board's `tasks` room.
    pub fn tasks_room_of(&self, slug: &str) -> Result<Option<(OwnedRoomId, RoomRecord)>> {
        Ok(self.rooms_of(slug)?.into_iter().find(|(_, r)| r.kind == RoomKind::Tasks))
    }

    /// Records `user`'s membership in a board space or room. For a board's space, also
    /// keeps `userid_slug` (the boards a user has joined) current.
    pub fn set_membership(
        &self,
        room_id: &RoomId,
        user: &UserId,
        membership: &MembershipState,
        display_name: Option<&str>,
        space_of: Option<&str>,
    ) -> Result<()> {
        let mut batch = WriteBatch::default();
        let key = KeyBuf::new().str(room_id.as_str()).str(user.as_str()).build();
        let cf = self.cf(maps::ROOMUSERID_MEMBERSHIP)?;
        match membership {
            MembershipState::Leave => batch.delete_cf(cf, &key),
            other => {
                // `membership`, then the display name after a separator when there is one.
                let mut v = KeyBuf::new().str(other.as_str());
                if let Some(name) = display_name.filter(|n| !n.is_empty()) {
                    v = v.str(name);
                }
                batch.put_cf(cf, &key, v.build());
            }
        }
        if let Some(slug) = space_of {
            let k = KeyBuf::new().str(user.as_str()).str(slug).build();
            if *membership == MembershipState::Join {
                batch.put_cf(self.cf(maps::USERID_SLUG)?, k, []);
            } else {
                batch.delete_cf(self.cf(maps::USERID_SLUG)?, k);
            }
        }
        self.db.write(batch)?;
        Ok(())
    }

    /// `user`'s membership in a board space or room (`None`: none, or left).
    pub fn membership(&self, room_id: &RoomId, user: &UserId) -> Result<Option<MembershipState>> {
        let key = KeyBuf::new().str(room_id.as_str()).str(user.as_str()).build();
        self.db
            .get_pinned_cf(self.cf(maps::ROOMUSERID_MEMBERSHIP)?, key)?
            .map(|v| decode_membership(&v).map(|(m, _)| m))
            .transpose()
    }

    /// Everyone with a membership in `room_id`, with their display names.
    pub fn members_with_names(
        &self,
        room_id: &RoomId,
    ) -> Result<Vec<(OwnedUserId, MembershipState, Option<String>)>> {
        let prefix = KeyBuf::new().str(room_id.as_str()).prefix();
        let cf = self.cf(maps::ROOMUSERID_MEMBERSHIP)?;
        let mut out = Vec::new();
        for item in self.scan(cf, &prefix) {
            let (k, v) = item?;
            let mut r = KeyReader::new(&k);
            r.str()?;
            let user: OwnedUserId =
                r.str()?.try_into().map_err(|_| Error::Store("bad user id in index".into()))?;
            let (m, name) = decode_membership(&v)?;
            out.push((user, m, name));
        }
        Ok(out)
    }

    /// Everyone with a membership in `room_id` (joined, invited, banned, knocking).
    pub fn members(&self, room_id: &RoomId) -> Result<Vec<(OwnedUserId, MembershipState)>> {
        let prefix = KeyBuf::new().str(room_id.as_str()).prefix();
        let cf = self.cf(maps::ROOMUSERID_MEMBERSHIP)?;
        let mut out = Vec::new();
        for item in self.scan(cf, &prefix) {
            let (k, v) = item?;
            let mut r = KeyReader::new(&k);
            r.str()?;
            let user: OwnedUserId =
                r.str()?.try_into().map_err(|_| Error::Store("bad user id in index".into()))?;
            out.push((user, decode_membership(&v)?.0));
        }
        Ok(out)
    }

    /// Whether `user` has joined the board `slug`.
    pub fn is_board_member(&self, slug: &str, user: &UserId) -> Result<bool> {
        let k = KeyBuf::new().str(user.as_str()).str(slug).build();
        Ok(self.db.get_pinned_cf(self.cf(maps::USERID_SLUG)?, k)?.is_some())
    }

    /// The boards `user` has joined.
    pub fn boards_of(&self, user: &UserId) -> Result<Vec<String>> {
        let prefix = KeyBuf::new().str(user.as_str()).prefix();
        let cf = self.cf(maps::USERID_SLUG)?;
        let mut out = Vec::new();
        for item in self.scan(cf, &prefix) {
            let (k, _) = item?;
            let mut r = KeyReader::new(&k);
            r.str()?;
            out.push(r.str()?.to_owned());
        }
        Ok(out)
    }

    /// Empties the board index (before a rebuild).
    pub fn clear_board_index(&self) -> Result<()> {
        self.clear_maps(&BOARD_MAPS)
    }

    /// The whole board index as readable lines, sorted: for comparing two indexes.
    pub fn dump_board_index(&self) -> Result<Vec<String>> {
        self.dump_maps(&BOARD_MAPS)
    }

    pub(crate) fn clear_maps(&self, names: &[&str]) -> Result<()> {
        for name in names {
            let cf = self.cf(name)?;
            let mut batch = WriteBatch::default();
            for item in self.db.iterator_cf(cf, IteratorMode::Start) {
                let (k, _) = item?;
                batch.delete_cf(cf, k);
            }
            self.db.write(batch)?;
        }
        Ok(())
    }

    pub(crate) fn dump_maps(&self, names: &[&str]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for name in names {
            for item in self.db.iterator_cf(self.cf(name)?, IteratorMode::Start) {
                let (k, v) = item?;
                let key: String = k
                    .iter()
                    .map(|&b| if b.is_ascii_graphic() || b == b' ' { char::from(b) } else { '.' })
                    .collect();
                out.push(format!("{name}: {key} = {}", String::from_utf8_lossy(&v)));
            }
        }
        Ok(out)
    }
}

fn decode_membership(v: &[u8]) -> Result<(MembershipState, Option<String>)> {
    let mut r = KeyReader::new(v);
    let m = MembershipState::from(r.str()?);
    let name = if r.is_done() { None } else { Some(r.str()?.to_owned()) };
    Ok((m, name))
}

const BOARD_MAPS: [&str; 6] = [
    maps::SLUG_BOARD,
    maps::SPACEID_SLUG,
    maps::ROOMID_BOARDROOM,
    maps::SLUGROOMID,
    maps::ROOMUSERID_MEMBERSHIP,
    maps::USERID_SLUG,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::board::RoomKind;

    #[test]
    fn boards_rooms_and_members() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let board = BoardRecord {
            slug: "launch".into(),
            space_id: ruma::owned_room_id!("!space:x"),
            name: "Launch".into(),
            created_by: ruma::owned_user_id!("@o:x"),
            created_by_event: ruma::owned_event_id!("$e"),
            creators: vec![],
            power_users: Default::default(),
            users_default: 0,
            columns: crate::domain::task::default_columns(),
        };
        store.put_board(&board).expect("put");
        assert_eq!(store.board_by_space(&board.space_id).expect("get"), Some(board.clone()));
        let room = RoomRecord {
            board: "launch".into(),
            name: "general".into(),
            kind: RoomKind::Chat,
            private: false,
            awaiting_power: false,
        };
        let rid = ruma::room_id!("!general:x");
        store.put_room(rid, &room).expect("room");
        assert_eq!(store.rooms_of("launch").expect("rooms"), vec![(rid.to_owned(), room)]);
        let alice = ruma::user_id!("@alice:x");
        store
            .set_membership(&board.space_id, alice, &MembershipState::Invite, None, Some("launch"))
            .expect("m");
        assert!(!store.is_board_member("launch", alice).expect("m"));
        store
            .set_membership(
                &board.space_id,
                alice,
                &MembershipState::Join,
                Some("Alice"),
                Some("launch"),
            )
            .expect("m");
        assert!(store.is_board_member("launch", alice).expect("m"));
        assert_eq!(store.boards_of(alice).expect("b"), vec!["launch"]);
        assert_eq!(
            store.members_with_names(&board.space_id).expect("m"),
            vec![(alice.to_owned(), MembershipState::Join, Some("Alice".to_owned()))]
        );
        store
            .set_membership(&board.space_id, alice, &MembershipState::Leave, None, Some("launch"))
            .expect("m");
        assert!(store.boards_of(alice).expect("b").is_empty());
        assert_eq!(store.membership(&board.space_id, alice).expect("m"), None);
        store.remove_room(rid).expect("remove");
        assert!(store.rooms_of("launch").expect("rooms").is_empty());
        let dump = store.dump_board_index().expect("dump");
        assert_eq!(dump.len(), 2, "{dump:?}");
        store.clear_board_index().expect("clear");
        assert!(store.dump_board_index().expect("dump").is_empty());
    }
}
