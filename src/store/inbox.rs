//! Notification inboxes. Maps: `useridid_notification`, `userid_unread`,
//! `userroomseqid_unread`, `eventiduser_notification`. Every write keeps the unread count
//! in the same batch, so reading it is one lookup.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use rocksdb::{DB, Direction, IteratorMode, WriteBatch};
use ruma::{EventId, OwnedUserId, RoomId, UserId};

use super::{
    Store,
    codec::{KeyBuf, KeyReader, decode_u64},
    decode, encode,
    live::{LogAppend, Once},
    maps, scan,
};
use crate::{
    domain::inbox::{Notification, ReceiptScope},
    domain::stream::{NotificationEvent, StreamData, StreamEvent},
    error::{Error, Result},
};

const NEXT_ID_KEY: &[u8] = b"notification_next_id";

/// How many entries every inbox holds together, kept with each entry added or removed
/// (since schema version 17); no key is none.
const COUNT_KEY: &[u8] = b"notification_count";

/// A `notification` event of the live stream, for `user` alone: a new entry, or entries
/// read, with the unread count after it.
fn notification_event(
    user: &UserId,
    notification: Option<Notification>,
    read: Vec<u64>,
    unread_count: u64,
) -> StreamEvent {
    let mut event = StreamEvent::public(StreamData::Notification(NotificationEvent {
        notification,
        read,
        unread_count,
        entry: None,
    }));
    event.only = Some(user.to_owned());
    event
}

/// Serializes inbox writes: ids and unread counts.
#[derive(Debug)]
pub(crate) struct InboxState {
    next_id: Mutex<u64>,
    /// Entries in every inbox together, as stored under [`COUNT_KEY`] (written under the
    /// lock of `next_id`).
    entries: AtomicU64,
}

impl InboxState {
    pub(crate) fn load(db: &DB) -> Result<Self> {
        let read = |key: &[u8]| -> Result<Option<u64>> {
            db.get_cf(super::cf(db, maps::GLOBAL)?, key)?.map(|v| decode_u64(&v)).transpose()
        };
        let next = read(NEXT_ID_KEY)?.unwrap_or(1);
        let entries = read(COUNT_KEY)?.unwrap_or(0);
        Ok(Self { next_id: Mutex::new(next), entries: AtomicU64::new(entries) })
    }
}

impl InboxState {
    /// Reads the counter again from `db`, after the database was reopened: a write whose
    /// outcome was an error may have landed. It never moves back: numbers handed out and
    /// since removed (a sent outbox entry) are not on disk, and the workers have read past
    /// them.
    pub(crate) fn reload(&self, db: &DB) -> Result<()> {
        let fresh = Self::load(db)?;
        let mut current =
            self.next_id.lock().map_err(|_| Error::Internal("inbox lock poisoned".into()))?;
        *current = (*current).max(fresh.next_id.into_inner().unwrap_or_else(|p| p.into_inner()));
        self.entries.store(fresh.entries.into_inner(), Ordering::Release);
        Ok(())
    }
}

/// What [`Store::log_once_and_notify`] wrote.
#[derive(Debug, Default)]
pub struct Logged {
    /// The inbox entries added.
    pub notifications: Vec<Notification>,
    /// Whether the inbound entry of [`Once::Entry`] was taken off the queue by the write.
    pub off_the_queue: bool,
}

/// A message for [`Store::log_messages_and_notify`].
#[derive(Debug, Default)]
pub struct Message<'a> {
    /// How it is kept from being logged twice (`None`: it is not, as for entries alone).
    pub once: Option<Once<'a>>,
    /// Its entries in boards' logs.
    pub log: LogAppend,
    /// The inbox entries it makes (their ids are assigned by the write).
    pub notifications: Vec<Notification>,
}

fn entry_key(user: &UserId, id: u64) -> Vec<u8> {
    KeyBuf::new().str(user.as_str()).u64(id).build()
}

fn unread_key(n: &Notification) -> Vec<u8> {
    KeyBuf::new().str(n.user_id.as_str()).str(n.room_id.as_str()).u64(n.seq).u64(n.id).build()
}

