//! The board index: boards by slug and by space, rooms → board, memberships, member →
//! boards, the names members go by. Maps: `slug_board`, `spaceid_slug`,
//! `roomid_boardroom`, `slugroomid`, `roomuserid_membership`, `userid_slug`,
//! `roomnameuser_member`. Everything here is derived from Matrix room
//! state and can be rebuilt by `boardroom reindex`; every write is idempotent.

use rocksdb::{IteratorMode, WriteBatch};
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId, events::room::member::MembershipState};

use super::{
    Store,
    codec::{self, KeyBuf, KeyReader},
    decode, encode,
    live::LogAppend,
    maps, scan,
};
use crate::{
    domain::board::{BoardRecord, Role, RoomKind, RoomRecord},
    domain::mention,
    domain::stream::{MembershipChange, MembershipEvent, StreamData, StreamEvent},
    error::{Error, Result},
};

impl Store {
    /// Records (or updates) a board. A slug bound to a space stays bound to it, and a
    /// space bound to a slug stays bound to it: a record that would rebind either is
    /// refused (`Error::Forbidden`), whoever asks. Boardroom follows no upgrade of a
    /// board's space, so no legitimate write ever moves a board to another space.
    pub fn put_board(&self, board: &BoardRecord) -> Result<()> {
        let db = self.db()?;
        if let Some(existing) = self.board(&board.slug)?
            && existing.space_id != board.space_id
        {
            return Err(Error::Forbidden(format!(
                "the board {} belongs to the space {}, not {}",
                board.slug, existing.space_id, board.space_id
            )));
        }
        if let Some(bound) =
            db.get_pinned_cf(super::cf(&db, maps::SPACEID_SLUG)?, board.space_id.as_bytes())?
            && *bound != *board.slug.as_bytes()
        {
            return Err(Error::Forbidden(format!(
                "the space {} holds the board {}, not {}",
                board.space_id,
                String::from_utf8_lossy(&bound),
                board.slug
            )));
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(super::cf(&db, maps::SLUG_BOARD)?, board.slug.as_bytes(), encode(board)?);
        batch.put_cf(
            super::cf(&db, maps::SPACEID_SLUG)?,
            board.space_id.as_bytes(),
            board.slug.as_bytes(),
        );
        let log = match self.board(&board.slug)? {
            Some(before) => self.role_changes(&before, board)?,
            None => LogAppend::new(),
        };
        let written = self.commit(&db, batch, &rocksdb::WriteOptions::default(), &[], log);
        self.inner.spaces.forget(board.space_id.as_bytes());
        written
    }

    /// The members of a board's space whose role differs between two of its records.
    fn role_changes(&self, before: &BoardRecord, after: &BoardRecord) -> Result<LogAppend> {
        if before.power_users == after.power_users
            && before.users_default == after.users_default
            && before.creators == after.creators
        {
            return Ok(LogAppend::new());
        }
        let mut log = LogAppend::new();
        for (user, (membership, display_name)) in self.members_named_all(&after.space_id)? {
            let role = after.role_of(&user);
            if role != before.role_of(&user) {
                log.push((
                    after.slug.clone(),
                    StreamEvent::public(StreamData::Membership(MembershipEvent {
                        user_id: user,
                        change: MembershipChange::Role,
                        membership,
                        role: role.as_str().to_owned(),
                        display_name,
                    })),
                ));
            }
        }
        Ok(log)
    }

    /// Everyone with a membership in `room_id`, with their display name.
    fn members_named_all(&self, room_id: &RoomId) -> Result<Vec<(OwnedUserId, Membership)>> {
        let db = self.db()?;
        let prefix = KeyBuf::new().str(room_id.as_str()).prefix();
        let cf = super::cf(&db, maps::ROOMUSERID_MEMBERSHIP)?;
        let mut out = Vec::new();
        for item in scan(&db, cf, &prefix) {
            let (k, v) = item?;
            let mut r = KeyReader::new(&k);
            r.str()?;
            let user: OwnedUserId =
                r.str()?.try_into().map_err(|_| Error::Store("bad user id in index".into()))?;
            out.push((user, decode_membership(&v)?));
        }
        Ok(out)
    }

    /// The board with this slug.
    pub fn board(&self, slug: &str) -> Result<Option<BoardRecord>> {
        let db = self.db()?;
        db.get_pinned_cf(super::cf(&db, maps::SLUG_BOARD)?, slug.as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    /// The board whose space this is.
    pub fn board_by_space(&self, space_id: &RoomId) -> Result<Option<BoardRecord>> {
        match self.slug_of_space(space_id)? {
            Some(slug) => self.board(&slug),
            None => Ok(None),
        }
    }

    /// The slug of the board whose space this is (kept in memory once read).
    pub fn slug_of_space(&self, space_id: &RoomId) -> Result<Option<String>> {
        self.inner.spaces.get_or(space_id.as_bytes(), || {
            let db = self.db()?;
            let Some(slug) =
                db.get_pinned_cf(super::cf(&db, maps::SPACEID_SLUG)?, space_id.as_bytes())?
            else {
                return Ok(None);
            };
            std::str::from_utf8(&slug)
                .map(str::to_owned)
                .map(Some)
                .map_err(|_| Error::Store("slug is not UTF-8".into()))
        })
    }

    /// Every board, by slug.
    pub fn boards(&self) -> Result<Vec<BoardRecord>> {
        let db = self.db()?;
        let mut out = Vec::new();
        for item in db.iterator_cf(super::cf(&db, maps::SLUG_BOARD)?, IteratorMode::Start) {
            let (_, v) = item?;
            out.push(decode(&v)?);
        }
        Ok(out)
    }

    /// Records (or updates) a board room.
    pub fn put_room(&self, room_id: &RoomId, room: &RoomRecord) -> Result<()> {
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        if let Some(old) = self.room(room_id)?
            && old.board != room.board
        {
            batch.delete_cf(
                super::cf(&db, maps::SLUGROOMID)?,
                KeyBuf::new().str(&old.board).str(room_id.as_str()).build(),
            );
        }
        batch.put_cf(super::cf(&db, maps::ROOMID_BOARDROOM)?, room_id.as_bytes(), encode(room)?);
        batch.put_cf(
            super::cf(&db, maps::SLUGROOMID)?,
            KeyBuf::new().str(&room.board).str(room_id.as_str()).build(),
            [],
        );
        let written = self.checked(db.write(batch));
        self.inner.rooms.forget(room_id.as_bytes());
        written
    }

    /// Removes a room from its board (unlinked from the space, or replaced by an upgrade).
    pub fn remove_room(&self, room_id: &RoomId) -> Result<Option<RoomRecord>> {
        let db = self.db()?;
        let Some(old) = self.room(room_id)? else { return Ok(None) };
        let mut batch = WriteBatch::default();
        // Its memberships and the names its members go by go too: the index knows board
        // rooms only.
        let prefix = KeyBuf::new().str(room_id.as_str()).prefix();
        for map in [maps::ROOMUSERID_MEMBERSHIP, maps::ROOMNAMEUSER_MEMBER] {
            let cf = super::cf(&db, map)?;
            for item in scan(&db, cf, &prefix) {
                let (k, _) = item?;
                batch.delete_cf(cf, k);
            }
        }
        batch.delete_cf(super::cf(&db, maps::ROOMID_BOARDROOM)?, room_id.as_bytes());
        batch.delete_cf(
            super::cf(&db, maps::SLUGROOMID)?,
            KeyBuf::new().str(&old.board).str(room_id.as_str()).build(),
        );
        let written = self.checked(db.write(batch));
        self.inner.rooms.forget(room_id.as_bytes());
        self.inner.members.forget_all();
        written.map(|()| Some(old))
    }

    /// The board room record of `room_id`.
    pub fn room(&self, room_id: &RoomId) -> Result<Option<RoomRecord>> {
        self.inner.rooms.get_or(room_id.as_bytes(), || {
            let db = self.db()?;
            db.get_pinned_cf(super::cf(&db, maps::ROOMID_BOARDROOM)?, room_id.as_bytes())?
                .map(|v| decode(&v))
                .transpose()
        })
    }

    /// A board's rooms.
    pub fn rooms_of(&self, slug: &str) -> Result<Vec<(OwnedRoomId, RoomRecord)>> {
        let db = self.db()?;
        let prefix = KeyBuf::new().str(slug).prefix();
        let mut out = Vec::new();
        let cf = super::cf(&db, maps::SLUGROOMID)?;
        for item in scan(&db, cf, &prefix) {
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
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        let key = KeyBuf::new().str(room_id.as_str()).str(user.as_str()).build();
        let cf = super::cf(&db, maps::ROOMUSERID_MEMBERSHIP)?;
        // The names this member went by, out; the names they go by now if joined, in.
        let names = super::cf(&db, maps::ROOMNAMEUSER_MEMBER)?;
        let before = self.member(room_id, user)?;
        // The same membership under the same name (a profile change the index does not
        // keep, such as a new avatar, comes as a join after a join): nothing to write.
        let display_name_kept = display_name.filter(|n| !n.is_empty());
        if before.as_ref().is_some_and(|(m, name)| {
            m == membership
                && *membership != MembershipState::Leave
                && name.as_deref() == display_name_kept
        }) {
            return Ok(());
        }
        if let Some((MembershipState::Join, old_name)) = &before {
            for name in member_names(user, old_name.as_deref()) {
                batch.delete_cf(names, name_key(room_id, &name, user));
            }
        }
        if *membership == MembershipState::Join {
            for name in member_names(user, display_name) {
                batch.put_cf(names, name_key(room_id, &name, user), []);
            }
        }
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
        let mut log = LogAppend::new();
        if let Some(slug) = space_of {
            let k = KeyBuf::new().str(user.as_str()).str(slug).build();
            if *membership == MembershipState::Join {
                batch.put_cf(super::cf(&db, maps::USERID_SLUG)?, k, []);
            } else {
                batch.delete_cf(super::cf(&db, maps::USERID_SLUG)?, k);
            }
            let display_name = display_name.filter(|n| !n.is_empty()).map(str::to_owned);
            let (was, was_named) = match before {
                Some((m, name)) => (m, name),
                None => (MembershipState::Leave, None),
            };
            let change = if was != *membership {
                Some(MembershipChange::Membership)
            } else if *membership == MembershipState::Join && was_named != display_name {
                Some(MembershipChange::DisplayName)
            } else {
                None
            };
            if let Some(change) = change {
                let role = self.board(slug)?.map_or(Role::Member, |b| b.role_of(user));
                log.push((
                    slug.to_owned(),
                    StreamEvent::public(StreamData::Membership(MembershipEvent {
                        user_id: user.to_owned(),
                        change,
                        membership: membership.clone(),
                        role: role.as_str().to_owned(),
                        display_name,
                    })),
                ));
            }
        }
        let written = self.commit(&db, batch, &rocksdb::WriteOptions::default(), &[], log);
        self.inner.members.forget(&key);
        written
    }

    /// `user`'s membership in a board space or room (`None`: none, or left).
    pub fn membership(&self, room_id: &RoomId, user: &UserId) -> Result<Option<MembershipState>> {
        Ok(self.member(room_id, user)?.map(|(m, _)| m))
    }

    /// Everyone with a membership in `room_id` (joined, invited, banned, knocking).
    pub fn members(&self, room_id: &RoomId) -> Result<Vec<(OwnedUserId, MembershipState)>> {
        Ok(self.members_named_all(room_id)?.into_iter().map(|(u, (m, _))| (u, m)).collect())
    }

    /// Whether `user` has joined the board `slug`.
    pub fn is_board_member(&self, slug: &str, user: &UserId) -> Result<bool> {
        let db = self.db()?;
        let k = KeyBuf::new().str(user.as_str()).str(slug).build();
        Ok(db.get_pinned_cf(super::cf(&db, maps::USERID_SLUG)?, k)?.is_some())
    }

    /// The boards `user` has joined.
    pub fn boards_of(&self, user: &UserId) -> Result<Vec<String>> {
        let db = self.db()?;
        let prefix = KeyBuf::new().str(user.as_str()).prefix();
        let cf = super::cf(&db, maps::USERID_SLUG)?;
        let mut out = Vec::new();
        for item in scan(&db, cf, &prefix) {
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
        let cleared = self.clear_maps_uncached(names);
        self.inner.rooms.forget_all();
        self.inner.members.forget_all();
        self.inner.spaces.forget_all();
        cleared
    }

    fn clear_maps_uncached(&self, names: &[&str]) -> Result<()> {
        let db = self.db()?;
        for name in names {
            let cf = super::cf(&db, name)?;
            let mut batch = WriteBatch::default();
            for item in db.iterator_cf(cf, IteratorMode::Start) {
                let (k, _) = item?;
                batch.delete_cf(cf, k);
            }
            self.checked(db.write(batch))?;
        }
        Ok(())
    }

    pub(crate) fn dump_maps(&self, names: &[&str]) -> Result<Vec<String>> {
        let db = self.db()?;
        let mut out = Vec::new();
        for name in names {
            for item in db.iterator_cf(super::cf(&db, name)?, IteratorMode::Start) {
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

/// The lowercase names a member goes by: localpart, and display name when there is one.
fn member_names(user: &UserId, display_name: Option<&str>) -> Vec<String> {
    let mut out = vec![user.localpart().to_lowercase()];
    if let Some(d) = display_name.map(str::to_lowercase).filter(|d| !d.is_empty() && *d != out[0]) {
        out.push(d);
    }
    out
}

fn name_key(room: &RoomId, name: &str, user: &UserId) -> Vec<u8> {
    KeyBuf::new().str(room.as_str()).str(name).str(user.as_str()).build()
}

impl Store {
    /// The longest name of a joined member of `room` that `text` (lowercase, what follows
    /// an `@`) starts with, ending at one of [`mention::name_ends`]`(text)`: its length in
    /// bytes and the member. Ties go to the smallest user id. At most two seeks for each
    /// of those ends, however many members the room has and whatever they are called.
    pub fn name_at(&self, room: &RoomId, text: &str) -> Result<Option<(usize, OwnedUserId)>> {
        self.name_at_counting(room, text, &mut 0)
    }

    /// [`Store::name_at`], adding the seeks it makes to `seeks`.
    pub fn name_at_counting(
        &self,
        room: &RoomId,
        text: &str,
        seeks: &mut usize,
    ) -> Result<Option<(usize, OwnedUserId)>> {
        let db = self.db()?;
        let cf = super::cf(&db, maps::ROOMNAMEUSER_MEMBER)?;
        let mut it = db.raw_iterator_cf(cf);
        let room_prefix = KeyBuf::new().str(room.as_str()).prefix();
        let mut best = None;
        for p in mention::name_ends(text) {
            let name = &text[..p];
            // Does any name start with this? If not, no longer one can match either.
            let mut start = room_prefix.clone();
            start.extend_from_slice(name.as_bytes());
            *seeks += 1;
            it.seek(&start);
            if !it.key().is_some_and(|k| k.starts_with(&start)) {
                break;
            }
            // Is it a whole name? `name, SEP` starts its keys.
            start.push(codec::SEP);
            *seeks += 1;
            it.seek(&start);
            if let Some(k) = it.key().filter(|k| k.starts_with(&start)) {
                let user = std::str::from_utf8(&k[start.len()..])
                    .map_err(|_| Error::Store("bad user id in the name index".into()))?;
                let user: OwnedUserId = user
                    .try_into()
                    .map_err(|_| Error::Store("bad user id in the name index".into()))?;
                best = Some((p, user));
            }
        }
        it.status()?;
        Ok(best)
    }

    /// Joined members of `room` with a name (localpart or display name) starting with
    /// `prefix` (lowercase), each once, by name: at most `limit`.
    pub fn members_named(
        &self,
        room: &RoomId,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<OwnedUserId>> {
        let db = self.db()?;
        let mut start = KeyBuf::new().str(room.as_str()).prefix();
        start.extend_from_slice(prefix.as_bytes());
        let mut out: Vec<OwnedUserId> = Vec::new();
        for item in scan(&db, super::cf(&db, maps::ROOMNAMEUSER_MEMBER)?, &start) {
            let (k, _) = item?;
            let mut r = KeyReader::new(&k);
            r.str()?;
            r.str()?;
            let user: OwnedUserId =
                r.str()?.try_into().map_err(|_| Error::Store("bad user id in index".into()))?;
            if !out.contains(&user) {
                out.push(user);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// `user`'s membership in `room` and the display name it carries.
    pub fn member(
        &self,
        room_id: &RoomId,
        user: &UserId,
    ) -> Result<Option<(MembershipState, Option<String>)>> {
        let key = KeyBuf::new().str(room_id.as_str()).str(user.as_str()).build();
        self.inner.members.get_or(&key, || {
            let db = self.db()?;
            db.get_pinned_cf(super::cf(&db, maps::ROOMUSERID_MEMBERSHIP)?, &key)?
                .map(|v| decode_membership(&v))
                .transpose()
        })
    }

    /// Fills `roomnameuser_member` from the memberships already indexed (migration 8).
    pub(crate) fn index_member_names(&self) -> Result<()> {
        let db = self.db()?;
        let names = super::cf(&db, maps::ROOMNAMEUSER_MEMBER)?;
        let mut batch = WriteBatch::default();
        for item in
            db.iterator_cf(super::cf(&db, maps::ROOMUSERID_MEMBERSHIP)?, IteratorMode::Start)
        {
            let (k, v) = item?;
            let (m, display_name) = decode_membership(&v)?;
            if m != MembershipState::Join {
                continue;
            }
            let mut r = KeyReader::new(&k);
            let room: OwnedRoomId =
                r.str()?.try_into().map_err(|_| Error::Store("bad room id in index".into()))?;
            let user: OwnedUserId =
                r.str()?.try_into().map_err(|_| Error::Store("bad user id in index".into()))?;
            for name in member_names(&user, display_name.as_deref()) {
                batch.put_cf(names, name_key(&room, &name, &user), []);
            }
            if batch.len() >= 10_000 {
                self.checked(db.write(std::mem::take(&mut batch)))?;
            }
        }
        self.checked(db.write(batch))?;
        Ok(())
    }
}

fn decode_membership(v: &[u8]) -> Result<(MembershipState, Option<String>)> {
    let mut r = KeyReader::new(v);
    let m = MembershipState::from(r.str()?);
    let name = if r.is_done() { None } else { Some(r.str()?.to_owned()) };
    Ok((m, name))
}

/// The note a room gets once the homeserver refused one of Boardroom's requests there
/// for good (the outbox tells the room; `!board info` flags it; `boardroom dead-letters
/// --requeue` clears it).
pub const REFUSED_NOTE: &str = "refused";

impl Store {
    /// Whether the bot told `room` about `kind` (see [`Store::note_once`]).
    pub fn noted(&self, room: &RoomId, kind: &str) -> Result<bool> {
        let db = self.db()?;
        let key = KeyBuf::new().str(room.as_str()).str(kind).build();
        Ok(db.get_pinned_cf(super::cf(&db, maps::ROOMIDKIND_NOTICE)?, key)?.is_some())
    }

    /// Records that the bot told `room` about `kind` (what it cannot do there); `true` the
    /// first time, `false` when it had told it already.
    pub fn note_once(&self, room: &RoomId, kind: &str) -> Result<bool> {
        let db = self.db()?;
        let cf = super::cf(&db, maps::ROOMIDKIND_NOTICE)?;
        let key = KeyBuf::new().str(room.as_str()).str(kind).build();
        if db.get_pinned_cf(cf, &key)?.is_some() {
            return Ok(false);
        }
        self.checked(db.put_cf(cf, key, crate::domain::now_ms().to_be_bytes()))?;
        Ok(true)
    }

    /// Forgets every room's note of `kind`, so that the next time the bot tells again;
    /// how many there were.
    pub fn clear_notes(&self, kind: &str) -> Result<usize> {
        let db = self.db()?;
        let cf = super::cf(&db, maps::ROOMIDKIND_NOTICE)?;
        let mut batch = rocksdb::WriteBatch::default();
        let mut n = 0;
        for item in db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (key, _) = item?;
            let mut r = KeyReader::new(&key);
            let (_room, k) = (r.str()?, r.str()?);
            if k == kind {
                batch.delete_cf(cf, &key);
                n += 1;
            }
        }
        self.checked(db.write(batch))?;
        Ok(n)
    }
}

/// A membership and the display name that goes with it.
pub(super) type Membership = (MembershipState, Option<String>);

pub(super) const BOARD_MAPS: [&str; 7] = [
    maps::SLUG_BOARD,
    maps::SPACEID_SLUG,
    maps::ROOMID_BOARDROOM,
    maps::SLUGROOMID,
    maps::ROOMUSERID_MEMBERSHIP,
    maps::USERID_SLUG,
    maps::ROOMNAMEUSER_MEMBER,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::board::RoomKind;

    /// The chat room `general` of the board `launch`.
    fn general() -> RoomRecord {
        RoomRecord {
            board: "launch".into(),
            name: "general".into(),
            kind: RoomKind::Chat,
            private: false,
            pending_move_from: None,
        }
    }

    fn board(slug: &str, space: &str) -> BoardRecord {
        BoardRecord {
            slug: slug.into(),
            space_id: space.try_into().expect("room id"),
            name: "Launch".into(),
            created_by: ruma::owned_user_id!("@o:x"),
            created_by_event: ruma::owned_event_id!("$e"),
            creators: vec![],
            power_users: Default::default(),
            users_default: 0,
            columns: crate::domain::board::default_columns(),
        }
    }

    /// Room records, memberships and spaces' boards are kept in memory once read: every write is seen by
    /// the next read, absence included, and a cleared index leaves nothing behind.
    #[test]
    fn kept_records_follow_every_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let room = ruma::room_id!("!r:x");
        let user = ruma::user_id!("@u:x");
        assert_eq!(store.room(room).expect("read"), None);
        assert_eq!(store.member(room, user).expect("read"), None);
        let record = general();
        store.put_room(room, &record).expect("room");
        assert_eq!(store.room(room).expect("read").map(|r| r.board), Some("launch".into()));
        store.set_membership(room, user, &MembershipState::Join, Some("U"), None).expect("join");
        assert_eq!(
            store.member(room, user).expect("read"),
            Some((MembershipState::Join, Some("U".into())))
        );
        store.set_membership(room, user, &MembershipState::Leave, None, None).expect("leave");
        assert_eq!(store.member(room, user).expect("read"), None);
        store.set_membership(room, user, &MembershipState::Join, None, None).expect("join");
        store.remove_room(room).expect("remove");
        assert_eq!(store.room(room).expect("read"), None, "the room's record went");
        assert_eq!(store.member(room, user).expect("read"), None, "its memberships went");
        store.put_room(room, &record).expect("room");
        store.set_membership(room, user, &MembershipState::Join, None, None).expect("join");
        assert!(store.member(room, user).expect("read").is_some());
        let space = ruma::room_id!("!space:x");
        assert!(store.board_by_space(space).expect("read").is_none());
        store.put_board(&board("launch", "!space:x")).expect("board");
        assert_eq!(
            store.board_by_space(space).expect("read").map(|b| b.slug),
            Some("launch".into())
        );
        store.clear_board_index().expect("clear");
        assert!(store.board_by_space(space).expect("read").is_none());
        assert_eq!(store.room(room).expect("read"), None);
        assert_eq!(store.member(room, user).expect("read"), None);
    }

    #[test]
    fn a_slug_bound_to_a_space_is_never_rebound_by_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let real = board("launch", "!space:x");
        store.put_board(&real).expect("put");
        // The same board again, changed: fine.
        let mut renamed = real.clone();
        renamed.name = "Launch 2".into();
        store.put_board(&renamed).expect("an update of the same binding");
        // Another space claiming the slug: refused, nothing changes.
        let mut forged = board("launch", "!attacker:x");
        forged.created_by = ruma::owned_user_id!("@mallory:x");
        forged.power_users = [(ruma::owned_user_id!("@mallory:x"), 100)].into_iter().collect();
        assert!(matches!(store.put_board(&forged), Err(Error::Forbidden(_))));
        assert_eq!(store.board("launch").expect("get"), Some(renamed.clone()));
        assert_eq!(store.board_by_space(ruma::room_id!("!attacker:x")).expect("get"), None);
        // The board's space claiming another slug: refused too.
        assert!(matches!(store.put_board(&board("other", "!space:x")), Err(Error::Forbidden(_))));
        assert_eq!(store.board("other").expect("get"), None);
        assert_eq!(store.board_by_space(&real.space_id).expect("get"), Some(renamed));
    }

    /// A join after a join under the same name (a new avatar) writes nothing; a new name
    /// is written, and the name index follows it.
    #[test]
    fn an_unchanged_membership_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let (room, alice) = (ruma::room_id!("!general:x"), ruma::user_id!("@alice:x"));
        let join = |name: Option<&str>| {
            store.set_membership(room, alice, &MembershipState::Join, name, None).expect("m")
        };
        join(Some("Alice"));
        let written = store.last_sequence().expect("seq");
        join(Some("Alice"));
        assert_eq!(store.last_sequence().expect("seq"), written, "the same join wrote again");
        assert_eq!(store.name_at(room, "alice").expect("name").map(|(_, u)| u), Some(alice.into()));

        join(Some("Ally"));
        assert!(store.last_sequence().expect("seq") > written);
        assert_eq!(
            store.member(room, alice).expect("m"),
            Some((MembershipState::Join, Some("Ally".into())))
        );
        assert_eq!(store.name_at(room, "ally").expect("name").map(|(_, u)| u), Some(alice.into()));
        join(None);
        assert_eq!(store.member(room, alice).expect("m"), Some((MembershipState::Join, None)));
        assert_eq!(store.name_at(room, "ally").expect("name"), None, "the old name stays indexed");
        store.set_membership(room, alice, &MembershipState::Leave, None, None).expect("m");
        assert_eq!(store.member(room, alice).expect("m"), None);
    }

    #[test]
    fn boards_rooms_and_members() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let board = board("launch", "!space:x");
        store.put_board(&board).expect("put");
        assert_eq!(store.board_by_space(&board.space_id).expect("get"), Some(board.clone()));
        let room = general();
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
            store.member(&board.space_id, alice).expect("m"),
            Some((MembershipState::Join, Some("Alice".to_owned())))
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

    #[test]
    fn names_follow_joins_renames_and_leaves() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let room = ruma::room_id!("!r:x");
        let join = |user: &str, name: Option<&str>| {
            let user: OwnedUserId = user.try_into().expect("user");
            store.set_membership(room, &user, &MembershipState::Join, name, None).expect("join");
        };
        join("@al:x", Some("Alice Smith"));
        join("@alice:x", Some("Alice"));
        join("@bob:x", None);
        store
            .set_membership(
                room,
                ruma::user_id!("@carol:x"),
                &MembershipState::Invite,
                Some("Carol"),
                None,
            )
            .expect("invite");
        let at = |text: &str| {
            store.name_at(room, text).expect("name").map(|(len, u)| (len, u.to_string()))
        };
        // The longest whole name wins; a name must end at a word boundary.
        assert_eq!(at("alice smith, hi"), Some((11, "@al:x".into())));
        assert_eq!(at("alice, hi"), Some((5, "@alice:x".into())));
        assert_eq!(at("al is here"), Some((2, "@al:x".into())));
        assert_eq!(at("alicia"), None);
        assert_eq!(at("bob"), Some((3, "@bob:x".into())));
        assert_eq!(at("carol"), None, "only joined members have names");
        let named = |q: &str| -> Vec<String> {
            store.members_named(room, q, 20).expect("named").iter().map(|u| u.to_string()).collect()
        };
        assert_eq!(named("al"), ["@al:x", "@alice:x"]);
        assert_eq!(named(""), ["@al:x", "@alice:x", "@bob:x"]);
        assert_eq!(store.members_named(room, "", 1).expect("named").len(), 1);

        // A new display name replaces the old; leaving takes every name away.
        join("@bob:x", Some("Robert"));
        assert_eq!(at("robert"), Some((6, "@bob:x".into())));
        assert_eq!(at("bob"), Some((3, "@bob:x".into())), "the localpart stays");
        join("@al:x", None);
        assert_eq!(at("alice smith"), Some((5, "@alice:x".into())));
        store
            .set_membership(room, ruma::user_id!("@alice:x"), &MembershipState::Leave, None, None)
            .expect("leave");
        assert_eq!(at("alice"), None);
        assert_eq!(named("al"), ["@al:x"]);

        // A room that leaves the index takes its names along.
        let record = general();
        store.put_room(room, &record).expect("room");
        store.remove_room(room).expect("remove");
        assert!(named("").is_empty());
    }

    #[test]
    fn migration_8_indexes_the_names_of_joined_members() {
        let dir = tempfile::tempdir().expect("tempdir");
        let room = ruma::room_id!("!r:x");
        {
            let store = Store::open(dir.path()).expect("open");
            store
                .set_membership(
                    room,
                    ruma::user_id!("@dana:x"),
                    &MembershipState::Join,
                    Some("Dana Scully"),
                    None,
                )
                .expect("join");
            store.clear_maps(&[maps::ROOMNAMEUSER_MEMBER]).expect("clear");
            store.set_schema_version_for_test(7).expect("version");
            assert_eq!(store.name_at(room, "dana scully").expect("name"), None);
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.name_at(room, "dana scully").expect("name").map(|(len, _)| len), Some(11));
    }

    /// Issue 10: a member whose display name was 250 `@`s made a message of 60,000 `@`s
    /// cost 23 s of CPU (a seek at every byte boundary for every `@`). Now a message costs
    /// at most `MAX_MENTION_CANDIDATES` lookups of at most `2 * MAX_NAME_ENDS` seeks,
    /// whatever the names and the message, and normal mentions in it still resolve.
    #[test]
    fn mention_resolution_cost_is_bounded_against_a_display_name_of_at_signs() {
        use std::cell::Cell;

        use crate::domain::mention::{
            Audience, MAX_MENTION_CANDIDATES, MAX_NAME_ENDS, plain_mentions,
        };

        struct Counting<'a> {
            store: &'a Store,
            room: &'a RoomId,
            lookups: Cell<usize>,
            seeks: Cell<usize>,
        }
        impl Audience for Counting<'_> {
            fn can_see(&self, user: &UserId) -> Result<bool> {
                Ok(self.store.membership(self.room, user)? == Some(MembershipState::Join))
            }
            fn name_at(&self, text: &str) -> Result<Option<(usize, OwnedUserId)>> {
                let mut seeks = 0;
                let found = self.store.name_at_counting(self.room, text, &mut seeks)?;
                assert!(seeks <= 2 * MAX_NAME_ENDS, "{seeks} seeks for one name");
                self.lookups.set(self.lookups.get() + 1);
                self.seeks.set(self.seeks.get() + seeks);
                Ok(found)
            }
        }

        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let room = ruma::room_id!("!r:x");
        let at_name = "@".repeat(250);
        for (user, name) in [("@mallory:x", Some(at_name.as_str())), ("@alice:x", Some("Alice"))] {
            let user: OwnedUserId = user.try_into().expect("user");
            store.set_membership(room, &user, &MembershipState::Join, name, None).expect("join");
        }
        let audience = Counting { store: &store, room, lookups: Cell::new(0), seeks: Cell::new(0) };
        let bound = MAX_MENTION_CANDIDATES * 2 * MAX_NAME_ENDS;

        let attack = "@".repeat(60_000);
        let found = plain_mentions(&attack, &audience).expect("resolve");
        assert!(found.is_empty(), "a name of 250 `@`s is no plain-text name: {found:?}");
        assert_eq!(audience.lookups.get(), MAX_MENTION_CANDIDATES);
        assert!(audience.seeks.get() <= bound, "{} seeks", audience.seeks.get());

        // A real mention in front of the flood is still found, within the same bound.
        audience.lookups.set(0);
        audience.seeks.set(0);
        let found = plain_mentions(&format!("@Alice, see {attack}"), &audience).expect("resolve");
        let found: Vec<String> = found.iter().map(|u| u.to_string()).collect();
        assert_eq!(found, ["@alice:x"]);
        assert!(audience.seeks.get() <= bound, "{} seeks", audience.seeks.get());

        // Names of many words stop at MAX_NAME_ENDS boundaries, in the index and the list.
        let words = |n: usize| (0..n).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        let (short, long) = (words(MAX_NAME_ENDS), words(MAX_NAME_ENDS + 1));
        for (user, name) in [("@short:x", &short), ("@long:x", &long)] {
            let user: OwnedUserId = user.try_into().expect("user");
            store
                .set_membership(room, &user, &MembershipState::Join, Some(name), None)
                .expect("join");
        }
        let at = |text: &str| store.name_at(room, text).expect("name").map(|(_, u)| u.to_string());
        assert_eq!(at(&format!("{short}!")), Some("@short:x".into()));
        assert_eq!(
            at(&format!("{long}!")),
            Some("@short:x".into()),
            "the longer name is out of reach"
        );
    }

    #[test]
    fn the_name_index_finds_what_the_list_finds() {
        use crate::domain::mention::{Audience, Candidate};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let room = ruma::room_id!("!r:x");
        let people = [
            ("@al:x", Some("Alice Smith")),
            ("@alice:x", Some("Alice")),
            ("@bob:x", None),
            ("@bobby:x", Some("Bob by the sea")),
            ("@zoë:x", Some("Zoë Ünal")),
            ("@dash:x", Some("d-a_sh!")),
            ("@many:x", Some("a b c d e f g h i j k l m n o p q r")),
            ("@ats:x", Some("@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@")),
        ];
        let mut list = Vec::new();
        for (user, name) in people {
            let user: OwnedUserId = user.try_into().expect("user");
            store.set_membership(room, &user, &MembershipState::Join, name, None).expect("join");
            list.push(Candidate { user_id: user, display_name: name.map(str::to_owned) });
        }
        for text in [
            "alice smith, hi",
            "alice smithers",
            "al",
            "al.",
            "bob by the sea!",
            "bob by",
            "bobby",
            "zoë ünal rocks",
            "zoë",
            "d-a_sh! there",
            "d-a_sh!x",
            "nobody",
            "",
            " alice",
            "a b c d e f g h i j k l m n o p q r",
            "a b c d e f g h i j k l m n o p",
            "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@ hi",
            "@@@@@@@@@@@@@@@",
        ] {
            assert_eq!(
                store.name_at(room, text).expect("index"),
                list[..].name_at(text).expect("list"),
                "{text:?}"
            );
        }
    }
}