impl Store {
    fn lock_inbox(&self) -> Result<std::sync::MutexGuard<'_, u64>> {
        self.inner.inbox.next_id.lock().map_err(|_| Error::Internal("inbox lock poisoned".into()))
    }

    fn unread_of(&self, user: &UserId) -> Result<u64> {
        let db = self.db()?;
        Ok(db
            .get_pinned_cf(super::cf(&db, maps::USERID_UNREAD)?, user.as_bytes())?
            .map(|v| decode_u64(&v))
            .transpose()?
            .unwrap_or(0))
    }

    /// Adds entries (their `id` is assigned here). An event notifies a user once: entries
    /// for an (event, user) pair already notified are skipped, so replays add nothing.
    /// Returns the entries added.
    pub fn add_notifications(&self, entries: Vec<Notification>) -> Result<Vec<Notification>> {
        Ok(self.log_once_and_notify(None, entries)?.notifications)
    }

    /// [`Store::log_once`] of a message (`logged`: how it is kept from being logged twice,
    /// and its log entries) and [`Store::add_notifications`] of what it causes, in one
    /// write: the message first on its board's stream, then each entry. Nothing is written
    /// when there is nothing new (the message logged before, every entry made before, or
    /// none at all).
    pub fn log_once_and_notify(
        &self,
        logged: Option<(Once<'_>, LogAppend)>,
        entries: Vec<Notification>,
    ) -> Result<Logged> {
        let (once, message) = logged.unzip();
        let mut all = self.log_messages_and_notify(vec![Message {
            once,
            log: message.unwrap_or_default(),
            notifications: entries,
        }])?;
        Ok(all.pop().unwrap_or_default())
    }

    /// [`Store::log_once_and_notify`] of several messages, in order, in one write: each
    /// message on its board's stream followed by its inbox entries. One [`Logged`] per
    /// message.
    pub fn log_messages_and_notify(&self, messages: Vec<Message<'_>>) -> Result<Vec<Logged>> {
        self.log_messages_and_complete(messages, &[], &[])
    }

    /// [`Store::log_messages_and_notify`], in the same write as what entries handled on
    /// their own before completed (as [`Store::complete_pending_group`] writes it): their
    /// removal from the inbound queue (`completed`) and the actions they queue in the
    /// outbox (`outbound`).
    pub fn log_messages_and_complete(
        &self,
        messages: Vec<Message<'_>>,
        completed: &[u64],
        outbound: &[Vec<u8>],
    ) -> Result<Vec<Logged>> {
        let mut outcomes: Vec<Logged> = Vec::with_capacity(messages.len());
        let nothing_else = completed.is_empty() && outbound.is_empty();
        if nothing_else && messages.iter().all(|m| m.log.is_empty() && m.notifications.is_empty()) {
            outcomes.resize_with(messages.len(), Logged::default);
            return Ok(outcomes);
        }
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        let pending = super::cf(&db, maps::SEQ_PENDING)?;
        // Taken off the queue by this write: the entries completed before, and the
        // messages' own.
        let mut off_the_queue = completed.to_vec();
        let mut log = LogAppend::new();
        let any_entries = messages.iter().any(|m| !m.notifications.is_empty());
        // Taken only when an entry may be added: it orders the entries' ids.
        let mut next = match any_entries {
            true => Some(self.lock_inbox()?),
            false => None,
        };
        let mut id = next.as_deref().copied().unwrap_or(0);
        let by_event = super::cf(&db, maps::EVENTIDUSER_NOTIFICATION)?;
        // Each user's unread count as the entries so far make it.
        let mut counts: HashMap<OwnedUserId, u64> = HashMap::new();
        let mut added_in_all = 0u64;
        // The (event, user) keys of the entries added by this write: one each.
        let mut added_keys: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
        let mut written = false;
        // Which queued entries handled again are still on the queue: one read for all of
        // them.
        let queued: Vec<[u8; 8]> = messages
            .iter()
            .filter_map(|m| match m.once {
                Some(Once::Entry(seq)) => Some(seq.to_be_bytes()),
                _ => None,
            })
            .collect();
        let mut still_queued = std::collections::HashSet::with_capacity(queued.len());
        if !queued.is_empty() {
            for (key, got) in queued.iter().zip(db.batched_multi_get_cf(pending, &queued, false)) {
                if got?.is_some() {
                    still_queued.insert(*key);
                }
            }
        }
        for Message { once, log: message, notifications } in messages {
            let mut outcome = Logged::default();
            match once {
                Some(Once::Event(event_id)) if !message.is_empty() => {
                    let cf = super::cf(&db, maps::EVENTID_LOGGED)?;
                    if db.get_pinned_cf(cf, event_id.as_bytes())?.is_none() {
                        batch.put_cf(
                            cf,
                            event_id.as_bytes(),
                            crate::domain::now_ms().to_be_bytes(),
                        );
                        log.extend(message);
                    }
                }
                Some(once @ (Once::Entry(seq) | Once::FirstEntry(seq))) => {
                    // Its own lane handles an entry, one at a time: present now, it is removed
                    // by this write alone.
                    let first = matches!(once, Once::FirstEntry(_));
                    if !first && !still_queued.contains(&seq.to_be_bytes()) {
                        outcomes.push(outcome);
                        continue;
                    }
                    off_the_queue.push(seq);
                    outcome.off_the_queue = true;
                    written = true;
                    log.extend(message);
                }
                _ => log.extend(message),
            }
            for mut n in notifications {
                let ek = KeyBuf::new().str(n.event_id.as_str()).str(n.user_id.as_str()).build();
                if added_keys.contains(&ek) || db.get_pinned_cf(by_event, &ek)?.is_some() {
                    continue;
                }
                n.id = id;
                n.read = false;
                id += 1;
                batch.put_cf(
                    super::cf(&db, maps::USERIDID_NOTIFICATION)?,
                    entry_key(&n.user_id, n.id),
                    encode(&n)?,
                );
                batch.put_cf(by_event, &ek, n.id.to_be_bytes());
                added_keys.insert(ek);
                batch.put_cf(super::cf(&db, maps::USERROOMSEQID_UNREAD)?, unread_key(&n), []);
                let count = match counts.get_mut(&n.user_id) {
                    Some(c) => c,
                    None => counts.entry(n.user_id.clone()).or_insert(self.unread_of(&n.user_id)?),
                };
                *count += 1;
                // Each entry goes to its owner's stream on its board, with the unread count
                // it makes.
                log.push((
                    n.board.clone(),
                    notification_event(&n.user_id, Some(n.clone()), Vec::new(), *count),
                ));
                added_in_all += 1;
                outcome.notifications.push(n);
            }
            outcomes.push(outcome);
        }
        if added_in_all == 0 && log.is_empty() && !written && nothing_else {
            return Ok(outcomes);
        }
        for (user, count) in &counts {
            batch.put_cf(
                super::cf(&db, maps::USERID_UNREAD)?,
                user.as_bytes(),
                count.to_be_bytes(),
            );
        }
        super::inbound::delete_pending(&mut batch, pending, off_the_queue);
        let entries = self.inner.inbox.entries.load(Ordering::Acquire) + added_in_all;
        if added_in_all > 0 {
            batch.put_cf(super::cf(&db, maps::GLOBAL)?, NEXT_ID_KEY, id.to_be_bytes());
            batch.put_cf(super::cf(&db, maps::GLOBAL)?, COUNT_KEY, entries.to_be_bytes());
        }
        self.commit(&db, batch, &rocksdb::WriteOptions::default(), outbound, log)?;
        if let Some(next) = next.as_deref_mut() {
            *next = id;
        }
        self.inner.inbox.entries.store(entries, Ordering::Release);
        Ok(outcomes)
    }

    /// Everyone an event has notified.
    pub fn notified_by(&self, event_id: &EventId) -> Result<Vec<OwnedUserId>> {
        let db = self.db()?;
        let prefix = KeyBuf::new().str(event_id.as_str()).prefix();
        let mut out = Vec::new();
        let cf = super::cf(&db, maps::EVENTIDUSER_NOTIFICATION)?;
        for item in scan(&db, cf, &prefix) {
            let (k, _) = item?;
            let mut r = KeyReader::new(&k);
            r.str()?;
            out.push(r.str()?.try_into().map_err(|_| Error::Store("bad user id".into()))?);
        }
        Ok(out)
    }

    /// A user's inbox, newest first: up to `limit` entries with ids below `before`.
    pub fn notifications(
        &self,
        user: &UserId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Notification>> {
        let db = self.db()?;
        let cf = super::cf(&db, maps::USERIDID_NOTIFICATION)?;
        let prefix = KeyBuf::new().str(user.as_str()).prefix();
        let start = entry_key(user, before.unwrap_or(u64::MAX).saturating_sub(1));
        let mut out = Vec::new();
        for item in db.iterator_cf(cf, IteratorMode::From(&start, Direction::Reverse)) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            out.push(decode(&v)?);
        }
        Ok(out)
    }

    /// A user's unread count.
    pub fn unread_count(&self, user: &UserId) -> Result<u64> {
        self.unread_of(user)
    }

    /// A user's inbox, newest first, without the entries `keep` refuses: up to `limit`
    /// entries with ids below `before`, reading at most `budget` entries. Also returns the
    /// id of the last entry read when the budget ran out first (where the next page
    /// starts), so that a page costs at most `budget` reads however many are refused.
    pub fn notifications_where(
        &self,
        user: &UserId,
        before: Option<u64>,
        limit: usize,
        budget: usize,
        mut keep: impl FnMut(&Notification) -> bool,
    ) -> Result<(Vec<Notification>, Option<u64>)> {
        let db = self.db()?;
        let cf = super::cf(&db, maps::USERIDID_NOTIFICATION)?;
        let prefix = KeyBuf::new().str(user.as_str()).prefix();
        let start = entry_key(user, before.unwrap_or(u64::MAX).saturating_sub(1));
        let mut out = Vec::new();
        let mut read = 0;
        for item in db.iterator_cf(cf, IteratorMode::From(&start, Direction::Reverse)) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let n: Notification = decode(&v)?;
            read += 1;
            let id = n.id;
            if keep(&n) {
                out.push(n);
            }
            if read >= budget && out.len() < limit {
                return Ok((out, Some(id)));
            }
        }
        Ok((out, None))
    }

    /// One entry of a user's inbox.
    pub fn notification(&self, user: &UserId, id: u64) -> Result<Option<Notification>> {
        let db = self.db()?;
        db.get_pinned_cf(super::cf(&db, maps::USERIDID_NOTIFICATION)?, entry_key(user, id))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// A user's unread entries of the boards `in_scope` accepts. The unread count, less
    /// the entries of other boards: rooms whose board is in scope are skipped whole, so
    /// the cost follows the rooms with unread entries and the entries out of scope.
    pub fn unread_count_in(&self, user: &UserId, in_scope: impl Fn(&str) -> bool) -> Result<u64> {
        let db = self.db()?;
        let total = self.unread_of(user)?;
        let cf = super::cf(&db, maps::USERROOMSEQID_UNREAD)?;
        let entries = super::cf(&db, maps::USERIDID_NOTIFICATION)?;
        let prefix = KeyBuf::new().str(user.as_str()).prefix();
        let mut it = db.raw_iterator_cf(cf);
        it.seek(&prefix);
        let mut outside = 0u64;
        // The room being read and whether its board is in scope.
        let mut current: Option<(Vec<u8>, bool)> = None;
        while let Some(k) = it.key() {
            if !k.starts_with(&prefix) {
                break;
            }
            let mut r = KeyReader::new(k);
            r.str()?;
            let room = r.str()?;
            r.u64()?;
            let id = r.u64()?;
            let room_prefix = KeyBuf::new().str(user.as_str()).str(room).prefix();
            let room_in_scope = match &current {
                Some((p, in_scope)) if *p == room_prefix => *in_scope,
                _ => {
                    let board = match RoomId::parse(room) {
                        Ok(room_id) => self.room(&room_id)?.map(|r| r.board),
                        Err(_) => None,
                    };
                    let yes = board.is_some_and(|b| in_scope(&b));
                    current = Some((room_prefix.clone(), yes));
                    yes
                }
            };
            if room_in_scope {
                // Past every key of this room: its parts after the room are eight-byte
                // integers with a separator, at most 17 bytes.
                let mut past = room_prefix;
                past.extend_from_slice(&[u8::MAX; 18]);
                it.seek(&past);
                continue;
            }
            if let Some(v) = db.get_pinned_cf(entries, entry_key(user, id))? {
                let n: Notification = decode(&v)?;
                if !in_scope(&n.board) {
                    outside += 1;
                }
            }
            it.next();
        }
        it.status()?;
        Ok(total.saturating_sub(outside))
    }

    /// Marks read every entry of the user whose board `in_scope` accepts.
    pub fn mark_all_read_in(&self, user: &UserId, in_scope: impl Fn(&str) -> bool) -> Result<u64> {
        self.mark_read_where(user, None, |n| in_scope(&n.board))
    }

    /// Marks one entry read. `Ok(None)`: no such entry in this user's inbox.
    pub fn mark_read(&self, user: &UserId, id: u64) -> Result<Option<bool>> {
        let db = self.db()?;
        let _lock = self.lock_inbox()?;
        let Some(v) =
            db.get_pinned_cf(super::cf(&db, maps::USERIDID_NOTIFICATION)?, entry_key(user, id))?
        else {
            return Ok(None);
        };
        let n: Notification = decode(&v)?;
        if n.read {
            return Ok(Some(false));
        }
        let mut batch = WriteBatch::default();
        let board = n.board.clone();
        self.read_in(&mut batch, n)?;
        let count = self.unread_of(user)?.saturating_sub(1);
        batch.put_cf(super::cf(&db, maps::USERID_UNREAD)?, user.as_bytes(), count.to_be_bytes());
        let log = vec![(board, notification_event(user, None, vec![id], count))];
        self.commit(&db, batch, &rocksdb::WriteOptions::default(), &[], log)?;
        Ok(Some(true))
    }

    fn read_in(&self, batch: &mut WriteBatch, mut n: Notification) -> Result<()> {
        let db = self.db()?;
        batch.delete_cf(super::cf(&db, maps::USERROOMSEQID_UNREAD)?, unread_key(&n));
        n.read = true;
        batch.put_cf(
            super::cf(&db, maps::USERIDID_NOTIFICATION)?,
            entry_key(&n.user_id, n.id),
            encode(&n)?,
        );
        Ok(())
    }

    /// Marks read the user's unread entries that `select` picks among those of `room`
    /// (every room when `None`). Returns how many.
    fn mark_read_where(
        &self,
        user: &UserId,
        room: Option<&RoomId>,
        mut select: impl FnMut(&Notification) -> bool,
    ) -> Result<u64> {
        let db = self.db()?;
        let _lock = self.lock_inbox()?;
        let mut prefix = KeyBuf::new().str(user.as_str());
        if let Some(r) = room {
            prefix = prefix.str(r.as_str());
        }
        let prefix = prefix.prefix();
        let cf = super::cf(&db, maps::USERROOMSEQID_UNREAD)?;
        let mut batch = WriteBatch::default();
        let mut marked = 0u64;
        let mut read: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
        for item in scan(&db, cf, &prefix) {
            let (k, _) = item?;
            let mut r = KeyReader::new(&k);
            r.str()?;
            r.str()?;
            r.u64()?;
            let id = r.u64()?;
            let Some(v) = db
                .get_pinned_cf(super::cf(&db, maps::USERIDID_NOTIFICATION)?, entry_key(user, id))?
            else {
                batch.delete_cf(cf, &k);
                continue;
            };
            let n: Notification = decode(&v)?;
            if select(&n) {
                read.entry(n.board.clone()).or_default().push(n.id);
                self.read_in(&mut batch, n)?;
                marked += 1;
            }
        }
        if marked > 0 {
            let count = self.unread_of(user)?.saturating_sub(marked);
            batch.put_cf(
                super::cf(&db, maps::USERID_UNREAD)?,
                user.as_bytes(),
                count.to_be_bytes(),
            );
            // Each board's stream tells the owner which of its entries were read.
            let log = read
                .into_iter()
                .map(|(board, ids)| (board, notification_event(user, None, ids, count)))
                .collect();
            self.commit(&db, batch, &rocksdb::WriteOptions::default(), &[], log)?;
        }
        Ok(marked)
    }

    /// Marks every entry of the user read.
    pub fn mark_all_read(&self, user: &UserId) -> Result<u64> {
        self.mark_read_where(user, None, |_| true)
    }

    /// A read receipt: the user has read `room` (or one thread of it) up to the event at
    /// `seq` (when Boardroom saw that event) or, failing that, up to `ts`.
    pub fn mark_read_up_to(
        &self,
        user: &UserId,
        room: &RoomId,
        scope: &ReceiptScope,
        seq: Option<u64>,
        ts: u64,
    ) -> Result<u64> {
        self.mark_read_where(user, Some(room), |n| {
            scope.covers(n.thread_root.as_ref()) && seq.map_or(n.ts <= ts, |s| n.seq <= s)
        })
    }

    /// Event `event_id` was redacted in `room`: the entries it caused there go (an entry of
    /// another room stays: a redaction takes away only an event of its own room).
    pub fn remove_notifications_of(&self, room: &RoomId, event_id: &EventId) -> Result<u64> {
        let db = self.db()?;
        let users = self.notified_by(event_id)?;
        let _lock = self.lock_inbox()?;
        let by_event = super::cf(&db, maps::EVENTIDUSER_NOTIFICATION)?;
        let mut batch = WriteBatch::default();
        let mut removed = 0;
        for user in users {
            let ek = KeyBuf::new().str(event_id.as_str()).str(user.as_str()).build();
            let Some(id) = db.get_pinned_cf(by_event, &ek)?.map(|v| decode_u64(&v)).transpose()?
            else {
                continue;
            };
            let key = entry_key(&user, id);
            if let Some(v) = db.get_pinned_cf(super::cf(&db, maps::USERIDID_NOTIFICATION)?, &key)? {
                let n: Notification = decode(&v)?;
                if n.room_id != room {
                    continue;
                }
                batch.delete_cf(by_event, &ek);
                if !n.read {
                    batch.delete_cf(super::cf(&db, maps::USERROOMSEQID_UNREAD)?, unread_key(&n));
                    let count = self.unread_of(&user)?.saturating_sub(1);
                    batch.put_cf(
                        super::cf(&db, maps::USERID_UNREAD)?,
                        user.as_bytes(),
                        count.to_be_bytes(),
                    );
                }
                batch.delete_cf(super::cf(&db, maps::USERIDID_NOTIFICATION)?, &key);
                removed += 1;
            }
        }
        if removed == 0 {
            return Ok(0);
        }
        let entries = self.inner.inbox.entries.load(Ordering::Acquire).saturating_sub(removed);
        batch.put_cf(super::cf(&db, maps::GLOBAL)?, COUNT_KEY, entries.to_be_bytes());
        self.checked(db.write(batch))?;
        self.inner.inbox.entries.store(entries, Ordering::Release);
        Ok(removed)
    }

    /// How many entries every inbox holds together (kept: no scan).
    pub fn inbox_entry_count(&self) -> u64 {
        self.inner.inbox.entries.load(Ordering::Acquire)
    }

    /// The migration to schema 17: counts the inbox entries once, and keeps the count.
    pub(crate) fn keep_inbox_count(&self) -> Result<()> {
        let db = self.db()?;
        let _lock = self.lock_inbox()?;
        let mut n = 0u64;
        for item in
            db.iterator_cf(super::cf(&db, maps::USERIDID_NOTIFICATION)?, IteratorMode::Start)
        {
            item?;
            n += 1;
        }
        // None is no key: a fresh database holds nothing but its schema version (an import
        // goes only into one such).
        if n > 0 {
            self.checked(db.put_cf(super::cf(&db, maps::GLOBAL)?, COUNT_KEY, n.to_be_bytes()))?;
        }
        self.inner.inbox.entries.store(n, Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::inbox::Kind;

    fn n(user: &str, event: &str, room: &str, seq: u64, thread: Option<&str>) -> Notification {
        Notification {
            id: 0,
            user_id: user.try_into().expect("user"),
            kind: Kind::Mention,
            board: "b".into(),
            room_id: room.try_into().expect("room"),
            thread_root: thread.map(|t| t.try_into().expect("event")),
            event_id: event.try_into().expect("event"),
            sender: ruma::owned_user_id!("@s:x"),
            excerpt: "hi".into(),
            ts: seq * 10,
            read: false,
            seq,
        }
    }

    fn message(event: &str) -> LogAppend {
        use crate::domain::stream::MessageEvent;
        vec![(
            "b".to_owned(),
            StreamEvent::public(StreamData::Message(MessageEvent {
                room: "general".into(),
                room_id: ruma::owned_room_id!("!r:x"),
                event_id: event.try_into().expect("event"),
                sender: ruma::owned_user_id!("@s:x"),
                display_name: None,
                msgtype: Some("m.text".into()),
                body: Some("hi @alice".into()),
                formatted_body: None,
                ts: 10,
                thread_root: None,
                replaces: None,
                redacts: None,
            })),
        )]
    }

    /// A message and the entries it makes go to the board's log in one write, the message
    /// first; a replay, or a message with nothing new, writes nothing at all.
    #[test]
    fn a_message_and_its_entries_are_written_together_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let written = || store.db().expect("db").latest_sequence_number();
        let start = written();
        let id = ruma::event_id!("$1");
        let added = store
            .log_once_and_notify(
                Some((Once::Event(id), message("$1"))),
                vec![n("@alice:x", "$1", "!r:x", 1, None)],
            )
            .expect("write");
        assert_eq!(added.notifications.len(), 1);
        assert!(!added.off_the_queue);
        let log = store.live_read("b", 0, 10).expect("log");
        let kinds: Vec<_> = log.iter().map(|(id, e)| (*id, e.kind())).collect();
        assert_eq!(kinds, vec![(1, "message"), (2, "notification")]);
        assert_eq!(store.unread_count(ruma::user_id!("@alice:x")).expect("count"), 1);
        let after = written();
        assert!(after > start);

        // Replayed (after a crash before the entry was marked processed): nothing new.
        let again = store
            .log_once_and_notify(
                Some((Once::Event(id), message("$1"))),
                vec![n("@alice:x", "$1", "!r:x", 1, None)],
            )
            .expect("replay");
        assert!(again.notifications.is_empty());
        assert_eq!(store.live_read("b", 0, 10).expect("log").len(), 2);
        assert_eq!(store.unread_count(ruma::user_id!("@alice:x")).expect("count"), 1);
        // A message with no entries (most of them), and nothing at all: no write.
        store
            .log_once_and_notify(Some((Once::Event(id), message("$1"))), Vec::new())
            .expect("logged");
        store.log_once_and_notify(None, Vec::new()).expect("nothing");
        assert_eq!(written(), after, "something was written for nothing new");
        // A new message with no entries: its log entry alone.
        store
            .log_once_and_notify(
                Some((Once::Event(ruma::event_id!("$2")), message("$2"))),
                Vec::new(),
            )
            .expect("logged");
        assert_eq!(store.live_read("b", 0, 10).expect("log").len(), 3);
        assert_eq!(store.inbox_entry_count(), 1);
    }

    /// A notification's log entry holds its new inbox entry by id alone; read back, it has
    /// the entry whole, as the inbox holds it now. Once the entry is removed (its message
    /// redacted) the event is read back without it.
    #[test]
    fn a_notification_is_logged_by_its_entry_s_id_and_read_back_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let alice = ruma::user_id!("@alice:x");
        let mut entry = n("@alice:x", "$1", "!r:x", 1, None);
        entry.excerpt = "a rather distinctive excerpt".into();
        let added = store
            .log_once_and_notify(
                Some((Once::Event(ruma::event_id!("$1")), message("$1"))),
                vec![entry],
            )
            .expect("write")
            .notifications;
        let id = added[0].id;

        let db = store.db().expect("db");
        let stored = db
            .get_cf(
                super::super::cf(&db, maps::SLUGID_LIVE).expect("cf"),
                super::super::live::entry_key("b", 2),
            )
            .expect("read")
            .expect("logged");
        let stored = String::from_utf8(stored).expect("utf-8");
        assert!(!stored.contains("distinctive"), "the entry is not copied into the log: {stored}");
        assert!(stored.contains(&format!("\"entry\":{id}")), "{stored}");

        let read_back = |store: &Store| match store.live_read("b", 1, 10).expect("log").pop() {
            Some((2, StreamEvent { data: StreamData::Notification(n), only: Some(owner), .. })) => {
                assert_eq!(owner, alice);
                n
            }
            other => panic!("not the notification: {other:?}"),
        };
        let n = read_back(&store);
        assert_eq!(n.notification, store.notification(alice, id).expect("inbox"));
        assert_eq!(
            n.notification.as_ref().map(|e| e.excerpt.as_str()),
            Some("a rather distinctive excerpt")
        );
        assert_eq!((n.entry, n.unread_count), (None, 1));

        store
            .remove_notifications_of(ruma::room_id!("!r:x"), ruma::event_id!("$1"))
            .expect("removed");
        let n = read_back(&store);
        assert_eq!((n.notification, n.entry), (None, Some(id)), "gone from the inbox");
    }

    /// Messages `ids` put on the inbound queue by transaction `txn`: their seqs.
    fn queue(store: &Store, txn: &str, ids: &[&str]) -> Vec<u64> {
        use crate::store::inbound::{EntryKind, NewEntry};
        let json = br#"{"type":"m.room.message"}"#;
        let entries: Vec<NewEntry<'_>> = ids
            .iter()
            .map(|id| NewEntry {
                kind: EntryKind::Timeline,
                room_id: "!r:x",
                event_id: Some(id),
                json,
                may_change_rooms: false,
                plain: false,
            })
            .collect();
        let before = store.pending_from(0, 100).expect("pending").len();
        store.ingest(txn, [0; 32], &entries).expect("ingest");
        store.pending_from(0, 100).expect("pending")[before..].iter().map(|e| e.seq).collect()
    }

    /// A message from the inbound queue is kept from being logged twice by its entry: the
    /// write takes the entry off the queue (no mark), and once it is gone nothing is
    /// written again.
    #[test]
    fn a_queued_message_takes_its_entry_off_the_queue_in_its_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let [first, second] = queue(&store, "t", &["$1", "$2"])[..] else { panic!() };

        let logged = store
            .log_once_and_notify(
                Some((Once::Entry(first), message("$1"))),
                vec![n("@alice:x", "$1", "!r:x", first, None)],
            )
            .expect("write");
        assert!(logged.off_the_queue);
        assert_eq!(logged.notifications.len(), 1);
        let left: Vec<u64> =
            store.pending_from(0, 10).expect("pending").iter().map(|e| e.seq).collect();
        assert_eq!(left, [second], "the message's entry is still queued");
        let kinds: Vec<_> =
            store.live_read("b", 0, 10).expect("log").iter().map(|(i, e)| (*i, e.kind())).collect();
        assert_eq!(kinds, vec![(1, "message"), (2, "notification")]);
        let marks = store.dump_maps(&[maps::EVENTID_LOGGED]).expect("dump");
        assert!(marks.is_empty(), "{marks:?}");

        // Handled again (the entry is gone): nothing is written.
        let written = store.last_sequence().expect("seq");
        let again = store
            .log_once_and_notify(
                Some((Once::Entry(first), message("$1"))),
                vec![n("@alice:x", "$1", "!r:x", first, None)],
            )
            .expect("again");
        assert!(!again.off_the_queue && again.notifications.is_empty());
        assert_eq!(store.last_sequence().expect("seq"), written);
        assert_eq!(store.live_read("b", 0, 10).expect("log").len(), 2);
        // A message with nothing to log or notify leaves its entry for the completion.
        let nothing =
            store.log_once_and_notify(Some((Once::Entry(second), Vec::new())), Vec::new());
        assert!(!nothing.expect("nothing").off_the_queue);
        assert_eq!(store.pending_from(0, 10).expect("pending").len(), 1);
    }

    /// A message handed over by the dispatcher for the first time is taken off the queue
    /// and logged by its write without a read of the queue; handled again after that write
    /// (a retry on its own), it is checked, and adds nothing.
    #[test]
    fn a_first_handling_takes_its_entry_off_and_a_second_finds_it_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let [first] = queue(&store, "t", &["$1"])[..] else { panic!() };
        let message_of = |once| Message {
            once: Some(once),
            log: message("$1"),
            notifications: vec![n("@alice:x", "$1", "!r:x", first, None)],
        };
        let logged = store
            .log_messages_and_notify(vec![message_of(Once::FirstEntry(first))])
            .expect("write");
        assert!(logged[0].off_the_queue);
        assert_eq!(logged[0].notifications.len(), 1);
        assert!(store.pending_from(0, 10).expect("pending").is_empty());

        let written = store.last_sequence().expect("seq");
        let again =
            store.log_messages_and_notify(vec![message_of(Once::Entry(first))]).expect("again");
        assert!(!again[0].off_the_queue && again[0].notifications.is_empty());
        assert_eq!(store.last_sequence().expect("seq"), written, "nothing was written again");
        let kinds: Vec<_> =
            store.live_read("b", 0, 10).expect("log").iter().map(|(i, e)| (*i, e.kind())).collect();
        assert_eq!(kinds, vec![(1, "message"), (2, "notification")]);
    }

    /// A lane's turn writes its messages together, in one write: each message followed on
    /// the stream by its entries, unread counts that run on across the messages, and each
    /// message's entry taken off the queue; one already gone adds nothing.
    #[test]
    fn a_turn_s_messages_are_written_in_one_write_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let [s1, s2, s3] = queue(&store, "t", &["$1", "$2", "$3"])[..] else { panic!() };
        // The third was handled before (a replay): its entry is gone.
        store.complete_pending(s3, &[]).expect("complete");
        // A queued message mentioning `users`.
        let message_of = |seq, event: &str, users: &[&str]| Message {
            once: Some(Once::Entry(seq)),
            log: message(event),
            notifications: users.iter().map(|u| n(u, event, "!r:x", seq, None)).collect(),
        };
        let logged = store
            .log_messages_and_notify(vec![
                message_of(s1, "$1", &["@alice:x", "@alice:x"]),
                message_of(s2, "$2", &[]),
                message_of(s3, "$3", &["@alice:x", "@bob:x"]),
            ])
            .expect("write");
        let off: Vec<bool> = logged.iter().map(|l| l.off_the_queue).collect();
        assert_eq!(off, [true, true, false]);
        // An (event, user) pair once; nothing for the message whose entry was gone.
        let added: Vec<usize> = logged.iter().map(|l| l.notifications.len()).collect();
        assert_eq!(added, [1, 0, 0]);
        assert!(store.pending_from(0, 10).expect("pending").is_empty());
        let log = store.live_read("b", 0, 10).expect("log");
        let kinds: Vec<_> = log.iter().map(|(id, e)| (*id, e.kind())).collect();
        assert_eq!(kinds, vec![(1, "message"), (2, "notification"), (3, "message")]);
        assert_eq!(store.unread_count(ruma::user_id!("@alice:x")).expect("count"), 1);
        assert_eq!(store.unread_count(ruma::user_id!("@bob:x")).expect("count"), 0);

        // Two messages of a turn mentioning one user: the counts on the stream run on.
        let [s4, s5] = queue(&store, "u", &["$4", "$5"])[..] else { panic!() };
        let logged = store
            .log_messages_and_notify(vec![
                message_of(s4, "$4", &["@alice:x"]),
                message_of(s5, "$5", &["@alice:x"]),
            ])
            .expect("write");
        let ids: Vec<Vec<u64>> =
            logged.iter().map(|l| l.notifications.iter().map(|n| n.id).collect()).collect();
        assert_eq!(ids, [[2], [3]], "ids follow the entries made before");
        assert_eq!(store.unread_count(ruma::user_id!("@alice:x")).expect("count"), 3);
        let counts: Vec<u64> = store
            .live_read("b", 3, 10)
            .expect("log")
            .iter()
            .filter_map(|(_, e)| match &e.data {
                StreamData::Notification(n) => Some(n.unread_count),
                _ => None,
            })
            .collect();
        assert_eq!(counts, [2, 3]);
        assert_eq!(store.inbox_entry_count(), 3);
    }

    #[test]
    fn inbox_counts_pages_receipts_and_redactions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let alice = ruma::user_id!("@alice:x");
        let added = store
            .add_notifications(vec![
                n("@alice:x", "$1", "!r:x", 1, None),
                n("@alice:x", "$2", "!r:x", 2, Some("$t")),
                n("@alice:x", "$3", "!r:x", 3, None),
                n("@alice:x", "$4", "!q:x", 4, None),
                n("@bob:x", "$1", "!r:x", 1, None),
            ])
            .expect("add");
        assert_eq!(added.len(), 5);
        // A replay adds nothing.
        assert!(
            store
                .add_notifications(vec![n("@alice:x", "$1", "!r:x", 1, None)])
                .expect("add")
                .is_empty()
        );
        assert_eq!(store.unread_count(alice).expect("count"), 4);

        let page = store.notifications(alice, None, 2).expect("page");
        assert_eq!(page.iter().map(|n| n.event_id.as_str()).collect::<Vec<_>>(), ["$4", "$3"]);
        let next = store.notifications(alice, Some(page[1].id), 10).expect("page");
        assert_eq!(next.iter().map(|n| n.event_id.as_str()).collect::<Vec<_>>(), ["$2", "$1"]);

        // A main-timeline receipt at $3 reads $1 and $3, not the thread's $2 nor room !q.
        let marked = store
            .mark_read_up_to(alice, ruma::room_id!("!r:x"), &ReceiptScope::Main, Some(3), 0)
            .expect("receipt");
        assert_eq!(marked, 2);
        assert_eq!(store.unread_count(alice).expect("count"), 2);
        assert_eq!(store.mark_read(alice, page[0].id).expect("read"), Some(true));
        assert_eq!(store.mark_read(alice, page[0].id).expect("read"), Some(false));
        assert_eq!(
            store.mark_read(ruma::user_id!("@bob:x"), page[0].id).expect("read"),
            None,
            "not bob's"
        );
        assert_eq!(store.unread_count(alice).expect("count"), 1);

        // A redaction from another room takes away nothing; from the event's own, its entry.
        let (other, own) = (ruma::room_id!("!q:x"), ruma::room_id!("!r:x"));
        assert_eq!(store.remove_notifications_of(other, ruma::event_id!("$2")).expect("rm"), 0);
        assert_eq!(store.unread_count(alice).expect("count"), 1);
        assert_eq!(store.remove_notifications_of(own, ruma::event_id!("$2")).expect("rm"), 1);
        assert_eq!(store.unread_count(alice).expect("count"), 0);
        assert_eq!(store.notifications(alice, None, 10).expect("list").len(), 3);
        assert_eq!(store.mark_all_read(ruma::user_id!("@bob:x")).expect("all"), 1);
        assert_eq!(store.unread_count(ruma::user_id!("@bob:x")).expect("count"), 0);
        // Every inbox's entries together: five added, one redacted; kept across a reopen,
        // and counted again by the migration to the same number.
        assert_eq!(store.inbox_entry_count(), 4);
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.inbox_entry_count(), 4);
        store.keep_inbox_count().expect("migration");
        assert_eq!(store.inbox_entry_count(), 4);
    }

    #[test]
    fn a_scope_hides_other_boards_entries_from_pages_counts_and_marks() {
        use crate::domain::board::{RoomKind, RoomRecord};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        for (room, board) in [("!a1:x", "a"), ("!a2:x", "a"), ("!b:x", "b")] {
            let record = RoomRecord {
                board: board.into(),
                name: "tasks".into(),
                kind: RoomKind::Tasks,
                private: false,
                pending_move_from: None,
            };
            store.put_room(room.try_into().expect("room"), &record).expect("room");
        }
        // Oldest first; `!z:x` is no indexed room, its entry says board a.
        let rooms = [("!a1:x", "a"), ("!a1:x", "a"), ("!b:x", "b"), ("!a1:x", "a")];
        let more = [("!b:x", "b"), ("!a2:x", "a"), ("!z:x", "a")];
        let entries: Vec<Notification> = rooms
            .iter()
            .chain(more.iter())
            .enumerate()
            .map(|(i, (room, board))| {
                let mut e = n("@alice:x", &format!("${i}"), room, i as u64 + 1, None);
                e.board = (*board).into();
                e
            })
            .collect();
        store.add_notifications(entries).expect("add");
        let alice = ruma::user_id!("@alice:x");
        assert_eq!(store.unread_count_in(alice, |b| b == "a").expect("count"), 5);
        assert_eq!(store.unread_count_in(alice, |b| b == "b").expect("count"), 2);
        assert_eq!(store.unread_count_in(alice, |_| false).expect("count"), 0);

        let (page, stopped) =
            store.notifications_where(alice, None, 10, 1000, |n| n.board == "a").expect("page");
        assert_eq!(page.len(), 5);
        assert!(page.iter().all(|n| n.board == "a") && stopped.is_none());
        // A budget of two reads: the page comes short, with where to go on.
        let (page, stopped) =
            store.notifications_where(alice, None, 10, 2, |n| n.board == "b").expect("page");
        assert!(page.is_empty());
        let (page, stopped) =
            store.notifications_where(alice, stopped, 10, 2, |n| n.board == "b").expect("page");
        assert_eq!(page.iter().map(|n| n.event_id.as_str()).collect::<Vec<_>>(), ["$4"]);
        assert!(stopped.is_some());

        assert_eq!(store.mark_all_read_in(alice, |b| b == "b").expect("marked"), 2);
        assert_eq!(store.unread_count_in(alice, |b| b == "a").expect("count"), 5);
        assert_eq!(store.unread_count_in(alice, |b| b == "b").expect("count"), 0);
        assert_eq!(store.unread_count(alice).expect("count"), 5);
        let b_entry = store.notification(alice, page[0].id).expect("read").expect("entry");
        assert!(b_entry.read);
    }
}
